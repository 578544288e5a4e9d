"""What ``podium score`` does: grade one file against a solution in this process.

The CLI (in ``challenge``) parses arguments and prints; this module does the work and returns a
JSON-able mapping, so that an organizer can check a metric or a baseline from a notebook too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scoring.custom import load_source
from scoring.formats import ColumnSpec, SubmissionFormat
from scoring.grading import grade
from scoring.metrics import MetricSpec, get_metric
from scoring.validation import SubmissionInvalid, read_table

#: Bytes of a CSV read to learn its header and column types.
_PEEK = 1 << 20


def _peek(submission: Path) -> pa.Table | None:
    """The first rows of a plain or gzipped CSV (its header and column types), or ``None`` for
    other files (read whole instead)."""
    try:
        with submission.open("rb") as handle:
            magic = handle.read(4)
        if magic == b"PAR1" or magic == b"PK\x03\x04":
            return None
        raw: Any = pa.OSFile(str(submission))
        if magic[:2] == b"\x1f\x8b":
            raw = pa.CompressedInputStream(raw, "gzip")
        with raw, pacsv.open_csv(
            raw, read_options=pacsv.ReadOptions(block_size=_PEEK)
        ) as reader:
            return pa.Table.from_batches([reader.read_next_batch()])
    except (pa.ArrowException, OSError, StopIteration):
        return None


def infer_format(
    solution: Path | pa.Table,
    submission: Path,
    id_column: str | None = None,
    predictions: Sequence[str] = (),
) -> SubmissionFormat:
    """A format for ad-hoc scoring: the key shared with the solution plus the file's other
    columns, typed by what the submission holds (numbers as floats, text as categories).

    The key is the run of leading submission columns that the solution has too and that are not
    ``predictions`` (the columns the metric reads from the submission): ``EventId`` for HiggsML,
    ``event_id, hit_id`` for TrackML. ``id_column`` forces a one-column key.
    """
    sol_columns = (
        solution.column_names if isinstance(solution, pa.Table) else pq.read_schema(solution).names
    )
    probe = SubmissionFormat(id_column="__id__", columns=(ColumnSpec("__x__", "float"),))
    table = _peek(submission)
    peeked = table is not None
    if table is None:
        table, _ = read_table(submission, probe, id_is_string=False)
    names = [n.lstrip("\ufeff") for n in table.column_names]
    if id_column is not None:
        key = [id_column]
    else:
        key = []
        for name in names:
            if name not in sol_columns or name in predictions:
                break
            key.append(name)
        key = key or names[:1]
    if len(names) <= len(key):
        raise SubmissionInvalid(
            f"the submission has only the column(s) {', '.join(names)}; it needs the key "
            f"({', '.join(key)}) and at least one prediction column, e.g. "
            f"{','.join([*key, *(predictions or ['prediction'])])}."
        )
    columns = []
    text = [
        n for n, c in zip(names, table.columns, strict=True)
        if n not in key and not (pa.types.is_integer(c.type) or pa.types.is_floating(c.type))
    ]
    if text and peeked:
        # Category values come from the whole file, not its first block.
        table, _ = read_table(submission, probe, id_is_string=False)
    for name, column in zip(names, table.columns, strict=True):
        if name in key:
            continue
        if name not in text:
            columns.append(ColumnSpec(name, "float"))
        else:
            values = tuple(sorted({str(v) for v in column.unique().to_pylist() if v is not None}))
            columns.append(ColumnSpec(name, "category", values or ("",)))
    return SubmissionFormat(id_column=key[0], columns=tuple(columns), key=tuple(key))


def run_score_command(
    metric: str,
    solution: Path | pa.Table,
    submission: Path,
    params: Mapping[str, Any],
    *,
    format: Mapping[str, Any] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Grade ``submission`` against ``solution`` with metric ``metric`` and ``params``.

    ``solution`` is a Parquet file, or a table already read (the CLI reads the other formats
    through the splitter). ``format`` is the bundle's submission format; without it the format
    is inferred from the files (:func:`infer_format`: the key is the leading submission columns
    the solution has too). Returns :meth:`GradingResult.to_dict` plus ``metric``, ``params`` and
    ``higher_is_better``; an unknown metric or parameter raises
    :class:`scoring.metrics.UnknownMetric` / :class:`scoring.metrics.MetricError` with the known
    names, a submission that cannot be typed :class:`SubmissionInvalid`. A ``python`` metric's
    ``file`` is read from this machine and run in this process (the organizer checking their own
    metric).
    """
    get_metric(metric)
    spec = MetricSpec.from_dict({"name": metric, **params})
    shown = dict(spec.params)
    if spec.name == "python" and spec.params.get("file"):
        # The organizer's own file, on their own machine: read here, relative to where they are.
        path = Path(str(spec.params["file"]))
        spec = load_source(MetricSpec(spec.name, {**spec.params, "file": path.name}), path.parent)
    predictions = [str(c) for c in spec.metric.submission_columns(spec.resolved_params())]
    fmt = (
        SubmissionFormat.from_dict(format)
        if format is not None
        else infer_format(solution, Path(submission), predictions=predictions)
    )
    source: Any = solution if isinstance(solution, pa.Table) else Path(solution)
    result = grade(Path(submission), source, fmt, spec, bootstrap=bootstrap, seed=seed)
    return {
        "metric": metric,
        "params": shown,
        "higher_is_better": spec.higher_is_better,
        "key": list(fmt.key),
        **result.to_dict(),
    }
