"""TrackML score of a 120,000-hit event: vectorized registry metric vs a straightforward pandas
implementation of the same definition (merge, sort by track and particle, Python loop).

    python bench/bench_trackml.py [--hits 120000] [--runs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from scoring.metrics import trackml_score


def make_event(hits: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    particles = hits // 12
    particle = rng.integers(1, particles + 1, hits)
    particle[rng.random(hits) < 0.1] = 0  # noise hits
    weight = np.where(particle == 0, 0.0, rng.random(hits))
    weight /= weight.sum()
    # A realistic reconstruction: mostly right, some hits moved to neighbouring or junk tracks.
    track = particle.copy()
    moved = rng.random(hits) < 0.2
    track[moved] = rng.integers(1, particles + 1, moved.sum())
    hit_id = np.arange(1, hits + 1)
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": particle, "weight": weight})
    submission = pd.DataFrame({"hit_id": rng.permutation(hit_id)})
    submission["track_id"] = track[submission["hit_id"].to_numpy() - 1]
    return truth, submission


def pandas_reference(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    merged = truth.merge(submission, on="hit_id")
    particle_size = merged.groupby("particle_id").size()
    merged = merged.sort_values(["track_id", "particle_id"])
    score = 0.0
    for _, hits in merged.groupby("track_id", sort=False):
        counts = hits.groupby("particle_id").agg(n=("hit_id", "size"), w=("weight", "sum"))
        best = counts["n"].max()
        majority = counts.index[counts["n"] == best].min()
        n_common = counts.loc[majority, "n"]
        if 2 * n_common > len(hits) and 2 * n_common > particle_size[majority]:
            score += counts.loc[majority, "w"]
    return float(score / merged["weight"].sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=120_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    truth, submission = make_event(args.hits)
    started = time.perf_counter()
    expected = pandas_reference(truth, submission)
    slow = time.perf_counter() - started
    fast_times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        merged = truth.merge(submission, on="hit_id")
        got = trackml_score(np.zeros(len(merged), dtype=np.int64), merged["particle_id"].to_numpy(),
                            merged["weight"].to_numpy(), merged["track_id"].to_numpy())
        fast_times.append(time.perf_counter() - started)
    fast = float(np.median(fast_times))
    print(f"pandas reference (one run): {slow * 1e3:.0f} ms, score {expected:.15f}")
    print(f"scoring.metrics.trackml_score: p50 {fast * 1e3:.1f} ms, score {got:.15f}")
    print(f"identical: {abs(got - expected) <= 1e-12}, speed-up x{slow / fast:.0f}")
    assert abs(got - expected) <= 1e-12


if __name__ == "__main__":
    main()
