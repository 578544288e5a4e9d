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
Pass 1 reads only the key columns, batch by batch, and keeps two numbers a row: the unit's keyed
hash (8 bytes) and its stratum code (1 byte), plus the weight and class code when reweighting.
From them it finds, per stratum, the hash values at which the ranked units are cut (selection, not
a sort of the rows), turns every row into a 1-byte subset code and drops the rest. Pass 2 streams
the file again by record batches: train rows go to a Parquet writer on a second thread, test rows
to hash-range buckets (Arrow IPC temporary files, in the test order's hash ranges), solution rows
straight to their writer when the input is sorted by id. At the end each bucket is sorted alone
and appended to ``test.parquet`` as a row group: an external shuffle whose memory is one bucket.
Peak memory is therefore about 9 bytes a row (18 when reweighting) plus a few batches and one
bucket, whatever the row width.
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
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from splitter.formats import FormatError, csv_schema, iter_csv_batches, read_arrow, table_format

SUBSETS = ("train", "public_test", "private_test")
TRAIN, PUBLIC, PRIVATE, UNUSED = 0, 1, 2, 3
USAGE_COLUMN = "Usage"
_BUCKET_BYTES = 64 << 20
_BATCH_ROWS = 1 << 18

Progress = Callable[[float, str], None]
U64 = npt.NDArray[np.uint64]


#: A label with more distinct values than this is not reported class by class.
MAX_REPORTED_CLASSES = 20


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
    # Columns that must not reach the public test file (truth-derived extras such as HiggsML's
    # KaggleSet/KaggleWeight or a Process id): they go to the hidden solution instead.
    hidden: tuple[str, ...] = ()

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
        if "hidden" in data:
            value = data["hidden"]
            data["hidden"] = (value,) if isinstance(value, str) else tuple(value)
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
    #: Distinct values of the label column in the subset.
    label_values: int = 0
    #: Rows (and weights) per label value, when the label has at most
    #: :data:`MAX_REPORTED_CLASSES` values: a regression target or a particle id is no class.
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


def keyed_hash(values: npt.ArrayLike | pa.Array | pa.ChunkedArray, seed: int,
               salt: int = 0) -> U64:
    """Keyed 64-bit hash of each value: depends only on (seed, salt, value).

    Integers and booleans are hashed by value (int64, so the hash is a bijection and distinct ids
    never collide), floats by their float64 bits, anything else by its ``str()`` through BLAKE2b
    (slower: one Python call per distinct value). Arrow arrays are read without pandas.
    """
    k1, k2 = _keys(seed, salt)
    if isinstance(values, pa.ChunkedArray | pa.Array) and not (
            pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
            or pa.types.is_boolean(values.type)):
        encoded = pc.dictionary_encode(values)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        uniques: Sequence[Any] = encoded.dictionary.to_pylist()
    else:
        if isinstance(values, pa.ChunkedArray | pa.Array):
            values = values.to_numpy(zero_copy_only=False)
        arr = np.asarray(values)
        if arr.dtype.kind in "iub":
            bits = arr.astype(np.int64, copy=False).view(np.uint64)
        elif arr.dtype.kind == "f":
            f64 = arr.astype(np.float64) + 0.0  # turns -0.0 into 0.0
            bits = f64.view(np.uint64)
        else:
            codes, uniques = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=False)
        if arr.dtype.kind in "iubf":
            with np.errstate(over="ignore"):
                return _mix(_mix(bits ^ k1) + k2 * _GOLDEN)
    key = k1.tobytes()
    uh = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(u).encode(), key=key, digest_size=8).digest(),
                        "little") for u in uniques),
        dtype=np.uint64, count=len(uniques),
    )
    bits = uh[codes]
    with np.errstate(over="ignore"):
        return _mix(_mix(bits ^ k1) + k2 * _GOLDEN)


def _rehash(unit_hash: U64, seed: int, salt: int) -> U64:
    """A second keyed hash derived from a unit hash (a bijection of it): no second pass over
    the (possibly text) unit values is needed."""
    k1, k2 = _keys(seed, salt)
    with np.errstate(over="ignore"):
        return _mix(_mix(unit_hash ^ k1) + k2 * _GOLDEN)


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
    roles.extend(("hidden", c) for c in spec.hidden)
    for role, col in roles:
        if col not in columns:
            raise _missing_column(path, col, role, list(columns))
    if spec.group and spec.group == spec.id_column:
        raise SplitError(
            f"{path}: the id column and the group column are both {spec.group!r}; the group says "
            "which rows stay together (an event), the id tells the rows of a group apart. Give "
            "as id a column unique within each group (a candidate or hit number), or leave the "
            "group out to split row by row"
        )
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


def allocate(sizes: npt.NDArray[np.int64], targets: list[int]) -> npt.NDArray[np.int64]:
    """Units per (stratum, subset): each subset's total apportioned to the strata by size
    (largest remainder), so totals are exact and each stratum keeps its share within one unit."""
    n_strata = len(sizes)
    alloc = np.zeros((n_strata, 4), dtype=np.int64)
    remaining = sizes.astype(np.int64).copy()
    last = 3 if targets[3] > 0 else 2
    for j in range(4):
        if j == last:
            alloc[:, j] = remaining
            break
        alloc[:, j] = _apportion(targets[j], sizes, remaining)
        remaining -= alloc[:, j]
    return alloc


class _Codes:
    """Codes of a categorical key column, built batch by batch; renumbered in sorted value order
    at the end so that codes do not depend on the row order."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}
        self.frozen: npt.NDArray[np.int64] | None = None

    def encode(self, column: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
        """Codes (in first-seen order until :meth:`freeze`, sorted order after) of ``column``."""
        encoded = pc.dictionary_encode(column)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        local = np.empty(len(encoded.dictionary), dtype=np.int32)
        for i, value in enumerate(encoded.dictionary.to_pylist()):
            code = self._index.get(value)
            if code is None:
                if self.frozen is not None:
                    raise SplitError(f"value {value!r} appeared only in the second pass; the "
                                     "file changed while it was being split, run it again")
                code = self._index[value] = len(self.values)
                self.values.append(value)
            local[i] = code if self.frozen is None else self.frozen[code]
        # One byte a row while there are at most 256 values (labels and strata usually are).
        small = local.astype(np.uint8) if len(self.values) <= 256 else local
        out: npt.NDArray[Any] = small[encoded.indices.to_numpy(zero_copy_only=False)]
        return out

    def freeze(self) -> npt.NDArray[np.int64]:
        """Switch to sorted codes (later :meth:`encode` calls return them and refuse new values);
        returns the map from first-seen codes to sorted codes."""
        order = sorted(range(len(self.values)), key=lambda i: self.values[i])
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        self.frozen = remap
        return remap

    @property
    def names(self) -> list[str]:
        return [str(v) for v in sorted(self.values)]


def _missing(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_] | None:
    """Mask of empty cells (null, or NaN in a float column), or None when there are none."""
    mask = pc.is_null(column, nan_is_null=True)
    if not pc.any(mask).as_py():
        return None
    out: npt.NDArray[np.bool_] = mask.to_numpy(zero_copy_only=False)
    return out


@dataclass
class _Keys:
    """What pass 1 keeps for pass 2: per row the unit hash, the subset and (when reweighting)
    the class code; plus the per-subset statistics of the report."""

    n_rows: int
    unit_hash: U64
    subset: npt.NDArray[np.uint8]
    class_code: npt.NDArray[Any] | None
    ids_sorted: bool
    label_names: list[str]
    class_names: list[str]
    factors: npt.NDArray[np.float64]  # [subset, class] weight factor
    unit_subset_counts: list[int]
    counts: npt.NDArray[np.int64]  # [subset, label] rows
    wsums: npt.NDArray[np.float64] | None  # [subset, label] weights after reweighting


def _is_increasing(column: pa.Array | pa.ChunkedArray, previous: Any) -> tuple[bool, Any]:
    n = len(column)
    if n == 0:
        return True, previous
    ok = n < 2 or not pc.any(pc.less_equal(column.slice(1), column.slice(0, n - 1))).as_py()
    first, last = column[0].as_py(), column[n - 1].as_py()
    if previous is not None and not first > previous:
        ok = False
    return bool(ok), last


def _read_keys(source: Source, spec: SplitSpec, path: str, key_cols: list[str]) -> _Keys:
    """Pass 1: read the key columns batch by batch, validate them and assign every row."""
    hashes: list[U64] = []
    pair_hashes: list[U64] = []
    weights: list[npt.NDArray[np.float64]] = []
    # Label, stratum and class are often the same column: each column is encoded once.
    categorical = list(dict.fromkeys(c for c in (spec.label_column, spec.stratify,
                                                 spec.class_column if spec.reweight else None)
                                     if c))
    codes = {c: _Codes() for c in categorical}
    parts: dict[str, list[npt.NDArray[Any]]] = {c: [] for c in categorical}
    ids_sorted, last_id = True, None
    offset = 0
    text = [c for c in categorical if c not in (spec.id_column, spec.group)
            and (pa.types.is_string(source.schema.field(c).type)
                 or pa.types.is_large_string(source.schema.field(c).type))]
    for batch in source.iter_batches(key_cols, categorical=text):
        m = batch.num_rows
        ids = batch.column(spec.id_column)
        bad = _missing(ids)
        if bad is not None:
            raise SplitError(
                f"{path}: the id column {spec.id_column!r} is empty at row "
                f"{offset + _first_bad_row(bad) + 1}; every row needs an id"
            )
        bad = _missing(batch.column(spec.label_column))
        if bad is not None:
            raise SplitError(
                f"{path}: the label column {spec.label_column!r} is empty at row "
                f"{offset + _first_bad_row(bad) + 1} ({int(bad.sum())} rows in this part of "
                "the file); every row needs a label: fill them or drop those rows"
            )
        if spec.stratify:
            bad = _missing(batch.column(spec.stratify))
            if bad is not None:
                raise SplitError(
                    f"{path}: the stratify column {spec.stratify!r} is empty at row "
                    f"{offset + _first_bad_row(bad) + 1}; fill it or stratify by another column"
                )
        if ids_sorted and not spec.group:
            ids_sorted, last_id = _is_increasing(ids, last_id)
        if spec.group:
            ids_sorted = False
            grp = batch.column(spec.group)
            gbad = _missing(grp)
            if pa.types.is_string(grp.type) or pa.types.is_large_string(grp.type):
                empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(grp), ""), True)
                gbad = empty.to_numpy(zero_copy_only=False)
                gbad = gbad if gbad.any() else None
            if gbad is not None:
                raise SplitError(
                    f"{path}: the group column {spec.group!r} is empty at row "
                    f"{offset + _first_bad_row(gbad) + 1}; give every row a group value or "
                    "drop it"
                )
            unit = keyed_hash(grp, spec.seed, salt=1)
            pair_hashes.append(_rehash(unit ^ keyed_hash(ids, spec.seed, salt=3), spec.seed, 4))
        else:
            unit = keyed_hash(ids, spec.seed, salt=1)
        hashes.append(unit)
        for column in categorical:
            parts[column].append(codes[column].encode(batch.column(column)))
        if spec.weight_column:
            wcol = batch.column(spec.weight_column)
            if not (pa.types.is_integer(wcol.type) or pa.types.is_floating(wcol.type)):
                raise SplitError(
                    f"{path}: the weight column {spec.weight_column!r} is not numeric "
                    f"(type {wcol.type}); it must hold numbers only"
                )
            w = wcol.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            wbad = ~np.isfinite(w)
            if wbad.any():
                raise SplitError(
                    f"{path}: the weight column {spec.weight_column!r} is empty or infinite at "
                    f"row {offset + _first_bad_row(wbad) + 1}; every weight must be a finite "
                    "number"
                )
            weights.append(w)
        offset += m
    n = offset
    unit_hash = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    del hashes
    if not ids_sorted:  # strictly increasing ids are unique: no check needed
        _check_unique(source, spec, path,
                      np.concatenate(pair_hashes) if spec.group else unit_hash)
    del pair_hashes

    def gather(column: str) -> npt.NDArray[Any]:
        # Codes were numbered as values appeared; renumber them in sorted value order.
        if codes[column].frozen is None:
            codes[column].freeze()
        remap = codes[column].frozen
        assert remap is not None
        out = np.empty(n, dtype=np.uint8 if len(remap) <= 256 else np.int32)
        start = 0
        for part in parts[column]:
            out[start: start + len(part)] = remap[part]
            start += len(part)
        return out

    if spec.stratify:
        stratum, n_strata = gather(spec.stratify), len(codes[spec.stratify].values)
    else:
        stratum, n_strata = np.zeros(n, dtype=np.uint8), 1
    subset, unit_counts = _assign(source, spec, path, unit_hash, stratum, n_strata)
    del stratum
    weight = (np.concatenate(weights) if weights else np.zeros(0)) if spec.weight_column \
        else None
    del weights
    factors = np.ones((4, 1), dtype=np.float64)
    class_code: npt.NDArray[Any] | None = None
    if spec.reweight and weight is not None:
        class_code = gather(spec.class_column)
        factors = _weight_factors(spec, path, subset, class_code, weight,
                                  codes[spec.class_column].names)
    label_code = gather(spec.label_column)
    parts.clear()
    n_labels = len(codes[spec.label_column].values)
    cell = subset.astype(np.intp) * n_labels + label_code
    del label_code
    counts = np.bincount(cell, minlength=4 * n_labels).reshape(4, n_labels)
    wsums: npt.NDArray[np.float64] | None = None
    if weight is not None:
        if class_code is not None:
            weight *= factors[subset, class_code]
        wsums = np.bincount(cell, weights=weight, minlength=4 * n_labels).reshape(
            4, n_labels).astype(np.float64)
    del cell, weight
    return _Keys(n_rows=n, unit_hash=unit_hash, subset=subset, class_code=class_code,
                 ids_sorted=ids_sorted, label_names=codes[spec.label_column].names,
                 class_names=codes[spec.class_column].names if class_code is not None else [],
                 factors=factors,
                 unit_subset_counts=unit_counts, counts=counts, wsums=wsums)


def _check_unique(source: Source, spec: SplitSpec, path: str, row_hash: U64) -> None:
    """Refuse duplicated ids (or (group, id) pairs). Equal ids have equal hashes; only when two
    hashes are equal are the values themselves read again, to name the row."""
    if len(row_hash) < 2:
        return
    ordered = np.sort(row_hash)
    if not np.any(ordered[1:] == ordered[:-1]):
        return
    del ordered
    cols = [spec.id_column, *([spec.group] if spec.group else [])]
    frame = pa.Table.from_batches(list(source.iter_batches(cols))).to_pandas()
    dup = frame.duplicated().to_numpy()
    if dup.any():
        row = _first_bad_row(dup)
        what = (f"(group {spec.group!r}, id {spec.id_column!r}) pair" if spec.group
                else f"id in column {spec.id_column!r}")
        raise SplitError(
            f"{path}: duplicated {what} at row {row + 1} (value "
            f"{frame[spec.id_column].tolist()[row]!r}, {int(dup.sum())} duplicates in all); ids must "
            "be unique" + ("" if spec.group else
                           ", or set group if rows sharing an id belong together")
        )
    raise SplitError(
        f"{path}: two different ids of column {spec.id_column!r} have the same 64-bit hash "
        f"under seed {spec.seed} (a one-in-billions chance); change the split's seed"
    )


def _assign(source: Source, spec: SplitSpec, path: str, unit_hash: U64,
            stratum: npt.NDArray[Any], n_strata: int) -> tuple[npt.NDArray[np.uint8], list[int]]:
    """Subset of every row: inside each stratum, units ranked by hash are cut at exact counts.

    The cuts are found as hash values (``np.partition``, linear time) and each row compares its
    unit hash with its stratum's cut values, so no per-row rank or sort index is kept.
    """
    per_stratum: list[U64] = []
    for s in range(n_strata):
        h = unit_hash[stratum == s] if n_strata > 1 else unit_hash.copy()
        per_stratum.append(_distinct(h) if spec.group else h)
        del h
    sizes = np.array([len(h) for h in per_stratum], dtype=np.int64)
    n_units = int(sizes.sum())
    if spec.group and n_strata > 1 and n_units != len(_distinct(unit_hash)):
        _explain_mixed_group(source, spec, path)
    targets = target_counts(spec, n_units, "groups" if spec.group else "rows")
    alloc = allocate(sizes, targets)
    cuts = np.cumsum(alloc, axis=1)[:, :3]
    cut_hash = np.zeros((n_strata, 3), dtype=np.uint64)
    cut_valid = np.zeros((n_strata, 3), dtype=bool)
    for s, h in enumerate(per_stratum):
        kth = sorted({int(c) for c in cuts[s] if c < len(h)})
        if kth:
            h.partition(kth)
            for j in range(3):
                if cuts[s, j] < len(h):
                    cut_hash[s, j] = h[cuts[s, j]]
                    cut_valid[s, j] = True
    del per_stratum
    subset = np.zeros(len(unit_hash), dtype=np.uint8)
    step = 1 << 20
    for start in range(0, len(unit_hash), step):
        h = unit_hash[start: start + step]
        st = stratum[start: start + step].astype(np.intp)
        part = subset[start: start + step]
        for j in range(3):
            part += (h >= cut_hash[st, j]) & cut_valid[st, j]
    return subset, [int(c) for c in alloc.sum(axis=0)]


def _explain_mixed_group(source: Source, spec: SplitSpec, path: str) -> None:
    assert spec.group
    assert spec.stratify
    frame = pa.Table.from_batches(
        list(source.iter_batches([spec.group, spec.stratify]))).to_pandas()
    first = frame.groupby(spec.group, sort=False)[spec.stratify].transform("first")
    mixed = (frame[spec.stratify] != first).to_numpy()
    row = _first_bad_row(mixed)
    value = frame[spec.group].tolist()[row]
    raise SplitError(
        f"{path}: group {value!r} mixes several values of the stratify "
        f"column {spec.stratify!r} (row {row + 1}); stratify by a column that is constant within "
        "each group, or drop stratify"
    )


def _weight_factors(spec: SplitSpec, path: str, subset: npt.NDArray[np.uint8],
                    class_code: npt.NDArray[Any], weight: npt.NDArray[np.float64],
                    class_names: list[str]) -> npt.NDArray[np.float64]:
    k = len(class_names)
    cell = subset.astype(np.intp) * k + class_code
    sums = np.bincount(cell, weights=weight, minlength=4 * k).reshape(4, k)
    present = np.bincount(subset, minlength=4) > 0
    totals = sums.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(sums > 0, totals[None, :] / sums, 1.0)
    for j in (TRAIN, PUBLIC, PRIVATE):
        for c in range(k):
            if sums[j, c] == 0 and totals[c] != 0 and present[j]:
                # A class absent from a subset cannot be renormalised; say so instead of
                # silently producing wrong totals.
                raise SplitError(
                    f"{path}: class {class_names[c]!r} of {spec.class_column!r} has no weight "
                    f"in subset {SUBSETS[j]}; stratify by {spec.class_column!r} or make the "
                    "subset larger"
                )
    out: npt.NDArray[np.float64] = factors
    return out


# --------------------------------------------------------------------------- sources


class Source(Protocol):
    """A table to split, read twice: key columns first, then all columns, in record batches."""

    name: str

    @property
    def schema(self) -> pa.Schema: ...

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` (all when None), in file order. ``categorical`` names
        text columns with few values that may come back dictionary-encoded."""
        ...


class ParquetSource:
    """A Parquet file streamed by record batches (never loaded whole)."""

    def __init__(self, path: Path, batch_rows: int = _BATCH_ROWS) -> None:
        self.name = str(path)
        self.path = path
        self.batch_rows = batch_rows
        try:
            # Without pre-buffering the reader holds one column chunk at a time, not a whole row
            # group: less memory, and no slower here.
            self._file = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SplitError(
                f"{path}: not a readable Parquet file ({exc}); it is probably truncated or "
                "corrupt, write it again"
            ) from exc

    @property
    def schema(self) -> pa.Schema:
        return self._file.schema_arrow

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        source = self._file
        if categorical:
            # Few distinct labels: reading them as a dictionary skips building millions of
            # small strings.
            source = pq.ParquetFile(self.path, read_dictionary=list(categorical),
                                    pre_buffer=False)
        try:
            yield from source.iter_batches(batch_size=self.batch_rows, columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SplitError(f"{self.path}: cannot be read ({exc}); the file is corrupt") from exc


class CsvSource:
    """A CSV (or .csv.gz) file streamed twice with pyarrow's block reader.

    Column types are fixed from a first read of the leading block (pyarrow's inference), so both
    passes parse every value the same way; a cell that does not fit its column's type is named
    by column and line.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.path = path
        try:
            self._schema = csv_schema(path)
        except FormatError as exc:
            raise SplitError(str(exc)) from exc

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        try:
            yield from iter_csv_batches(self.path, schema=self._schema, columns=columns)
        except FormatError as exc:
            raise SplitError(str(exc)) from exc


class TableSource:
    """A table already in memory (HDF5, ROOT inputs, or a DataFrame)."""

    def __init__(self, table: pa.Table, name: str, batch_rows: int = _BATCH_ROWS) -> None:
        self.name = name
        self.table = table
        self.batch_rows = batch_rows

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        table = self.table.select(columns) if columns is not None else self.table
        yield from table.to_batches(max_chunksize=self.batch_rows)


#: The id that is a row's position in the input file (0, 1, 2 ...): ``--id @row`` for a file with
#: no column unique per row (a dimuon file with several candidates per event).
ROW_ID = "@row"


class RowIdSource:
    """A source with one more column, :data:`ROW_ID`: each row's position in the file.

    Both passes read the file from its start, so a row gets the same number in each.
    """

    def __init__(self, inner: Source) -> None:
        self.name = inner.name
        self.inner = inner
        if ROW_ID in inner.schema.names:
            raise SplitError(f"{inner.name}: has a column named {ROW_ID!r} already; rename it "
                             f"or use it as the id under its own name")

    @property
    def schema(self) -> pa.Schema:
        return self.inner.schema.append(pa.field(ROW_ID, pa.int64()))

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        wanted = None if columns is None else [c for c in columns if c != ROW_ID]
        start = 0
        for batch in self.inner.iter_batches(wanted, categorical):
            rows = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
            start += batch.num_rows
            names = [*batch.schema.names, ROW_ID]
            full = pa.RecordBatch.from_arrays([*batch.columns, rows], names=names)
            yield full if columns is None else full.select(columns)


def open_source(path: Path) -> ParquetSource | CsvSource | TableSource:
    """Source for a file: Parquet and CSV are streamed, HDF5 and ROOT are read whole."""
    path = Path(path)
    if not path.exists():
        raise SplitError(f"{path}: no such file")
    try:
        fmt = table_format(path)
        if fmt == "parquet":
            return ParquetSource(path)
        if fmt == "csv":
            return CsvSource(path)
        return TableSource(read_arrow(path), str(path))
    except FormatError as exc:
        raise SplitError(str(exc)) from exc


# --------------------------------------------------------------------------- writing


class _ShuffledWriter:
    """Writes rows to a Parquet file ordered by a 64-bit key (then input row), via buckets.

    Rows are routed by the key's high bits into ``n_buckets`` equal hash ranges (Arrow IPC
    temporary files); :meth:`close` sorts one bucket at a time (the next one is read and sorted
    on a second thread while the current one is encoded) and appends it as a row group.
    """

    def __init__(self, out: Path, schema: pa.Schema, n_rows: int, tmpdir: Path,
                 name: str) -> None:
        self.out = out
        self.schema = schema
        row_bytes = max(8, sum(max(8, f.type.bit_width // 8 if pa.types.is_primitive(f.type)
                                   else 24) for f in schema))
        self.n_buckets = max(1, min(4096, -(-n_rows * row_bytes // _BUCKET_BYTES)))
        self._bucket_schema = schema.append(pa.field("__key", pa.uint64())).append(
            pa.field("__row", pa.int64()))
        self._paths = [tmpdir / f"{name}-{b}.arrow" for b in range(self.n_buckets)]
        self._sinks: list[ipc.RecordBatchStreamWriter | None] = [None] * self.n_buckets

    def write(self, table: pa.Table, rows: npt.NDArray[np.int64], key: U64,
              row_index: npt.NDArray[np.int64]) -> None:
        """Append rows ``rows`` of ``table`` with their order keys and input row numbers."""
        if len(rows) == 0:
            return
        # High 32 bits times the bucket count: equal hash ranges, no division of 64-bit values.
        bucket = ((key >> np.uint64(32)) * np.uint64(self.n_buckets)) >> np.uint64(32)
        order = np.argsort(bucket, kind="stable")
        # One gather takes the rows out of the batch already grouped by bucket; each bucket is
        # then a zero-copy slice.
        part = table.take(pa.array(rows[order])).append_column(
            "__key", pa.array(key[order], pa.uint64())).append_column(
            "__row", pa.array(row_index[order], pa.int64()))
        counts = np.bincount(bucket.astype(np.intp), minlength=self.n_buckets)
        start = 0
        for b in np.flatnonzero(counts):
            self._sink(int(b)).write_table(part.slice(start, int(counts[b])))
            start += int(counts[b])

    def _sink(self, b: int) -> ipc.RecordBatchStreamWriter:
        sink = self._sinks[b]
        if sink is None:
            sink = ipc.new_stream(str(self._paths[b]), self._bucket_schema)
            self._sinks[b] = sink
        return sink

    def _sorted_bucket(self, b: int) -> pa.Table | None:
        if self._sinks[b] is None:
            return None
        with pa.memory_map(str(self._paths[b])) as source:
            table = ipc.open_stream(source).read_all()
        order = np.lexsort((table.column("__row").to_numpy(), table.column("__key").to_numpy()))
        out = table.drop_columns(["__key", "__row"]).take(pa.array(order))
        del table
        self._paths[b].unlink()
        return out

    def close(self) -> None:
        for sink in self._sinks:
            if sink is not None:
                sink.close()
        with pq.ParquetWriter(self.out, self.schema) as writer, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-bucket") as pool:
            ahead = pool.submit(self._sorted_bucket, 0)
            for b in range(self.n_buckets):
                table = ahead.result()
                if b + 1 < self.n_buckets:
                    ahead = pool.submit(self._sorted_bucket, b + 1)
                if table is not None:
                    writer.write_table(table)
                del table


class _SolutionWriter:
    """Writes the solution sorted by (group, id): streamed when the input is already in that
    order, otherwise gathered (id, label, weight, usage: ~20-30 bytes a test row) and sorted."""

    def __init__(self, out: Path, schema: pa.Schema, sort_keys: list[str], in_order: bool
                 ) -> None:
        self.out = out
        self.schema = schema
        self.sort_keys = sort_keys
        self.in_order = in_order
        self._parts: list[pa.Table] = []
        self._writer = pq.ParquetWriter(out, schema) if in_order else None

    def write(self, table: pa.Table) -> None:
        if self._writer is not None:
            self._writer.write_table(table)
        elif table.num_rows:
            self._parts.append(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            return
        table = pa.concat_tables(self._parts) if self._parts else self.schema.empty_table()
        self._parts = []
        table = table.sort_by([(k, "ascending") for k in self.sort_keys])
        pq.write_table(table, self.out)


_ROW_SEED = 0x243F6A8885A308D3


def _row_hashes(table: pa.Table | pa.RecordBatch, columns: list[str]) -> U64:
    """64-bit hash of each row's values over ``columns`` (same values -> same hash).

    A sum of each column's 64-bit pattern times its own odd multiplier, finished by one mix: two
    multiply-adds per cell, in place. Rows that differ in one column never collide (odd
    multipliers are invertible modulo 2^64).
    """
    n = table.num_rows
    h = np.zeros(n, dtype=np.uint64)
    tmp = np.empty(n, dtype=np.uint64)
    f64 = np.empty(n, dtype=np.float64)
    with np.errstate(over="ignore"):
        for i, name in enumerate(columns):
            col = table.column(name)
            mult = np.uint64((_ROW_SEED * (2 * i + 3)) & 0xFFFFFFFFFFFFFFFF | 1)
            if pa.types.is_floating(col.type):
                np.add(col.to_numpy(zero_copy_only=False), 0.0, out=f64)  # -0.0 equals 0.0
                bits = f64.view(np.uint64)
            elif pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
                bits = col.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
            elif pa.types.is_nested(col.type):
                bits = nested_hash(col)
            else:
                bits = keyed_hash(col, 0, salt=5)
            np.multiply(bits, mult, out=tmp)
            np.add(h, tmp, out=h)
        return _mix(h)


def nested_hash(col: pa.Array | pa.ChunkedArray) -> U64:
    """64-bit hash of each row of a jagged column (a list per row): equal lists, equal hashes.

    Each element is mixed with its place in its list, the row's elements are summed (a
    difference of running sums, no Python loop) and the length mixed in.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)) or \
            pa.types.is_nested(arr.type.value_type):
        # Deeper nesting (lists of lists, records): hash the text of each row.
        return keyed_hash(pa.array([repr(v) for v in arr.to_pylist()], pa.string()), 0, salt=9)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(arr)
    if pa.types.is_floating(flat.type):
        values = (flat.to_numpy(zero_copy_only=False).astype(np.float64) + 0.0).view(np.uint64)
    elif pa.types.is_integer(flat.type) or pa.types.is_boolean(flat.type):
        values = flat.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    else:
        values = keyed_hash(flat, 0, salt=7)
    ends = np.cumsum(lengths, dtype=np.int64)
    starts = ends - lengths
    place = (np.arange(len(flat), dtype=np.int64) - np.repeat(starts, lengths)).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = _mix(values ^ (place * _GOLDEN))
        running = np.concatenate([np.zeros(1, np.uint64), np.cumsum(mixed, dtype=np.uint64)])
        sums = running[ends] - running[starts]
        out: U64 = _mix(sums + lengths.astype(np.uint64) * _M1 + np.uint64(n > -1))
    return out


_MARK_BITS = 26


def _candidates(values: U64, pool: U64) -> tuple[U64, U64]:
    """The parts of ``values`` and ``pool`` that may share values, found with a 64 MiB table
    indexed by the top 26 bits of these (well-mixed) hashes: a gather and a scatter per value
    instead of sorting millions of random 64-bit numbers."""
    if len(values) + len(pool) < 1 << 16:
        return values, pool
    shift = np.uint64(64 - _MARK_BITS)
    mark = np.zeros(1 << _MARK_BITS, dtype=np.bool_)
    mark[(pool >> shift).astype(np.intp)] = True
    values = values[mark[(values >> shift).astype(np.intp)]]
    mark[:] = False
    mark[(values >> shift).astype(np.intp)] = True
    pool = pool[mark[(pool >> shift).astype(np.intp)]]
    return values, pool


def _count_in(values: U64, pool: U64) -> int:
    """How many of ``values`` occur in ``pool``."""
    values, pool = _candidates(values, pool)
    if not len(values) or not len(pool):
        return 0
    return int(np.count_nonzero(np.isin(values, pool, kind="sort")))


def _distinct(x: U64) -> U64:
    """Sorted distinct values (a sort: numpy's hash-based ``unique`` is slower on uint64)."""
    x = np.sort(x)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    out: U64 = x[keep]
    return out


def _count_shared(a: U64, b: U64) -> int:
    """Number of distinct values present in both ``a`` and ``b``."""
    b, a = _candidates(b, a)
    return _count_in(_distinct(b), _distinct(a))


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
    unit = spec.group or spec.id_column
    # Read back from the written files: the check is about what will be published.
    tr = keyed_hash(pq.read_table(public_dir / "train.parquet", columns=[unit]).column(unit),
                    0, 99)
    te = keyed_hash(pq.read_table(public_dir / "test.parquet", columns=[unit]).column(unit),
                    0, 99)
    n_test = len(te)
    shared = _count_shared(tr, te)
    del tr, te
    checks.append(LeakageCheck(
        "no_id_in_two_subsets", shared == 0,
        f"{shared} {unit} values appear in both train and test" if shared
        else f"no {unit} value is in both train and test",
    ))
    n_sol = pq.ParquetFile(hidden_dir / "solution.parquet").metadata.num_rows
    checks.append(LeakageCheck(
        "solution_matches_test", n_test == n_sol,
        f"test.parquet has {n_test} rows, solution.parquet {n_sol}",
    ))
    dup = _count_in(test_hash, train_hash)
    checks.append(LeakageCheck(
        "no_identical_feature_rows_across_train_and_test", dup == 0,
        f"{dup} test rows have exactly the same feature values as a train row" if dup
        else "no test row repeats the features of a train row",
    ))
    return checks


@dataclass
class _Layout:
    """Output schemas and column lists."""

    schema: pa.Schema  # normalised input schema (train file)
    input_schema: pa.Schema
    test_schema: pa.Schema
    sol_schema: pa.Schema
    test_cols: list[str]
    sol_cols: list[str]
    feature_cols: list[str]


def _write_outputs(source: Source, spec: SplitSpec, keys: _Keys, lay: _Layout,
                   partial: dict[str, Path], tmpdir: Path, train_hashes: list[U64],
                   test_hashes: list[U64], report_progress: Progress) -> None:
    """Pass 2: stream the source and write the three outputs."""
    path = source.name
    n = keys.n_rows
    widx = lay.schema.get_field_index(spec.weight_column) if spec.weight_column else -1
    n_test = int(np.count_nonzero((keys.subset == PUBLIC) | (keys.subset == PRIVATE)))
    train_w = pq.ParquetWriter(partial["train"], lay.schema)
    test_w = _ShuffledWriter(partial["test"], lay.test_schema, n_test, tmpdir, "test")
    sol_w = _SolutionWriter(partial["solution"], lay.sol_schema,
                            [*([spec.group] if spec.group else []), spec.id_column],
                            keys.ids_sorted)
    offset = 0
    # Parquet encoding releases the GIL: the train file is encoded on a second thread while this
    # one reads and routes the next batch. At most one batch waits, which bounds memory.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-split-writer")
    pending: Future[None] | None = None
    try:
        for batch in source.iter_batches():
            m = batch.num_rows
            if offset + m > n:
                raise SplitError(f"{path}: has more rows in pass 2 than the {n} of pass 1; the "
                                 "file changed while it was being split, run the split again")
            sub = keys.subset[offset: offset + m]
            table = pa.Table.from_batches([batch])
            if table.schema.remove_metadata() != lay.input_schema:
                table = table.cast(lay.input_schema)
            if spec.weight_column and keys.class_code is not None:
                factor = keys.factors[sub, keys.class_code[offset: offset + m]]
                w = table.column(spec.weight_column).to_numpy(zero_copy_only=False).astype(
                    np.float64) * factor
                table = table.set_column(widx, spec.weight_column, pa.array(w, pa.float64()))
            row_hash = _row_hashes(table, lay.feature_cols)
            train_mask = sub == TRAIN
            if train_mask.any():
                t = table.filter(pa.array(train_mask)).cast(lay.schema)
                if pending is not None:
                    pending.result()
                pending = pool.submit(train_w.write_table, t)
                train_hashes.append(row_hash[train_mask])
            test_mask = (sub == PUBLIC) | (sub == PRIVATE)
            if test_mask.any():
                test_rows = np.flatnonzero(test_mask)
                order_key = _rehash(keys.unit_hash[offset: offset + m][test_rows], spec.seed, 2)
                test_w.write(table.select(lay.test_cols), test_rows, order_key,
                             test_rows + offset)
                test_hashes.append(row_hash[test_mask])
                usage = pa.DictionaryArray.from_arrays(
                    pa.array((sub[test_mask] == PRIVATE).astype(np.int8)),
                    pa.array(["Public", "Private"])).cast(pa.string())
                sol = table.select(lay.sol_cols).filter(pa.array(test_mask))
                sol_w.write(sol.append_column(USAGE_COLUMN, usage).cast(lay.sol_schema))
            offset += m
            report_progress(0.1 + 0.7 * offset / max(n, 1), f"wrote {offset} of {n} rows")
        if pending is not None:
            pending.result()
    finally:
        pool.shutdown()
        train_w.close()
    if offset != n:
        raise SplitError(f"{path}: read {offset} rows in pass 2 but {n} in pass 1; the file "
                         "changed while it was being split, run the split again")
    sol_w.close()
    report_progress(0.8, "shuffling the test rows")
    test_w.close()


def _layout(schema: pa.Schema, spec: SplitSpec) -> _Layout:
    hidden_cols = {spec.label_column, *([spec.weight_column] if spec.weight_column else []),
                   *spec.hidden}
    test_cols = [c for c in schema.names if c not in hidden_cols]
    feature_cols = [c for c in test_cols if c not in (spec.id_column, spec.group)]
    sol_cols = [spec.id_column, *([spec.group] if spec.group else []), spec.label_column,
                *([spec.weight_column] if spec.weight_column else []),
                *(c for c in spec.hidden if c not in (spec.label_column, spec.weight_column))]
    test_schema = pa.schema([schema.field(c) for c in test_cols])
    sol_schema = pa.schema([schema.field(c) for c in sol_cols] + [pa.field(USAGE_COLUMN,
                                                                          pa.string())])
    input_schema = schema
    if spec.reweight and spec.weight_column:
        schema = schema.set(schema.get_field_index(spec.weight_column),
                            pa.field(spec.weight_column, pa.float64()))
        sol_schema = sol_schema.set(sol_schema.get_field_index(spec.weight_column),
                                    pa.field(spec.weight_column, pa.float64()))
    return _Layout(schema, input_schema, test_schema, sol_schema, test_cols, sol_cols,
                   feature_cols)


def split_source(
    source: Source,
    public_dir: Path,
    hidden_dir: Path,
    spec: SplitSpec,
    progress: Progress | None = None,
) -> SplitReport:
    """Split any :class:`Source` (see :func:`split_file`)."""
    report_progress: Progress = progress or (lambda _f, _m: None)
    if ROW_ID in (spec.id_column, spec.group) and not isinstance(source, RowIdSource):
        source = RowIdSource(source)
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
    keys = _read_keys(source, spec, path, key_cols)
    report_progress(0.1, "assigned rows")

    public_dir.mkdir(parents=True, exist_ok=True)
    hidden_dir.mkdir(parents=True, exist_ok=True)
    lay = _layout(schema, spec)
    outputs = {
        "train": public_dir / "train.parquet",
        "test": public_dir / "test.parquet",
        "solution": hidden_dir / "solution.parquet",
    }
    train_hashes: list[U64] = []
    test_hashes: list[U64] = []
    with tempfile.TemporaryDirectory(prefix="podium-split-", dir=hidden_dir) as tmp:
        # Each output is written next to its final place and renamed when complete, so a failed
        # split never leaves a file that looks finished.
        partial = {k: v.with_name(v.name + ".partial") for k, v in outputs.items()}
        try:
            _write_outputs(source, spec, keys, lay, partial, Path(tmp), train_hashes,
                                   test_hashes, report_progress)
        except BaseException:
            for p in partial.values():
                p.unlink(missing_ok=True)
            raise
        for k, p in partial.items():
            p.replace(outputs[k])
    # The largest per-row array is no longer needed; the checks below need their own memory.
    keys.unit_hash = np.zeros(0, np.uint64)
    keys.class_code = None
    report_progress(0.9, "checking for leakage")
    train_h = np.concatenate(train_hashes) if train_hashes else np.zeros(0, np.uint64)
    del train_hashes
    test_h = np.concatenate(test_hashes) if test_hashes else np.zeros(0, np.uint64)
    del test_hashes
    checks = _leakage_checks(public_dir, hidden_dir, spec, train_h, test_h)
    del train_h, test_h

    label_names = keys.label_names
    subsets: dict[str, SubsetStats] = {}
    for j, name in enumerate(SUBSETS):
        present = np.flatnonzero(keys.counts[j] > 0).tolist()
        classes = present if len(label_names) <= MAX_REPORTED_CLASSES else []
        stats = SubsetStats(rows=int(keys.counts[j].sum()), groups=keys.unit_subset_counts[j],
                            label_values=len(present),
                            class_counts={label_names[c]: int(keys.counts[j, c])
                                          for c in classes})
        if keys.wsums is not None:
            stats.weight_sum = float(keys.wsums[j].sum())
            stats.class_weights = {label_names[c]: float(keys.wsums[j, c]) for c in classes}
        subsets[name] = stats
    factors = {}
    if keys.class_names:
        factors = {SUBSETS[j]: {c: float(keys.factors[j, i]) for i, c in
                                enumerate(keys.class_names)} for j in range(3)}
    report_progress(1.0, "done")
    return SplitReport(
        input_path=path,
        seed=spec.seed,
        total_rows=keys.n_rows,
        unused_rows=int(np.count_nonzero(keys.subset == UNUSED)),
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

    Input formats: CSV (also ``.csv.gz``) and Parquet (both streamed by record batches), HDF5,
    ROOT. ``progress(fraction, message)`` is called as the work advances. Raises
    :class:`SplitError` naming the file, row or column for bad input; outputs appear only when
    complete.
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
