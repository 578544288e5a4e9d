"""Where files live. Public files are served to registered participants; the label store is read by
the scoring worker only (in compose.yaml it is mounted into the worker alone)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from challenge.settings import Settings

PUBLIC_FILES = ("train.parquet", "test.parquet")
DOWNLOAD_FORMATS = {"parquet": ".parquet", "csv": ".csv", "hdf5": ".h5", "root": ".root"}
UPLOAD_PREFIX = ".upload-"
# A temporary upload file that nobody holds locked and nobody has written to for this long is
# left over from a crash. The age also covers the instant between creating and locking the file,
# and storage where locks are not shared between machines.
STALE_UPLOAD_SECONDS = 15 * 60
# EvalAI part folders (``.evalai/<upload id>``) outlive their 30-minute URLs by this much at most.
STALE_PARTS_SECONDS = 2 * 3600

log = logging.getLogger(__name__)


def public_dir(settings: Settings, slug: str) -> Path:
    return settings.public_dir / slug


def label_dir(settings: Settings, slug: str) -> Path:
    return settings.label_dir / slug


def solution_path(settings: Settings, slug: str) -> Path:
    return label_dir(settings, slug) / "solution.parquet"


def metric_dir(settings: Settings, slug: str) -> Path:
    """The challenge's metric store: the organizer metric file, on the worker-only side.

    A python metric's ``file`` is a name in this folder; the sandbox mounts that one file into
    the grading jail, and nothing reads it from anywhere else.
    """
    return label_dir(settings, slug) / "metric"


def submission_dir(settings: Settings, slug: str) -> Path:
    return settings.submissions_dir / slug


class UploadTooLarge(Exception):
    pass


def new_upload_path(settings: Settings, slug: str, filename: str) -> Path:
    """An unguessable path for an upload that is being written."""
    folder = submission_dir(settings, slug)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(filename).suffixes[-2:]).lower()[:16] or ".csv"
    return folder / f"{secrets.token_hex(12)}{suffix}"


class StreamingWriter:
    """Write chunks to a temporary file with a size cap, hashing as it goes; rename when done."""

    def __init__(self, target: Path, limit_bytes: int) -> None:
        self.target = target
        self.limit = limit_bytes
        self.size = 0
        self.sha = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=UPLOAD_PREFIX)
        # Held until the file is closed (or the process dies): the start-up sweep leaves a locked
        # file alone, so an upload in flight in another process is never removed under it.
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.abort()
            raise UploadTooLarge
        self.sha.update(chunk)
        self._fh.write(chunk)

    def finish(self) -> Path:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._tmp.replace(self.target)
        return self.target

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


def _remove_if_abandoned(path: Path, now: float, max_age: float) -> bool:
    try:
        if now - path.stat().st_mtime < max_age:
            return False
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an upload in flight in a live process
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def sweep_abandoned_uploads(settings: Settings, now: float | None = None) -> int:
    """Remove the temporary upload files a crash left behind; returns how many were removed.

    A ``.upload-*`` file goes when no process holds its lock and it has not been written to for
    STALE_UPLOAD_SECONDS. EvalAI part folders go once they are older than STALE_PARTS_SECONDS
    (their presigned URLs expired long before). Run when the app starts.
    """
    root = settings.submissions_dir
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for path in root.rglob(f"{UPLOAD_PREFIX}*"):
        if path.is_file() and _remove_if_abandoned(path, now, STALE_UPLOAD_SECONDS):
            removed += 1
    parts_root = root / ".evalai"
    if parts_root.is_dir():
        for folder in parts_root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                newest = max(
                    (p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime
                )
                if folder.is_dir() and now - newest >= STALE_PARTS_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
    if removed:
        log.warning("removed %d abandoned upload file(s) under %s", removed, root)
    return removed
