"""Grade one HiggsML-size submission (550,000 rows) through the sandbox; compare to baselines.

    python bench/bench_scoring.py [--runs 30] [--bootstrap 200]

Prints p50/p99 of SandboxPool.grade and, measured in the same run, the floor (pyarrow CSV parse
+ AMS with one boolean mask, in process) and a fresh interpreter per submission.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from scoring.formats import SubmissionFormat
from scoring.metrics import MetricSpec, ams
from scoring.sandbox import SandboxPool

FMT = SubmissionFormat.from_dict(
    {"id": "EventId", "columns": {"RankOrder": "rank", "Class": {"values": ["s", "b"]}}}
)
METRIC = MetricSpec.from_dict({"name": "ams", "weight": "Weight", "label": "Label",
                               "positive": "s", "b_reg": 10})


def write_files(root: Path, n: int = 550_000) -> tuple[Path, Path]:
    rng = np.random.default_rng(2014)
    ids = np.arange(350_000, 350_000 + n)
    label = np.where(rng.random(n) < 0.34, "s", "b")
    weight = np.where(label == "s", rng.lognormal(-6, 0.1, n), rng.lognormal(0, 0.6, n))
    usage = np.where(np.arange(n) < 100_000, "Public", "Private")
    rng.shuffle(usage)
    solution = root / "solution.parquet"
    pd.DataFrame({"EventId": ids, "Label": label, "Weight": weight, "Usage": usage}).to_parquet(
        solution
    )
    score = (label == "s") + rng.normal(0, 0.8, n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(score)] = np.arange(1, n + 1)
    submission = root / "submission.csv"
    pd.DataFrame(
        {"EventId": ids, "RankOrder": rank, "Class": np.where(rank > 0.85 * n, "s", "b")}
    ).to_csv(submission, index=False)
    return solution, submission


def floor(solution: Path, submission: Path) -> float:
    sol = pd.read_parquet(solution)  # loaded once, outside the timing, like the zygote's cache
    label_s = (sol["Label"] == "s").to_numpy()
    w = sol["Weight"].to_numpy()
    public = (sol["Usage"] == "Public").to_numpy()
    started = time.perf_counter()
    table = pacsv.read_csv(submission)
    selected = table.column("Class").to_numpy(zero_copy_only=False) == "s"
    for part in (public, ~public):
        mask = selected & part
        ams(w[mask & label_s].sum(), w[mask & ~label_s].sum())
    return time.perf_counter() - started


def fresh_interpreter(solution: Path, submission: Path) -> float:
    code = (
        "from pathlib import Path; from scoring.grading import grade;"
        "from scoring.formats import SubmissionFormat; from scoring.metrics import MetricSpec;"
        f"r = grade(Path({str(submission)!r}), Path({str(solution)!r}),"
        f" SubmissionFormat.from_dict({FMT.to_dict()!r}), MetricSpec.from_dict({METRIC.to_dict()!r}),"
        " bootstrap=0); assert r.status == 'scored', r"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        solution, submission = write_files(Path(tmp))
        floors = [floor(solution, submission) for _ in range(10)]
        fresh = [fresh_interpreter(solution, submission) for _ in range(5)]
        with SandboxPool() as pool:
            print(f"isolation: {pool.isolation}")
            results = {}
            for bootstrap in (0, args.bootstrap):
                pool.grade(submission, solution, FMT, METRIC, bootstrap=bootstrap)  # warm cache
                times = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    result = pool.grade(submission, solution, FMT, METRIC, bootstrap=bootstrap)
                    times.append(time.perf_counter() - started)
                    assert result.status == "scored", result
                results[bootstrap] = np.array(times)
        f50 = float(np.median(floors))
        fresh50 = float(np.median(fresh))
        print(f"floor (pyarrow parse + AMS in process): p50 {f50 * 1e3:.1f} ms")
        print(f"fresh interpreter per submission (bootstrap 0): p50 {fresh50 * 1e3:.1f} ms")
        for bootstrap, times in results.items():
            p50, p99 = np.percentile(times, [50, 99])
            print(
                f"sandbox, bootstrap={bootstrap}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
                f"x{p50 / f50:.1f} the floor, x{fresh50 / p50:.1f} faster than a fresh interpreter"
            )
        print(f"result: public {result.public:.4f} {result.public_ci}, private {result.private:.4f}")


if __name__ == "__main__":
    main()
