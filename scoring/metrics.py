"""The metric registry: pure functions on numpy arrays, and the specs a bundle names them by.

A bundle writes ``metric: {name: ams, weight: Weight, label: Label, positive: s, b_reg: 10}``;
:meth:`MetricSpec.from_dict` splits that into the registry key and its parameters. Each registered
:class:`Metric` knows its defaults, which solution and submission columns it reads, and how to bind
itself to aligned rows as a :class:`~scoring.resampling.Kernel` (value + bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scoring.resampling import FloatArray, FrequencyKernel, Kernel, SumKernel

BoolArray = NDArray[np.bool_]


class MetricError(ValueError):
    """A metric cannot be computed with the given parameters or data (an organizer-side mistake)."""


class UnknownMetric(KeyError):
    """No metric of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown metric"


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def ams(s: float | FloatArray, b: float | FloatArray, b_reg: float = 10.0) -> Any:
    """HiggsML approximate median significance √(2((s+b+b_r)·ln(1+s/(b+b_r)) - s)).

    Works elementwise on arrays (the bootstrap passes one value per resample).
    """
    s_arr = np.asarray(s, dtype=np.float64)
    bb = np.asarray(b, dtype=np.float64) + b_reg
    radicand = 2.0 * ((s_arr + bb) * np.log1p(s_arr / bb) - s_arr)
    # Rounding can push the radicand a hair below zero when s is ~0.
    out = np.sqrt(np.maximum(radicand, 0.0))
    return float(out) if out.ndim == 0 else out


def weighted_roc_auc(
    positive: BoolArray, score: FloatArray, weight: FloatArray | None = None
) -> float:
    """Area under the ROC curve with sample weights; tied scores count one half.

    Sort once, sum the weights of positives and negatives per distinct score, and add for each
    score group its positive weight times the negative weight strictly below it plus half the
    negative weight tied with it. Same value as the trapezoidal ROC area (scikit-learn).
    """
    n = len(score)
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    s_sorted = np.asarray(score)[order]
    w_sorted = w[order]
    pos_sorted = np.asarray(positive, dtype=bool)[order]
    if n == 0:
        return math.nan
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos_w = np.add.reduceat(np.where(pos_sorted, w_sorted, 0.0), starts)
    neg_w = np.add.reduceat(np.where(pos_sorted, 0.0, w_sorted), starts)
    total_pos = pos_w.sum()
    total_neg = neg_w.sum()
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    below = np.cumsum(neg_w) - neg_w
    return float(np.sum(pos_w * (below + 0.5 * neg_w)) / (total_pos * total_neg))


def accuracy(correct: BoolArray, weight: FloatArray | None = None) -> float:
    """Weighted fraction of correct predictions."""
    w = np.ones(len(correct)) if weight is None else np.asarray(weight, dtype=np.float64)
    total = w.sum()
    return float(np.sum(w[np.asarray(correct, dtype=bool)]) / total) if total > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

Builder = Callable[[pd.DataFrame, pd.DataFrame, Mapping[str, Any]], Kernel]
Columns = Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: how to bind it to rows, and what it reads."""

    name: str
    higher_is_better: bool
    description: str
    defaults: Mapping[str, Any]
    solution_columns: Columns
    submission_columns: Columns
    build: Builder
    #: Parameters documented for the bundle author (name -> meaning).
    parameters: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``params`` over the defaults, refusing names the metric does not know."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise MetricError(
                f"metric {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(sorted(self.parameters)) or 'no parameters'}"
            )
        return {**self.defaults, **params}


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (its name must be new)."""
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; :class:`UnknownMetric` lists the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMetric(
            f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())}"
        ) from None


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class MetricSpec:
    """A metric chosen by a bundle: registry key plus parameters (column names, constants)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricSpec:
        """Read the bundle form ``{name: ams, weight: Weight, ...}``; checks name and parameters."""
        if not isinstance(d, Mapping) or "name" not in d:
            raise MetricError("metric must be a mapping with a 'name', e.g. {name: ams}")
        name = str(d["name"])
        params = {str(k): v for k, v in d.items() if k != "name"}
        get_metric(name).resolve(params)
        return cls(name=name, params=MappingProxyType(params))

    def to_dict(self) -> dict[str, Any]:
        """Write the bundle form read by :meth:`from_dict`."""
        return {"name": self.name, **dict(self.params)}

    @property
    def metric(self) -> Metric:
        """The registered metric this spec names."""
        return get_metric(self.name)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger score ranks higher (a parameter may override it for custom metrics)."""
        override = self.params.get("higher_is_better")
        if override is not None:
            return bool(override)
        return self.metric.higher_is_better

    def resolved_params(self) -> dict[str, Any]:
        """Parameters with the metric's defaults filled in."""
        return self.metric.resolve(self.params)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the builders
# ---------------------------------------------------------------------------------------------


def _column(frame: pd.DataFrame, name: str, where: str) -> pd.Series:
    if name not in frame.columns:
        raise MetricError(f"{where} has no column {name!r} (columns: {', '.join(frame.columns)})")
    return frame[name]


def _weights(solution: pd.DataFrame, params: Mapping[str, Any]) -> FloatArray:
    name = params.get("weight")
    if name is None:
        return np.ones(len(solution))
    w = pd.to_numeric(_column(solution, str(name), "solution"), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise MetricError(f"solution column {name!r} must hold finite, non-negative weights")
    return np.asarray(w, dtype=np.float64)


def _is_positive(labels: pd.Series, positive: Any) -> BoolArray:
    """Which labels equal the positive class (strings compare as strings, numbers as numbers)."""
    if positive is None:
        values = labels.to_numpy()
        if labels.dtype == bool:
            return np.asarray(values, dtype=bool)
        numeric = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if np.all(np.isin(numeric, [0.0, 1.0])):
            return np.asarray(numeric == 1.0, dtype=bool)
        raise MetricError(
            f"label column {labels.name!r} is not 0/1; set the metric parameter 'positive' "
            "to the label value of the positive class"
        )
    if pd.api.types.is_numeric_dtype(labels.dtype) and not pd.api.types.is_bool_dtype(labels):
        try:
            target = float(positive)
        except (TypeError, ValueError):
            raise MetricError(
                f"label column {labels.name!r} is numeric but positive={positive!r} is not"
            ) from None
        return np.asarray(labels.to_numpy(dtype=np.float64, na_value=np.nan) == target, dtype=bool)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        # Compare the few categories, then pick by code: no per-row string comparison.
        hit = np.asarray([str(c) == str(positive) for c in labels.cat.categories], dtype=bool)
        codes = labels.cat.codes.to_numpy()
        return np.asarray(np.where(codes >= 0, hit[np.maximum(codes, 0)], False), dtype=bool)
    return np.asarray(labels.astype(str).to_numpy() == str(positive), dtype=bool)


def _as_float(series: pd.Series, where: str) -> FloatArray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(values)):
        raise MetricError(f"{where} column {series.name!r} must be finite numbers")
    return np.asarray(values, dtype=np.float64)


def _submitted_positive(submission: pd.DataFrame, params: Mapping[str, Any]) -> BoolArray:
    """Rows the submission calls positive: from a class column, or a score above a threshold."""
    score = params.get("score")
    if score is not None:
        threshold = params.get("threshold")
        if threshold is None:
            raise MetricError("a 'score' column needs a 'threshold' (rows above it are positive)")
        values = _as_float(_column(submission, str(score), "submission"), "submission")
        return np.asarray(values > float(threshold), dtype=bool)
    prediction = _column(submission, str(params["prediction"]), "submission")
    return _is_positive(prediction, params.get("positive"))


def _prediction_columns(params: Mapping[str, Any]) -> list[str]:
    if params.get("score") is not None:
        return [str(params["score"])]
    return [str(params["prediction"])]


def _label_weight_columns(params: Mapping[str, Any]) -> list[str]:
    cols = [str(params["label"])]
    if params.get("weight") is not None:
        cols.append(str(params["weight"]))
    return cols


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def _build_ams(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    w = _weights(solution, params)
    truth = _is_positive(_column(solution, str(params["label"]), "solution"), params["positive"])
    selected = _submitted_positive(submission, params)
    b_reg = float(params["b_reg"])
    contributions = np.empty((len(w), 2))
    chosen_w = np.where(selected, w, 0.0)
    contributions[:, 0] = np.where(truth, chosen_w, 0.0)
    contributions[:, 1] = np.where(truth, 0.0, chosen_w)

    def finish(sums: FloatArray) -> FloatArray:
        return np.asarray(ams(sums[:, 0], sums[:, 1], b_reg), dtype=np.float64)

    return SumKernel(contributions, finish)


def _build_roc_auc(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    w = _weights(solution, params)
    truth = _is_positive(_column(solution, str(params["label"]), "solution"), params["positive"])
    score = _as_float(_column(submission, str(params["score"]), "submission"), "submission")
    # Sort once; a resample only changes the per-row multiplicities.
    order = np.argsort(score, kind="stable")
    s_sorted = score[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]]) if len(score) else order
    w_sorted = w[order]
    pos_sorted = truth[order]
    pos_part = np.where(pos_sorted, w_sorted, 0.0)
    neg_part = np.where(pos_sorted, 0.0, w_sorted)

    def compute(freq: FloatArray | None) -> float:
        if len(score) == 0:
            return math.nan
        f = np.ones(len(score)) if freq is None else freq[order]
        pos_w = np.add.reduceat(pos_part * f, starts)
        neg_w = np.add.reduceat(neg_part * f, starts)
        total_pos = pos_w.sum()
        total_neg = neg_w.sum()
        if total_pos <= 0 or total_neg <= 0:
            return math.nan
        below = np.cumsum(neg_w) - neg_w
        return float(np.sum(pos_w * (below + 0.5 * neg_w)) / (total_pos * total_neg))

    return FrequencyKernel(len(score), compute)


def _ratio(sums: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[:, 1] > 0, sums[:, 0] / np.where(sums[:, 1] > 0, sums[:, 1], 1), np.nan)


def _build_accuracy(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    w = _weights(solution, params)
    truth = _column(solution, str(params["label"]), "solution")
    pred = _column(submission, str(params["prediction"]), "submission")
    if pd.api.types.is_numeric_dtype(truth.dtype) and pd.api.types.is_numeric_dtype(pred.dtype):
        correct = truth.to_numpy(dtype=np.float64) == pred.to_numpy(dtype=np.float64)
    else:
        correct = truth.astype(str).to_numpy() == pred.astype(str).to_numpy()
    contributions = np.column_stack([np.where(correct, w, 0.0), w])
    return SumKernel(contributions, _ratio)


_BINARY_PARAMS = {
    "label": "solution column with the true class",
    "positive": "label value of the positive class (default: labels must be 0/1)",
    "weight": "solution column of sample weights (default: all 1)",
}

register(
    Metric(
        name="ams",
        higher_is_better=True,
        description="HiggsML approximate median significance of the rows submitted as positive",
        defaults={
            "weight": "Weight",
            "label": "Label",
            "positive": "s",
            "b_reg": 10.0,
            "prediction": "Class",
            "score": None,
            "threshold": None,
        },
        solution_columns=_label_weight_columns,
        submission_columns=_prediction_columns,
        build=_build_ams,
        parameters={
            **_BINARY_PARAMS,
            "positive": "label and prediction value of signal (default 's')",
            "b_reg": "regularisation term b_r added to the background (default 10)",
            "prediction": "submission class column (default 'Class')",
            "score": "submission score column to threshold instead of a class column",
            "threshold": "rows whose score is strictly above it count as submitted signal",
        },
    )
)

register(
    Metric(
        name="roc_auc",
        higher_is_better=True,
        description="weighted area under the ROC curve of a submitted score (ties count 1/2)",
        defaults={"weight": None, "label": "Label", "positive": None, "score": "score"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["score"])],
        build=_build_roc_auc,
        parameters={**_BINARY_PARAMS, "score": "submission column with the score"},
    )
)

register(
    Metric(
        name="accuracy",
        higher_is_better=True,
        description="weighted fraction of rows whose predicted class equals the label",
        defaults={"weight": None, "label": "Label", "prediction": "prediction"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["prediction"])],
        build=_build_accuracy,
        parameters={
            "label": _BINARY_PARAMS["label"],
            "weight": _BINARY_PARAMS["weight"],
            "prediction": "submission column with the predicted class",
        },
    )
)
