"""The JSON API used by the ``podium`` CLI and scripts. Authenticate with ``Authorization: Bearer``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from challenge.accounts import authenticate, create_api_token, revoke_api_token
from challenge.challenges import (
    challenge_status,
    join_challenge,
    participation_of,
    phase_state,
    phases_of,
    private_scores_visible,
    private_scores_visible_among,
    reveal_private_leaderboard,
)
from challenge.errors import BadRequest, NotAuthenticated, NotFound
from challenge.leaderboard import (
    Entry,
    participant_score,
    private_leaderboard,
    public_leaderboard,
)
from challenge.models import ApiToken, Challenge, Phase, Submission, User
from challenge.submissions import access_submission, queue_position, quota_for, submissions_of
from challenge.uploads import (
    check_declared_size,
    limit_submission_rate,
    receive_multipart,
    record_upload,
    store_upload,
)
from challenge.views.challenges import download, higher_is_better, visible_challenge
from challenge.views.leaderboards import private_hidden_message
from challenge.views.organizer import organized_challenge
from challenge.web import (
    count_failed_login,
    current_user,
    db,
    json_object,
    limit_login_rate,
    query_int,
    rate_limit,
    settings_of,
)


# Uploads per participant per minute, over every API (native and EvalAI). The daily quota bounds
# the number of scored files; this bounds bursts, which cost storage and queue time even when the
# files turn out invalid and are not charged to the quota.
def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def api_user(request: Request) -> User:
    """Unsafe API calls must carry a token: cookies are not accepted there (no CSRF exposure)."""
    user = current_user(request)
    if user is None or (request.method != "GET" and not getattr(request.state, "via_token", False)):
        raise NotAuthenticated(
            "Send 'Authorization: Bearer <token>'; create a token on your account page."
        )
    if getattr(request.state, "via_token", False):
        # Resolving a token stamps its last use. Commit that now: on SQLite an open write would
        # hold the database lock while an upload streams in, and the upload's own transaction
        # (which charges the quota) would wait on it until it timed out.
        db(request).commit()
    return user


def challenge_json(request: Request, challenge: Challenge, user: User | None) -> dict[str, Any]:
    session = db(request)
    phases = phases_of(session, challenge)
    status = challenge_status(phases)
    out: dict[str, Any] = {
        "slug": challenge.slug,
        "title": challenge.title,
        "summary": challenge.summary,
        "status": status.label,
        "state": challenge.state,
        "url": f"{settings_of(request).base_url}/c/{challenge.slug}",
        "metric": challenge.metric.get("name"),
        "higher_is_better": higher_is_better(challenge),
        "submission_format": challenge.submission_format,
        "limits": challenge.limits,
        "phases": [
            {
                "name": p.name,
                "opens": p.opens_at.isoformat(),
                "closes": p.closes_at.isoformat() if p.closes_at else None,
                "state": phase_state(p),
                "accepts_submissions": p.accepts_submissions,
            }
            for p in phases
        ],
        "files": challenge.public_files,
    }
    if user is not None and participation_of(session, challenge, user) is not None:
        out["joined"] = True
        out["quota"] = quota_for(session, challenge, user).to_dict()
    else:
        out["joined"] = False
    return out


def _private_shown(request: Request, challenge_id: int) -> bool:
    """Whether the challenge's private scores may be shown, asked once per request."""
    known: dict[int, bool] | None = getattr(request.state, "private_shown", None)
    if known is None:
        known = request.state.private_shown = {}
    if challenge_id not in known:
        challenge = db(request).get(Challenge, challenge_id)
        known[challenge_id] = challenge is not None and private_scores_visible(
            db(request), challenge
        )
    return known[challenge_id]


def _phase_name(request: Request, phase_id: int) -> str:
    phase = db(request).get(Phase, phase_id)  # identity map: one query per phase and request
    return phase.name if phase is not None else ""


def submission_json(request: Request, sub: Submission) -> dict[str, Any]:
    shown = participant_score(db(request), sub)
    out: dict[str, Any] = {
        "id": sub.id,
        "challenge_id": sub.challenge_id,
        "phase_id": sub.phase_id,
        "phase": _phase_name(request, sub.phase_id),
        "status": sub.status,
        "filename": sub.filename,
        "message": sub.message,
        "size_bytes": sub.size_bytes,
        "sha256": sub.sha256,
        "created_at": sub.created_at.isoformat(),
        "finished_at": sub.finished_at.isoformat() if sub.finished_at else None,
        # Under the Ladder, the score the Ladder released, not the exact one (docs/leaderboards.md).
        "public_score": shown.score,
        "public_ci": [shown.ci_low, shown.ci_high] if shown.ci_low is not None else None,
        # null until the reveal (challenges.private_scores_visible), then the exact score.
        "private_score": sub.private_score if _private_shown(request, sub.challenge_id) else None,
        "is_late": sub.is_late,
        "error": sub.error_message or None,
        "queue_position": queue_position(db(request), sub),
    }
    if sub.scores or sub.run_log:  # a code run (docs/codabench.md): every column, and its log
        out["scores"] = dict(sub.scores)
        out["log"] = code_run_log(request, sub)
    return out


def code_run_log(request: Request, sub: Submission) -> dict[str, Any] | None:
    """The run's output and usage; callers reach ``sub`` through ``access_submission`` (its
    author, the challenge's organizer, an admin). ``hide_output`` hides the output from the
    author but not the usage (Codabench's phase setting)."""
    log = dict(sub.run_log)
    if not log:
        return None
    viewer = api_user(request)
    if log.get("hidden") and viewer.id == sub.user_id and viewer.role != "admin":
        log["stdout"] = log["stderr"] = ""
    log.pop("hidden", None)
    if log.pop("detailed", False):
        log["detailed_results_url"] = f"/submissions/{sub.id}/detailed"
    return log


def entry_json(e: Entry) -> dict[str, Any]:
    return {
        "rank": e.rank,
        "participant": e.username,
        "score": e.score,
        "ci": [e.ci_low, e.ci_high] if e.ci_low is not None else None,
        "submission_id": e.submission_id,
        "submitted_at": e.submitted_at.isoformat(),
        "entries": e.entries,
        "public_rank": e.public_rank,
    }


async def create_token(request: Request) -> Response:
    body = await json_object(request, '{"login": "...", "password": "...", "name": "laptop"}')
    login = str(body.get("login", ""))
    limit_login_rate(request, login)

    def _create() -> Response:
        session = db(request)
        user = authenticate(session, login, str(body.get("password", "")))
        if user is None:
            count_failed_login(request, login)
            raise NotAuthenticated("Unknown user name or wrong password.")
        rate_limit(request, "api_token", account=f"user-{user.id}")
        token = create_api_token(session, user=user, name=str(body.get("name") or "cli"))
        session.commit()
        return JSONResponse({"token": token, "username": user.username}, status_code=201)

    return await run_in_threadpool(_create)


def me(request: Request) -> Response:
    user = api_user(request)
    return JSONResponse({"username": user.username, "email": user.email, "role": user.role})


def list_challenges(request: Request) -> Response:
    from sqlmodel import col, select

    user = current_user(request)
    rows = db(request).exec(
        select(Challenge).where(col(Challenge.is_listed)).order_by(col(Challenge.id))
    )
    return JSONResponse([challenge_json(request, c, user) for c in rows])


def get_challenge(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    return JSONResponse(challenge_json(request, challenge, current_user(request)))


async def join(request: Request) -> Response:
    user = api_user(request)
    body = await json_object(request, '{"accept_rules": true}')
    if body.get("accept_rules") is not True:
        raise BadRequest('Accept the rules and data licence: send {"accept_rules": true}.')

    def _join() -> Response:
        challenge = visible_challenge(request, request.path_params["slug"])
        join_challenge(db(request), challenge=challenge, user=user)
        db(request).commit()
        return JSONResponse(challenge_json(request, challenge, user))

    return await run_in_threadpool(_join)


async def submit(request: Request) -> Response:
    """Multipart with a 'file' field, or a raw body with ?filename=...&message=...

    An optional 'phase' (form field or query parameter) picks one of the open phases.
    """
    user = api_user(request)
    limit_submission_rate(request, user)
    challenge = await run_in_threadpool(visible_challenge, request, request.path_params["slug"])
    check_declared_size(request, challenge)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await receive_multipart(request, challenge, file_field="file")
        if form.file is None:
            raise BadRequest("Send the predictions in a multipart field named 'file'.")
        sub = await record_upload(
            request,
            challenge,
            user,
            form.file,
            form.fields.get("message", ""),
            form.fields.get("phase", "") or request.query_params.get("phase", ""),
        )
    else:
        filename = request.query_params.get("filename", "")
        if not filename:
            raise BadRequest("Name the file: add ?filename=predictions.csv to the URL.")
        sub = await store_upload(
            request,
            challenge,
            user,
            request.stream(),
            filename,
            request.query_params.get("message", ""),
            request.query_params.get("phase", ""),
        )
    return await run_in_threadpool(
        lambda: JSONResponse(submission_json(request, sub), status_code=201)
    )


def my_submissions(request: Request) -> Response:
    user = api_user(request)
    challenge = visible_challenge(request, request.path_params["slug"])
    subs = submissions_of(db(request), challenge, user)
    return JSONResponse([submission_json(request, s) for s in subs])


def get_submission(request: Request) -> Response:
    user = api_user(request)
    sub = access_submission(db(request), int(request.path_params["id"]), user)
    return JSONResponse(submission_json(request, sub))


def leaderboard(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    session = db(request)
    phases = [p for p in phases_of(session, challenge) if p.accepts_submissions]
    wanted = request.query_params.get("phase")
    if wanted:
        phase = next((p for p in phases if p.name == wanted), None)
    else:
        phase = challenge_status(phases_of(session, challenge)).submitting_phase or (
            phases[0] if phases else None
        )
    if phase is None:
        if not wanted:
            raise NotFound("This challenge has no leaderboard.")
        names = ", ".join(p.name for p in phases) or "none"
        raise NotFound(f"No phase '{wanted}' in this challenge; its phases are: {names}.")
    board = request.query_params.get("board", "public")
    if board not in ("public", "private"):
        raise BadRequest(f"Unknown board '{board}'; use board=public or board=private.")
    if board == "private" and not private_scores_visible_among(
        challenge, phases_of(session, challenge)
    ):
        raise NotFound(private_hidden_message(challenge, phases_of(session, challenge)))
    fn = private_leaderboard if board == "private" else public_leaderboard
    entries = fn(session, challenge, phase, higher_is_better(challenge))
    body: dict[str, Any] = {
        "phase": phase.name, "board": board, "entries": [entry_json(e) for e in entries],
    }  # fmt: skip
    if challenge.kind == "codabench":  # every column; 'score' is the ranking column's
        from sqlmodel import col, select

        ids = [e.submission_id for e in entries]
        rows = session.exec(
            select(Submission.id, Submission.scores).where(col(Submission.id).in_(ids))
        ).all()
        scores: dict[Any, Any] = dict(rows)
        for entry in body["entries"]:
            entry["scores"] = scores.get(entry["submission_id"]) or {}
        body["columns"] = [
            {k: c[k] for k in ("key", "title", "sorting", "precision")}
            for c in challenge.codabench.get("columns", []) if not c.get("hidden")
        ]
        body["ranking"] = challenge.codabench.get("ranking")
    return JSONResponse(body)


def list_tokens(request: Request) -> Response:
    from sqlmodel import col, select

    user = api_user(request)
    rows = db(request).exec(
        select(ApiToken)
        .where(ApiToken.user_id == user.id, col(ApiToken.revoked).is_(False))
        .order_by(col(ApiToken.id))
    )
    return JSONResponse(
        [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "created_at": t.created_at.isoformat(),
                "last_used_at": _iso(t.last_used_at),
            }
            for t in rows
        ]
    )


def delete_token(request: Request) -> Response:
    user = api_user(request)
    session = db(request)
    token_id = int(request.path_params["id"])
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.revoked:
        raise NotFound("No such token.")
    revoke_api_token(session, user=user, token_id=token_id)
    session.commit()
    return Response(status_code=204)


def _require_organizer(request: Request) -> User:
    user = api_user(request)
    if user.role not in ("admin", "organizer"):
        raise NotFound("Not found.")
    return user


def organized_challenges(request: Request) -> Response:
    """The challenges the caller organizes (all of them for an admin), with submission counts."""
    from sqlmodel import col, func, select

    user = _require_organizer(request)
    session = db(request)
    query = select(Challenge).order_by(col(Challenge.id))
    if user.role != "admin":
        query = query.where(Challenge.created_by == user.id)
    out = []
    for challenge in session.exec(query):
        counts = dict(
            session.exec(
                select(Submission.status, func.count())
                .where(Submission.challenge_id == challenge.id)
                .group_by(col(Submission.status))
            ).all()
        )
        item = challenge_json(request, challenge, user)
        item.update(
            is_listed=challenge.is_listed,
            state_message=challenge.state_message,
            revealed_at=_iso(challenge.revealed_at),
            submission_counts={str(k): int(v) for k, v in counts.items()},
        )
        out.append(item)
    return JSONResponse(out)


def all_submissions(request: Request) -> Response:
    """Every submission of a challenge, for its organizers: with private scores and error detail."""
    from sqlmodel import col, select

    user = _require_organizer(request)
    session = db(request)
    challenge = organized_challenge(request, user, request.path_params["slug"])
    query = (
        select(Submission, User.username, Phase.name)
        .join(User, col(User.id) == Submission.user_id)
        .join(Phase, col(Phase.id) == Submission.phase_id)
        .where(Submission.challenge_id == challenge.id)
        .order_by(col(Submission.id).desc())
    )
    status = request.query_params.get("status")
    if status:
        query = query.where(Submission.status == status)
    limit = query_int(request, "limit", 500, maximum=5000)
    out = []
    for sub, username, phase_name in session.exec(query.limit(limit)).all():
        item = submission_json(request, sub)
        item.update(
            participant=username,
            phase=phase_name,
            public_score=sub.public_score,  # organizers see exact scores, Ladder or not
            public_ci=[sub.public_ci_low, sub.public_ci_high]
            if sub.public_ci_low is not None
            else None,
            private_score=sub.private_score,
            private_ci=[sub.private_ci_low, sub.private_ci_high]
            if sub.private_ci_low is not None
            else None,
            error_detail=sub.error_detail or None,
            attempts=sub.attempts,
            duration_ms=sub.duration_ms,
        )
        out.append(item)
    return JSONResponse(out)


async def reveal(request: Request) -> Response:
    """Reveal the private leaderboard: ``{"confirm": "<slug>", "reason": "..."}``; refused while
    a phase ranking on the private rows is open, and before a scheduled date unless an admin
    gives a reason (see docs/leaderboards.md)."""
    user = await run_in_threadpool(_require_organizer, request)
    try:
        body = await request.json()
    except ValueError:
        body = None

    def _reveal() -> Response:
        session = db(request)
        # Someone else's challenge looks missing, whatever the body says.
        challenge = organized_challenge(request, user, request.path_params["slug"])
        if not isinstance(body, dict):
            raise BadRequest('Send JSON: {"confirm": "<the challenge slug>", "reason": "..."}.')
        event = reveal_private_leaderboard(
            session,
            challenge=challenge,
            actor=user,
            confirm=str(body.get("confirm") or ""),
            reason=str(body.get("reason") or ""),
        )
        session.commit()
        return JSONResponse(
            {
                "slug": challenge.slug,
                "revealed_at": _iso(challenge.revealed_at),
                "forced": event is not None and event.action == "reveal_forced",
            }
        )

    return await run_in_threadpool(_reveal)


def openapi_document(request: Request) -> Response:
    from challenge.openapi import build_openapi

    return JSONResponse(build_openapi(settings_of(request).base_url))


routes = [
    Route("/openapi.json", openapi_document, methods=["GET"]),
    Route("/auth/token", create_token, methods=["POST"]),
    Route("/me", me, methods=["GET"]),
    Route("/tokens", list_tokens, methods=["GET"]),
    Route("/tokens/{id:dbint}", delete_token, methods=["DELETE"]),
    Route("/organize/challenges", organized_challenges, methods=["GET"]),
    Route("/challenges/{slug}/all-submissions", all_submissions, methods=["GET"]),
    Route("/challenges/{slug}/reveal", reveal, methods=["POST"]),
    Route("/challenges", list_challenges, methods=["GET"]),
    Route("/challenges/{slug}", get_challenge, methods=["GET"]),
    Route("/challenges/{slug}/join", join, methods=["POST"]),
    Route("/challenges/{slug}/files/{name}", download, methods=["GET"]),
    Route("/challenges/{slug}/submissions", submit, methods=["POST"]),
    Route("/challenges/{slug}/submissions", my_submissions, methods=["GET"]),
    Route("/challenges/{slug}/leaderboard", leaderboard, methods=["GET"]),
    Route("/submissions/{id:dbint}", get_submission, methods=["GET"]),
]
