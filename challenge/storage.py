"""Where files live. Public files are served to registered participants; the label store is read by
the scoring worker only (in compose.yaml it is mounted into the worker alone)."""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from challenge.settings import Settings

PUBLIC_FILES = ("train.parquet", "test.parquet")
DOWNLOAD_FORMATS = {"parquet": ".parquet", "csv": ".csv", "hdf5": ".h5", "root": ".root"}


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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
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
