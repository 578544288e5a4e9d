from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from scoring.metrics import (
    MetricError,
    MetricSpec,
    UnknownMetric,
    get_metric,
    list_metrics,
    weighted_roc_auc,
)


def reference_ams(labels: list[str], classes: list[str], weights: list[float], b_reg: float) -> float:
    """Straight from DESIGN.md §6: s and b are weights of true s / true b among submitted s."""
    s = 0.0
    b = 0.0
    for label, klass, weight in zip(labels, classes, weights, strict=True):
        if klass == "s":
            if label == "s":
                s += weight
            else:
                b += weight
    return math.sqrt(2 * ((s + b + b_reg) * math.log(1 + s / (b + b_reg)) - s))


def metric_value(spec: MetricSpec, solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    return spec.metric.build(solution, submission, spec.resolved_params()).value()


@pytest.mark.parametrize("seed", range(20))
def test_ams_matches_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    labels = rng.choice(["s", "b"], n).tolist()
    classes = rng.choice(["s", "b"], n).tolist()
    weights = rng.exponential(1.0, n).tolist()
    b_reg = float(rng.choice([0.5, 10.0, 3.0]))
    spec = MetricSpec.from_dict({"name": "ams", "b_reg": b_reg})
    solution = pd.DataFrame({"Label": labels, "Weight": weights})
    submission = pd.DataFrame({"Class": classes})
    got = metric_value(spec, solution, submission)
    assert got == pytest.approx(reference_ams(labels, classes, weights, b_reg), rel=1e-12, abs=1e-12)


def test_ams_from_a_score_and_threshold() -> None:
    solution = pd.DataFrame({"Label": ["s", "b", "s", "b"], "Weight": [1.0, 2.0, 3.0, 4.0]})
    submission = pd.DataFrame({"score": [0.9, 0.8, 0.2, 0.5]})
    spec = MetricSpec.from_dict({"name": "ams", "score": "score", "threshold": 0.5})
    expected = reference_ams(["s", "b"], ["s", "s"], [1.0, 2.0], 10.0)
    assert metric_value(spec, solution, submission) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_weighted_roc_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 500))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    # Rounded scores make many ties, which is where AUC implementations disagree.
    score = np.round(rng.normal(y * 0.7, 1.0), int(rng.integers(0, 3)))
    weight = rng.exponential(1.0, n)
    expected = roc_auc_score(y, score, sample_weight=weight)
    assert weighted_roc_auc(y == 1, score, weight) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    spec = MetricSpec.from_dict({"name": "roc_auc", "weight": "w", "label": "y", "score": "p"})
    got = metric_value(spec, pd.DataFrame({"y": y, "w": weight}), pd.DataFrame({"p": score}))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_accuracy_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    truth = rng.choice(["a", "b", "c"], n)
    pred = rng.choice(["a", "b", "c"], n)
    weight = rng.uniform(0, 2, n)
    spec = MetricSpec.from_dict({"name": "accuracy", "label": "t", "weight": "w", "prediction": "p"})
    got = metric_value(spec, pd.DataFrame({"t": truth, "w": weight}), pd.DataFrame({"p": pred}))
    expected = accuracy_score(truth, pred, sample_weight=weight)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_string_labels_need_a_positive_class() -> None:
    spec = MetricSpec.from_dict({"name": "roc_auc", "label": "y", "score": "p"})
    with pytest.raises(MetricError, match="positive"):
        metric_value(spec, pd.DataFrame({"y": ["s", "b"]}), pd.DataFrame({"p": [0.1, 0.2]}))


def test_registry_lists_and_refuses() -> None:
    assert {"ams", "roc_auc", "accuracy", "python"} <= set(list_metrics())
    with pytest.raises(UnknownMetric, match=r"known metrics: .*ams"):
        get_metric("amss")
    with pytest.raises(MetricError, match="no parameter 'bias'"):
        MetricSpec.from_dict({"name": "ams", "bias": 3})


def test_metric_spec_round_trips_and_direction() -> None:
    d = {"name": "ams", "weight": "Weight", "label": "Label", "positive": "s", "b_reg": 10}
    spec = MetricSpec.from_dict(d)
    assert spec.to_dict() == d
    assert spec.higher_is_better is True


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    solution = pd.DataFrame(
        {"Label": rng.choice(["s", "b"], n), "Weight": rng.exponential(1.0, n)}
    )
    submission = pd.DataFrame({"Class": rng.choice(["s", "b"], n)})
    spec = MetricSpec.from_dict({"name": "ams"})
    kernel = spec.metric.build(solution, submission, spec.resolved_params())
    a = kernel.resample(np.random.default_rng(1), 300)
    b = kernel.resample(np.random.default_rng(1), 300)
    np.testing.assert_array_equal(a, b)
    lo, hi = np.quantile(a, [0.025, 0.975])
    assert lo < kernel.value() < hi
    assert a.std() > 0
