"""Receiving a submission file: stream to storage with a size cap, record it, then enqueue it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
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
# Text fields of an upload form (CSRF token, message, EvalAI's method name...): how many, how long.
MAX_FORM_FIELDS = 16
MAX_FORM_FIELD_BYTES = 64 * 1024
SUBMIT_RATE_PER_MINUTE = 12  # challenge/ratelimit.py, LIMITS["submit"]


def limit_submission_rate(request: Request, user: User) -> None:
    """Refuse a participant's upload beyond SUBMIT_RATE_PER_MINUTE (429, with the wait).

    Every upload path calls it (browser form, native API, EvalAI routes), before reading the body.
    """
    request.app.state.ratelimiter.hit("submit", address=None, account=f"user-{user.id}")


def upload_limit_bytes(request: Request, challenge: Challenge) -> int:
    settings = settings_of(request)
    file_mb = int(challenge.limits.get("file_mb", settings.max_upload_mb))
    return min(file_mb, settings.max_upload_mb) * 1024 * 1024


def check_declared_size(request: Request, challenge: Challenge) -> None:
    """Refuse an oversized upload before reading it, when the client says how big it is."""
    declared = request.headers.get("content-length")
    limit = upload_limit_bytes(request, challenge)
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise _too_large(limit)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The file is larger than this challenge's limit of {limit // (1024 * 1024)} MB; "
        "compress it (.csv.gz, .zip or Parquet) or drop unneeded columns."
    )


@dataclass
class ReceivedFile:
    """An upload written under the cap to a temporary ``.upload-*`` file, not yet recorded."""

    writer: storage.StreamingWriter
    target: Path
    filename: str

    def discard(self) -> None:
        self.writer.abort()
        self.target.unlink(missing_ok=True)


async def _open_writer(request: Request, challenge: Challenge, filename: str) -> ReceivedFile:
    if not filename:
        raise BadRequest("Choose a prediction file to upload.")
    target = storage.new_upload_path(settings_of(request), challenge.slug, filename)
    limit = upload_limit_bytes(request, challenge)
    writer = await run_in_threadpool(storage.StreamingWriter, target, limit)
    return ReceivedFile(writer=writer, target=target, filename=filename)


async def _close_writer(received: ReceivedFile) -> None:
    """After the last byte: refuse an empty file (nothing recorded, nothing charged)."""
    if received.writer.size == 0:
        await run_in_threadpool(received.discard)
        raise BadRequest("The uploaded file is empty; choose the CSV file with your predictions.")


async def receive_file(
    request: Request, challenge: Challenge, chunks: AsyncIterator[bytes], filename: str
) -> ReceivedFile:
    """Stream ``chunks`` to a temporary file, refusing (413) the moment the cap is passed.

    On any failure (too large, client gone, server error) the temporary file is removed.
    """
    limit = upload_limit_bytes(request, challenge)
    received = await _open_writer(request, challenge, filename)
    writer = received.writer
    try:
        # Servers hand the body over in pieces of ~64 KiB: gather them into CHUNK-sized
        # writes, so an 8.7 MB upload costs a handful of thread hops instead of ~140.
        pending: list[bytes] = []
        buffered = 0
        async for chunk in chunks:
            pending.append(chunk)
            buffered += len(chunk)
            if writer.size + buffered > limit:
                raise storage.UploadTooLarge
            if buffered >= CHUNK:
                await run_in_threadpool(writer.write, b"".join(pending))
                pending, buffered = [], 0
        if buffered:
            await run_in_threadpool(writer.write, b"".join(pending))
    except storage.UploadTooLarge as exc:
        await run_in_threadpool(received.discard)
        raise _too_large(limit) from exc
    except BaseException:
        # Not awaited: a cancelled task could not await the thread (a close and an unlink).
        received.discard()
        raise
    await _close_writer(received)
    return received


async def record_upload(
    request: Request,
    challenge: Challenge,
    user: User,
    received: ReceivedFile,
    message: str,
    phase: str = "",
) -> Submission:
    """Move the file in place, create the row (charging quota) and send it to the scoring queue.

    If the row cannot be created (quota used up, phase closed...), the file is removed.
    """

    def _record() -> Submission:
        engine = engine_of(request)
        try:
            received.writer.finish()
            with session_scope(engine) as session:
                sub = create_submission(
                    session,
                    challenge=challenge,
                    user=user,
                    stored_path=received.target,
                    filename=received.filename,
                    size_bytes=received.writer.size,
                    sha256=received.writer.sha.hexdigest(),
                    message=message,
                    phase_name=phase,
                )
        except BaseException:
            received.discard()
            raise
        assert sub.id is not None
        enqueue_scoring(engine, sub.id)
        return sub

    return await run_in_threadpool(_record)


async def store_upload(
    request: Request,
    challenge: Challenge,
    user: User,
    chunks: AsyncIterator[bytes],
    filename: str,
    message: str,
    phase: str = "",
) -> Submission:
    """Write the file under the cap, create the row (charging quota) and queue it for scoring.

    ``phase`` names the phase to submit to; empty means the default (``submittable_phases``).
    """
    received = await receive_file(request, challenge, chunks, filename)
    return await record_upload(request, challenge, user, received, message, phase)


@dataclass
class MultipartUpload:
    """What a streamed multipart form held: its one file (if any) and its text fields."""

    file: ReceivedFile | None
    fields: dict[str, str] = field(default_factory=dict)


class _MultipartEvents:
    """Callbacks for python-multipart's streaming parser; they only queue what they see."""

    def __init__(self, file_field: str, charset: str) -> None:
        self.file_field = file_field
        self.charset = charset
        self.fields: dict[str, str] = {}
        # ("file", filename) when the file part starts, then ("data", bytes) pieces.
        self.file_events: list[tuple[str, str | bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._in_file = False
        self._text = bytearray()
        self._files = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._in_file = b"", "", False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > MAX_FORM_FIELD_BYTES:
            raise BadRequest("A form header is too long.")

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest("Each part of the form needs a name (Content-Disposition).")
        self._name = self._decode(options[b"name"])
        if b"filename" in options:
            self._files += 1
            if self._name != self.file_field or self._files > 1:
                raise BadRequest(f"Send one file, in the form field '{self.file_field}'.")
            self._in_file = True
            self.file_events.append(("file", self._decode(options[b"filename"])))
        elif len(self.fields) >= MAX_FORM_FIELDS:
            raise BadRequest(f"Too many form fields (at most {MAX_FORM_FIELDS}).")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.file_events.append(("data", data[start:end]))
            return
        self._text += data[start:end]
        if len(self._text) > MAX_FORM_FIELD_BYTES:
            raise BadRequest(
                f"The form field '{self._name}' is too long "
                f"(at most {MAX_FORM_FIELD_BYTES // 1024} KiB)."
            )

    def on_part_end(self) -> None:
        if not self._in_file:
            self.fields[self._name] = self._decode(bytes(self._text))


async def receive_multipart(
    request: Request,
    challenge: Challenge,
    *,
    file_field: str,
    check_fields: Callable[[dict[str, str]], None] | None = None,
) -> MultipartUpload:
    """Parse a multipart/form-data body as it streams in, writing its file under the cap.

    Unlike ``request.form()``, which spools the whole body before the view sees it, this counts
    the file's bytes (and the whole body's) as they arrive and answers 413 the moment the cap is
    passed, whether or not the client sent a Content-Length. Text fields are kept in memory,
    each at most MAX_FORM_FIELD_BYTES. ``check_fields`` (e.g. the CSRF check) runs once the
    body is read; if it or anything else fails, the temporary file is removed.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadRequest(f"Send a multipart/form-data body with the file in '{file_field}'.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    limit = upload_limit_bytes(request, challenge)
    body_limit = limit + MAX_FORM_FIELDS * MAX_FORM_FIELD_BYTES
    events = _MultipartEvents(file_field, charset)
    parser = MultipartParser(params[b"boundary"], events.callbacks())  # type: ignore[arg-type]
    received: ReceivedFile | None = None
    pending: list[bytes] = []
    buffered = 0
    body = 0
    try:
        async for chunk in request.stream():
            body += len(chunk)
            if body > body_limit:
                raise storage.UploadTooLarge
            parser.write(chunk)
            for kind, value in events.file_events:
                if kind == "file":
                    assert isinstance(value, str)
                    received = await _open_writer(request, challenge, value)
                    continue
                assert isinstance(value, bytes)
                assert received is not None
                pending.append(value)
                buffered += len(value)
                if received.writer.size + buffered > limit:
                    raise storage.UploadTooLarge
            events.file_events.clear()
            if received is not None and buffered >= CHUNK:
                await run_in_threadpool(received.writer.write, b"".join(pending))
                pending, buffered = [], 0
        parser.finalize()
        if received is not None and buffered:
            await run_in_threadpool(received.writer.write, b"".join(pending))
        if check_fields is not None:
            check_fields(events.fields)
    except storage.UploadTooLarge as exc:
        if received is not None:
            await run_in_threadpool(received.discard)
        raise _too_large(limit) from exc
    except FormParserError as exc:
        if received is not None:
            await run_in_threadpool(received.discard)
        raise BadRequest(
            f"The multipart body is malformed; send the file in the form field '{file_field}'."
        ) from exc
    except BaseException:
        if received is not None:
            received.discard()  # not awaited, as in receive_file
        raise
    if received is not None:
        await _close_writer(received)
    return MultipartUpload(file=received, fields=events.fields)
