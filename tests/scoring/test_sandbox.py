"""Each wall of the sandbox, proven by an organizer metric that tries to break it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from scoring.grading import GradingResult, grade
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool
from tests.scoring.conftest import AMS, HIGGS_FORMAT

Files = Callable[..., tuple[Path, Path, pd.DataFrame, pd.DataFrame]]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the full jail needs root")


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(Limits(memory_mb=512, cpu_seconds=5, wall_seconds=4, max_processes=32)) as p:
        yield p


def organizer_metric(tmp_path: Path, body: str) -> MetricSpec:
    (tmp_path / "metric.py").write_text(body)
    return MetricSpec.from_dict({"name": "python", "file": "metric.py"})


def test_sandbox_scores_like_in_process(pool: SandboxPool, higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(1500)
    inside = pool.grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=50, seed=1)
    outside = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=50, seed=1)
    assert inside.status == "scored", inside.detail
    assert (inside.public, inside.private, inside.public_ci) == (
        outside.public,
        outside.private,
        outside.public_ci,
    )


def test_invalid_submission_comes_back_invalid(
    pool: SandboxPool, higgs_files: Files, tmp_path: Path
) -> None:
    _, sol_path, _, _ = higgs_files(100)
    bad = tmp_path / "bad.csv"
    bad.write_text("EventId,RankOrder\n1,1\n")
    result = pool.grade(bad, sol_path, HIGGS_FORMAT, AMS)
    assert result.status == "invalid"
    assert "'Class' is missing" in result.message


@needs_root
def test_kernel_walls_are_up(pool: SandboxPool) -> None:
    assert pool.network_isolated
    assert pool.filesystem_isolated
    assert pool.isolation["host_files_visible"] is False


def test_organizer_metric_runs_inside(pool: SandboxPool, higgs_files: Files, tmp_path: Path) -> None:
    sub_path, sol_path, solution, submission = higgs_files(400)
    metric = organizer_metric(
        tmp_path,
        "def score(solution, submission):\n"
        "    return {'score': float((solution['Label'].astype(str) == "
        "submission['Class'].astype(str)).mean())}\n",
    )
    result = pool.grade(sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path, bootstrap=5)
    assert result.status == "scored", result.detail
    merged = solution.merge(submission, on="EventId")
    public = merged[merged["Usage"] == "Public"]
    assert result.public == pytest.approx((public["Label"] == public["Class"]).mean(), rel=1e-12)


ATTACKS = {
    "allocates 10 GiB": (
        "def score(solution, submission):\n"
        "    block = bytearray(10 * 1024 ** 3)\n"
        "    return float(len(block))\n",
        "MemoryError",
    ),
    "loops forever": (
        "def score(solution, submission):\n    while True:\n        pass\n",
        "limit",
    ),
    "sleeps forever": (
        "import time\ndef score(solution, submission):\n    time.sleep(3600)\n",
        "wall-clock limit",
    ),
    "forks a bomb": (
        "import os\ndef score(solution, submission):\n"
        "    while True:\n        os.fork()\n",
        "Resource temporarily unavailable",
    ),
    "opens a socket to the internet": (
        "import socket\ndef score(solution, submission):\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    return 1.0\n",
        "Network is unreachable",
    ),
    "talks to a local service": (
        "import socket\ndef score(solution, submission):\n"
        "    socket.create_connection(('127.0.0.1', 6379), timeout=2)\n    return 1.0\n",
        "OSError",
    ),
    "reads another challenge's solution": (
        "import pandas as pd\ndef score(solution, submission):\n"
        "    return float(len(pd.read_parquet({other!r})))\n",
        "FileNotFoundError",
    ),
    "writes outside its directory": (
        "def score(solution, submission):\n"
        "    open({outside!r}, 'w').write('owned')\n    return 1.0\n",
        "Error",
    ),
    "fills its scratch space": (
        "def score(solution, submission):\n"
        "    with open('big', 'wb') as f:\n"
        "        for _ in range(1000):\n            f.write(b'x' * (1 << 20))\n    return 1.0\n",
        "File too large",
    ),
    "crashes the interpreter": (
        "import os\ndef score(solution, submission):\n    os.abort()\n",
        "SIGABRT",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_become_organizer_errors_and_the_pool_keeps_serving(
    pool: SandboxPool, higgs_files: Files, tmp_path: Path, attack: str
) -> None:
    body, fragment = ATTACKS[attack]
    sub_path, sol_path, _, _ = higgs_files(100)
    other = tmp_path / "other-challenge" / "solution.parquet"
    other.parent.mkdir()
    other.write_bytes(sol_path.read_bytes())
    outside = tmp_path / "owned.txt"
    body = body.replace("{other!r}", repr(str(other))).replace("{outside!r}", repr(str(outside)))
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, organizer_metric(tmp_path, body), metric_dir=tmp_path
    )
    assert result.status == "error"
    assert fragment in result.detail
    assert "organizers" in result.message
    assert not outside.exists()
    after = pool.grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=0)
    assert after.status == "scored"


def _live_processes_of(uid: int) -> list[int]:
    """Processes running as ``uid``, zombies (killed, not yet reaped) left out."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if (
                    entry.stat().st_uid == uid
                    and "\nState:\tZ" not in Path(entry.path, "status").read_text()
                ):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@needs_root
def test_processes_left_behind_by_a_scored_job_are_killed(
    pool: SandboxPool, higgs_files: Files, tmp_path: Path
) -> None:
    # A metric that answers normally but leaves a detached grandchild running: the cleanup
    # after the answer must still find and kill it (the zygote's no-child fast path must not
    # skip it).
    sub_path, sol_path, _, _ = higgs_files(100)
    body = (
        "import os, time\n"
        "def score(solution, submission):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3600)\n"
        "        os._exit(0)\n"
        "    return 1.0\n"
    )
    metric = organizer_metric(tmp_path, body)
    result = pool.grade(sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path, bootstrap=0)
    assert result.status == "scored", result.detail
    uid = pool.organizer_isolation["uid"]  # organizer metrics have a zygote of their own
    # The cleanup runs after the answer; the zygote finishes it before it reads the next job.
    after = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT,
        organizer_metric(tmp_path, "def score(solution, submission):\n    return 1.0\n"),
        metric_dir=tmp_path, bootstrap=0,
    )
    assert after.status == "scored"
    # The second job's own grading child may still be exiting when its answer arrives (the answer
    # is sent first): wait for it, but not for the detached grandchild, which sleeps for an hour.
    deadline = time.monotonic() + 10.0
    while _live_processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_processes_of(uid) == []


def test_the_child_reports_its_cpu_and_page_faults(pool: SandboxPool, higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(500)
    result = pool.grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=10)
    assert result.status == "scored", result.detail
    usage = pool.last_usage
    assert usage is not None
    assert usage["user_ms"] + usage["system_ms"] > 0
    assert usage["minor_faults"] > 0


def test_the_scores_come_ahead_of_the_intervals(pool: SandboxPool, higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(1500)
    early: list[GradingResult] = []
    plain = pool.grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=50, seed=3)
    full = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=50, seed=3, on_score=early.append
    )
    assert full.status == "scored", full.detail
    assert (full.public, full.private, full.public_ci, full.private_ci) == (
        plain.public,
        plain.private,
        plain.public_ci,
        plain.private_ci,
    )
    assert len(early) == 1
    assert early[0].status == "scored"
    assert (early[0].public, early[0].private) == (full.public, full.private)
    assert (early[0].public_ci, early[0].private_ci) == (None, None)
    assert 0 < early[0].duration_ms <= full.duration_ms
    # Nothing to send ahead without an interval, nor for a file that is not valid.
    pool.grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=0, on_score=early.append)
    assert len(early) == 1


def test_a_failure_after_the_scores_still_ends_the_job(
    pool: SandboxPool, higgs_files: Files, tmp_path: Path
) -> None:
    # An organizer metric that scores the two subsets and then hangs in the bootstrap: the
    # score comes through, the final answer is the wall-clock error.
    sub_path, sol_path, _, _ = higgs_files(200)
    body = (
        "import time\n"
        "calls = []\n"
        "def score(solution, submission):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 2:\n"
        "        time.sleep(3600)\n"
        "    return 1.0\n"
    )
    early: list[GradingResult] = []
    metric = organizer_metric(tmp_path, body)
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path, bootstrap=5,
        on_score=early.append,
    )
    assert [r.public for r in early] == [1.0]
    assert result.status == "error"
    assert "wall-clock" in result.detail
