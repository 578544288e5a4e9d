"""The holdout ledger: which rows each challenge hides, by dataset lineage and by content.

A row hidden in a challenge (its public or private test part) must never be published with its
label while that challenge holds it. When a challenge is prepared its hidden rows are recorded
here twice: by *content*, a 64-bit hash of each row's feature values (ids, labels, weights and
other truth columns excluded, so a copy under another dataset name or with new ids is caught),
and by *lineage*, the dataset version it was split from plus a hash of each hidden row's id (a
version derived from that one, e.g. a systematic-shifted copy that keeps the ids, is caught even
though its feature values changed). :meth:`HoldoutLedger.find` answers, for a table about to be
published, which entries hold some of its rows and how many.

Content hashes are canonical across formats: columns are taken by name (any order), every
numeric value is compared as float32 (so int and float columns, float32 and float64 files and a
CSV round trip of either agree; a null is a NaN; -0.0 is 0.0), strings by a keyed hash of their
text. Undefined markers (-999.0, -25) are ordinary values. The hash is a sum of 64-bit words (two
float32 values side by side, or a string's hash) each times its own random odd multiplier,
finished by a splitmix64 mix: two rows that differ in one value never collide (ten million
generated HiggsML rows: no collision). It is a guard against mistakes and careless reuse, not
against an organizer who means to leak (who could always mail the labels): a row whose features
are changed by even one float32 step, or renamed columns, escapes the content check.

Layout under the ledger root (no labels are stored, only hashes of test-set features, which
participants download anyway)::

    ROOT/HOLDER.json          the entry (see :class:`LedgerEntry`)
    ROOT/HOLDER.rows.npy      sorted distinct content hashes of the hidden rows (uint64)
    ROOT/HOLDER.ids.npy       sorted distinct id hashes of the hidden rows (uint64)
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from splitter.split import keyed_hash, nested_hash

U64 = npt.NDArray[np.uint64]
HOLDER_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CHUNK_ROWS = 1 << 16
_SEED = 0x243F6A8885A308D3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ID_SALT = 17
_STRING_SALT = 23


class LedgerError(ValueError):
    """The ledger cannot record or check; the message says what to change."""


def _mix(x: U64) -> U64:
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def _multipliers(count: int) -> list[np.uint64]:
    # Independent odd 64-bit multipliers (splitmix64 of the column's position): an arithmetic
    # progression of multipliers would make the row sum a small-coefficient linear form of the
    # values, and distinct rows would collide by the thousand in ten million.
    state = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN + np.uint64(_SEED)
    return [np.uint64(m | np.uint64(1)) for m in _mix(state)]


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_null(t))


def feature_columns(names: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """The columns a content hash covers: ``names`` minus ``exclude``, sorted by name."""
    skip = set(exclude)
    return sorted(n for n in names if n not in skip)


def _as_numpy(column: pa.Array) -> npt.NDArray[Any]:
    if pa.types.is_boolean(column.type) or pa.types.is_null(column.type):
        column = column.cast(pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False))


_TASK_ROWS = 1 << 18


def _hash_block(arrays: list[tuple[npt.NDArray[Any], bool]], mults: list[np.uint64],
                out: U64) -> None:
    """Hash one block of rows into ``out`` (zeros on entry), a cache-sized run at a time.

    Numbers are rounded to float32 (``x + 0.0`` written into a float32 buffer: one numpy pass
    that also makes -0.0 into 0.0), two columns side by side in one 64-bit word; each word, and
    each string column's keyed hash, is multiplied by its own odd multiplier and summed."""
    n = len(out)
    numeric = [a for a, is_num in arrays if is_num]
    text = [a for a, is_num in arrays if not is_num]
    words = (len(numeric) + 1) // 2
    size = min(_CHUNK_ROWS, max(n, 1))
    pair = np.zeros((size, 2), dtype=np.float32)
    word = pair.view(np.uint64)[:, 0]
    tmp = np.empty(size, dtype=np.uint64)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n)
            m = stop - start
            h = out[start:stop]
            t = tmp[:m]
            for w in range(words):
                for side in (0, 1):
                    if 2 * w + side < len(numeric):
                        np.add(numeric[2 * w + side][start:stop], 0.0, out=pair[:m, side],
                               casting="unsafe")
                    else:
                        pair[:m, side] = 0.0
                np.multiply(word[:m], mults[w], out=t)
                h += t
            for j, arr in enumerate(text):
                np.multiply(arr[start:stop], mults[words + j], out=t)
                h += t
            _mix(h)


def row_hashes(table: pa.Table, columns: Sequence[str], *, threads: int | None = None) -> U64:
    """Canonical 64-bit content hash of each row over ``columns`` (see the module docstring).

    Vectorised over blocks of rows that stay in the CPU cache, two numpy passes a cell: each
    number rounded to float32 into a buffer holding two columns side by side, then each 64-bit
    pair times its own odd multiplier added to the row's sum. Strings give a keyed hash of their
    text instead. The table's record
    batches are read in place (no copy of a chunked column) and hashed on ``threads`` threads
    (default: the CPU count, at most 4; numpy releases the GIL).
    """
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise LedgerError(f"no column(s) {', '.join(missing)} to hash")
    cols = sorted(columns)
    table = table.select(cols)
    n = table.num_rows
    numeric = [_is_numeric(table.schema.field(c).type) for c in cols]
    text = {
        c: nested_hash(table.column(c)) if pa.types.is_nested(table.schema.field(c).type)
        else keyed_hash(table.column(c), 0, _STRING_SALT)
        for c, is_num in zip(cols, numeric, strict=True) if not is_num
    }  # strings by a keyed hash of their text; jagged (list) columns by their values in order
    mults = _multipliers(len(cols))  # at least one per word
    out = np.zeros(n, dtype=np.uint64)
    tasks: list[tuple[list[tuple[npt.NDArray[Any], bool]], U64]] = []
    offset = 0
    for batch in table.to_batches():
        m = batch.num_rows
        arrays = [
            (_as_numpy(batch.column(i)), True) if numeric[i]
            else (text[c][offset: offset + m], False)
            for i, c in enumerate(cols)
        ]
        for start in range(0, m, _TASK_ROWS):
            stop = min(start + _TASK_ROWS, m)
            tasks.append(([(a[start:stop], k) for a, k in arrays],
                          out[offset + start: offset + stop]))
        offset += m
    workers = threads or min(os.cpu_count() or 1, 4)
    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger-hash") as pool:
            for future in [pool.submit(_hash_block, a, mults, o) for a, o in tasks]:
                future.result()
    else:
        for a, o in tasks:
            _hash_block(a, mults, o)
    return out


def id_hashes(values: pa.ChunkedArray | pa.Array | npt.ArrayLike) -> U64:
    """64-bit hash of each id (integers by value, so ``7`` read as int or from CSV agree)."""
    return keyed_hash(values, 0, _ID_SALT)


def distinct(x: U64) -> U64:
    """Sorted distinct values of ``x``."""
    x = np.sort(x)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    out: U64 = x[keep]
    return out


def _count_part(values: U64, pool: U64, mark: npt.NDArray[np.bool_] | None,
                shift: np.uint64) -> int:
    if mark is not None:
        top = np.right_shift(values, shift).view(np.int64)
        values = values[mark[top]]
        if not len(values):
            return 0
    pos = np.searchsorted(pool, values)
    pos[pos == len(pool)] = 0
    return int(np.count_nonzero(pool[pos] == values))


def count_in(values: U64, pool: U64, *, threads: int | None = None) -> int:
    """How many of ``values`` are in ``pool`` (sorted, distinct, well-mixed hashes).

    A table of flags indexed by the top bits of the hashes (16 entries per pool value, at most
    64 MiB) drops almost every value that is not in the pool with one gather each; the few left
    are looked up by binary search. Parts of ``values`` run on ``threads`` threads.
    """
    if not len(values) or not len(pool):
        return 0
    mark: npt.NDArray[np.bool_] | None = None
    shift = np.uint64(0)
    if len(values) > 1 << 12:
        k = min(max(len(pool).bit_length() + 4, 12), 26)
        shift = np.uint64(64 - k)
        mark = np.zeros(1 << k, dtype=np.bool_)
        mark[np.right_shift(pool, shift).view(np.int64)] = True
    parts = [values[i: i + _TASK_ROWS * 4] for i in range(0, len(values), _TASK_ROWS * 4)]
    workers = threads or min(os.cpu_count() or 1, 4)
    if workers > 1 and len(parts) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger-count") as ex:
            return sum(ex.map(lambda part: _count_part(part, pool, mark, shift), parts))
    return sum(_count_part(part, pool, mark, shift) for part in parts)


@dataclass
class LedgerEntry:
    """What one holder (a challenge) hides.

    ``columns`` are the feature columns of the content hash, ``truth_columns`` the columns that
    make a published row *labelled* (label, weight, other truth-derived columns): a table without
    any of them (the public test file itself) publishes no label. ``lineage`` is the dataset
    version split (``NAME:N``) and its ancestors; ``id_column`` names the id whose hashes are kept
    for the lineage check.
    """

    holder: str
    rows: int
    columns: list[str]
    truth_columns: list[str]
    id_column: str
    lineage: list[str] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)


@dataclass
class Hit:
    """Rows of a table that ``holder`` hides: by content, or by id within the holder's lineage."""

    holder: str
    rows: int
    by: str  # "content" | "lineage"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _npy_bytes(values: U64) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


class HoldoutLedger:
    """The ledger under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def holders(self) -> list[str]:
        """Names of every holder with an entry."""
        if not self.root.is_dir():
            return []
        return sorted(p.name.removesuffix(".json") for p in self.root.glob("*.json"))

    def entry(self, holder: str) -> LedgerEntry:
        """The entry of ``holder``."""
        data = json.loads((self.root / f"{holder}.json").read_text())
        return LedgerEntry(**data)

    def _array(self, holder: str, kind: str) -> U64:
        arr: U64 = np.load(self.root / f"{holder}.{kind}.npy", allow_pickle=False)
        return arr

    def record(self, entry: LedgerEntry, content: U64, ids: U64) -> None:
        """Store (or replace) ``entry`` with the content and id hashes of its hidden rows."""
        if not HOLDER_RE.match(entry.holder):
            raise LedgerError(f"invalid ledger holder {entry.holder!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        for kind, values in (("rows", content), ("ids", ids)):
            arr = distinct(np.asarray(values, dtype=np.uint64))
            _write_atomic(self.root / f"{entry.holder}.{kind}.npy", _npy_bytes(arr))
        # The JSON goes last: an entry is visible only once its hashes are in place.
        text = json.dumps(entry.to_dict(), indent=2) + "\n"
        _write_atomic(self.root / f"{entry.holder}.json", text.encode())

    def record_split(self, holder: str, public_dir: Path, hidden_dir: Path, *, id_column: str,
                     lineage: Sequence[str] = (), source: str = "",
                     key_columns: Sequence[str] = ()) -> LedgerEntry:
        """Record the hidden rows of a split: the rows of ``public_dir/test.parquet``, their
        truth columns being those of ``hidden_dir/solution.parquet`` besides the key and usage.

        ``key_columns`` are the other columns of a composite key (TrackML's ``hit_id`` beside the
        event id, ``id_column``): ids, so neither features nor truth."""
        test = pq.read_table(Path(public_dir) / "test.parquet")
        sol_names = pq.read_schema(Path(hidden_dir) / "solution.parquet").names
        keys = {id_column, *key_columns}
        truth = sorted(c for c in sol_names if c not in keys and c != "Usage")
        columns = feature_columns(test.column_names, [*keys, *truth])
        entry = LedgerEntry(holder=holder, rows=test.num_rows, columns=columns,
                            truth_columns=truth, id_column=id_column, lineage=list(lineage),
                            source=source)
        self.record(entry, row_hashes(test, columns), id_hashes(test.column(id_column)))
        return entry

    def forget(self, holder: str) -> None:
        """Remove the entry of ``holder`` (its hashes too)."""
        for suffix in (".json", ".rows.npy", ".ids.npy"):
            (self.root / f"{holder}{suffix}").unlink(missing_ok=True)

    def find(self, table: pa.Table, *, lineage: Sequence[str] = (),
             holders: Iterable[str] | None = None, skip: Iterable[str] = (),
             before_shift: bool = False) -> list[Hit]:
        """Entries that hide rows of ``table`` if it were published, with how many rows.

        Only a *labelled* table counts: one with a truth column of the entry (or, with
        ``before_shift``, a table about to get a systematic shift whose labels travel with it).
        By content: rows whose hash over the entry's feature columns is hidden. By lineage: when
        ``lineage`` (the table's dataset version and its ancestors) meets the entry's, rows whose
        id is hidden. ``skip`` names holders not to check (a challenge re-splitting its own data).
        """
        hits: list[Hit] = []
        names = set(table.column_names)
        cache: dict[tuple[str, ...], U64] = {}
        skipped = set(skip)
        for holder in holders if holders is not None else self.holders():
            if holder in skipped:
                continue
            e = self.entry(holder)
            if not before_shift and not names & set(e.truth_columns):
                continue
            found, by = 0, "content"
            if set(e.columns) <= names:
                key = tuple(e.columns)
                if key not in cache:
                    cache[key] = row_hashes(table, e.columns)
                found = count_in(cache[key], self._array(holder, "rows"))
            if e.id_column in names and set(lineage) & set(e.lineage):
                by_id = count_in(id_hashes(table.column(e.id_column)), self._array(holder, "ids"))
                if by_id > found:
                    found, by = by_id, "lineage"
            if found:
                hits.append(Hit(holder, found, by))
        return hits
