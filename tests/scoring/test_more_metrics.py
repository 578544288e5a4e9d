"""Phase-2 metrics against scikit-learn, and TrackML against a from-the-definition loop."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from scoring.metrics import MetricSpec, trackml_score


def value(spec: dict[str, object], solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    metric = MetricSpec.from_dict(spec)
    return metric.metric.build(solution, submission, metric.resolved_params()).value()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("seed", range(15))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 400))
    classes = ["a", "b", "c"][: int(rng.integers(2, 4))]
    truth = rng.choice(classes, n)
    truth[: len(classes)] = classes  # every class present, so sklearn does not warn
    pred = np.where(rng.random(n) < 0.6, truth, rng.choice(classes, n))
    pred[: len(classes)] = classes
    w = rng.exponential(1.0, n)
    sol = pd.DataFrame({"y": truth, "w": w})
    sub = pd.DataFrame({"p": pred})
    common = {"label": "y", "weight": "w", "prediction": "p"}
    assert close(
        value({"name": "balanced_accuracy", **common}, sol, sub),
        balanced_accuracy_score(truth, pred, sample_weight=w),
    )
    assert close(
        value({"name": "mcc", **common}, sol, sub), matthews_corrcoef(truth, pred, sample_weight=w)
    )
    assert close(
        value({"name": "f1", "positive": "a", **common}, sol, sub),
        f1_score(truth == "a", pred == "a", sample_weight=w),
    )


@pytest.mark.parametrize("seed", range(15))
def test_probabilistic_and_regression_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 400))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    prob = rng.random(n)
    w = rng.exponential(1.0, n)
    sol = pd.DataFrame({"y": y, "w": w, "t": rng.normal(50, 3, n)})
    sub = pd.DataFrame({"q": prob, "r": sol["t"] + rng.normal(0, 1, n)})
    assert close(
        value({"name": "log_loss", "label": "y", "weight": "w", "probability": "q"}, sol, sub),
        log_loss(y, prob, sample_weight=w),
    )
    reg = {"label": "t", "weight": "w", "prediction": "r"}
    t, r = sol["t"].to_numpy(), sub["r"].to_numpy()
    assert close(value({"name": "rmse", **reg}, sol, sub),
                 math.sqrt(mean_squared_error(t, r, sample_weight=w)))
    assert close(value({"name": "mae", **reg}, sol, sub), mean_absolute_error(t, r, sample_weight=w))
    assert math.isclose(value({"name": "r2", **reg}, sol, sub), r2_score(t, r, sample_weight=w),
                        rel_tol=1e-11, abs_tol=1e-12)
    skew = pd.DataFrame({"Variant": np.where(y == 1, "skewed", "original"), "w": w})
    assert close(
        value({"name": "anomaly_auc", "weight": "w", "score": "q"}, skew, sub),
        roc_auc_score(y, prob, sample_weight=w),
    )


def reference_trackml(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """Straight from DESIGN.md §6, one event and one track at a time."""
    scores = []
    for _event, hits in truth.groupby("event_id"):
        merged = hits.merge(submission, on="hit_id")
        particle_size = Counter(merged["particle_id"])
        by_track: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for track, particle, weight in zip(
            merged["track_id"], merged["particle_id"], merged["weight"], strict=True
        ):
            by_track[track].append((particle, weight))
        good = 0.0
        for members in by_track.values():
            counts = Counter(p for p, _ in members)
            best = max(counts.values())
            majority = min(p for p, c in counts.items() if c == best)
            if 2 * counts[majority] > len(members) and 2 * counts[majority] > particle_size[majority]:
                good += sum(wt for p, wt in members if p == majority)
        scores.append(good / merged["weight"].sum())
    return sum(scores) / len(scores)


def random_tracking(seed: int, events: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth_parts = []
    sub_parts = []
    next_hit = 0
    for event in range(events):
        n = int(rng.integers(20, 200))
        particle = rng.integers(0, max(2, n // 6), n)  # 0 is noise
        weight = np.where(particle == 0, 0.0, rng.random(n))
        weight /= weight.sum()
        # A noisy reconstruction: mostly the particle, sometimes a random track, with ties.
        track = np.where(rng.random(n) < 0.7, particle, rng.integers(0, n // 4 + 1, n))
        ids = np.arange(next_hit, next_hit + n)
        next_hit += n
        truth_parts.append(pd.DataFrame({"hit_id": ids, "event_id": event,
                                         "particle_id": particle, "weight": weight}))
        sub_parts.append(pd.DataFrame({"hit_id": ids, "track_id": track + 1000 * event}))
    return pd.concat(truth_parts, ignore_index=True), pd.concat(sub_parts, ignore_index=True)


@pytest.mark.parametrize("seed", range(20))
def test_trackml_matches_the_definition(seed: int) -> None:
    truth, sub = random_tracking(seed)
    expected = reference_trackml(truth, sub)
    got = trackml_score(truth["event_id"].to_numpy(), truth["particle_id"].to_numpy(),
                        truth["weight"].to_numpy(), sub["track_id"].to_numpy())
    assert close(got, expected)
    assert close(value({"name": "trackml"}, truth, sub), expected)


def test_trackml_perfect_and_ties() -> None:
    truth = pd.DataFrame({"event_id": 0, "particle_id": [1, 1, 2, 2], "weight": 0.25})
    perfect = pd.DataFrame({"track_id": [9, 9, 8, 8]})
    assert value({"name": "trackml"}, truth, perfect) == 1.0
    # One track of two particles with two hits each: tie goes to particle 1, but 2 is not > 2.
    merged = pd.DataFrame({"track_id": [5, 5, 5, 5]})
    assert value({"name": "trackml"}, truth, merged) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_trackml_with_sparse_ids_and_unsorted_events(seed: int) -> None:
    """Huge particle and track ids (hashed, not offset) and hits not grouped by event."""
    truth, sub = random_tracking(seed, events=4)
    expected = reference_trackml(truth, sub)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(truth))
    particle = truth["particle_id"].to_numpy()
    sparse_particle = np.where(particle == 0, 0, particle * 1_000_003 + (1 << 58))
    sparse_track = sub["track_id"].to_numpy() * 7919 + (1 << 59)
    got = trackml_score(truth["event_id"].to_numpy()[order], sparse_particle[order],
                        truth["weight"].to_numpy()[order], sparse_track[order])
    assert close(got, expected)
