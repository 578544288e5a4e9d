"""`podium demo` replaces a scoring worker that dies (kill -9, out of memory): without it, uploads
were accepted and never scored until the demo was restarted (found by the QA fault walk)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from challenge.cli import WorkerSupervisor


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
