"""Rate limits (challenge/ratelimit.py): sliding windows per account and per address, on Redis,
answered with 429, a Retry-After header and a message that says when to try again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select
from starlette.testclient import TestClient

from challenge import ratelimit
from challenge.db import session_scope
from challenge.errors import RateLimited
from challenge.models import Participation, Phase
from challenge.ratelimit import Limit, RateLimiter
from tests.challenge.conftest import PASSWORD, csrf_of, login


@pytest.fixture
def from_address(app: Any) -> Iterator[Any]:
    made: list[TestClient] = []

    def make(address: str) -> TestClient:
        client = TestClient(app, base_url="http://testserver", client=(address, 40000))
        client.__enter__()
        made.append(client)
        return client

    yield make
    for client in made:
        client.__exit__(None, None, None)


def _post(client: TestClient, url: str, data: dict[str, str], page: str) -> Any:
    return client.post(
        url, data={"csrf_token": csrf_of(client, page), **data}, follow_redirects=False
    )


def _refused(r: Any, what: str) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) > 0
    assert f"Too many {what}" in r.text
    assert "try again in" in r.text


def test_login_failures_are_limited_per_account_from_any_address(
    from_address: Any, make_user: Any
) -> None:
    make_user("alice")
    make_user("bob")
    for i in range(10):  # a botnet: one guess per address
        guesser = from_address(f"203.0.113.{i}")
        r = _post(guesser, "/login", {"login": "alice", "password": f"guess-{i}"}, "/login")
        assert r.status_code == 400
    r = _post(
        from_address("203.0.113.99"), "/login", {"login": "ALICE", "password": PASSWORD}, "/login"
    )
    _refused(r, "login attempts")
    # Other accounts are not affected, nor is the API token path a way around it.
    r = _post(
        from_address("203.0.113.98"), "/login", {"login": "bob", "password": PASSWORD}, "/login"
    )
    assert r.status_code == 303
    api = from_address("203.0.113.97").post(
        "/api/auth/token", json={"login": "alice", "password": PASSWORD}
    )
    assert api.status_code == 429
    assert api.json()["error"] == "rate_limited"
    assert "retry-after" in api.headers


def test_login_attempts_are_limited_per_address(from_address: Any, make_user: Any) -> None:
    client = from_address("198.51.100.7")
    for i in range(20):  # PODIUM_LOGIN_RATE_PER_MINUTE, spread over many names
        r = _post(client, "/login", {"login": f"user{i}", "password": "x" * 9}, "/login")
        assert r.status_code == 400
    _refused(
        _post(client, "/login", {"login": "user99", "password": "x" * 9}, "/login"),
        "login attempts",
    )
    other = from_address("198.51.100.8")
    assert (
        _post(other, "/login", {"login": "user99", "password": "x" * 9}, "/login").status_code
        == 400
    )


def test_registration_is_limited_per_address_and_per_address_mailed(from_address: Any) -> None:
    client = from_address("192.0.2.1")
    for i in range(10):
        r = _post(
            client,
            "/register",
            {"username": f"user{i}", "email": f"u{i}@example.org", "password": PASSWORD},
            "/register",
        )
        assert r.status_code == 200
    r = _post(
        client,
        "/register",
        {"username": "user10", "email": "u10@example.org", "password": PASSWORD},
        "/register",
    )
    _refused(r, "registrations")
    # One mailbox is not flooded from many addresses either.
    for i in range(3):
        r = _post(
            from_address(f"192.0.2.{10 + i}"),
            "/register",
            {"username": f"spam{i}", "email": "victim@example.org", "password": PASSWORD},
            "/register",
        )
        assert r.status_code == 200
    r = _post(
        from_address("192.0.2.20"),
        "/register",
        {"username": "spam9", "email": "victim@example.org", "password": PASSWORD},
        "/register",
    )
    _refused(r, "registrations")


def test_password_reset_requests_are_limited(from_address: Any, make_user: Any) -> None:
    make_user("alice")
    for i in range(3):
        r = _post(
            from_address(f"192.0.2.{30 + i}"),
            "/password/forgot",
            {"email": "alice@example.org"},
            "/password/forgot",
        )
        assert r.status_code == 200
    r = _post(
        from_address("192.0.2.40"),
        "/password/forgot",
        {"email": "alice@example.org"},
        "/password/forgot",
    )
    _refused(r, "password reset requests")


def test_token_creation_is_limited(client: Any, make_user: Any) -> None:
    make_user("alice")
    login(client, "alice")
    for i in range(10):
        r = _post(client, "/account", {"action": "create", "name": f"t{i}"}, "/account")
        assert r.status_code == 200
    _refused(
        _post(client, "/account", {"action": "create", "name": "t10"}, "/account"), "new API tokens"
    )


def test_check_in_codes_case_insensitive_and_guesses_limited(
    from_address: Any, make_user: Any, make_challenge: Any, engine: sa.Engine
) -> None:
    challenge = make_challenge()
    with session_scope(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        phase.registration_code = "HACK-7KQ2M9XD"
        session.add(phase)
    make_user("mallory")
    make_user("alice")
    mallory, alice = from_address("192.0.2.50"), from_address("192.0.2.51")
    login(mallory, "mallory")
    login(alice, "alice")
    page = f"/c/{challenge.slug}"
    url = f"/c/{challenge.slug}/checkin"
    for i in range(5):
        r = _post(mallory, url, {"accept": "yes", "code": f"HACK-{i:08d}"}, page)
        assert r.status_code == 400
    # The sixth guess is refused before the code is looked at, even the right one.
    _refused(
        _post(mallory, url, {"accept": "yes", "code": "HACK-7KQ2M9XD"}, page), "check-in codes"
    )
    # Typed in lower case, the code is the code.
    r = _post(alice, url, {"accept": "yes", "code": "  hack-7kq2m9xd "}, page)
    assert r.status_code == 303
    with session_scope(engine) as session:
        rows = session.exec(select(Participation)).all()
        assert [(p.user_id, p.status) for p in rows] == [(rows[0].user_id, "approved")]
        assert len(rows) == 1


def test_the_window_slides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two per minute means two in any sixty seconds. Hits at 0 s and 50 s, then 61 s (the first
    has left the window) pass; one at 62 s would be the third since 50 s and is refused. A fixed
    window (per clock minute, or starting at the first hit) would let it through: three in 12 s.
    """
    import limits.storage.memory as memory

    start = 1_000_000.0
    now = [start]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(memory, "time", Clock)
    monkeypatch.setattr(ratelimit, "time", Clock)
    limiter = RateLimiter(None)
    limiter.limits["demo"] = Limit("tries", "", "2/minute")
    for at in (0, 50, 61):
        now[0] = start + at
        limiter.hit("demo", address=None, account="a")
    now[0] = start + 62
    with pytest.raises(RateLimited) as info:
        limiter.hit("demo", address=None, account="a")
    assert info.value.retry_after is not None
    assert 45 <= info.value.retry_after <= 50  # when the hit at 50 s leaves the window
    now[0] = start + 111
    limiter.hit("demo", address=None, account="a")


def test_limits_are_shared_through_redis(redis_url: str) -> None:
    """Two web processes (two limiters) on one Redis count together."""
    import redis

    first = RateLimiter(redis.Redis.from_url(redis_url))
    second = RateLimiter(redis.Redis.from_url(redis_url))
    for limiter in (first, second):
        limiter.limits["demo"] = Limit("tries", "", "3/minute")
    first.hit("demo", address=None, account="alice")
    second.hit("demo", address=None, account="alice")
    first.hit("demo", address=None, account="alice")
    with pytest.raises(RateLimited):
        second.hit("demo", address=None, account="alice")
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]
    assert keys
    assert all(k.startswith("podium:rl") for k in keys)
    assert any("demo:account:alice" in k for k in keys)
