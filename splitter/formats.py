"""Reading and writing tables: CSV (plain or gzipped), Parquet, HDF5 and ROOT, plus checksums.

Every reader turns a user's mistake (a truncated file, a row whose type differs from the rest of
its column, a ROOT file without the named tree) into a :class:`FormatError` that names the file,
the row or column, and says what to change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EXPORT_FORMATS = ("csv", "parquet", "hdf5", "root")
_CHUNK = 1 << 20
_CSV_BLOCK = 16 << 20


class FormatError(ValueError):
    """A data file cannot be read or written; the message says which file and what to change."""


def table_format(path: Path) -> str:
    """Return the format of ``path`` from its name: csv, parquet, hdf5 or root.

    ``.csv.gz`` counts as csv (decompressed on the fly).
    """
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".csv.bz2")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".h5", ".hdf5", ".hdf")):
        return "hdf5"
    if name.endswith(".root"):
        return "root"
    raise FormatError(
        f"{path}: unknown file type; rename it with one of the extensions .csv, .csv.gz, "
        ".parquet, .h5/.hdf5 or .root"
    )


_CSV_ROW = re.compile(r"Row #(\d+)")
_CSV_COL = re.compile(r"CSV column #(\d+)")


_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|NaN|inf|Inf)\s*$"


def _check_mixed_types(table: pa.Table, path: Path) -> pa.Table:
    """Refuse text columns that are mostly numbers: a typo in one cell of a numeric column."""
    import pyarrow.compute as pc

    for name in table.column_names:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        numeric = pc.match_substring_regex(col, _NUMBER).to_numpy(zero_copy_only=False)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        numeric = numeric & valid
        non_numeric = valid & ~numeric
        if numeric.sum() > non_numeric.sum() > 0:
            row = int(np.flatnonzero(non_numeric)[0])
            value = col[row].as_py()
            raise FormatError(
                f"{path}: column {name!r} holds numbers but line {row + 2} has {value!r}, a value "
                "of another type; make every value of the column the same type (fix or empty "
                "that cell)"
            )
    return table


def _csv_error(path: Path, exc: pa.ArrowInvalid) -> FormatError:
    """A pyarrow CSV error as a message naming the column and line and what to change."""
    msg = str(exc)
    col_match = _CSV_COL.search(msg)
    row_match = _CSV_ROW.search(msg)
    where = []
    if col_match:
        idx = int(col_match.group(1))
        try:
            header = csv_schema(path).names
        except FormatError:
            header = []
        name = header[idx] if idx < len(header) else f"#{idx}"
        where.append(f"column {name!r}")
    if row_match:
        where.append(f"line {row_match.group(1)}")
    if where:
        return FormatError(
            f"{path}: {' '.join(where)} holds a value of another type than the rest of the "
            f"column ({msg.splitlines()[0]}); make every value of the column the same type "
            "(numbers only, or quote it as text everywhere)"
        )
    return FormatError(
        f"{path}: not a readable CSV file ({msg.splitlines()[0]}); check that every line has "
        "the same number of fields as the header and that the file is not truncated"
    )


def _unreadable(path: Path, exc: BaseException) -> FormatError:
    return FormatError(
        f"{path}: cannot be read ({exc}); the file is probably truncated or not gzip data, "
        "upload it again"
    )


def _read_csv(path: Path) -> pa.Table:
    try:
        return _check_mixed_types(pacsv.read_csv(path), path)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from exc


def csv_schema(path: Path) -> pa.Schema:
    """Column names and types of a CSV file, inferred from its first block (as the streaming
    reader does)."""
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK)
                            ) as reader:
            return reader.schema
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from exc


def iter_csv_batches(path: Path, *, schema: pa.Schema | None = None,
                     columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a CSV (or .csv.gz) file as record batches of about 16 MiB of text, with the
    column types ``schema`` (default: :func:`csv_schema`) and only ``columns`` if given.

    A value that does not fit its column's type raises :class:`FormatError` naming the column
    and the line.
    """
    schema = schema if schema is not None else csv_schema(path)
    convert = pacsv.ConvertOptions(column_types={f.name: f.type for f in schema},
                                   include_columns=columns)
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                            convert_options=convert) as reader:
            yield from reader
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from exc


def read_arrow(path: Path, *, tree: str | None = None, key: str | None = None) -> pa.Table:
    """Read a whole table as a pyarrow Table (see :func:`read_table` for the formats)."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    fmt = table_format(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FormatError(
                f"{path}: not a readable Parquet file ({exc}); it is probably truncated or "
                "corrupt, write it again"
            ) from exc
    if fmt == "hdf5":
        return _read_hdf5(path, key)
    return _read_root(path, tree)


def read_table(path: Path, *, tree: str | None = None, key: str | None = None) -> pd.DataFrame:
    """Read a CSV (also ``.csv.gz``), Parquet, HDF5 or ROOT file into a DataFrame.

    ``tree`` names the TTree of a ROOT file (default: the only tree in it); ``key`` the group of
    an HDF5 file written by :func:`export_table` (default: ``data``).
    """
    return read_arrow(path, tree=tree, key=key).to_pandas()


def _read_hdf5(path: Path, key: str | None) -> pa.Table:
    import h5py

    group_name = key or "data"
    try:
        with h5py.File(path, "r") as f:
            if group_name not in f:
                raise FormatError(
                    f"{path}: no group {group_name!r}; groups present: {sorted(f.keys())}; "
                    "pass the right one as key"
                )
            group = f[group_name]
            order = [str(c) for c in group.attrs.get("columns", sorted(group.keys()))]
            data: dict[str, object] = {}
            for name in order:
                if isinstance(group[name], h5py.Group):
                    import awkward as ak

                    sub = group[name]
                    form = ak.forms.from_json(str(sub.attrs["form"]))
                    array = ak.from_buffers(form, int(sub.attrs["length"]),
                                            {k: sub[k][()] for k in sub})
                    data[name] = ak.to_arrow(array, extensionarray=False, list_to32=True,
                                             string_to32=True)
                    continue
                values = group[name][()]
                if values.dtype.kind in "SO":
                    values = np.array([v.decode() if isinstance(v, bytes) else v for v in values],
                                      dtype=object)
                data[name] = pa.array(values)
    except OSError as exc:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({exc}); it is probably truncated, write it again"
        ) from exc
    return pa.table(data)


_STRINGS_TITLE = "podium-strings:"


def _is_tree(classname: str) -> bool:
    """A TTree, or an RNTuple (what uproot 5.7 writes for ``file[name] = {...}``)."""
    return classname == "TTree" or classname.endswith("RNTuple")


def _read_root(path: Path, tree: str | None) -> pa.Table:
    """A TTree or RNTuple as an Arrow table: flat branches as numbers, jagged ones (``Jet_Px`` with
    its counter ``nJet``) as list columns, one row per entry (event)."""
    import awkward as ak
    import uproot

    try:
        with uproot.open(path) as f:
            trees = [k.split(";")[0] for k, cls in f.classnames().items() if _is_tree(cls)]
            if tree is None:
                if len(trees) != 1:
                    raise FormatError(
                        f"{path}: holds {len(trees)} TTrees or RNTuples "
                        f"({', '.join(trees) or 'none'}); name the one to read"
                    )
                tree = trees[0]
            if tree not in trees:
                raise FormatError(
                    f"{path}: no TTree named {tree!r}; trees present: "
                    f"{', '.join(trees) or 'none'}; name one of them"
                )
            ttree = f[tree]
            title = str(getattr(ttree, "title", "") or "")
            ours = title.startswith(_STRINGS_TITLE)
            strings = [s for s in title[len(_STRINGS_TITLE):].split(",") if s] if ours else []
            arrays = ttree.arrays(library="ak")
            fields = list(arrays.fields)
            jagged = [n for n in fields if arrays[n].ndim > 1 and n not in strings]
            # Counters our export wrote for its variable-length branches are not columns.
            counters = {f"n{c}" for c in [*strings, *jagged]} if ours else set()
            columns: dict[str, pa.Array] = {}
            for name in fields:
                if name in counters:
                    continue
                col = arrays[name]
                if name in strings:
                    # Strings are stored as jagged uint8 (UTF-8 bytes): rebuild an Arrow array.
                    layout = ak.to_layout(ak.to_packed(col))
                    offsets = np.asarray(layout.offsets, dtype=np.int64)
                    content = np.asarray(layout.content.data, dtype=np.uint8)
                    columns[name] = pa.LargeStringArray.from_buffers(
                        len(offsets) - 1, pa.py_buffer(offsets.tobytes()),
                        pa.py_buffer(content.tobytes())).cast(pa.string())
                elif isinstance(col.type.content, ak.types.NumpyType):
                    columns[name] = pa.array(ak.to_numpy(col))
                else:  # jagged numbers, text (RNTuple), records
                    columns[name] = ak.to_arrow(col, extensionarray=False, list_to32=True,
                                                string_to32=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(
            f"{path}: not a readable ROOT file ({exc}); it is probably truncated, write it again"
        ) from exc
    return pa.table(columns)


def export_table(parquet_path: Path, fmt: str, out_path: Path) -> Path:
    """Convert a Parquet file to ``fmt`` (csv, parquet, hdf5 or root) at ``out_path``.

    The input is streamed by record batches. HDF5 stores one dataset per column under the group
    ``data`` (strings as UTF-8, column order in the ``columns`` attribute); ROOT stores a TTree
    named ``data`` (string columns as variable-length uint8 branches of their UTF-8 bytes, listed
    in the tree title so :func:`read_table` turns them back into strings). The file appears at
    ``out_path`` only when complete. Returns ``out_path``.
    """
    parquet_path, out_path = Path(parquet_path), Path(out_path)
    if fmt not in EXPORT_FORMATS:
        raise FormatError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    pf = pq.ParquetFile(parquet_path)
    nested = _nested_columns(pf.schema_arrow)
    if fmt == "csv" and nested:
        raise FormatError(
            f"{parquet_path}: column(s) {', '.join(nested)} hold lists (jagged, one list per "
            "event); CSV has one value per cell and cannot hold them: export as Parquet, HDF5 "
            "or ROOT"
        )
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, pf.schema_arrow) as writer:
            for i in range(pf.num_row_groups):
                writer.write_table(pf.read_row_group(i))
    elif fmt == "csv":
        with pacsv.CSVWriter(tmp, pf.schema_arrow) as writer:
            for batch in pf.iter_batches():
                writer.write_batch(batch)
    elif fmt == "hdf5":
        _export_hdf5(pf, tmp)
    else:
        _export_root(pf, tmp)
    tmp.replace(out_path)
    return out_path


def _nested_columns(schema: pa.Schema) -> list[str]:
    """Columns holding lists or records (jagged data), not one number or text per row."""
    return [f.name for f in schema if pa.types.is_nested(f.type)]


def _export_hdf5(pf: pq.ParquetFile, out: Path) -> None:
    schema = pf.schema_arrow
    nested = _nested_columns(schema)
    if nested:
        _export_hdf5_jagged(pf, out, nested)
        return
    _export_hdf5_flat(pf, out)


def _export_hdf5_jagged(pf: pq.ParquetFile, out: Path, nested: list[str]) -> None:
    """A table with jagged columns as HDF5: flat columns as in :func:`_export_hdf5_flat`; each
    jagged column a group ``data/NAME`` holding awkward's buffers (``ak.to_buffers``): one
    dataset per buffer (``node0-offsets``, ``node1-data`` ...), the form as JSON in the group's
    ``form`` attribute and the number of rows in ``length`` (``ak.from_buffers`` rebuilds it)."""
    import awkward as ak
    import h5py

    table = pf.read()
    schema = table.schema
    with h5py.File(out, "w") as f:
        group = f.create_group("data")
        group.attrs["columns"] = [str(n) for n in schema.names]
        group.attrs["jagged"] = [str(n) for n in nested]
        for field in schema:
            col = table.column(field.name).combine_chunks()
            if field.name in nested:
                form, length, buffers = ak.to_buffers(ak.to_packed(ak.from_arrow(col)))
                sub = group.create_group(field.name)
                sub.attrs["form"] = form.to_json()
                sub.attrs["length"] = int(length)
                for key, buffer in buffers.items():
                    sub.create_dataset(key, data=np.asarray(buffer))
            else:
                values = col.to_numpy(zero_copy_only=False)
                if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                    group.create_dataset(field.name, data=values.astype(object),
                                         dtype=h5py.string_dtype("utf-8"))
                else:
                    group.create_dataset(field.name, data=values)


def _export_hdf5_flat(pf: pq.ParquetFile, out: Path) -> None:
    import h5py

    schema = pf.schema_arrow
    with h5py.File(out, "w") as f:
        group = f.create_group("data")
        group.attrs["columns"] = [str(n) for n in schema.names]
        datasets = {}
        for field in schema:
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                dtype = h5py.string_dtype("utf-8")
            else:
                dtype = field.type.to_pandas_dtype()
            datasets[field.name] = group.create_dataset(
                field.name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=True
            )
        n = 0
        for batch in pf.iter_batches():
            m = batch.num_rows
            for name, ds in datasets.items():
                col = batch.column(name)
                # Text comes out of Arrow as an object array of str built in C (no per-value
                # Python loop here); h5py stores it as variable-length UTF-8.
                values = col.to_numpy(zero_copy_only=False)
                ds.resize((n + m,))
                ds[n : n + m] = values
            n += m


def _export_root(pf: pq.ParquetFile, out: Path) -> None:
    import awkward as ak
    import uproot

    schema = pf.schema_arrow
    strings = [f.name for f in schema
               if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    jagged = _nested_columns(schema)
    types: dict[str, str] = {}
    for field in schema:
        if field.name in jagged:
            # A jagged branch and its counter nNAME, as uproot writes them; the title lists the
            # tree as ours, so read_table drops the counters it added.
            types[field.name] = str(ak.from_arrow(pa.array([], type=field.type)).type.content)
            if not types[field.name].startswith("var *"):
                raise FormatError(
                    f"column {field.name!r} holds {field.type}; ROOT export takes lists of "
                    "numbers (one list per event): export it as Parquet or HDF5"
                )
        elif field.name in strings:
            # TTrees hold numbers: a string is written as a variable-length uint8 branch of its
            # UTF-8 bytes, and the tree title lists those branches so the reader decodes them.
            types[field.name] = "var * uint8"
        elif pa.types.is_boolean(field.type):
            types[field.name] = "bool"
        else:
            types[field.name] = str(np.dtype(field.type.to_pandas_dtype()))
    with uproot.recreate(out) as f:
        f.mktree("data", types,
                 title=_STRINGS_TITLE + ",".join(strings) if strings or jagged else "")
        for batch in pf.iter_batches():
            data: dict[str, Any] = {}
            for name in schema.names:
                col = batch.column(name)
                if name in jagged:
                    data[name] = ak.from_arrow(col)
                elif name in strings:
                    data[name] = ak.without_parameters(ak.from_arrow(col))
                else:
                    data[name] = col.to_numpy(zero_copy_only=False)
            f["data"].extend(data)


def file_checksums(path: Path) -> tuple[str, str]:
    """Return ``(md5, sha256)`` hex digests of a file, read in 1 MiB chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


# --------------------------------------------------------------------------- inspection

TRACKING_FILE = re.compile(r"^event(\d+)-(hits|truth|particles|cells)\.csv(\.gz)?$")
_EVENT_COLUMNS = ("event_id", "EventId", "event")


class FileInfo:
    """What a data file holds: format, row and event counts, column schema."""

    def __init__(self, fmt: str, rows: int, events: int | None,
                 schema: list[dict[str, str]], extra: dict[str, Any] | None = None) -> None:
        self.format = fmt
        self.rows = rows
        self.events = events
        self.schema = schema
        self.extra = extra or {}


def _schema_list(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def inspect_file(path: Path, *, tree: str | None = None) -> FileInfo:
    """Read ``path`` through once (streamed) and return its :class:`FileInfo`.

    Reading it all is the point: a truncated or corrupt file, or a CSV row whose type differs
    from the rest of its column, is found here, before the file enters a dataset version.
    """
    path = Path(path)
    fmt = table_format(path)
    tracking = TRACKING_FILE.match(path.name)
    if fmt == "csv":
        rows, schema, events = _inspect_csv(path)
        if tracking:
            return FileInfo("trackml-" + tracking.group(2), rows, 1, schema,
                            {"event": int(tracking.group(1))})
        return FileInfo("csv", rows, events, schema)
    if fmt == "parquet":
        try:
            pf = pq.ParquetFile(path)
            events_set: set[Any] = set()
            ev_col = next((c for c in _EVENT_COLUMNS if c in pf.schema_arrow.names), None)
            rows = 0
            for batch in pf.iter_batches(columns=[ev_col] if ev_col else None):
                rows += batch.num_rows
                if ev_col:
                    events_set.update(np.unique(batch.column(0).to_numpy(zero_copy_only=False))
                                      .tolist())
            if not ev_col:
                # Check every column chunk decodes: reading the data is what finds corruption.
                for i in range(pf.num_row_groups):
                    pf.read_row_group(i)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FormatError(
                f"{path}: not a readable Parquet file ({exc}); it is probably truncated or "
                "corrupt, write it again"
            ) from exc
        return FileInfo("parquet", rows, len(events_set) if ev_col else rows,
                        _schema_list(pf.schema_arrow))
    table = read_arrow(path, tree=tree)
    ev_col = next((c for c in _EVENT_COLUMNS if c in table.column_names), None)
    events = (len(np.unique(table.column(ev_col).to_numpy(zero_copy_only=False)))
              if ev_col else table.num_rows)
    extra = {"tree": tree} if tree else {}
    return FileInfo(fmt, table.num_rows, events, _schema_list(table.schema), extra)


def _inspect_csv(path: Path) -> tuple[int, list[dict[str, str]], int]:
    rows = 0
    ev_values: set[Any] = set()
    header: list[str] = []
    try:
        reader = pacsv.open_csv(path)
        header = list(reader.schema.names)
        ev_col = next((c for c in _EVENT_COLUMNS if c in reader.schema.names), None)
        for batch in reader:
            rows += batch.num_rows
            _check_mixed_types(pa.Table.from_batches([batch]), path)
            if ev_col:
                ev_values.update(np.unique(batch.column(ev_col).to_numpy(zero_copy_only=False))
                                 .tolist())
        schema = reader.schema
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        col_match = _CSV_COL.search(msg)
        name = ""
        if col_match:
            idx = int(col_match.group(1))
            name = f"column {header[idx] if idx < len(header) else idx!r} "
        raise FormatError(
            f"{path}: {name}cannot be read after row {rows + 1} ({msg}); a value has another type "
            "than the rest of its column or a line has the wrong number of fields: fix it"
        ) from exc
    except (OSError, EOFError) as exc:
        raise FormatError(
            f"{path}: cannot be read ({exc}); the file is probably truncated, upload it again"
        ) from exc
    return rows, _schema_list(schema), len(ev_values) if ev_values else rows


def write_checksum_files(directory: Path, files: list[Path]) -> tuple[Path, Path]:
    """Write ``MD5SUMS`` and ``SHA256SUMS`` (``md5sum -c`` format, paths relative to
    ``directory``) for ``files`` and return their paths."""
    directory = Path(directory)
    md5_lines, sha_lines = [], []
    for f in sorted(files):
        md5, sha = file_checksums(f)
        rel = Path(f).resolve().relative_to(directory.resolve()).as_posix()
        md5_lines.append(f"{md5}  {rel}\n")
        sha_lines.append(f"{sha}  {rel}\n")
    md5_path, sha_path = directory / "MD5SUMS", directory / "SHA256SUMS"
    md5_path.write_text("".join(md5_lines))
    sha_path.write_text("".join(sha_lines))
    return md5_path, sha_path
