"""The lifecycle of a challenge: phases open and close on time, data is published, boards revealed.

Time decides what participants may do (``phase_state`` compares with the clock, so a late
scheduler never lets anyone submit or download early). The scheduler's job,
:func:`advance_schedule`, records each transition once it is due and does its side effects: it
posts the notices (announcements, so they reach the challenge page and the Atom feeds) and sets
``revealed_at`` when the bundle says ``reveal: at_close``. After downtime it catches up every
missed transition in order; running it twice does nothing more (one row per phase and kind).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import dramatiq
import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before the actor exists
from challenge.errors import BadRequest, NotFound, PermissionDenied
from challenge.models import (
    Announcement,
    Challenge,
    Participation,
    Phase,
    PhaseTransition,
    User,
    utcnow,
)

log = logging.getLogger(__name__)
KINDS = ("opened", "data_published", "closed", "private_revealed")


def _phases(session: Session, challenge: Challenge) -> list[Phase]:
    return list(
        session.exec(
            select(Phase).where(Phase.challenge_id == challenge.id).order_by(col(Phase.position))
        )
    )


def data_phase(phases: list[Phase]) -> Phase | None:
    """The phase whose opening publishes the data: the first one that accepts submissions."""
    submitting = [p for p in phases if p.accepts_submissions]
    return min(submitting, key=lambda p: p.opens_at) if submitting else None


def data_published_at(session: Session, challenge: Challenge) -> dt.datetime | None:
    phase = data_phase(_phases(session, challenge))
    return phase.opens_at if phase is not None else None


def data_is_published(
    session: Session, challenge: Challenge, now: dt.datetime | None = None
) -> bool:
    when = data_published_at(session, challenge)
    return when is not None and (now or utcnow()) >= when and challenge.state == "ready"


def require_data_access(
    session: Session,
    challenge: Challenge,
    participation: Participation,
    now: dt.datetime | None = None,
) -> None:
    """Refuse a download by a pending registration or before the first submitting phase opens."""
    if participation.status != "approved":
        raise PermissionDenied(
            "Your registration awaits the organizers' approval; the data follows once approved."
        )
    if not data_is_published(session, challenge, now):
        when = data_published_at(session, challenge)
        raise PermissionDenied(
            "The data is published when the challenge opens"
            + (f", at {when:%Y-%m-%d %H:%M} UTC." if when else ".")
        )


@dataclass
class DueTransition:
    challenge: Challenge
    phase: Phase
    kind: str
    due_at: dt.datetime


def planned_transitions(session: Session, challenge: Challenge) -> list[DueTransition]:
    """Every transition the bundle's dates imply, in time order (past and future)."""
    phases = _phases(session, challenge)
    out = []
    first = data_phase(phases)
    submitting = [p for p in phases if p.accepts_submissions]
    last = max(submitting, key=lambda p: p.closes_at or p.opens_at) if submitting else None
    for phase in phases:
        out.append(DueTransition(challenge, phase, "opened", phase.opens_at))
        if first is not None and phase.id == first.id:
            out.append(DueTransition(challenge, phase, "data_published", phase.opens_at))
        if phase.closes_at is not None:
            out.append(DueTransition(challenge, phase, "closed", phase.closes_at))
            reveal = (challenge.leaderboard or {}).get("reveal", "at_close")
            if last is not None and phase.id == last.id and reveal == "at_close":
                out.append(DueTransition(challenge, phase, "private_revealed", phase.closes_at))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda t: (t.due_at, order[t.kind], t.phase.position))


def _notice(t: DueTransition) -> tuple[str, str]:
    name = t.phase.name
    if t.kind == "opened":
        closes = f" It closes {t.phase.closes_at:%Y-%m-%d %H:%M} UTC." if t.phase.closes_at else ""
        verb = "is open for submissions" if t.phase.accepts_submissions else "has started"
        return f"Phase '{name}' {verb}", f"Phase '{name}' opened.{closes}"
    if t.kind == "data_published":
        return "The data is published", "Registered participants can now download the data."
    if t.kind == "closed":
        return (
            f"Phase '{name}' has closed",
            "Submissions made from now on are scored but marked late and are not ranked.",
        )
    return "The private leaderboard is revealed", "Final standings and the shake-up are online."


def advance_schedule(session: Session, *, now: dt.datetime | None = None) -> list[PhaseTransition]:
    """Record every transition that is due and not yet recorded, with its effects. Idempotent.

    Notices that a later due transition of the same phase makes stale (an 'opened' notice for a
    phase that has also closed while the scheduler was down) are recorded but not announced.
    """
    now = now or utcnow()
    done = {
        (p, k)
        for p, k in session.exec(select(PhaseTransition.phase_id, PhaseTransition.kind)).all()
    }
    due: list[DueTransition] = []
    for challenge in session.exec(select(Challenge).order_by(col(Challenge.id))):
        for t in planned_transitions(session, challenge):
            if t.due_at <= now and (t.phase.id, t.kind) not in done:
                due.append(t)
    made = []
    for t in due:
        assert t.challenge.id is not None
        assert t.phase.id is not None
        row = PhaseTransition(
            challenge_id=t.challenge.id, phase_id=t.phase.id, kind=t.kind, due_at=t.due_at,
            done_at=now,
        )
        try:
            with session.begin_nested():  # a second scheduler may have recorded it meanwhile
                session.add(row)
        except sa.exc.IntegrityError:
            continue
        if t.kind == "private_revealed" and t.challenge.revealed_at is None:
            t.challenge.revealed_at = now
            session.add(t.challenge)
        stale = t.kind == "opened" and any(
            o.phase.id == t.phase.id and o.kind == "closed" for o in due
        )
        if not stale:
            title, body = _notice(t)
            session.add(
                Announcement(challenge_id=t.challenge.id, title=title, body_md=body, created_at=now)
            )
        made.append(row)
        log.info("%s: phase %s %s (due %s)", t.challenge.slug, t.phase.name, t.kind, t.due_at)
    session.flush()
    return made


def transitions_of(session: Session, challenge: Challenge) -> list[PhaseTransition]:
    return list(
        session.exec(
            select(PhaseTransition)
            .where(PhaseTransition.challenge_id == challenge.id)
            .order_by(col(PhaseTransition.due_at), col(PhaseTransition.id))
        )
    )


def extend_phase(
    session: Session, *, challenge: Challenge, phase_name: str, closes_at: dt.datetime, actor: User
) -> Phase:
    """Move a phase's close later (or earlier, but not into the past) and tell the participants."""
    phase = next((p for p in _phases(session, challenge) if p.name == phase_name), None)
    if phase is None:
        raise NotFound(f"No phase '{phase_name}' in this challenge.")
    if closes_at.tzinfo is None:
        raise BadRequest("Give the new close time in UTC, e.g. 2027-07-07T23:59Z.", field="closes")
    if closes_at <= max(phase.opens_at, utcnow()):
        raise BadRequest("The new close time must be in the future and after the phase opens.")
    if phase.closes_at is not None and phase.closes_at <= utcnow():
        raise PermissionDenied(f"Phase '{phase.name}' has already closed; it cannot be extended.")
    recorded = session.exec(
        select(PhaseTransition).where(
            PhaseTransition.phase_id == phase.id, PhaseTransition.kind == "closed"
        )
    ).first()
    if recorded is not None:
        raise PermissionDenied(f"Phase '{phase.name}' has already closed; it cannot be extended.")
    old = phase.closes_at
    phase.closes_at = closes_at.astimezone(dt.UTC)
    session.add(phase)
    assert challenge.id is not None
    session.add(
        Announcement(
            challenge_id=challenge.id,
            author_id=actor.id,
            title=f"Phase '{phase.name}' extended",
            body_md=f"Phase '{phase.name}' now closes {closes_at:%Y-%m-%d %H:%M} UTC"
            + (f" (was {old:%Y-%m-%d %H:%M} UTC)." if old else "."),
        )
    )
    session.flush()
    return phase


@dramatiq.actor(queue_name="maintenance", max_retries=0)
def advance_schedule_job() -> int:
    """Periodic: apply the due phase transitions (sent by ``podium scheduler`` and the demo)."""
    from challenge.db import session_scope
    from challenge.tasks import context

    with session_scope(context().engine) as session:
        return len(advance_schedule(session))
