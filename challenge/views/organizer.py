"""Organizer pages: their challenges, submission counts, reveal of the private leaderboard."""

from __future__ import annotations

from sqlmodel import col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.challenges import get_challenge_by_slug, reveal_private_leaderboard
from challenge.errors import NotFound
from challenge.health import worker_statuses
from challenge.models import Challenge, Submission, User
from challenge.web import db, flash, read_form, redirect, render, require_role


def organized_challenge(request: Request, user: User, slug: str) -> Challenge:
    challenge = get_challenge_by_slug(db(request), slug)
    if user.role != "admin" and challenge.created_by != user.id:
        raise NotFound(f"No challenge '{slug}'.")
    return challenge


def dashboard(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    session = db(request)
    query = select(Challenge).order_by(col(Challenge.created_at).desc())
    if user.role != "admin":
        query = query.where(Challenge.created_by == user.id)
    rows = []
    for challenge in session.exec(query):
        counts = dict(
            session.exec(
                select(Submission.status, func.count())
                .where(Submission.challenge_id == challenge.id)
                .group_by(Submission.status)
            ).all()
        )
        rows.append((challenge, counts))
    workers = worker_statuses(request.app.state.ratelimiter.client) if user.role == "admin" else []
    return render(request, "challenge/organize.html", rows=rows, workers=workers)


async def reveal(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    await read_form(request)

    def _reveal() -> Response:
        challenge = organized_challenge(request, user, request.path_params["slug"])
        reveal_private_leaderboard(db(request), challenge=challenge, actor=user)
        db(request).commit()
        flash(request, "The private leaderboard is now public.")
        return redirect(f"/c/{challenge.slug}/leaderboard?board=private")

    return await run_in_threadpool(_reveal)


routes = [
    Route("/organize", dashboard, methods=["GET"], name="organize"),
    Route("/organize/{slug}/reveal", reveal, methods=["POST"], name="reveal"),
]
