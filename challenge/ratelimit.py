"""Rate limits: sliding windows kept in Redis, so every web process shares them.

The counting is the ``limits`` library's moving window (each hit's time is kept, so a limit of N
per 10 minutes never lets 2N through across a window edge, as a fixed window does). A guarded
action is limited per client address AND per account (the account acted on or logged into), so
that neither many addresses against one account nor one address against many accounts gets far,
and so that people behind one address (a hackathon room) do not share the per-account limits.

When Redis is not reachable (or the app runs on the ``stub://`` test broker) the same windows are
kept in the process's memory: each web process then counts on its own.

The limits themselves are in :data:`LIMITS` (docs/security/accounts.md lists them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from challenge.errors import RateLimited

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """``per_address`` and ``per_account`` in the ``limits`` notation ("10/minute;50/hour");
    empty: no limit of that kind."""

    what: str  # "login attempts", in the message
    per_address: str
    per_account: str

    def items(self, scope: str) -> list[RateLimitItem]:
        spec = self.per_address if scope == "address" else self.per_account
        return parse_many(spec) if spec else []


LIMITS = {
    # Logins (web, API token creation, EvalAI login): the per-account limit counts failures only,
    # so the owner who types the password right is never refused for someone else's guesses
    # beyond the window.
    "login": Limit("login attempts", "20/minute;300/hour", "10/10minutes;50/day"),
    "register": Limit("registrations", "10/hour;50/day", "3/hour"),  # account: the e-mail address
    "password_reset": Limit("password reset requests", "10/hour", "3/hour"),  # account: e-mail
    "account_link": Limit("attempts with a link", "30/hour", "30/hour"),
    "password_change": Limit("password changes", "30/hour", "5/10minutes"),
    "api_token": Limit("new API tokens", "30/hour", "10/hour"),
    "checkin": Limit("check-in codes", "60/10minutes", "5/10minutes"),
    # Uploads: per account only (a room of participants shares an address).
    "submit": Limit("uploads", "", "12/minute"),
}


class RateLimiter:
    """Checks and counts hits per key; falls back to process memory if Redis is away."""

    def __init__(self, client: redis.Redis | None, login_per_minute: int = 20) -> None:
        self.client = client  # also read by the admin dashboard (worker heartbeats)
        self.limits = dict(LIMITS)
        self.limits["login"] = dataclasses.replace(  # PODIUM_LOGIN_RATE_PER_MINUTE
            LIMITS["login"], per_address=f"{login_per_minute}/minute;300/hour"
        )
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        if client is not None:
            storage = RedisStorage(
                "redis://", connection_pool=client.connection_pool, key_prefix="podium:rl"
            )
            self._redis = MovingWindowRateLimiter(storage)

    def _run(self, method: str, item: RateLimitItem, key: str) -> bool:
        if self._redis is not None:
            try:
                return bool(getattr(self._redis, method)(item, key))
            except redis.RedisError:
                log.warning("Redis unreachable: rate limits counted in this process only")
        return bool(getattr(self._memory, method)(item, key))

    def _retry_after(self, item: RateLimitItem, key: str) -> int:
        limiter = self._memory
        if self._redis is not None:
            try:
                reset = self._redis.get_window_stats(item, key).reset_time
                return max(1, math.ceil(reset - time.time()))
            except redis.RedisError:
                pass
        reset = limiter.get_window_stats(item, key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def _refuse(self, limit: Limit, item: RateLimitItem, key: str) -> RateLimited:
        wait = self._retry_after(item, key)
        when = f"{wait} seconds" if wait < 120 else f"{math.ceil(wait / 60)} minutes"
        return RateLimited(
            f"Too many {limit.what} (at most {item.amount} per {_window(item)}); "
            f"try again in {when}.",
            retry_after=wait,
        )

    def hit(self, name: str, *, address: str | None, account: str | None = None) -> None:
        """Count one action by ``address`` on ``account``; raise RateLimited past a limit."""
        limit = self.limits[name]
        for scope, who in (("address", address), ("account", account)):
            if who is None:
                continue
            for item in limit.items(scope):
                key = f"{name}:{scope}:{who.lower()}"
                if not self._run("hit", item, key):
                    raise self._refuse(limit, item, key)

    def check(self, name: str, *, account: str) -> None:
        """Raise RateLimited if the account's limit is used up, without counting a hit."""
        limit = self.limits[name]
        for item in limit.items("account"):
            key = f"{name}:account:{account.lower()}"
            if not self._run("test", item, key):
                raise self._refuse(limit, item, key)

    def count(self, name: str, *, account: str) -> None:
        """Count a hit on the account (a failed login) without refusing this request."""
        for item in self.limits[name].items("account"):
            self._run("hit", item, f"{name}:account:{account.lower()}")


def _window(item: RateLimitItem) -> str:
    """'minute', '10 minutes', 'day'..."""
    count, unit = str(item).split(" per ", 1)[1].split(" ", 1)  # "10 per 10 minute"
    return unit if count == "1" else f"{count} {unit}s"
