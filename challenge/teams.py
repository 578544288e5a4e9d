"""Teams: every participant competes in a team (a team of one at first), invitations, merges.

Quotas are charged to the team, so an upload locks the team row (see :func:`lock_team_for_upload`)
and a merge locks both teams' rows in id order; counts stay exact under concurrent uploads.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from challenge import mail as _mail  # noqa: F401 - installs the e-mail outbox listeners
from challenge.errors import BadRequest, Conflict, NotFound, PermissionDenied
from challenge.models import (
    BoardEntry,
    Challenge,
    Participation,
    Phase,
    Submission,
    Team,
    TeamInvitation,
    TeamMember,
    User,
    utcnow,
)

log = logging.getLogger(__name__)
COUNTED_STATES = ("received", "scoring", "scored", "error")  # as in submissions.py: invalid is free
DEFAULT_MERGE_LEAD = dt.timedelta(days=7)
TEAM_NAME_RE = re.compile(r"^[^\x00-\x1f<>]{1,80}$")


def utc_midnight(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def membership_of(session: Session, challenge: Challenge, user: User | None) -> TeamMember | None:
    if user is None:
        return None
    return session.exec(
        select(TeamMember).where(
            TeamMember.challenge_id == challenge.id, TeamMember.user_id == user.id
        )
    ).first()


def team_of(session: Session, challenge: Challenge, user: User | None) -> Team | None:
    """The user's team in this challenge, or None if they have not joined."""
    member = membership_of(session, challenge, user)
    return session.get(Team, member.team_id) if member is not None else None


def members_of(session: Session, team: Team) -> list[User]:
    return list(
        session.exec(
            select(User)
            .join(TeamMember, col(TeamMember.user_id) == User.id)
            .where(TeamMember.team_id == team.id)
            .order_by(col(TeamMember.joined_at), col(User.id))
        )
    )


def _free_name(session: Session, challenge_id: int, wanted: str) -> str:
    name, n = wanted[:80], 1
    while session.exec(
        select(Team.id).where(Team.challenge_id == challenge_id, Team.name == name)
    ).first():
        n += 1
        suffix = f" ({n})"
        name = wanted[: 80 - len(suffix)] + suffix
    return name


def ensure_team(session: Session, *, challenge: Challenge, user: User) -> Team:
    """The user's team, creating a team of one named after them if they have none yet."""
    assert challenge.id is not None
    assert user.id is not None
    team = team_of(session, challenge, user)
    if team is not None:
        return team
    team = Team(
        challenge_id=challenge.id,
        name=_free_name(session, challenge.id, user.username),
        captain_id=user.id,
    )
    session.add(team)
    session.flush()
    assert team.id is not None
    session.add(TeamMember(team_id=team.id, challenge_id=challenge.id, user_id=user.id))
    session.flush()
    return team


def captain_of(session: Session, team: Team) -> User | None:
    """The team's captain: its recorded captain while a member, else its longest-standing member."""
    members = members_of(session, team)
    for member in members:
        if member.id == team.captain_id:
            return member
    return members[0] if members else None


def _lock_team(session: Session, team_id: int) -> None:
    # A write to the row takes its lock on PostgreSQL (and the database write lock on SQLite).
    session.execute(
        sa.update(Team)
        .where(col(Team.id) == team_id)
        .values(submission_counter=col(Team.submission_counter) + 1)
    )


def lock_team_for_upload(session: Session, *, challenge: Challenge, user: User) -> Team:
    """Lock the uploader's team row so the team's quota is checked one upload at a time.

    Called by ``create_submission`` right after it locked the participant's own counter row; also
    refuses registrations still awaiting approval and disqualified teams.
    """
    participation = session.exec(
        select(Participation).where(
            Participation.challenge_id == challenge.id, Participation.user_id == user.id
        )
    ).first()
    if participation is not None and participation.status != "approved":
        raise PermissionDenied(
            "Your registration awaits the organizers' approval; you can submit once approved."
            if participation.status == "pending"
            else "The organizers declined your registration for this challenge."
        )
    team = ensure_team(session, challenge=challenge, user=user)
    assert team.id is not None
    _lock_team(session, team.id)
    if team.disqualified_at is not None:
        raise PermissionDenied(
            f"Your team '{team.name}' was disqualified: {team.disqualified_reason or 'see the rules'}."
        )
    return team


@dataclass
class TeamCounts:
    today: int
    total: int


def count_team_submissions(session: Session, team_id: int, now: dt.datetime) -> TeamCounts:
    """Submissions that use quota (invalid ones do not), today (UTC) and in total."""
    base = (
        select(func.count())
        .select_from(Submission)
        .where(Submission.team_id == team_id, col(Submission.status).in_(COUNTED_STATES))
    )
    total = int(session.exec(base).one())
    today = int(session.exec(base.where(Submission.created_at >= utc_midnight(now))).one())
    return TeamCounts(today=today, total=total)


def merge_deadline_of(session: Session, challenge: Challenge) -> dt.datetime | None:
    """Team changes stop here: the organizer's date, else a week before the last submitting close."""
    if challenge.merge_deadline is not None:
        return challenge.merge_deadline
    closes = [
        p.closes_at
        for p in session.exec(select(Phase).where(Phase.challenge_id == challenge.id))
        if p.accepts_submissions and p.closes_at is not None
    ]
    if not closes:
        return None
    last = max(closes)
    return last - DEFAULT_MERGE_LEAD


def rename_team(session: Session, *, team: Team, actor: User, name: str) -> Team:
    """The captain renames the team; names are unique within a challenge."""
    _require_captain(session, team, actor, "rename the team")
    name = name.strip()
    if not TEAM_NAME_RE.match(name):
        raise BadRequest("Give a team name of 1 to 80 characters, without < or >.", field="name")
    clash = session.exec(
        select(Team.id).where(
            Team.challenge_id == team.challenge_id, Team.name == name, Team.id != team.id
        )
    ).first()
    if clash is not None:
        raise Conflict(f"Another team is already called '{name}'; choose another name.")
    team.name = name
    session.add(team)
    session.flush()
    from challenge.leaderboard import bump_challenge_boards

    bump_challenge_boards(session, team.challenge_id)
    return team


def _require_member(session: Session, team: Team, user: User) -> None:
    row = session.exec(
        select(TeamMember.id).where(TeamMember.team_id == team.id, TeamMember.user_id == user.id)
    ).first()
    if row is None:
        raise NotFound("No such team.")


def _require_captain(session: Session, team: Team, user: User, what: str) -> None:
    """Refuse a member who is not the team's captain (and a non-member, as missing)."""
    _require_member(session, team, user)
    captain = captain_of(session, team)
    if captain is None or captain.id != user.id:
        raise PermissionDenied(
            f"Only the captain ({captain.username if captain else 'nobody'}) can {what}."
        )


def _check_deadline(session: Session, challenge: Challenge, now: dt.datetime) -> None:
    deadline = merge_deadline_of(session, challenge)
    if deadline is not None and now >= deadline:
        raise PermissionDenied(
            f"The team merge deadline ({deadline:%Y-%m-%d %H:%M} UTC) has passed; teams are final."
        )


def invite(
    session: Session,
    *,
    challenge: Challenge,
    team: Team,
    inviter: User,
    invitee_name: str,
    now: dt.datetime | None = None,
) -> TeamInvitation:
    """The captain invites a registered participant of the challenge to join the team."""
    now = now or utcnow()
    _require_captain(session, team, inviter, "invite participants to the team")
    _check_deadline(session, challenge, now)
    invitee = session.exec(select(User).where(User.username == invitee_name.strip())).first()
    if invitee is None or invitee.id is None:
        raise BadRequest(f"No user '{invitee_name}'; check the spelling.", field="username")
    joined = session.exec(
        select(Participation.id).where(
            Participation.challenge_id == challenge.id, Participation.user_id == invitee.id
        )
    ).first()
    if joined is None:
        raise BadRequest(
            f"{invitee.username} has not joined this challenge; they must join (and accept the "
            "rules) before they can be invited.",
            field="username",
        )
    current = team_of(session, challenge, invitee)
    if current is not None and current.id == team.id:
        raise Conflict(f"{invitee.username} is already in your team.")
    pending = session.exec(
        select(TeamInvitation.id).where(
            TeamInvitation.team_id == team.id,
            TeamInvitation.user_id == invitee.id,
            TeamInvitation.state == "pending",
        )
    ).first()
    if pending is not None:
        raise Conflict(f"{invitee.username} already has a pending invitation from your team.")
    size = int(challenge.limits.get("team_size", 4))
    if len(members_of(session, team)) >= size:
        raise PermissionDenied(f"Your team already has the maximum of {size} members.")
    assert team.id is not None
    assert inviter.id is not None
    row = TeamInvitation(team_id=team.id, user_id=invitee.id, invited_by=inviter.id)
    session.add(row)
    session.flush()
    return row


def invitations_for(
    session: Session, challenge: Challenge, user: User
) -> list[tuple[TeamInvitation, Team]]:
    """Pending invitations addressed to the user in this challenge."""
    rows = session.exec(
        select(TeamInvitation, Team)
        .join(Team, col(Team.id) == TeamInvitation.team_id)
        .where(
            TeamInvitation.user_id == user.id,
            TeamInvitation.state == "pending",
            Team.challenge_id == challenge.id,
        )
        .order_by(col(TeamInvitation.created_at))
    ).all()
    return [(i, t) for i, t in rows]


def _pending_invitation(session: Session, invitation_id: int, user: User) -> TeamInvitation:
    row = session.get(TeamInvitation, invitation_id)
    if row is None or row.user_id != user.id or row.state != "pending":
        raise NotFound("No such invitation (it may have been answered already).")
    return row


def decline_invitation(session: Session, *, invitation_id: int, user: User) -> None:
    row = _pending_invitation(session, invitation_id, user)
    row.state = "declined"
    session.add(row)


def accept_invitation(
    session: Session, *, invitation_id: int, user: User, now: dt.datetime | None = None
) -> Team:
    """Join the inviting team: the user's current team (with its submissions) merges into it."""
    row = _pending_invitation(session, invitation_id, user)
    into = session.get(Team, row.team_id)
    assert into is not None
    challenge = session.get(Challenge, into.challenge_id)
    assert challenge is not None
    own = ensure_team(session, challenge=challenge, user=user)
    merged = merge_teams(session, challenge=challenge, into=into, absorbed=own, now=now)
    row.state = "accepted"
    session.add(row)
    return merged


def merge_teams(
    session: Session,
    *,
    challenge: Challenge,
    into: Team,
    absorbed: Team,
    now: dt.datetime | None = None,
) -> Team:
    """Move every member and submission of ``absorbed`` into ``into``, if the rules allow it.

    Refused after the merge deadline, for disqualified teams, when the merged team would be larger
    than ``limits.team_size``, or when it would already have used more submissions than one team
    may (``limits.total``, and ``limits.per_day`` for today).
    """
    from challenge.leaderboard import refresh_team_boards

    now = now or utcnow()
    assert into.id is not None
    assert absorbed.id is not None
    if into.id == absorbed.id:
        raise Conflict("You are already in this team.")
    for team_id in sorted((into.id, absorbed.id)):  # fixed order: two merges cannot deadlock
        _lock_team(session, team_id)
    session.refresh(into)
    session.refresh(absorbed)
    _check_deadline(session, challenge, now)
    captain = captain_of(session, into)  # pinned: the newcomers may have joined earlier
    if into.disqualified_at is not None or absorbed.disqualified_at is not None:
        raise PermissionDenied("A disqualified team cannot merge.")
    size = int(challenge.limits.get("team_size", 4))
    n_members = len(members_of(session, into)) + len(members_of(session, absorbed))
    if n_members > size:
        raise PermissionDenied(
            f"The merged team would have {n_members} members; the limit is {size}."
        )
    a = count_team_submissions(session, into.id, now)
    b = count_team_submissions(session, absorbed.id, now)
    total, per_day = (
        int(challenge.limits.get("total", 300)),
        int(challenge.limits.get("per_day", 5)),
    )
    if a.total + b.total > total:
        raise PermissionDenied(
            f"The merged team would have {a.total + b.total} submissions; a team may make {total}."
        )
    if a.today + b.today > per_day:
        raise PermissionDenied(
            f"Together the teams made {a.today + b.today} submissions today; a team may make "
            f"{per_day} a day. Merge tomorrow (UTC)."
        )
    session.execute(
        sa.update(TeamMember).where(col(TeamMember.team_id) == absorbed.id).values(team_id=into.id)
    )
    # Final selections are the team's choice: the absorbed team's ones are dropped.
    session.execute(
        sa.update(Submission)
        .where(col(Submission.team_id) == absorbed.id)
        .values(team_id=into.id, is_final=False)
    )
    session.execute(
        sa.update(TeamInvitation)
        .where(col(TeamInvitation.team_id) == absorbed.id, col(TeamInvitation.state) == "pending")
        .values(state="declined")
    )
    session.execute(sa.delete(BoardEntry).where(col(BoardEntry.team_id) == absorbed.id))
    absorbed.merged_into_id = into.id
    session.add(absorbed)
    if captain is not None:
        into.captain_id = captain.id
        session.add(into)
    session.flush()
    refresh_team_boards(session, team_id=into.id)
    log.info("team %s merged into %s in %s", absorbed.id, into.id, challenge.slug)
    return into


def leave_team(
    session: Session, *, challenge: Challenge, user: User, now: dt.datetime | None = None
) -> Team:
    """Leave the user's team for a new team of one; returns the new team.

    The rules (as on Kaggle, see docs/teams.md): only before the merge deadline, never from a
    disqualified team, never from a team of one (there is nothing to leave), and never once the
    team has made a submission that counts against its quota: its submissions and quota are shared,
    so leaving would hand the leaver a fresh quota. Submissions stay with the team. When the
    captain leaves, the longest-standing remaining member becomes captain.
    """
    now = now or utcnow()
    assert challenge.id is not None
    assert user.id is not None
    member = membership_of(session, challenge, user)
    if member is None:
        raise NotFound("You are not in a team in this challenge.")
    team = session.get(Team, member.team_id)
    assert team is not None
    assert team.id is not None
    _lock_team(session, team.id)
    session.refresh(team)
    _check_deadline(session, challenge, now)
    if team.disqualified_at is not None:
        raise PermissionDenied(
            f"Team '{team.name}' is disqualified; its members cannot leave it. Ask the organizers."
        )
    members = members_of(session, team)
    if len(members) <= 1:
        raise Conflict(
            f"You are the only member of '{team.name}': there is no team to leave. "
            "To join another team, accept its invitation."
        )
    used = count_team_submissions(session, team.id, now).total
    if used:
        raise PermissionDenied(
            f"Team '{team.name}' has made {used} submission(s); members cannot leave a team once "
            "it has submitted (its submissions and quota are shared). Ask the organizers if you "
            "must."
        )
    captain = captain_of(session, team)
    if captain is not None and captain.id == user.id:
        team.captain_id = next(m.id for m in members if m.id != user.id)
    elif captain is not None:
        team.captain_id = captain.id
    session.add(team)
    own = Team(
        challenge_id=challenge.id,
        name=_free_name(session, challenge.id, user.username),
        captain_id=user.id,
    )
    session.add(own)
    session.flush()
    assert own.id is not None
    member.team_id = own.id
    member.joined_at = now
    session.add(member)
    session.flush()
    log.info("%s left team %s in %s", user.username, team.id, challenge.slug)
    return own


def transfer_captaincy(session: Session, *, team: Team, actor: User, username: str) -> User:
    """The captain hands the captaincy to another member of the team."""
    _require_captain(session, team, actor, "hand over the captaincy")
    target = next((m for m in members_of(session, team) if m.username == username.strip()), None)
    if target is None:
        raise BadRequest(f"'{username}' is not a member of your team.", field="username")
    team.captain_id = target.id
    session.add(team)
    session.flush()
    return target


def disqualify_team(
    session: Session, *, challenge: Challenge, team: Team, actor: User, reason: str
) -> None:
    """Take a team off every leaderboard of the challenge (its rows stay, marked)."""
    if team.challenge_id != challenge.id:
        raise NotFound("No such team.")
    team.disqualified_at = utcnow()
    team.disqualified_reason = reason.strip()[:500]
    session.add(team)
    session.flush()
    from challenge.leaderboard import bump_challenge_boards

    bump_challenge_boards(session, team.challenge_id)
    log.info("team %s disqualified in %s by %s", team.name, challenge.slug, actor.username)


def set_final_selection(
    session: Session, *, submission_id: int, user: User, final: bool
) -> Submission:
    """Mark (or unmark) one of the team's submissions as a final selection for the private board.

    At most ``limits.final_selections`` per team and phase; only scored, on-time submissions.
    """
    sub = session.get(Submission, submission_id)
    if sub is None or sub.team_id is None:
        raise NotFound("No such submission.")
    team = session.get(Team, sub.team_id)
    assert team is not None
    assert team.id is not None
    _require_member(session, team, user)
    _lock_team(session, team.id)
    if final and not sub.is_final:
        if sub.status != "scored" or sub.is_late or sub.baseline_label:
            raise BadRequest("Only scored submissions made before the deadline can be final.")
        challenge = session.get(Challenge, sub.challenge_id)
        phase = session.get(Phase, sub.phase_id)
        assert challenge is not None
        assert phase is not None
        if phase.closes_at is not None and utcnow() >= phase.closes_at:
            raise PermissionDenied(f"Phase {phase.name} has closed; final selections are locked.")
        limit = int(challenge.limits.get("final_selections", 2))
        chosen = session.exec(
            select(func.count())
            .select_from(Submission)
            .where(
                Submission.team_id == team.id,
                Submission.phase_id == sub.phase_id,
                col(Submission.is_final),
            )
        ).one()
        if int(chosen) >= limit:
            raise PermissionDenied(
                f"Your team has already picked {limit} final submission(s); unpick one first."
            )
    sub.is_final = final
    session.add(sub)
    session.flush()
    from challenge.leaderboard import bump_board_version

    bump_board_version(session, sub.phase_id)  # the private board (and its cached pages) changed
    return sub


def allowed_domains(challenge: Challenge) -> list[str]:
    return [d.strip().lower().lstrip("@") for d in challenge.email_domains.split(",") if d.strip()]


def registration_status(challenge: Challenge, user: User, *, onsite: bool = False) -> str:
    """'approved' or 'pending' for a new registration; refuses addresses outside the domains."""
    if onsite:
        return "approved"
    domains = allowed_domains(challenge)
    if domains:
        host = user.email.rsplit("@", 1)[-1].lower()
        if not any(host == d or host.endswith("." + d) for d in domains):
            raise PermissionDenied(
                "This challenge is open to e-mail addresses at "
                + ", ".join(domains)
                + "; change your account's address or ask the organizers."
            )
    return "pending" if challenge.requires_approval else "approved"
