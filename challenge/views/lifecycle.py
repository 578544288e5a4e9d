"""Lifecycle pages: announcements and their feeds, the phase calendar, on-site check-in, and the
organizer's page for a challenge (announce, extend, registrations, teams, baselines, reveal)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from urllib.parse import urlsplit

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.challenges import join_challenge, phases_of
from challenge.errors import BadRequest, NotFound
from challenge.feeds import FeedItem, atom_feed, phase_calendar
from challenge.models import Announcement, Challenge, Submission, Team, User, utcnow
from challenge.schedule import (
    announcements_of,
    decide_registration,
    extend_phase,
    mark_baseline,
    pending_registrations,
    phase_for_code,
    post_announcement,
    set_registration_code,
    set_registration_policy,
    transitions_of,
)
from challenge.teams import disqualify_team, members_of, merge_deadline_of
from challenge.views.challenges import visible_challenge
from challenge.views.organizer import organized_challenge, reveal_state
from challenge.web import (
    db,
    flash,
    rate_limit,
    read_form,
    redirect,
    render,
    require_role,
    require_user,
    settings_of,
)

ATOM = "application/atom+xml; charset=utf-8"


def _authors(request: Request, rows: list[Announcement]) -> dict[int, str]:
    ids = {a.author_id for a in rows if a.author_id is not None}
    if not ids:
        return {}
    found = db(request).exec(select(User.id, User.username).where(col(User.id).in_(ids))).all()
    return {int(i): n for i, n in found if i is not None}


def announcements_page(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    rows = announcements_of(db(request), challenge)
    return render(
        request, "challenge/announcements.html", challenge=challenge, announcements=rows,
        authors=_authors(request, rows),
    )


def challenge_feed(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    rows = announcements_of(db(request), challenge)
    names = _authors(request, rows)
    base = settings_of(request).base_url
    body = atom_feed(
        title=f"{challenge.title} — announcements",
        feed_url=f"{base}/c/{challenge.slug}/feed.atom",
        page_url=f"{base}/c/{challenge.slug}/announcements",
        items=[
            FeedItem(a, challenge, names.get(a.author_id or 0, "Podium scheduler")) for a in rows
        ],
        base_url=base,
        updated=challenge.created_at,
    )
    return Response(body, media_type=ATOM)


def site_feed(request: Request) -> Response:
    session = db(request)
    rows = session.exec(
        select(Announcement, Challenge)
        .join(Challenge, col(Challenge.id) == Announcement.challenge_id)
        .where(col(Challenge.is_listed))
        .order_by(col(Announcement.created_at).desc(), col(Announcement.id).desc())
        .limit(100)
    ).all()
    names = _authors(request, [a for a, _ in rows])
    base = settings_of(request).base_url
    body = atom_feed(
        title=f"{settings_of(request).site_name} — announcements",
        feed_url=f"{base}/feed.atom",
        page_url=f"{base}/",
        items=[FeedItem(a, c, names.get(a.author_id or 0, "Podium scheduler")) for a, c in rows],
        base_url=base,
        updated=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    return Response(body, media_type=ATOM)


def calendar(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    base = settings_of(request).base_url
    body = phase_calendar(
        challenge, phases_of(db(request), challenge), base_url=base,
        host=urlsplit(base).hostname or "podium", now=utcnow(),
    )
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{challenge.slug}.ics"'},
    )


async def checkin(request: Request) -> Response:
    """On-site registration: the code shown at the venue joins (and approves) the participant."""
    user = require_user(request)
    form = await read_form(request)
    if form.get("accept") != "yes":
        raise BadRequest("Tick the box to accept the rules and the data licence.", field="accept")
    # A valid code registers and approves: guesses are limited per account and per address.
    rate_limit(request, "checkin", account=f"user-{user.id}")

    def _do() -> Response:
        challenge = visible_challenge(request, request.path_params["slug"])
        phase = phase_for_code(db(request), challenge, str(form.get("code", "")))
        if phase is None:
            raise BadRequest("That registration code is not valid (or its phase has closed); "
                             "check the code shown in the room.", field="code")
        join_challenge(db(request), challenge=challenge, user=user, onsite=True)
        db(request).commit()
        flash(request, f"You are registered on site for {phase.name}.")
        return redirect(f"/c/{challenge.slug}")

    return await run_in_threadpool(_do)


# ---------------------------------------------------------------- organizer


def organizer_page(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    challenge = organized_challenge(request, user, request.path_params["slug"])
    session = db(request)
    teams = list(
        session.exec(
            select(Team)
            .where(Team.challenge_id == challenge.id, col(Team.merged_into_id).is_(None))
            .order_by(col(Team.name))
            .limit(500)
        )
    )
    own = list(
        session.exec(
            select(Submission)
            .where(
                Submission.challenge_id == challenge.id,
                Submission.user_id == user.id,
                Submission.status == "scored",
            )
            .order_by(col(Submission.created_at).desc())
        )
    )
    return render(
        request,
        "challenge/lifecycle.html",
        challenge=challenge,
        reveal=reveal_state(session, challenge, user),
        phases=phases_of(session, challenge),
        transitions=transitions_of(session, challenge),
        pending=pending_registrations(session, challenge),
        teams=[(t, members_of(session, t)) for t in teams],
        own_submissions=own,
        deadline=merge_deadline_of(session, challenge),
        announcements=announcements_of(session, challenge, limit=10),
    )


def _parse_time(value: str, field: str) -> dt.datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"'{value}' is not a date-time; write e.g. 2027-07-07T23:59Z.",
                         field=field) from exc
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _organizer_action(
    action: Callable[[Request, User, Challenge, FormData], str],
) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        user = require_role(request, "admin", "organizer")
        form = await read_form(request)

        def _do() -> Response:
            challenge = organized_challenge(request, user, request.path_params["slug"])
            message = action(request, user, challenge, form)
            db(request).commit()
            flash(request, message)
            return redirect(f"/organize/{challenge.slug}/lifecycle")

        return await run_in_threadpool(_do)

    return endpoint


def _announce(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    row = post_announcement(
        db(request), challenge=challenge, author=user, title=str(form.get("title", "")),
        body_md=str(form.get("body", "")),
    )
    return "Announcement published" + (" (and posted in the forum)." if row.forum_thread_id else ".")


def _extend(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    closes = _parse_time(str(form.get("closes", "")), "closes")
    if closes is None:
        raise BadRequest("Give the new close time, e.g. 2027-07-07T23:59Z.", field="closes")
    phase = extend_phase(db(request), challenge=challenge, phase_name=str(form.get("phase", "")),
                         closes_at=closes, actor=user)
    return f"Phase {phase.name} now closes {closes:%Y-%m-%d %H:%M} UTC."


def _policy(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    set_registration_policy(
        db(request), challenge=challenge, requires_approval=form.get("approval") == "yes",
        email_domains=str(form.get("email_domains", "")),
        merge_deadline=_parse_time(str(form.get("merge_deadline", "")), "merge_deadline"),
    )
    return "Registration settings saved."


def _registration(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    try:
        user_id = int(str(form.get("user_id", "")))
    except ValueError as exc:
        raise BadRequest("No registration chosen.") from exc
    row = decide_registration(db(request), challenge=challenge, user_id=user_id,
                              approve=form.get("decision") == "approve")
    return f"Registration {row.status}."


def _code(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    phase = set_registration_code(db(request), challenge=challenge,
                                  phase_name=str(form.get("phase", "")),
                                  code=str(form.get("code", "")))
    return f"On-site registration for {phase.name} is " + ("on." if phase.registration_code else "off.")


def _team_of(request: Request, challenge: Challenge, raw: str) -> Team:
    """A (not merged) team of ``challenge``; anything else is the same NotFound."""
    team = db(request).get(Team, int(raw)) if raw.strip().isdigit() and len(raw) < 10 else None
    if team is None or team.challenge_id != challenge.id or team.merged_into_id is not None:
        raise NotFound("No such team.")
    return team


def disqualify_page(request: Request) -> Response:
    """The confirmation step of a disqualification (a form: works without JavaScript)."""
    user = require_role(request, "admin", "organizer")
    challenge = organized_challenge(request, user, request.path_params["slug"])
    team = _team_of(request, challenge, request.query_params.get("team_id", ""))
    return render(
        request, "challenge/disqualify.html", challenge=challenge, team=team,
        members=members_of(db(request), team),
    )


def _disqualify(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    team = _team_of(request, challenge, str(form.get("team_id", "")))
    if form.get("confirm") != "yes":
        raise BadRequest(
            "Disqualifying takes the team off every leaderboard: confirm it on the "
            f"confirmation page (/organize/{challenge.slug}/disqualify?team_id={team.id}).",
            field="confirm",
        )
    disqualify_team(db(request), challenge=challenge, team=team, actor=user,
                    reason=str(form.get("reason", "")))
    return f"Team {team.name} is disqualified."


def _baseline(request: Request, user: User, challenge: Challenge, form: FormData) -> str:
    mark_baseline(db(request), challenge=challenge,
                  submission_id=int(str(form.get("submission_id", "0")) or 0),
                  label=str(form.get("label", "")), actor=user)
    return "Baseline shown on the leaderboard (not ranked)."


routes = [
    Route("/feed.atom", site_feed, methods=["GET"], name="site_feed"),
    Route("/c/{slug}/announcements", announcements_page, methods=["GET"], name="announcements"),
    Route("/c/{slug}/feed.atom", challenge_feed, methods=["GET"], name="challenge_feed"),
    Route("/c/{slug}/calendar.ics", calendar, methods=["GET"], name="calendar"),
    Route("/c/{slug}/checkin", checkin, methods=["POST"], name="checkin"),
    Route("/organize/{slug}/lifecycle", organizer_page, methods=["GET"], name="lifecycle"),
    Route("/organize/{slug}/announce", _organizer_action(_announce), methods=["POST"]),
    Route("/organize/{slug}/extend", _organizer_action(_extend), methods=["POST"]),
    Route("/organize/{slug}/registration", _organizer_action(_policy), methods=["POST"]),
    Route("/organize/{slug}/registrations", _organizer_action(_registration), methods=["POST"]),
    Route("/organize/{slug}/code", _organizer_action(_code), methods=["POST"]),
    Route("/organize/{slug}/disqualify", disqualify_page, methods=["GET"], name="disqualify"),
    Route("/organize/{slug}/disqualify", _organizer_action(_disqualify), methods=["POST"]),
    Route("/organize/{slug}/baseline", _organizer_action(_baseline), methods=["POST"]),
]
