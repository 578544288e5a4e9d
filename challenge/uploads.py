"""Receiving a submission file: stream to storage with a size cap, record it, then enqueue it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from challenge import storage
from challenge.db import session_scope
from challenge.errors import BadRequest, PayloadTooLarge
from challenge.models import Challenge, Submission, User
from challenge.submissions import create_submission
from challenge.tasks import enqueue_scoring
from challenge.web import engine_of, settings_of

CHUNK = 1 << 20
SUBMIT_RATE_PER_MINUTE = 12


def limit_submission_rate(request: Request, user: User) -> None:
    """Refuse a participant's upload beyond SUBMIT_RATE_PER_MINUTE (429, with the wait).

    Every upload path calls it (browser form, native API, EvalAI routes), before reading the body.
    """
    request.app.state.ratelimiter.hit(
        f"submit:{user.id}", SUBMIT_RATE_PER_MINUTE, 60, "uploads in a minute"
    )


def upload_limit_bytes(request: Request, challenge: Challenge) -> int:
    settings = settings_of(request)
    file_mb = int(challenge.limits.get("file_mb", settings.max_upload_mb))
    return min(file_mb, settings.max_upload_mb) * 1024 * 1024


def check_declared_size(request: Request, challenge: Challenge) -> None:
    """Refuse an oversized upload before reading it, when the client says how big it is."""
    declared = request.headers.get("content-length")
    limit = upload_limit_bytes(request, challenge)
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(
            f"The file is larger than this challenge's limit of {limit // (1024 * 1024)} MB; "
            "compress it (.csv.gz, .zip or Parquet) or drop unneeded columns."
        )


async def store_upload(
    request: Request,
    challenge: Challenge,
    user: User,
    chunks: AsyncIterator[bytes],
    filename: str,
    message: str,
    phase: str = "",
) -> Submission:
    """Write the file, create the row (charging quota) and send it to the scoring queue.

    ``phase`` names the phase to submit to; empty means the default (``submittable_phases``).
    """
    if not filename:
        raise BadRequest("Choose a prediction file to upload.")
    settings = settings_of(request)
    limit = upload_limit_bytes(request, challenge)
    target = storage.new_upload_path(settings, challenge.slug, filename)
    writer = await run_in_threadpool(storage.StreamingWriter, target, limit)
    try:
        # Servers hand the body over in pieces of ~64 KiB: gather them into CHUNK-sized
        # writes, so an 8.7 MB upload costs a handful of thread hops instead of ~140.
        pending: list[bytes] = []
        buffered = 0
        async for chunk in chunks:
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= CHUNK:
                await run_in_threadpool(
                    writer.write, b"".join(pending) if len(pending) > 1 else pending[0]
                )
                pending, buffered = [], 0
        if buffered:
            await run_in_threadpool(writer.write, b"".join(pending))
        await run_in_threadpool(writer.finish)
    except storage.UploadTooLarge as exc:
        raise PayloadTooLarge(
            f"The file is larger than this challenge's limit of {limit // (1024 * 1024)} MB; "
            "compress it (.csv.gz, .zip or Parquet) or drop unneeded columns."
        ) from exc
    except BaseException:
        writer.abort()
        raise
    if writer.size == 0:
        target.unlink(missing_ok=True)
        raise BadRequest("The uploaded file is empty; choose the CSV file with your predictions.")

    def _record() -> Submission:
        engine = engine_of(request)
        try:
            with session_scope(engine) as session:
                sub = create_submission(
                    session,
                    challenge=challenge,
                    user=user,
                    stored_path=target,
                    filename=filename,
                    size_bytes=writer.size,
                    sha256=writer.sha.hexdigest(),
                    message=message,
                    phase_name=phase,
                )
        except BaseException:
            Path(target).unlink(missing_ok=True)
            raise
        assert sub.id is not None
        enqueue_scoring(engine, sub.id)
        return sub

    return await run_in_threadpool(_record)


async def iter_upload_file(upload: object) -> AsyncIterator[bytes]:
    read = getattr(upload, "read")  # noqa: B009 - starlette UploadFile.read is async
    while True:
        chunk = await read(CHUNK)
        if not chunk:
            break
        yield chunk
