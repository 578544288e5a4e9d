"""Grading in an isolated process forked from a warm zygote (see :mod:`scoring.zygote`).

Usage from the scoring worker::

    pool = SandboxPool(Limits(memory_mb=2048, wall_seconds=60))
    result = pool.grade(submission_path, solution_path, fmt, metric_spec)
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

from scoring.formats import SubmissionFormat
from scoring.grading import GradingResult
from scoring.metrics import MetricSpec
from scoring.validation import DEFAULT_MAX_BYTES

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


class SandboxPool:
    """A warm zygote that forks one jailed child per grading request.

    ``isolation`` reports what the kernel allowed (``network``: a private network namespace;
    ``filesystem``: ``"chroot"`` when the child sees only the Python installation, or ``"none"``;
    ``uid``: the unprivileged uid the child runs as, or ``None``). By default each pool picks a
    uid of its own (200000 + the zygote's pid); pass ``uid`` only to pin one, and never give
    two live pools the same uid: leftovers are killed per uid after every job.
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
        self._python = python
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.isolation: dict[str, Any] = {}
        self.served = 0
        #: CPU milliseconds and minor page faults the last grading child reported for itself.
        self.last_usage: dict[str, float] | None = None
        self._start()

    @property
    def network_isolated(self) -> bool:
        """Whether grading children run without network access."""
        return bool(self.isolation.get("network"))

    @property
    def filesystem_isolated(self) -> bool:
        """Whether grading children see only the files they are given."""
        return self.isolation.get("filesystem") == "chroot"

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # One thread per core is plenty inside a grading child and keeps RLIMIT_NPROC meaningful.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [self._python, "-m", "scoring.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._buffer = b""
        self._send({"uid": self.uid, "limits": asdict(self.limits)})
        hello = self._receive(self._start_timeout)
        if hello is None or not hello.get("hello"):
            self._stop()
            raise RuntimeError("the scoring sandbox zygote did not start")
        self.isolation = dict(hello.get("isolation", {}))
        if not self.network_isolated:
            log.warning(
                "SANDBOX WITHOUT NETWORK ISOLATION: grading code can reach the network (%s). "
                "Run the scoring worker as root or allow unprivileged user namespaces.",
                self.isolation.get("network_error", "unshare refused"),
            )
        if not self.filesystem_isolated:
            log.warning(
                "SANDBOX WITHOUT FILESYSTEM ISOLATION: grading code can read other files (%s).",
                self.isolation.get("filesystem_error", "not running as root"),
            )

    def _send(self, message: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise OSError("the sandbox zygote is not running")
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        self._proc.stdin.flush()

    def _receive(self, timeout: float) -> dict[str, Any] | None:
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

    def _stop(self) -> None:
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

    def grade(
        self,
        submission_path: Path,
        solution_path: Path,
        fmt: SubmissionFormat,
        metric: MetricSpec,
        *,
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
        logged and does not stop the grading.
        """
        request = {
            "op": "grade",
            "submission": str(Path(submission_path).resolve()),
            "solution": str(Path(solution_path).resolve()),
            "format": fmt.to_dict(),
            "metric": metric.to_dict(),
            "bootstrap": bootstrap,
            "bootstrap_private": bootstrap_private,
            "seed": seed,
            "max_bytes": max_bytes,
            "limits": asdict(self.limits),
            "stream_score": on_score is not None,
        }
        with self._lock:
            started = time.perf_counter()
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                self._start()
            try:
                self._send(request)
                answer = self._receive(self.limits.wall_seconds + 30.0)
                while answer is not None and answer.get("partial"):
                    if on_score is not None:
                        try:
                            on_score(GradingResult.from_dict(answer))
                        except Exception:
                            log.exception("storing the score ahead of its interval failed")
                    answer = self._receive(self.limits.wall_seconds + 30.0)
            except (OSError, ValueError) as exc:
                answer = None
                log.error("sandbox zygote failed: %s", exc)
            if answer is None:
                # The zygote itself is gone or stuck: replace it, report this one as an error.
                self._kill()
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

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
        self._stop()

    def close(self) -> None:
        """Stop the zygote (idempotent)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    self._send({"op": "exit"})
            self._stop()

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
            self._kill()
