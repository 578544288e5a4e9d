"""Team pages: members, invitations, renaming; final selections on the submissions list."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.challenges import participation_of
from challenge.errors import NotFound
from challenge.models import Challenge, Team, TeamInvitation, User, utcnow
from challenge.teams import (
    TeamCounts,
    accept_invitation,
    captain_of,
    count_team_submissions,
    decline_invitation,
    invitations_for,
    invite,
    leave_team,
    members_of,
    merge_deadline_of,
    rename_team,
    set_final_selection,
    team_of,
    transfer_captaincy,
)
from challenge.views.challenges import visible_challenge
from challenge.views.mail import routes as mail_routes
from challenge.web import db, flash, read_form, redirect, render, require_user
from challenge.wording import counted


def _joined(request: Request) -> tuple[Challenge, User]:
    user = require_user(request)
    challenge = visible_challenge(request, request.path_params["slug"])
    if participation_of(db(request), challenge, user) is None:
        raise NotFound("Join the challenge first; then you can form a team.")
    return challenge, user


def team_page(request: Request) -> Response:
    challenge, user = _joined(request)
    session = db(request)
    team = team_of(session, challenge, user)
    sent: list[tuple[TeamInvitation, str]] = []
    counts = None
    now = utcnow()
    if team is not None and team.id is not None:
        rows = session.exec(
            select(TeamInvitation, User.username)
            .join(User, col(User.id) == TeamInvitation.user_id)
            .where(TeamInvitation.team_id == team.id, col(TeamInvitation.state) == "pending")
        ).all()
        sent = [(i, n) for i, n in rows]
        counts = count_team_submissions(session, team.id, now)
    captain = captain_of(session, team) if team else None
    deadline = merge_deadline_of(session, challenge)
    return render(
        request,
        "challenge/team.html",
        challenge=challenge,
        team=team,
        members=members_of(session, team) if team else [],
        captain=captain,
        is_captain=captain is not None and captain.id == user.id,
        sent=sent,
        received=invitations_for(session, challenge, user),
        deadline=deadline,
        counts=counts,
        team_size=int(challenge.limits.get("team_size", 4)),
        leave_refused=_leave_refused(team, counts, deadline, now),
    )


def _leave_refused(
    team: Team | None, counts: TeamCounts | None, deadline: dt.datetime | None, now: dt.datetime
) -> str | None:
    """Why ``leave_team`` would refuse a member of this (multi-member) team now, or None.

    The same rules as :func:`challenge.teams.leave_team`, so that the page shows a disabled
    button with the reason instead of a button whose click is refused.
    """
    if team is None:
        return None
    if deadline is not None and now >= deadline:
        return (
            f"The team merge deadline ({deadline:%Y-%m-%d %H:%M} UTC) has passed; teams are final."
        )
    if team.disqualified_at is not None:
        return "The team is disqualified; its members cannot leave it. Ask the organizers."
    if counts is not None and counts.total:
        return (
            f"The team has made {counted(counts.total, 'submission')}; members cannot leave a team once it "
            "has submitted (its submissions and quota are shared). Ask the organizers if you must."
        )
    return None


def _team_action(request: Request) -> tuple[Challenge, User, Team]:
    challenge, user = _joined(request)
    team = team_of(db(request), challenge, user)
    if team is None:
        raise NotFound("No team.")
    return challenge, user, team


async def rename(request: Request) -> Response:
    form = await read_form(request)

    def _do() -> Response:
        challenge, user, team = _team_action(request)
        rename_team(db(request), team=team, actor=user, name=str(form.get("name", "")))
        db(request).commit()
        flash(request, f"Your team is now called {team.name}.")
        return redirect(f"/c/{challenge.slug}/team")

    return await run_in_threadpool(_do)


async def invite_member(request: Request) -> Response:
    form = await read_form(request)

    def _do() -> Response:
        challenge, user, team = _team_action(request)
        row = invite(
            db(request),
            challenge=challenge,
            team=team,
            inviter=user,
            invitee_name=str(form.get("username", "")),
        )
        db(request).commit()
        flash(request, f"Invitation #{row.id} sent.")
        return redirect(f"/c/{challenge.slug}/team")

    return await run_in_threadpool(_do)


async def leave(request: Request) -> Response:
    await read_form(request)

    def _do() -> Response:
        challenge, user, team = _team_action(request)
        old_name = team.name
        own = leave_team(db(request), challenge=challenge, user=user)
        db(request).commit()
        flash(request, f"You left {old_name}; you now compete alone as {own.name}.")
        return redirect(f"/c/{challenge.slug}/team")

    return await run_in_threadpool(_do)


async def hand_over_captaincy(request: Request) -> Response:
    form = await read_form(request)

    def _do() -> Response:
        challenge, user, team = _team_action(request)
        target = transfer_captaincy(
            db(request), team=team, actor=user, username=str(form.get("username", ""))
        )
        db(request).commit()
        flash(request, f"{target.username} is now the captain of {team.name}.")
        return redirect(f"/c/{challenge.slug}/team")

    return await run_in_threadpool(_do)


async def answer_invitation(request: Request) -> Response:
    await read_form(request)
    answer = request.path_params["answer"]
    if answer not in ("accept", "decline"):
        raise NotFound("Not found.")

    def _do() -> Response:
        challenge, user = _joined(request)
        invitation_id = int(request.path_params["id"])
        if answer == "accept":
            team = accept_invitation(db(request), invitation_id=invitation_id, user=user)
            message = f"You joined team {team.name}; your submissions now count for it."
        else:
            decline_invitation(db(request), invitation_id=invitation_id, user=user)
            message = "Invitation declined."
        db(request).commit()
        flash(request, message)
        return redirect(f"/c/{challenge.slug}/team")

    return await run_in_threadpool(_do)


async def pick_final(request: Request) -> Response:
    form = await read_form(request)
    final = form.get("final") == "yes"

    def _do() -> Response:
        challenge, user = _joined(request)
        sub = set_final_selection(
            db(request), submission_id=int(request.path_params["id"]), user=user, final=final
        )
        if sub.challenge_id != challenge.id:
            raise NotFound("No such submission.")
        db(request).commit()
        flash(request, f"Submission #{sub.id} is {'now' if final else 'no longer'} a final pick.")
        return redirect(f"/c/{challenge.slug}#submissions")

    return await run_in_threadpool(_do)


routes = [
    Route("/c/{slug}/team", team_page, methods=["GET"], name="team"),
    Route("/c/{slug}/team/rename", rename, methods=["POST"]),
    Route("/c/{slug}/team/invite", invite_member, methods=["POST"]),
    Route("/c/{slug}/team/leave", leave, methods=["POST"]),
    Route("/c/{slug}/team/captain", hand_over_captaincy, methods=["POST"]),
    Route("/c/{slug}/invitations/{id:dbint}/{answer:str}", answer_invitation, methods=["POST"]),
    Route("/c/{slug}/submissions/{id:dbint}/final", pick_final, methods=["POST"]),
    *mail_routes,  # the account page's e-mail preferences (mounted with the team pages)
]
