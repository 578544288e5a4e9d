"""The reconciler as the demo's log shows it (found by the QA pass): its actor returned a count,
so dramatiq warned every 30 s that no Results middleware stored it; and the demo's seeded uploads
(never sent) were reported as "re-sent 28 stuck submission(s)" at start."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from challenge import storage, tasks
from challenge.db import session_scope
from challenge.models import Challenge, Submission, User, utcnow
from challenge.settings import Settings
from challenge.submissions import create_submission
from tests.challenge.conftest import random_submission
from tests.challenge.stub_workers import JOIN_TIMEOUT_MS, stub_broker_and_worker
from tests.challenge.test_queue import joined, submit_frame


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_reconcile_actor_returns_nothing(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with stub_broker_and_worker() as (broker, worker), caplog.at_level(logging.WARNING):
        tasks.reconcile.send()
        broker.join("maintenance", timeout=JOIN_TIMEOUT_MS, fail_fast=True)  # type: ignore[call-arg]
        worker.join()
    assert tasks.reconcile.fn() is None
    assert not [r for r in caplog.records if "Results middleware" in r.getMessage()]


def _set(engine: sa.Engine, sid: int, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(sa.update(Submission).where(col(Submission.id) == sid).values(**values))


def test_only_lost_submissions_are_sent_and_only_stuck_ones_are_called_stuck(
    app: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    challenge = make_challenge()
    user = joined(engine, challenge, make_user("ann"))
    sid = submit_frame(
        settings, engine, challenge, user, random_submission(settings, challenge.slug)
    )
    caplog.set_level(logging.INFO, logger="challenge.tasks")

    # Just uploaded: its upload is sending it right now; not lost, not stuck.
    assert tasks.reconcile_once() == 0
    # Never sent and older than the grace period (Redis was down at upload): sent, not "stuck".
    _set(
        engine, sid, created_at=utcnow() - dt.timedelta(seconds=tasks.NEVER_SENT_GRACE_SECONDS + 1)
    )
    caplog.clear()
    assert tasks.reconcile_once() == 1
    assert "never queued before" in caplog.text
    assert "stuck" not in caplog.text
    assert tasks.reconcile_once() == 0  # sent now: waits reconcile_after_seconds
    # Sent long ago and still 'received' (the message was lost): that one is stuck.
    old = utcnow() - dt.timedelta(seconds=settings.reconcile_after_seconds + 1)
    _set(engine, sid, enqueued_at=old)
    caplog.clear()
    assert tasks.reconcile_once() == 1
    assert "re-sent 1 stuck submission(s)" in caplog.text
    assert [r.levelno for r in caplog.records if "stuck" in r.getMessage()] == [logging.WARNING]


def test_seeded_uploads_are_sent_without_a_warning(
    app: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As `podium demo` seeds its bots' uploads: dated in the past, never sent."""
    challenge = make_challenge(opens_days=-2)
    joined(engine, challenge, make_user("bot"))
    for hours in (30, 20, 10):
        path = storage.new_upload_path(settings, challenge.slug, "pred.csv")
        random_submission(settings, challenge.slug, seed=hours).to_csv(path, index=False)
        with session_scope(engine) as session:
            create_submission(
                session,
                challenge=session.exec(select(Challenge).where(Challenge.id == challenge.id)).one(),
                user=session.exec(select(User).where(User.username == "bot")).one(),
                stored_path=path,
                filename=path.name,
                size_bytes=path.stat().st_size,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                now=utcnow() - dt.timedelta(hours=hours),
            )
    caplog.set_level(logging.INFO, logger="challenge.tasks")
    assert tasks.reconcile_once() == 3
    assert "sent 3 submission(s) never queued before" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
