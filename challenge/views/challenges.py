"""Challenge pages: list, overview with data and submissions, downloads, upload, leaderboard."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from challenge import storage
from challenge.challenges import (
    challenge_status,
    get_challenge_by_slug,
    join_challenge,
    participation_of,
    phase_state,
    phases_of,
    private_scores_visible,
    private_scores_visible_among,
)
from challenge.errors import BadRequest, NotFound
from challenge.leaderboard import participant_score, participant_scores
from challenge.models import Challenge, Phase, User
from challenge.schedule import challenge_page_extras, require_data_access
from challenge.submissions import (
    access_submission,
    queue_position,
    quota_for,
    submissions_of,
    submittable_phases,
)
from challenge.uploads import (
    check_declared_size,
    limit_submission_rate,
    receive_multipart,
    record_upload,
)
from challenge.web import (
    check_csrf,
    current_user,
    db,
    flash,
    read_form,
    redirect,
    render,
    require_user,
    settings_of,
)
from scoring.metrics import MetricSpec
from splitter.formats import FormatError, export_table, file_checksums


def visible_challenge(request: Request, slug: str) -> Challenge:
    """Fetch a challenge the current user may see; hidden and missing look the same."""
    challenge = get_challenge_by_slug(db(request), slug)
    user = current_user(request)
    if not challenge.is_listed and not (
        user and (user.role == "admin" or user.id == challenge.created_by)
    ) and participation_of(db(request), challenge, user) is None:
        raise NotFound(f"No challenge '{slug}'.")
    return challenge


def higher_is_better(challenge: Challenge) -> bool:
    if challenge.kind == "codabench":
        from challenge.leaderboard import higher_is_better_of

        return higher_is_better_of(challenge)
    return MetricSpec.from_dict(challenge.metric).higher_is_better


#: Detailed results are the organizer's HTML about a participant's run: shown in an opaque origin
#: with no script, form, plugin or network (CSP sandbox without allow-*), so it can neither run
#: code as the site nor reach it.
DETAILED_RESULTS_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'"
)


def detailed_results(request: Request) -> Response:
    """A code run's ``detailed_results.html``, for whoever may see the submission."""
    from challenge.coderuns import detailed_results_path

    user = require_user(request)
    sub = access_submission(db(request), int(request.path_params["id"]), user)
    path = detailed_results_path(settings_of(request), int(sub.id or 0))
    if not sub.run_log.get("detailed") or not path.is_file():
        raise NotFound("This submission has no detailed results.")
    return HTMLResponse(
        path.read_text(encoding="utf-8", errors="replace"),
        headers={"Content-Security-Policy": DETAILED_RESULTS_CSP, "Cache-Control": "private"},
    )


def index(request: Request) -> Response:
    session = db(request)
    groups: dict[str, list[tuple[Challenge, object]]] = {
        "running": [],
        "upcoming": [],
        "finished": [],
    }
    for challenge in session.exec(
        select(Challenge).where(col(Challenge.is_listed)).order_by(col(Challenge.created_at).desc())
    ):
        status = challenge_status(phases_of(session, challenge))
        groups[status.label].append((challenge, status))
    return render(request, "challenge/index.html", groups=groups)


def overview(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    session = db(request)
    user = current_user(request)
    phases = phases_of(session, challenge)
    participation = participation_of(session, challenge, user)
    subs = submissions_of(session, challenge, user) if user and participation else []
    quota = quota_for(session, challenge, user) if user and participation else None
    positions = {
        s.id: queue_position(session, s) for s in subs if s.status in ("received", "scoring")
    }
    submit_phases, default_phase = submittable_phases(phases)
    return render(
        request,
        "challenge/overview.html",
        submit_phases=submit_phases,
        default_phase=default_phase,
        phase_names={p.id: p.name for p in phases},
        challenge=challenge,
        phases=[(p, phase_state(p)) for p in phases],
        status=challenge_status(phases),
        participation=participation,
        submissions=subs,
        positions=positions,
        shown=participant_scores(session, subs),
        private_shown=private_scores_visible_among(challenge, phases),
        quota=quota,
        fmt=challenge.submission_format,
        **challenge_page_extras(session, challenge, user, participation),
    )


async def join(request: Request) -> Response:
    user = require_user(request)
    form = await read_form(request)
    if form.get("accept") != "yes":
        raise BadRequest("Tick the box to accept the rules and the data licence, then join.")

    def _join() -> Response:
        challenge = visible_challenge(request, request.path_params["slug"])
        join_challenge(db(request), challenge=challenge, user=user)
        db(request).commit()
        flash(request, f"You have joined {challenge.title}. The data is yours to download.")
        return redirect(f"/c/{challenge.slug}")

    return await run_in_threadpool(_join)


def _require_participant(request: Request, challenge: Challenge) -> User:
    user = require_user(request)
    if (
        participation_of(db(request), challenge, user) is None
        and user.role != "admin"
        and user.id != challenge.created_by
    ):
        raise NotFound("Join the challenge to download its data.")
    participation = participation_of(db(request), challenge, user)
    if participation is not None and user.role != "admin" and user.id != challenge.created_by:
        require_data_access(db(request), challenge, participation)  # approval, publication date
    return user


def download(request: Request) -> Response:
    challenge = visible_challenge(request, request.path_params["slug"])
    _require_participant(request, challenge)
    name = request.path_params["name"]
    fmt = request.query_params.get("format", "parquet")
    if fmt not in storage.DOWNLOAD_FORMATS:
        raise BadRequest(
            f"Unknown format '{fmt}'; choose one of {', '.join(storage.DOWNLOAD_FORMATS)}."
        )
    published = {f["name"] for f in challenge.public_files}
    if name not in published and name.removesuffix(".parquet") + ".parquet" not in published:
        raise NotFound(f"No file '{name}' in this challenge.")
    stem = name.removesuffix(".parquet")
    source = storage.public_dir(settings_of(request), challenge.slug) / f"{stem}.parquet"
    if not source.is_file():
        raise NotFound("The data is not published yet.")
    path = _export(source, fmt)
    return FileResponse(path, filename=f"{challenge.slug}-{stem}{storage.DOWNLOAD_FORMATS[fmt]}")


def _export(source: Path, fmt: str) -> Path:
    if fmt == "parquet":
        return source
    target = source.parent / "exports" / (source.stem + storage.DOWNLOAD_FORMATS[fmt])
    if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(".tmp-" + target.name)
        try:
            export_table(source, fmt, tmp)
        except FormatError as exc:  # jagged columns asked for as CSV: say which formats work
            raise BadRequest(str(exc).split(": ", 1)[-1]) from exc
        tmp.replace(target)
    return target


def checksums(request: Request) -> Response:
    """MD5SUMS / SHA256SUMS for every public file in every format already exported."""
    challenge = visible_challenge(request, request.path_params["slug"])
    _require_participant(request, challenge)
    kind = request.url.path.rsplit("/", 1)[-1]
    folder = storage.public_dir(settings_of(request), challenge.slug)
    lines = []
    for fmt in storage.DOWNLOAD_FORMATS:
        for name in (f["name"] for f in challenge.public_files):
            path = _export(folder / name, fmt)
            md5, sha = file_checksums(path)
            lines.append(
                f"{md5 if kind == 'MD5SUMS' else sha}  {challenge.slug}-{path.stem}{path.suffix}"
            )
    return PlainTextResponse("\n".join(lines) + "\n")


async def submit(request: Request) -> Response:
    user = require_user(request)
    challenge = await run_in_threadpool(visible_challenge, request, request.path_params["slug"])
    limit_submission_rate(request, user)
    check_declared_size(request, challenge)
    form = await receive_multipart(
        request, challenge, file_field="file", check_fields=lambda f: check_csrf(request, f)
    )
    if form.file is None:
        raise BadRequest("Choose a prediction file to upload.")
    sub = await record_upload(
        request,
        challenge,
        user,
        form.file,
        form.fields.get("message", ""),
        form.fields.get("phase", ""),
    )
    phase = await run_in_threadpool(lambda: db(request).get(Phase, sub.phase_id))
    phase_name = phase.name if phase is not None else ""
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {"id": sub.id, "status": sub.status, "phase": phase_name}, status_code=201
        )
    flash(
        request,
        f"Submission #{sub.id} received for phase {phase_name}; it is being scored.",
        status_url=f"/c/{challenge.slug}/submissions/{sub.id}/status",
        fallback_url=f"/c/{challenge.slug}?submission={sub.id}#sub-{sub.id}",
    )
    return redirect(f"/c/{challenge.slug}#submissions")


def submission_rows(request: Request) -> Response:
    """The participant's submissions as an HTML fragment, polled by the overview page."""
    challenge = visible_challenge(request, request.path_params["slug"])
    user = require_user(request)
    session = db(request)
    subs = submissions_of(session, challenge, user)
    positions = {
        s.id: queue_position(session, s) for s in subs if s.status in ("received", "scoring")
    }
    return render(
        request,
        "challenge/_submissions.html",
        challenge=challenge,
        submissions=subs,
        positions=positions,
        phase_names={p.id: p.name for p in phases_of(session, challenge)},
        shown=participant_scores(session, subs),
        private_shown=private_scores_visible(session, challenge),
        quota=quota_for(session, challenge, user),
    )


def submission_status(request: Request) -> Response:
    """One of your submissions' state as JSON, polled by the "being scored" notice (podium.js).

    The score is the one the participant may see (the Ladder's released value, never a private
    score); someone else's submission answers 404 like a missing one.
    """
    challenge = visible_challenge(request, request.path_params["slug"])
    user = require_user(request)
    session = db(request)
    sub = access_submission(session, int(request.path_params["id"]), user)
    if sub.challenge_id != challenge.id or sub.user_id != user.id:
        raise NotFound("No such submission.")
    phase = session.get(Phase, sub.phase_id)
    head = f"Submission #{sub.id} ({phase.name if phase else '?'})"
    score = participant_score(session, sub).score if sub.status == "scored" else None
    if sub.status == "scored":
        text = f"{head} is scored: public score {score:.5f}." if score is not None else (
            f"{head} is scored."
        )
    elif sub.status == "invalid":
        text = f"{head} is invalid: {sub.error_message}"
    elif sub.status == "error":
        text = f"{head} could not be scored: {sub.error_message or 'please try again later.'}"
    else:
        position = queue_position(session, sub)
        text = f"{head} is being scored" + (
            f" ({position} ahead in the queue)." if position else "."
        )
    return JSONResponse(
        {
            "id": sub.id,
            "status": sub.status,
            "phase": phase.name if phase else "",
            "public_score": score,
            "done": sub.status not in ("received", "scoring"),
            "text": text,
        },
        headers={"Cache-Control": "no-store"},
    )


routes = [
    Route("/", index, methods=["GET"], name="index"),
    Route("/c/{slug}", overview, methods=["GET"], name="challenge"),
    Route("/c/{slug}/join", join, methods=["POST"], name="join"),
    Route("/c/{slug}/data/MD5SUMS", checksums, methods=["GET"]),
    Route("/c/{slug}/data/SHA256SUMS", checksums, methods=["GET"]),
    Route("/c/{slug}/data/{name}", download, methods=["GET"], name="download"),
    Route("/c/{slug}/submit", submit, methods=["POST"], name="submit"),
    Route("/c/{slug}/submissions", submission_rows, methods=["GET"], name="submission_rows"),
    Route("/c/{slug}/submissions/{id:dbint}/status", submission_status, methods=["GET"]),
    Route("/submissions/{id:dbint}/detailed", detailed_results, methods=["GET"]),
]
