"""Grading in an isolated process forked from a warm zygote (see :mod:`scoring.zygote`).

Usage from the scoring worker::

    pool = SandboxPool(Limits(memory_mb=2048, wall_seconds=60))
    result = pool.grade(submission_path, solution_path, fmt, metric_spec, metric_dir=store)
    ...
    pool.close()

One pool grades one submission at a time (calls from several threads queue on a lock); start one
pool per worker process. If the zygote itself dies, the next call starts a new one, so a crash
costs one submission an ``"error"`` result and never the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from scoring import custom
from scoring.formats import SubmissionFormat
from scoring.grading import GradingResult
from scoring.metrics import MetricError, MetricSpec
from scoring.validation import DEFAULT_MAX_BYTES
from scoring.view import Mount, grading_mounts

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Limits:
    """Resource walls of one grading child.

    ``memory_mb`` is address space on top of what the warm zygote already maps; ``max_processes``
    counts threads too (pyarrow starts a few).
    """

    memory_mb: int = 2048
    cpu_seconds: int = 30
    wall_seconds: float = 60
    file_size_mb: int = 64
    max_processes: int = 32


#: Environment variables a zygote keeps from the worker's; the rest (database URLs, secret
#: keys, storage credentials) never reaches a process that runs organizer or participant input.
KEPT_ENVIRONMENT = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LANGUAGE", "TZ",
                    "TMPDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def zygote_environment() -> dict[str, str]:
    """The environment a zygote starts with: :data:`KEPT_ENVIRONMENT` and ``LC_*``, no more."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENVIRONMENT or k.startswith("LC_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # One thread per core is plenty inside a grading child and keeps RLIMIT_NPROC meaningful.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


class _Zygote:
    """One ``python -m scoring.zygote`` process and its line protocol."""

    def __init__(self, python: str, config: dict[str, Any], start_timeout: float) -> None:
        self._python = python
        self._config = config
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.hello: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [self._python, "-m", "scoring.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=zygote_environment(),
            close_fds=True,
        )
        self._buffer = b""
        self.send(self._config)
        hello = self.receive(self._start_timeout)
        if hello is None or not hello.get("hello"):
            self.stop()
            raise RuntimeError("the scoring sandbox zygote did not start")
        self.hello = hello

    def send(self, message: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise OSError("the sandbox zygote is not running")
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        self._proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """One JSON line from the zygote, or ``None`` if it died or said nothing in time."""
        stdout: IO[bytes] | None = self._proc.stdout if self._proc is not None else None
        if stdout is None:
            return None
        deadline = time.monotonic() + timeout
        fd = stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
        self.stop()

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(OSError, ValueError):
                self.send({"op": "exit"})
        self.stop()


class SandboxPool:
    """A warm zygote that forks one jailed child per grading request.

    ``isolation`` reports what the kernel allowed (``network``: a private network namespace;
    ``filesystem``: ``"chroot"`` when the child sees only its :class:`scoring.view.FileView`, or
    ``"none"``; ``uid``: the unprivileged uid the child runs as, or ``None``). By default each
    zygote picks a uid of its own (200000 + its pid); pass ``uid`` only to pin one (the organizer
    zygote then uses ``uid + 1``), and never give two live pools overlapping uids: leftovers are
    killed per uid after every job.

    Organizer metrics (``python``) run in a second zygote, started on first use, that never
    parses a solution itself: its children read theirs inside the jail, so organizer code never
    shares memory with the solutions the first zygote keeps warm for built-in metrics.
    """

    def __init__(
        self,
        limits: Limits = Limits(),
        *,
        uid: int | None = None,
        python: str = sys.executable,
        start_timeout: float = 60.0,
    ) -> None:
        self.limits = limits
        self.uid = uid
        self._lock = threading.Lock()
        self.served = 0
        #: CPU milliseconds and minor page faults the last grading child reported for itself.
        self.last_usage: dict[str, float] | None = None
        config = {"uid": uid, "limits": asdict(limits)}
        self._builtin = _Zygote(python, config, start_timeout)
        organizer_uid = None if uid is None else uid + 1
        self._organizer = _Zygote(
            python,
            {**config, "uid": organizer_uid, "organizer_code": True, "cached_solutions": 0},
            start_timeout,
        )
        self._start(self._builtin)

    @property
    def isolation(self) -> dict[str, Any]:
        """What the kernel allowed the (built-in metrics') grading children."""
        return dict(self._builtin.hello.get("isolation", {}))

    @property
    def organizer_isolation(self) -> dict[str, Any]:
        """The same for organizer metrics' children (empty until the first one ran)."""
        return dict(self._organizer.hello.get("isolation", {}))

    @property
    def view(self) -> tuple[Mount, ...]:
        """The runtime part of the children's filesystem (each job adds its own files)."""
        return tuple(Mount.from_dict(m) for m in self._builtin.hello.get("view", ()))

    @property
    def network_isolated(self) -> bool:
        """Whether grading children run without network access."""
        return bool(self.isolation.get("network"))

    @property
    def filesystem_isolated(self) -> bool:
        """Whether grading children see only the files they are given."""
        return self.isolation.get("filesystem") == "chroot"

    def _start(self, zygote: _Zygote) -> None:
        zygote.start()
        isolation = zygote.hello.get("isolation", {})
        if not isolation.get("network"):
            log.warning(
                "SANDBOX WITHOUT NETWORK ISOLATION: grading code can reach the network (%s). "
                "Run the scoring worker as root or allow unprivileged user namespaces.",
                isolation.get("network_error", "unshare refused"),
            )
        if isolation.get("filesystem") != "chroot":
            log.warning(
                "SANDBOX WITHOUT FILESYSTEM ISOLATION: grading code can read other files (%s).",
                isolation.get("filesystem_error", "not running as root"),
            )

    def grade(
        self,
        submission_path: Path,
        solution_path: Path,
        fmt: SubmissionFormat,
        metric: MetricSpec,
        *,
        metric_dir: Path | None = None,
        bootstrap: int = 200,
        bootstrap_private: int | None = None,
        seed: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_score: Callable[[GradingResult], None] | None = None,
    ) -> GradingResult:
        """Grade one submission in a fresh jailed child; never raises for what the child does.

        ``bootstrap``, ``bootstrap_private`` and ``on_score`` are as in
        :func:`scoring.grading.grade`: ``on_score`` is called in this thread with the scores
        (no intervals) while the child goes on with the bootstrap. An exception it raises is
        logged and does not stop the grading. An organizer metric's ``file`` is a file name in
        ``metric_dir`` (:func:`scoring.custom.metric_file_in`); only the child reads it, inside
        the jail.
        """
        started = time.perf_counter()
        try:
            metric_file = custom.metric_file_in(metric, metric_dir)
        except MetricError as exc:
            return GradingResult(
                status="error",
                message="Scoring failed on the organizers' side; they have been told.",
                detail=f"organizer metric: {exc}",
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        mounts = grading_mounts(
            str(submission_path), str(solution_path),
            None if metric_file is None else str(metric_file),
        )
        request = {
            "op": "grade",
            "solution": str(Path(solution_path).resolve()),
            "mounts": [m.to_dict() for m in mounts],
            "format": fmt.to_dict(),
            "metric": metric.to_dict(),
            "bootstrap": bootstrap,
            "bootstrap_private": bootstrap_private,
            "seed": seed,
            "max_bytes": max_bytes,
            "limits": asdict(self.limits),
            "stream_score": on_score is not None,
        }
        zygote = self._organizer if metric.name == "python" else self._builtin
        with self._lock:
            if not zygote.running:
                zygote.stop()
                self._start(zygote)
            try:
                zygote.send(request)
                answer = zygote.receive(self.limits.wall_seconds + 30.0)
                while answer is not None and answer.get("partial"):
                    if on_score is not None:
                        try:
                            on_score(GradingResult.from_dict(answer))
                        except Exception:
                            log.exception("storing the score ahead of its interval failed")
                    answer = zygote.receive(self.limits.wall_seconds + 30.0)
            except (OSError, ValueError) as exc:
                answer = None
                log.error("sandbox zygote failed: %s", exc)
            if answer is None:
                # The zygote itself is gone or stuck: replace it, report this one as an error.
                zygote.kill()
                return GradingResult(
                    status="error",
                    message="Scoring failed on the organizers' side; they have been told.",
                    detail="the sandbox zygote died or stopped answering; it was restarted",
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                )
            self.served += 1
        answer.pop("max_rss_mb", None)
        self.last_usage = answer.pop("usage", None)
        return GradingResult.from_dict(answer)

    def close(self) -> None:
        """Stop the zygotes (idempotent)."""
        with self._lock:
            self._builtin.close()
            self._organizer.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort for pools nobody closed; close() is the supported way.
        with contextlib.suppress(Exception):
            self._builtin.kill()
            self._organizer.kill()
