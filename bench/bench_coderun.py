"""Start cost of a sandboxed code run, and file scoring while code runs go on (issue #13).

    python bench/bench_coderun.py [--runs 20] [--scoring-runs 30]

1. Starting a jailed run (bubblewrap + seccomp + cgroup, interpreter, ``import numpy``) against a
   bare ``python -c "import numpy"`` on the same machine, the two alternating so that load hits
   both alike. Target: ratio at most 2.
2. Prediction-file scoring (``SandboxPool.grade``, a 100,000-row HiggsML-like file) p50 alone,
   then with a code run busy-looping in the jail (one core, its cgroup's CPU cap) throughout.
   Target: within 10 %.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.formats import SubmissionFormat
from scoring.jail import Budget, Mount, host_capabilities, run_jailed
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool

FMT = SubmissionFormat.from_dict(
    {"id": "EventId", "columns": {"RankOrder": "rank", "Class": {"values": ["s", "b"]}}}
)
METRIC = MetricSpec.from_dict(
    {"name": "ams", "weight": "Weight", "label": "Label", "positive": "s", "b_reg": 10}
)


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def start_cost(runs: int) -> None:
    bare: list[float] = []
    jailed: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "output"
        out.mkdir()
        budget = Budget(cpu_seconds=30, wall_seconds=60, memory_mb=1024, disk_mb=64)
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import numpy"], check=True)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = run_jailed(
                [sys.executable, "-c", "import numpy"],
                mounts=[Mount(out, "/app/output", writable=True)],
                budget=budget,
            )
            jailed.append(time.perf_counter() - t)
            assert result.ok, result.stderr
    print(f"load average {os.getloadavg()[0]:.2f}, {runs} alternating runs each")
    print(
        f"bare python -c 'import numpy'      p50 {p50(bare):7.1f} ms  min {min(bare) * 1000:6.1f}"
    )
    print(
        f"jailed run (bwrap+seccomp+cgroup)  p50 {p50(jailed):7.1f} ms  min {min(jailed) * 1000:6.1f}"
    )
    print(f"ratio p50 {p50(jailed) / p50(bare):.2f} (target <= 2)")


def write_files(root: Path, n: int = 100_000) -> tuple[Path, Path]:
    rng = np.random.default_rng(13)
    ids = np.arange(n)
    label = np.where(rng.random(n) < 0.34, "s", "b")
    weight = np.where(label == "s", rng.lognormal(-6, 0.1, n), rng.lognormal(0, 0.6, n))
    usage = np.where(rng.random(n) < 0.2, "Public", "Private")
    solution = root / "solution.parquet"
    pd.DataFrame({"EventId": ids, "Label": label, "Weight": weight, "Usage": usage}).to_parquet(
        solution
    )
    order = rng.permutation(n) + 1
    submission = root / "submission.csv"
    pd.DataFrame(
        {"EventId": ids, "RankOrder": order, "Class": np.where(order > n * 0.85, "s", "b")}
    ).to_csv(submission, index=False)
    return submission, solution


def scoring_under_code_runs(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        submission, solution = write_files(Path(tmp))
        with SandboxPool(Limits()) as pool:
            for _ in range(3):
                pool.grade(submission, solution, FMT, METRIC, bootstrap=0)

            def measure() -> list[float]:
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    result = pool.grade(submission, solution, FMT, METRIC, bootstrap=0)
                    times.append(time.perf_counter() - t)
                    assert result.status == "scored", result.detail
                return times

            alone = measure()
            stop = threading.Event()
            busy = Budget(cpu_seconds=3600, wall_seconds=3600, memory_mb=512, disk_mb=16)

            def code_runs() -> None:
                while not stop.is_set():
                    run_jailed(
                        [
                            sys.executable,
                            "-c",
                            "import time\nt=time.time()\nwhile time.time()-t<20: pass",
                        ],
                        mounts=[],
                        budget=busy,
                    )

            worker = threading.Thread(target=code_runs, daemon=True)
            worker.start()
            time.sleep(1.0)
            loaded = measure()
            stop.set()
            worker.join(30)
    print(
        f"file scoring p50 alone {p50(alone):.1f} ms, with a code run busy {p50(loaded):.1f} ms, "
        f"ratio {p50(loaded) / p50(alone):.2f} (target <= 1.10); load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--scoring-runs", type=int, default=30)
    args = parser.parse_args()
    caps = host_capabilities()
    print("host:", {k: v for k, v in caps.items() if k != "missing"}, caps["missing"] or "")
    start_cost(args.runs)
    scoring_under_code_runs(args.scoring_runs)


if __name__ == "__main__":
    main()
