"""Requests that used to end in a 500 get the 4xx they deserve (issue #10 §5)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.challenge.conftest import PASSWORD, csrf_of, login

TOO_BIG = str(2**63)  # past SQLite's INTEGER (OverflowError)
PAST_INT4 = str(2**31)  # past PostgreSQL's INTEGER keys ("integer out of range")
LARGEST = str(2**31 - 1)


def _token(client: Any, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path


def test_integers_past_the_database_range_in_paths_are_not_found(
    app: Any, make_challenge: Any, make_user: Any
) -> None:
    """Every route with a numeric id (API, EvalAI, team pages, forum), with a token and with a
    login session: 2**63 and 2**31 are 404 (they raised OverflowError / NumericValueOutOfRange)."""
    challenge = make_challenge()
    make_user("org", role="organizer")
    client = TestClient(app, raise_server_exceptions=False)
    token = _token(client, "org")
    login(client, "org")
    checked = set()
    for method, path in _routes(app.routes):
        if not re.search(r"\{\w+:(dbint|int)\}|\{(\w+_id)\}", path):
            continue
        url = path.replace("{slug}", challenge.slug).replace("{answer:str}", "accept")
        for number in (TOO_BIG, PAST_INT4, LARGEST):
            numbered = re.sub(r"\{\w+(:\w+)?\}", number, url)
            for headers in (token, {}):
                data = {"csrf_token": csrf_of(client)} if method == "POST" and not headers else None
                r = client.request(method, numbered, headers=headers, data=data)
                assert r.status_code < 500, (method, numbered, bool(headers), r.text[:300])
                if number != LARGEST:
                    assert r.status_code in (400, 401, 404, 405, 406), (
                        method,
                        numbered,
                        r.status_code,
                    )
        checked.add(path)
    # The API and EvalAI routes that took these to the database, and the forum's post/thread pages.
    for path in (
        "/api/submissions/{id:dbint}",
        "/api/tokens/{id:dbint}",
        "/api/challenges/challenge/{challenge_id:dbint}",
        "/api/jobs/submission/{submission_id:dbint}",
        "/api/challenges/{challenge_id:dbint}/challenge_phase_split",
        "/forum/p/{post_id}",
        "/forum/t/{thread_id}",
    ):
        assert path in checked


def test_evalai_token_swap_without_a_token_is_401(
    client: Any, make_user: Any, make_challenge: Any
) -> None:
    make_user("pat")
    login(client, "pat")
    r = client.get("/api/accounts/user/get_auth_token")
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["error"]
    assert r.json()["detail"] == "Invalid token"  # the EvalAI CLI's cue to set a new token
    token = _token(client, "pat")
    r = client.get("/api/accounts/user/get_auth_token", headers=token)
    assert r.status_code == 200
    assert r.json()["token"] == token["Authorization"].split()[1]


def test_bad_query_integers_are_400_with_a_message(
    client: Any, make_user: Any, make_challenge: Any
) -> None:
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    token = _token(client, "org")
    url = f"/api/challenges/{challenge.slug}/all-submissions"
    for bad in ("abc", "-1", "0", "5001", "1e3", TOO_BIG):
        r = client.get(f"{url}?limit={bad}", headers=token)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["message"].startswith("limit must be a whole number from 1 to 5000")
    assert client.get(f"{url}?limit=5", headers=token).status_code == 200
    assert client.get(f"{url}?limit=", headers=token).status_code == 200
    r = client.get(f"/c/{challenge.slug}/leaderboard?page={TOO_BIG}")
    assert r.status_code == 400
    r = client.get(f"/forum/c/{challenge.slug}/general?page={TOO_BIG}")
    assert r.status_code == 400


def test_json_bodies_that_are_not_objects_are_400(
    client: Any, make_user: Any, make_challenge: Any
) -> None:
    challenge = make_challenge()
    make_user("pat")
    for body in ([None, None], [], "login", 3, None):
        r = client.post("/api/auth/token", json=body)
        assert r.status_code == 400, (body, r.text)
        assert "Send a JSON object" in r.json()["message"]
    r = client.post("/api/auth/token", content=b"\xff\xfe", headers={"content-type": "text/json"})
    assert r.status_code == 400
    token = _token(client, "pat")
    r = client.post(f"/api/challenges/{challenge.slug}/join", json=[True], headers=token)
    assert r.status_code == 400
    assert "accept_rules" in r.json()["message"]
