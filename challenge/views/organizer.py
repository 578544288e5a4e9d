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
from challenge.errors import BadRequest, NotFound, PodiumError
from challenge.health import code_jail_statuses, worker_statuses
from challenge.models import Challenge, Phase, Submission, Team, User, utcnow
from challenge.rescoring import rescore_phase, rescore_submission, runs_of
from challenge.submissions import ALL_STATES, challenge_submissions
from challenge.tasks import enqueue_rescore
from challenge.web import (
    db,
    engine_of,
    flash,
    query_int,
    read_form,
    redirect,
    render,
    require_role,
)
from challenge.wording import counted
from forum.models import PENDING, Post, Thread

PAGE_SIZE = 50


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


def submissions_page(request: Request) -> Response:
    """Every submission of a challenge, for its organizers: filter by status, team and phase."""
    user = require_role(request, "admin", "organizer")
    session = db(request)
    challenge = organized_challenge(request, user, request.path_params["slug"])
    status = request.query_params.get("status", "").strip()
    if status and status not in ALL_STATES:
        raise BadRequest(
            f"status must be one of {', '.join(ALL_STATES)} (or empty for all), not "
            f"'{status[:40]}'.",
            field="status",
        )
    teams = list(
        session.exec(
            select(Team).where(Team.challenge_id == challenge.id).order_by(col(Team.name))
        )
    )
    phases = phases_of(session, challenge)
    team_id = query_int(request, "team", 0, minimum=0) or None
    if team_id is not None and team_id not in {t.id for t in teams}:
        raise BadRequest(f"team {team_id} is not a team of this challenge.", field="team")
    phase_id = query_int(request, "phase", 0, minimum=0) or None
    if phase_id is not None and phase_id not in {p.id for p in phases}:
        raise BadRequest(f"phase {phase_id} is not a phase of this challenge.", field="phase")
    page = query_int(request, "page", 1, maximum=100_000)
    rows, total = challenge_submissions(
        session,
        challenge=challenge,
        status=status or None,
        team_id=team_id,
        phase_id=phase_id,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    pages = max(1, -(-total // PAGE_SIZE))
    base = {"status": status, "team": team_id or "", "phase": phase_id or ""}
    return render(
        request,
        "challenge/organize_submissions.html",
        challenge=challenge,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        states=ALL_STATES,
        teams=teams,
        phases=phases,
        filters=base,
        query={k: v for k, v in base.items() if v},
    )


def _organized_submission(request: Request, user: User) -> tuple[Challenge, Submission]:
    challenge = organized_challenge(request, user, request.path_params["slug"])
    sub = db(request).get(Submission, request.path_params["id"])
    if sub is None or sub.challenge_id != challenge.id:
        raise NotFound(f"No submission #{request.path_params['id']} in this challenge.")
    return challenge, sub


def submission_detail(request: Request) -> Response:
    """One submission as its organizers see it: the error detail participants do not see."""
    user = require_role(request, "admin", "organizer")
    challenge, sub = _organized_submission(request, user)
    session = db(request)
    return render(
        request,
        "challenge/organize_submission.html",
        challenge=challenge,
        sub=sub,
        participant=session.get(User, sub.user_id),
        phase=session.get(Phase, sub.phase_id),
        team=session.get(Team, sub.team_id) if sub.team_id is not None else None,
        rescorable=sub.status in ("scored", "invalid", "error"),
    )


async def rescore_one(request: Request) -> Response:
    """Rescore one submission from its organizer page (rescoring.rescore_submission)."""
    user = require_role(request, "admin", "organizer")
    await read_form(request)

    def _rescore() -> Response:
        session = db(request)
        challenge, sub = _organized_submission(request, user)
        assert sub.id is not None
        try:
            run = rescore_submission(session, submission_id=sub.id, actor=user)
        except PodiumError as exc:  # still queued: nothing to rescore yet
            session.rollback()
            flash(request, exc.message, "error")
            return redirect(f"/organize/{challenge.slug}/submissions/{sub.id}")
        session.commit()
        assert run.id is not None
        enqueue_rescore(engine_of(request), run.id)
        flash(request, f"Rescoring submission #{sub.id}; its score changes when it is done.")
        return redirect(f"/organize/{challenge.slug}/submissions/{sub.id}")

    return await run_in_threadpool(_rescore)


routes = [
    Route("/organize", dashboard, methods=["GET"], name="organize"),
    Route("/organize/{slug}/rescore", rescore, methods=["POST"], name="rescore"),
    Route("/organize/{slug}/reveal", reveal_page, methods=["GET"], name="reveal_page"),
    Route("/organize/{slug}/reveal", reveal, methods=["POST"], name="reveal"),
    Route("/organize/{slug}/submissions", submissions_page, methods=["GET"], name="org_subs"),
    Route("/organize/{slug}/submissions/{id:dbint}", submission_detail, methods=["GET"]),
    Route("/organize/{slug}/submissions/{id:dbint}/rescore", rescore_one, methods=["POST"]),
]
