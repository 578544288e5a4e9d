"""What ``podium score`` does: grade one file against a solution in this process.

The CLI (in ``challenge``) parses arguments and prints; this module does the work and returns a
JSON-able mapping, so that an organizer can check a metric or a baseline from a notebook too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scoring.custom import load_source
from scoring.formats import ColumnSpec, SubmissionFormat
from scoring.grading import grade
from scoring.metrics import MetricSpec, get_metric
from scoring.validation import read_table


def infer_format(solution: Path, submission: Path, id_column: str | None = None) -> SubmissionFormat:
    """A format for ad-hoc scoring: the id column shared with the solution plus the file's
    other columns, typed by what the submission holds (numbers as floats, text as categories)."""
    sol_columns = pq.read_schema(solution).names
    probe = SubmissionFormat(id_column="__id__", columns=(ColumnSpec("__x__", "float"),))
    table, _ = read_table(submission, probe, id_is_string=False)
    names = [n.lstrip("\ufeff") for n in table.column_names]
    ident = id_column or next((n for n in names if n in sol_columns), names[0])
    columns = []
    for name, column in zip(names, table.columns, strict=True):
        if name == ident:
            continue
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            columns.append(ColumnSpec(name, "float"))
        else:
            values = tuple(sorted({str(v) for v in column.unique().to_pylist() if v is not None}))
            columns.append(ColumnSpec(name, "category", values or ("",)))
    return SubmissionFormat(id_column=ident, columns=tuple(columns))


def run_score_command(
    metric: str,
    solution: Path,
    submission: Path,
    params: Mapping[str, Any],
    *,
    format: Mapping[str, Any] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Grade ``submission`` against ``solution`` with metric ``metric`` and ``params``.

    ``format`` is the bundle's submission format; without it the format is inferred from the
    files (id column = first submission column also present in the solution). Returns
    :meth:`GradingResult.to_dict` plus ``metric``, ``params`` and ``higher_is_better``; an unknown
    metric or parameter raises :class:`scoring.metrics.UnknownMetric` /
    :class:`scoring.metrics.MetricError` with the known names. A ``python`` metric's ``file`` is
    read from this machine and run in this process (the organizer checking their own metric).
    """
    get_metric(metric)
    spec = MetricSpec.from_dict({"name": metric, **params})
    shown = dict(spec.params)
    if spec.name == "python" and spec.params.get("file"):
        # The organizer's own file, on their own machine: read here, relative to where they are.
        path = Path(str(spec.params["file"]))
        spec = load_source(MetricSpec(spec.name, {**spec.params, "file": path.name}), path.parent)
    fmt = (
        SubmissionFormat.from_dict(format)
        if format is not None
        else infer_format(Path(solution), Path(submission))
    )
    result = grade(Path(submission), Path(solution), fmt, spec, bootstrap=bootstrap, seed=seed)
    return {
        "metric": metric,
        "params": shown,
        "higher_is_better": spec.higher_is_better,
        **result.to_dict(),
    }
