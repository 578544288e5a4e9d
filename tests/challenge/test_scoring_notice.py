"""The "being scored" notice follows its submission: a JSON status route, and a link without JS."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select
from starlette.testclient import TestClient

from challenge.models import Submission
from tests.challenge.conftest import csrf_of, login, random_submission


def test_notice_points_at_its_status_and_the_status_follows_scoring(
    client: TestClient, make_challenge: Any, make_user: Any, settings: Any, engine: Any,
    stub_worker: Any,
) -> None:
    challenge = make_challenge()
    slug = challenge.slug
    make_user("ann")
    make_user("ben")
    login(client, "ann")
    r = client.post(
        f"/c/{slug}/join",
        data={"csrf_token": csrf_of(client, f"/c/{slug}"), "accept": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    body = random_submission(settings, slug).to_csv(index=False).encode()
    r = client.post(
        f"/c/{slug}/submit",
        data={"csrf_token": csrf_of(client, f"/c/{slug}")},
        files={"file": ("pred.csv", body, "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as s:
        sid = s.exec(select(Submission)).one().id
    page = client.get(f"/c/{slug}").text
    status_url = f"/c/{slug}/submissions/{sid}/status"
    assert f'data-status-url="{status_url}"' in page
    assert f'href="/c/{slug}?submission={sid}#sub-{sid}">Show the result</a>' in page  # no-JS way
    before = client.get(status_url).json()
    assert before["status"] in ("received", "scoring")
    assert before["done"] is False
    assert "is being scored" in before["text"]
    stub_worker.drain()
    after = client.get(status_url)
    assert after.headers["cache-control"] == "no-store"
    data = after.json()
    with Session(engine) as s:
        sub = s.get(Submission, sid)
        assert sub is not None
        assert sub.public_score is not None
    assert data["status"] == "scored"
    assert data["done"] is True
    assert data["public_score"] == sub.public_score
    assert data["text"] == f"Submission #{sid} (competition) is scored: public score {sub.public_score:.5f}."
    assert "private" not in data
    assert str(round(sub.private_score or 0, 5)) not in data["text"]
    # The no-JS link lands on the page whose table holds the row with the score.
    assert f'id="sub-{sid}"' in client.get(f"/c/{slug}?submission={sid}").text

    # Someone else's submission answers like a missing one.
    client.post("/logout", data={"csrf_token": csrf_of(client, f"/c/{slug}")})
    login(client, "ben")
    assert client.get(status_url).status_code == 404
    assert client.get(f"/c/{slug}/submissions/999999/status").status_code == 404
