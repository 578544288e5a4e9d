"""Rescoring after a metric or solution fix, switched onto the leaderboard all at once.

An organizer asks for a rescore of one submission or of every finished submission of a phase
(:func:`rescore_submission`, :func:`rescore_phase`). That creates a :class:`RescoreRun` with one
``pending`` :class:`RescoreResult` per submission; the caller commits and then sends one
``rescore_one`` message per result (:func:`challenge.tasks.enqueue_rescore`). Workers grade into
the result rows, never into the submissions. When the last result is in, :func:`apply_rescore`
copies every new grade onto its submission in a single transaction and marks the run
``applied``; if any result is an ``error`` nothing is copied and the run is ``failed`` (the old
scores stay, the organizer sees why and can ask again). The leaderboard therefore shows either
all old scores or all new ones, never a mixture.

All writers here are compare-and-set updates, so duplicated or replayed messages are harmless.

Private intervals. The scoring worker grades the Private rows without a bootstrap (the interval
is shown only once the private board is visible). When a board becomes visible (scheduled close
or reveal, or an organizer's manual reveal) ``compute_private_intervals`` grades the private
interval of every submission that board may show (:func:`private_intervals_missing`) and stores
them all in one transaction (:func:`store_private_intervals`); the reconciler sends it again
while any is missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from challenge.challenges import private_scores_visible_among
from challenge.errors import NotFound
from challenge.leaderboard import (
    bump_board_version,
    higher_is_better_of,
    private_board_candidates,
    refresh_board_entry,
)
from challenge.models import (
    Challenge,
    Phase,
    RescoreResult,
    RescoreRun,
    Submission,
    Team,
    User,
    utcnow,
)

#: Submissions a rescore may change: those that already have a result. The ones still queued
#: are graded with the fixed metric anyway.
RESCORABLE_STATES = ("scored", "invalid", "error")


def _organized(session: Session, challenge_id: int, actor: User) -> Challenge:
    """The challenge if ``actor`` organizes it (or is an admin); otherwise NotFound."""
    challenge = session.get(Challenge, challenge_id)
    if challenge is None or (actor.role != "admin" and challenge.created_by != actor.id):
        raise NotFound("No such challenge.")
    return challenge


def _start_run(
    session: Session,
    *,
    challenge: Challenge,
    submission_ids: list[int],
    actor: User,
    phase_id: int | None = None,
    submission_id: int | None = None,
) -> RescoreRun:
    assert challenge.id is not None
    run = RescoreRun(
        challenge_id=challenge.id,
        phase_id=phase_id,
        submission_id=submission_id,
        requested_by=actor.id,
        total=len(submission_ids),
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    for sid in submission_ids:
        session.add(RescoreResult(run_id=run.id, submission_id=sid))
    if not submission_ids:
        run.state = "applied"
        run.finished_at = utcnow()
        run.message = "nothing to rescore: no finished submissions"
    session.flush()
    return run


def rescore_submission(session: Session, *, submission_id: int, actor: User) -> RescoreRun:
    """Start rescoring one finished submission; the caller commits, then enqueues the run.

    Raises NotFound unless ``actor`` organizes the submission's challenge (or is an admin) and
    the submission has a result to replace.
    """
    sub = session.get(Submission, submission_id)
    if sub is None:
        raise NotFound("No such submission.")
    challenge = _organized(session, sub.challenge_id, actor)
    if sub.status not in RESCORABLE_STATES:
        raise NotFound(
            f"Submission {submission_id} is still {sub.status}; it will be scored with the "
            "current metric, there is nothing to rescore yet."
        )
    return _start_run(
        session,
        challenge=challenge,
        submission_ids=[submission_id],
        actor=actor,
        phase_id=sub.phase_id,
        submission_id=submission_id,
    )


def rescore_phase(session: Session, *, phase_id: int, actor: User) -> RescoreRun:
    """Start rescoring every finished submission of a phase; the caller commits, then enqueues.

    Raises NotFound unless ``actor`` organizes the phase's challenge (or is an admin).
    """
    phase = session.get(Phase, phase_id)
    if phase is None:
        raise NotFound("No such phase.")
    challenge = _organized(session, phase.challenge_id, actor)
    ids = session.exec(
        select(Submission.id)
        .where(Submission.phase_id == phase_id, col(Submission.status).in_(RESCORABLE_STATES))
        .order_by(col(Submission.id))
    ).all()
    return _start_run(
        session,
        challenge=challenge,
        submission_ids=[int(i) for i in ids if i is not None],
        actor=actor,
        phase_id=phase_id,
    )


def pending_results(session: Session, run_id: int) -> list[int]:
    """Submission ids of a run still waiting for a grade (what to send, or send again)."""
    return [
        int(i)
        for i in session.exec(
            select(RescoreResult.submission_id).where(
                RescoreResult.run_id == run_id, col(RescoreResult.status) == "pending"
            )
        ).all()
    ]


def claim_rescore(session: Session, run_id: int, submission_id: int, lease_seconds: float) -> bool:
    """Move one result of a running run to 'grading' unless a live lease holds it (compare-and-set)."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=lease_seconds)
    running = sa.exists().where(col(RescoreRun.id) == run_id, col(RescoreRun.state) == "running")
    result = session.execute(
        sa.update(RescoreResult)
        .where(
            col(RescoreResult.run_id) == run_id,
            col(RescoreResult.submission_id) == submission_id,
            running,
            sa.or_(
                col(RescoreResult.status) == "pending",
                sa.and_(
                    col(RescoreResult.status) == "grading",
                    col(RescoreResult.started_at) < stale,
                ),
            ),
        )
        .values(status="grading", started_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_rescore(session: Session, run_id: int, submission_id: int) -> None:
    """Give a claimed result back (the sandbox failed; the message will be retried)."""
    session.execute(
        sa.update(RescoreResult)
        .where(
            col(RescoreResult.run_id) == run_id,
            col(RescoreResult.submission_id) == submission_id,
            col(RescoreResult.status) == "grading",
        )
        .values(status="pending")
    )


def record_rescore(
    session: Session, run_id: int, submission_id: int, result: dict[str, Any]
) -> bool:
    """Store one new grade in its result row (only if still 'grading'); submissions untouched."""
    status = str(result["status"])
    pub_ci = result.get("public_ci") or (None, None)
    priv_ci = result.get("private_ci") or (None, None)
    scored = status == "scored"
    updated = session.execute(
        sa.update(RescoreResult)
        .where(
            col(RescoreResult.run_id) == run_id,
            col(RescoreResult.submission_id) == submission_id,
            col(RescoreResult.status) == "grading",
        )
        .values(
            status=status,
            public_score=result.get("public") if scored else None,
            private_score=result.get("private") if scored else None,
            public_ci_low=pub_ci[0] if scored else None,
            public_ci_high=pub_ci[1] if scored else None,
            private_ci_low=priv_ci[0] if scored else None,
            private_ci_high=priv_ci[1] if scored else None,
            error_message="" if scored else str(result.get("message", "")),
            error_detail="" if scored else str(result.get("detail", "")),
            duration_ms=result.get("duration_ms"),
        )
    )
    return bool(updated.rowcount)  # type: ignore[attr-defined]


def apply_rescore(session: Session, run_id: int) -> str:
    """Switch a finished run onto its submissions, all in the caller's transaction.

    Returns the run's state afterwards: ``running`` (results still missing: nothing done),
    ``applied`` (every submission now carries its new grade, ``score_version`` + 1) or
    ``failed`` (some result is an error: no submission changed). The state change is a
    compare-and-set, so two workers finishing the last results at once apply it once.
    """
    waiting = session.exec(
        select(func.count())
        .select_from(RescoreResult)
        .where(
            RescoreResult.run_id == run_id,
            col(RescoreResult.status).in_(("pending", "grading")),
        )
    ).one()
    run = session.get(RescoreRun, run_id)
    if run is None:
        raise NotFound("No such rescore run.")
    if waiting or run.state != "running":
        return run.state if not waiting else "running"
    results = list(session.exec(select(RescoreResult).where(RescoreResult.run_id == run_id)))
    errors = [r for r in results if r.status == "error"]
    now = utcnow()
    state = "failed" if errors else "applied"
    message = (
        f"{len(errors)} of {len(results)} submission(s) could not be rescored (first: "
        f"#{errors[0].submission_id}: {errors[0].error_message}); "
        "no score was changed."
        if errors
        else f"{len(results)} submission(s) rescored."
    )
    claimed = session.execute(
        sa.update(RescoreRun)
        .where(col(RescoreRun.id) == run_id, col(RescoreRun.state) == "running")
        .values(state=state, finished_at=now, message=message)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        session.refresh(run)
        return run.state
    if errors:
        return state
    for r in results:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == r.submission_id)
            .values(
                status=r.status,
                public_score=r.public_score,
                private_score=r.private_score,
                public_ci_low=r.public_ci_low,
                public_ci_high=r.public_ci_high,
                private_ci_low=r.private_ci_low,
                private_ci_high=r.private_ci_high,
                error_message=r.error_message,
                error_detail=r.error_detail,
                score_version=col(Submission.score_version) + 1,
            )
        )
    # The materialized public board follows in the same transaction: readers see the old
    # board or the new one. Team rows are locked in id order, as record_result's hook does one
    # at a time, so a fresh score of the same team is folded in before or after, never lost.
    session.expire_all()
    teams = session.exec(
        select(Submission.team_id, Submission.phase_id)
        .where(col(Submission.id).in_([r.submission_id for r in results]))
        .distinct()
    ).all()
    for team_id, phase_id in sorted((t, p) for t, p in teams if t is not None):
        session.execute(
            sa.update(Team)
            .where(col(Team.id) == team_id)
            .values(submission_counter=col(Team.submission_counter))
        )
        refresh_board_entry(session, team_id=team_id, phase_id=phase_id)
    return state


def runs_of(session: Session, challenge: Challenge, limit: int = 10) -> list[RescoreRun]:
    """The latest rescore runs of a challenge (organizer page)."""
    return list(
        session.exec(
            select(RescoreRun)
            .where(RescoreRun.challenge_id == challenge.id)
            .order_by(col(RescoreRun.id).desc())
            .limit(limit)
        )
    )


def run_progress(session: Session, run_id: int) -> dict[str, int]:
    """How many results of a run are in each state."""
    return {
        str(status): int(count)
        for status, count in session.exec(
            select(RescoreResult.status, func.count())
            .where(RescoreResult.run_id == run_id)
            .group_by(RescoreResult.status)
        ).all()
    }


def private_intervals_missing(
    session: Session, challenge_id: int, now: dt.datetime | None = None
) -> list[tuple[int, int, float]]:
    """``(submission id, score_version, private score)`` of every submission a visible private
    board of the challenge may show that has no private interval yet, in id order."""
    challenge = session.get(Challenge, challenge_id)
    if challenge is None:
        return []
    phases = session.exec(
        select(Phase).where(Phase.challenge_id == challenge_id).order_by(col(Phase.id))
    ).all()
    if not private_scores_visible_among(challenge, phases, now):
        return []
    hib = higher_is_better_of(challenge)
    out = {}
    for phase in phases:
        for sub in private_board_candidates(session, challenge, phase, hib):
            if sub.private_ci_low is None and sub.private_score is not None:
                assert sub.id is not None
                out[sub.id] = (sub.id, sub.score_version, sub.private_score)
    return [out[k] for k in sorted(out)]


def store_private_intervals(
    session: Session, intervals: list[tuple[int, int, tuple[float, float]]]
) -> int:
    """Store ``(submission id, score_version, interval)`` rows in the caller's transaction.

    Compare-and-set: a submission rescored meanwhile (another ``score_version``) or already
    holding an interval is left alone. Returns how many were stored; the boards of the phases
    touched are invalidated so cached pages show the intervals.
    """
    stored = 0
    phases: set[int] = set()
    for submission_id, version, (low, high) in intervals:
        updated = session.execute(
            sa.update(Submission)
            .where(
                col(Submission.id) == submission_id,
                col(Submission.score_version) == version,
                col(Submission.private_ci_low).is_(None),
            )
            .values(private_ci_low=low, private_ci_high=high)
        )
        if updated.rowcount:  # type: ignore[attr-defined]
            stored += 1
            phase_id = session.exec(
                select(Submission.phase_id).where(Submission.id == submission_id)
            ).one()
            phases.add(phase_id)
    for phase_id in sorted(phases):
        bump_board_version(session, phase_id)
    return stored
