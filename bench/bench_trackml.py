"""TrackML at the Kaggle test set's size: ``podium score`` against trackml-library's loop.

    python bench/bench_trackml.py [--events 125] [--hits 110000] [--dir /tmp/trackml-bench]

Writes (once, then reuses) a hidden solution ``solution.parquet`` (``event_id, hit_id,
particle_id, weight``, sorted by event and hit, as a split writes it) and a Kaggle-format
submission ``submission.csv.gz`` (``event_id,hit_id,track_id``, hit ids restarting at 1 in every
event): 125 events of 110,000 hits, about 10,000 particles each, 10 % noise, weights summing to 1
per event, and a reconstruction that puts 20 % of the hits on a wrong track.

Then, in the same process and on the same data:

* baseline: the trackml-library algorithm (``trackml.score.score_event``: merge truth and
  submission on hit_id, sort by track and particle, walk the hits with ``itertuples`` keeping the
  running majority) looped over the events, on frames already in memory. trackml-library is not
  installable here (the PyPI name ``trackml`` is an unrelated template), so this is an
  independent re-implementation of its published algorithm, written for this benchmark;
* ``scoring.commands.run_score_command`` — what ``podium score`` runs: read both files, infer
  the composite key, validate every row, score, bootstrap the events — timed from the paths;
* pyarrow alone reading the gzipped CSV (the floor an upload cannot go under);
* with ``--sandbox``: the scoring worker's part of an upload — the same file graded by
  ``scoring.sandbox.SandboxPool`` with the worker's default limits (2 GiB, 60 CPU s, 120 s wall)
  and bootstrap (200 public resamples), in a child forked from the zygote that holds the
  prepared solution (the first call loads it; the warm calls are what a submission costs). The
  HTTP upload, the database and the queue add tens of milliseconds (bench/bench_pipeline.py).

Scores must agree to 1e-12 (the sums are taken in another order).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.commands import run_score_command


def make_files(folder: Path, events: int, hits: int, seed: int = 7) -> tuple[Path, Path]:
    """Write the solution and the submission (see the module docstring); reuse them if there."""
    folder.mkdir(parents=True, exist_ok=True)
    solution = folder / f"solution-{events}x{hits}.parquet"
    submission = folder / f"submission-{events}x{hits}.csv.gz"
    if solution.exists() and submission.exists():
        return solution, submission
    rng = np.random.default_rng(seed)
    truth_parts, sub_parts = [], []
    for i in range(events):
        event_id = 1000 + i
        n_particles = hits // 11
        ids = np.sort(rng.choice(np.int64(1) << 60, size=n_particles, replace=False)) + 1
        which = rng.integers(0, n_particles, hits)
        particle = ids[which]
        noise = rng.random(hits) < 0.1
        particle[noise] = 0
        weight = np.where(noise, 0.0, rng.random(hits))
        weight /= weight.sum()
        track = np.where(noise, n_particles, which)
        moved = rng.random(hits) < 0.2
        track[moved] = rng.integers(0, n_particles + 1, int(moved.sum()))
        hit_id = np.arange(1, hits + 1, dtype=np.int64)
        truth_parts.append(pa.table({
            "event_id": np.full(hits, event_id, dtype=np.int64), "hit_id": hit_id,
            "particle_id": particle, "weight": weight,
        }))
        sub_parts.append(pa.table({
            "event_id": np.full(hits, event_id, dtype=np.int64), "hit_id": hit_id,
            "track_id": track.astype(np.int64),
        }))
    pq.write_table(pa.concat_tables(truth_parts), solution)
    with gzip.open(submission, "wb", compresslevel=6) as out:
        pacsv.write_csv(pa.concat_tables(sub_parts), out)
    return solution, submission


def library_score_event(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """trackml-library's score_event, re-implemented: the per-hit loop over sorted tracks."""
    particle_hits = truth["particle_id"].value_counts(sort=False)
    total = truth["weight"].sum()
    merged = truth[["hit_id", "particle_id", "weight"]].merge(
        submission[["hit_id", "track_id"]], on="hit_id", how="left", validate="one_to_one"
    ).drop(columns="hit_id").sort_values(["track_id", "particle_id"])
    score = 0.0

    def close(n_track: int, best: tuple[int, int, float]) -> float:
        particle, n_best, w_best = best
        good = 2 * n_best > n_track and 2 * n_best > particle_hits[particle]
        return w_best / total if good else 0.0

    track = None
    n_track = 0
    current = (0, 0, 0.0)  # particle, hits of it in this track, their weight
    best = (0, 0, 0.0)
    for row in merged.itertuples(index=False):
        if row.track_id != track:
            if track is not None:
                if current[1] > best[1]:
                    best = current
                score += close(n_track, best)
            track, n_track = row.track_id, 0
            current, best = (row.particle_id, 0, 0.0), (0, 0, 0.0)
        n_track += 1
        if row.particle_id != current[0]:
            if current[1] > best[1]:  # strictly more: ties keep the smaller particle id
                best = current
            current = (row.particle_id, 0, 0.0)
        current = (current[0], current[1] + 1, current[2] + row.weight)
    if track is not None:
        if current[1] > best[1]:
            best = current
        score += close(n_track, best)
    return score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=125)
    parser.add_argument("--hits", type=int, default=110_000)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "trackml-bench"))
    parser.add_argument("--sandbox", action="store_true", help="also time the sandboxed grading")
    args = parser.parse_args()
    solution, submission = make_files(Path(args.dir), args.events, args.hits)
    print(f"{args.events} events x {args.hits} hits; submission {submission.stat().st_size / 1e6:.0f} MB "
          "gzipped")

    truth = pq.read_table(solution).to_pandas()
    sub = pacsv.read_csv(submission).to_pandas()
    truths = dict(tuple(truth.groupby("event_id", sort=True)))
    subs = dict(tuple(sub.groupby("event_id", sort=True)))
    started = time.perf_counter()
    reference = [library_score_event(truths[e], subs[e]) for e in sorted(truths)]
    slow = time.perf_counter() - started
    expected = float(np.mean(reference))
    del truth, sub, truths, subs

    started = time.perf_counter()
    table = pacsv.read_csv(submission)
    read = time.perf_counter() - started
    del table

    params = {"event": "event_id", "particle": "particle_id", "weight": "weight",
              "track": "track_id"}
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = run_score_command("trackml", solution, submission, params)
        times.append(time.perf_counter() - started)
    fast = float(np.median(times))
    got = result["public"]
    print(f"trackml-library loop (re-implemented), {args.events} events: {slow:.2f} s, "
          f"score {expected:.15f}")
    print(f"run_score_command (podium score): p50 of 3 {fast:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)}), score {got:.15f}, status {result['status']}")
    print(f"pyarrow read of the gzipped CSV: {read:.2f} s")
    print(f"identical: {abs(got - expected) <= 1e-12}, speed-up x{slow / fast:.1f}")
    assert result["status"] == "scored", result
    assert abs(got - expected) <= 1e-12
    if args.sandbox:
        sandboxed(solution, submission, expected, read)


def sandboxed(solution: Path, submission: Path, expected: float, read: float) -> None:
    from scoring.formats import SubmissionFormat
    from scoring.metrics import MetricSpec
    from scoring.sandbox import Limits, SandboxPool

    fmt = SubmissionFormat.from_dict({"id": ["event_id", "hit_id"], "columns": {"track_id": "int"}})
    metric = MetricSpec.from_dict({"name": "trackml"})
    times = []
    with SandboxPool(Limits(memory_mb=2048, cpu_seconds=60, wall_seconds=120)) as pool:
        for _ in range(4):
            started = time.perf_counter()
            result = pool.grade(submission, solution, fmt, metric, bootstrap=200,
                                bootstrap_private=0)
            times.append(time.perf_counter() - started)
            assert result.status == "scored", result
            assert result.public is not None
            assert abs(result.public - expected) <= 1e-12
    warm = float(np.median(times[1:]))
    print(f"sandboxed grading: first (loads the solution) {times[0]:.2f} s, warm p50 of 3 "
          f"{warm:.2f} s ({', '.join(f'{t:.2f}' for t in times[1:])}); "
          f"x{warm / read:.2f} the pyarrow read")


if __name__ == "__main__":
    main()
