"""The organizer's page of every submission: filters, the hidden error detail, rescoring one."""

from __future__ import annotations

import html
from typing import Any

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from challenge.db import session_scope
from challenge.models import Phase, RescoreRun, Submission, Team
from tests.challenge.conftest import csrf_of, login
from tests.challenge.test_teams import joined, score, upload

SECRET_TRACE = "Traceback: KeyError 'RankOrder' at line 42 of metric.py"


@pytest.fixture
def world(make_challenge: Any, make_user: Any, engine: Any) -> dict[str, Any]:
    """orga's challenge; ann (scored) and ben (error with an organizer-only trace) took part."""
    orga = make_user("orga", role="organizer")
    make_user("other", role="organizer")
    make_user("root", role="admin")
    ann, ben = make_user("ann"), make_user("ben")
    challenge = make_challenge(owner=orga, per_day=10, total=50)
    joined(engine, challenge, ann, ben)
    a1 = upload(engine, challenge, ann)
    score(engine, a1, 0.5)
    b1 = upload(engine, challenge, ben)
    with session_scope(engine) as s:
        sub = s.get(Submission, b1)
        assert sub is not None
        sub.status = "error"
        sub.error_message = "Scoring failed; the organizers have been told."
        sub.error_detail = SECRET_TRACE
        s.add(sub)
    a2 = upload(engine, challenge, ann)  # still received
    with session_scope(engine) as s:
        teams = {
            t.name: t.id for t in s.exec(select(Team).where(Team.challenge_id == challenge.id))
        }
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        ben_team = s.get(Submission, b1).team_id  # type: ignore[union-attr]
    return {"challenge": challenge, "a1": a1, "b1": b1, "a2": a2, "teams": teams,
            "phase_id": phase.id, "ben_team": ben_team}


def ids_on(page: str) -> set[int]:
    return {int(x.split('"', 1)[0]) for x in page.split('<tr id="sub-')[1:]}


@pytest.mark.parametrize("who", ["ann", "other"])
def test_participants_and_other_organizers_get_404(
    client: TestClient, world: dict[str, Any], engine: Any, who: str
) -> None:
    login(client, who)
    base = f"/organize/{world['challenge'].slug}/submissions"
    assert client.get(base).status_code == 404
    r = client.get(f"{base}/{world['b1']}")
    assert r.status_code == 404
    assert SECRET_TRACE not in html.unescape(r.text)
    missing = client.get(f"{base}/999999")
    assert missing.status_code == 404
    r = client.post(f"{base}/{world['a1']}/rescore", data={"csrf_token": csrf_of(client)})
    assert r.status_code == 404
    with session_scope(engine) as s:
        assert s.exec(select(RescoreRun)).all() == []


@pytest.mark.parametrize("who", ["orga", "root"])
def test_owner_and_admin_see_every_submission_and_filter(
    client: TestClient, world: dict[str, Any], who: str
) -> None:
    login(client, who)
    slug = world["challenge"].slug
    r = client.get(f"/organize/{slug}/submissions")
    assert r.status_code == 200
    assert ids_on(r.text) == {world["a1"], world["b1"], world["a2"]}
    r = client.get(f"/organize/{slug}/submissions?status=error")
    assert ids_on(r.text) == {world["b1"]}
    r = client.get(f"/organize/{slug}/submissions?status=received")
    assert ids_on(r.text) == {world["a2"]}
    r = client.get(f"/organize/{slug}/submissions?team={world['ben_team']}")
    assert ids_on(r.text) == {world["b1"]}
    r = client.get(f"/organize/{slug}/submissions?phase={world['phase_id']}&status=scored")
    assert ids_on(r.text) == {world["a1"]}
    # The error detail is on the submission's organizer page, not on the participant's.
    r = client.get(f"/organize/{slug}/submissions/{world['b1']}")
    assert r.status_code == 200
    assert SECRET_TRACE in html.unescape(r.text)
    # The dashboard links the page.
    assert f'href="/organize/{slug}/submissions"' in client.get("/organize").text


def test_participant_never_sees_the_error_detail(client: TestClient, world: dict[str, Any]) -> None:
    login(client, "ben")
    page = html.unescape(client.get(f"/c/{world['challenge'].slug}").text)
    assert SECRET_TRACE not in page


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("team=abc", "team"),
        ("team=999999", "team"),
        ("phase=-1", "phase"),
        ("phase=999999", "phase"),
        ("page=0", "page"),
        ("page=x", "page"),
    ],
)
def test_invalid_filters_answer_400_with_a_message(
    client: TestClient, world: dict[str, Any], query: str, field: str
) -> None:
    login(client, "orga")
    r = client.get(f"/organize/{world['challenge'].slug}/submissions?{query}")
    assert r.status_code == 400
    assert field in r.text


def test_pages(client: TestClient, world: dict[str, Any], engine: Any, make_user: Any) -> None:
    from challenge.views import organizer

    login(client, "orga")
    slug = world["challenge"].slug
    old = organizer.PAGE_SIZE
    organizer.PAGE_SIZE = 2
    try:
        first = client.get(f"/organize/{slug}/submissions?status=")
        second = client.get(f"/organize/{slug}/submissions?page=2")
        beyond = client.get(f"/organize/{slug}/submissions?page=3")
    finally:
        organizer.PAGE_SIZE = old
    assert ids_on(first.text) == {world["a2"], world["b1"]}  # newest first
    assert "page 1 of 2" in first.text
    assert 'rel="next" href="?page=2"' in first.text
    assert ids_on(second.text) == {world["a1"]}
    assert ids_on(beyond.text) == set()


def test_rescore_one_needs_csrf_and_stores_a_run(
    client: TestClient, world: dict[str, Any], engine: Any
) -> None:
    login(client, "orga")
    slug = world["challenge"].slug
    url = f"/organize/{slug}/submissions/{world['b1']}/rescore"
    assert client.post(url, data={}).status_code == 400
    with session_scope(engine) as s:
        assert s.exec(select(RescoreRun)).all() == []
    token = csrf_of(client, f"/organize/{slug}/submissions/{world['b1']}")
    r = client.post(url, data={"csrf_token": token})
    assert r.status_code == 200
    assert f"Rescoring submission #{world['b1']}" in r.text
    with session_scope(engine) as s:
        runs = s.exec(select(RescoreRun)).all()
        assert [(run.submission_id, run.total) for run in runs] == [(world["b1"], 1)]
    # A submission still queued has nothing to rescore: said, not stored.
    r = client.post(
        f"/organize/{slug}/submissions/{world['a2']}/rescore", data={"csrf_token": token}
    )
    assert r.status_code == 200
    assert "still received" in r.text
    with session_scope(engine) as s:
        assert len(s.exec(select(RescoreRun)).all()) == 1


def test_a_submission_of_another_challenge_is_404_under_my_slug(
    client: TestClient, world: dict[str, Any], make_challenge: Any, make_user: Any, engine: Any
) -> None:
    from challenge.models import User

    with session_scope(engine) as s:
        other = s.exec(select(User).where(User.username == "other")).one()
        s.expunge(other)
    theirs = make_challenge(slug="their-higgs", owner=other)
    cid = make_user("cid")
    joined(engine, theirs, cid)
    foreign = upload(engine, theirs, cid)
    score(engine, foreign, 0.25)
    login(client, "orga")
    slug = world["challenge"].slug
    assert client.get(f"/organize/{slug}/submissions/{foreign}").status_code == 404
    r = client.post(
        f"/organize/{slug}/submissions/{foreign}/rescore", data={"csrf_token": csrf_of(client)}
    )
    assert r.status_code == 404
    with session_scope(engine) as s:
        assert s.exec(select(RescoreRun)).all() == []


def _disqualified(engine: Any, team_id: int) -> Any:
    with session_scope(engine) as s:
        team = s.get(Team, team_id)
        assert team is not None
        return team.disqualified_at


@pytest.mark.parametrize("who", ["orga", "root"])
def test_disqualify_asks_for_confirmation(
    client: TestClient, world: dict[str, Any], engine: Any, who: str
) -> None:
    login(client, who)
    slug = world["challenge"].slug
    team = world["ben_team"]
    page = client.get(f"/organize/{slug}/lifecycle")
    assert f'href="/organize/{slug}/disqualify?team_id={team}"' in page.text
    r = client.get(f"/organize/{slug}/disqualify?team_id={team}")
    assert r.status_code == 200
    assert 'name="confirm"' in r.text
    token = csrf_of(client, f"/organize/{slug}/disqualify?team_id={team}")
    # Without the confirmation: refused, nothing stored.
    r = client.post(
        f"/organize/{slug}/disqualify", data={"csrf_token": token, "team_id": team, "reason": "x"}
    )
    assert r.status_code == 400
    assert "confirm" in r.text
    assert _disqualified(engine, team) is None
    # Without CSRF: refused.
    r = client.post(
        f"/organize/{slug}/disqualify", data={"team_id": team, "reason": "x", "confirm": "yes"}
    )
    assert r.status_code == 400
    assert _disqualified(engine, team) is None
    r = client.post(
        f"/organize/{slug}/disqualify",
        data={"csrf_token": token, "team_id": team, "reason": "shared labels", "confirm": "yes"},
    )
    assert r.status_code == 200
    with session_scope(engine) as s:
        stored = s.get(Team, team)
        assert stored is not None
        assert stored.disqualified_at is not None
        assert stored.disqualified_reason == "shared labels"


@pytest.mark.parametrize("who", ["ann", "other"])
def test_disqualify_confirmation_is_404_to_others(
    client: TestClient, world: dict[str, Any], engine: Any, who: str
) -> None:
    login(client, who)
    slug = world["challenge"].slug
    team = world["ben_team"]
    assert client.get(f"/organize/{slug}/disqualify?team_id={team}").status_code == 404
    r = client.post(
        f"/organize/{slug}/disqualify",
        data={"csrf_token": csrf_of(client), "team_id": team, "reason": "x", "confirm": "yes"},
    )
    assert r.status_code == 404
    assert _disqualified(engine, team) is None


def test_disqualify_page_of_another_challenges_team_is_404(
    client: TestClient, world: dict[str, Any], make_challenge: Any, make_user: Any, engine: Any
) -> None:
    theirs = make_challenge(slug="their-higgs")
    cid = make_user("cid")
    joined(engine, theirs, cid)
    with session_scope(engine) as s:
        foreign = s.exec(select(Team).where(Team.challenge_id == theirs.id)).one().id
    login(client, "orga")
    slug = world["challenge"].slug
    assert client.get(f"/organize/{slug}/disqualify?team_id={foreign}").status_code == 404
    assert client.get(f"/organize/{slug}/disqualify?team_id=abc").status_code == 404
