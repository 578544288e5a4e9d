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
from typing import Any

import dramatiq
import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before the actor exists
from challenge.challenges import ranking_phases, reveal_due_at
from challenge.errors import BadRequest, NotFound, PermissionDenied
from challenge.models import (
    Announcement,
    AuditEvent,
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
    # The reveal waits for the last phase that ranks on the private rows (all of them share the
    # split), and for the bundle's date if it names a later one; never with a phase left open.
    reveal_at = reveal_due_at(challenge, phases)
    ranking = ranking_phases(phases)
    last = max(ranking, key=lambda p: (p.closes_at, p.position)) if reveal_at else None
    for phase in phases:
        out.append(DueTransition(challenge, phase, "opened", phase.opens_at))
        if first is not None and phase.id == first.id:
            out.append(DueTransition(challenge, phase, "data_published", phase.opens_at))
        if phase.closes_at is not None:
            out.append(DueTransition(challenge, phase, "closed", phase.closes_at))
        if last is not None and reveal_at is not None and phase.id == last.id:
            out.append(DueTransition(challenge, phase, "private_revealed", reveal_at))
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
        if t.kind == "private_revealed":
            # Due only once every phase ranking on the private rows has closed; the one guard
            # (private_scores_visible) agrees, by the clock, whatever the scheduler does.
            if t.challenge.revealed_at is None:
                t.challenge.revealed_at = now
                session.add(t.challenge)
                session.add(
                    AuditEvent(
                        challenge_id=t.challenge.id, action="reveal", created_at=now,
                        reason=f"scheduled (due {t.due_at:%Y-%m-%d %H:%M} UTC)",
                    )
                )
            # The private board is visible now: its intervals are graded in the worker.
            from challenge.tasks import send_private_intervals_after_commit

            send_private_intervals_after_commit(session, t.challenge.id)
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
def advance_schedule_job() -> None:
    """Periodic: apply the due phase transitions (sent by ``podium scheduler`` and the demo)."""
    from challenge.db import session_scope
    from challenge.tasks import context

    with session_scope(context().engine) as session:
        made = advance_schedule(session)
    if made:
        log.info("scheduler made %d transition(s)", len(made))


def announcements_of(session: Session, challenge: Challenge, limit: int = 50) -> list[Announcement]:
    return list(
        session.exec(
            select(Announcement)
            .where(Announcement.challenge_id == challenge.id)
            .order_by(col(Announcement.created_at).desc(), col(Announcement.id).desc())
            .limit(limit)
        )
    )


def challenge_page_extras(
    session: Session, challenge: Challenge, user: User | None, participation: Participation | None
) -> dict[str, Any]:
    """What the challenge page shows about the lifecycle and the user's team."""
    from challenge.teams import invitations_for, members_of, team_of

    team = team_of(session, challenge, user)
    return {
        "announcements": announcements_of(session, challenge, limit=5),
        "data_open": data_is_published(session, challenge),
        "data_opens_at": data_published_at(session, challenge),
        "team": team,
        "team_members": members_of(session, team) if team is not None else [],
        "invitations": invitations_for(session, challenge, user) if user and participation else [],
        "final_limit": int(challenge.limits.get("final_selections", 2)),
    }


# ---------------------------------------------------------------- organizer actions


def post_announcement(
    session: Session, *, challenge: Challenge, author: User, title: str, body_md: str
) -> Announcement:
    """Publish an organizer's announcement: challenge page, Atom feeds, and the challenge forum."""
    title, body_md = title.strip(), body_md.strip()
    if not title or len(title) > 200:
        raise BadRequest("Give the announcement a title of 1 to 200 characters.", field="title")
    if not body_md:
        raise BadRequest("Write the announcement's text.", field="body")
    assert challenge.id is not None
    row = Announcement(challenge_id=challenge.id, author_id=author.id, title=title, body_md=body_md)
    session.add(row)
    session.flush()
    from challenge.forum_bridge import announce  # the bridge imports the views; import late
    from forum.access import ForumError

    try:
        with session.begin_nested():
            row.forum_thread_id = announce(
                session, challenge=challenge, author=author, title=title, body_md=body_md
            )
    except ForumError as exc:  # the announcement stands even if the forum refuses the thread
        log.warning("announcement %s not posted to the forum: %s", row.id, exc)
    session.add(row)
    session.flush()
    return row


def set_registration_policy(
    session: Session,
    *,
    challenge: Challenge,
    requires_approval: bool,
    email_domains: str,
    merge_deadline: dt.datetime | None,
) -> Challenge:
    """Approval of registrations, allowed e-mail domains (comma-separated), team merge deadline."""
    domains = [d.strip().lower().lstrip("@") for d in email_domains.split(",") if d.strip()]
    for d in domains:
        if "." not in d or " " in d or "@" in d:
            raise BadRequest(f"'{d}' is not a domain; write e.g. cern.ch, example.org.",
                             field="email_domains")
    challenge.requires_approval = requires_approval
    challenge.email_domains = ", ".join(domains)
    challenge.merge_deadline = merge_deadline
    session.add(challenge)
    session.flush()
    return challenge


def pending_registrations(session: Session, challenge: Challenge) -> list[tuple[Participation, User]]:
    rows = session.exec(
        select(Participation, User)
        .join(User, col(User.id) == Participation.user_id)
        .where(Participation.challenge_id == challenge.id, Participation.status == "pending")
        .order_by(col(Participation.accepted_rules_at))
    ).all()
    return [(p, u) for p, u in rows]


def decide_registration(
    session: Session, *, challenge: Challenge, user_id: int, approve: bool
) -> Participation:
    row = session.exec(
        select(Participation).where(
            Participation.challenge_id == challenge.id, Participation.user_id == user_id
        )
    ).first()
    if row is None:
        raise NotFound("No such registration.")
    row.status = "approved" if approve else "rejected"
    session.add(row)
    session.flush()
    return row


def set_registration_code(
    session: Session, *, challenge: Challenge, phase_name: str, code: str
) -> Phase:
    """The code participants type at the venue to register on the spot (empty turns it off)."""
    phase = next((p for p in _phases(session, challenge) if p.name == phase_name), None)
    if phase is None:
        raise NotFound(f"No phase '{phase_name}' in this challenge.")
    code = code.strip()
    if code and not (6 <= len(code) <= 40):
        raise BadRequest("Use a registration code of 6 to 40 characters.", field="code")
    phase.registration_code = code
    session.add(phase)
    session.flush()
    return phase


def phase_for_code(session: Session, challenge: Challenge, code: str) -> Phase | None:
    """The phase whose on-site code this is, if that phase has not closed."""
    import hmac

    now = utcnow()
    for phase in _phases(session, challenge):
        if (
            phase.registration_code
            and hmac.compare_digest(phase.registration_code.encode(), code.strip().encode())
            and (phase.closes_at is None or now < phase.closes_at)
        ):
            return phase
    return None


def mark_baseline(
    session: Session, *, challenge: Challenge, submission_id: int, label: str, actor: User
) -> None:
    """Show one of the organizer's own scored submissions as a baseline (never ranked)."""
    from challenge.leaderboard import refresh_board_entry
    from challenge.models import Submission

    sub = session.get(Submission, submission_id)
    if sub is None or sub.challenge_id != challenge.id or (
        sub.user_id != actor.id and actor.role != "admin"
    ):
        raise NotFound("No such submission of yours in this challenge.")
    label = label.strip()[:80]
    if not label:
        raise BadRequest("Name the baseline, e.g. 'BDT baseline'.", field="label")
    sub.baseline_label = label
    sub.is_final = False
    session.add(sub)
    session.flush()
    if sub.team_id is not None:
        refresh_board_entry(session, team_id=sub.team_id, phase_id=sub.phase_id)
