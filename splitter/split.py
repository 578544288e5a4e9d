"""Seeded, reproducible train / public-test / private-test splits.

How a row is assigned
---------------------
Each unit (a row, or a group of rows sharing the ``group`` value) gets a keyed 64-bit hash of its
id (or group value) and the seed. Inside each stratum the units are ranked by that hash and cut at
the exact counts apportioned to the stratum, so a unit's subset depends only on the seed, its own
id and the ids of the other units of its stratum, never on the file order, the chunking or the
engine: a Parquet file read by row groups, a DataFrame in memory and a Dask dataframe give the same
split.

Outputs
-------
``public_dir/train.parquet``: all columns of the train rows, input order (weights renormalised
when asked). ``public_dir/test.parquet``: id and feature columns of the public and private test
rows (never the label or weight columns), ordered by a second keyed hash so that the row order
leaks nothing. ``hidden_dir/solution.parquet``: id, label, weight (if any) and ``Usage``
(``Public``/``Private``), sorted by id.

Streaming
---------
Pass 1 reads only the key columns (id, label, weight, stratum, group) and computes the per-row
assignment. Pass 2 streams the file by record batches and appends each batch's rows to the
writers. Output orders that differ from the input order (the shuffled test file; the solution
when the input is not sorted by id) go through an external bucket sort in Arrow IPC temporary
files, so peak memory is the per-row assignment plus one bucket, whatever the input size.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from splitter.formats import FormatError, read_arrow, table_format

SUBSETS = ("train", "public_test", "private_test")
TRAIN, PUBLIC, PRIVATE, UNUSED = 0, 1, 2, 3
USAGE_COLUMN = "Usage"
_BUCKET_BYTES = 64 << 20
_BATCH_ROWS = 1 << 18

Progress = Callable[[float, str], None]
U64 = npt.NDArray[np.uint64]


class SplitError(ValueError):
    """The input or the split specification is unusable; the message says what to change."""


@dataclass(frozen=True)
class SplitSpec:
    """How to split a table.

    ``train``/``public_test``/``private_test`` are either three fractions (floats adding up to 1)
    or three exact counts (ints; rows, or groups when ``group`` is set; rows left over are not
    used). ``stratify`` names a column whose classes keep their proportions in every subset.
    ``group`` keeps all rows sharing a value in one subset. ``reweight`` renormalises the weight
    column per subset and per class of ``reweight_by`` (default the label) so each subset's class
    weight sums equal the full-set totals, as in the HiggsML release.
    """

    seed: int
    id_column: str
    label_column: str
    weight_column: str | None = None
    train: float | int = 0.5
    public_test: float | int = 0.2
    private_test: float | int = 0.3
    stratify: str | None = None
    group: str | None = None
    reweight: bool = False
    reweight_by: str | None = None

    @property
    def class_column(self) -> str:
        """Column whose classes the weights are renormalised by."""
        return self.reweight_by or self.label_column

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        """Build a spec from a bundle's ``split:`` mapping (``reweight`` may be a mapping
        ``{weight: W, by: L}`` as in challenge.yaml)."""
        data = dict(data)
        rw = data.get("reweight")
        if isinstance(rw, dict):
            data["reweight"] = True
            if "weight" in rw:
                data.setdefault("weight_column", rw["weight"])
            if "by" in rw:
                data.setdefault("reweight_by", rw["by"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SplitError(
                f"split: unknown option(s) {', '.join(unknown)}; known options: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)


@dataclass
class SubsetStats:
    """Counts and weights of one output subset."""

    rows: int = 0
    groups: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    class_weights: dict[str, float] = field(default_factory=dict)
    weight_sum: float = 0.0


@dataclass
class LeakageCheck:
    """Outcome of one leakage check on the written files."""

    name: str
    passed: bool
    detail: str


@dataclass
class SplitReport:
    """What a split produced: per-subset counts, class balance, weights, and leakage checks."""

    input_path: str
    seed: int
    total_rows: int
    unused_rows: int
    subsets: dict[str, SubsetStats]
    weight_factors: dict[str, dict[str, float]]
    checks: list[LeakageCheck]
    outputs: dict[str, str]

    @property
    def ok(self) -> bool:
        """True when every leakage check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        d = asdict(self)
        d["ok"] = self.ok
        return d


# --------------------------------------------------------------------------- keyed hashing

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: U64) -> U64:
    # splitmix64 finaliser: a bijection on 64-bit integers with full avalanche.
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        x = x ^ (x >> np.uint64(31))
    return x


def _keys(seed: int, salt: int) -> tuple[np.uint64, np.uint64]:
    digest = hashlib.blake2b(f"podium-split:{seed}:{salt}".encode(), digest_size=16).digest()
    return (np.uint64(int.from_bytes(digest[:8], "little")),
            np.uint64(int.from_bytes(digest[8:], "little")))


def keyed_hash(values: npt.ArrayLike, seed: int, salt: int = 0) -> U64:
    """Keyed 64-bit hash of each value: depends only on (seed, salt, value).

    Integers and booleans are hashed by value (int64), floats by their float64 bits, anything else
    by its ``str()`` through BLAKE2b (slower: one Python call per distinct value).
    """
    k1, k2 = _keys(seed, salt)
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        bits = arr.astype(np.int64).view(np.uint64)
    elif arr.dtype.kind == "f":
        f64 = arr.astype(np.float64) + 0.0  # turns -0.0 into 0.0
        bits = f64.view(np.uint64)
    else:
        codes, uniques = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=False)
        key = k1.tobytes()
        uh = np.fromiter(
            (int.from_bytes(hashlib.blake2b(str(u).encode(), key=key, digest_size=8).digest(),
                            "little") for u in uniques),
            dtype=np.uint64, count=len(uniques),
        )
        bits = uh[codes]
    with np.errstate(over="ignore"):
        return _mix(_mix(bits ^ k1) + k2 * _GOLDEN)


# --------------------------------------------------------------------------- validation


def _missing_column(path: str, column: str, role: str, available: Sequence[str]) -> SplitError:
    close = difflib.get_close_matches(column, available, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return SplitError(
        f"{path}: the {role} column {column!r} is not in the file.{hint} Columns present: "
        f"{', '.join(available[:40])}{' ...' if len(available) > 40 else ''}. Change the split's "
        f"{role} option or rename the column."
    )


def _check_spec(spec: SplitSpec, columns: Sequence[str], path: str) -> None:
    roles = [("id", spec.id_column), ("label", spec.label_column)]
    if spec.weight_column:
        roles.append(("weight", spec.weight_column))
    if spec.stratify:
        roles.append(("stratify", spec.stratify))
    if spec.group:
        roles.append(("group", spec.group))
    if spec.reweight:
        if not spec.weight_column:
            raise SplitError(
                f"{path}: reweight needs a weight column; set weight_column (reweight: "
                "{weight: COLUMN}) or turn reweight off"
            )
        roles.append(("reweight_by", spec.class_column))
    for role, col in roles:
        if col not in columns:
            raise _missing_column(path, col, role, list(columns))
    sizes = (spec.train, spec.public_test, spec.private_test)
    if any(isinstance(s, bool) for s in sizes):
        raise SplitError("split: train/public_test/private_test must be numbers, not booleans")
    if all(isinstance(s, int) for s in sizes):
        if any(s < 0 for s in sizes):
            raise SplitError(f"split: counts must be >= 0, got {sizes}")
    elif all(isinstance(s, float) for s in sizes):
        if any(s < 0 or s > 1 for s in sizes):
            raise SplitError(f"split: fractions must lie in [0, 1], got {sizes}")
        if not math.isclose(sum(sizes), 1.0, abs_tol=1e-9):
            raise SplitError(
                f"split: fractions train={spec.train}, public_test={spec.public_test}, "
                f"private_test={spec.private_test} add up to {sum(sizes):g}, not 1; change them "
                "so they add up to 1, or give exact row counts as integers"
            )
    else:
        raise SplitError(
            f"split: give train/public_test/private_test either all as fractions (0.5) or all as "
            f"integer counts (250000), not a mix: got {sizes}"
        )


def _first_bad_row(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


# --------------------------------------------------------------------------- assignment


def _apportion(total: int, weights: npt.NDArray[np.int64], caps: npt.NDArray[np.int64]
               ) -> npt.NDArray[np.int64]:
    """Split ``total`` into integers proportional to ``weights``, each at most ``caps``."""
    out = np.zeros(len(weights), dtype=np.int64)
    wsum = int(weights.sum())
    if total == 0 or wsum == 0:
        return out
    quota = weights.astype(np.float64) * (total / wsum)
    out = np.minimum(np.floor(quota).astype(np.int64), caps)
    remaining = total - int(out.sum())
    while remaining > 0:
        spare = caps - out
        candidates = np.flatnonzero(spare > 0)
        if len(candidates) == 0:
            break
        frac = quota[candidates] - out[candidates]
        order = candidates[np.lexsort((candidates, -frac))]
        take = order[:remaining]
        out[take] += 1
        remaining = total - int(out.sum())
    return out


@dataclass
class Assignment:
    """Per-row result of pass 1."""

    subset: npt.NDArray[np.int8]  # TRAIN/PUBLIC/PRIVATE/UNUSED per input row
    position: npt.NDArray[np.int64]  # row's position in its ordered output (test or solution)
    solution_position: npt.NDArray[np.int64]
    solution_in_order: bool
    class_code: npt.NDArray[np.int8] | None
    class_names: list[str]
    factors: npt.NDArray[np.float64]  # [subset, class] weight factor
    n_units: int
    unit_subset_counts: list[int]


def target_counts(spec: SplitSpec, n_units: int, what: str = "rows") -> list[int]:
    """Exact number of units per subset (train, public, private, unused)."""
    sizes = (spec.train, spec.public_test, spec.private_test)
    if all(isinstance(s, int) for s in sizes):
        counts = [int(s) for s in sizes]
        if sum(counts) > n_units:
            raise SplitError(
                f"split: train+public_test+private_test = {sum(counts)} {what}, but the input has "
                f"only {n_units} {what}; lower the counts"
            )
        return [*counts, n_units - sum(counts)]
    raw = np.array(sizes, dtype=np.float64) * n_units
    counts_arr = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts_arr), kind="stable")
    counts_arr[order[: n_units - int(counts_arr.sum())]] += 1
    return [*(int(c) for c in counts_arr), 0]


def assign_units(
    unit_hash: U64,
    unit_tiebreak: npt.NDArray[Any],
    unit_stratum: npt.NDArray[np.int64],
    targets: list[int],
) -> npt.NDArray[np.int8]:
    """Subset of each unit: rank units by hash inside each stratum and cut at exact counts."""
    n = len(unit_hash)
    n_strata = int(unit_stratum.max()) + 1 if n else 0
    sizes = np.bincount(unit_stratum, minlength=n_strata).astype(np.int64)
    alloc = np.zeros((n_strata, 4), dtype=np.int64)
    remaining = sizes.copy()
    last = 3 if targets[3] > 0 else 2
    for j in range(4):
        if j == last:
            alloc[:, j] = remaining
            break
        alloc[:, j] = _apportion(targets[j], sizes, remaining)
        remaining -= alloc[:, j]
    order = np.lexsort((unit_tiebreak, unit_hash, unit_stratum))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank_in_stratum = np.empty(n, dtype=np.int64)
    rank_in_stratum[order] = np.arange(n) - np.repeat(starts, sizes)
    cuts = np.cumsum(alloc, axis=1)  # [stratum, j]: end of subset j in rank order
    # One pass per cut instead of an (n, 4) table of cuts: keeps pass-1 memory per row small.
    subset: npt.NDArray[np.int8] = np.zeros(n, dtype=np.int8)
    for j in range(3):
        subset += (rank_in_stratum >= cuts[unit_stratum, j]).astype(np.int8)
    return subset


def _tiebreak(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if values.dtype.kind in "iufb":
        return values
    # Strings: order by text; hash collisions between distinct strings then resolve stably.
    codes: npt.NDArray[Any] = pd.factorize(pd.Series(values, dtype=object), sort=True)[0]
    return codes


def compute_assignment(keys: pd.DataFrame, spec: SplitSpec, path: str) -> Assignment:
    """Pass 1: validate the key columns and assign every row.

    ``keys`` holds the id, label, weight, stratify, group and class columns, in input order.
    """
    n = len(keys)
    label = keys[spec.label_column]
    bad = label.isna().to_numpy()
    if bad.any():
        row = _first_bad_row(bad)
        raise SplitError(
            f"{path}: the label column {spec.label_column!r} is empty at row {row + 1} "
            f"({int(bad.sum())} rows in all); every row needs a label: fill them or drop those rows"
        )
    ids = keys[spec.id_column]
    if ids.isna().any():
        row = _first_bad_row(ids.isna().to_numpy())
        raise SplitError(
            f"{path}: the id column {spec.id_column!r} is empty at row {row + 1}; every row needs "
            "an id"
        )
    id_values = ids.to_numpy()
    if spec.group:
        grp = keys[spec.group]
        gbad = grp.isna().to_numpy().copy()
        if grp.dtype.kind not in "iufb":
            gbad |= (grp.astype(str).str.strip() == "").to_numpy()
        if gbad.any():
            row = _first_bad_row(gbad)
            raise SplitError(
                f"{path}: the group column {spec.group!r} is empty at row {row + 1} "
                f"({int(gbad.sum())} rows in all); give every row a group value or drop them"
            )
        dup = pd.DataFrame({"g": grp.to_numpy(), "i": id_values}).duplicated().to_numpy()
        dup_what = f"(group {spec.group!r}, id {spec.id_column!r}) pair"
    else:
        dup = ids.duplicated().to_numpy()
        dup_what = f"id in column {spec.id_column!r}"
    if dup.any():
        row = _first_bad_row(dup)
        raise SplitError(
            f"{path}: duplicated {dup_what} at row {row + 1} (value {id_values[row]!r}, "
            f"{int(dup.sum())} duplicates in all); ids must be unique"
            + ("" if spec.group else ", or set group if rows sharing an id belong together")
        )
    weight: npt.NDArray[np.float64] | None = None
    if spec.weight_column:
        wcol = keys[spec.weight_column]
        if wcol.dtype.kind not in "iuf":
            raise SplitError(
                f"{path}: the weight column {spec.weight_column!r} is not numeric "
                f"(type {wcol.dtype}); it must hold numbers only"
            )
        weight = wcol.to_numpy(dtype=np.float64)
        wbad = ~np.isfinite(weight)
        if wbad.any():
            row = _first_bad_row(wbad)
            raise SplitError(
                f"{path}: the weight column {spec.weight_column!r} is empty or infinite at row "
                f"{row + 1}; every weight must be a finite number"
            )

    # Units: rows, or groups.
    if spec.group:
        unit_of_row, unit_values = pd.factorize(keys[spec.group], sort=False)
        unit_values = np.asarray(unit_values)
    else:
        unit_of_row = np.arange(n, dtype=np.int64)
        unit_values = id_values
    n_units = len(unit_values)
    strat_codes = np.zeros(n, dtype=np.int64)
    if spec.stratify:
        sbad = keys[spec.stratify].isna().to_numpy()
        if sbad.any():
            raise SplitError(
                f"{path}: the stratify column {spec.stratify!r} is empty at row "
                f"{_first_bad_row(sbad) + 1}; fill it or stratify by another column"
            )
        strat_codes = pd.factorize(keys[spec.stratify], sort=True)[0].astype(np.int64)
    unit_stratum = np.zeros(n_units, dtype=np.int64)
    unit_stratum[unit_of_row] = strat_codes
    if spec.group and spec.stratify:
        check = np.zeros(n_units, dtype=np.int64)
        check[unit_of_row] = strat_codes
        mixed = strat_codes != unit_stratum[unit_of_row]
        if mixed.any():
            row = _first_bad_row(mixed)
            raise SplitError(
                f"{path}: group {keys[spec.group].iloc[row]!r} mixes several values of the "
                f"stratify column {spec.stratify!r} (row {row + 1}); stratify by a column that "
                "is constant within each group, or drop stratify"
            )
    what = "groups" if spec.group else "rows"
    targets = target_counts(spec, n_units, what)
    unit_hash = keyed_hash(unit_values, spec.seed, salt=1)
    unit_subset = assign_units(unit_hash, _tiebreak(unit_values), unit_stratum, targets)
    subset = unit_subset[unit_of_row]

    # Test order: a second keyed hash of the unit, then input order inside a unit.
    is_test = (subset == PUBLIC) | (subset == PRIVATE)
    position = np.full(n, -1, dtype=np.int64)
    test_rows = np.flatnonzero(is_test)
    order_hash = keyed_hash(unit_values, spec.seed, salt=2)[unit_of_row[test_rows]]
    test_order = np.lexsort((test_rows, order_hash))
    position[test_rows[test_order]] = np.arange(len(test_rows))

    # Solution order: sorted by (group, id) or id.
    solution_position = np.full(n, -1, dtype=np.int64)
    sort_keys: list[npt.NDArray[Any]] = [_tiebreak(id_values[test_rows])]
    if spec.group:
        sort_keys.append(_tiebreak(np.asarray(keys[spec.group].to_numpy())[test_rows]))
    sol_order = np.lexsort(tuple(sort_keys))
    solution_position[test_rows[sol_order]] = np.arange(len(test_rows))
    solution_in_order = bool(np.all(np.diff(solution_position[test_rows]) > 0))

    class_code: npt.NDArray[np.int8] | None = None
    class_names: list[str] = []
    factors = np.ones((4, 1), dtype=np.float64)
    if spec.reweight and weight is not None:
        codes, uniques = pd.factorize(keys[spec.class_column], sort=True)
        class_code = codes.astype(np.int8)
        class_names = [str(u) for u in uniques]
        k = len(class_names)
        sums = np.zeros((4, k))
        np.add.at(sums, (subset.astype(np.int64), codes), weight)
        totals = np.bincount(codes, weights=weight, minlength=k)
        with np.errstate(divide="ignore", invalid="ignore"):
            factors = np.where(sums > 0, totals[None, :] / sums, 1.0)
        for j in (TRAIN, PUBLIC, PRIVATE):
            for c in range(k):
                if sums[j, c] == 0 and totals[c] != 0 and np.any(subset == j):
                    # A class absent from a subset cannot be renormalised; say so instead of
                    # silently producing wrong totals.
                    raise SplitError(
                        f"{path}: class {class_names[c]!r} of {spec.class_column!r} has no weight "
                        f"in subset {SUBSETS[j]}; stratify by {spec.class_column!r} or make the "
                        "subset larger"
                    )
    return Assignment(
        subset=subset,
        position=position,
        solution_position=solution_position,
        solution_in_order=solution_in_order,
        class_code=class_code,
        class_names=class_names,
        factors=factors,
        n_units=n_units,
        unit_subset_counts=[int(c) for c in np.bincount(unit_subset, minlength=4)],
    )


# --------------------------------------------------------------------------- sources


class Source(Protocol):
    """A table to split, read twice: key columns first, then all columns in record batches."""

    name: str

    @property
    def schema(self) -> pa.Schema: ...

    def read_columns(self, columns: list[str]) -> pd.DataFrame: ...

    def iter_batches(self) -> Iterator[pa.RecordBatch]: ...


class ParquetSource:
    """A Parquet file streamed by record batches (never loaded whole)."""

    def __init__(self, path: Path, batch_rows: int = _BATCH_ROWS) -> None:
        self.name = str(path)
        self.path = path
        self.batch_rows = batch_rows
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SplitError(
                f"{path}: not a readable Parquet file ({exc}); it is probably truncated or "
                "corrupt, write it again"
            ) from exc

    @property
    def schema(self) -> pa.Schema:
        return self._file.schema_arrow

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    def read_columns(self, columns: list[str]) -> pd.DataFrame:
        try:
            table = self._file.read(columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SplitError(f"{self.path}: cannot be read ({exc}); the file is corrupt") from exc
        return table.to_pandas()

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._file.iter_batches(batch_size=self.batch_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SplitError(f"{self.path}: cannot be read ({exc}); the file is corrupt") from exc


class TableSource:
    """A table already in memory (CSV, HDF5, ROOT inputs, or a DataFrame)."""

    def __init__(self, table: pa.Table, name: str, batch_rows: int = _BATCH_ROWS) -> None:
        self.name = name
        self.table = table
        self.batch_rows = batch_rows

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def read_columns(self, columns: list[str]) -> pd.DataFrame:
        return self.table.select(columns).to_pandas()

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.table.to_batches(max_chunksize=self.batch_rows)


def open_source(path: Path) -> ParquetSource | TableSource:
    """Source for a file: Parquet is streamed, other formats are read whole."""
    path = Path(path)
    if not path.exists():
        raise SplitError(f"{path}: no such file")
    try:
        fmt = table_format(path)
        if fmt == "parquet":
            return ParquetSource(path)
        return TableSource(read_arrow(path), str(path))
    except FormatError as exc:
        raise SplitError(str(exc)) from exc


# --------------------------------------------------------------------------- writing


class _OrderedWriter:
    """Writes rows to a Parquet file in a given global order, through IPC buckets if needed."""

    def __init__(self, out: Path, schema: pa.Schema, n_rows: int, in_order: bool,
                 tmpdir: Path, name: str) -> None:
        self.out = out
        self.schema = schema
        self.in_order = in_order
        self.n_rows = n_rows
        self._pending: list[tuple[int, pa.Table]] = []
        self._next = 0
        if in_order:
            self._writer = pq.ParquetWriter(out, schema)
            return
        row_bytes = max(8, sum(max(8, f.type.bit_width // 8 if pa.types.is_primitive(f.type)
                                   else 24) for f in schema))
        self.bucket_rows = max(1024, _BUCKET_BYTES // row_bytes)
        self.n_buckets = max(1, -(-n_rows // self.bucket_rows))
        self._bucket_schema = schema.append(pa.field("__pos", pa.int64()))
        self._paths = [tmpdir / f"{name}-{b}.arrow" for b in range(self.n_buckets)]
        self._sinks: list[ipc.RecordBatchStreamWriter | None] = [None] * self.n_buckets

    def write(self, table: pa.Table, positions: npt.NDArray[np.int64]) -> None:
        if table.num_rows == 0:
            return
        if self.in_order:
            self._writer.write_table(table)
            return
        bucket = positions // self.bucket_rows
        table = table.append_column("__pos", pa.array(positions, pa.int64()))
        if bucket.min() == bucket.max():
            self._sink(int(bucket[0])).write_table(table)
            return
        order = np.argsort(bucket, kind="stable")
        sorted_b = bucket[order]
        bounds = np.flatnonzero(np.diff(sorted_b)) + 1
        for chunk in np.split(order, bounds):
            self._sink(int(bucket[chunk[0]])).write_table(table.take(pa.array(chunk)))

    def _sink(self, b: int) -> ipc.RecordBatchStreamWriter:
        sink = self._sinks[b]
        if sink is None:
            sink = ipc.new_stream(str(self._paths[b]), self._bucket_schema)
            self._sinks[b] = sink
        return sink

    def close(self) -> None:
        if self.in_order:
            self._writer.close()
            return
        for sink in self._sinks:
            if sink is not None:
                sink.close()
        with pq.ParquetWriter(self.out, self.schema) as writer:
            for b, path in enumerate(self._paths):
                if self._sinks[b] is None:
                    continue
                with pa.memory_map(str(path)) as source:
                    table = ipc.open_stream(source).read_all()
                pos = table.column("__pos").to_numpy()
                table = table.drop_columns(["__pos"]).take(pa.array(np.argsort(pos)))
                writer.write_table(table)
                del table
                path.unlink()


def _row_hashes(table: pa.Table | pa.RecordBatch, columns: list[str]) -> U64:
    """64-bit hash of each row's values over ``columns`` (same values -> same hash)."""
    h = np.full(table.num_rows, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            col = table.column(name)
            if pa.types.is_floating(col.type):
                bits = (col.to_numpy(zero_copy_only=False).astype(np.float64) + 0.0).view(
                    np.uint64)
            elif pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
                bits = col.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
            else:
                bits = pd.util.hash_array(np.asarray(col.to_pylist(), dtype=object))
            h = _mix(h ^ bits) + _GOLDEN
    return h


def _count_in(values: U64, pool: U64) -> int:
    """How many of ``values`` occur in ``pool`` (sort + binary search: fast on uint64)."""
    if not len(values) or not len(pool):
        return 0
    pool = np.sort(pool)
    idx = np.minimum(np.searchsorted(pool, values), len(pool) - 1)
    return int(np.count_nonzero(pool[idx] == values))


def _count_shared(a: U64, b: U64) -> int:
    """Number of distinct values present in both ``a`` and ``b``."""
    def distinct(x: U64) -> U64:
        x = np.sort(x)
        keep = np.ones(len(x), dtype=bool)
        keep[1:] = x[1:] != x[:-1]
        out: U64 = x[keep]
        return out

    return _count_in(distinct(b), distinct(a))


def _leakage_checks(public_dir: Path, hidden_dir: Path, spec: SplitSpec,
                    train_hash: U64, test_hash: U64) -> list[LeakageCheck]:
    checks: list[LeakageCheck] = []
    test_schema = pq.read_schema(public_dir / "test.parquet")
    forbidden = [c for c in (spec.label_column, spec.weight_column) if c]
    present = [c for c in forbidden if c in test_schema.names]
    checks.append(LeakageCheck(
        "no_label_or_weight_in_public_test", not present,
        f"test.parquet columns {present} must not be public" if present
        else f"test.parquet has none of {forbidden}",
    ))
    key_cols = [spec.id_column] + ([spec.group] if spec.group else [])
    train_keys = pq.read_table(public_dir / "train.parquet", columns=key_cols)
    test_keys = pq.read_table(public_dir / "test.parquet", columns=key_cols)
    sol_keys = pq.read_table(hidden_dir / "solution.parquet", columns=[spec.id_column])
    unit = spec.group or spec.id_column
    tr = keyed_hash(train_keys.column(unit).to_numpy(zero_copy_only=False), 0, 99)
    te = keyed_hash(test_keys.column(unit).to_numpy(zero_copy_only=False), 0, 99)
    shared = _count_shared(tr, te)
    checks.append(LeakageCheck(
        "no_id_in_two_subsets", shared == 0,
        f"{shared} {unit} values appear in both train and test" if shared
        else f"no {unit} value is in both train and test",
    ))
    same = test_keys.num_rows == sol_keys.num_rows
    checks.append(LeakageCheck(
        "solution_matches_test", same,
        f"test.parquet has {test_keys.num_rows} rows, solution.parquet {sol_keys.num_rows}",
    ))
    dup = _count_in(test_hash, train_hash)
    checks.append(LeakageCheck(
        "no_identical_feature_rows_across_train_and_test", dup == 0,
        f"{dup} test rows have exactly the same feature values as a train row" if dup
        else "no test row repeats the features of a train row",
    ))
    return checks


def _write_outputs(
    source: ParquetSource | TableSource | Source,
    spec: SplitSpec,
    asg: Assignment,
    schema: pa.Schema,
    test_schema: pa.Schema,
    sol_schema: pa.Schema,
    test_cols: list[str],
    sol_cols: list[str],
    feature_cols: list[str],
    partial: dict[str, Path],
    tmpdir: Path,
    n: int,
    n_test: int,
    train_hashes: list[U64],
    test_hashes: list[U64],
    report_progress: Progress,
) -> None:
    """Pass 2: stream the source and write the three outputs."""
    path = source.name
    widx = schema.get_field_index(spec.weight_column) if spec.weight_column else -1
    input_schema = pa.schema([
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
        for f in source.schema
    ])
    train_w = pq.ParquetWriter(partial["train"], schema)
    test_w = _OrderedWriter(partial["test"], test_schema, n_test, False, tmpdir, "test")
    sol_w = _OrderedWriter(partial["solution"], sol_schema, n_test, asg.solution_in_order,
                           tmpdir, "solution")
    offset = 0
    # Parquet encoding releases the GIL: the train file is encoded on a second thread while this
    # one reads and filters the next batch. At most one batch waits, which bounds memory.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-split-writer")
    pending: Future[None] | None = None
    for batch in source.iter_batches():
        m = batch.num_rows
        sub = asg.subset[offset: offset + m]
        table = pa.Table.from_batches([batch])
        if table.schema.remove_metadata() != input_schema:
            table = table.cast(input_schema)
        if spec.reweight and spec.weight_column and asg.class_code is not None:
            factor = asg.factors[sub.astype(np.int64),
                                 asg.class_code[offset: offset + m].astype(np.int64)]
            w = table.column(spec.weight_column).to_numpy(zero_copy_only=False).astype(
                np.float64) * factor
            table = table.set_column(widx, spec.weight_column, pa.array(w, pa.float64()))
        train_mask = sub == TRAIN
        if train_mask.any():
            t = table.filter(pa.array(train_mask)).cast(schema)
            if pending is not None:
                pending.result()
            pending = pool.submit(train_w.write_table, t)
            train_hashes.append(_row_hashes(t, feature_cols))
        test_mask = (sub == PUBLIC) | (sub == PRIVATE)
        if test_mask.any():
            mask_arr = pa.array(test_mask)
            t = table.filter(mask_arr)
            test_part = t.select(test_cols)
            test_w.write(test_part, asg.position[offset: offset + m][test_mask])
            test_hashes.append(_row_hashes(test_part, feature_cols))
            usage = np.where(sub[test_mask] == PUBLIC, "Public", "Private")
            sol = t.select(sol_cols).append_column(USAGE_COLUMN, pa.array(usage, pa.string()))
            sol_w.write(sol.cast(sol_schema),
                        asg.solution_position[offset: offset + m][test_mask])
        offset += m
        report_progress(0.1 + 0.8 * offset / max(n, 1), f"wrote {offset} of {n} rows")
    if pending is not None:
        pending.result()
    pool.shutdown()
    if offset != n:
        raise SplitError(f"{path}: read {offset} rows in pass 2 but {n} in pass 1; the file "
                         "changed while it was being split, run the split again")
    train_w.close()
    # The solution is finished on a second thread while the (larger) test file is sorted out.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-split-close") as closer:
        sol_done = closer.submit(sol_w.close)
        test_w.close()
        sol_done.result()


def split_source(
    source: ParquetSource | TableSource | Source,
    public_dir: Path,
    hidden_dir: Path,
    spec: SplitSpec,
    progress: Progress | None = None,
    *,
    keys: pd.DataFrame | None = None,
) -> SplitReport:
    """Split any :class:`Source` (see :func:`split_file`). ``keys`` may carry the key columns
    already read (the Dask engine computes them on the workers)."""
    report_progress: Progress = progress or (lambda _f, _m: None)
    # Text columns are written as Arrow "string" whatever the engine held them as (pandas and
    # Dask use large_string), so every engine writes byte-identical schemas.
    schema = pa.schema([
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
        for f in source.schema
    ])
    path = source.name
    _check_spec(spec, schema.names, path)
    key_cols = list(dict.fromkeys(
        c for c in (spec.id_column, spec.label_column, spec.weight_column, spec.stratify,
                    spec.group, spec.class_column if spec.reweight else None) if c))
    report_progress(0.0, "reading key columns")
    if keys is None:
        keys = source.read_columns(key_cols)
    asg = compute_assignment(keys, spec, path)
    n = len(asg.subset)
    # Class balance is counted on integer codes: np.unique on text is slow at 10^7 rows.
    label_codes, label_uniques = pd.factorize(keys[spec.label_column], sort=True)
    label_names = [str(u) for u in label_uniques]
    weight_values = (keys[spec.weight_column].to_numpy(dtype=np.float64)
                     if spec.weight_column else None)
    del keys
    report_progress(0.1, "assigned rows")

    public_dir.mkdir(parents=True, exist_ok=True)
    hidden_dir.mkdir(parents=True, exist_ok=True)
    hidden_cols = {spec.label_column, *([spec.weight_column] if spec.weight_column else [])}
    test_cols = [c for c in schema.names if c not in hidden_cols]
    feature_cols = [c for c in test_cols if c not in (spec.id_column, spec.group)]
    sol_cols = [spec.id_column, *([spec.group] if spec.group else []), spec.label_column,
                *([spec.weight_column] if spec.weight_column else [])]
    test_schema = pa.schema([schema.field(c) for c in test_cols])
    sol_schema = pa.schema([schema.field(c) for c in sol_cols] + [pa.field(USAGE_COLUMN,
                                                                          pa.string())])
    if spec.reweight and spec.weight_column:
        schema = schema.set(schema.get_field_index(spec.weight_column),
                            pa.field(spec.weight_column, pa.float64()))
        sol_schema = sol_schema.set(sol_schema.get_field_index(spec.weight_column),
                                    pa.field(spec.weight_column, pa.float64()))
    n_test = int(np.count_nonzero((asg.subset == PUBLIC) | (asg.subset == PRIVATE)))

    outputs = {
        "train": public_dir / "train.parquet",
        "test": public_dir / "test.parquet",
        "solution": hidden_dir / "solution.parquet",
    }
    train_hashes: list[U64] = []
    test_hashes: list[U64] = []
    with tempfile.TemporaryDirectory(prefix="podium-split-", dir=hidden_dir) as tmp:
        tmpdir = Path(tmp)
        # Each output is written next to its final place and renamed when complete, so a failed
        # split never leaves a file that looks finished.
        partial = {k: v.with_name(v.name + ".partial") for k, v in outputs.items()}
        try:
            _write_outputs(source, spec, asg, schema, test_schema, sol_schema, test_cols,
                           sol_cols, feature_cols, partial, tmpdir, n, n_test,
                           train_hashes, test_hashes, report_progress)
        except BaseException:
            for p in partial.values():
                p.unlink(missing_ok=True)
            raise
        for k, p in partial.items():
            p.replace(outputs[k])
    report_progress(0.9, "checking for leakage")
    train_h = np.concatenate(train_hashes) if train_hashes else np.zeros(0, np.uint64)
    test_h = np.concatenate(test_hashes) if test_hashes else np.zeros(0, np.uint64)
    checks = _leakage_checks(public_dir, hidden_dir, spec, train_h, test_h)

    subsets: dict[str, SubsetStats] = {}
    final_w = weight_values
    if final_w is not None and spec.reweight and asg.class_code is not None:
        final_w = final_w * asg.factors[asg.subset.astype(np.int64),
                                        asg.class_code.astype(np.int64)]
    n_cls = len(label_names)
    cell = asg.subset.astype(np.int64) * n_cls + np.asarray(label_codes, dtype=np.int64)
    counts = np.bincount(cell, minlength=4 * n_cls).reshape(4, n_cls)
    wsums = (np.bincount(cell, weights=final_w, minlength=4 * n_cls).reshape(4, n_cls)
             if final_w is not None else None)
    for j, name in enumerate(SUBSETS):
        present = [c for c in range(n_cls) if counts[j, c] > 0]
        stats = SubsetStats(rows=int(counts[j].sum()), groups=asg.unit_subset_counts[j],
                            class_counts={label_names[c]: int(counts[j, c]) for c in present})
        if wsums is not None:
            stats.weight_sum = float(wsums[j].sum())
            stats.class_weights = {label_names[c]: float(wsums[j, c]) for c in present}
        subsets[name] = stats
    factors = {}
    if spec.reweight:
        factors = {SUBSETS[j]: {c: float(asg.factors[j, i]) for i, c in
                                enumerate(asg.class_names)} for j in range(3)}
    report_progress(1.0, "done")
    return SplitReport(
        input_path=path,
        seed=spec.seed,
        total_rows=n,
        unused_rows=int(np.count_nonzero(asg.subset == UNUSED)),
        subsets=subsets,
        weight_factors=factors,
        checks=checks,
        outputs={k: str(v) for k, v in outputs.items()},
    )


def split_file(
    input_path: Path,
    public_dir: Path,
    hidden_dir: Path,
    spec: SplitSpec,
    progress: Progress | None = None,
) -> SplitReport:
    """Split ``input_path`` into ``public_dir/train.parquet``, ``public_dir/test.parquet`` and
    ``hidden_dir/solution.parquet``.

    Input formats: CSV (also ``.csv.gz``), Parquet (streamed by record batches), HDF5, ROOT.
    ``progress(fraction, message)`` is called as the work advances. Raises :class:`SplitError`
    naming the file, row or column for bad input; outputs appear only when complete.
    """
    return split_source(open_source(Path(input_path)), Path(public_dir), Path(hidden_dir), spec,
                        progress)


def split_dataframe(
    frame: pd.DataFrame,
    public_dir: Path,
    hidden_dir: Path,
    spec: SplitSpec,
    progress: Progress | None = None,
) -> SplitReport:
    """Split a DataFrame held in memory; same outputs as :func:`split_file`."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return split_source(TableSource(table, "<dataframe>"), Path(public_dir), Path(hidden_dir),
                        spec, progress)
