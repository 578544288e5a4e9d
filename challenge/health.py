"""What the workers report about themselves (sandbox walls, heartbeats) and the ``/health`` check.

Each worker process writes a small JSON record to Redis when its sandbox pool starts; the web
process reads them. A missing network or filesystem wall is shown as a warning there (and was
logged loudly by the worker).

Each worker process also refreshes a heartbeat (:class:`WorkerHeartbeat`, a dramatiq middleware
the broker carries) every ``HEARTBEAT_SECONDS``; ``/health`` counts the workers whose heartbeat is
younger than ``HEARTBEAT_FRESH_SECONDS`` (docs/operations.md, "Health check").
"""

from __future__ import annotations

import json
import logging
import multiprocessing.util
import os
import socket
import threading
import time
from itertools import count
from typing import Any

import dramatiq
import redis
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from challenge.db import alembic_config

log = logging.getLogger(__name__)
KEY = "podium:workers"
STALE_SECONDS = 24 * 3600
HEARTBEAT_KEY = "podium:heartbeats"  # sorted set: worker id -> time of its last heartbeat
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_FRESH_SECONDS = 30.0  # a worker silent for longer counts as dead
_FORGET_SECONDS = 3600.0  # heartbeats older than this are removed from the set


def publish_worker_status(client: redis.Redis | None, isolation: dict[str, Any]) -> None:
    """Record this worker's sandbox isolation (never fails the worker)."""
    if client is None:
        return
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "network_isolated": bool(isolation.get("network")),
        "filesystem_isolated": isolation.get("filesystem") == "chroot",
        "isolation": {k: str(v) for k, v in isolation.items()},
    }
    _publish(client, KEY, record, "worker status")


def _publish(client: redis.Redis, key: str, record: dict[str, Any], what: str) -> None:
    try:
        client.hset(key, f"{record['host']}:{record['pid']}", json.dumps(record))
    except redis.RedisError:
        log.warning("could not publish %s to Redis", what, exc_info=True)


def _recent(client: redis.Redis | None, key: str) -> list[dict[str, Any]]:
    """The records under ``key`` seen in the last day, newest first."""
    if client is None:
        return []
    try:
        raw = client.hgetall(key)
    except redis.RedisError:
        return []
    now = time.time()
    records = [json.loads(v) for v in raw.values()]
    return sorted(
        (r for r in records if now - r.get("started", 0) < STALE_SECONDS),
        key=lambda r: -float(r["started"]),
    )


def worker_statuses(client: redis.Redis | None) -> list[dict[str, Any]]:
    """The workers seen in the last day, newest first."""
    return _recent(client, KEY)


CODE_KEY = "podium:code-workers"


def publish_code_jail(client: redis.Redis | None, capabilities: dict[str, Any]) -> None:
    """Record what this code worker's host gives the code-run jail (scoring.jail)."""
    if client is None:
        return
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "complete": bool(capabilities.get("complete")),
        "missing": [str(m) for m in capabilities.get("missing", [])],
        "cgroup": capabilities.get("cgroup"),
        "seccomp": bool(capabilities.get("seccomp")),
        "user_namespaces": bool(capabilities.get("user_namespaces")),
        "partial_allowed": bool(capabilities.get("partial_allowed")),
    }
    _publish(client, CODE_KEY, record, "the code jail's status")


def code_jail_statuses(client: redis.Redis | None) -> list[dict[str, Any]]:
    """The code workers seen in the last day and their jail, newest first."""
    return _recent(client, CODE_KEY)


# ---------------------------------------------------------------- worker heartbeats


def beat(client: redis.Redis, worker_id: str, now: float | None = None) -> None:
    """Record that ``worker_id`` is alive now (and forget workers silent for an hour)."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zadd(HEARTBEAT_KEY, {worker_id: now})
    pipe.zremrangebyscore(HEARTBEAT_KEY, "-inf", now - _FORGET_SECONDS)
    pipe.execute()


class WorkerHeartbeat(dramatiq.Middleware):
    """Refresh a heartbeat in Redis while a dramatiq worker runs, from a thread of its own.

    The thread beats even while the worker's threads are busy grading; a worker that is killed
    stops beating and drops out of ``/health`` after ``HEARTBEAT_FRESH_SECONDS``; one that shuts
    down cleanly removes its heartbeat at once. Brokers without a Redis client (the stub) are
    left alone.
    """

    _ids = count(1)

    def __init__(self, interval: float = HEARTBEAT_SECONDS) -> None:
        self.interval = interval
        self._running: dict[int, tuple[redis.Redis, str, threading.Event, threading.Thread]] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        client = getattr(broker, "client", None)
        if client is None:
            return
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{next(self._ids)}"
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat_until, args=(client, worker_id, stop), name="podium-heartbeat",
            daemon=True,
        )  # fmt: skip
        self._running[id(worker)] = (client, worker_id, stop, thread)
        thread.start()
        # A worker process told twice to stop exits without stopping its worker (dramatiq's
        # "Killing worker process"): forget its heartbeat at exit all the same. A multiprocessing
        # finalizer, since dramatiq's worker processes end with os._exit (no atexit handlers).
        multiprocessing.util.Finalize(None, self._forget, args=(client, worker_id), exitpriority=10)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        running = self._running.pop(id(worker), None)
        if running is None:
            return
        client, worker_id, stop, thread = running
        stop.set()
        thread.join(self.interval + 5)
        self._forget(client, worker_id)

    @staticmethod
    def _forget(client: redis.Redis, worker_id: str) -> None:
        try:
            client.zrem(HEARTBEAT_KEY, worker_id)
        except redis.RedisError:
            log.warning("could not remove the heartbeat of %s", worker_id, exc_info=True)

    def _beat_until(self, client: redis.Redis, worker_id: str, stop: threading.Event) -> None:
        failing = False
        while True:
            try:
                beat(client, worker_id)
                if failing:
                    log.info("worker heartbeat reaches Redis again")
                failing = False
            except redis.RedisError:
                if not failing:  # once per outage, not every few seconds
                    log.warning("worker heartbeat cannot reach Redis", exc_info=True)
                failing = True
            if stop.wait(self.interval):
                return


def alive_workers(client: redis.Redis, now: float | None = None) -> int:
    """How many workers refreshed their heartbeat in the last ``HEARTBEAT_FRESH_SECONDS``."""
    now = time.time() if now is None else now
    return int(client.zcount(HEARTBEAT_KEY, now - HEARTBEAT_FRESH_SECONDS, "+inf"))


# ---------------------------------------------------------------- /health

_script_heads: frozenset[str] | None = None


def script_heads() -> frozenset[str]:
    """The head revision of every Alembic branch this code ships (read once per process)."""
    global _script_heads
    if _script_heads is None:
        script = ScriptDirectory.from_config(alembic_config("sqlite://"))
        _script_heads = frozenset(script.get_heads())
    return _script_heads


def missing_migrations(conn: sa.Connection) -> set[str]:
    """The branch heads the database has not reached (all of them for an unmigrated database).

    A database ahead of the code (rows this code does not know) counts as behind too: the code
    running is older than the schema, which is as wrong.
    """
    current = set(MigrationContext.configure(conn).get_current_heads())
    return (set(script_heads()) - current) | (current - set(script_heads()))


def check_health(engine: sa.Engine, client: redis.Redis | None) -> tuple[bool, dict[str, Any]]:
    """Check the database, Redis and the workers; returns (all fine, the JSON body of /health).

    Cheap: one ``SELECT 1``, one read of the Alembic version rows (the schema must be at this
    code's heads: an empty or unmigrated database is down) and one Redis round trip (PING and a
    ZCOUNT, pipelined). Each part that is down is named under ``problems`` with what to do
    about it; details go to the log.
    """
    checks: dict[str, str] = {}
    problems: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            behind = missing_migrations(conn)
        if behind:
            checks["database"] = "down"
            problems["migrations"] = (
                f"the database schema is not at this code's revision (missing or unknown: "
                f"{', '.join(sorted(behind))}): run 'podium migrate' with this version"
            )
        else:
            checks["database"] = "ok"
    except Exception as exc:
        log.warning("health: database unreachable", exc_info=True)
        checks["database"] = "down"
        problems["database"] = (
            f"cannot query the database ({type(exc).__name__}): check that the database server "
            "is running and that PODIUM_DATABASE_URL points at it"
        )
    workers = 0
    if client is None:
        checks["redis"] = checks["workers"] = "down"
        problems["redis"] = (
            "no Redis client (PODIUM_REDIS_URL is stub://, for unit tests only, or Redis could "
            "not be set up when the site started; see its log): set PODIUM_REDIS_URL to the "
            "Redis server the workers use and restart the site"
        )
        problems["workers"] = "unknown while Redis is not set up"
    else:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.ping()
            pipe.zcount(HEARTBEAT_KEY, time.time() - HEARTBEAT_FRESH_SECONDS, "+inf")
            _, workers = pipe.execute()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            log.warning("health: Redis unreachable", exc_info=True)
            checks["redis"] = checks["workers"] = "down"
            problems["redis"] = (
                f"cannot reach Redis ({type(exc).__name__}): start it (podium demo starts its "
                "own; in production the redis service) or correct PODIUM_REDIS_URL; uploads are "
                "kept and scored once it is back"
            )
            problems["workers"] = "unknown while Redis is down"
        else:
            if int(workers) > 0:
                checks["workers"] = "ok"
            else:
                checks["workers"] = "down"
                problems["workers"] = (
                    f"no scoring worker has sent a heartbeat in the last "
                    f"{HEARTBEAT_FRESH_SECONDS:.0f} s: start one (podium worker) or look at the "
                    "worker's log; uploads are kept and scored once one runs"
                )
    ok = not problems
    body: dict[str, Any] = {"status": "ok" if ok else "down", "checks": checks}
    body["workers_alive"] = int(workers)
    # What the code workers' hosts give the code-run jail: shown, never a failure of /health
    # (file grading does not need it); a worker missing a wall refuses code runs unless an admin
    # set PODIUM_CODE_ALLOW_PARTIAL_ISOLATION.
    jails = code_jail_statuses(client) if checks.get("redis") == "ok" else []
    if jails:
        body["code_isolation"] = {
            "complete": all(j["complete"] for j in jails),
            "missing": sorted({m for j in jails for m in j["missing"]}),
            "workers": len(jails),
        }
    if problems:
        body["problems"] = problems
    return ok, body
