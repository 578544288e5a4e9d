"""Organizer pages: their challenges, submission counts, reveal of the private leaderboard."""

from __future__ import annotations

from sqlmodel import col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.challenges import get_challenge_by_slug, phases_of, reveal_private_leaderboard
from challenge.errors import NotFound
from challenge.health import code_jail_statuses, worker_statuses
from challenge.models import Challenge, Submission, User
from challenge.rescoring import rescore_phase, rescore_submission, runs_of
from challenge.tasks import enqueue_rescore
from challenge.web import db, engine_of, flash, read_form, redirect, render, require_role


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
    # The latest rescore of each challenge: its state, and why it failed if it did.
    rescores = {c.id: runs_of(session, c, limit=1) for c, _ in rows}
    client = request.app.state.ratelimiter.client
    workers = worker_statuses(client) if user.role == "admin" else []
    code_jails = code_jail_statuses(client) if user.role == "admin" else []
    return render(
        request, "challenge/organize.html", rows=rows, workers=workers, rescores=rescores,
        code_jails=code_jails,
    )  # fmt: skip


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


async def rescore(request: Request) -> Response:
    """Rescore one submission (form field ``submission_id``) or every phase of the challenge."""
    user = require_role(request, "admin", "organizer")
    form = await read_form(request)
    raw_id = str(form.get("submission_id") or "").strip().lstrip("#")

    def _rescore() -> Response:
        session = db(request)
        challenge = organized_challenge(request, user, request.path_params["slug"])
        if raw_id:
            if not raw_id.isdigit():
                flash(request, f"'{raw_id}' is not a submission number.", "error")
                return redirect("/organize")
            sub = session.get(Submission, int(raw_id))
            if sub is None or sub.challenge_id != challenge.id:
                raise NotFound(f"No submission #{raw_id} in this challenge.")
            runs = [rescore_submission(session, submission_id=int(raw_id), actor=user)]
        else:
            runs = [
                rescore_phase(session, phase_id=phase.id, actor=user)
                for phase in phases_of(session, challenge)
                if phase.id is not None
            ]
        session.commit()
        total = sum(run.total for run in runs)
        for run in runs:
            assert run.id is not None
            enqueue_rescore(engine_of(request), run.id)
        flash(
            request,
            f"Rescoring {total} submission(s); the leaderboard switches to the new scores when "
            "all of a phase are done.",
        )
        return redirect("/organize")

    return await run_in_threadpool(_rescore)


routes = [
    Route("/organize", dashboard, methods=["GET"], name="organize"),
    Route("/organize/{slug}/rescore", rescore, methods=["POST"], name="rescore"),
    Route("/organize/{slug}/reveal", reveal, methods=["POST"], name="reveal"),
]
