"""Submissions: creation with an exact quota, the state machine, and storing results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from challenge.challenges import challenge_status, phase_state, phases_of
from challenge.errors import NotFound, PermissionDenied, QuotaExceeded
from challenge.leaderboard import record_score_on_board
from challenge.models import (
    BoardEntry,
    Challenge,
    Participation,
    Phase,
    Submission,
    Team,
    TeamMember,
    User,
    utcnow,
)
from challenge.teams import lock_team_for_upload

FINAL_STATES = ("scored", "invalid", "error")
COUNTED_STATES = ("received", "scoring", "scored", "error")  # invalid files never use quota


def utc_midnight(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Quota:
    per_day: int
    used_today: int
    total: int
    used_total: int
    resets_at: dt.datetime

    @property
    def left_today(self) -> int:
        return max(0, min(self.per_day - self.used_today, self.total - self.used_total))

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_day": self.per_day,
            "used_today": self.used_today,
            "total": self.total,
            "used_total": self.used_total,
            "left_today": self.left_today,
            "resets_at": self.resets_at.isoformat(),
        }


def quota_for(
    session: Session, challenge: Challenge, user: User, now: dt.datetime | None = None
) -> Quota:
    now = now or utcnow()
    midnight = utc_midnight(now)
    team_id = session.exec(  # quotas belong to the team (see challenge/teams.py)
        select(TeamMember.team_id).where(
            TeamMember.challenge_id == challenge.id, TeamMember.user_id == user.id
        )
    ).first()
    base = (
        select(func.count())
        .select_from(Submission)
        .where(
            Submission.challenge_id == challenge.id,
            Submission.team_id == team_id if team_id is not None else Submission.user_id == user.id,
            col(Submission.status).in_(COUNTED_STATES),
        )
    )
    used_total = session.exec(base).one()
    used_today = session.exec(base.where(Submission.created_at >= midnight)).one()
    return Quota(
        per_day=int(challenge.limits.get("per_day", 5)),
        used_today=int(used_today),
        total=int(challenge.limits.get("total", 300)),
        used_total=int(used_total),
        resets_at=midnight + dt.timedelta(days=1),
    )


def submittable_phases(
    phases: list[Phase], now: dt.datetime | None = None
) -> tuple[list[Phase], Phase | None]:
    """The phases an upload made now may go to, and the one it goes to when none is named.

    Every open phase that takes submissions, in order; the default is the phase that opened last
    (a hackathon day inside the competition), as before. After the last close only the late phase
    remains. Empty (and None) while nothing is open yet.
    """
    status = challenge_status(phases, now)
    if status.submitting_phase is None:
        return [], None
    if status.late:
        return [status.submitting_phase], status.submitting_phase
    now = now or utcnow()
    choices = [p for p in phases if p.accepts_submissions and phase_state(p, now) == "open"]
    return choices, status.submitting_phase


def create_submission(
    session: Session,
    *,
    challenge: Challenge,
    user: User,
    stored_path: Path,
    filename: str,
    size_bytes: int,
    sha256: str,
    message: str = "",
    phase_name: str | None = None,
    now: dt.datetime | None = None,
) -> Submission:
    """Record an upload in state 'received' and charge the quota, atomically.

    The first statement bumps the participant's counter row: on PostgreSQL that takes the row lock,
    on SQLite the write lock, so concurrent uploads by one participant are counted one at a time and
    can never exceed the limit. Must be called at the start of a fresh transaction.
    ``phase_name`` picks one of the phases open now (``submittable_phases``); empty means the
    default one. A phase that is not open to submissions is refused with the open ones named.
    """
    now = now or utcnow()
    bumped = session.execute(
        sa.update(Participation)
        .where(
            col(Participation.challenge_id) == challenge.id,
            col(Participation.user_id) == user.id,
        )
        .values(submission_counter=col(Participation.submission_counter) + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        raise PermissionDenied("Join the challenge (and accept its rules) before submitting.")
    team = lock_team_for_upload(session, challenge=challenge, user=user)  # team quota, exact
    status = challenge_status(phases_of(session, challenge), now)
    if status.submitting_phase is None:
        raise PermissionDenied(
            "This challenge is not accepting submissions yet; "
            + (
                f"the next phase opens {status.next_change:%Y-%m-%d %H:%M} UTC."
                if status.next_change
                else ""
            )
        )
    choices, phase = submittable_phases(phases_of(session, challenge), now)
    if phase_name:
        phase = next((p for p in choices if p.name == phase_name.strip()), None)
        if phase is None:
            names = ", ".join(f"'{p.name}'" for p in choices)
            raise PermissionDenied(
                f"Phase '{phase_name.strip()[:80]}' is not open for submissions; "
                f"choose one of: {names}."
            )
    assert phase is not None  # challenge_status found a submitting phase above
    quota = quota_for(session, challenge, user, now)
    if quota.used_total >= quota.total:
        raise QuotaExceeded(f"You have used all {quota.total} submissions of this challenge.")
    if quota.used_today >= quota.per_day:
        raise QuotaExceeded(
            f"You have used your {quota.per_day} submissions for today (UTC). "
            f"The counter resets at {quota.resets_at:%Y-%m-%d %H:%M} UTC; invalid files are not counted."
        )
    assert challenge.id is not None
    assert user.id is not None
    assert phase.id is not None
    row = Submission(
        challenge_id=challenge.id,
        phase_id=phase.id,
        user_id=user.id,
        filename=Path(filename).name[:255] or "submission.csv",
        stored_path=str(stored_path),
        size_bytes=size_bytes,
        sha256=sha256,
        message=message.strip()[:500],
        is_late=status.late,
        team_id=team.id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def access_submission(session: Session, submission_id: int, user: User | None) -> Submission:
    """A submission its owner, an organizer of its challenge or an admin may see; else NotFound."""
    row = session.get(Submission, submission_id)
    if row is None or user is None:
        raise NotFound("No such submission.")
    if row.user_id == user.id or user.role == "admin":
        return row
    if user.role == "organizer":
        challenge = session.get(Challenge, row.challenge_id)
        if challenge is not None and challenge.created_by == user.id:
            return row
    raise NotFound("No such submission.")


def submissions_of(session: Session, challenge: Challenge, user: User) -> list[Submission]:
    return list(
        session.exec(
            select(Submission)
            .where(Submission.challenge_id == challenge.id, Submission.user_id == user.id)
            .order_by(col(Submission.created_at).desc(), col(Submission.id).desc())
        )
    )


def queue_position(session: Session, submission: Submission) -> int | None:
    """How many submissions wait ahead of this one in the scoring queue (0 = graded next).

    ``None`` once it is finished; ``0`` while it is being scored. The scoring queue is one FIFO
    for every challenge, in the order messages were sent (``enqueued_at``; a submission the broker
    never got counts from its upload time, which is when the reconciler will send it). Rescoring
    runs on a queue of its own and never counts here.
    """
    if submission.status not in ("received", "scoring"):
        return None
    if submission.status == "scoring":
        return 0
    queued_at = sa.func.coalesce(col(Submission.enqueued_at), col(Submission.created_at))
    mine = submission.enqueued_at or submission.created_at
    ahead = session.exec(
        select(func.count())
        .select_from(Submission)
        .where(
            col(Submission.status) == "received",
            sa.or_(
                queued_at < mine,
                sa.and_(queued_at == mine, col(Submission.id) < submission.id),
            ),
        )
    ).one()
    return int(ahead)


def claim_for_scoring(session: Session, submission_id: int, lease_seconds: float) -> bool:
    """Move a submission to 'scoring' unless another worker holds a live lease on it.

    Compare-and-set in one UPDATE, so a duplicated message scores once; an expired lease (a worker
    killed mid-job) can be taken over.
    """
    now = utcnow()
    stale = now - dt.timedelta(seconds=lease_seconds)
    result = session.execute(
        sa.update(Submission)
        .where(
            col(Submission.id) == submission_id,
            sa.or_(
                col(Submission.status) == "received",
                sa.and_(
                    col(Submission.status) == "scoring", col(Submission.scoring_started_at) < stale
                ),
            ),
        )
        .values(status="scoring", scoring_started_at=now, attempts=col(Submission.attempts) + 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_result(
    session: Session, submission_id: int, result: dict[str, Any], *, interval_pending: bool = False
) -> bool:
    """Store a grading result in one UPDATE, only if the submission is still being scored.

    ``interval_pending``: the scores came ahead of their bootstrap intervals, which
    :func:`record_interval` stores next; ``finished_at`` stays empty until then (that is what
    the reconciler looks for if the worker dies in between).
    """
    status = result["status"]
    values: dict[str, Any] = {
        "status": status,
        "finished_at": None if interval_pending and status == "scored" else utcnow(),
        "duration_ms": result.get("duration_ms"),
        # Counts stored results: the queue-fault tests prove "exactly once" with it.
        "results_recorded": col(Submission.results_recorded) + 1,
    }
    if status == "scored":
        pub_ci = result.get("public_ci") or (None, None)
        priv_ci = result.get("private_ci") or (None, None)
        values.update(
            public_score=result.get("public"),
            private_score=result.get("private"),
            public_ci_low=pub_ci[0],
            public_ci_high=pub_ci[1],
            private_ci_low=priv_ci[0],
            private_ci_high=priv_ci[1],
            error_message="",
            error_detail="",
        )
    else:
        values.update(
            error_message=result.get("message", ""), error_detail=result.get("detail", "")
        )
    updated = session.execute(
        sa.update(Submission)
        .where(col(Submission.id) == submission_id, col(Submission.status) == "scoring")
        .values(**values)
    )
    if updated.rowcount and status == "scored":  # type: ignore[attr-defined]
        record_score_on_board(session, submission_id)  # the materialized public board
    elif updated.rowcount:  # type: ignore[attr-defined]
        from challenge.mail import notify_scoring_failure

        notify_scoring_failure(session, submission_id)  # e-mail, in this transaction
    return bool(updated.rowcount)  # type: ignore[attr-defined]


def record_interval(session: Session, submission_id: int, result: dict[str, Any]) -> bool:
    """Finish a submission whose scores were stored ahead of their intervals.

    Stores the intervals of a ``scored`` result whose scores equal the stored ones (the same
    seed, so always, unless the solution changed in between) and sets ``finished_at``; any
    other result only ends the wait (``finished_at``), the intervals stay empty and the reason
    goes to ``error_detail`` for the organizers. One UPDATE, only while the interval is still
    pending, so a duplicate completes nothing twice.
    """
    pending = sa.and_(
        col(Submission.id) == submission_id,
        col(Submission.status) == "scored",
        col(Submission.finished_at).is_(None),
    )
    values: dict[str, Any] = {"finished_at": utcnow()}
    same_scores = result["status"] == "scored"
    stored: tuple[Any, ...] = ()
    if same_scores:
        row = session.execute(
            sa.select(col(Submission.public_score), col(Submission.private_score)).where(pending)
        ).first()
        if row is None:
            return False
        stored = tuple(row)
        same_scores = stored == (result.get("public"), result.get("private"))
    if same_scores:
        pub_ci = result.get("public_ci") or (None, None)
        priv_ci = result.get("private_ci") or (None, None)
        values.update(
            public_ci_low=pub_ci[0],
            public_ci_high=pub_ci[1],
            private_ci_low=priv_ci[0],
            private_ci_high=priv_ci[1],
        )
    elif result["status"] == "scored":
        values["error_detail"] = (
            f"bootstrap interval not stored: the scores came out as {result.get('public')!r} / "
            f"{result.get('private')!r} against {stored!r} stored (solution changed?)"
        )
    else:
        values["error_detail"] = (
            f"bootstrap interval failed: {result.get('message', '')}\n{result.get('detail', '')}"
        )
    updated = session.execute(sa.update(Submission).where(pending).values(**values))
    if updated.rowcount and same_scores:  # type: ignore[attr-defined]
        # A board row shows its submission's interval; one that is not the team's best (most
        # uploads) has no row to update, and the next refresh reads the stored interval anyway.
        shown = session.exec(
            select(BoardEntry.id).where(BoardEntry.submission_id == submission_id)
        ).first()
        if shown is not None:
            record_score_on_board(session, submission_id)
    return bool(updated.rowcount)  # type: ignore[attr-defined]


def claim_interval(session: Session, submission_id: int, lease_seconds: float) -> bool:
    """Take over a submission scored ahead of its intervals whose worker is gone.

    Compare-and-set on the scoring lease (``scoring_started_at``), like
    :func:`claim_for_scoring`; ``attempts`` is left alone (the upload was scored once).
    """
    now = utcnow()
    stale = now - dt.timedelta(seconds=lease_seconds)
    result = session.execute(
        sa.update(Submission)
        .where(
            col(Submission.id) == submission_id,
            col(Submission.status) == "scored",
            col(Submission.finished_at).is_(None),
            col(Submission.scoring_started_at) < stale,
        )
        .values(scoring_started_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


#: Every state a submission can be in (the filter of the organizer's submissions page).
ALL_STATES = ("received", "scoring", "scored", "invalid", "error")


@dataclass
class SubmissionRow:
    submission: Submission
    username: str
    phase_name: str
    team_name: str | None


def challenge_submissions(
    session: Session,
    *,
    challenge: Challenge,
    status: str | None = None,
    team_id: int | None = None,
    phase_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[SubmissionRow], int]:
    """A page of every submission of ``challenge`` (newest first) and how many match in all.

    For its organizers only: the caller has checked the permission (organized_challenge).
    """
    where = [Submission.challenge_id == challenge.id]
    if status:
        where.append(Submission.status == status)
    if team_id is not None:
        where.append(Submission.team_id == team_id)
    if phase_id is not None:
        where.append(Submission.phase_id == phase_id)
    total = session.exec(select(func.count()).select_from(Submission).where(*where)).one()
    rows = session.exec(
        select(Submission, User.username, Phase.name, Team.name)
        .join(User, col(User.id) == Submission.user_id)
        .join(Phase, col(Phase.id) == Submission.phase_id)
        .outerjoin(Team, col(Team.id) == Submission.team_id)
        .where(*where)
        .order_by(col(Submission.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [SubmissionRow(s, u, p, t) for s, u, p, t in rows], int(total)
