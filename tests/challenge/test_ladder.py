"""Ladder mode (Blum & Hardt 2015): a participant never sees the exact public score of a
submission that did not beat the team's shown score by more than the margin, wherever scores are
shown (submission list page, JSON API, EvalAI API, history plot, board, CSV). Without the Ladder
the exact scores show everywhere."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session, select

from challenge.db import session_scope
from challenge.evalai import submission_object
from challenge.leaderboard import participant_scores, team_score_history
from challenge.models import Challenge, Phase, Submission
from tests.challenge.conftest import PASSWORD, login
from tests.challenge.test_teams import joined, score, upload

T0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)
SCORES = (1.0, 1.05, 1.2, 1.25)  # margin 0.1: 1.05 and 1.25 are held back
HIDDEN = ("1.05000", "1.25000")


@pytest.mark.parametrize("ladder", [True, False])
def test_participant_sees_ladder_values_only(  # type: ignore[no-untyped-def]
    ladder, client, make_challenge, make_user, engine
):
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org, per_day=10, total=50)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {"reveal": "at_close", "ladder": ladder, "ladder_margin": 0.1}
        s.add(ch)
    ann = make_user("ann")
    joined(engine, challenge, ann)
    ids = []
    for i, value in enumerate(SCORES):
        ids.append(upload(engine, challenge, ann, now=T0 + dt.timedelta(minutes=i)))
        score(engine, ids[-1], value, half=0.02)

    with Session(engine) as s:
        subs = [s.get(Submission, i) for i in ids]
        shown = participant_scores(s, subs)  # type: ignore[arg-type]
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        assert subs[0] is not None
        assert subs[0].team_id is not None
        history = [v for _, v, _ in team_score_history(s, subs[0].team_id, phase)]
        evalai = [submission_object(sub, "ann")["public_score"] for sub in subs]  # type: ignore[arg-type]
    expected = [1.0, 1.0, 1.2, 1.2] if ladder else list(SCORES)
    assert [shown[i].score for i in ids] == expected
    assert [shown[i].exact for i in ids] == ([True, False, True, False] if ladder else [True] * 4)
    # The interval goes with the value shown: the held-back one's midpoint would leak its score.
    assert (shown[ids[1]].ci_low, shown[ids[1]].ci_high) == (
        (0.98, 1.02) if ladder else (1.03, 1.07)
    )
    assert history == expected
    assert evalai == expected

    # The JSON API (also what `podium submit` prints).
    token = client.post(
        "/api/auth/token", json={"login": "ann", "password": PASSWORD, "name": "t"}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    mine = client.get(f"/api/challenges/{challenge.slug}/submissions", headers=headers).json()
    by_id = {m["id"]: m for m in mine}
    assert [by_id[i]["public_score"] for i in ids] == expected
    one = client.get(f"/api/submissions/{ids[1]}", headers=headers).json()
    assert one["public_score"] == expected[1]
    assert one["public_ci"] == ([0.98, 1.02] if ladder else [1.03, 1.07])

    # The submissions list on the challenge page.
    login(client, "ann")
    for path in (f"/c/{challenge.slug}/submissions", f"/c/{challenge.slug}"):
        html = client.get(path).text
        for value in HIDDEN:
            assert (value in html) is (not ladder), (path, value)
        assert ("not better than your best by the margin" in html) is ladder
    # The board and its CSV show the team's shown score.
    board = client.get(f"/c/{challenge.slug}/leaderboard.csv").text.splitlines()
    assert float(board[1].split(",")[2]) == (1.2 if ladder else 1.25)

    # The organizer's list of every submission keeps the exact scores.
    client.cookies.clear()
    token = client.post(
        "/api/auth/token", json={"login": "org", "password": PASSWORD, "name": "t"}
    ).json()["token"]
    every = client.get(
        f"/api/challenges/{challenge.slug}/all-submissions",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert sorted(e["public_score"] for e in every) == sorted(SCORES)
