"""EvalAI-compatible routes, so the unmodified ``evalai`` CLI (1.3.18) works against Podium.

The CLI is pointed here with ``evalai host -sh https://podium.example.org`` and given a token from
the account page with ``evalai set_token pod_...``; it sends ``Authorization: Bearer <token>``.

Mapping (see docs/evalai.md):

* an EvalAI *challenge* is a Podium challenge (same integer id);
* an EvalAI *challenge phase* is a Podium phase (same integer id);
* an EvalAI *challenge phase split* is a phase's public or private board: split ``2*phase - 1``
  is the public board, ``2*phase`` the private one (visible once revealed);
* an EvalAI *participant team* is a Podium team (same integer id; a Podium team belongs to one
  challenge, so a participant has one per challenge joined, its ``team_url`` the team page); its
  ``created_by`` is the captain. Before joining anything a participant is listed as a team of one
  whose id is their user id; ``participate`` takes that id or the id of any team of theirs. The
  team's name is the one on submissions and boards; a team's submissions are listed to all its
  members. An organizer is their own *host team*.

The paths are EvalAI's own (``evalai/utils/urls.py``). They are mounted under ``/api`` before
Podium's routes; none of them has the shape of a Podium route (Podium's challenge routes are
``/api/challenges/{slug}[/{literal}...]`` and the EvalAI ones use literal segments such as
``challenge`` or integer ids where Podium has literals), and their ids are integer-typed.

Errors are answered as ``{"error": message}``, which is what the CLI prints, and a bad token as
``{"detail": "Invalid token"}``, which makes the CLI tell the user to generate a new one.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from challenge import storage
from challenge.accounts import authenticate, create_api_token
from challenge.api import api_user
from challenge.challenges import (
    challenge_status,
    join_challenge,
    participation_of,
    phase_state,
    phases_of,
    private_scores_visible,
    private_scores_visible_among,
)
from challenge.errors import (
    BadRequest,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PodiumError,
    QuotaExceeded,
)
from challenge.leaderboard import participant_score, private_leaderboard, public_leaderboard
from challenge.models import (
    Challenge,
    EvalAIUpload,
    Phase,
    Submission,
    Team,
    TeamMember,
    User,
    utcnow,
)
from challenge.security import hash_token
from challenge.submissions import quota_for, submittable_phases
from challenge.teams import captain_of, members_of, team_of
from challenge.uploads import (
    check_declared_size,
    limit_submission_rate,
    receive_multipart,
    record_upload,
    store_upload,
    upload_limit_bytes,
)
from challenge.views.challenges import higher_is_better, visible_challenge
from challenge.views.leaderboards import private_hidden_message
from challenge.web import count_failed_login, db, limit_login_rate, rate_limit, settings_of
from splitter.formats import file_checksums

UPLOAD_TTL = dt.timedelta(minutes=30)  # presigned part URLs stop working after this
EVALAI_CHUNK = 20 * 1024 * 1024  # the part size the CLI uses (utils/common.py, max_chunk_size)
FAR_FUTURE = dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
STATUS = {
    "received": "submitted",
    "scoring": "running",
    "scored": "finished",
    "invalid": "failed",
    "error": "failed",
}

Endpoint = Callable[[Request], Any]


# The CLI prints the "error" of an answer with one of these statuses and only the bare status line
# ("429 Client Error: Too Many Requests for url: ...") of any other (evalai/utils/config.py,
# EVALAI_ERROR_CODES). EvalAI itself answers 406 for a missing object or a refused submission.
CLI_SHOWN_STATUSES = frozenset({400, 401, 403, 406})


def _error_response(exc: PodiumError, *, keep_status: bool = False) -> Response:
    body: dict[str, Any] = {"error": exc.message}
    if isinstance(exc, NotAuthenticated) and "token" in exc.message.lower():
        body["detail"] = "Invalid token"
    status = exc.status_code
    if not keep_status and status not in CLI_SHOWN_STATUSES:
        status = 406
    return JSONResponse(body, status_code=status)


def _wrap(fn: Endpoint, *, keep_status: bool) -> Endpoint:
    import inspect

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(request: Request) -> Response:
            try:
                response: Response = await fn(request)
            except PodiumError as exc:
                return _error_response(exc, keep_status=keep_status)
            return response

        return run_async

    @functools.wraps(fn)
    def run_sync(request: Request) -> Response:
        try:
            response: Response = fn(request)
        except PodiumError as exc:
            return _error_response(exc, keep_status=keep_status)
        return response

    return run_sync


def compat(fn: Endpoint) -> Endpoint:
    """Answer Podium's errors in EvalAI's error shape, with a status whose message the CLI prints
    (a daily quota, an unknown phase, a file too large: 406, as EvalAI); sync or async endpoints."""
    return _wrap(fn, keep_status=False)


def presigned_compat(fn: Endpoint) -> Endpoint:
    """For the presigned part URLs, which stand in for S3: errors keep their HTTP status."""
    return _wrap(fn, keep_status=True)


def evalai_date(value: dt.datetime | None) -> str | None:
    """EvalAI's date format: the CLI parses only ``%Y-%m-%dT%H:%M:%S[.%f]Z``."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(results: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"count": len(results), "next": None, "previous": None, "results": results})


def _challenge_by_id(request: Request, challenge_id: int) -> Challenge:
    row = db(request).get(Challenge, challenge_id)
    if row is None:
        raise NotFound(f"No challenge {challenge_id}; list them with `evalai challenges`.")
    return visible_challenge(request, row.slug)


def _phase_of(request: Request, challenge: Challenge, phase_id: int) -> Phase:
    phase = db(request).get(Phase, phase_id)
    if phase is None or phase.challenge_id != challenge.id:
        raise NotFound(
            f"No phase {phase_id} in challenge {challenge.id}; list them with "
            f"`evalai challenge {challenge.id} phases`."
        )
    return phase


def _phase_by_id(request: Request, phase_id: int) -> tuple[Challenge, Phase]:
    phase = db(request).get(Phase, phase_id)
    if phase is None:
        raise NotFound(f"No phase {phase_id}.")
    return _challenge_by_id(request, phase.challenge_id), phase


def _creator_name(request: Request, challenge: Challenge) -> str:
    if challenge.created_by is not None:
        user = db(request).get(User, challenge.created_by)
        if user is not None:
            return user.username
    return settings_of(request).site_name


def challenge_object(request: Request, challenge: Challenge) -> dict[str, Any]:
    """A Podium challenge in the shape of EvalAI's ChallengeSerializer."""
    phases = phases_of(db(request), challenge)
    status = challenge_status(phases)
    starts = min((p.opens_at for p in phases), default=challenge.created_at)
    closes = [p.closes_at for p in phases if p.closes_at is not None]
    ends = max(closes) if closes and len(closes) == len(phases) else FAR_FUTURE
    url = f"{settings_of(request).base_url}/c/{challenge.slug}"
    fmt = challenge.submission_format
    key = fmt.get("id", "")
    columns = ", ".join([*(map(str, key) if isinstance(key, list) else [str(key)]),
                         *[str(c) for c in fmt.get("columns", {})]])
    return {
        "id": challenge.id,
        "title": challenge.title,
        "slug": challenge.slug,
        "short_description": challenge.summary,
        "description": challenge.description_md,
        "terms_and_conditions": f"Accept the rules and the data licence ({challenge.license}) "
        f"on {url} or with `evalai challenge {challenge.id} participate {{team}}`.",
        "submission_guidelines": f"Upload a file with the columns {columns}.",
        "evaluation_details": f"Metric: {challenge.metric.get('name', '')}.",
        "image": None,
        "start_date": evalai_date(starts),
        "end_date": evalai_date(ends),
        "creator": {
            "id": challenge.created_by or 0,
            "team_name": _creator_name(request, challenge),
            "created_by": _creator_name(request, challenge),
        },
        "domain": None,
        "list_tags": [],
        "published": True,
        "approved_by_admin": True,
        "is_active": status.label == "running",
        "enable_forum": True,
        "anonymous_leaderboard": False,
        "is_docker_based": False,
        "is_static_dataset_code_upload": False,
        "allowed_email_domains": [],
        "blocked_email_domains": [],
        "banned_email_ids": [],
        "remote_evaluation": False,
        "podium_url": url,
        "podium_status": status.label,
    }


def phase_object(challenge: Challenge, phase: Phase) -> dict[str, Any]:
    """A Podium phase in the shape of EvalAI's ChallengePhaseSerializer."""
    limits = challenge.limits
    return {
        "id": phase.id,
        "name": phase.name,
        "description": f"Phase '{phase.name}' of {challenge.title}.",
        "leaderboard_public": True,
        "start_date": evalai_date(phase.opens_at),
        "end_date": evalai_date(phase.closes_at or FAR_FUTURE),
        "challenge": challenge.id,
        "is_public": True,
        "is_active": phase_state(phase) == "open" and phase.accepts_submissions,
        "codename": re.sub(r"[^a-z0-9]+", "-", phase.name.lower()).strip("-"),
        "slug": f"{challenge.slug}-{phase.id}",
        "max_submissions_per_day": int(limits.get("per_day", 5)),
        "max_submissions_per_month": int(limits.get("total", 300)),
        "max_submissions": int(limits.get("total", 300)),
        "max_concurrent_submissions_allowed": int(limits.get("per_day", 5)),
        "is_restricted_to_select_one_submission": False,
        "is_partial_submission_evaluation_enabled": False,
        "allowed_submission_file_types": ".csv, .csv.gz, .zip, .parquet",
        "allowed_email_ids": None,
        "default_submission_meta_attributes": [],
        "submission_meta_attributes": [],
        "accepts_submissions": phase.accepts_submissions,
    }


def split_id(phase: Phase, board: str) -> int:
    """EvalAI's challenge-phase-split id for one of a phase's two boards."""
    assert phase.id is not None
    return phase.id * 2 - (1 if board == "public" else 0)


def _team(user: User, host: bool = False) -> dict[str, Any]:
    member = (
        {"user": user.username, "id": user.id}
        if host
        else {"member_name": user.username, "member_id": user.id, "status": "Self"}
    )
    return {
        "id": user.id,
        "team_name": user.username,
        "created_by": user.username,
        "team_url": "",
        "members": [member],
    }


def teams_of(session: Session, user: User) -> list[tuple[Team, Challenge]]:
    """The user's Podium teams, one per challenge joined, by team id."""
    rows = session.exec(
        select(Team, Challenge)
        .join(TeamMember, col(TeamMember.team_id) == Team.id)
        .join(Challenge, col(Challenge.id) == Team.challenge_id)
        .where(TeamMember.user_id == user.id)
        .order_by(col(Team.id))
    ).all()
    return [(t, c) for t, c in rows]


def team_object(request: Request, team: Team, challenge: Challenge, user: User) -> dict[str, Any]:
    """A Podium team in the shape of EvalAI's ParticipantTeamSerializer."""
    session = db(request)
    captain = captain_of(session, team)
    return {
        "id": team.id,
        "team_name": team.name,
        "created_by": captain.username if captain else "",
        "team_url": f"{settings_of(request).base_url}/c/{challenge.slug}/team",
        "members": [
            {
                "member_name": m.username,
                "member_id": m.id,
                "status": "Self" if m.id == user.id else "Accepted",
            }
            for m in members_of(session, team)
        ],
    }


def submission_object(
    sub: Submission, username: str, team: Team | None = None, *, private_shown: bool = False
) -> dict[str, Any]:
    """A Podium submission in the shape of EvalAI's SubmissionSerializer (plus Podium's scores).

    ``username`` is the submitter's; the participant team is the submission's team.
    ``private_shown``: the challenge's private scores may be shown
    (``challenges.private_scores_visible``); until then ``private_score`` is null.
    """
    return {
        "id": sub.id,
        "participant_team": team.id if team is not None else sub.user_id,
        "participant_team_name": team.name if team is not None else username,
        "challenge_phase": sub.phase_id,
        "created_by": username,
        "status": STATUS.get(sub.status, sub.status),
        "is_public": True,
        "is_flagged": False,
        "is_baseline": False,
        "submission_number": sub.id,
        "submitted_at": evalai_date(sub.created_at),
        "started_at": evalai_date(sub.scoring_started_at),
        "completed_at": evalai_date(sub.finished_at),
        "execution_time": round(sub.duration_ms / 1000, 3) if sub.duration_ms else None,
        "input_file": None,
        "stdout_file": None,
        "stderr_file": None,
        "submission_result_file": None,
        "method_name": sub.message,
        "method_description": "",
        "project_url": "",
        "publication_url": "",
        "when_made_public": None,
        "submission_metadata": None,
        "podium_status": sub.status,
        "public_score": participant_score(None, sub).score,  # the Ladder's value under the Ladder
        "private_score": sub.private_score if private_shown else None,
        "error": sub.error_message or None,
    }


# ---------------------------------------------------------------- authentication


@compat
async def login(request: Request) -> Response:
    """``evalai login``: a user name and password (form fields) for an API token."""
    form = await request.form()
    login_name = str(form.get("username", ""))
    limit_login_rate(request, login_name)

    def _login() -> Response:
        session = db(request)
        user = authenticate(session, login_name, str(form.get("password", "")))
        if user is None:
            count_failed_login(request, login_name)
            raise BadRequest("Unknown user name or wrong password.")
        rate_limit(request, "api_token", account=f"user-{user.id}")
        token = create_api_token(session, user=user, name="evalai-cli")
        session.commit()
        return JSONResponse({"token": token})

    return await run_in_threadpool(_login)


@compat
def auth_token(request: Request) -> Response:
    """The CLI swaps its login token for a long-lived one; Podium's tokens are already that.

    Only a token is swapped: a cookie session gets 401, as EvalAI answers without a token.
    """
    api_user(request)
    if not getattr(request.state, "via_token", False):
        raise NotAuthenticated(
            "Send 'Authorization: Bearer <token>'; a login session has no token."
        )
    return JSONResponse({"token": request.headers["authorization"].split(None, 1)[1].strip()})


# ---------------------------------------------------------------- challenges and phases


@compat
def challenge_list(request: Request) -> Response:
    when = request.path_params["time"]
    if when not in ("all", "present", "past", "future"):
        raise BadRequest("Use all, present, past or future.")
    session = db(request)
    out = []
    for challenge in session.exec(
        select(Challenge).where(col(Challenge.is_listed)).order_by(col(Challenge.id))
    ):
        label = challenge_status(phases_of(session, challenge)).label
        wanted = {"all": label, "present": "running", "past": "finished", "future": "upcoming"}
        if label == wanted[when]:
            out.append(challenge_object(request, challenge))
    return _page(out)


@compat
def challenge_detail(request: Request) -> Response:
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    return JSONResponse(challenge_object(request, challenge))


@compat
def phase_list(request: Request) -> Response:
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    return _page([phase_object(challenge, p) for p in phases_of(db(request), challenge)])


@compat
def phase_detail(request: Request) -> Response:
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    phase = _phase_of(request, challenge, request.path_params["phase_id"])
    return JSONResponse(phase_object(challenge, phase))


@compat
def phase_splits(request: Request) -> Response:
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    out = []
    phases = phases_of(db(request), challenge)
    private_shown = private_scores_visible_among(challenge, phases)
    for phase in phases:
        if not phase.accepts_submissions:
            continue
        for board in ("public", "private"):
            shown = board == "public" or private_shown
            out.append(
                {
                    "id": split_id(phase, board),
                    "challenge_phase": phase.id,
                    "challenge_phase_name": phase.name,
                    "dataset_split": 1 if board == "public" else 2,
                    "dataset_split_name": f"{board.capitalize()} test",
                    # EvalAI: 3 = shown to everyone, 1 = hosts only.
                    "visibility": 3 if shown else 1,
                    "leaderboard_decimal_precision": 5,
                    "is_leaderboard_order_descending": higher_is_better(challenge),
                    "show_execution_time": False,
                    "show_leaderboard_by_latest_submission": False,
                }
            )
    return JSONResponse(out)


@compat
def leaderboard(request: Request) -> Response:
    number = int(request.path_params["split_id"])
    board = "public" if number % 2 == 1 else "private"
    challenge, phase = _phase_by_id(request, (number + 1) // 2)
    if not phase.accepts_submissions:
        raise NotFound(f"Phase split {number} has no leaderboard.")
    phases = phases_of(db(request), challenge)
    if board == "private" and not private_scores_visible_among(challenge, phases):
        raise BadRequest(private_hidden_message(challenge, phases))
    hib = higher_is_better(challenge)
    rank = private_leaderboard if board == "private" else public_leaderboard
    label = str(challenge.metric.get("name", "score")).upper()
    results = [
        {
            "id": e.submission_id,
            "submission__id": e.submission_id,
            "submission__participant_team": e.team_id,
            "submission__participant_team__team_name": e.team_name,
            "submission__participant_team__team_url": "",
            "submission__is_baseline": bool(e.baseline),
            "submission__is_public": True,
            "submission__method_name": "",
            "submission__submitted_at": evalai_date(e.submitted_at),
            "challenge_phase_split": number,
            "result": [e.score],
            "filtering_score": e.score,
            "filtering_error": 0,
            "error": None,
            "leaderboard__schema": {"labels": [label], "default_order_by": label},
            "rank": e.rank,
        }
        for e in rank(db(request), challenge, phase, hib)
    ]
    return _page(results)


# ---------------------------------------------------------------- teams


@compat
def participant_teams(request: Request) -> Response:
    user = api_user(request)
    teams = [team_object(request, t, c, user) for t, c in teams_of(db(request), user)]
    return _page(teams or [_team(user)])


@compat
def host_teams(request: Request) -> Response:
    user = api_user(request)
    return _page([_team(user, host=True)] if user.role in ("admin", "organizer") else [])


def _own_team(request: Request) -> User:
    user = api_user(request)
    if int(request.path_params["team_id"]) != user.id:
        raise NotFound(
            f"Team {request.path_params['team_id']} is not yours; your team id is {user.id} "
            "(see `evalai teams --host`)."
        )
    return user


def _own_participant_team(request: Request) -> tuple[User, tuple[Team, Challenge] | None]:
    """The caller and the team of theirs the path names; None when it names the caller
    (their user id: the team of one used before joining, or for joining more challenges)."""
    user = api_user(request)
    team_id = int(request.path_params["team_id"])
    for team, challenge in teams_of(db(request), user):
        if team.id == team_id:
            return user, (team, challenge)
    if team_id == user.id:
        return user, None
    # 403, not 404: the CLI prints the message of a 400/401/403/406 only.
    raise PermissionDenied(
        f"Team {team_id} is not yours; see your teams with `evalai teams --participant`."
    )


@compat
def participant_challenges(request: Request) -> Response:
    user, own = _own_participant_team(request)
    session = db(request)
    if own is not None:
        return _page([challenge_object(request, own[1])])
    out = [
        challenge_object(request, c)
        for c in session.exec(select(Challenge).order_by(col(Challenge.id)))
        if participation_of(session, c, user) is not None
    ]
    return _page(out)


@compat
def host_challenges(request: Request) -> Response:
    user = _own_team(request)
    if user.role not in ("admin", "organizer"):
        return _page([])
    query = select(Challenge).order_by(col(Challenge.id))
    if user.role != "admin":
        query = query.where(Challenge.created_by == user.id)
    return _page([challenge_object(request, c) for c in db(request).exec(query)])


@compat
def participate(request: Request) -> Response:
    """Join the challenge. A Podium team belongs to one challenge, so whichever team of theirs the
    caller names, they join as a team of one (to be merged by invitation on the team page)."""
    user, _ = _own_participant_team(request)
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    join_challenge(db(request), challenge=challenge, user=user)
    db(request).commit()
    return JSONResponse(challenge_object(request, challenge), status_code=201)


# ---------------------------------------------------------------- submissions


def _open_phase(request: Request, challenge: Challenge, phase: Phase, user: User) -> None:
    """Check, before any byte is stored, that a submission to this phase can be accepted."""
    if participation_of(db(request), challenge, user) is None:
        raise PermissionDenied(
            f"Join the challenge first: `evalai challenge {challenge.id} participate {user.id}`."
        )
    choices, current = submittable_phases(phases_of(db(request), challenge))
    if current is None:
        raise PermissionDenied("This challenge is not accepting submissions now.")
    if phase.id not in {p.id for p in choices}:  # any open phase, as on the site
        names = ", ".join(f"{p.id} ('{p.name}')" for p in choices)
        raise PermissionDenied(
            f"Phase {phase.id} ('{phase.name}') is not taking submissions; "
            f"submit to phase {names}."
        )


def _message_of(form: Any) -> str:
    parts = [str(form.get(k) or "").strip() for k in ("method_name", "method_description")]
    return " — ".join(p for p in parts if p)


@compat
def my_submissions(request: Request) -> Response:
    """The submissions of the caller's team in the phase (every member's), newest first."""
    user = api_user(request)
    session = db(request)
    challenge = _challenge_by_id(request, request.path_params["challenge_id"])
    phase = _phase_of(request, challenge, request.path_params["phase_id"])
    team = team_of(session, challenge, user)
    mine = col(Submission.user_id) == user.id
    rows = session.exec(
        select(Submission, User.username)
        .join(User, col(User.id) == Submission.user_id)
        .where(
            Submission.phase_id == phase.id,
            sa.or_(mine, col(Submission.team_id) == team.id) if team is not None else mine,
        )
        .order_by(col(Submission.created_at).desc(), col(Submission.id).desc())
    ).all()
    shown = private_scores_visible(session, challenge)
    return _page(
        [submission_object(s, name, _team_row(session, s), private_shown=shown) for s, name in rows]
    )


def _team_row(session: Session, sub: Submission) -> Team | None:
    return session.get(Team, sub.team_id) if sub.team_id is not None else None


@compat
async def make_submission(request: Request) -> Response:
    """``evalai challenge C phase P submit --file F``: multipart field ``input_file``."""
    user = api_user(request)
    limit_submission_rate(request, user)

    def _check() -> tuple[Challenge, Phase]:
        challenge = _challenge_by_id(request, request.path_params["challenge_id"])
        phase = _phase_of(request, challenge, request.path_params["phase_id"])
        _open_phase(request, challenge, phase, user)
        return challenge, phase

    challenge, phase = await run_in_threadpool(_check)
    check_declared_size(request, challenge)
    form = await receive_multipart(request, challenge, file_field="input_file")
    if form.file is None:
        raise BadRequest("Send the predictions in a multipart field named 'input_file'.")
    form.file.filename = Path(form.file.filename).name
    sub = await record_upload(
        request, challenge, user, form.file, _message_of(form.fields), phase.name
    )
    team = await run_in_threadpool(_team_row, db(request), sub)
    return JSONResponse(submission_object(sub, user.username, team), status_code=201)


@compat
def get_submission(request: Request) -> Response:
    """One submission of the caller's team (any member's)."""
    user = api_user(request)
    session = db(request)
    sub = session.get(Submission, int(request.path_params["submission_id"]))
    team = _team_row(session, sub) if sub is not None else None
    in_team = team is not None and any(m.id == user.id for m in members_of(session, team))
    if sub is None or (sub.user_id != user.id and not in_team):
        raise NotFound(f"No submission {request.path_params['submission_id']} of your team.")
    submitter = session.get(User, sub.user_id)
    name = submitter.username if submitter is not None else ""
    challenge = session.get(Challenge, sub.challenge_id)
    shown = challenge is not None and private_scores_visible(session, challenge)
    return JSONResponse(submission_object(sub, name, team, private_shown=shown))


# ---------------------------------------------------------------- large uploads (--large)


def _parts_dir(request: Request, upload_id: int) -> Path:
    return storage.submission_dir(settings_of(request), ".evalai") / str(upload_id)


@compat
async def presigned_urls(request: Request) -> Response:
    """Step 1 of ``submit --large``: hand out one short-lived, unguessable URL per part."""
    user = api_user(request)
    limit_submission_rate(request, user)
    form = await request.form(max_files=0)
    try:
        parts = int(str(form.get("num_file_chunks", "1")))
    except ValueError as exc:
        raise BadRequest("num_file_chunks must be a whole number.") from exc
    filename = Path(str(form.get("file_name", ""))).name
    if not filename:
        raise BadRequest("Name the file (file_name).")

    def _create() -> Response:
        challenge, phase = _phase_by_id(request, request.path_params["phase_id"])
        _open_phase(request, challenge, phase, user)
        # Refuse before the parts are sent when the quota is used up: the CLI shows the error of
        # this step, but of a failed finish (step 3) only step 4's "did not finish".
        quota = quota_for(db(request), challenge, user)
        if quota.left_today == 0:
            raise QuotaExceeded(
                f"You have used your submissions for today (UTC) ({quota.per_day} a day, "
                f"{quota.total} in all). The counter resets at {quota.resets_at:%Y-%m-%d %H:%M} "
                "UTC; invalid files are not counted."
            )
        limit = upload_limit_bytes(request, challenge)
        if parts < 1 or (parts - 1) * EVALAI_CHUNK > limit:
            raise PayloadTooLarge(
                f"The file is larger than this challenge's limit of {limit // (1024 * 1024)} MB; "
                "compress it (.csv.gz, .zip or Parquet) or drop unneeded columns."
            )
        key = secrets.token_urlsafe(32)
        assert challenge.id is not None
        assert phase.id is not None
        assert user.id is not None
        row = EvalAIUpload(
            user_id=user.id,
            challenge_id=challenge.id,
            phase_id=phase.id,
            filename=filename[:255],
            message=_message_of(form)[:500],
            key_hash=hash_token(key),
            parts=parts,
            expires_at=utcnow() + UPLOAD_TTL,
        )
        session = db(request)
        session.add(row)
        session.commit()
        base = str(request.base_url).rstrip("/")
        urls = [
            {"partNumber": n, "url": f"{base}/api/evalai/uploads/{key}/{n}"}
            for n in range(1, parts + 1)
        ]
        return JSONResponse(
            {"presigned_urls": urls, "upload_id": str(row.id), "submission_pk": row.id},
            status_code=201,
        )

    return await run_in_threadpool(_create)


def _live_upload(request: Request, row: EvalAIUpload | None) -> EvalAIUpload:
    if row is None or row.submission_id is not None or row.expires_at < utcnow():
        raise NotFound("This upload URL is unknown or has expired; run the submit command again.")
    return row


@presigned_compat
async def upload_part(request: Request) -> Response:
    """Step 2: one part, PUT to a presigned URL. The URL's key is the only credential."""
    key = request.path_params["key"]
    part = int(request.path_params["part"])

    def _find() -> tuple[EvalAIUpload, int]:
        row = (
            db(request)
            .exec(select(EvalAIUpload).where(EvalAIUpload.key_hash == hash_token(key)))
            .first()
        )
        row = _live_upload(request, row)
        challenge = db(request).get(Challenge, row.challenge_id)
        assert challenge is not None
        return row, upload_limit_bytes(request, challenge)

    row, limit = await run_in_threadpool(_find)
    if not 1 <= part <= row.parts:
        raise NotFound(f"This upload has parts 1 to {row.parts}.")
    assert row.id is not None
    cap = min(limit, EVALAI_CHUNK)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"A part may have at most {cap} bytes.")
    folder = _parts_dir(request, row.id)
    folder.mkdir(parents=True, exist_ok=True)
    writer = await run_in_threadpool(storage.StreamingWriter, folder / f"part-{part:05d}", cap)
    try:
        # Counted as it streams in (with or without Content-Length): the writer refuses the
        # first chunk past the cap and removes its temporary file.
        async for chunk in request.stream():
            await run_in_threadpool(writer.write, chunk)
        await run_in_threadpool(writer.finish)
    except storage.UploadTooLarge as exc:
        raise PayloadTooLarge(f"A part may have at most {cap} bytes.") from exc
    except BaseException:
        writer.abort()
        raise
    return Response(status_code=200, headers={"ETag": f'"{writer.sha.hexdigest()}"'})


async def _assembled(folder: Path, parts: int) -> AsyncIterator[bytes]:
    for n in range(1, parts + 1):
        with (folder / f"part-{n:05d}").open("rb") as fh:
            while chunk := await run_in_threadpool(fh.read, 1 << 20):
                yield chunk


@compat
async def finish_upload(request: Request) -> Response:
    """Step 3: check the parts against their ETags, then store and queue the submission."""
    user = api_user(request)
    form = await request.form(max_files=0)

    def _find() -> tuple[EvalAIUpload, Challenge]:
        row = _live_upload(request, db(request).get(EvalAIUpload, request.path_params["upload_id"]))
        if row.user_id != user.id or row.phase_id != request.path_params["phase_id"]:
            raise NotFound("No such upload of yours in this phase.")
        challenge = db(request).get(Challenge, row.challenge_id)
        assert challenge is not None
        return row, challenge

    row, challenge = await run_in_threadpool(_find)
    assert row.id is not None
    folder = _parts_dir(request, row.id)
    try:
        listed = json.loads(str(form.get("parts") or "[]"))
        etags = {int(p["PartNumber"]): str(p["ETag"]) for p in listed}
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest('parts must be JSON: [{"ETag": "...", "PartNumber": 1}, ...].') from exc
    for n in range(1, row.parts + 1):
        path = folder / f"part-{n:05d}"
        if not path.is_file() or n not in etags:
            raise BadRequest(f"Part {n} of {row.parts} was not uploaded; upload it again.")
        digest = (await run_in_threadpool(file_checksums, path))[1]
        if etags[n].strip('"') != digest:
            raise BadRequest(f"Part {n} does not match its ETag; upload it again.")
    try:
        phase_row = await run_in_threadpool(db(request).get, Phase, row.phase_id)
        sub = await store_upload(
            request,
            challenge,
            user,
            _assembled(folder, row.parts),
            row.filename,
            row.message,
            phase_row.name if phase_row is not None else "",
        )
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)

    def _link() -> None:
        stored = db(request).get(EvalAIUpload, row.id)
        assert stored is not None
        stored.submission_id = sub.id
        db(request).add(stored)
        db(request).commit()

    await run_in_threadpool(_link)
    team = await run_in_threadpool(_team_row, db(request), sub)
    return JSONResponse(submission_object(sub, user.username, team))


@compat
def submission_message(request: Request) -> Response:
    """Step 4: EvalAI queues the job here; Podium queued it when the upload finished."""
    user = api_user(request)
    row = db(request).get(EvalAIUpload, request.path_params["upload_id"])
    if row is None or row.user_id != user.id or row.phase_id != request.path_params["phase_id"]:
        raise NotFound("No such upload of yours in this phase.")
    if row.submission_id is None:
        raise BadRequest("The upload did not finish, so nothing was submitted; submit again.")
    return JSONResponse({"submission": row.submission_id, "status": "queued"})


routes = [
    Route("/auth/login", login, methods=["POST"]),
    Route("/accounts/user/get_auth_token", auth_token, methods=["GET"]),
    Route("/challenges/challenge/{challenge_id:dbint}", challenge_detail, methods=["GET"]),
    # After the phase route of the same length: `challenge/1/challenge_phase/2` is a phase,
    # `challenge/all/all/all` a list.
    Route(
        "/challenges/challenge/{challenge_id:dbint}/challenge_phase", phase_list, methods=["GET"]
    ),
    Route(
        "/challenges/challenge/{challenge_id:dbint}/challenge_phase/{phase_id:dbint}",
        phase_detail,
        methods=["GET"],
    ),
    Route("/challenges/challenge/{time}/{approval}/{visibility}", challenge_list, methods=["GET"]),
    Route("/challenges/{challenge_id:dbint}/challenge_phase_split", phase_splits, methods=["GET"]),
    Route(
        "/challenges/challenge/{challenge_id:dbint}/participant_team/{team_id:dbint}",
        participate,
        methods=["POST"],
    ),
    Route("/participants/participant_team", participant_teams, methods=["GET"]),
    Route(
        "/participants/participant_team/{team_id:dbint}/challenge",
        participant_challenges,
        methods=["GET"],
    ),
    Route("/hosts/challenge_host_team/", host_teams, methods=["GET"]),
    Route(
        "/challenges/challenge_host_team/{team_id:dbint}/challenge",
        host_challenges,
        methods=["GET"],
    ),
    Route(
        "/jobs/challenge/{challenge_id:dbint}/challenge_phase/{phase_id:dbint}/submission/",
        my_submissions,
        methods=["GET"],
    ),
    Route(
        "/jobs/challenge/{challenge_id:dbint}/challenge_phase/{phase_id:dbint}/submission/",
        make_submission,
        methods=["POST"],
    ),
    Route("/jobs/submission/{submission_id:dbint}", get_submission, methods=["GET"]),
    Route(
        "/jobs/challenge_phase_split/{split_id:dbint}/leaderboard/", leaderboard, methods=["GET"]
    ),
    Route(
        "/jobs/phases/{phase_id:dbint}/get_submission_file_presigned_url/",
        presigned_urls,
        methods=["POST"],
    ),
    Route("/evalai/uploads/{key}/{part:dbint}", upload_part, methods=["PUT"]),
    Route(
        "/jobs/phases/{phase_id:dbint}/finish_submission_file_upload/{upload_id:dbint}/",
        finish_upload,
        methods=["POST"],
    ),
    Route(
        "/jobs/phases/{phase_id:dbint}/send_submission_message/{upload_id:dbint}/",
        submission_message,
        methods=["POST"],
    ),
]
