"""The demo seeding that `make demo` runs: accounts and challenges, idempotent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlmodel import Session, col, select

from challenge.challenges import challenge_status, phases_of, private_scores_visible
from challenge.db import make_engine
from challenge.demo import BOTS, DEMO_ACCOUNTS, PROBER, PROBER_FITS, hackathon_info, seed_demo
from challenge.models import Challenge, Submission, User
from challenge.security import verify_password


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seed_demo_twice(settings_factory: Any, database_url: str) -> None:
    settings = settings_factory(database_url)
    seed_demo(settings, events=2000)
    seed_demo(settings, events=2000)  # a restart must not fail or duplicate
    engine = make_engine(database_url)
    with Session(engine) as session:
        for _role, (name, password) in DEMO_ACCOUNTS.items():
            user = session.exec(select(User).where(User.username == name)).one()
            assert verify_password(user.password_hash, password)
        challenges = {c.slug: c for c in session.exec(select(Challenge))}
        assert set(challenges) == {"higgsml-demo", "higgsml-2027", "higgsml-replay"}
        assert all(c.state == "ready" for c in challenges.values())
        assert challenge_status(phases_of(session, challenges["higgsml-demo"])).label == "running"
        assert challenge_status(phases_of(session, challenges["higgsml-2027"])).label == "upcoming"
        assert (
            challenge_status(phases_of(session, challenges["higgsml-replay"])).label == "finished"
        )
        # Bots' uploads wait in 'received' for the worker; none is late, none doubled by a re-seed:
        # three per bot (and the prober's) in each of the two bot challenges, and one per honest
        # bot in the demo's hackathon.
        subs = session.exec(select(Submission)).all()
        assert len(subs) == 2 * (3 * len(BOTS) + len(PROBER_FITS)) + len(BOTS)
        assert {s.status for s in subs} == {"received"}
        assert not any(s.is_late for s in subs)
        # The hackathon is running now, inside the competition, and takes its uploads.
        demo = challenges["higgsml-demo"]
        phases = {p.name: p for p in phases_of(session, demo)}
        assert challenge_status(list(phases.values())).submitting_phase == phases["hackathon"]
        hack = [s for s in subs if s.phase_id == phases["hackathon"].id]
        assert sorted(s.user_id for s in hack) == sorted(
            u.id
            for u in session.exec(select(User).where(col(User.username).startswith("bot-")))
            if u.username != PROBER  # the prober stays out of the hackathon
        )
        competition = [s for s in subs if s.phase_id == phases["competition"].id]
        assert len(competition) == 3 * len(BOTS) + len(PROBER_FITS)
        # The hackathon ranks on the competition's private rows: its close reveals nothing; the
        # competition's does (docs/leaderboards.md, "Who sees private scores").
        hack_closes, comp_closes = phases["hackathon"].closes_at, phases["competition"].closes_at
        assert hack_closes is not None
        assert comp_closes is not None
        after = dt.timedelta(minutes=1)
        assert not private_scores_visible(session, demo, now=hack_closes + after)
        assert private_scores_visible(session, demo, now=comp_closes + after)
        assert private_scores_visible(session, challenges["higgsml-replay"])
        assert not private_scores_visible(session, challenges["higgsml-2027"])
    info = hackathon_info(settings)
    assert info is not None
    assert info["code"] == phases["hackathon"].registration_code
    assert len(info["code"]) >= 6
    assert info["room"] == "/c/higgsml-demo/room?phase=hackathon"
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_hackathon_room_and_check_in(settings_factory: Any, database_url: str) -> None:
    from starlette.testclient import TestClient

    from challenge.app import create_app
    from tests.challenge.conftest import csrf_of

    settings = settings_factory(database_url)
    seed_demo(settings, events=2000)
    info = hackathon_info(settings)
    assert info is not None
    engine = make_engine(database_url)
    with TestClient(create_app(settings, engine), base_url="http://testserver") as client:
        room = client.get(info["room"])
        assert room.status_code == 200
        assert "hackathon" in room.text
        name, password = DEMO_ACCOUNTS["participant"]
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = client.post(
            "/login",
            data={"login": name, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303
        r = client.post(
            "/c/higgsml-demo/checkin",
            data={
                "csrf_token": csrf_of(client, "/c/higgsml-demo"),
                "code": info["code"],
                "accept": "yes",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        assert "registered on site for hackathon" in client.get("/c/higgsml-demo").text
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_replay_has_a_shake_up(settings_factory: Any, database_url: str) -> None:
    """The finished challenge's bots, graded for real: public and private ranks differ (the
    prober tops the public board and falls on the private one), so the shake-up shows movement.
    """
    from pathlib import Path

    from challenge import storage
    from challenge.db import session_scope
    from challenge.leaderboard import private_leaderboard, public_leaderboard
    from challenge.submissions import claim_for_scoring, record_result
    from scoring.formats import SubmissionFormat
    from scoring.grading import grade
    from scoring.metrics import MetricSpec

    settings = settings_factory(database_url)
    seed_demo(settings, events=2000)
    engine = make_engine(database_url)
    slug = "higgsml-replay"
    with Session(engine) as session:
        replay = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        fmt = SubmissionFormat.from_dict(replay.submission_format)
        metric = MetricSpec.from_dict(replay.metric)
        uploads = [
            (s.id, s.stored_path)
            for s in session.exec(select(Submission).where(Submission.challenge_id == replay.id))
        ]
    for sub_id, path in uploads:
        assert sub_id is not None
        result = grade(
            Path(path), storage.solution_path(settings, slug), fmt, metric, bootstrap=0
        ).to_dict()
        assert result["status"] == "scored", result
        with session_scope(engine) as session:
            assert claim_for_scoring(session, sub_id, 60)
        with session_scope(engine) as session:
            assert record_result(session, sub_id, result)
    with Session(engine) as session:
        replay = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        (phase,) = [p for p in phases_of(session, replay) if p.accepts_submissions]
        public = public_leaderboard(session, replay, phase, True)
        private = private_leaderboard(session, replay, phase, True)
    assert len(public) == len(private) == len(BOTS) + 1
    assert public[0].team_name == PROBER
    ranks = {e.team_name: (e.public_rank, e.rank) for e in private}
    assert ranks[PROBER][0] == 1
    assert ranks[PROBER][1] is not None
    assert ranks[PROBER][1] > 1
    assert sum(1 for pub, priv in ranks.values() if pub != priv) >= 2
    engine.dispose()
