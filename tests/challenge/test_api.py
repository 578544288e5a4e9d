"""The JSON API: its OpenAPI document, tokens, participant and organizer routes, rate limits."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from sqlmodel import Session, select
from starlette.routing import Mount, Route

from challenge import api, evalai, uploads
from challenge.models import ApiToken, Phase, Submission
from tests.challenge.conftest import PASSWORD, perfect_submission, random_submission


def _token(client: Any, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD, "name": "t"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _spec_path(path: str) -> str:
    return "/api" + re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def _api_routes(app: Any) -> list[tuple[str, str]]:
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/api")
    out = []
    for route in mount.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                out.append((_spec_path(route.path), method.lower()))
    return out


def test_openapi_document_is_valid_and_lists_every_route(client: Any, app: Any) -> None:
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"] == "3.1.0"
    routes = _api_routes(app)
    assert len(routes) == len(api.routes) + len(evalai.routes)  # one method per Route
    missing = [(p, m) for p, m in routes if m not in spec["paths"].get(p, {})]
    assert not missing, f"document these routes in challenge/openapi.py: {missing}"
    documented = {(p, m) for p, item in spec["paths"].items() for m in item}
    assert documented == set(routes), documented ^ set(routes)
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_tokens_login_me_and_revoke(client: Any, make_user: Any, engine: Any) -> None:
    make_user("tina")
    r = client.post("/api/auth/token", json={"login": "tina", "password": "wrong", "name": "x"})
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"
    headers = _token(client, "tina")
    assert client.get("/api/me", headers=headers).json()["username"] == "tina"
    tokens = client.get("/api/tokens", headers=headers).json()
    assert len(tokens) == 1
    assert tokens[0]["last_used_at"] is not None
    assert "token" not in tokens[0]
    assert "token_hash" not in tokens[0]
    # A second token revokes the first; the first stops working at once.
    other = _token(client, "tina")
    assert client.delete(f"/api/tokens/{tokens[0]['id']}", headers=other).status_code == 204
    assert client.get("/api/me", headers=headers).status_code == 401
    with Session(engine) as session:
        assert session.get(ApiToken, tokens[0]["id"]).revoked  # type: ignore[union-attr]
    assert client.delete(f"/api/tokens/{tokens[0]['id']}", headers=other).status_code == 404
    # Unsafe calls with a cookie session but without a token are refused (no CSRF exposure).
    assert client.post("/api/challenges/x/join", json={"accept_rules": True}).status_code == 401


def test_participant_flow_over_the_api(
    client: Any, make_challenge: Any, make_user: Any, settings: Any, engine: Any, stub_worker: Any
) -> None:
    challenge = make_challenge()
    make_user("uma")
    headers = _token(client, "uma")
    listed = client.get("/api/challenges").json()
    assert [c["slug"] for c in listed] == [challenge.slug]
    assert listed[0]["joined"] is False
    assert listed[0]["status"] == "running"
    slug = challenge.slug
    assert (
        client.get(f"/api/challenges/{slug}/files/train.parquet", headers=headers).status_code
        == 404
    )
    r = client.post(f"/api/challenges/{slug}/join", json={}, headers=headers)
    assert r.status_code == 400
    assert "accept_rules" in r.json()["message"]
    r = client.post(f"/api/challenges/{slug}/join", json={"accept_rules": True}, headers=headers)
    assert r.json()["joined"] is True
    assert r.json()["quota"]["left_today"] == 3
    r = client.get(f"/api/challenges/{slug}/files/test.parquet?format=csv", headers=headers)
    assert r.status_code == 200
    assert r.text.split(",", 1)[0].strip('"') == "EventId"
    body = perfect_submission(settings, slug).to_csv(index=False).encode()
    r = client.post(
        f"/api/challenges/{slug}/submissions",
        files={"file": ("pred.csv", body, "text/csv")},
        data={"message": "perfect"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    sub_id = r.json()["id"]
    assert r.json()["status"] == "received"
    assert r.json()["message"] == "perfect"
    stub_worker.drain()
    sub = client.get(f"/api/submissions/{sub_id}", headers=headers).json()
    assert sub["status"] == "scored"
    assert sub["public_score"] > 1.0
    mine = client.get(f"/api/challenges/{slug}/submissions", headers=headers).json()
    assert [s["id"] for s in mine] == [sub_id]
    board = client.get(f"/api/challenges/{slug}/leaderboard").json()
    assert board["entries"][0]["participant"] == "uma"
    assert board["entries"][0]["score"] == pytest.approx(sub["public_score"])
    r = client.get(f"/api/challenges/{slug}/leaderboard?board=private")
    assert r.status_code == 404
    assert "revealed" in r.json()["message"]
    r = client.get(f"/api/challenges/{slug}/leaderboard?phase=nope")
    assert r.status_code == 404
    assert "competition" in r.json()["message"]
    assert client.get(f"/api/challenges/{slug}/leaderboard?board=x").status_code == 400
    # Someone else's submission looks missing.
    make_user("victor")
    assert (
        client.get(f"/api/submissions/{sub_id}", headers=_token(client, "victor")).status_code
        == 404
    )


def test_organizer_routes(
    client: Any, make_challenge: Any, make_user: Any, settings: Any, stub_worker: Any, engine: Any
) -> None:
    owner = make_user("olga", role="organizer")
    make_user("other", role="organizer")
    challenge = make_challenge(owner=owner)
    make_user("walt")
    walt = _token(client, "walt")
    client.post(f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True}, headers=walt)
    body = random_submission(settings, challenge.slug).to_csv(index=False).encode()
    client.post(
        f"/api/challenges/{challenge.slug}/submissions?filename=p.csv",
        content=body,
        headers=walt,
    )
    stub_worker.drain()
    olga = _token(client, "olga")
    mine = client.get("/api/organize/challenges", headers=olga).json()
    assert [c["slug"] for c in mine] == [challenge.slug]
    assert mine[0]["submission_counts"] == {"scored": 1}
    assert client.get("/api/organize/challenges", headers=_token(client, "other")).json() == []
    assert client.get("/api/organize/challenges", headers=walt).status_code == 404
    subs = client.get(f"/api/challenges/{challenge.slug}/all-submissions", headers=olga).json()
    assert subs[0]["participant"] == "walt"
    assert subs[0]["private_score"] is not None
    for who in (walt, _token(client, "other")):
        r = client.get(f"/api/challenges/{challenge.slug}/all-submissions", headers=who)
        assert r.status_code == 404
        assert (
            client.post(f"/api/challenges/{challenge.slug}/reveal", headers=who).status_code == 404
        )
    confirm = {"confirm": challenge.slug}
    # Refused while the phase is open, saying when it becomes possible.
    r = client.post(f"/api/challenges/{challenge.slug}/reveal", headers=olga, json=confirm)
    assert r.status_code == 403
    assert "once phase 'competition' closes, at" in r.json()["message"]
    with Session(engine) as s:
        for phase in s.exec(select(Phase).where(Phase.challenge_id == challenge.id)):
            phase.closes_at = phase.opens_at + dt.timedelta(hours=12)
            s.add(phase)
        s.commit()
    r = client.post(f"/api/challenges/{challenge.slug}/reveal", headers=olga, json={})
    assert r.status_code == 400  # not confirmed
    r = client.post(f"/api/challenges/{challenge.slug}/reveal", headers=olga, json=confirm)
    assert r.status_code == 200
    assert r.json()["revealed_at"]
    board = client.get(f"/api/challenges/{challenge.slug}/leaderboard?board=private").json()
    assert board["entries"][0]["participant"] == "walt"
    assert board["entries"][0]["score"] == pytest.approx(subs[0]["private_score"])


def test_submission_rate_limit(
    client: Any, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    challenge = make_challenge()
    make_user("xena")
    headers = _token(client, "xena")
    client.post(
        f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True}, headers=headers
    )
    url = f"/api/challenges/{challenge.slug}/submissions?filename=p.csv"
    codes = [
        client.post(url, content=b"", headers=headers).status_code
        for _ in range(uploads.SUBMIT_RATE_PER_MINUTE)
    ]
    assert codes == [400] * uploads.SUBMIT_RATE_PER_MINUTE  # empty files, refused but counted
    r = client.post(url, content=b"x", headers=headers)
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    assert "try again in" in r.json()["message"]
    with Session(engine) as session:
        assert session.exec(select(Submission)).all() == []
