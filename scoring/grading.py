"""Grading one submission: validate it, score Public and Private rows, add bootstrap intervals.

:func:`grade` runs in the calling process (trusted metrics, notebooks, the ``podium score``
command). The scoring worker calls :class:`scoring.sandbox.SandboxPool`, which runs the same
function in an isolated child process.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.formats import SubmissionFormat
from scoring.metrics import MetricError, MetricSpec
from scoring.resampling import Kernel, percentile_interval
from scoring.validation import (
    DEFAULT_MAX_BYTES,
    SolutionIds,
    Source,
    SubmissionInvalid,
    validate_submission,
)

__all__ = [
    "GradingResult",
    "PairedComparison",
    "PreparedSolution",
    "SolutionError",
    "SubmissionInvalid",
    "grade",
    "load_solution",
    "paired_bootstrap",
    "score_subsets",
    "validate_submission",
]

#: Column of the solution that says which leaderboard a row belongs to (Kaggle convention).
USAGE_COLUMN = "Usage"
PUBLIC = "Public"
PRIVATE = "Private"


class SolutionError(ValueError):
    """The hidden solution file does not fit the format or the metric (an organizer mistake)."""


@dataclass
class GradingResult:
    """The outcome of grading one submission, as stored by the scoring worker.

    ``status`` is ``"scored"``, ``"invalid"`` (``message`` tells the participant what to fix) or
    ``"error"`` (``message`` is plain, ``detail`` holds the organizer-facing trace).
    """

    status: str
    public: float | None = None
    private: float | None = None
    public_ci: tuple[float, float] | None = None
    private_ci: tuple[float, float] | None = None
    message: str = ""
    detail: str = ""
    rows: int = 0
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (intervals as two-element lists, NaN scores as ``None``)."""
        d = asdict(self)
        for key in ("public", "private"):
            if d[key] is not None and not math.isfinite(d[key]):
                d[key] = None
        for key in ("public_ci", "private_ci"):
            if d[key] is not None:
                d[key] = [float(d[key][0]), float(d[key][1])]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GradingResult:
        """Inverse of :meth:`to_dict`."""

        def interval(value: Any) -> tuple[float, float] | None:
            return None if value is None else (float(value[0]), float(value[1]))

        def number(value: Any) -> float | None:
            return None if value is None else float(value)

        return cls(
            status=str(d["status"]),
            public=number(d.get("public")),
            private=number(d.get("private")),
            public_ci=interval(d.get("public_ci")),
            private_ci=interval(d.get("private_ci")),
            message=str(d.get("message", "")),
            detail=str(d.get("detail", "")),
            rows=int(d.get("rows", 0)),
            duration_ms=float(d.get("duration_ms", 0.0)),
        )


def load_solution(
    path: Path | BinaryIO | pa.Table, fmt: SubmissionFormat, metric: MetricSpec
) -> pd.DataFrame:
    """Read the hidden solution (Parquet, or a table already read) and check it has what the
    format and metric need.

    String columns come back as pandas Categoricals: label comparisons then work on small
    integer codes instead of Python strings.
    """
    params = metric.resolved_params()
    needed = list(dict.fromkeys([*fmt.key, *metric.metric.solution_columns(params)]))
    try:
        schema = path.schema if isinstance(path, pa.Table) else pq.read_schema(path)
        if hasattr(path, "seek"):
            path.seek(0)
        # Organizer metrics see every column; built-in ones read only what they need.
        wanted = None if metric.name == "python" else [
            c for c in dict.fromkeys([*needed, USAGE_COLUMN]) if c in schema.names
        ]
        if isinstance(path, pa.Table):
            table = path if wanted is None else path.select(wanted)
            path = Path("(table)")  # only named in the messages below
        else:
            table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise SolutionError(f"cannot read solution file {path}: {exc}") from exc
    absent = [c for c in needed if c not in table.column_names]
    if absent:
        raise SolutionError(
            f"solution {path} lacks column(s) {', '.join(absent)} needed by the format/metric "
            f"(it has {', '.join(table.column_names)})"
        )
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = col.dictionary_encode()
        columns[name] = col.to_pandas()
    frame = pd.DataFrame(columns, copy=False)
    if fmt.composite:
        keys = frame[[k for k in fmt.key if frame[k].dtype.kind not in "iu"]]
        if keys.shape[1] and keys.isna().to_numpy().any():
            raise SolutionError(f"solution {path}: key columns {list(fmt.key)} have missing keys")
        # Repeated keys are found when the key lookup is built (solution_ids).
    elif not _ids_unique(frame[fmt.id_column]):
        raise SolutionError(f"solution {path}: id column {fmt.id_column!r} has missing or repeated ids")
    if USAGE_COLUMN in frame.columns:
        usage = frame[USAGE_COLUMN]
        present = (
            {str(c) for c in usage.cat.categories[np.unique(usage.cat.codes[usage.cat.codes >= 0])]}
            if isinstance(usage.dtype, pd.CategoricalDtype)
            else {str(v) for v in usage.unique()}
        )
        unknown = sorted(present - {PUBLIC, PRIVATE}) + (["<missing>"] if usage.isna().any() else [])
        if unknown:
            raise SolutionError(
                f"solution {path}: column {USAGE_COLUMN!r} may hold only {PUBLIC!r} and "
                f"{PRIVATE!r}, found {unknown}"
            )
    return frame


def solution_ids(frame: pd.DataFrame, fmt: SubmissionFormat) -> SolutionIds:
    """The lookup of the solution's keys: its id column, or its key columns for a composite key."""
    if fmt.composite:
        ids = SolutionIds(frame[list(fmt.key)])
        if not ids.unique():
            raise SolutionError(f"solution: key columns {list(fmt.key)} have repeated keys")
        return ids
    return SolutionIds(frame[fmt.id_column].to_numpy())


@dataclass(frozen=True)
class PreparedSolution:
    """A loaded solution with the id lookup every submission graded against it needs.

    Built once (:meth:`of`) by a process that grades many submissions against the same
    solution: the sandbox zygote keeps one per cached solution, so its forked children neither
    re-read the file nor rebuild the lookup.
    """

    frame: pd.DataFrame
    ids: SolutionIds
    #: The Public / Private rows of the columns a metric reads, keyed by those columns
    #: (:meth:`split`): the zygote fills it before forking, so children inherit the split.
    splits: dict[tuple[str, ...], list[_SolutionPart]] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pd.DataFrame, fmt: SubmissionFormat) -> PreparedSolution:
        """Wrap a frame returned by :func:`load_solution`."""
        ids = solution_ids(frame, fmt)
        ids.ids  # noqa: B018 - packs a composite key and builds its table now, before forking
        return cls(frame, ids)

    def split(self, metric: MetricSpec) -> list[_SolutionPart]:
        """The solution's rows per usage subset for ``metric`` (computed once, then kept)."""
        columns = _solution_columns(self.frame, metric)
        if columns is None:
            # An organizer's metric gets fresh frames: whatever it does to them stays its own.
            return _split_solution(self.frame)
        parts = self.splits.get(tuple(columns))
        if parts is None:
            parts = _split_solution(self.frame[columns])
            self.splits[tuple(columns)] = parts
        return parts


@dataclass(frozen=True)
class _SolutionPart:
    """One usage subset of a solution: its key, stream index, row mask and rows."""

    key: str
    index: int
    mask: np.ndarray[Any, np.dtype[np.bool_]] | None  # None: every row
    rows: pd.DataFrame


def _solution_columns(solution: pd.DataFrame, metric: MetricSpec) -> list[str] | None:
    """The solution columns a built-in metric reads (plus Usage); ``None``: all (organizer's)."""
    if metric.name == "python":
        return None
    params = metric.resolved_params()
    return [c for c in dict.fromkeys(metric.metric.solution_columns(params)) if c in solution] + (
        [USAGE_COLUMN] if USAGE_COLUMN in solution.columns else []
    )


def _split_solution(solution: pd.DataFrame) -> list[_SolutionPart]:
    parts = []
    for index, (key, mask) in enumerate(_usage_masks(solution).items()):
        if not mask.any():
            continue
        if mask.all():
            parts.append(_SolutionPart(key, index, None, solution))
        else:
            parts.append(_SolutionPart(key, index, mask, solution.loc[mask].reset_index(drop=True)))
    return parts


def _ids_unique(ids: pd.Series) -> bool:
    values = ids.to_numpy()
    if values.dtype.kind in "iu" and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * values.size + 1024:
            return bool(np.bincount(values - lo).max() <= 1)
    return bool(not ids.isna().any() and ids.is_unique)


def _usage_masks(solution: pd.DataFrame) -> dict[str, np.ndarray[Any, np.dtype[np.bool_]]]:
    if USAGE_COLUMN not in solution.columns:
        return {"public": np.ones(len(solution), dtype=bool)}
    usage = solution[USAGE_COLUMN]
    if isinstance(usage.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in usage.cat.categories]
        codes = usage.cat.codes.to_numpy()
        masks = {}
        for key, label in (("public", PUBLIC), ("private", PRIVATE)):
            masks[key] = (
                codes == categories.index(label) if label in categories
                else np.zeros(len(usage), dtype=bool)
            )
        return masks
    text = usage.astype(str).to_numpy()
    return {"public": text == PUBLIC, "private": text == PRIVATE}


def score_subsets(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    metric: MetricSpec,
    *,
    bootstrap: int = 200,
    bootstrap_private: int | None = None,
    seed: int = 0,
) -> dict[str, tuple[float, tuple[float, float] | None]]:
    """Metric value and bootstrap interval on the Public and Private rows (aligned frames).

    ``bootstrap`` resamples the Public rows (and the Private ones too unless
    ``bootstrap_private`` says otherwise); 0 gives no interval. Each subset draws from its own
    generator seeded with ``(seed, subset)``, so one subset's interval does not depend on how
    many resamples the other one got.
    """
    subsets = _subset_kernels(solution, submission, metric)
    values = {key: kernel.value() for key, _, kernel in subsets}
    return _with_intervals(subsets, values, bootstrap, bootstrap_private, seed)


def _with_intervals(
    subsets: list[tuple[str, int, Kernel]],
    values: dict[str, float],
    bootstrap: int,
    bootstrap_private: int | None,
    seed: int,
) -> dict[str, tuple[float, tuple[float, float] | None]]:
    """Add each subset's bootstrap interval to its value (see :func:`score_subsets`)."""
    resamples = {
        "public": bootstrap,
        "private": bootstrap if bootstrap_private is None else bootstrap_private,
    }
    out: dict[str, tuple[float, tuple[float, float] | None]] = {}
    for key, index, kernel in subsets:
        interval = None
        if resamples[key] > 0:
            rng = np.random.default_rng([seed, index])
            interval = percentile_interval(kernel.resample(rng, resamples[key]))
        out[key] = (values[key], interval)
    return out


def _subset_kernels(
    solution: pd.DataFrame | PreparedSolution, submission: pd.DataFrame, metric: MetricSpec
) -> list[tuple[str, int, Kernel]]:
    """The metric bound to the Public and the Private rows: ``(subset, stream index, kernel)``.

    The stream index seeds the subset's bootstrap (it is the subset's place among the usage
    masks, whether or not the other subset has rows). A :class:`PreparedSolution` brings its
    split along; a bare frame is split here.
    """
    params = metric.resolved_params()
    if isinstance(solution, PreparedSolution):
        parts = solution.split(metric)
    else:
        # Split only the columns the metric reads; the others would be copied for nothing.
        columns = _solution_columns(solution, metric)
        parts = _split_solution(solution if columns is None else solution[columns])
    if metric.name != "python":
        submission = submission[
            [c for c in dict.fromkeys(metric.metric.submission_columns(params)) if c in submission]
        ]
    out: list[tuple[str, int, Kernel]] = []
    for part in parts:
        sub_part = (
            submission if part.mask is None else submission.loc[part.mask].reset_index(drop=True)
        )
        out.append((part.key, part.index, metric.metric.build(part.rows, sub_part, params)))
    return out


def _as_source(value: Any) -> Any:
    return Path(value) if isinstance(value, str | Path) else value


def grade(
    submission_path: Source,
    solution_path: Path | BinaryIO | pa.Table | pd.DataFrame | PreparedSolution,
    fmt: SubmissionFormat,
    metric: MetricSpec,
    *,
    bootstrap: int = 200,
    bootstrap_private: int | None = None,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_score: Callable[[GradingResult], None] | None = None,
) -> GradingResult:
    """Validate and score one submission in this process; never raises for bad input.

    ``bootstrap`` is the number of resamples for the Public interval and, unless
    ``bootstrap_private`` is given, for the Private one (the scoring worker passes
    ``bootstrap_private=0``: the Private interval is computed when the board is revealed).

    A participant's mistake gives ``status="invalid"`` with a message saying what to change; a
    problem with the solution or the metric gives ``status="error"`` with the trace in
    ``detail``. ``solution_path`` may also be a frame already returned by
    :func:`load_solution`, or a :class:`PreparedSolution` (the sandbox zygote caches them).

    ``on_score``, when given and an interval is asked for, is called with the scores (a
    ``"scored"`` result without intervals) as soon as they are known, before the resampling
    starts: the scoring worker stores the score at once and the interval a moment later. The
    returned result is the same as without it.
    """
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000.0

    try:
        solution: pd.DataFrame | PreparedSolution
        if isinstance(solution_path, PreparedSolution):
            solution, ids = solution_path, solution_path.ids
        else:
            solution = (
                solution_path
                if isinstance(solution_path, pd.DataFrame)
                else load_solution(_as_source(solution_path), fmt, metric)
            )
            ids = solution_ids(solution, fmt)
        submission = validate_submission(
            _as_source(submission_path), fmt, ids, max_bytes=max_bytes
        )
        subsets = _subset_kernels(solution, submission, metric)
        values = {key: kernel.value() for key, _, kernel in subsets}
        private_resamples = bootstrap if bootstrap_private is None else bootstrap_private
        wants_interval = bootstrap > 0 or private_resamples > 0
        if on_score is not None and wants_interval and subsets:
            on_score(
                GradingResult(
                    status="scored",
                    public=values.get("public"),
                    private=values.get("private"),
                    rows=len(submission),
                    duration_ms=elapsed(),
                )
            )
        scores = _with_intervals(subsets, values, bootstrap, bootstrap_private, seed)
    except SubmissionInvalid as exc:
        return GradingResult(status="invalid", message=exc.message, duration_ms=elapsed())
    except (SolutionError, MetricError) as exc:
        return GradingResult(
            status="error",
            message="The submission could not be scored because of a problem on the organizers' "
            "side; they have been told.",
            detail=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            duration_ms=elapsed(),
        )
    except Exception as exc:
        return GradingResult(
            status="error",
            message="The submission could not be scored because of an internal error; "
            "the organizers have been told.",
            detail=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            duration_ms=elapsed(),
        )
    public = scores.get("public")
    private = scores.get("private")
    return GradingResult(
        status="scored",
        public=public[0] if public else None,
        private=private[0] if private else None,
        public_ci=public[1] if public else None,
        private_ci=private[1] if private else None,
        rows=len(submission),
        duration_ms=elapsed(),
    )


@dataclass(frozen=True)
class PairedComparison:
    """Submission A against submission B on the same bootstrap resamples of one subset.

    ``difference`` is ``score(A) - score(B)``; ``interval`` its bootstrap interval;
    ``p_a_better`` the fraction of resamples in which A ranks above B (taking the metric's
    direction into account; ties count one half). ``tied`` is true when the interval contains 0:
    the leaderboard should then show the two ranks as statistically tied.
    """

    score_a: float
    score_b: float
    difference: float
    interval: tuple[float, float] | None
    p_a_better: float
    tied: bool
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        if d["interval"] is not None:
            d["interval"] = list(d["interval"])
        return d


def paired_bootstrap(
    submission_a: Source,
    submission_b: Source,
    solution: Path | BinaryIO | pd.DataFrame,
    fmt: SubmissionFormat,
    metric: MetricSpec,
    *,
    usage: str = PUBLIC,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Compare two submissions on identical resamples of the ``usage`` rows (Public/Private).

    Both files are validated (:class:`SubmissionInvalid` if either is not valid). Costs about
    ``resamples`` passes over the subset's rows; run it for neighbouring leaderboard entries,
    not for every pair. Runs in this process: use it with built-in metrics, not organizer code.
    """
    frame = solution if isinstance(solution, pd.DataFrame) else load_solution(
        _as_source(solution), fmt, metric
    )
    ids = solution_ids(frame, fmt)
    params = metric.resolved_params()
    mask = (
        frame[USAGE_COLUMN].astype(str).to_numpy() == usage
        if USAGE_COLUMN in frame.columns
        else np.ones(len(frame), dtype=bool)
    )
    part = frame.loc[mask].reset_index(drop=True)
    kernels = []
    for path in (submission_a, submission_b):
        sub = validate_submission(_as_source(path), fmt, ids).loc[mask].reset_index(drop=True)
        kernels.append(metric.metric.build(part, sub, params))
    a, b = (k.value() for k in kernels)
    rng = np.random.default_rng(seed)
    n = len(part)
    diffs = np.empty(resamples)
    for i in range(resamples):
        freq = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        diffs[i] = kernels[0].weighted(freq) - kernels[1].weighted(freq)
    sign = 1.0 if metric.higher_is_better else -1.0
    better = np.mean(np.where(sign * diffs > 0, 1.0, np.where(diffs == 0, 0.5, 0.0)))
    interval = percentile_interval(diffs, level)
    tied = interval is None or interval[0] <= 0.0 <= interval[1]
    return PairedComparison(
        score_a=a,
        score_b=b,
        difference=a - b,
        interval=interval,
        p_a_better=float(better) if resamples else math.nan,
        tied=tied,
        resamples=resamples,
    )
