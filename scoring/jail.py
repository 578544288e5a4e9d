"""Run an untrusted command under bubblewrap, a seccomp filter and cgroup limits.

Usage::

    result = run_jailed(
        ["/usr/bin/python3", "/app/program/ingestion.py", ...],
        mounts=[Mount(program_dir, "/app/program"), Mount(out_dir, "/app/output", writable=True)],
        budget=Budget(cpu_seconds=60, wall_seconds=120, memory_mb=1024, disk_mb=256, processes=64),
    )
    if result.exceeded:            # "memory", "CPU time", "wall time", "disk", "processes"
        print(result.message)      # one line for the participant

What the command sees: the read-only runtime (``/usr`` and the Python installations it needs),
the mounts given (read-only unless ``writable``), a tmpfs ``/tmp`` of ``disk_mb``, a private
``/proc`` and ``/dev``, no network (``--unshare-all``), and its own unprivileged uid, allocated per
run (``UID_BASE`` and up) and mapped to itself by an unprivileged user namespace.

Why the mounts are staged: bubblewrap running as the unprivileged uid resolves each mount source
with ``realpath``, which fails under folders only root may enter (``/root/.pyenv``, the label
store). The launcher therefore enters a private mount namespace while still root, binds every
source onto a mount point under ``state_dir`` (world-traversable, empty on the host), drops to
the run's uid, and execs bubblewrap on those mount points. Nothing changes on the host.

The caller is root (the scoring worker is, in compose.yaml). :func:`host_capabilities` tells what
this host provides; anything missing is listed under ``missing`` with the reason, and
:func:`run_jailed` refuses to run without it unless ``allow_partial`` is given.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
#: Runs get uids from here on (the prediction-file zygote uses 200000 + its pid).
UID_BASE = 400_000
UID_COUNT = 60_000
#: Where per-run mount points and uid locks live (must be on a filesystem every uid can enter).
DEFAULT_STATE_DIR = Path("/tmp/podium-jail")  # noqa: S108 - root-owned 0711, mount points only

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

#: Syscalls the filter refuses with EPERM: kernel attack surface no model or scoring program needs.
BLOCKED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fspick", "mount_setattr", "setns", "unshare",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "personality",
)  # fmt: skip
#: clone() flags that would make new namespaces (a second user namespace is the usual kernel
#: exploit path); clone3 is refused with ENOSYS so that libc falls back to clone, which is checked.
CLONE_NAMESPACE_FLAGS = (
    0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080,
)  # fmt: skip
AF_UNIX = 1
#: How Python and the C library word ENOSPC and EFBIG, when a run dies of a full scratch.
DISK_FULL_MESSAGES = ("No space left on device", "File too large")
TIOCSTI = 0x5412


@dataclass(frozen=True)
class Mount:
    """A host path shown at ``target`` inside the jail, read-only unless ``writable``."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Budget:
    """What one run may use; exceeding any ends it with a message naming which.

    ``cpus`` caps the rate (cores) besides the total ``cpu_seconds``: on the 2-core host that is
    what keeps a busy run off the core file scoring uses (a lower cgroup CPU weight was tried and
    starved a run's start on a loaded host, docs/benchmarks.md). ``disk_mb`` bounds the tmpfs
    scratch, each file written and the writable mounts' total.
    """

    cpu_seconds: float = 600.0
    wall_seconds: float = 900.0
    memory_mb: int = 2048
    disk_mb: int = 512
    processes: int = 64
    cpus: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Budget:
        known = {f: raw[f] for f in cls.__dataclass_fields__ if f in raw}
        return cls(**known)


BUDGET_UNITS = {
    "cpu_seconds": ("CPU time", "s"),
    "wall_seconds": ("wall time", "s"),
    "memory_mb": ("memory", "MB"),
    "disk_mb": ("disk", "MB"),
    "processes": ("processes", ""),
}


@dataclass
class RunResult:
    """What a jailed run did: exit code, the budget it broke (if any), bounded output, usage."""

    exit_code: int | None
    exceeded: str | None = None  # "memory" | "CPU time" | "wall time" | "disk" | "processes"
    message: str = ""
    stdout: str = ""
    stderr: str = ""
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    max_memory_mb: float = 0.0
    disk_mb: float = 0.0
    uid: int = 0
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.exceeded is None

    def usage(self) -> dict[str, float]:
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "max_memory_mb": round(self.max_memory_mb, 1),
            "disk_mb": round(self.disk_mb, 2),
        }


class JailUnavailable(RuntimeError):
    """The host lacks a wall the run needs (see :func:`host_capabilities`)."""


# ---------------------------------------------------------------- seccomp


_bpf_cache: bytes | None = None
_bpf_error = ""


def seccomp_program() -> bytes | None:
    """The compiled BPF filter (libseccomp via pyseccomp), or None when it cannot be built."""
    global _bpf_cache, _bpf_error
    if _bpf_cache is not None or _bpf_error:
        return _bpf_cache
    try:
        import pyseccomp as sc

        filt = sc.SyscallFilter(defaction=sc.ALLOW)
        for name in BLOCKED_SYSCALLS:
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # unknown on this arch
                filt.add_rule(sc.ERRNO(errno.EPERM), name)
        for flag in CLONE_NAMESPACE_FLAGS:
            filt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        # Only local (unix) sockets: there is no network anyway; this also shuts netlink.
        filt.add_rule(sc.ERRNO(errno.EACCES), "socket", sc.Arg(0, sc.NE, AF_UNIX))
        filt.add_rule(sc.ERRNO(errno.EPERM), "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
        fd = os.memfd_create("podium-seccomp", os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                filt.export_bpf(out)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        _bpf_cache = b"".join(chunks)
    except Exception as exc:  # no libseccomp, no pyseccomp: reported as a missing wall
        _bpf_error = f"{type(exc).__name__}: {exc}"
        return None
    return _bpf_cache


# ---------------------------------------------------------------- cgroups


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and ``""`` for the v2 hierarchy."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _cgroup_mounts() -> tuple[dict[str, Path], Path | None]:
    """Mount points of the v1 controllers, and of the v2 hierarchy (if any)."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split(" ")[:3]
            mount_point = Path(left.split(" ")[4])
            if fstype == "cgroup2":
                v2 = mount_point
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in ("memory", "pids", "cpu", "cpuacct", "freezer"):
                        v1[option] = mount_point
    return v1, v2


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                values[parts[0]] = int(parts[1])
    return values


class Cgroup:
    """One run's control group: limits in, usage and budget hits out, the whole group killed."""

    version = ""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs  # controller -> directory of this group ("" for v2)

    @property
    def procs_files(self) -> list[Path]:
        """Files the launcher writes its own pid into (every hierarchy the group spans)."""
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in dict.fromkeys(self.dirs.values()):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL everything in the group, until it is empty (a fork bomb is bounded by pids)."""
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for d in dict.fromkeys(self.dirs.values()):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    def cpu_seconds(self) -> float:
        raise NotImplementedError

    def max_memory_mb(self) -> float:
        raise NotImplementedError

    def oom_killed(self) -> bool:
        raise NotImplementedError

    def pids_refused(self) -> bool:
        raise NotImplementedError


class CgroupV1(Cgroup):
    version = "v1"

    def set_limits(self, budget: Budget) -> None:
        limit = str(budget.memory_mb << 20)
        memory = self.dirs["memory"]
        _write(memory / "memory.limit_in_bytes", limit)
        with contextlib.suppress(OSError):  # no swap accounting: nothing to swap to either
            _write(memory / "memory.memsw.limit_in_bytes", limit)
        _write(self.dirs["pids"] / "pids.max", str(budget.processes))
        period = 100_000
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(period))
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(budget.cpus * period))))

    def cpu_seconds(self) -> float:
        return _read_int(self.dirs["cpuacct"] / "cpuacct.usage") / 1e9

    def max_memory_mb(self) -> float:
        return _read_int(self.dirs["memory"] / "memory.max_usage_in_bytes") / (1 << 20)

    def oom_killed(self) -> bool:
        control = _read_keyed(self.dirs["memory"] / "memory.oom_control")
        if "oom_kill" in control:
            return control["oom_kill"] > 0
        return _read_int(self.dirs["memory"] / "memory.failcnt") > 0

    def pids_refused(self) -> bool:
        return _read_keyed(self.dirs["pids"] / "pids.events").get("max", 0) > 0

    def kill(self) -> None:
        freezer = self.dirs.get("freezer")
        if freezer is not None:  # freeze first, so nothing forks while we kill
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "FROZEN")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if freezer is not None:
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "THAWED")
        super().kill()


class CgroupV2(Cgroup):
    version = "v2"

    def set_limits(self, budget: Budget) -> None:
        d = self.dirs[""]
        _write(d / "memory.max", str(budget.memory_mb << 20))
        with contextlib.suppress(OSError):
            _write(d / "memory.swap.max", "0")
        _write(d / "pids.max", str(budget.processes))
        period = 100_000
        _write(d / "cpu.max", f"{max(1000, int(budget.cpus * period))} {period}")

    def cpu_seconds(self) -> float:
        return _read_keyed(self.dirs[""] / "cpu.stat").get("usage_usec", 0) / 1e6

    def max_memory_mb(self) -> float:
        return _read_int(self.dirs[""] / "memory.peak") / (1 << 20)

    def oom_killed(self) -> bool:
        return _read_keyed(self.dirs[""] / "memory.events").get("oom_kill", 0) > 0

    def pids_refused(self) -> bool:
        return _read_keyed(self.dirs[""] / "pids.events").get("max", 0) > 0

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            _write(self.dirs[""] / "cgroup.kill", "1")
        super().kill()


V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def _v2_root() -> Path | None:
    """The v2 group under which runs are made, when it delegates memory, pids and cpu."""
    _, v2 = _cgroup_mounts()
    if v2 is None:
        return None
    parent = v2 / _own_cgroups().get("", "/").lstrip("/")
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    if not {"memory", "pids", "cpu"} <= available:
        return None
    return parent


def create_cgroup(name: str, budget: Budget) -> Cgroup:
    """Make the run's group under this process's own (v2 where it delegates, else v1)."""
    v2_parent = _v2_root()
    if v2_parent is not None:
        group = v2_parent / name
        with contextlib.suppress(OSError):
            _write(v2_parent / "cgroup.subtree_control", "+memory +pids +cpu")
        group.mkdir()
        cg: Cgroup = CgroupV2({"": group})
        try:
            cg.set_limits(budget)  # type: ignore[attr-defined]
        except OSError:
            cg.remove()
            raise
        return cg
    v1, _ = _cgroup_mounts()
    missing = [c for c in V1_CONTROLLERS if c not in v1]
    if missing:
        raise JailUnavailable(f"no cgroup controller {', '.join(missing)} on this host")
    own = _own_cgroups()
    dirs: dict[str, Path] = {}
    try:
        for controller in (*V1_CONTROLLERS, "freezer"):
            if controller not in v1:
                continue
            group = v1[controller] / own.get(controller, "/").lstrip("/") / name
            if group not in dirs.values():
                group.mkdir()
            dirs[controller] = group
        cg = CgroupV1(dirs)
        cg.set_limits(budget)
    except OSError:
        for d in dict.fromkeys(dirs.values()):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return cg


# ---------------------------------------------------------------- what the host provides


_capabilities: dict[str, Any] | None = None


def host_capabilities(refresh: bool = False) -> dict[str, Any]:
    """What this host gives a jailed run, tried for real once per process (cached).

    Keys: ``bwrap``, ``user_namespaces``, ``seccomp``, ``cgroup`` ("v2", "v1" or None),
    ``root``, and ``missing``: one line per wall that is not there, saying why.
    """
    global _capabilities
    if _capabilities is not None and not refresh:
        return _capabilities
    caps: dict[str, Any] = {
        "bwrap": os.path.exists(BWRAP),
        "root": os.geteuid() == 0,
        "user_namespaces": False,
        "seccomp": seccomp_program() is not None,
        "cgroup": None,
    }
    missing: list[str] = []
    if not caps["root"]:
        missing.append("not running as root: cannot create cgroups nor run as a per-run uid")
    if not caps["bwrap"]:
        missing.append(f"bubblewrap not found at {BWRAP} (Debian package bubblewrap)")
    if not caps["seccomp"]:
        missing.append(f"no seccomp filter ({_bpf_error}); install libseccomp2 and pyseccomp")
    if caps["root"]:
        try:
            cg = create_cgroup(f"podium-probe-{os.getpid()}", Budget())
            caps["cgroup"] = cg.version
            cg.remove()
        except (OSError, JailUnavailable) as exc:
            missing.append(f"no cgroup limits (memory, pids, cpu): {exc}")
    if caps["bwrap"] and caps["root"]:
        try:
            probe = run_jailed(
                ["/usr/bin/true"], mounts=[], budget=Budget(wall_seconds=20),
                allow_partial=True, _probe=True,
            )  # fmt: skip
            caps["user_namespaces"] = probe.exit_code == 0
            if probe.exit_code != 0:
                missing.append(f"bubblewrap cannot make namespaces here: {probe.stderr.strip()}")
        except (OSError, JailUnavailable) as exc:
            missing.append(f"bubblewrap cannot run: {exc}")
    caps["missing"] = missing
    caps["complete"] = not missing
    _capabilities = caps
    return caps


# ---------------------------------------------------------------- uids


class _UidLease:
    """An unprivileged uid no other live run holds (lock files under ``state_dir``)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "uids"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.uid = 0
        self.path: Path | None = None
        start = random.randrange(UID_COUNT)  # noqa: S311 - spreading, not secrecy
        for i in range(UID_COUNT):
            uid = UID_BASE + (start + i) % UID_COUNT
            path = self.dir / str(uid)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self._stale(path):
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            self.uid, self.path = uid, path
            return
        raise JailUnavailable("no free sandbox uid")

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            pid = int(path.read_text() or "0")
        except (OSError, ValueError):
            return False
        return pid > 0 and not Path(f"/proc/{pid}").exists()

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def sweep_stale_runs(state_dir: Path = DEFAULT_STATE_DIR) -> list[int]:
    """Clean up after runs whose worker died (SIGKILL, OOM): kill what is left in their cgroups,
    remove the groups, the mount points and the uid lease. Returns the uids swept."""
    swept: list[int] = []
    uids = state_dir / "uids"
    if not uids.is_dir():
        return swept
    v1, _ = _cgroup_mounts()
    own = _own_cgroups()
    v2_parent = _v2_root()
    for lease in uids.iterdir():
        if not lease.name.isdigit() or not _UidLease._stale(lease):
            continue
        name = f"podium-run-{lease.name}"
        dirs: dict[str, Path] = {}
        if v2_parent is not None and (v2_parent / name).is_dir():
            dirs[""] = v2_parent / name
        for controller, mount in v1.items():
            group = mount / own.get(controller, "/").lstrip("/") / name
            if group.is_dir():
                dirs[controller] = group
        if dirs:
            (CgroupV2(dirs) if "" in dirs else CgroupV1(dirs)).remove()
        shutil.rmtree(state_dir / f"run-{lease.name}", ignore_errors=True)
        with contextlib.suppress(OSError):
            lease.unlink()
        swept.append(int(lease.name))
    return swept


# ---------------------------------------------------------------- output capture


class _BoundedReader(threading.Thread):
    """Drains a pipe, keeping its first and last ``limit / 2`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:  # a BufferedReader (Popen's)
        super().__init__(daemon=True)
        self.stream = stream
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.stream.read1(65536):  # type: ignore[attr-defined]
                self.total += len(chunk)
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    if len(self.tail) > self.half:
                        del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        middle = f"\n[… {cut} bytes cut …]\n" if cut > 0 else ""
        return (bytes(self.head).decode(errors="replace") + middle
                + bytes(self.tail).decode(errors="replace"))  # fmt: skip


# ---------------------------------------------------------------- the run


def runtime_mounts(prefixes: Iterable[str | Path] = ()) -> list[Mount]:
    """The read-only runtime: ``/usr``, the linker cache, and the Python installations given
    (by default this interpreter's: its venv and base prefix)."""
    roots = {Path(p).resolve() for p in prefixes} or {
        Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)
    }
    mounts = [Mount(Path("/usr"), "/usr")]
    for extra in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(extra):
            mounts.append(Mount(Path(extra).resolve(), extra))
    for root in sorted(roots):
        if not str(root).startswith("/usr/"):
            mounts.append(Mount(root, str(root)))
    return mounts


def _bwrap_args(
    staged: Sequence[tuple[str, Mount]], budget: Budget, cwd: str, seccomp_fd: int | None,
    env: dict[str, str],
) -> list[str]:  # fmt: skip
    args = [
        BWRAP, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--disable-userns",
        "--cap-drop", "ALL", "--clearenv",
        "--tmpfs", "/", "--proc", "/proc", "--dev", "/dev",
        "--size", str(budget.disk_mb << 20), "--tmpfs", "/tmp",  # noqa: S108 - the jail's own
    ]  # fmt: skip
    for name in ("bin", "lib", "lib64", "sbin"):
        link = Path("/") / name
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), f"/{name}"]
    for point, mount in staged:
        args += ["--bind" if mount.writable else "--ro-bind", point, mount.target]
    args += ["--remount-ro", "/", "--chdir", cwd]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args


def _tree_mb(paths: Iterable[Path]) -> float:
    total = 0
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total / (1 << 20)


def _hand_over(paths: Iterable[Path], uid: int) -> None:
    """Give the writable mounts to the run's uid (the folder and what is in it)."""
    for root in paths:
        for dirpath, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                os.lchown(os.path.join(dirpath, name), uid, uid)
        os.chown(root, uid, uid)


def take_back(paths: Iterable[Path]) -> None:
    """Make what a run wrote root's again, readable by the next step, with no set-id bits.

    Symlinks are left as they are (never followed); readers use :func:`read_output_file`.
    """
    for root in paths:
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)  # noqa: S103 - the next step runs as another uid and reads it
        for dirpath, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                path = os.path.join(dirpath, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    continue
                os.lchown(path, 0, 0)
                os.chmod(path, 0o755 if stat.S_ISDIR(info.st_mode) else 0o644)


def read_output_file(folder: Path, name: str, limit: int) -> bytes | None:
    """A regular file a jailed run wrote, never through a symlink; None if absent or not one."""
    if "/" in name or name in ("", ".", ".."):
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit)
    finally:
        os.close(fd)


def run_jailed(
    argv: Sequence[str],
    *,
    mounts: Sequence[Mount],
    budget: Budget,
    runtime: Sequence[Mount] | None = None,
    env: dict[str, str] | None = None,
    cwd: str = "/tmp",  # noqa: S108 - a path inside the jail (its private tmpfs)
    log_limit: int = 64 << 10,
    state_dir: Path = DEFAULT_STATE_DIR,
    allow_partial: bool = False,
    _probe: bool = False,
) -> RunResult:
    """Run ``argv`` in a fresh jail and wait for it; never raises for what the command does.

    Raises :class:`JailUnavailable` when a wall is missing on this host (see
    :func:`host_capabilities`) unless ``allow_partial``; then the run goes ahead with what
    there is, and ``isolation`` in the result says what held.
    """
    caps: dict[str, Any] = {"missing": []} if _probe else host_capabilities()
    missing_walls: list[str] = list(caps["missing"])
    if missing_walls and not allow_partial:
        raise JailUnavailable("; ".join(missing_walls))
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o711)  # noqa: S103 - enterable, not listable: holds mount points
    sweep_stale_runs(state_dir)
    lease = _UidLease(state_dir)
    uid = lease.uid
    run_dir = state_dir / f"run-{uid}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(mode=0o711)
    cgroup: Cgroup | None = None
    seccomp_fd: int | None = None
    writable = [m.source for m in mounts if m.writable]
    isolation: dict[str, Any] = {"uid": uid, "missing": missing_walls}
    try:
        staged: list[tuple[str, Mount]] = []
        binds: list[tuple[bytes, bytes]] = []
        for i, mount in enumerate([*(runtime_mounts() if runtime is None else runtime), *mounts]):
            point = run_dir / f"m{i}"
            if mount.source.is_dir():
                point.mkdir()
            else:
                point.touch()
            staged.append((str(point), mount))
            binds.append((str(mount.source).encode(), str(point).encode()))
        _hand_over(writable, uid)
        if os.geteuid() == 0:
            try:
                cgroup = create_cgroup(f"podium-run-{uid}", budget)
                isolation["cgroup"] = cgroup.version
            except (OSError, JailUnavailable) as exc:
                if not allow_partial:
                    raise JailUnavailable(f"cannot create the run's cgroup: {exc}") from exc
        program = None if _probe else seccomp_program()
        if program is not None:
            seccomp_fd = os.memfd_create("podium-seccomp", 0)
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            isolation["seccomp"] = True
        run_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",  # noqa: S108 - inside the jail
            "TMPDIR": "/tmp",  # noqa: S108 - inside the jail
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(max(1, int(budget.cpus))),
            "OPENBLAS_NUM_THREADS": str(max(1, int(budget.cpus))),
            "MKL_NUM_THREADS": str(max(1, int(budget.cpus))),
            **(env or {}),
        }
        args = _bwrap_args(staged, budget, cwd, seccomp_fd, run_env)
        args += list(argv)
        procs_files = [str(p).encode() for p in cgroup.procs_files] if cgroup else []
        disk_bytes = (budget.disk_mb << 20) + 1  # one byte over: a file that big is a breach
        cpu_limit = max(1, int(budget.cpu_seconds) + 1)

        def launch() -> None:
            # In the forked child, before exec: no Python locks are taken here, only syscalls.
            pid = str(os.getpid()).encode()
            for path in procs_files:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, pid)
                os.close(fd)
            if os.geteuid() == 0:
                if _libc.unshare(CLONE_NEWNS) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
                if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                    raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
                for source, point in binds:
                    if _libc.mount(source, point, None, MS_BIND | MS_REC, None) != 0:
                        raise OSError(ctypes.get_errno(), f"bind {source!r}")
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (disk_bytes, disk_bytes))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 1))
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)

        proc = subprocess.Popen(  # noqa: S603 - bubblewrap with arguments built above
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(seccomp_fd,) if seccomp_fd is not None else (),
            preexec_fn=launch,  # see launch(): syscalls only, no Python locks
            close_fds=True,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        readers = [_BoundedReader(proc.stdout, log_limit), _BoundedReader(proc.stderr, log_limit)]
        for reader in readers:
            reader.start()
        exceeded = _watch(proc, cgroup, budget, started, writable)
        if cgroup is not None:
            cgroup.kill()  # whatever it left behind (daemons, children)
        for reader in readers:
            reader.join(5)
        proc.stdout.close()
        proc.stderr.close()
        code = proc.returncode
        result = RunResult(
            exit_code=code,
            stdout=readers[0].text(),
            stderr=readers[1].text(),
            wall_seconds=time.monotonic() - started,
            uid=uid,
            isolation=isolation,
        )
        result.disk_mb = _tree_mb(writable)
        if cgroup is not None:
            result.cpu_seconds = cgroup.cpu_seconds()
            result.max_memory_mb = cgroup.max_memory_mb()
            if exceeded is None and cgroup.oom_killed():
                exceeded = "memory_mb"
            if exceeded is None and code != 0 and cgroup.pids_refused():
                exceeded = "processes"
        if exceeded is None and code in (128 + signal.SIGXCPU, -signal.SIGXCPU):
            exceeded = "cpu_seconds"
        if exceeded is None and code in (128 + signal.SIGXFSZ, -signal.SIGXFSZ):
            exceeded = "disk_mb"
        if exceeded is None and result.disk_mb > budget.disk_mb:
            exceeded = "disk_mb"
        if (
            exceeded is None
            and code != 0
            and any(text in result.stderr[-4096:] for text in DISK_FULL_MESSAGES)
        ):
            exceeded = "disk_mb"  # the scratch tmpfs filled up (ENOSPC) or a file hit its limit
        if exceeded is not None:
            what, unit = BUDGET_UNITS[exceeded]
            limit = getattr(budget, exceeded)
            result.exceeded = what
            result.message = (
                f"Stopped: the {what} budget ({limit:g} {unit}".rstrip() + ") was exceeded."
            )
        elif code != 0:
            result.message = f"The program exited with code {code}."
        return result
    finally:
        if cgroup is not None:
            cgroup.remove()
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        with contextlib.suppress(OSError):
            take_back(writable)
        shutil.rmtree(run_dir, ignore_errors=True)
        lease.release()


def _watch(
    proc: subprocess.Popen[bytes], cgroup: Cgroup | None, budget: Budget, started: float,
    writable: list[Path],
) -> str | None:  # fmt: skip
    """Wait for the run, killing it on a wall-clock, CPU or disk overrun; returns which."""
    deadline = started + budget.wall_seconds
    next_disk = started + 0.5
    tick = 0.01
    while True:
        try:
            proc.wait(timeout=tick)
            return None
        except subprocess.TimeoutExpired:
            pass
        tick = min(0.2, tick * 2)
        now = time.monotonic()
        overrun: str | None = None
        if now > deadline:
            overrun = "wall_seconds"
        elif cgroup is not None and cgroup.cpu_seconds() > budget.cpu_seconds:
            overrun = "cpu_seconds"
        elif writable and now > next_disk:
            next_disk = now + 1.0
            if _tree_mb(writable) > budget.disk_mb:
                overrun = "disk_mb"
        if overrun is not None:
            if cgroup is not None:
                cgroup.kill()
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            return overrun
