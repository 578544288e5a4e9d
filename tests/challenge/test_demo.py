"""The demo seeding that `make demo` runs: accounts and challenges, idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, col, select

from challenge.challenges import challenge_status, phases_of
from challenge.db import make_engine
from challenge.demo import BOTS, DEMO_ACCOUNTS, hackathon_info, seed_demo
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
        # three per bot in each of the two bot challenges, and one each in the demo's hackathon.
        subs = session.exec(select(Submission)).all()
        assert len(subs) == 2 * 3 * len(BOTS) + len(BOTS)
        assert {s.status for s in subs} == {"received"}
        assert not any(s.is_late for s in subs)
        # The hackathon is running now, inside the competition, and takes its uploads.
        demo = challenges["higgsml-demo"]
        phases = {p.name: p for p in phases_of(session, demo)}
        assert challenge_status(list(phases.values())).submitting_phase == phases["hackathon"]
        hack = [s for s in subs if s.phase_id == phases["hackathon"].id]
        assert sorted(s.user_id for s in hack) == sorted(
            u.id for u in session.exec(select(User).where(col(User.username).startswith("bot-")))
        )
        competition = [s for s in subs if s.phase_id == phases["competition"].id]
        assert len(competition) == 3 * len(BOTS)
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
