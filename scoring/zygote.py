"""The warm process behind :class:`scoring.sandbox.SandboxPool`, and the jail its children enter.

Run as ``python -m scoring.zygote``. It imports numpy, pandas, pyarrow and the scoring code once,
then reads one JSON request per line on stdin. For each request it forks a child which

1. enters new network and mount namespaces (``unshare``), mounts an empty tmpfs as its new root
   holding exactly its :class:`scoring.view.FileView` (the Python runtime, then the job's
   submission, solution and organizer metric file under ``/input``, all read-only, and a
   scratch directory), and ``chroot``\\ s into it,
2. opens the job's files there, still as root (they belong to the hub),
3. drops to an unprivileged uid with no supplementary groups and ``PR_SET_NO_NEW_PRIVS``,
4. sets rlimits (address space, CPU seconds, file size, processes, no core dumps),
5. grades from the open files and writes the result as JSON on a pipe.

Started with ``{"organizer_code": true}`` (the pool's second zygote, for ``python`` metrics) it
never parses a solution itself: the child does, inside the jail, so organizer code never runs in
a process whose memory holds another challenge's solution.

The zygote enforces the wall clock (SIGKILL), kills whatever the child left running under its uid
(fork bombs), and answers with one JSON line on stdout. What the kernel refused is reported in the
``isolation`` mapping of the hello line, so the pool can warn loudly and the admin page can show
it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported here so that every forked child starts with them loaded (the point of the zygote).
import numpy as np  # noqa: F401
import pandas as pd  # noqa: F401
import pyarrow as pa
import pyarrow.compute
import pyarrow.csv
import pyarrow.parquet

from scoring import custom, grading, metrics, validation
from scoring.formats import SubmissionFormat
from scoring.metrics import MetricSpec
from scoring.view import (
    METRIC_DIR_TARGET,
    SOLUTION_TARGET,
    SUBMISSION_TARGET,
    FileView,
    Mount,
    runtime_view,
)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
#: Grading children run as UID_BASE + the zygote's pid (no such user exists; it owns nothing).
UID_BASE = 200_000

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

#: Largest result or log a child may send back.
_MAX_REPLY = 1 << 20
_MAX_LOG = 16 << 10


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _mount_view(jail: str, view: FileView) -> None:
    """Bind every mount of ``view`` under ``jail`` (read-only unless writable), nothing else."""
    for mount in view.mounts:
        target = jail + mount.target
        if os.path.isdir(mount.source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).touch()
        _mount(mount.source, target, None, MS_BIND | MS_REC, None)
        flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
        _mount(None, target, None, flags if mount.writable else flags | MS_RDONLY, None)
    for path, points_to in view.links:
        os.symlink(points_to, jail + path)
    for device in view.devices:
        os.makedirs(os.path.dirname(jail + device), exist_ok=True)
        Path(jail + device).touch()
        _mount(device, jail + device, None, MS_BIND, None)


def enter_jail(
    jail: str,
    uid: int,
    limits: dict[str, Any],
    view: FileView,
    *,
    required: bool = False,
    before_drop: Callable[[bool], None] | None = None,
) -> dict[str, Any]:
    """Isolate the calling (forked) process as far as this kernel allows; report what held.

    The filesystem is exactly ``view`` (:mod:`scoring.view`). With ``required``, a jail that
    cannot be built raises instead of letting the process go on with the host's files.
    ``before_drop`` is called inside the jail (with whether it holds) while still privileged.
    """
    report: dict[str, Any] = {"network": False, "filesystem": "none", "uid": None}
    vm = _virtual_size()  # before the chroot hides /proc
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        report["network"] = True
    except OSError as exc:
        report["network_error"] = str(exc)
    if os.geteuid() == 0:
        try:
            _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            _mount("tmpfs", jail, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={int(limits['file_size_mb'])}m,mode=755")
            _mount_view(jail, view)
            # The jail's only writable place: a scratch directory on the size-capped tmpfs.
            scratch = jail + view.scratch
            os.makedirs(scratch, exist_ok=True)
            os.chown(scratch, uid, uid)
            os.chroot(jail)
            os.chdir(view.scratch)
            report["filesystem"] = "chroot"
        except OSError as exc:
            if required:
                raise
            report["filesystem_error"] = str(exc)
            os.chdir(tempfile.gettempdir())
        if before_drop is not None:
            before_drop(report["filesystem"] == "chroot")
        try:
            _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            report["uid"] = uid
        except OSError as exc:
            report["uid_error"] = str(exc)
    elif required:
        raise OSError("the jail needs root and this process is not root")
    elif before_drop is not None:
        before_drop(False)
    # Directory listings the import system cached from the host (the working directory's
    # names among them) are dropped; imports look again, inside the jail.
    sys.path_importer_cache.clear()
    mib = 1 << 20
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(limits["memory_mb"]) * mib,) * 2)
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits["file_size_mb"]) * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["max_processes"]),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return report


def _virtual_size() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


class SolutionCache:
    """Parsed solutions kept in the zygote, so forked children get them for free.

    Keyed by path, size, modification time and the columns the metric needs; a rewritten file
    is read again. Each is kept with its id lookup (:class:`scoring.grading.PreparedSolution`),
    built here once instead of in every child. Holds at most ``capacity`` solutions (least
    recently used goes first).
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: dict[tuple[Any, ...], grading.PreparedSolution] = {}

    def get(self, path: str, fmt: SubmissionFormat, metric: MetricSpec) -> grading.PreparedSolution:
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns, json.dumps(fmt.to_dict(), sort_keys=True),
               json.dumps(metric.to_dict(), sort_keys=True, default=str))
        frame = self._items.pop(key, None)
        if frame is None:
            frame = grading.PreparedSolution.of(grading.load_solution(Path(path), fmt, metric), fmt)
            frame.split(metric)  # the Public / Private rows, split once for every child
        self._items[key] = frame
        while len(self._items) > self.capacity:
            self._items.pop(next(iter(self._items)))
        return frame


@dataclass(frozen=True)
class Jail:
    """Where and how this zygote's children are jailed."""

    #: An empty directory: the mount point of each child's private root.
    root: str
    uid: int
    #: The Python runtime; each job adds its own files (``request["mounts"]``).
    runtime: FileView
    #: The probe built the whole jail, so a job whose jail fails is refused, never run open.
    required: bool
    #: This zygote runs organizer metrics: it never parses a solution itself (its children do,
    #: inside the jail), so no child inherits another challenge's solution in its memory.
    organizer_code: bool = False


def _job_mounts(request: dict[str, Any]) -> tuple[Mount, ...]:
    mounts = tuple(Mount.from_dict(m) for m in request.get("mounts", ()))
    for mount in mounts:
        if mount.writable or not mount.target.startswith("/input/"):
            raise ValueError(f"a job may only add read-only files under /input: {mount}")
    return mounts


def _run_child(request: dict[str, Any], result_w: int, log_w: int, jail: Jail,
               solution: grading.PreparedSolution | None) -> None:
    """Body of the forked child; never returns."""
    code = 0
    me = os.getpid()
    try:
        os.dup2(log_w, 1)
        os.dup2(log_w, 2)
        # The zygote's request pipe is not the child's to read.
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        fmt = SubmissionFormat.from_dict(request["format"])
        metric = MetricSpec.from_dict(request["metric"])
        job = _job_mounts(request)
        by_target = {m.target: m for m in job}
        handles: dict[str, Any] = {}

        def open_inputs(jailed: bool) -> None:
            # Inside the jail's view (when it holds) but before privileges are dropped: the
            # stored files belong to the hub, not to the sandbox uid.
            for mount in job:
                # Kept open for grading, which reads the handles.
                handles[mount.target] = open(  # noqa: SIM115
                    mount.target if jailed else mount.source, "rb"
                )

        enter_jail(jail.root, jail.uid, request["limits"], jail.runtime.with_mounts(job),
                   required=jail.required, before_drop=open_inputs)
        if metric.name == "python" and metric.params.get("source") is None:
            metric_files = [t for t in by_target if t.startswith(METRIC_DIR_TARGET + "/")]
            if not metric_files:
                raise metrics.MetricError("no metric file was given to the sandbox")
            metric = custom.with_source(metric, handles[metric_files[0]].read())
        if solution is None:
            # Parsed here, inside the jail: the zygote never holds it (see Jail.organizer_code).
            solution = grading.PreparedSolution.of(
                grading.load_solution(handles[SOLUTION_TARGET], fmt, metric), fmt
            )

        def send_score(scores: grading.GradingResult) -> None:
            # The scores before the bootstrap: one line of its own, marked as the first stage.
            _write_all(result_w, json.dumps({**scores.to_dict(), "stage": "score"}).encode() + b"\n")

        result = grading.grade(
            handles[SUBMISSION_TARGET],
            solution,
            fmt,
            metric,
            bootstrap=int(request["bootstrap"]),
            bootstrap_private=(
                None if request.get("bootstrap_private") is None
                else int(request["bootstrap_private"])
            ),
            seed=int(request["seed"]),
            max_bytes=int(request.get("max_bytes", validation.DEFAULT_MAX_BYTES)),
            on_score=send_score if request.get("stream_score") else None,
        )
        answer = result.to_dict()
        answer["usage"] = _own_usage()
        payload = json.dumps(answer).encode()
    except BaseException as exc:  # everything must come back as JSON
        code = 1
        payload = json.dumps(
            {
                "status": "error",
                "message": "The submission could not be scored because of an internal error; "
                "the organizers have been told.",
                "detail": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            }
        ).encode()
    if os.getpid() != me:
        # A process forked by grading code got here: only the grading child itself answers.
        os._exit(1)
    try:
        # The newline tells the zygote the answer is complete before the child has exited.
        _write_all(result_w, payload + b"\n")
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _own_usage() -> dict[str, float]:
    """CPU time and page faults of this process so far (a grading child reports its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user_ms": usage.ru_utime * 1000.0,
        "system_ms": usage.ru_stime * 1000.0,
        "minor_faults": float(usage.ru_minflt),
    }


def _uid_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count


def _reap() -> None:
    """Collect orphans of grading children (the zygote is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _has_children() -> bool:
    """Whether this process has any child left, running or not yet reaped (atomic, no scan).

    The zygote is a child subreaper: whatever a grading child started and left behind is
    reparented to it when its parent dies, so once the grading child is reaped, no child at all
    means nothing of the job survives anywhere.
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (what a fork bomb left behind), and reap them.

    Until they are reaped they count against the next child's RLIMIT_NPROC. Costs a fork of the
    zygote and a scan of /proc (~10 ms), so it is skipped when the zygote has no child left (the
    usual case: the grading child started nothing, or what it started has exited and been
    reaped): only descendants of a grading child can run as ``uid``, and they all stay below the
    zygote (:func:`_has_children`).
    """
    _reap()
    if not _has_children():
        return
    deadline = time.monotonic() + 5.0
    while True:
        pid = os.fork()
        if pid == 0:
            try:
                os.setuid(uid)
                # kill(-1) reaches every process this uid may signal: exactly the sandbox's own.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        _reap()
        if _uid_processes(uid) == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _describe_exit(status: int, killed_for_time: bool, limits: dict[str, Any]) -> tuple[str, str]:
    """Plain message and organizer detail for a child that sent no result."""
    if killed_for_time:
        return (
            "Scoring took too long and was stopped; the organizers have been told.",
            f"wall-clock limit of {limits['wall_seconds']} s exceeded; the grading process was "
            "killed",
        )
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name
        why = {
            signal.SIGXCPU: f"CPU time limit of {limits['cpu_seconds']} s exceeded",
            signal.SIGXFSZ: f"file size limit of {limits['file_size_mb']} MiB exceeded",
            signal.SIGKILL: "killed (out of memory, or by the operator)",
            signal.SIGSEGV: "crashed (segmentation fault)",
        }.get(signal.Signals(sig), "terminated by a signal")
        return ("Scoring failed on the organizers' side; they have been told.",
                f"grading process {why} ({name})")
    return ("Scoring failed on the organizers' side; they have been told.",
            f"grading process exited with status {os.WEXITSTATUS(status)} without a result")


def serve_one(request: dict[str, Any], jail: Jail,
              cache: SolutionCache | None = None) -> dict[str, Any]:
    """Fork a jailed child for one grading request and collect its answer (cleanup included)."""
    answer, cleanup = start_one(request, jail, cache)
    cleanup()
    return answer


def start_one(
    request: dict[str, Any],
    jail: Jail,
    cache: SolutionCache | None = None,
    forward: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], Callable[[], None]]:
    """Fork a jailed child for one request; return its answer and the cleanup still to do.

    A child that answered "scored" or "invalid" is torn down after the answer has been sent
    (tearing down its network namespace and killing its uid's processes takes ~30 ms). With
    ``"stream_score"`` in the request, the child first sends its scores alone (before the
    bootstrap); the first such line is passed to ``forward`` as soon as it arrives, marked
    ``"partial": true``.
    """
    limits = request["limits"]
    started = time.perf_counter()
    try:
        # Trusted code, run before the fork: the child inherits the parsed solution and never
        # needs to open the hidden file itself.
        fmt = SubmissionFormat.from_dict(request["format"])
        metric = MetricSpec.from_dict(request["metric"])
        solution: grading.PreparedSolution | None = None
        if metric.name == "python" and not jail.organizer_code:
            raise ValueError("organizer metrics run in the organizer-code zygote, not this one")
        if not jail.organizer_code:
            solution = (cache or SolutionCache(0)).get(request["solution"], fmt, metric)
    except Exception as exc:
        return {
            "status": "error",
            "message": "The submission could not be scored because of a problem on the "
            "organizers' side; they have been told.",
            "detail": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            "duration_ms": (time.perf_counter() - started) * 1000.0,
        }, lambda: None
    result_r, result_w = os.pipe()
    log_r, log_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(result_r)
        os.close(log_r)
        _run_child(request, result_w, log_w, jail, solution)
    os.close(result_w)
    os.close(log_w)
    deadline = started + float(limits["wall_seconds"])
    reply = bytearray()
    log = bytearray()
    open_fds = {result_r, log_r}
    killed_for_time = False
    forwarded = False
    early: dict[str, Any] | None = None
    while open_fds and early is None:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            killed_for_time = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select(list(open_fds), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
            elif fd == result_r and len(reply) < _MAX_REPLY:
                reply += chunk
                while b"\n" in reply and early is None:
                    line, _, rest = bytes(reply).partition(b"\n")
                    try:
                        parsed = json.loads(line)
                    except ValueError:
                        break
                    if not isinstance(parsed, dict):
                        break
                    if parsed.get("stage") != "score":
                        if parsed.get("status") in ("scored", "invalid") and not rest:
                            early = parsed
                        break
                    # The scores ahead of the interval: passed on once, then the final line.
                    reply = bytearray(rest)
                    if forward is not None and not forwarded and parsed.get("status") == "scored":
                        forwarded = True
                        parsed.pop("stage", None)
                        parsed["partial"] = True
                        parsed["duration_ms"] = (time.perf_counter() - started) * 1000.0
                        forward(parsed)
            elif fd == log_r and len(log) < _MAX_LOG * 4:
                log += chunk

    def cleanup() -> tuple[int, Any]:
        if early is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        os.close(result_r)
        os.close(log_r)
        if os.geteuid() == 0:
            _kill_uid(jail.uid)
        return status, usage

    if early is not None:
        early["duration_ms"] = (time.perf_counter() - started) * 1000.0

        def finish_later() -> None:
            cleanup()

        return early, finish_later
    status, usage = cleanup()
    log_text = log[-_MAX_LOG:].decode("utf-8", "replace")
    answer: dict[str, Any]
    try:
        answer = json.loads(reply) if reply and not killed_for_time else {}
    except ValueError:
        answer = {}
    if not answer:
        message, detail = _describe_exit(status, killed_for_time, limits)
        answer = {"status": "error", "message": message, "detail": detail}
    if log_text and answer.get("status") == "error":
        answer["detail"] = f"{answer.get('detail', '')}\n--- grading process output ---\n{log_text}"
    answer["duration_ms"] = (time.perf_counter() - started) * 1000.0
    answer["max_rss_mb"] = usage.ru_maxrss / 1024.0
    return answer, lambda: None


def probe(jail: str, uid: int, limits: dict[str, Any], view: FileView) -> dict[str, Any]:
    """Fork once to find out which walls this kernel lets a child build."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            report = enter_jail(jail, uid, limits, view)
            try:
                open("/etc/hostname", "rb").close()
                report["host_files_visible"] = True
            except OSError:
                report["host_files_visible"] = False
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if os.geteuid() == 0:
        _kill_uid(uid)
    try:
        found: dict[str, Any] = json.loads(data)
    except ValueError:
        found = {"network": False, "filesystem": "none", "uid": None, "probe": "failed"}
    return found


def _nothing() -> None:
    return None


def main() -> None:
    """Serve grading requests on stdin/stdout until EOF or ``{"op": "exit"}``."""
    # The system allocator returns memory to the OS and behaves predictably under RLIMIT_AS.
    pa.set_memory_pool(pa.system_memory_pool())
    # Orphans of grading children (fork bombs) become ours, so we can reap them.
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    config = json.loads(sys.stdin.readline())
    # A uid no other live zygote uses: processes are killed per uid after each job, so sharing
    # one would let two pools kill each other's children.
    uid = int(config["uid"]) if config.get("uid") is not None else UID_BASE + os.getpid()
    root = tempfile.mkdtemp(prefix="podium-jail-")
    os.chmod(root, 0o755)  # noqa: S103 - an empty mount point; the jail's root must be enterable
    runtime = runtime_view()
    isolation = probe(root, uid, config["limits"], runtime)
    jail = Jail(root, uid, runtime, required=isolation.get("filesystem") == "chroot",
                organizer_code=bool(config.get("organizer_code")))
    cache = SolutionCache(int(config.get("cached_solutions", 4)))
    out = sys.stdout
    hello = {"hello": True, "pid": os.getpid(), "isolation": isolation,
             "view": [m.to_dict() for m in runtime.mounts]}
    out.write(json.dumps(hello) + "\n")
    out.flush()
    cleanup: Callable[[], None] = _nothing
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        def forward(partial: dict[str, Any]) -> None:
            out.write(json.dumps(partial) + "\n")
            out.flush()

        try:
            answer, cleanup = start_one(request, jail, cache, forward)
        except Exception as exc:  # the zygote must keep serving
            answer = {
                "status": "error",
                "message": "The submission could not be scored because of an internal error; "
                "the organizers have been told.",
                "detail": f"sandbox: {type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            }
        out.write(json.dumps(answer) + "\n")
        out.flush()
        cleanup()
        cleanup = _nothing
    with contextlib.suppress(OSError):
        os.rmdir(root)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    sys.exit(0)
