"""Organizer-defined metrics: a Python file with ``score(solution, submission) -> float | dict``.

The bundle names it as ``metric: {name: python, file: metric.py, higher_is_better: true}``.
``solution`` and ``submission`` are pandas DataFrames with the same rows in the same order (one
leaderboard subset at a time: Public, then Private); ``solution`` has every column of the hidden
solution file, ``submission`` the id column and the format's prediction columns. ``score`` returns
a number, or a mapping whose ``"score"`` entry is the number.

The code is untrusted as far as the platform is concerned: the scoring worker runs it only inside
:class:`scoring.sandbox.SandboxPool` (no network, no files but the two it is given, rlimits).
The sandbox reads the file before entering the jail and passes its text as the ``source``
parameter, so the file itself need not be visible inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.metrics import Metric, MetricError, MetricSpec, register
from scoring.resampling import FloatArray, FrequencyKernel, Kernel

ScoreFunction = Callable[[pd.DataFrame, pd.DataFrame], Any]


def load_source(spec: MetricSpec) -> MetricSpec:
    """Return ``spec`` with the metric file's text in ``source`` (for running inside a jail)."""
    if spec.name != "python" or spec.params.get("source") is not None:
        return spec
    path = spec.params.get("file")
    if path is None:
        raise MetricError("metric 'python' needs a 'file' naming the organizer's metric file")
    try:
        text = Path(str(path)).read_text(encoding="utf-8")
    except OSError as exc:
        raise MetricError(f"cannot read metric file {path}: {exc.strerror}") from exc
    return MetricSpec(name=spec.name, params={**spec.params, "source": text})


def compile_score(source: str, filename: str = "metric.py") -> ScoreFunction:
    """Execute the organizer's file and return its ``score`` function."""
    namespace: dict[str, Any] = {"__name__": "podium_organizer_metric"}
    # Running organizer code is this module's purpose; callers keep it inside the sandbox.
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    function = namespace.get("score")
    if not callable(function):
        raise MetricError(f"{filename} must define a function score(solution, submission)")
    return function  # type: ignore[no-any-return]


def _as_number(value: Any, filename: str) -> float:
    if isinstance(value, Mapping):
        if "score" not in value:
            raise MetricError(f"{filename}: score() returned a mapping without a 'score' entry")
        value = value["score"]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetricError(
            f"{filename}: score() must return a number or {{'score': number}}, got {value!r}"
        ) from None
    return number


def _build_python(
    solution: pd.DataFrame, submission: pd.DataFrame, params: Mapping[str, Any]
) -> Kernel:
    filename = str(params.get("file") or "metric.py")
    source = params.get("source")
    if source is None:
        source = load_source(MetricSpec("python", params)).params["source"]
    function = compile_score(str(source), filename)

    def compute(freq: FloatArray | None) -> float:
        if freq is None:
            return _as_number(function(solution, submission), filename)
        # A resample as the organizer's code expects it: rows repeated by their multiplicity.
        rows = np.repeat(np.arange(len(solution)), freq.astype(np.int64))
        value = _as_number(
            function(
                solution.iloc[rows].reset_index(drop=True),
                submission.iloc[rows].reset_index(drop=True),
            ),
            filename,
        )
        return value if math.isfinite(value) else math.nan

    return FrequencyKernel(len(solution), compute)


register(
    Metric(
        name="python",
        higher_is_better=True,
        description="organizer-defined: score(solution, submission) from a Python file",
        defaults={"file": None, "source": None, "higher_is_better": True},
        solution_columns=lambda p: [],
        submission_columns=lambda p: [],
        build=_build_python,
        parameters={
            "file": "path of the Python file defining score(solution, submission)",
            "source": "the file's text (filled in by the sandbox; do not write it in a bundle)",
            "higher_is_better": "whether larger scores rank higher (default true)",
        },
    )
)
