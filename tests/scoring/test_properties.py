"""Invariants every metric must keep, checked by hypothesis on random small tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.grading import paired_bootstrap
from scoring.metrics import MetricSpec
from tests.scoring.conftest import AMS, HIGGS_FORMAT, make_higgs

CLASSIFIERS = ["ams", "accuracy", "balanced_accuracy", "mcc", "f1", "roc_auc", "log_loss"]
REGRESSORS = ["rmse", "mae", "r2"]


def spec_for(name: str) -> MetricSpec:
    if name in ("roc_auc",):
        return MetricSpec.from_dict({"name": name, "label": "y", "weight": "w", "score": "q",
                                     "positive": "s"})
    if name == "log_loss":
        return MetricSpec.from_dict({"name": name, "label": "y", "weight": "w",
                                     "probability": "q", "positive": "s"})
    if name == "ams":
        return MetricSpec.from_dict({"name": name, "label": "y", "weight": "w",
                                     "prediction": "c"})
    if name == "f1":
        return MetricSpec.from_dict({"name": name, "label": "y", "weight": "w",
                                     "prediction": "c", "positive": "s"})
    if name in REGRESSORS:
        return MetricSpec.from_dict({"name": name, "label": "t", "weight": "w", "prediction": "q"})
    return MetricSpec.from_dict({"name": name, "label": "y", "weight": "w", "prediction": "c"})


def evaluate(name: str, sol: pd.DataFrame, sub: pd.DataFrame) -> float:
    spec = spec_for(name)
    return spec.metric.build(sol, sub, spec.resolved_params()).value()


@st.composite
def tables(draw: st.DrawFn, min_size: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(min_size, 40))
    labels = draw(st.lists(st.sampled_from(["s", "b"]), min_size=n, max_size=n))
    classes = draw(st.lists(st.sampled_from(["s", "b"]), min_size=n, max_size=n))
    # Few distinct values: ties in scores and weights are the point.
    scores = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n))
    weights = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.5]), min_size=n, max_size=n))
    targets = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n))
    sol = pd.DataFrame({"y": labels, "w": weights, "t": targets})
    sub = pd.DataFrame({"c": classes, "q": scores})
    return sol, sub


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("name", CLASSIFIERS + REGRESSORS)
@settings(max_examples=40, deadline=None)
@given(data=tables(), seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter(name: str, data: tuple[pd.DataFrame, pd.DataFrame],
                                   seed: int) -> None:
    sol, sub = data
    perm = np.random.default_rng(seed).permutation(len(sol))
    shuffled = evaluate(name, sol.iloc[perm].reset_index(drop=True),
                        sub.iloc[perm].reset_index(drop=True))
    assert same(evaluate(name, sol, sub), shuffled)


@pytest.mark.parametrize("name", CLASSIFIERS + REGRESSORS)
@settings(max_examples=40, deadline=None)
@given(data=tables())
def test_duplicated_rows_equal_doubled_weights(name: str,
                                               data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sol, sub = data
    doubled = sol.assign(w=sol["w"] * 2)
    twice = evaluate(name, pd.concat([sol, sol], ignore_index=True),
                     pd.concat([sub, sub], ignore_index=True))
    assert same(evaluate(name, doubled, sub), twice)


@settings(max_examples=40, deadline=None)
@given(data=tables())
def test_all_one_class(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sol, sub = data
    only_b = sol.assign(y="b")
    assert math.isnan(evaluate("roc_auc", only_b, sub))  # AUC needs both classes
    # AMS with no true signal: s = 0, so the significance is 0 whatever was selected.
    assert evaluate("ams", only_b, sub) == 0.0
    none_selected = sub.assign(c="b")
    assert evaluate("ams", sol, none_selected) == 0.0
    assert evaluate("accuracy", only_b, none_selected) == 1.0


@settings(max_examples=40, deadline=None)
@given(data=tables(min_size=2))
def test_all_tied_scores_give_half_auc(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sol, sub = data
    sol = sol.assign(y=["s", "b", *sol["y"].iloc[2:]])
    assert evaluate("roc_auc", sol, sub.assign(q=0.3)) == pytest.approx(0.5, abs=1e-12)


def test_paired_bootstrap_separates_clear_winners_and_ties(tmp_path: Path) -> None:
    solution, good = make_higgs(4000, 1)
    sol_path = tmp_path / "solution.parquet"
    solution.to_parquet(sol_path)
    good_path = tmp_path / "good.csv"
    good.to_csv(good_path, index=False)
    bad = good.assign(Class=np.random.default_rng(2).choice(["s", "b"], len(good), p=[0.2, 0.8]))
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    clear = paired_bootstrap(good_path, bad_path, sol_path, HIGGS_FORMAT, AMS, resamples=200)
    assert clear.difference > 0
    assert not clear.tied
    assert clear.p_a_better > 0.99
    itself = paired_bootstrap(good_path, good_path, sol_path, HIGGS_FORMAT, AMS, resamples=50)
    assert itself.difference == 0.0
    assert itself.tied
    assert itself.p_a_better == 0.5
