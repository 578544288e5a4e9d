"""Dramatiq actors. They take ids, are safe to run twice, and are sent only after a commit."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import sqlalchemy as sa
from sqlmodel import col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before any actor exists
from challenge import rescoring, storage
from challenge.challenges import private_scores_visible
from challenge.db import make_engine, session_scope
from challenge.errors import PodiumError
from challenge.health import publish_worker_status
from challenge.models import (
    BoardEntry,
    Challenge,
    Phase,
    RescoreResult,
    RescoreRun,
    Submission,
    utcnow,
)
from challenge.settings import Settings, load_settings
from challenge.submissions import (
    claim_for_scoring,
    claim_interval,
    record_interval,
    record_result,
)
from scoring.formats import SubmissionFormat
from scoring.grading import GradingResult
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool

log = logging.getLogger(__name__)
MAX_INFRA_RETRIES = 5
# A 'received' submission never sent is left to its upload (which sends it right after its
# commit) for this long before the reconciler sends it.
NEVER_SENT_GRACE_SECONDS = 10


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
                publish_worker_status(_broker_client(), self._pool.isolation)
            return self._pool


_context: WorkerContext | None = None


def _broker_client() -> Any:
    """The Redis client of the broker actors use, or None for the stub broker."""
    return getattr(dramatiq.get_broker(), "client", None)


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


def _grade(
    ctx: WorkerContext,
    submission_id: int,
    seed: int,
    *,
    bootstrap_public: bool = True,
    bootstrap_private: bool | None = None,
    on_score: Callable[[GradingResult], None] | None = None,
) -> dict[str, Any]:
    """Grade a stored submission in the sandbox; raise InfrastructureError to be retried.

    The Public interval is resampled when ``bootstrap_public``; the Private one when
    ``bootstrap_private``, by default only if the submission's private board is already visible
    (otherwise the reveal's job computes it; a submission scored or rescored after the reveal
    needs it now, since that job has already run). Errors of
    the grading itself (a participant's file, the organizer's metric) come back as a
    result; only a failure of the pool (zygote gone, fork refused) raises, and only while
    dramatiq still has retries left — after that it becomes an ``error`` result.
    """
    with session_scope(ctx.engine) as session:
        sub = session.get(Submission, submission_id)
        assert sub is not None
        challenge = session.get(Challenge, sub.challenge_id)
        assert challenge is not None
        if bootstrap_private is None:
            bootstrap_private = private_scores_visible(session, challenge)
    try:
        result = ctx.pool.grade(
            Path(sub.stored_path),
            storage.solution_path(ctx.settings, challenge.slug),
            SubmissionFormat.from_dict(challenge.submission_format),
            MetricSpec.from_dict(challenge.metric),
            metric_dir=storage.metric_dir(ctx.settings, challenge.slug),
            bootstrap=ctx.settings.score_bootstrap if bootstrap_public else 0,
            bootstrap_private=ctx.settings.score_bootstrap if bootstrap_private else 0,
            seed=seed,
            max_bytes=decoded_limit_bytes(ctx.settings, challenge.limits),
            on_score=on_score,
        )
        return result.to_dict()
    except Exception as exc:
        log.exception("sandbox failure on submission %s", submission_id)
        retries = 0
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        if message is not None:
            retries = int(message.options.get("retries", 0))
        if retries < MAX_INFRA_RETRIES:
            raise InfrastructureError(str(exc)) from exc
        return {
            "status": "error",
            "message": "Scoring failed on our side. The organizers have been told; it will not "
            "count against your quota once rescored.",
            "detail": traceback.format_exc(),
        }


def decoded_limit_bytes(settings: Settings, limits: dict[str, Any]) -> int:
    """What a submission may decode to (gunzipped, unzipped, Parquet read into memory): the
    challenge's upload limit, so that compression never lets more through than a plain CSV."""
    file_mb = int(limits.get("file_mb", settings.max_upload_mb))
    return min(file_mb, settings.max_upload_mb) * 1024 * 1024


@dramatiq.actor(
    queue_name="scoring", max_retries=MAX_INFRA_RETRIES, min_backoff=500, max_backoff=30_000
)
def score_submission(submission_id: int) -> None:
    """Grade one submission in the sandbox and store its scores. Idempotent.

    The claim is a compare-and-set with a lease and the result is stored only while the row is
    still 'scoring', so a duplicated message, a replay after a Redis restart or a reconciler
    re-send scores it once (``results_recorded`` stays 1).
    """
    ctx = context()
    with session_scope(ctx.engine) as session:
        if not claim_for_scoring(session, submission_id, lease_seconds(ctx.settings)):
            log.info("submission %s already claimed or finished; skipping", submission_id)
            return
    score_stored = False

    def store_score(scores: GradingResult) -> None:
        # The participant sees the score while the child computes the interval.
        nonlocal score_stored
        with session_scope(ctx.engine) as session:
            score_stored = record_result(
                session, submission_id, scores.to_dict(), interval_pending=True
            )

    try:
        # The seed is the submission id: a rescore of an unchanged file gives the same interval.
        outcome = _grade(ctx, submission_id, seed=submission_id, on_score=store_score)
    except InfrastructureError:
        with session_scope(ctx.engine) as session:
            session.execute(
                sa.update(Submission)
                .where(col(Submission.id) == submission_id, col(Submission.status) == "scoring")
                .values(status="received")
            )
        # A score already stored keeps its row 'scored'; the reconciler finishes its interval.
        raise
    with session_scope(ctx.engine) as session:
        if score_stored:
            record_interval(session, submission_id, outcome)
        else:
            record_result(session, submission_id, outcome)


@dramatiq.actor(
    queue_name="scoring", max_retries=MAX_INFRA_RETRIES, min_backoff=500, max_backoff=30_000
)
def finish_interval(submission_id: int) -> None:
    """Compute the intervals of a submission whose worker died after storing its scores.

    Sent by the reconciler once the scoring lease has expired. Grades again with the same seed
    (so the same scores and intervals as the lost run would have given) and stores the
    intervals with :func:`~challenge.submissions.record_interval`. Idempotent.
    """
    ctx = context()
    with session_scope(ctx.engine) as session:
        if not claim_interval(session, submission_id, lease_seconds(ctx.settings)):
            log.info("interval of submission %s not pending or being computed", submission_id)
            return
    try:
        outcome = _grade(ctx, submission_id, seed=submission_id)
    except InfrastructureError:
        with session_scope(ctx.engine) as session:  # let the retry claim it again at once
            session.execute(
                sa.update(Submission)
                .where(col(Submission.id) == submission_id, col(Submission.finished_at).is_(None))
                .values(scoring_started_at=utcnow() - dt.timedelta(days=1))
            )
        raise
    with session_scope(ctx.engine) as session:
        record_interval(session, submission_id, outcome)


@dramatiq.actor(
    queue_name="rescoring", max_retries=MAX_INFRA_RETRIES, min_backoff=500, max_backoff=30_000
)
def rescore_one(run_id: int, submission_id: int) -> None:
    """Grade one submission of a rescore run into its result row; apply the run when complete.

    Runs on its own queue, so rescoring a whole phase never delays fresh submissions' place in
    the scoring queue. Idempotent like :func:`score_submission`.
    """
    ctx = context()
    with session_scope(ctx.engine) as session:
        claimed = rescoring.claim_rescore(
            session, run_id, submission_id, lease_seconds(ctx.settings)
        )
    if claimed:
        try:
            outcome = _grade(ctx, submission_id, seed=submission_id)
        except InfrastructureError:
            with session_scope(ctx.engine) as session:
                rescoring.release_rescore(session, run_id, submission_id)
            raise
        with session_scope(ctx.engine) as session:
            rescoring.record_rescore(session, run_id, submission_id, outcome)
    # Also when not claimed: the message may be a replay of the last one after a crash that
    # happened between recording and applying.
    with session_scope(ctx.engine) as session:
        state = rescoring.apply_rescore(session, run_id)
    if state != "running":
        log.info("rescore run %s is %s", run_id, state)


@dramatiq.actor(
    queue_name="rescoring", max_retries=MAX_INFRA_RETRIES, min_backoff=500, max_backoff=30_000
)
def compute_private_intervals(challenge_id: int) -> None:
    """Grade the missing private intervals of a challenge (:func:`grade_private_intervals`)."""
    grade_private_intervals(challenge_id)


def grade_private_intervals(challenge_id: int) -> int:
    """Grade the private intervals of what the challenge's visible private boards may show.

    Sent when a private board becomes visible (the scheduler's close or reveal, an organizer's
    manual reveal) and by the reconciler while some are missing. Each submission is graded in
    the sandbox with the Private bootstrap only, same seed as its scoring; all intervals are
    stored in one transaction, so a board shows either none or all of them. A submission whose
    private score differs from the stored one (its solution changed without a rescore) is
    skipped and logged. Idempotent; returns how many intervals were stored.
    """
    ctx = context()
    with session_scope(ctx.engine) as session:
        todo = rescoring.private_intervals_missing(session, challenge_id)
    intervals = []
    for submission_id, version, score in todo:
        outcome = _grade(
            ctx, submission_id, seed=submission_id, bootstrap_public=False, bootstrap_private=True
        )
        ci = outcome.get("private_ci")
        if outcome.get("status") != "scored" or outcome.get("private") != score or ci is None:
            log.warning(
                "private interval of submission %s not stored: grading gave %s, private %s "
                "(stored %s): %s",
                submission_id,
                outcome.get("status"),
                outcome.get("private"),
                score,
                outcome.get("message", ""),
            )
            continue
        intervals.append((submission_id, version, (float(ci[0]), float(ci[1]))))
    with session_scope(ctx.engine) as session:
        stored = rescoring.store_private_intervals(session, intervals)
    if todo:
        log.info(
            "challenge %s: %d of %d private interval(s) stored", challenge_id, stored, len(todo)
        )
    return stored


def send_private_intervals_after_commit(session: Any, challenge_id: int) -> None:
    """Send :func:`compute_private_intervals` once ``session`` commits (a reveal's transaction).

    A send that fails is only logged: the reconciler sends it again.
    """

    def send(_session: Any) -> None:
        try:
            compute_private_intervals.send(challenge_id)
        except Exception:
            log.exception(
                "could not send the private intervals of challenge %s; the reconciler will retry",
                challenge_id,
            )

    sa.event.listen(session, "after_commit", send, once=True)


def enqueue_rescore(engine: sa.Engine, run_id: int) -> int:
    """Send the messages of a committed rescore run (its pending results); returns how many.

    If the broker is unreachable the results stay pending and the reconciler sends them later.
    """
    with session_scope(engine) as session:
        ids = rescoring.pending_results(session, run_id)
    sent = []
    try:
        for submission_id in ids:
            rescore_one.send(run_id, submission_id)
            sent.append(submission_id)
    except Exception:
        log.exception("could not enqueue rescore run %s; the reconciler will retry", run_id)
    if sent:
        with session_scope(engine) as session:
            session.execute(
                sa.update(RescoreResult)
                .where(
                    col(RescoreResult.run_id) == run_id,
                    col(RescoreResult.submission_id).in_(sent),
                )
                .values(enqueued_at=utcnow())
            )
    return len(sent)


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
            prepare_challenge(ctx.settings, challenge, Path(dataset_path), session=session)
        except (ValueError, PodiumError) as exc:  # PodiumError: the holdout ledger refused
            challenge.state = "failed"
            challenge.state_message = exc.message if isinstance(exc, PodiumError) else str(exc)
        session.add(challenge)


@dramatiq.actor(queue_name="maintenance", max_retries=0)
def reconcile() -> None:
    """The periodic repair job (:func:`reconcile_once`). Returns nothing: dramatiq would warn
    about a return value every tick, since no Results middleware stores it."""
    reconcile_once()


def reconcile_once() -> int:
    """Re-send work stuck in the queue (lost message, dead worker, Redis restarted empty).

    Submissions in 'received' that were never sent (the broker was down at upload; a seeded
    upload) and are more than ``NEVER_SENT_GRACE_SECONDS`` old, or were sent more than
    ``reconcile_after_seconds`` ago, and those in 'scoring' whose lease expired, are sent again;
    the same for rescore results, and rescore runs whose results are all in but that were never
    applied (a worker died in between) are applied. Safe to run any time, as often as wanted:
    actors are idempotent. Returns how many messages were sent.
    """
    ctx = context()
    now = utcnow()
    received_deadline = now - dt.timedelta(seconds=ctx.settings.reconcile_after_seconds)
    never_sent_deadline = now - dt.timedelta(seconds=NEVER_SENT_GRACE_SECONDS)
    scoring_deadline = now - dt.timedelta(seconds=lease_seconds(ctx.settings))
    from challenge.coderuns import stuck_code_runs

    code_challenges = select(Challenge.id).where(col(Challenge.kind) == "codabench")
    with session_scope(ctx.engine) as session:
        rows = session.exec(
            select(Submission.id, Submission.status, Submission.enqueued_at).where(
                sa.or_(
                    sa.and_(
                        col(Submission.status) == "received",
                        sa.or_(
                            # Not one that its upload is sending right now.
                            sa.and_(
                                col(Submission.enqueued_at).is_(None),
                                col(Submission.created_at) < never_sent_deadline,
                            ),
                            col(Submission.enqueued_at) < received_deadline,
                        ),
                    ),
                    sa.and_(
                        col(Submission.status) == "scoring",
                        col(Submission.scoring_started_at) < scoring_deadline,
                        # Code runs have leases of their own (their phase's budget), below.
                        col(Submission.challenge_id).not_in(code_challenges),
                    ),
                )
            )
        ).all()
        never_sent = [
            int(i)
            for i, status, sent in rows
            if i is not None and status == "received" and not sent
        ]
        stuck = [int(i) for i, _, _ in rows if i is not None and int(i) not in never_sent]
        stuck += stuck_code_runs(session, now)
        ids = never_sent + stuck
        code_ids = set(
            session.exec(
                select(Submission.id).where(
                    col(Submission.id).in_(ids), col(Submission.challenge_id).in_(code_challenges)
                )
            ).all()
        )
        if ids:
            session.execute(
                sa.update(Submission).where(col(Submission.id).in_(ids)).values(enqueued_at=now)
            )
        # Scored ahead of their intervals by a worker that died before storing them.
        intervals = [
            int(i)
            for i in session.exec(
                select(Submission.id).where(
                    col(Submission.status) == "scored",
                    col(Submission.finished_at).is_(None),
                    col(Submission.scoring_started_at) < scoring_deadline,
                )
            ).all()
            if i is not None
        ]
        running = select(RescoreRun.id).where(col(RescoreRun.state) == "running")
        stuck_rescores = session.exec(
            select(RescoreResult.run_id, RescoreResult.submission_id).where(
                col(RescoreResult.run_id).in_(running),
                sa.or_(
                    sa.and_(
                        col(RescoreResult.status) == "pending",
                        sa.or_(
                            col(RescoreResult.enqueued_at).is_(None),
                            col(RescoreResult.enqueued_at) < received_deadline,
                        ),
                    ),
                    sa.and_(
                        col(RescoreResult.status) == "grading",
                        col(RescoreResult.started_at) < scoring_deadline,
                    ),
                ),
            )
        ).all()
        pairs = [(int(r), int(s)) for r, s in stuck_rescores]
        for run_id, submission_id in pairs:
            session.execute(
                sa.update(RescoreResult)
                .where(
                    col(RescoreResult.run_id) == run_id,
                    col(RescoreResult.submission_id) == submission_id,
                )
                .values(enqueued_at=now)
            )
        runs = [int(r) for r in session.exec(running).all() if r is not None]
        interval_challenges = _missing_private_intervals(session, received_deadline)
    for run_id in runs:
        with session_scope(ctx.engine) as session:
            rescoring.apply_rescore(session, run_id)
    for submission_id in ids:
        _grading_actor(submission_id in code_ids).send(submission_id)
    for submission_id in intervals:
        finish_interval.send(submission_id)
    if intervals:
        log.warning("reconciler re-sent the intervals of submission(s) %s", intervals[:20])
    for run_id, submission_id in pairs:
        rescore_one.send(run_id, submission_id)
    for challenge_id in interval_challenges:
        compute_private_intervals.send(challenge_id)
    if interval_challenges:
        log.warning(
            "reconciler re-sent the private intervals of challenge(s) %s", interval_challenges
        )
    if never_sent:
        log.info(
            "reconciler sent %d submission(s) never queued before (broker unreachable at upload, "
            "or seeded) %s", len(never_sent), never_sent[:20],
        )  # fmt: skip
    if stuck or pairs:
        log.warning(
            "reconciler re-sent %d stuck submission(s) %s and %d rescore(s)",
            len(stuck),
            stuck[:20],
            len(pairs),
        )
    return len(ids) + len(intervals) + len(pairs) + len(interval_challenges)


def _missing_private_intervals(session: Any, deadline: dt.datetime) -> list[int]:
    """Challenges whose private board has been visible since before ``deadline`` and still
    lacks private intervals.

    A cheap pre-filter first: a final selection, a baseline or a team's best public submission
    without a private interval, in a phase closed (or a challenge revealed) before ``deadline``;
    the reveal job stores all intervals of a challenge at once, so after it ran none matches.
    """
    on_board = select(BoardEntry.submission_id).where(BoardEntry.phase_id == Submission.phase_id)
    rows = session.exec(
        select(Submission.challenge_id)
        .join(Phase, col(Phase.id) == col(Submission.phase_id))
        .join(Challenge, col(Challenge.id) == col(Submission.challenge_id))
        .where(
            col(Submission.status) == "scored",
            col(Submission.private_score).is_not(None),
            col(Submission.private_ci_low).is_(None),
            sa.or_(col(Phase.closes_at) < deadline, col(Challenge.revealed_at) < deadline),
            sa.or_(
                col(Submission.is_final).is_(True),
                col(Submission.baseline_label) > "",
                col(Submission.id).in_(on_board),
            ),
        )
        .distinct()
    ).all()
    return [
        int(cid)
        for cid in sorted(rows)
        if rescoring.private_intervals_missing(session, int(cid), now=deadline)
    ]


def enqueue_scoring(engine: sa.Engine, submission_id: int) -> None:
    """Send the scoring message after the row is committed, and note when it was sent.

    If the broker is unreachable the submission stays 'received' and the reconciler sends it later;
    the upload itself is never lost.
    """
    try:
        with session_scope(engine) as session:
            from challenge.coderuns import is_code_challenge_submission

            code = is_code_challenge_submission(session, submission_id)
        _grading_actor(code).send(submission_id)
    except Exception:
        log.exception("could not enqueue submission %s; the reconciler will retry", submission_id)
        return
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == submission_id)
            .values(enqueued_at=utcnow())
        )


def _grading_actor(code: bool) -> Any:
    """The actor that grades a submission: a code run (its own queue) or a file score."""
    if code:
        from challenge.coderuns import run_code_submission

        return run_code_submission
    return score_submission
