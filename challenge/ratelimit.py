"""Fixed-window rate limits kept in Redis, so every web process shares them."""

from __future__ import annotations

import logging
import threading
import time

import redis

from challenge.errors import RateLimited

log = logging.getLogger(__name__)


class RateLimiter:
    """Counts hits per key and window in Redis; falls back to process memory if Redis is away."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int, what: str) -> None:
        bucket = int(time.time() // window_seconds)
        name = f"podium:rl:{key}:{bucket}"
        count: int
        try:
            if self.client is None:
                raise redis.RedisError("no client")
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, window_seconds + 1)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            with self._lock:
                if len(self._local) > 100_000:
                    self._local.clear()
                count = self._local[name] = self._local.get(name, 0) + 1
        if count > limit:
            wait = window_seconds - int(time.time()) % window_seconds
            raise RateLimited(f"Too many {what}; try again in {wait} seconds.")
