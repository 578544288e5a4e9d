"""Dramatiq actors. They take ids, are safe to run twice, and are sent only after a commit."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import sqlalchemy as sa
from sqlmodel import col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before any actor exists
from challenge import storage
from challenge.db import make_engine, session_scope
from challenge.models import Challenge, Submission, utcnow
from challenge.settings import Settings, load_settings
from challenge.submissions import claim_for_scoring, record_result
from scoring.formats import SubmissionFormat
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool

log = logging.getLogger(__name__)
MAX_INFRA_RETRIES = 5


@dataclass
class WorkerContext:
    settings: Settings
    engine: sa.Engine
    _pool: SandboxPool | None = None
    _lock: threading.Lock = threading.Lock()  # noqa: RUF009 - one lock per context is intended

    @property
    def pool(self) -> SandboxPool:
        with self._lock:
            if self._pool is None:
                self._pool = SandboxPool(
                    Limits(
                        memory_mb=self.settings.sandbox_memory_mb,
                        cpu_seconds=self.settings.sandbox_cpu_seconds,
                        wall_seconds=self.settings.sandbox_wall_seconds,
                    )
                )
            return self._pool


_context: WorkerContext | None = None


def configure(settings: Settings, engine: sa.Engine | None = None) -> WorkerContext:
    """Set what the actors use (the worker does it lazily from the environment; tests explicitly)."""
    global _context
    _context = WorkerContext(settings=settings, engine=engine or make_engine(settings.database_url))
    return _context


def context() -> WorkerContext:
    if _context is None:
        return configure(load_settings())
    return _context


def lease_seconds(settings: Settings) -> float:
    return settings.sandbox_wall_seconds + 30


class InfrastructureError(Exception):
    """A failure that is not the participant's fault and may pass: retry with backoff."""


@dramatiq.actor(
    queue_name="scoring", max_retries=MAX_INFRA_RETRIES, min_backoff=500, max_backoff=30_000
)
def score_submission(submission_id: int) -> None:
    """Grade one submission in the sandbox and store its scores. Idempotent."""
    ctx = context()
    with session_scope(ctx.engine) as session:
        if not claim_for_scoring(session, submission_id, lease_seconds(ctx.settings)):
            log.info("submission %s already claimed or finished; skipping", submission_id)
            return
    with session_scope(ctx.engine) as session:
        sub = session.get(Submission, submission_id)
        assert sub is not None
        challenge = session.get(Challenge, sub.challenge_id)
        assert challenge is not None
    try:
        result = ctx.pool.grade(
            Path(sub.stored_path),
            storage.solution_path(ctx.settings, challenge.slug),
            SubmissionFormat.from_dict(challenge.submission_format),
            MetricSpec.from_dict(challenge.metric),
            bootstrap=ctx.settings.score_bootstrap,
            seed=submission_id,
        )
        outcome: dict[str, Any] = result.to_dict()
    except Exception as exc:
        # The pool itself failed (not the grading code): let dramatiq retry, then give up cleanly.
        log.exception("sandbox failure on submission %s", submission_id)
        retries = 0
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        if message is not None:
            retries = int(message.options.get("retries", 0))
        if retries < MAX_INFRA_RETRIES:
            with session_scope(ctx.engine) as session:
                session.execute(
                    sa.update(Submission)
                    .where(col(Submission.id) == submission_id, col(Submission.status) == "scoring")
                    .values(status="received")
                )
            raise InfrastructureError(str(exc)) from exc
        outcome = {
            "status": "error",
            "message": "Scoring failed on our side. The organizers have been told; it will not count "
            "against your quota once rescored.",
            "detail": traceback.format_exc(),
        }
    with session_scope(ctx.engine) as session:
        record_result(session, submission_id, outcome)


@dramatiq.actor(queue_name="prepare", max_retries=0, time_limit=6 * 3600 * 1000)
def prepare_challenge_job(challenge_id: int, dataset_path: str) -> None:
    """Split a new challenge's dataset and publish it (web uploads of bundles use this)."""
    from challenge.challenges import prepare_challenge

    ctx = context()
    with session_scope(ctx.engine) as session:
        challenge = session.get(Challenge, challenge_id)
        if challenge is None or challenge.state == "ready":
            return
        try:
            prepare_challenge(ctx.settings, challenge, Path(dataset_path))
        except ValueError as exc:
            challenge.state = "failed"
            challenge.state_message = str(exc)
        session.add(challenge)


@dramatiq.actor(queue_name="maintenance", max_retries=0)
def reconcile() -> int:
    """Re-send submissions stuck in 'received' or 'scoring' (lost message, dead worker, empty Redis)."""
    ctx = context()
    now = utcnow()
    received_deadline = now - dt.timedelta(seconds=ctx.settings.reconcile_after_seconds)
    scoring_deadline = now - dt.timedelta(seconds=lease_seconds(ctx.settings))
    with session_scope(ctx.engine) as session:
        stuck = session.exec(
            select(Submission.id).where(
                sa.or_(
                    sa.and_(
                        col(Submission.status) == "received",
                        sa.or_(
                            col(Submission.enqueued_at).is_(None),
                            col(Submission.enqueued_at) < received_deadline,
                        ),
                    ),
                    sa.and_(
                        col(Submission.status) == "scoring",
                        col(Submission.scoring_started_at) < scoring_deadline,
                    ),
                )
            )
        ).all()
        ids = [int(i) for i in stuck if i is not None]
        if ids:
            session.execute(
                sa.update(Submission).where(col(Submission.id).in_(ids)).values(enqueued_at=now)
            )
    for submission_id in ids:
        score_submission.send(submission_id)
    if ids:
        log.warning("reconciler re-sent %d stuck submission(s): %s", len(ids), ids[:20])
    return len(ids)


def enqueue_scoring(engine: sa.Engine, submission_id: int) -> None:
    """Send the scoring message after the row is committed, and note when it was sent.

    If the broker is unreachable the submission stays 'received' and the reconciler sends it later;
    the upload itself is never lost.
    """
    try:
        score_submission.send(submission_id)
    except Exception:
        log.exception("could not enqueue submission %s; the reconciler will retry", submission_id)
        return
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == submission_id)
            .values(enqueued_at=utcnow())
        )
