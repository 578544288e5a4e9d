"""`podium worker` stays up: a kill -9 of one of its worker processes stops only that one (the
others go on grading, and it is started again), and SIGTERM is passed on to every process it
started, all gone within compose's 10 s grace period.

Before, dramatiq's main process shut the whole worker down when one worker process died, and
`podium worker` had no supervisor: one out-of-memory kill stopped all scoring.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session

from challenge import tasks
from challenge.health import alive_workers
from challenge.models import Submission
from challenge.settings import Settings
from tests.challenge.conftest import random_submission
from tests.challenge.test_queue import joined, submit_frame
from tests.challenge.test_queue_faults import sender

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _worker_processes(podium: int) -> list[int]:
    """dramatiq's worker processes: dramatiq processes started by a dramatiq process."""
    return sorted(
        pid
        for parent in _descendants(podium)
        if "dramatiq" in _cmdline(parent)
        for pid in _children(parent)
        if "dramatiq" in _cmdline(pid)
    )


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has exited: it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n--- podium worker log ---\n"
                        f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_killed_worker_process_does_not_stop_grading_and_sigterm_stops_all(
    settings: Settings,
    engine: sa.Engine,
    make_challenge: object,
    make_user: object,
    redis_url: str,
    tmp_path: Path,
) -> None:
    challenge = make_challenge(per_day=50)  # type: ignore[operator]
    user = joined(engine, challenge, make_user("wanda"))  # type: ignore[operator]
    client = redis.Redis.from_url(redis_url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": settings.secret_key.get_secret_value(),
        "PODIUM_REDIS_URL": redis_url,
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_DATA_DIR": str(settings.data_dir),
        "PODIUM_LABEL_DIR": str(settings.label_dir),
        "PODIUM_SCORE_BOOTSTRAP": "0",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        podium = subprocess.Popen(
            [sys.executable, "-m", "challenge.cli", "worker", "--processes", "2",
             "--code-processes", "0"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait(lambda: alive_workers(client) == 2, 120, "two worker heartbeats", log)
        workers = _worker_processes(podium.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)

        send = sender(redis_url)
        sid = submit_frame(settings, engine, challenge, user,
                           random_submission(settings, challenge.slug, seed=1))  # fmt: skip
        send(tasks.score_submission, sid)

        def scored() -> bool:
            with Session(engine) as session:
                row = session.get(Submission, sid)
                return row is not None and row.status == "scored"

        started = time.monotonic()
        _wait(scored, 10, "the submission sent after the kill to be scored", log)
        assert time.monotonic() - started < 10

        # The killed one is started again: two worker processes, two heartbeats again.
        _wait(lambda: len(_worker_processes(podium.pid)) == 2
              and workers[0] not in _worker_processes(podium.pid), 30, "a replacement",
              log)  # fmt: skip
        assert workers[1] in _worker_processes(podium.pid)  # the other one was left alone
        _wait(lambda: alive_workers(client) == 2, 120, "the replacement's heartbeat", log)
        assert "exited with code" in log.read_text()

        # SIGTERM (what compose sends) reaches every process, and all are gone within 10 s.
        tree = _descendants(podium.pid)
        assert len(tree) >= 4  # two dramatiq main processes and their worker processes
        podium.send_signal(signal.SIGTERM)
        assert podium.wait(10) == 0
        _wait(lambda: not any(_alive(p) for p in tree), 2, "every child to exit", log)
    finally:
        if podium.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(podium.pid, signal.SIGKILL)
            podium.wait()
        for pid in _descendants(podium.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_processes_do_not_outlive_a_killed_podium_worker(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    """`podium worker` killed with SIGKILL (no chance to pass anything on): its dramatiq
    processes get SIGTERM from the kernel and stop, instead of running on orphaned (with the
    embedded Redis, which dies with it, they retried forever)."""
    client = redis.Redis.from_url(redis_url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": settings.secret_key.get_secret_value(),
        "PODIUM_REDIS_URL": redis_url,
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_DATA_DIR": str(settings.data_dir),
        "PODIUM_LABEL_DIR": str(settings.label_dir),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        podium = subprocess.Popen(
            [sys.executable, "-m", "challenge.cli", "worker", "--processes", "1",
             "--code-processes", "0"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    tree: set[int] = set()
    try:
        _wait(lambda: alive_workers(client) == 1, 120, "a worker heartbeat", log)
        tree = _descendants(podium.pid)
        assert _worker_processes(podium.pid), tree
        podium.kill()
        podium.wait()
        _wait(lambda: not any(_alive(p) for p in tree), 15, "the orphans to stop", log)
    finally:
        left = tree | _descendants(podium.pid)
        if podium.poll() is None:  # the test failed before killing it: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(podium.pid, signal.SIGKILL)
            podium.wait()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        client.close()


def test_a_worker_that_cannot_start_is_restarted_less_and_less_often() -> None:
    """A worker that exits at once (database unreachable, say) is not restarted every second
    forever: the delay doubles up to a minute."""
    from challenge.cli import WorkerSupervisor

    def failing() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    stop = threading.Event()
    supervisor = WorkerSupervisor(failing, stop, interval=0.05)
    try:
        time.sleep(4.0)
        # Restarted after 1 s, then 2 s: twice in 4 s (it was ~40 times with no delay).
        assert 1 <= supervisor.restarts <= 3, supervisor.restarts
    finally:
        supervisor.terminate()
