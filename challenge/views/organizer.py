"""Organizer pages: their challenges, submission counts, reveal of the private leaderboard."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.challenges import (
    challenge_status,
    get_challenge_by_slug,
    phases_of,
    private_scores_visible_among,
    reveal_due_at,
    reveal_private_leaderboard,
    reveal_refusal,
)
from challenge.errors import NotFound, PodiumError
from challenge.health import code_jail_statuses, worker_statuses
from challenge.models import Challenge, Submission, User, utcnow
from challenge.rescoring import rescore_phase, rescore_submission, runs_of
from challenge.tasks import enqueue_rescore
from challenge.web import db, engine_of, flash, read_form, redirect, render, require_role
from challenge.wording import counted
from forum.models import PENDING, Post, Thread


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
    reveals = {c.id: reveal_state(session, c, user) for c, _ in rows}
    pending = pending_forum_posts(session)
    slugs = {c.slug for c, _ in rows}
    return render(
        request,
        "challenge/organize.html",
        stages={c.id: challenge_stage(session, c) for c, _ in rows},
        pending_posts={k: v for k, v in pending.items() if k in slugs},
        # The site-wide forum is the admins' to moderate.
        site_pending=pending.get(None, 0) if user.role == "admin" else 0,
        rows=rows,
        workers=workers,
        rescores=rescores,
        reveals=reveals,
        code_jails=code_jails,
    )


def challenge_stage(session: Session, challenge: Challenge) -> str:
    """Where a challenge stands for its organizer: its data preparation while that is not done
    (``splitting``, ``failed``...), then upcoming, running, closed (every phase over, private
    board still hidden) or revealed."""
    if challenge.state != "ready":
        return challenge.state
    phases = phases_of(session, challenge)
    if private_scores_visible_among(challenge, phases):
        return "revealed"
    label = challenge_status(phases).label
    return "closed" if label == "finished" else label


def pending_forum_posts(session: Session) -> dict[str | None, int]:
    """Forum posts held for moderation, by challenge slug (None: the site-wide forum)."""
    rows = session.exec(
        select(Thread.challenge_slug, func.count())
        .select_from(Post)
        .join(Thread, col(Thread.id) == Post.thread_id)
        .where(Post.status == PENDING)
        .group_by(col(Thread.challenge_slug))
    ).all()
    return {slug: int(n) for slug, n in rows}


@dataclass
class RevealState:
    """What the organizer pages offer: the reveal refused (and until when), or its form."""

    refusal: str | None  # set: refused now, saying when it becomes possible
    due: dt.datetime | None  # when it happens by itself (at the last close, the bundle's date)
    early: bool  # before that date: an admin's forced reveal, with a reason
    visible: bool  # the private scores are shown already (challenges.private_scores_visible)
    allowed: bool  # this user may confirm a reveal now


def reveal_state(session: Session, challenge: Challenge, user: User) -> RevealState:
    phases = phases_of(session, challenge)
    now = utcnow()
    refusal = reveal_refusal(challenge, phases, now, user)
    due = reveal_due_at(challenge, phases)
    early = refusal is None and due is not None and now < due
    visible = private_scores_visible_among(challenge, phases, now)
    allowed = refusal is None and challenge.revealed_at is None
    return RevealState(refusal, due, early, visible, allowed)


def _reveal_page(
    request: Request, user: User, challenge: Challenge, status_code: int = 200, error: str = ""
) -> Response:
    return render(
        request,
        "challenge/reveal.html",
        status_code=status_code,
        challenge=challenge,
        state=reveal_state(db(request), challenge, user),
        error=error,
    )


def reveal_page(request: Request) -> Response:
    """The confirmation step of a reveal (a form: works without JavaScript)."""
    user = require_role(request, "admin", "organizer")
    challenge = organized_challenge(request, user, request.path_params["slug"])
    return _reveal_page(request, user, challenge)


async def reveal(request: Request) -> Response:
    """Reveal the private leaderboard: refused before the last close, confirmed by typing the
    slug, and before a scheduled date only by an admin with a recorded reason."""
    user = require_role(request, "admin", "organizer")
    form = await read_form(request)

    def _reveal() -> Response:
        session = db(request)
        challenge = organized_challenge(request, user, request.path_params["slug"])
        try:
            reveal_private_leaderboard(
                session,
                challenge=challenge,
                actor=user,
                confirm=str(form.get("confirm", "")),
                reason=str(form.get("reason", "")),
            )
        except PodiumError as exc:
            session.rollback()
            return _reveal_page(request, user, challenge, exc.status_code, exc.message)
        session.commit()
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
            f"Rescoring {counted(total, 'submission')}; the leaderboard switches to the new scores when "
            "all of a phase are done.",
        )
        return redirect("/organize")

    return await run_in_threadpool(_rescore)


routes = [
    Route("/organize", dashboard, methods=["GET"], name="organize"),
    Route("/organize/{slug}/rescore", rescore, methods=["POST"], name="rescore"),
    Route("/organize/{slug}/reveal", reveal_page, methods=["GET"], name="reveal_page"),
    Route("/organize/{slug}/reveal", reveal, methods=["POST"], name="reveal"),
]
