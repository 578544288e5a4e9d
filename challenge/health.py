"""What the workers report about themselves, for the admin page: sandbox walls and liveness.

Each worker process writes a small JSON record to Redis when its sandbox pool starts; the web
process reads them. A missing network or filesystem wall is shown as a warning there (and was
logged loudly by the worker).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import redis

log = logging.getLogger(__name__)
KEY = "podium:workers"
STALE_SECONDS = 24 * 3600


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
    try:
        client.hset(KEY, f"{record['host']}:{record['pid']}", json.dumps(record))
    except redis.RedisError:
        log.warning("could not publish worker status to Redis", exc_info=True)


def worker_statuses(client: redis.Redis | None) -> list[dict[str, Any]]:
    """The workers seen in the last day, newest first."""
    if client is None:
        return []
    try:
        raw = client.hgetall(KEY)
    except redis.RedisError:
        return []
    now = time.time()
    records = [json.loads(v) for v in raw.values()]
    return sorted(
        (r for r in records if now - r.get("started", 0) < STALE_SECONDS),
        key=lambda r: -float(r["started"]),
    )
