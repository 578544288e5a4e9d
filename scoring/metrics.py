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

from scoring.resampling import CellKernel, FloatArray, FrequencyKernel, Kernel, SumKernel

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
    # Cell 0: submitted signal that is signal (s); cell 1: submitted signal that is background (b).
    cells = np.full(len(selected), -1, dtype=np.int64)
    cells[selected] = ~truth[selected]  # True (background) -> 1, False (signal) -> 0

    def finish(sums: FloatArray) -> FloatArray:
        return np.asarray(ams(sums[:, 0], sums[:, 1], b_reg), dtype=np.float64)

    return CellKernel(cells, w, 2, finish)


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
    cells = np.where(correct, 0, 1).astype(np.int64)

    def finish(sums: FloatArray) -> FloatArray:
        total = sums[:, 0] + sums[:, 1]
        out = np.full(len(total), np.nan)
        np.divide(sums[:, 0], total, out=out, where=total > 0)
        return out

    return CellKernel(cells, w, 2, finish)


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


# ---------------------------------------------------------------------------------------------
# Classification from a confusion matrix
# ---------------------------------------------------------------------------------------------


def _class_codes(truth: pd.Series, pred: pd.Series) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Encode true and predicted classes on one shared set of classes."""
    numeric = pd.api.types.is_numeric_dtype(truth.dtype) and pd.api.types.is_numeric_dtype(
        pred.dtype
    )

    def encode(series: pd.Series) -> tuple[NDArray[np.int64], list[Any]]:
        if isinstance(series.dtype, pd.CategoricalDtype):
            return series.cat.codes.to_numpy().astype(np.int64), [
                str(c) for c in series.cat.categories
            ]
        values = series.to_numpy(dtype=np.float64) if numeric else series.astype(str).to_numpy()
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64), list(uniques)

    t_codes, t_classes = encode(truth)
    p_codes, p_classes = encode(pred)
    classes = sorted(set(t_classes) | set(p_classes), key=str)
    index = {c: i for i, c in enumerate(classes)}
    t_map = np.array([index[c] for c in t_classes], dtype=np.int64)
    p_map = np.array([index[c] for c in p_classes], dtype=np.int64)
    return t_map[t_codes], p_map[p_codes], len(classes)


def _confusion_kernel(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    params: Mapping[str, Any],
    finish: Callable[[FloatArray, int], FloatArray],
) -> Kernel:
    """Rows fall into confusion cells (true x predicted); ``finish`` sees (B, k, k) matrices."""
    w = _weights(solution, params)
    truth = _column(solution, str(params["label"]), "solution")
    pred = _column(submission, str(params["prediction"]), "submission")
    t, p, k = _class_codes(truth, pred)

    def finish_flat(sums: FloatArray) -> FloatArray:
        return finish(sums.reshape(-1, k, k), k)

    return CellKernel((t * k + p).astype(np.int64), w, k * k, finish_flat)


def _balanced_accuracy(matrices: FloatArray, k: int) -> FloatArray:
    totals = matrices.sum(axis=2)
    correct = np.diagonal(matrices, axis1=1, axis2=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(totals > 0, correct / np.where(totals > 0, totals, 1), np.nan)
    present = (totals > 0).sum(axis=1)
    return np.where(present > 0, np.nansum(recall, axis=1) / np.maximum(present, 1), np.nan)


def _mcc(matrices: FloatArray, k: int) -> FloatArray:
    t = matrices.sum(axis=2)
    p = matrices.sum(axis=1)
    c = np.trace(matrices, axis1=1, axis2=2)
    s = matrices.sum(axis=(1, 2))
    cov_ytyp = c * s - np.sum(t * p, axis=1)
    cov_ypyp = s * s - np.sum(p * p, axis=1)
    cov_ytyt = s * s - np.sum(t * t, axis=1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov_ytyp / np.where(denom > 0, denom, 1), 0.0)


def _build_balanced_accuracy(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    return _confusion_kernel(solution, submission, params, _balanced_accuracy)


def _build_mcc(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    return _confusion_kernel(solution, submission, params, _mcc)


def _build_f1(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    w = _weights(solution, params)
    truth = _is_positive(_column(solution, str(params["label"]), "solution"), params["positive"])
    pred = _is_positive(
        _column(submission, str(params["prediction"]), "submission"), params["positive"]
    )
    # Cells: 0 true positive, 1 false positive, 2 false negative (true negatives do not matter).
    cells = np.select([truth & pred, ~truth & pred, truth & ~pred], [0, 1, 2], -1).astype(np.int64)

    def finish(sums: FloatArray) -> FloatArray:
        denom = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
        return np.divide(2 * sums[:, 0], denom, out=np.zeros(len(denom)), where=denom > 0)

    return CellKernel(cells, w, 3, finish)


def _build_log_loss(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    w = _weights(solution, params)
    truth = _is_positive(_column(solution, str(params["label"]), "solution"), params["positive"])
    prob = _as_float(_column(submission, str(params["probability"]), "submission"), "submission")
    eps = np.finfo(np.float64).eps
    prob = np.clip(prob, eps, 1 - eps)
    loss = -np.where(truth, np.log(prob), np.log1p(-prob))
    return SumKernel(np.column_stack([w * loss, w]), _ratio)


# ---------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------


def _regression_inputs(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    w = _weights(solution, params)
    y = _as_float(_column(solution, str(params["label"]), "solution"), "solution")
    pred = _as_float(_column(submission, str(params["prediction"]), "submission"), "submission")
    return y, pred, w


def _build_rmse(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    y, pred, w = _regression_inputs(solution, submission, params)
    contributions = np.column_stack([w * (y - pred) ** 2, w])
    return SumKernel(contributions, lambda s: np.sqrt(_ratio(s)))


def _build_mae(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    y, pred, w = _regression_inputs(solution, submission, params)
    return SumKernel(np.column_stack([w * np.abs(y - pred), w]), _ratio)


def _build_r2(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    y, pred, w = _regression_inputs(solution, submission, params)
    total = w.sum()
    # Centre on the weighted mean so that Σw(y-c)² - (Σw(y-c))²/Σw does not cancel badly.
    centre = float(np.sum(w * y) / total) if total > 0 else 0.0
    yc = y - centre
    contributions = np.column_stack([w * (y - pred) ** 2, w, w * yc, w * yc * yc])

    def finish(sums: FloatArray) -> FloatArray:
        sse, sw, swy, swy2 = sums.T
        with np.errstate(invalid="ignore", divide="ignore"):
            sst = swy2 - np.where(sw > 0, swy * swy / np.where(sw > 0, sw, 1), 0.0)
            r2 = 1.0 - sse / np.where(sst > 0, sst, 1)
        # As scikit-learn: a constant target scores 1 if predicted exactly, else 0.
        return np.where(sst > 0, r2, np.where(sse == 0, 1.0, 0.0))

    return SumKernel(contributions, finish)


# ---------------------------------------------------------------------------------------------
# TrackML
# ---------------------------------------------------------------------------------------------


def _dense_codes(values: NDArray[Any]) -> tuple[NDArray[np.int64], int]:
    """Codes 0..n-1 for ``values`` (equal values, equal codes) and n: the values less their
    minimum when they are whole numbers in a narrow range (no hashing), else a factorization."""
    if values.dtype.kind == "f" and values.size and np.array_equal(values, np.trunc(values)) \
            and np.abs(values).max() < 2.0**53:
        values = values.astype(np.int64)  # track ids read as floats (a format typed "float")
    if values.dtype.kind in "iu" and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 2 * values.size + 16:
            return values.astype(np.int64, copy=False) - lo, hi - lo + 1
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), len(uniques)


def _trackml_event(particle: NDArray[Any], weight: FloatArray, track: NDArray[Any]) -> float:
    """The TrackML score of one event (see :func:`trackml_event_scores`)."""
    total = float(weight.sum())
    if not total > 0:
        return math.nan
    p_code, n_p = _dense_codes(particle)
    t_code, n_t = _dense_codes(track)
    # One group per (track, particle) pair that shares hits.
    key = t_code * n_p + p_code
    g_code, n_g = _dense_codes(key)
    pair = np.zeros(n_g, dtype=np.int64)  # slots no hit uses keep 0: their count is 0
    pair[g_code] = key
    common = np.bincount(g_code, minlength=n_g)
    track_size = np.bincount(t_code, minlength=n_t)[pair // n_p]
    particle_size = np.bincount(p_code, minlength=n_p)[pair % n_p]
    # A track is good when more than half its hits are one particle's and they are more than
    # half that particle's hits. That particle is then the strict majority, so the tie rule
    # (smaller particle id) never changes which tracks count.
    good = (2 * common > track_size) & (2 * common > particle_size)
    if not good.any():
        return 0.0
    shared = np.bincount(g_code, weights=weight, minlength=n_g)
    return float(shared[good].sum()) / total


def trackml_event_scores(
    event: NDArray[Any], particle: NDArray[Any], weight: FloatArray, track: NDArray[Any]
) -> tuple[NDArray[Any], FloatArray]:
    """Per-event TrackML scores (DESIGN.md §6).

    For each (event, track): the majority particle is the one with most hits in the track (ties
    to the smaller particle id); the track is good if more than half its hits are that
    particle's and it holds more than half of that particle's hits in the event. An event's score
    is the weight of the hits shared by good tracks and their particles, divided by the event's
    total weight (1 when weights are normalised per event, as in TrackML). Returns the sorted
    event ids and their scores.

    Events are scored one after the other on their own slices (hits sorted by event, as a split
    solution is): a 110,000-hit event's arrays stay in the CPU cache, which makes the hashing
    three times faster than over all events at once.
    """
    ev = np.asarray(event)
    pa_ = np.asarray(particle)
    w = np.asarray(weight, dtype=np.float64)
    tr = np.asarray(track)
    if ev.size == 0:
        return ev[:0], np.zeros(0)
    if ev.size > 1 and bool((ev[1:] < ev[:-1]).any()):
        order = np.argsort(ev, kind="stable")
        ev, pa_, w, tr = ev[order], pa_[order], w[order], tr[order]
    starts = np.r_[0, np.flatnonzero(ev[1:] != ev[:-1]) + 1]
    ends = np.r_[starts[1:], ev.size]
    scores = np.array(
        [_trackml_event(pa_[a:b], w[a:b], tr[a:b]) for a, b in zip(starts, ends, strict=True)],
        dtype=np.float64,
    )
    return ev[starts], scores


def trackml_score(
    event: NDArray[Any], particle: NDArray[Any], weight: FloatArray, track: NDArray[Any]
) -> float:
    """The TrackML score: per-event scores (:func:`trackml_event_scores`) averaged over events."""
    _, scores = trackml_event_scores(event, particle, weight, track)
    return float(np.mean(scores)) if len(scores) else math.nan


def _build_trackml(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    event_name = params.get("event")
    event = (
        _column(solution, str(event_name), "solution").to_numpy()
        if event_name is not None
        else np.zeros(len(solution), dtype=np.int64)
    )
    particle = _column(solution, str(params["particle"]), "solution").to_numpy()
    weight = _weights(solution, params)
    track = _column(submission, str(params["track"]), "submission").to_numpy()
    _, scores = trackml_event_scores(event, particle, weight, track)
    # Events are the unit of resampling: the score is their mean.
    return SumKernel(np.column_stack([scores, np.ones(len(scores))]), _ratio)


def _build_anomaly_auc(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    return _build_roc_auc(solution, submission, params)


register(
    Metric(
        name="balanced_accuracy",
        higher_is_better=True,
        description="mean over true classes of the weighted recall",
        defaults={"weight": None, "label": "Label", "prediction": "prediction"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["prediction"])],
        build=_build_balanced_accuracy,
        parameters={
            "label": _BINARY_PARAMS["label"],
            "weight": _BINARY_PARAMS["weight"],
            "prediction": "submission column with the predicted class",
        },
    )
)

register(
    Metric(
        name="mcc",
        higher_is_better=True,
        description="Matthews correlation coefficient (multiclass, weighted)",
        defaults={"weight": None, "label": "Label", "prediction": "prediction"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["prediction"])],
        build=_build_mcc,
        parameters={
            "label": _BINARY_PARAMS["label"],
            "weight": _BINARY_PARAMS["weight"],
            "prediction": "submission column with the predicted class",
        },
    )
)

register(
    Metric(
        name="f1",
        higher_is_better=True,
        description="F1 score of the positive class (weighted)",
        defaults={"weight": None, "label": "Label", "positive": None, "prediction": "prediction"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["prediction"])],
        build=_build_f1,
        parameters={
            **_BINARY_PARAMS,
            "prediction": "submission column with the predicted class",
        },
    )
)

register(
    Metric(
        name="log_loss",
        higher_is_better=False,
        description="binary cross-entropy of the submitted probability of the positive class",
        defaults={"weight": None, "label": "Label", "positive": None, "probability": "probability"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["probability"])],
        build=_build_log_loss,
        parameters={
            **_BINARY_PARAMS,
            "probability": "submission column with P(positive), clipped to [eps, 1-eps]",
        },
    )
)

_REGRESSION_PARAMS = {
    "label": "solution column with the true value",
    "weight": _BINARY_PARAMS["weight"],
    "prediction": "submission column with the predicted value",
}
for _name, _build, _better, _text in (
    ("rmse", _build_rmse, False, "root mean squared error (weighted)"),
    ("mae", _build_mae, False, "mean absolute error (weighted)"),
    ("r2", _build_r2, True, "coefficient of determination R² (weighted)"),
):
    register(
        Metric(
            name=_name,
            higher_is_better=_better,
            description=_text,
            defaults={"weight": None, "label": "target", "prediction": "prediction"},
            solution_columns=_label_weight_columns,
            submission_columns=lambda p: [str(p["prediction"])],
            build=_build,
            parameters=_REGRESSION_PARAMS,
        )
    )

register(
    Metric(
        name="trackml",
        higher_is_better=True,
        description="TrackML score: weight of hits in correctly reconstructed tracks, averaged "
        "over events (double-majority rule)",
        defaults={
            "event": "event_id",
            "particle": "particle_id",
            "weight": "weight",
            "track": "track_id",
        },
        solution_columns=lambda p: [
            str(c) for c in (p.get("event"), p["particle"], p.get("weight")) if c is not None
        ],
        submission_columns=lambda p: [str(p["track"])],
        build=_build_trackml,
        parameters={
            "event": "solution column with the event id (omit for a single event)",
            "particle": "solution column with the true particle id (0 = noise)",
            "weight": "solution column with the hit weight",
            "track": "submission column with the track id assigned to each hit",
        },
    )
)

register(
    Metric(
        name="anomaly_auc",
        higher_is_better=True,
        description="ROC AUC of a submitted anomaly score separating skewed from original rows",
        defaults={"weight": None, "label": "Variant", "positive": "skewed", "score": "score"},
        solution_columns=_label_weight_columns,
        submission_columns=lambda p: [str(p["score"])],
        build=_build_anomaly_auc,
        parameters={
            "label": "solution column saying which rows are original and which skewed",
            "positive": "value of that column on skewed rows (default 'skewed')",
            "weight": _BINARY_PARAMS["weight"],
            "score": "submission column with the anomaly score (higher = more anomalous)",
        },
    )
)
