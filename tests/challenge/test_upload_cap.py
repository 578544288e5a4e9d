"""The upload size cap holds while the body streams in, on every upload route, with or without a
Content-Length; failed uploads leave no temporary file and charge no quota; the start-up sweep
removes what a crash left behind and nothing an upload in flight is writing.

The chunked requests go over ASGI through httpx with a generator body (no Content-Length), as a
client using ``Transfer-Encoding: chunked`` sends them. The generator looks at the disk each time
the server pulls a chunk, so the test sees how much was ever written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from challenge import storage
from challenge.models import Challenge, Phase, Submission, User
from challenge.settings import Settings
from challenge.submissions import quota_for
from tests.challenge.conftest import PASSWORD, random_submission

MB = 1024 * 1024
PIECE = 64 * 1024  # what a server hands over at a time
BOUNDARY = "podiumtestboundary"


def _temp_bytes(settings: Settings) -> int:
    """Bytes in temporary upload files right now."""
    total = 0
    for path in settings.submissions_dir.rglob(f"{storage.UPLOAD_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _leftovers(settings: Settings) -> list[Path]:
    if not settings.submissions_dir.exists():
        return []
    return [p for p in settings.submissions_dir.rglob("*") if p.is_file()]


class Body:
    """A request body streamed in PIECE-sized chunks that records how much the server read and
    the most bytes ever seen in temporary upload files while it did."""

    def __init__(self, settings: Settings, head: bytes, payload: int, tail: bytes = b"") -> None:
        self.settings = settings
        self.head, self.payload, self.tail = head, payload, tail
        self.sent = 0
        self.most_on_disk = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.most_on_disk = max(self.most_on_disk, _temp_bytes(self.settings))
        yield self.head
        left = self.payload
        line = b"1,1,s\n" * (PIECE // 6)
        while left > 0:
            piece = line[: min(left, len(line))]
            left -= len(piece)
            self.sent += len(piece)
            self.most_on_disk = max(self.most_on_disk, _temp_bytes(self.settings))
            yield piece
        self.most_on_disk = max(self.most_on_disk, _temp_bytes(self.settings))
        yield self.tail


def multipart_body(
    settings: Settings, file_field: str, payload: int, fields: dict[str, str] | None = None
) -> Body:
    head = b""
    for name, value in (fields or {}).items():
        head += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="pred.csv"\r\nContent-Type: text/csv\r\n\r\nEventId,RankOrder,Class\n'
    ).encode()
    return Body(settings, head, payload, f"\r\n--{BOUNDARY}--\r\n".encode())


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _run(app: Any, steps: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await steps(c)

    return asyncio.run(main())


@pytest.fixture
def participant(client: Any, make_challenge: Any, make_user: Any, engine: Any) -> dict[str, Any]:
    """A 1 MB-capped challenge (2 uploads a day) that 'pat' has joined, with pat's API token."""
    challenge = make_challenge(file_mb=1, per_day=2)
    make_user("pat")
    r = client.post("/api/auth/token", json={"login": "pat", "password": PASSWORD})
    token = r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post(
        f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True}, headers=auth
    )
    assert r.status_code == 200, r.text
    with Session(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
    return {"challenge": challenge, "auth": auth, "phase": phase}


def _quota_left(engine: Any, slug: str) -> int:
    with Session(engine) as session:
        challenge = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        user = session.exec(select(User).where(User.username == "pat")).one()
        left: int = quota_for(session, challenge, user).left_today
        return left


async def _web_login(c: httpx.AsyncClient, slug: str) -> str:
    page = await c.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = await c.post("/login", data={"login": "pat", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303, r.text
    page = await c.get(f"/c/{slug}")
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


ROUTES = ["web form", "api multipart", "api raw body", "evalai"]


@pytest.mark.parametrize("route", ROUTES)
def test_chunked_upload_is_cut_at_the_cap(
    app: Any, settings: Settings, engine: Any, participant: dict[str, Any], route: str
) -> None:
    """20 MB sent chunked against a 1 MB cap: 413 after about 1 MB, nothing left, no quota used."""
    slug = participant["challenge"].slug
    challenge_id, phase_id = participant["challenge"].id, participant["phase"].id
    cap = 1 * MB

    async def steps(c: httpx.AsyncClient) -> tuple[httpx.Response, Body]:
        if route == "web form":
            csrf = await _web_login(c, slug)
            body = multipart_body(settings, "file", 20 * MB, {"csrf_token": csrf})
            r = await c.post(f"/c/{slug}/submit", content=body, headers=MULTIPART)
        elif route == "api multipart":
            body = multipart_body(settings, "file", 20 * MB)
            r = await c.post(
                f"/api/challenges/{slug}/submissions",
                content=body,
                headers={**MULTIPART, **participant["auth"]},
            )
        elif route == "api raw body":
            body = Body(settings, b"EventId,RankOrder,Class\n", 20 * MB)
            r = await c.post(
                f"/api/challenges/{slug}/submissions?filename=pred.csv",
                content=body,
                headers=participant["auth"],
            )
        else:
            body = multipart_body(settings, "input_file", 20 * MB)
            r = await c.post(
                f"/api/jobs/challenge/{challenge_id}/challenge_phase/{phase_id}/submission/",
                content=body,
                headers={**MULTIPART, **participant["auth"]},
            )
        assert "content-length" not in r.request.headers
        assert r.request.headers.get("transfer-encoding") == "chunked"
        return r, body

    r, body = _run(app, steps)
    if route == "evalai":
        assert r.status_code == 406  # what the EvalAI CLI prints the message of
    else:
        assert r.status_code == 413, r.text
    assert "limit of 1 MB" in r.text
    # The server stopped reading at the cap instead of taking all 20 MB first...
    assert body.sent <= cap + 2 * storage_chunk()
    # ...never had more than the cap (plus one chunk) on disk, and left nothing behind.
    assert body.most_on_disk <= cap + storage_chunk()
    assert _leftovers(settings) == []
    with Session(engine) as session:
        assert session.exec(select(Submission)).all() == []
    assert _quota_left(engine, slug) == 2


def storage_chunk() -> int:
    from challenge.uploads import CHUNK

    return CHUNK


@pytest.mark.parametrize("route", ["web form", "api multipart"])
def test_declared_length_within_the_slack_is_still_cut_at_the_cap(
    app: Any, settings: Settings, engine: Any, participant: dict[str, Any], route: str
) -> None:
    """A multipart body with a Content-Length under the early check's slack (cap + 64 KiB) but a
    file over the cap is refused by the streaming count."""
    slug = participant["challenge"].slug
    payload = 1 * MB + 32 * 1024

    async def steps(c: httpx.AsyncClient) -> httpx.Response:
        fields = {"csrf_token": await _web_login(c, slug)} if route == "web form" else {}
        body = multipart_body(settings, "file", payload, fields)
        data = b"".join([chunk async for chunk in body])
        url = f"/c/{slug}/submit" if route == "web form" else f"/api/challenges/{slug}/submissions"
        r = await c.post(url, content=data, headers={**MULTIPART, **participant["auth"]})
        assert r.request.headers["content-length"] == str(len(data))
        return r

    r = _run(app, steps)
    assert r.status_code == 413, r.text
    assert _leftovers(settings) == []
    assert _quota_left(engine, participant["challenge"].slug) == 2


def test_evalai_large_part_is_cut_at_the_cap(
    app: Any, settings: Settings, participant: dict[str, Any]
) -> None:
    """``submit --large``: a part PUT chunked past the cap is refused, its temporary file removed."""
    phase_id = participant["phase"].id

    async def steps(c: httpx.AsyncClient) -> tuple[httpx.Response, Body]:
        r = await c.post(
            f"/api/jobs/phases/{phase_id}/get_submission_file_presigned_url/",
            data={"file_name": "pred.csv", "num_file_chunks": "1"},
            headers=participant["auth"],
        )
        assert r.status_code == 201, r.text
        url = r.json()["presigned_urls"][0]["url"].removeprefix("http://testserver")
        declared = await c.put(url, content=b"x" * (MB + 1))
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"] == f"A part may have at most {MB} bytes."
        body = Body(settings, b"EventId,RankOrder,Class\n", 20 * MB)
        return await c.put(url, content=body), body

    r, body = _run(app, steps)
    assert r.status_code == 413, r.text
    assert body.sent <= 1 * MB + 2 * storage_chunk()
    assert body.most_on_disk <= 1 * MB + storage_chunk()
    assert not list(settings.submissions_dir.rglob(f"{storage.UPLOAD_PREFIX}*"))


def test_an_upload_that_breaks_off_leaves_no_file(
    app: Any, settings: Settings, engine: Any, participant: dict[str, Any]
) -> None:
    """The client goes away mid-file (the body stream raises): the partial file is removed."""
    slug = participant["challenge"].slug

    class Broken(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in multipart_body(settings, "file", 800 * 1024):
            yield chunk
            sent += len(chunk)
            temporary = list(settings.submissions_dir.rglob(f"{storage.UPLOAD_PREFIX}*"))
            if sent > 400 * 1024 and temporary:
                raise Broken

    async def steps(c: httpx.AsyncClient) -> None:
        await c.post(
            f"/api/challenges/{slug}/submissions",
            content=body(),
            headers={**MULTIPART, **participant["auth"]},
        )

    with pytest.raises(Broken):
        _run(app, steps)
    assert _leftovers(settings) == []
    assert _quota_left(engine, slug) == 2


def test_a_refused_upload_leaves_no_file(
    app: Any, settings: Settings, engine: Any, participant: dict[str, Any]
) -> None:
    """A whole file refused after it was written (bad CSRF token; quota used up) is removed."""
    slug = participant["challenge"].slug
    good = random_submission(settings, slug).to_csv(index=False).encode()

    async def steps(c: httpx.AsyncClient) -> list[int]:
        await _web_login(c, slug)
        codes = []
        files = {"file": ("pred.csv", good, "text/csv")}
        r = await c.post(f"/c/{slug}/submit", data={"csrf_token": "forged"}, files=files)
        codes.append(r.status_code)
        for _ in range(3):
            r = await c.post(
                f"/api/challenges/{slug}/submissions", files=files, headers=participant["auth"]
            )
            codes.append(r.status_code)
        return codes

    assert _run(app, steps) == [400, 201, 201, 429]
    assert not list(settings.submissions_dir.rglob(f"{storage.UPLOAD_PREFIX}*"))
    with Session(engine) as session:
        stored = {Path(s.stored_path).name for s in session.exec(select(Submission)).all()}
    assert {p.name for p in _leftovers(settings)} == stored
    assert len(stored) == 2


def test_multipart_fields_and_parts_are_bounded(
    client: Any, settings: Settings, participant: dict[str, Any]
) -> None:
    """A second file, or an endless text field, is refused without being kept."""
    slug = participant["challenge"].slug
    url = f"/api/challenges/{slug}/submissions"
    auth = participant["auth"]
    two = {"file": ("a.csv", b"x\n", "text/csv"), "other": ("b.csv", b"y\n", "text/csv")}
    r = client.post(url, files=two, headers=auth)
    assert r.status_code == 400
    assert "one file" in r.json()["message"]
    r = client.post(
        url,
        files={"file": ("a.csv", b"x\n", "text/csv")},
        data={"message": "m" * (200 * 1024)},
        headers=auth,
    )
    assert r.status_code == 400
    assert "too long" in r.json()["message"]
    r = client.post(url, content=b"--x\r\nbroken", headers={**auth, **MULTIPART})
    assert r.status_code == 400
    assert _leftovers(settings) == []


# ---------------------------------------------------------------- the start-up sweep


LOCKER = """
import fcntl, sys
fh = open(sys.argv[1], "ab")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_startup_sweep_removes_crash_leftovers_only(
    settings_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from challenge.app import create_app

    settings: Settings = settings_factory(sqlite_url)
    folder = storage.submission_dir(settings, "some-challenge")
    folder.mkdir(parents=True)
    old = time.time() - storage.STALE_UPLOAD_SECONDS - 60
    crashed = folder / f"{storage.UPLOAD_PREFIX}crashed"
    crashed.write_bytes(b"half a file")
    os.utime(crashed, (old, old))
    # An upload another process is writing right now, slowly (nothing written for a while):
    in_flight = folder / f"{storage.UPLOAD_PREFIX}in-flight"
    in_flight.write_bytes(b"being written")
    os.utime(in_flight, (old, old))
    # An upload that was just created, not yet locked by its writer:
    fresh = folder / f"{storage.UPLOAD_PREFIX}fresh"
    fresh.write_bytes(b"")
    kept = folder / "0123abcd.csv"  # a stored submission
    kept.write_bytes(b"EventId\n")
    os.utime(kept, (old, old))
    parts = settings.submissions_dir / ".evalai" / "7"
    parts.mkdir(parents=True)
    (parts / "part-00001").write_bytes(b"abandoned part")
    ancient = time.time() - storage.STALE_PARTS_SECONDS - 60
    os.utime(parts / "part-00001", (ancient, ancient))
    os.utime(parts, (ancient, ancient))

    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(in_flight)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        create_app(settings)
        assert not crashed.exists()
        assert in_flight.exists()
        assert fresh.exists()
        assert kept.exists()
        assert not parts.exists()
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(timeout=10)
    # Once its writer is gone (it crashed), the next start removes it.
    create_app(settings)
    assert not in_flight.exists()
    assert fresh.exists()
