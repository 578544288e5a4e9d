"""The demo seeding that `make demo` runs: accounts and challenges, idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from challenge.challenges import challenge_status, phases_of
from challenge.db import make_engine
from challenge.demo import BOTS, DEMO_ACCOUNTS, seed_demo
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
        assert challenge_status(phases_of(session, challenges["higgsml-replay"])).label == "finished"
        # Bots' uploads wait in 'received' for the worker; none is late, none doubled by a re-seed.
        subs = session.exec(select(Submission)).all()
        assert len(subs) == 2 * 3 * len(BOTS)
        assert {s.status for s in subs} == {"received"}
        assert not any(s.is_late for s in subs)
    engine.dispose()
