"""Organizer-defined metrics: a Python file with ``score(solution, submission) -> float | dict``.

The bundle names it as ``metric: {name: python, file: metric.py, higher_is_better: true}``.
``solution`` and ``submission`` are pandas DataFrames with the same rows in the same order (one
leaderboard subset at a time: Public, then Private); ``solution`` has every column of the hidden
solution file, ``submission`` the id column and the format's prediction columns. ``score`` returns
a number, or a mapping whose ``"score"`` entry is the number.

The code is untrusted as far as the platform is concerned: the scoring worker runs it only inside
:class:`scoring.sandbox.SandboxPool` (no network, no files but the job's own, rlimits). ``file``
is a name in the challenge's metric store (the folder passed as ``metric_dir``); the sandbox
mounts that one file read-only into the jail and the grading child reads it there, so the
worker never reads an organizer-named path itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.metrics import Metric, MetricError, MetricSpec, register
from scoring.resampling import FloatArray, FrequencyKernel, Kernel

ScoreFunction = Callable[[pd.DataFrame, pd.DataFrame], Any]


def metric_file_in(spec: MetricSpec, metric_dir: Path | None) -> Path | None:
    """The organizer metric file of ``spec`` inside ``metric_dir``; ``None`` for other metrics.

    ``file`` must be a plain file name in ``metric_dir`` (the challenge's metric store): an
    absolute path, a path with directories or ``..``, or a link that leaves the folder is
    refused, so the sandbox never mounts a file from anywhere else.
    """
    if spec.name != "python" or spec.params.get("source") is not None:
        return None
    name = spec.params.get("file")
    if not name:
        raise MetricError("metric 'python' needs a 'file' naming the organizer's metric file")
    name = str(name)
    if metric_dir is None:
        raise MetricError(
            f"the metric file {name!r} has no folder to be read from: pass metric_dir, the "
            "folder that holds it"
        )
    if os.path.isabs(name) or name != os.path.basename(name) or name in (".", ".."):
        raise MetricError(
            f"the metric file {name!r} is not a file name in the challenge's metric store; "
            "store the file with the challenge (podium challenge metric SLUG FILE)"
        )
    folder = Path(os.path.realpath(metric_dir))
    path = Path(os.path.realpath(folder / name))
    if path.parent != folder or not path.is_file():
        raise MetricError(
            f"the metric file {name!r} is not in the challenge's metric store; "
            "store it with the challenge (podium challenge metric SLUG FILE)"
        )
    return path


def with_source(spec: MetricSpec, text: bytes | str) -> MetricSpec:
    """Return ``spec`` with the metric file's text in ``source`` (read inside the jail)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetricError(f"metric file {spec.params.get('file')}: not UTF-8 text") from exc
    return MetricSpec(name=spec.name, params={**spec.params, "source": text})


def load_source(spec: MetricSpec, metric_dir: Path | None = None) -> MetricSpec:
    """Return ``spec`` with its metric file's text in ``source``, for grading in this process.

    The file is looked up as :func:`metric_file_in` does (the sandbox reads it only inside
    the jail instead).
    """
    path = metric_file_in(spec, metric_dir)
    if path is None:
        return spec
    return with_source(spec, path.read_bytes())


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
        raise MetricError(
            f"the text of {filename} was not loaded; grade organizer metrics in the sandbox "
            "(SandboxPool.grade with metric_dir) or load it with scoring.custom.load_source"
        )
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
        defaults={"file": None, "source": None, "higher_is_better": True, "label": None},
        solution_columns=lambda p: [],
        submission_columns=lambda p: [],
        build=_build_python,
        parameters={
            "file": "path of the Python file defining score(solution, submission)",
            "source": "the file's text (filled in by the sandbox; do not write it in a bundle)",
            "higher_is_better": "whether larger scores rank higher (default true)",
            "label": "the solution's label column, which the split keeps hidden (optional; "
            "score() sees every solution column anyway)",
        },
    )
)
