"""The code-run jail (scoring/jail.py): each wall, proven by participant code that tries it.

Every attack ends with a one-line message (or a plain failure inside the jail), and the next run
in the same process works: the worker goes on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from scoring import jail
from scoring.jail import Budget, Mount, RunResult, host_capabilities, read_output_file, run_jailed

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not host_capabilities()["complete"],
    reason="the code-run jail needs root, bubblewrap, seccomp and cgroups",
)

SMALL = Budget(cpu_seconds=20, wall_seconds=30, memory_mb=256, disk_mb=32, processes=32)


def run(code: str, tmp_path: Path, budget: Budget = SMALL, **kwargs: object) -> RunResult:
    program = tmp_path / "program"
    program.mkdir(exist_ok=True)
    (program / "main.py").write_text(textwrap.dedent(code))
    output = tmp_path / "output"
    output.mkdir(exist_ok=True)
    mounts = [Mount(program, "/app/program"), Mount(output, "/app/output", writable=True)]
    mounts += kwargs.pop("extra", [])  # type: ignore[arg-type]
    return run_jailed(
        [sys.executable, "/app/program/main.py"], mounts=mounts, budget=budget, **kwargs
    )  # type: ignore[arg-type]


def still_works(tmp_path: Path) -> None:
    """The worker goes on: a plain run right after the attack succeeds."""
    again = tmp_path / "again"
    again.mkdir()
    result = run("print('fine')", again)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "fine"


def test_runs_numpy_as_an_unprivileged_uid_and_hands_back_its_output(tmp_path: Path) -> None:
    result = run(
        """
        import os, numpy
        print(os.getuid(), os.getgid(), numpy.arange(4).sum())
        with open('/app/output/predictions.txt', 'w') as f:
            f.write('1 2 3')
        os.chmod('/app/output/predictions.txt', 0o600)
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    uid, gid, total = result.stdout.split()
    assert int(uid) == result.uid >= jail.UID_BASE
    assert int(gid) == result.uid
    assert total == "6"
    written = tmp_path / "output" / "predictions.txt"
    assert written.stat().st_uid == 0  # taken back, readable by the scoring step
    assert written.stat().st_mode & 0o777 == 0o644
    assert read_output_file(tmp_path / "output", "predictions.txt", 100) == b"1 2 3"
    assert result.cpu_seconds > 0
    assert result.max_memory_mb > 0


def test_ten_gib_allocation_is_stopped_by_the_memory_budget(tmp_path: Path) -> None:
    result = run("x = b'x' * (10 << 30)\nprint('allocated')", tmp_path)
    assert result.exceeded == "memory"
    assert result.message == "Stopped: the memory budget (256 MB) was exceeded."
    assert "allocated" not in result.stdout
    still_works(tmp_path)


def test_busy_loop_is_stopped_by_the_cpu_budget(tmp_path: Path) -> None:
    budget = Budget(cpu_seconds=1, wall_seconds=60, memory_mb=256, disk_mb=32, processes=32)
    started = time.monotonic()
    result = run("while True:\n    pass", tmp_path, budget)
    assert result.exceeded == "CPU time", result
    assert "CPU time budget (1 s)" in result.message
    assert time.monotonic() - started < 30
    still_works(tmp_path)


def test_sleeping_past_the_wall_clock_is_stopped(tmp_path: Path) -> None:
    budget = Budget(cpu_seconds=60, wall_seconds=1.5, memory_mb=256, disk_mb=32, processes=32)
    result = run("import time\ntime.sleep(600)", tmp_path, budget)
    assert result.exceeded == "wall time"
    assert result.wall_seconds < 10
    still_works(tmp_path)


def test_fork_bomb_is_bounded_by_the_process_budget(tmp_path: Path) -> None:
    result = run(
        """
        import os
        children = 0
        while True:
            if os.fork() == 0:
                import time
                time.sleep(600)
            children += 1
        """,
        tmp_path,
    )
    assert result.exceeded == "processes"
    assert result.message == "Stopped: the processes budget (32) was exceeded."
    assert not jail_processes(result.uid)
    still_works(tmp_path)


def test_sockets_are_refused_and_there_is_no_network(tmp_path: Path) -> None:
    result = run(
        """
        import socket, os
        for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET):
            try:
                socket.socket(family, socket.SOCK_DGRAM if family != socket.AF_PACKET else socket.SOCK_RAW)
                print('opened', family)
            except OSError as exc:
                print('refused', exc.errno)
        print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'no sysfs')
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    assert "opened" not in result.stdout
    assert result.stdout.count("refused 13") == 4
    assert "no sysfs" in result.stdout


def test_reference_data_and_other_challenges_files_are_not_there(tmp_path: Path) -> None:
    reference = tmp_path / "labels" / "this-challenge" / "reference_data"
    reference.mkdir(parents=True)
    (reference / "solution.csv").write_text("secret-label")
    other = tmp_path / "labels" / "other-challenge"
    other.mkdir()
    (other / "solution.csv").write_text("other-secret")
    result = run(
        f"""
        import os
        for path in ({str(reference / "solution.csv")!r}, {str(other / "solution.csv")!r},
                     '/app/input/ref/solution.csv', '/app/reference_data/solution.csv'):
            try:
                print(open(path).read())
            except OSError as exc:
                print('absent', exc.errno)
        print('scratch', os.listdir('/tmp'), 'app', sorted(os.listdir('/app')))
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    assert "secret" not in result.stdout
    assert result.stdout.count("absent 2") == 4
    # Only what was granted. A runtime that lives under /tmp (a checkout or venv there, as in a
    # CI clone) leaves the empty mount points of its read-only mount in the scratch tmpfs.
    under_tmp = sorted({
        Path(m.target).relative_to("/tmp").parts[0]
        for m in jail.runtime_mounts()
        if Path(m.target).is_relative_to("/tmp") and Path(m.target) != Path("/tmp")
    })
    assert f"scratch {under_tmp} app ['output', 'program']" in result.stdout


def test_writes_outside_output_and_scratch_fail(tmp_path: Path) -> None:
    result = run(
        """
        for path in ('/usr/evil', '/app/program/evil', '/evil', '/etc/evil', '/proc/sys/kernel/evil'):
            try:
                open(path, 'w').write('x')
                print('wrote', path)
            except OSError as exc:
                print('refused', path, exc.errno)
        open('/tmp/scratch-ok', 'w').write('x')
        print('scratch ok')
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    assert "wrote" not in result.stdout
    assert result.stdout.count("refused") == 5
    assert "scratch ok" in result.stdout
    assert not (tmp_path / "program" / "evil").exists()


def test_filling_the_scratch_or_output_is_stopped_by_the_disk_budget(tmp_path: Path) -> None:
    result = run("open('/tmp/big', 'wb').write(b'x' * (64 << 20))", tmp_path)
    assert result.exceeded == "disk", result
    assert result.message == "Stopped: the disk budget (32 MB) was exceeded."
    out = tmp_path / "out2"
    out.mkdir()
    result = run(
        "for i in range(8):\n    open(f'/app/output/part{i}', 'wb').write(b'x' * (8 << 20))",
        out,
    )
    assert result.exceeded == "disk", result
    still_works(tmp_path)


def test_killing_its_parent_does_not_reach_the_worker(tmp_path: Path) -> None:
    result = run(
        """
        import os, signal
        for target in (os.getppid(), 1, -1):
            try:
                os.kill(target, signal.SIGKILL)
                print('sent', target)
            except OSError as exc:
                print('refused', target, exc.errno)
        print('alive')
        """,
        tmp_path,
    )
    # kill(-1) ends every process of the jail but its init; the worker process never sees it.
    assert os.getppid() > 0
    assert result.exit_code is not None
    still_works(tmp_path)


def test_a_daemon_left_behind_is_killed_with_the_run(tmp_path: Path) -> None:
    marker = tmp_path / "output" / "heartbeat"
    result = run(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    with open('/app/output/heartbeat', 'a') as f:
                        f.write('.')
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.3)
        print('parent done')
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    assert not jail_processes(result.uid)
    size = marker.stat().st_size
    time.sleep(0.5)
    assert marker.stat().st_size == size  # nothing writes it any more
    still_works(tmp_path)


def test_seccomp_refuses_namespaces_ptrace_and_mount(tmp_path: Path) -> None:
    result = run(
        """
        import ctypes, ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        print('unshare', libc.unshare(0x10000000), ctypes.get_errno())
        print('ptrace', libc.ptrace(16, 1, 0, 0), ctypes.get_errno())
        print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())
        print('keyctl', libc.syscall(250, 0, 0, 0, 0), ctypes.get_errno())
        """,
        tmp_path,
    )
    assert result.ok, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines == dict.fromkeys(("unshare", "ptrace", "mount", "keyctl"), "-1 1")


def test_environment_carries_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_SECRET_KEY", "do-not-leak")
    result = run("import os\nprint(sorted(os.environ.items()))", tmp_path)
    assert result.ok, result.stderr
    assert "do-not-leak" not in result.stdout
    assert "PODIUM" not in result.stdout


def test_output_is_bounded(tmp_path: Path) -> None:
    result = run("print('a' * 1_000_000)\nprint('THE END')", tmp_path, log_limit=4096)
    assert result.ok
    assert len(result.stdout) < 5000
    assert "bytes cut" in result.stdout
    assert "THE END" in result.stdout  # the tail is kept: that is where tracebacks are


def test_symlinks_in_output_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden")
    result = run(f"import os\nos.symlink({str(secret)!r}, '/app/output/scores.json')", tmp_path)
    assert result.ok, result.stderr
    assert read_output_file(tmp_path / "output", "scores.json", 100) is None


def jail_processes(uid: int) -> list[int]:
    """Processes still running as the run's uid (there must be none; zombies wait for the
    host's init to reap them and run nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                running = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                if entry.stat().st_uid == uid and running:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def test_what_a_killed_worker_left_is_swept(tmp_path: Path) -> None:
    """A worker killed mid-run leaves its run's cgroup, mount points and uid lease; the next run
    (on any worker of the host) kills what is left and removes them."""
    state = Path(tempfile.mkdtemp(prefix="podium-jail-test-", dir="/tmp"))  # enterable by runs
    (state / "uids").mkdir(parents=True)
    dead = subprocess.Popen(["/usr/bin/true"])
    dead.wait()
    uid = jail.UID_BASE + 12345
    (state / "uids" / str(uid)).write_text(str(dead.pid))
    group = jail.create_cgroup(f"podium-run-{uid}", SMALL)
    leftover = subprocess.Popen(["/usr/bin/sleep", "600"])
    for procs in group.procs_files:
        procs.write_text(str(leftover.pid))
    (state / f"run-{uid}").mkdir()
    result = run("print('next run')", tmp_path, state_dir=state)
    assert result.ok, result.stderr
    assert leftover.wait(5) == -9
    assert not any(d.exists() for d in group.dirs.values())
    assert not (state / f"run-{uid}").exists()
    assert not (state / "uids" / str(uid)).exists()
    shutil.rmtree(state)
