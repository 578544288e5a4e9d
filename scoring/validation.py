"""Reading and checking a submission file against its format and the solution's ids.

Fast path: one pyarrow parse and a handful of O(n) numpy checks. Only when a check fails does the
code spend time finding the offending lines, so that the message can name them and say how to
fix them. Line numbers count the header as line 1 (a file without quoted newlines).
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import mmap
import os
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from scoring.formats import ColumnSpec, SubmissionFormat

#: Default cap on the bytes of a submission after decompression.
DEFAULT_MAX_BYTES = 1 << 30
#: How many offending lines a message names.
_SHOW = 5
#: A header line longer than this is refused before parsing (a format's header is a few names).
MAX_HEADER_BYTES = 64 * 1024


class SubmissionInvalid(ValueError):
    """The participant's file is not a valid submission; :attr:`message` says what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Source:
    """Where rows came from, to name them in messages (CSV line numbers or Parquet rows)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def where(self, rows: Sequence[int] | NDArray[np.intp]) -> str:
        rows = [int(r) for r in rows]
        shown = rows[:_SHOW]
        if self.kind == "parquet":
            text = ", ".join(str(r + 1) for r in shown)
            label = "row" if len(rows) == 1 else "rows"
        else:
            text = ", ".join(str(r + 2) for r in shown)
            label = "line" if len(rows) == 1 else "lines"
        more = f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
        return f"{label} {text}{more}"

    def where_verb(self, rows: Sequence[int] | NDArray[np.intp], one: str, many: str) -> str:
        """``where(rows)`` followed by the verb agreeing with it ("line 5 has", "lines 5, 9
        have")."""
        return f"{self.where(rows)} {one if len(rows) == 1 else many}"


def _read_capped(stream: Any, max_bytes: int, what: str) -> bytes:
    """Read a decompressing stream, refusing to go past ``max_bytes`` (zip and gzip bombs)."""
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        # A plain file (the sandbox hands over an open upload): its size is known, so read it
        # in one call instead of joining 1 MiB chunks (one copy of the whole file less).
        size = os.fstat(stream.fileno()).st_size - stream.tell()
        if 0 <= size <= max_bytes:
            data: bytes = stream.read(size + 1)
            if len(data) <= size:
                return data
            raise SubmissionInvalid(
                f"{what} grew while it was read. Upload it again."
            )
    chunks = []
    total = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise SubmissionInvalid(
                f"{what} decompresses to more than {max_bytes // (1 << 20)} MiB, the limit. "
                "Upload a smaller file (a CSV with only the required columns is enough)."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _mapped(stream: Any, max_bytes: int) -> mmap.mmap | None:
    """A read-only map of an open regular file read from its start, or ``None``.

    The sandbox hands the child an open upload: mapping it costs a page-table entry per 64 KiB
    read instead of an 8.7 MB copy into fresh memory (about 2,000 page faults in a forked
    child). Uploads are never rewritten in place (a replaced file is a new inode), so the map
    cannot shrink under the parser.
    """
    try:
        fd = stream.fileno()
        if stream.tell() != 0:
            return None
        info = os.fstat(fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= max_bytes:
        return None
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None


def _gunzip(data: bytes | mmap.mmap, max_bytes: int) -> bytes:
    """Decompress gzip ``data`` (concatenated members too), refusing more than ``max_bytes``.

    The input is fed 1 MiB at a time: handing zlib the whole rest of the file on every call
    made it copy that rest into ``unconsumed_tail`` each time (quadratic: 13 s for a 65 MB file).
    """
    inflater = zlib.decompressobj(wbits=31)
    out = []
    total = 0
    view = memoryview(data)
    offset = 0
    step = 1 << 20
    try:
        while offset < len(view) or inflater.unconsumed_tail:
            if inflater.unconsumed_tail:
                pending: bytes | memoryview = inflater.unconsumed_tail
            else:
                pending = view[offset : offset + step]
                offset += len(pending)
            # At most what the cap still allows (+1, to notice going over it).
            piece = inflater.decompress(pending, max_bytes - total + 1)
            total += len(piece)
            if total > max_bytes:
                raise SubmissionInvalid(
                    f"the gzip file decompresses to more than {max_bytes // (1 << 20)} MiB, "
                    "the limit. Upload a smaller file."
                )
            out.append(piece)
            if inflater.eof:
                rest = inflater.unused_data
                if rest or offset < len(view):
                    # Concatenated gzip members are legal; continue with the next one.
                    view = memoryview(bytes(rest) + bytes(view[offset:]))
                    offset = 0
                    inflater = zlib.decompressobj(wbits=31)
                    if not view:
                        break
                else:
                    break
    except zlib.error as exc:
        raise SubmissionInvalid(
            f"the file looks gzip-compressed but cannot be decompressed ({exc}). "
            "Upload the plain CSV or compress it again with gzip."
        ) from None
    if not inflater.eof:
        raise SubmissionInvalid(
            "the gzip file is truncated: it ends before its compressed data does. Upload it "
            "again (or compress the CSV again with gzip)."
        )
    return b"".join(out)


class _GunzipStream(io.RawIOBase):
    """gzip data decompressed as pyarrow reads it, refusing more than ``max_bytes`` out.

    pyarrow's CSV reader pulls blocks from it on an I/O thread while its other threads parse the
    blocks already read (zlib lets go of the GIL while it inflates): decompressing and parsing
    overlap instead of following each other, and the text is never held whole.
    """

    def __init__(self, data: bytes | mmap.mmap, max_bytes: int) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._offset = 0
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._max = max_bytes
        self.total = 0
        self.over_cap = False
        self.broken: str | None = None

    def readable(self) -> bool:
        return True

    def _more(self, want: int) -> bytes:
        while True:
            if self._inflater.unconsumed_tail:
                chunk: bytes | memoryview = self._inflater.unconsumed_tail
            elif self._inflater.eof and (self._inflater.unused_data or
                                         self._offset < len(self._view)):
                rest = self._inflater.unused_data
                self._inflater = zlib.decompressobj(wbits=31)  # a concatenated member
                chunk = rest
                if not rest:
                    continue
            elif self._offset < len(self._view) and not self._inflater.eof:
                chunk = self._view[self._offset : self._offset + (1 << 20)]
                self._offset += len(chunk)
            elif not self._inflater.eof:
                self.broken = "truncated"
                raise OSError("gzip: the data ends inside a member (truncated)")
            else:
                return b""
            try:
                piece = self._inflater.decompress(chunk, max(want, 1 << 16))
            except zlib.error as exc:
                self.broken = str(exc)
                raise OSError(f"gzip: {exc}") from None
            if piece:
                return piece

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = self._more(len(view))
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.total += n
        if self.total > self._max:
            self.over_cap = True
            raise OSError("over the decompression cap")
        return n


def _unzip(path: Path | BinaryIO, max_bytes: int) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1 or not members[0].filename.lower().endswith(".csv"):
                names = ", ".join(m.filename for m in members) or "nothing"
                raise SubmissionInvalid(
                    f"a zip submission must hold exactly one .csv file; this one holds {names}. "
                    "Zip only your CSV file, or upload the CSV directly."
                )
            member = members[0]
            if member.file_size > max_bytes:
                raise SubmissionInvalid(
                    f"{member.filename} in the zip is {member.file_size // (1 << 20)} MiB, over "
                    f"the {max_bytes // (1 << 20)} MiB limit."
                )
            with archive.open(member) as stream:
                # The declared size can lie; count what actually comes out.
                return _read_capped(stream, max_bytes, member.filename)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise SubmissionInvalid(
            f"the zip file cannot be read ({exc}). Zip the CSV again (deflate, no password)."
        ) from None


def _utf16(head: bytes) -> bool:
    """UTF-16 text (Excel's "Unicode text"): a UTF-16 byte order mark, or NUL bytes in every
    other position of ASCII text."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = head[:4096]
    return len(sample) >= 4 and sample.count(0) >= len(sample) // 3


def _first_bad_utf8(data: bytes | mmap.mmap) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence, or None when the text is valid.

    Arrow checks the whole buffer in place (no decoded copy); only a failure costs a Python
    decode to find where.
    """
    buffer = pa.py_buffer(data)
    offsets = pa.py_buffer(np.array([0, len(buffer)], dtype=np.int64).tobytes())
    blob = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, buffer])
    try:
        blob.cast(pa.large_string())
    except pa.ArrowInvalid:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.start
    return None


def _not_utf8(data: bytes | mmap.mmap, offset: int, fmt: SubmissionFormat) -> SubmissionInvalid:
    line = data[:offset].count(b"\n") + 1
    byte = data[offset]
    where = "in the header (line 1)" if line == 1 else f"on line {line}"
    return SubmissionInvalid(
        f"the file is not valid UTF-8 text: byte 0x{byte:02X} {where} is not UTF-8 (the file is "
        "probably Latin-1 or Windows-1252, as older Excel versions save it). Save it as "
        f"'CSV UTF-8' and upload it again; the header must be {','.join(fmt.expected_header())}."
    )


def _has_text(data: bytes | mmap.mmap, start: int) -> bool:
    """Whether anything but white space follows ``start`` (looks at 4 KiB, rarely more)."""
    while start < len(data):
        if data[start : start + 4096].strip():
            return True
        start += 4096
    return False


def _check_csv_start(data: bytes | mmap.mmap, fmt: SubmissionFormat, check_header: bool) -> None:
    """Refuse what the CSV parser would misreport, by looking at the text before parsing it:
    UTF-16, blank files, a header without rows, a header that is huge, not UTF-8, or wrong."""
    expected = ",".join(fmt.expected_header())
    head = bytes(data[: MAX_HEADER_BYTES + 1])
    if _utf16(head):
        raise SubmissionInvalid(
            "the file is UTF-16 text (Excel's 'Unicode Text'), not UTF-8. Save it as "
            f"'CSV UTF-8 (comma delimited)'; the header must be {expected}."
        )
    if not head.strip():
        raise SubmissionInvalid(
            f"the file holds only blank lines. Upload a CSV whose first line is {expected}."
        )
    end = head.find(b"\n")
    if end < 0 and len(head) > MAX_HEADER_BYTES:
        raise SubmissionInvalid(
            f"the header (first line) is longer than {MAX_HEADER_BYTES // 1024} KiB. "
            f"The header must be {expected}."
        )
    header = head if end < 0 else head[:end]
    bad = _first_bad_utf8(header)
    if bad is not None:
        raise _not_utf8(data, bad, fmt)
    text = header.decode("utf-8").rstrip("\r")
    if text.count('"') % 2:
        raise SubmissionInvalid(
            f"the header has a quote (\") that is not closed. The header must be {expected}."
        )
    if check_header:
        _check_header(next(csv.reader([text]), []), fmt, _Source("csv"))
    if end < 0 or not _has_text(data, end + 1):
        raise SubmissionInvalid(
            "the file has a header but no rows. Submit one row per id of the test file, "
            "after the header."
        )


def _locate_bad_utf8(data: bytes) -> int:
    """0-based data row (line - 2) of the first line that is not valid UTF-8."""
    for lineno, line in enumerate(data.splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return lineno - 2
    return -1


def _parse_gzip(
    data: bytes | mmap.mmap, fmt: SubmissionFormat, id_is_string: bool, max_bytes: int
) -> pa.Table | None:
    """Parse gzipped CSV while decompressing it (:class:`_GunzipStream`).

    Anything unusual (a line with the wrong number of fields, bad UTF-8, a broken stream, no
    rows) returns ``None``: the caller parses it again the plain way, whose checks and messages
    name the problem and the line.
    """
    stream = _GunzipStream(data, max_bytes)
    try:
        table = _parse_csv(stream, fmt, id_is_string, stream_only=True)
    except (_NeedsBytes, pa.ArrowException, OSError):
        table = None
    if stream.over_cap:
        raise SubmissionInvalid(
            f"the gzip file decompresses to more than {max_bytes // (1 << 20)} MiB, "
            "the limit. Upload a smaller file."
        )
    if table is None or table.num_rows == 0:
        return None  # the caller decompresses and runs the plain path's checks and messages
    return table


class _NeedsBytes(Exception):
    """A streamed parse met something whose message needs the whole text: parse it again."""


def _parse_csv(
    data: bytes | mmap.mmap | Path | _GunzipStream,
    fmt: SubmissionFormat,
    id_is_string: bool,
    *,
    stream_only: bool = False,
) -> pa.Table:
    # Category columns are dictionary-encoded while parsing: checking them then means checking
    # a handful of distinct values, not every row.
    string_columns: dict[str, pa.DataType] = {
        c.name: pa.dictionary(pa.int32(), pa.string()) for c in fmt.columns if c.kind == "category"
    }
    if id_is_string:
        for name in fmt.key:
            string_columns[name] = pa.string()
    convert = pacsv.ConvertOptions(
        column_types=string_columns,
        strings_can_be_null=True,
        null_values=["", "NA", "NaN", "nan", "NULL", "null", "N/A", "n/a", "None"],
    )
    bad_rows: list[tuple[int | None, int, int, str]] = []

    def remember(row: Any) -> str:
        bad_rows.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    def read(use_threads: bool) -> pa.Table:
        source: Any = (
            str(data) if isinstance(data, Path)
            else data if isinstance(data, _GunzipStream)
            else pa.py_buffer(data)
        )
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(use_threads=use_threads, block_size=1 << 20),
            parse_options=pacsv.ParseOptions(invalid_row_handler=remember),
            convert_options=convert,
        )

    try:
        table = read(use_threads=True)
        if bad_rows and stream_only:
            raise _NeedsBytes
        if bad_rows:
            # Threaded parsing does not know line numbers; parse again serially to name them.
            bad_rows.clear()
            table = read(use_threads=False)
    except pa.ArrowInvalid as exc:
        if stream_only or isinstance(data, _GunzipStream):
            raise _NeedsBytes from None
        text = str(exc)
        if "UTF8" in text or "utf8" in text.lower():
            raw = data.read_bytes() if isinstance(data, Path) else bytes(data)
            row = _locate_bad_utf8(raw)
            where = f" (line {row + 2})" if row >= 0 else ""
            raise SubmissionInvalid(
                f"the file is not valid UTF-8 text{where}. Save it as UTF-8 CSV."
            ) from None
        if "Empty CSV file" in text:
            raise SubmissionInvalid(
                "the file is empty. Upload a CSV whose first line is "
                f"{','.join(fmt.expected_header())}."
            ) from None
        raise SubmissionInvalid(
            f"the file cannot be read as CSV: {text.splitlines()[0]}. "
            f"Upload a comma-separated file with the header {','.join(fmt.expected_header())}."
        ) from None
    if bad_rows:
        number, expected, actual, text = bad_rows[0]
        if '"' in text and "\n" in text:
            # A quote opened and never closed swallows the lines after it into one field.
            raise SubmissionInvalid(
                f"line {number} opens a quote (\") that is not closed on that line, so the "
                f"lines after it run together: {text[:60]!r}. Remove the stray quote (values "
                "need no quotes) or close it."
            )
        lines = ", ".join(str(r[0]) for r in bad_rows[:_SHOW] if r[0] is not None)
        more = f" ({len(bad_rows)} lines in all: {lines})" if len(bad_rows) > 1 else ""
        raise SubmissionInvalid(
            f"line {number} has {actual} fields but the header has {expected}: {text[:80]!r}"
            f"{more}. Every line needs exactly one value per header column, separated by commas."
        )
    return table


def _check_header(names: list[str], fmt: SubmissionFormat, source: _Source) -> list[str]:
    if names and names[0].startswith("\ufeff"):
        names = [names[0][1:], *names[1:]]
    expected = fmt.expected_header()
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        shown = ", ".join(repr(n[:40]) for n in dupes[:_SHOW])
        more = f" and {len(dupes) - _SHOW} more names" if len(dupes) > _SHOW else ""
        raise SubmissionInvalid(
            f"the header repeats {shown}{more}. The header must be {','.join(expected)}."
        )
    if len(names) > 4 * len(expected) + 16:
        # Not a near miss: listing every unexpected name would bury the fix.
        raise SubmissionInvalid(
            f"the header has {len(names)} columns; it must have exactly {len(expected)}: "
            f"{','.join(expected)}."
        )
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        parts = []
        for name in missing:
            close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6) or [
                e for e in extra if e.lower() == name.lower()
            ]
            hint = f" (did you mean {close[0]!r}? rename it to {name!r})" if close else ""
            parts.append(f"column {name!r} is missing{hint}")
        for name in extra:
            close = difflib.get_close_matches(name, missing, n=1, cutoff=0.6)
            if not close:
                parts.append(f"column {name!r} is not expected")
        what = "the header" if source.kind != "parquet" else "the Parquet file's columns"
        raise SubmissionInvalid(
            f"{what}: {'; '.join(parts)}. Expected exactly: {','.join(expected)}."
        )
    return names


def _nulls(array: pa.ChunkedArray) -> NDArray[np.intp]:
    if array.null_count == 0:  # the usual case: no per-row mask to build
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))


def _numeric(
    array: pa.ChunkedArray, name: str, source: _Source, want: str
) -> NDArray[np.float64] | NDArray[np.int64]:
    """The column as numbers; names the first lines that are missing or not numbers."""
    missing = _nulls(array)
    if missing.size:
        raise SubmissionInvalid(
            f"column {name!r} is empty on {source.where(missing)}. "
            f"Every row needs {want}."
        )
    if pa.types.is_integer(array.type):
        ints: NDArray[np.int64] = array.to_numpy().astype(np.int64, copy=False)
        return ints
    if pa.types.is_floating(array.type):
        floats: NDArray[np.float64] = array.to_numpy().astype(np.float64, copy=False)
        return floats
    kind = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        # Parquet columns of another type (bool, timestamp, list, binary): every row is wrong.
        raise SubmissionInvalid(
            f"column {name!r} has the type {array.type} in the Parquet file; it must hold "
            f"numbers ({want}). Write it as integers or floats."
        )
    values = array.to_numpy(zero_copy_only=False)
    parsed = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = np.flatnonzero(np.isnan(parsed))
    if not bad.size:  # numbers after all (a text column of a Parquet file)
        numbers: NDArray[np.float64] = parsed
        return numbers
    examples = ", ".join(repr(str(values[i])) for i in bad[:3])
    raise SubmissionInvalid(
        f"column {name!r} holds values that are not numbers on {source.where(bad)} "
        f"({examples}). Every row needs {want}."
    )


def _integers(values: NDArray[Any], name: str, source: _Source, want: str) -> NDArray[np.int64]:
    if values.dtype.kind in "iu":
        if values.dtype.kind == "u" and values.size and values.max() >= 2**62:
            huge = np.flatnonzero(values >= 2**62)
            raise SubmissionInvalid(
                f"column {name!r} is far out of range on {source.where(huge)} "
                f"({', '.join(str(values[i]) for i in huge[:3])}). Every row needs {want}."
            )
        return values.astype(np.int64, copy=False)
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite | (np.floor(np.where(finite, values, 0)) != values))
    if bad.size:
        examples = ", ".join(repr(float(values[i])) for i in bad[:3])
        raise SubmissionInvalid(
            f"column {name!r} must hold whole numbers; {source.where_verb(bad, 'holds', 'hold')}"
            f" {examples}. Every row needs {want}."
        )
    # Beyond int64 (1e308, 1e19) a cast would wrap to -9223372036854775808: say what was given.
    huge = np.flatnonzero(np.abs(values) >= 2.0**62)
    if huge.size:
        examples = ", ".join(f"{float(values[i]):g}" for i in huge[:3])
        raise SubmissionInvalid(
            f"column {name!r} is far out of range on {source.where(huge)} ({examples}). "
            f"Every row needs {want}."
        )
    return values.astype(np.int64)


def _check_dictionary(
    array: pa.ChunkedArray, spec: ColumnSpec, source: _Source, allowed: pa.Array
) -> pd.Categorical:
    """A dictionary-encoded category column: map each chunk's dictionary onto the allowed values."""
    codes = []
    # The codes pandas keeps anyway (int8 for a few categories): a quarter of int64's memory.
    code_type: type[np.signedinteger[Any]] = np.int8 if len(allowed) < 127 else np.int64
    for chunk in array.chunks:
        mapping = pc.index_in(chunk.dictionary, value_set=allowed).to_numpy(zero_copy_only=False)
        mapping = np.where(np.isnan(mapping.astype(np.float64)), -1, mapping).astype(code_type)
        codes.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
    merged: NDArray[np.signedinteger[Any]] = (
        np.concatenate(codes) if codes else np.empty(0, dtype=code_type)
    )
    if (merged < 0).any():
        bad = np.flatnonzero(merged < 0)
        values = pc.cast(array, pa.string()).to_numpy(zero_copy_only=False)
        examples = ", ".join(sorted({repr(str(values[i])) for i in bad[:_SHOW]}))
        raise SubmissionInvalid(
            f"column {spec.name!r} has {examples} on {source.where(bad)}; "
            f"it must be {spec.describe()} (case matters)."
        )
    return pd.Categorical.from_codes(merged, categories=list(spec.values or ()))


def _check_column(
    array: pa.ChunkedArray, spec: ColumnSpec, source: _Source, n_expected: int
) -> Any:
    """Check one prediction column; return its values (numpy array or pandas Categorical)."""
    want = spec.describe()
    if spec.kind == "category":
        missing = _nulls(array)
        if missing.size:
            raise SubmissionInvalid(
                f"column {spec.name!r} is empty on {source.where(missing)}. Every row needs {want}."
            )
        allowed = pa.array(list(spec.values or ()), type=pa.string())
        if pa.types.is_dictionary(array.type):
            return _check_dictionary(array, spec, source, allowed)
        text = array if pa.types.is_string(array.type) else pc.cast(array, pa.string())
        ok = pc.is_in(text, value_set=allowed).to_numpy(zero_copy_only=False)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            values = text.to_numpy(zero_copy_only=False)
            examples = ", ".join(sorted({repr(str(values[i])) for i in bad[:_SHOW]}))
            raise SubmissionInvalid(
                f"column {spec.name!r} has {examples} on {source.where(bad)}; "
                f"it must be {want} (case matters)."
            )
        return pd.Categorical.from_codes(
            pc.index_in(text, value_set=allowed).to_numpy(zero_copy_only=False),
            categories=list(spec.values or ()),
        )
    values = _numeric(array, spec.name, source, want)
    if spec.kind in ("rank", "int"):
        ints = _integers(values, spec.name, source, want)
        if spec.kind == "rank":
            _check_permutation(ints, spec.name, source, n_expected)
        return ints
    floats = values.astype(np.float64, copy=False)
    finite = np.isfinite(floats)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise SubmissionInvalid(
            f"column {spec.name!r} is infinite or NaN on {source.where(bad)}. "
            f"Every row needs {want}."
        )
    if spec.kind == "probability":
        outside = (floats < 0) | (floats > 1)
        if outside.any():
            bad = np.flatnonzero(outside)
            examples = ", ".join(repr(float(floats[i])) for i in bad[:3])
            raise SubmissionInvalid(
                f"column {spec.name!r} is outside [0, 1] on {source.where(bad)} ({examples}). "
                "Submit probabilities, not raw scores or logits."
            )
    return floats


def _check_permutation(
    ranks: NDArray[np.int64], name: str, source: _Source, n_expected: int
) -> None:
    n = n_expected
    outside = (ranks < 1) | (ranks > n)
    if outside.any():
        bad = np.flatnonzero(outside)
        raise SubmissionInvalid(
            f"column {name!r} must be a permutation of 1..{n} (one rank per row, each used "
            f"once); {source.where_verb(bad, 'holds', 'hold')} "
            f"{', '.join(str(ranks[i]) for i in bad[:3])}."
        )
    counts = np.bincount(ranks, minlength=n + 1)
    if counts.max(initial=0) > 1:
        repeated = np.flatnonzero(counts > 1)
        first_rank = int(repeated[0])
        rows = np.flatnonzero(ranks == first_rank)
        raise SubmissionInvalid(
            f"column {name!r} must be a permutation of 1..{n} (each rank used once); "
            f"rank {first_rank} appears on {source.where(rows)}"
            f"{f' and {len(repeated) - 1} other ranks repeat too' if len(repeated) > 1 else ''}"
            ". Give every row a distinct rank, e.g. by sorting on your score."
        )


class SolutionIds:
    """The solution's ids and the lookup that places submitted ids on its rows, built once.

    :func:`validate_submission` accepts it instead of the bare ids: a process that grades many
    submissions against one solution (the sandbox zygote) then builds the lookup table once,
    before forking, instead of once per submission.

    A composite key (TrackML's ``event_id, hit_id``) is given as a frame with one column per key
    column: whole-number keys are packed into one integer per row (mixed radix over the
    solution's ranges), so the lookup is the same direct table as for one id column. The packed
    keys and the table are built on first use: a file whose key columns equal the solution's
    (the usual case) never needs them.
    """

    def __init__(
        self,
        solution_ids: NDArray[Any] | pd.Index[Any] | pd.Series[Any] | Sequence[Any] | pd.DataFrame,
    ) -> None:
        self.parts: list[NDArray[Any]] | None = None
        self.names: list[str] = []
        self._radix: list[tuple[int, int]] | None = None
        self._ids: NDArray[Any] | None = None
        self._lo = 0
        self._table: NDArray[np.int64] | None = None
        self._index: pd.Index[Any] | None = None
        if isinstance(solution_ids, pd.DataFrame) and solution_ids.shape[1] > 1:
            self._set_parts(solution_ids)
            self.size = int(solution_ids.shape[0])
            if self._radix is None:  # text keys: joined now
                assert self.parts is not None
                self._build(self._join(self.parts))
            return
        if isinstance(solution_ids, pd.DataFrame):
            solution_ids = solution_ids.iloc[:, 0]
        ids = np.asarray(solution_ids)
        if ids.dtype.kind not in "iu":
            ids = ids.astype(str)
        self.size = int(ids.size)
        self._build(ids)

    def _build(self, ids: NDArray[Any]) -> None:
        self._ids = ids
        if ids.dtype.kind in "iu" and ids.size:
            lo = int(ids.min())
            hi = int(ids.max())
            if hi - lo <= 4 * ids.size + 1024:
                # A direct lookup table beats hashing by ~10x for the dense ids challenges use.
                table = np.full(hi - lo + 1, -1, dtype=np.int64)
                table[ids - lo] = np.arange(ids.size)
                self._lo, self._table = lo, table
        if self._table is None:
            self._index = pd.Index(ids)
            self._index.get_indexer(ids[:1])  # builds the hash table now, not per submission

    @property
    def ids(self) -> NDArray[Any]:
        """One value per solution row: the id, or the packed (or joined) composite key."""
        if self._ids is None:
            assert self.parts is not None
            packed, _ = self.pack(self.parts)
            self._build(packed)
        assert self._ids is not None
        return self._ids

    def _set_parts(self, frame: pd.DataFrame) -> None:
        self.names = [str(c) for c in frame.columns]
        parts = [np.asarray(frame[c].to_numpy()) for c in frame.columns]
        if all(p.dtype.kind in "iu" for p in parts):
            parts = [p.astype(np.int64, copy=False) for p in parts]
            radix = [(int(p.min()), int(p.max()) - int(p.min()) + 1) if p.size else (0, 1)
                     for p in parts]
            if float(np.prod([float(r) for _, r in radix])) < 2.0**62:
                self.parts, self._radix = parts, radix
                return
        # Text keys, or integer ranges too wide to pack: one string per row ("a\x1fb").
        self.parts = [p.astype(str) for p in parts]

    def unique(self) -> bool:
        """Whether no two solution rows share an id (or key)."""
        if self.parts is not None and self._radix is not None and self._ids is None:
            # A split writes the solution sorted by its key: strictly increasing keys are
            # unique, and saying so costs no lookup table.
            first, second = self.parts[0], self.parts[-1]
            if len(self.parts) == 2 and first.size > 1:
                later = first[1:] > first[:-1]
                same = first[1:] == first[:-1]
                if bool((later | (same & (second[1:] > second[:-1]))).all()):
                    return True
        ids = self.ids
        if self._table is not None:
            return int(np.count_nonzero(self._table >= 0)) == ids.size
        assert self._index is not None
        return bool(self._index.is_unique)

    def parts_in_order(self, parts: list[NDArray[Any]]) -> bool:
        """Whether submitted key columns are exactly the solution's, row for row."""
        assert self.parts is not None
        return all(
            p.size == q.size and p.dtype.kind == q.dtype.kind and bool(np.array_equal(p, q))
            for p, q in zip(parts, self.parts, strict=True)
        )

    @staticmethod
    def _join(parts: list[NDArray[Any]]) -> NDArray[Any]:
        joined = parts[0].astype(object)
        for part in parts[1:]:
            joined = joined + "\x1f" + part.astype(object)
        return np.asarray(joined.astype(str))

    @property
    def composite(self) -> bool:
        """Whether the key has more than one column."""
        return self.parts is not None

    @property
    def integer(self) -> bool:
        """Whether submitted keys are read as whole numbers (else as text)."""
        if self._radix is not None:
            return True
        return self.ids.dtype.kind in "iu"

    def pack(self, parts: list[NDArray[Any]]) -> tuple[NDArray[Any], NDArray[np.bool_] | None]:
        """One value per row for the key columns ``parts``, comparable with :attr:`ids`;
        for integer keys also the mask of rows whose key lies outside the solution's ranges
        (``None``: every row inside)."""
        if self._radix is None:
            return self._join([p.astype(str) for p in parts]), None
        packed: NDArray[np.int64] | None = None
        outside: NDArray[np.bool_] | None = None
        for part, (lo, span) in zip(parts, self._radix, strict=True):
            shifted = part.astype(np.int64, copy=True)
            shifted -= lo
            # Below the minimum wraps round to a huge unsigned value: one comparison for both.
            bad = shifted.view(np.uint64) >= span
            if bad.any():
                outside = bad if outside is None else outside | bad
                shifted[bad] = 0
            if packed is None:
                packed = shifted
            else:
                packed *= span
                packed += shifted
        assert packed is not None
        return packed, outside

    def describe(self, row: int) -> str:
        """The solution's key at ``row``, as a message shows it."""
        if self.parts is None:
            return repr(self.ids[row].item())
        return "(" + ", ".join(f"{n}={p[row].item()!r}" for n, p in
                               zip(self.names, self.parts, strict=True)) + ")"

    def in_order(self, submitted: NDArray[Any]) -> bool:
        """Whether the submitted ids are exactly the solution's, in the solution's order.

        The usual case (participants keep the test file's order): every id is then known and
        given once, so the lookup and the duplicate count can be skipped.
        """
        return (
            submitted.size == self.ids.size
            and submitted.dtype.kind == self.ids.dtype.kind
            and bool(np.array_equal(submitted, self.ids))
        )

    def positions(self, submitted: NDArray[Any]) -> NDArray[np.int64]:
        """For each submitted id, its row in the solution, or -1 if the solution lacks it."""
        if self._table is not None and submitted.dtype.kind in "iu":
            lo, hi = self._lo, self._lo + self._table.size - 1
            inside = (submitted >= lo) & (submitted <= hi)
            pos = np.full(submitted.size, -1, dtype=np.int64)
            pos[inside] = self._table[submitted[inside] - lo]
            return pos
        index = self._index if self._index is not None else pd.Index(self.ids)
        return np.asarray(index.get_indexer(submitted), dtype=np.int64)


def _ids(
    array: pa.ChunkedArray, name: str, lookup: SolutionIds, source: _Source
) -> NDArray[np.int64] | None:
    """Each submitted row's position in the solution, or ``None`` when the file lists the
    solution's ids in the solution's order."""
    solution_ids = lookup.ids
    missing = _nulls(array)
    if missing.size:
        raise SubmissionInvalid(
            f"the id column {name!r} is empty on {source.where(missing)}. Every row needs an id."
        )
    if solution_ids.dtype.kind in "iu":
        want = "an integer id"
        values = _integers(_numeric(array, name, source, want), name, source, want)
    else:
        values = array.to_numpy(zero_copy_only=False).astype(str)
    if lookup.in_order(values):
        return None
    pos = lookup.positions(values)
    n = solution_ids.size
    unknown = pos < 0
    if unknown.any():
        bad = np.flatnonzero(unknown)
        examples = ", ".join(repr(values[i].item()) for i in bad[:3])
        raise SubmissionInvalid(
            f"{source.where_verb(bad, 'has an id', 'have ids')} that {'is' if bad.size == 1 else 'are'}"
            f" not in the test set ({examples}). Submit exactly one row per id of the test file, "
            "no others."
        )
    counts = np.bincount(pos, minlength=n)
    if counts.max(initial=0) > 1:
        bad, first_of = _repeats(pos, n)
        examples = ", ".join(
            f"{values[i].item()!r} first on {source.where([first_of[pos[i]]])}" for i in bad[:3]
        )
        raise SubmissionInvalid(
            f"duplicated ids: {source.where(bad)} repeat ids already given on earlier lines "
            f"({examples}). Keep one row per id."
        )
    if pos.size < n:
        absent = np.flatnonzero(counts == 0)
        examples = ", ".join(repr(solution_ids[i].item()) for i in absent[:_SHOW])
        raise SubmissionInvalid(
            f"the file has {pos.size} rows but the test set has {n} ids; {absent.size} ids are "
            f"missing (for example {examples}). Submit one row for every id of the test file."
        )
    return pos


def _key_ids(
    table: pa.Table, fmt: SubmissionFormat, lookup: SolutionIds, source: _Source
) -> NDArray[np.int64] | None:
    """:func:`_ids` for a composite key: each row's position in the solution, or ``None`` when
    the file lists the solution's keys in the solution's order. Messages name each key column."""
    parts = []
    for name in fmt.key:
        array = table.column(name)
        missing = _nulls(array)
        if missing.size:
            raise SubmissionInvalid(
                f"the key column {name!r} is empty on {source.where(missing)}. Every row needs "
                f"a value in each of {', '.join(fmt.key)}."
            )
        if lookup.integer:
            want = f"a whole number in {name!r}"
            parts.append(_integers(_numeric(array, name, source, want), name, source, want))
        else:
            parts.append(array.to_numpy(zero_copy_only=False).astype(str))
    if lookup.parts_in_order(parts):
        return None
    values, outside = lookup.pack(parts)

    def shown(row: int) -> str:
        return "(" + ", ".join(f"{n}={p[row].item()!r}" for n, p in
                               zip(fmt.key, parts, strict=True)) + ")"

    pos = lookup.positions(values)
    if outside is not None:
        pos[outside] = -1
    n = lookup.size
    unknown = pos < 0
    if unknown.any():
        bad = np.flatnonzero(unknown)
        examples = ", ".join(shown(int(i)) for i in bad[:3])
        raise SubmissionInvalid(
            f"{source.where(bad)} have keys that are not in the test set ({examples}). "
            f"Submit exactly one row per ({', '.join(fmt.key)}) of the test file, no others."
        )
    counts = np.bincount(pos, minlength=n)
    if counts.max(initial=0) > 1:
        bad, first_of = _repeats(pos, n)
        examples = ", ".join(
            f"{shown(int(i))} first on {source.where([first_of[pos[i]]])}" for i in bad[:3]
        )
        raise SubmissionInvalid(
            f"duplicated keys: {source.where(bad)} repeat keys already given on earlier lines "
            f"({examples}). Keep one row per ({', '.join(fmt.key)})."
        )
    if pos.size < n:
        absent = np.flatnonzero(counts == 0)
        examples = ", ".join(lookup.describe(int(i)) for i in absent[:_SHOW])
        raise SubmissionInvalid(
            f"the file has {pos.size} rows but the test set has {n} keys; {absent.size} keys "
            f"are missing (for example {examples}). Submit one row for every "
            f"({', '.join(fmt.key)}) of the test file."
        )
    return pos


#: A submission or solution given as a path, or as a file already opened in binary mode (the
#: sandbox opens files before it gives up the right to see their paths).
Source = Path | BinaryIO


def _repeats(pos: Any, n: int) -> tuple[Any, Any]:
    """Rows that repeat an earlier row's id (by solution position), and for each solution
    position the row where it was first given (-1 if never)."""
    _, first = np.unique(pos, return_index=True)
    repeated = np.ones(pos.size, dtype=bool)
    repeated[first] = False
    first_of = np.full(n, -1, dtype=np.int64)
    first_of[pos[first]] = first
    return np.flatnonzero(repeated), first_of


def read_table(path: Source, fmt: SubmissionFormat, *, id_is_string: bool,
               max_bytes: int = DEFAULT_MAX_BYTES,
               check_header: bool = True) -> tuple[pa.Table, _Source]:
    """Parse a submission (CSV, gzipped CSV, zip of one CSV, or Parquet) into an Arrow table.

    A CSV header is checked against ``fmt`` before the rows are parsed (a wrong header would
    otherwise be reported as wrong rows); ``check_header=False`` skips that, for a caller that
    does not know the format yet."""
    raw: bytes | mmap.mmap | None = None
    try:
        if isinstance(path, Path):
            size = path.stat().st_size
            with path.open("rb") as handle:
                magic = handle.read(4)
        else:
            # read(n) would reserve n bytes up front; read what is there, up to the cap.
            raw = _mapped(path, max_bytes) or _read_capped(path, max_bytes, "the file")
            size = len(raw)
            magic = raw[:4]
    except OSError as exc:
        raise SubmissionInvalid(f"the uploaded file cannot be opened ({exc.strerror}).") from None
    if size > max_bytes:
        raise SubmissionInvalid(
            f"the file is over the {max_bytes // (1 << 20)} MiB limit. Upload a smaller file."
        )
    if size == 0:
        raise SubmissionInvalid(
            f"the file is empty. Upload a CSV whose first line is "
            f"{','.join(fmt.expected_header())}."
        )
    if magic == b"PAR1":
        parquet = raw if raw is not None or not isinstance(path, Path) else path
        assert parquet is not None
        return _read_parquet(parquet, max_bytes), _Source("parquet")
    data: bytes | mmap.mmap
    zipped = magic in (b"PK\x03\x04", b"PK\x05\x06")  # an empty archive starts PK\x05\x06
    if raw is not None:
        if magic[:2] == b"\x1f\x8b":
            streamed = _parse_gzip(raw, fmt, id_is_string, max_bytes)
            if streamed is not None:
                return streamed, _Source("csv")
            data = _gunzip(raw, max_bytes)
        elif zipped:
            data = _unzip(io.BytesIO(raw), max_bytes)
        else:
            data = raw
    else:
        assert isinstance(path, Path)
        if magic[:2] == b"\x1f\x8b":
            compressed = path.read_bytes()
            streamed = _parse_gzip(compressed, fmt, id_is_string, max_bytes)
            if streamed is not None:
                return streamed, _Source("csv")
            data = _gunzip(compressed, max_bytes)
        elif zipped:
            data = _unzip(path, max_bytes)
        else:
            with path.open("rb") as handle:  # mapped, not copied; the map outlives the handle
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if not data:
        raise SubmissionInvalid(
            "the compressed file holds an empty file. Upload a CSV whose first line is "
            f"{','.join(fmt.expected_header())}."
        )
    if data[:3] == b"\xef\xbb\xbf":
        # A UTF-8 byte order mark (Excel writes one) is not part of the first column's name.
        data = data[3:]
    _check_csv_start(data, fmt, check_header)
    bad = _first_bad_utf8(data)
    if bad is not None:
        raise _not_utf8(data, bad, fmt)
    return _parse_csv(data, fmt, id_is_string), _Source("csv")


def _read_parquet(source: bytes | mmap.mmap | Path, max_bytes: int) -> pa.Table:
    """Read a Parquet submission, refusing one that decodes to more than ``max_bytes`` (a
    640 KB file of constant values can hold 50M rows)."""
    limit = max_bytes // (1 << 20)
    try:
        reader = pq.ParquetFile(
            pa.BufferReader(pa.py_buffer(source)) if not isinstance(source, Path) else source
        )
        meta = reader.metadata
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        # The writer states the decoded size; 8 bytes per value is a floor it cannot lie under.
        decoded = max(declared, meta.num_rows * max(meta.num_columns, 1) * 8)
        if decoded > max_bytes:
            raise SubmissionInvalid(
                f"the Parquet file holds {meta.num_rows} rows, about {decoded // (1 << 20)} MiB "
                f"once decoded: over the {limit} MiB limit. Submit one row per id of the test "
                "file."
            )
        return reader.read()
    except MemoryError:
        raise SubmissionInvalid(
            f"the Parquet file decodes to more than the memory a submission may use (the "
            f"limit is {limit} MiB). Submit one row per id of the test file."
        ) from None
    except (pa.ArrowException, OSError) as exc:
        text = str(exc).replace(str(source), "the file") if isinstance(source, Path) else str(exc)
        raise SubmissionInvalid(
            f"the Parquet file cannot be read ({text}). Write it again, or upload a CSV."
        ) from None


def validate_submission(
    path: Source,
    fmt: SubmissionFormat,
    solution_ids: NDArray[Any]
    | pd.Index[Any]
    | pd.Series[Any]
    | Sequence[Any]
    | pd.DataFrame
    | SolutionIds,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> pd.DataFrame:
    """Check a submission file and return its rows in the order of ``solution_ids``.

    The returned frame has the id column and the format's prediction columns (category columns as
    pandas Categoricals, ranks and ints as int64, floats as float64); row ``i`` holds the
    prediction for ``solution_ids[i]``. Raises :class:`SubmissionInvalid` with a participant-facing
    message naming the first offending lines and how to fix them. Pass a :class:`SolutionIds`
    when validating many files against the same ids. A composite key (``fmt.key`` of several
    columns) takes the solution's key columns as a frame, or a :class:`SolutionIds` built from
    one.
    """
    lookup = solution_ids if isinstance(solution_ids, SolutionIds) else SolutionIds(solution_ids)
    table, source = read_table(path, fmt, id_is_string=not lookup.integer,
                               max_bytes=max_bytes)
    names = _check_header(list(table.column_names), fmt, source)
    table = table.rename_columns(names)
    if table.num_rows == 0:
        raise SubmissionInvalid(
            f"the file has a header but no rows; the test set has {lookup.size} ids. "
            "Submit one row per id."
        )
    # Ids first: a file with repeated or missing rows would otherwise get a RankOrder
    # permutation message that hides the real mistake.
    if fmt.composite != lookup.composite:
        raise ValueError(
            f"the format's key {list(fmt.key)} and the solution ids do not have the same columns"
        )
    pos = (
        _key_ids(table, fmt, lookup, source)
        if fmt.composite
        else _ids(table.column(fmt.id_column), fmt.id_column, lookup, source)
    )
    columns: dict[str, Any] = {}
    for spec in fmt.columns:
        columns[spec.name] = _check_column(table.column(spec.name), spec, source, lookup.size)
    if pos is None or np.array_equal(pos, np.arange(lookup.size)):
        order = None
    else:
        order = np.empty(lookup.size, dtype=np.int64)
        order[pos] = np.arange(lookup.size)
    frame: dict[str, Any] = (
        dict(zip(fmt.key, lookup.parts, strict=True))
        if lookup.parts is not None
        else {fmt.id_column: lookup.ids}
    )
    for name, values in columns.items():
        if order is None:
            frame[name] = values
        elif isinstance(values, pd.Categorical):
            frame[name] = values.take(order)
        else:
            frame[name] = values[order]
    return pd.DataFrame(frame, copy=False)

