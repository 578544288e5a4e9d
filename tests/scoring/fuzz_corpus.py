"""A seeded corpus of malformed submission files, each with what its "invalid" message must name.

Every file is a participant's mistake: grading it must end ``invalid`` (never ``error``, which
charges the quota and e-mails the organizers) with a message that names the problem. The
malformations are the ones fuzzing found (docs/scoring.md, "Malformed files"), plus random byte
mutations of a valid file, which must end ``invalid`` or ``scored`` but never ``error``.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    # Words the message must contain (case-insensitive), or None for mutations (any outcome
    # but "error" is fine: a mutation may leave the file valid).
    expect: tuple[str, ...] | None


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _parquet(table: pa.Table, **kwargs: object) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)  # type: ignore[arg-type]
    return sink.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return sink.getvalue()


def malformed(valid: pd.DataFrame, seed: int) -> Iterator[Case]:
    """The named malformations, varied by ``seed`` (``valid`` is a correct submission)."""
    rng = random.Random(seed)  # noqa: S311 - a seeded corpus, not a secret
    n = len(valid)
    header = ",".join(valid.columns)
    body = _csv(valid)
    lines = body.decode().splitlines()
    line = rng.randrange(1, n)  # a data line (0 is the header)

    # Non-UTF-8 text: a Latin-1 header, a Latin-1 value, Windows-1252 quotes.
    for word in ("Prédiction", "Événement", "Classé", "Größe"):
        yield Case(
            f"latin1-header-{word}",
            (header + "," + word + "\n").encode("latin-1")
            + b"".join(x.encode() + b",x\n" for x in lines[1:]),
            ("utf-8",),
        )
    bad = list(lines)
    bad[line] = bad[line].replace(",b", ",b\xe9").replace(",s", ",s\xe9")
    yield Case(
        "latin1-value", "\n".join(bad).encode("latin-1") + b"\n", ("utf-8", f"line {line + 1}")
    )
    yield Case(
        "cp1252-quotes", b"\x93EventId\x94,RankOrder,Class\n" + body.split(b"\n", 1)[1], ("utf-8",)
    )
    # UTF-16 (Excel's "Unicode text"), with and without a byte order mark.
    text = body.decode()
    yield Case("utf16-bom", text.encode("utf-16"), ("utf-16",))
    yield Case("utf16-le", text.encode("utf-16-le"), ("utf-16",))
    yield Case("utf16-be", text.encode("utf-16-be"), ("utf-16",))
    # Empty-looking files that are not empty.
    yield Case("empty", b"", ("empty",))
    yield Case("header-only", (header + "\n").encode(), ("no rows",))
    yield Case("header-only-no-newline", header.encode(), ("no rows",))
    yield Case("blank-lines", b"\n\n\n", ("blank",))
    yield Case(
        "unbalanced-quote", (header + "\n" + '"' + "\n".join(lines[1:]) + "\n").encode(), ("quote",)
    )
    yield Case(
        "unbalanced-quote-mid",
        body.replace(lines[line].encode(), lines[line].replace(",", ',"', 1).encode()),
        ("quote",),
    )
    yield Case("empty-zip", _zip({}), ("zip", "nothing"))
    yield Case("zip-of-empty-csv", _zip({"pred.csv": b""}), ("empty",))
    yield Case("zip-of-two", _zip({"a.csv": body, "b.csv": body}), ("zip", "a.csv"))
    yield Case("gzip-of-empty", gzip.compress(b""), ("empty",))
    yield Case("gzip-truncated", gzip.compress(body)[: 40 + rng.randrange(20)], ("gzip",))
    # Headers that are very long: repeated names (was quadratic) and one huge name.
    repeats = 800_000 // (len("RankOrder") + 1)
    yield Case(
        "header-repeats-800k",
        (",".join(["RankOrder"] * repeats) + "\n1\n").encode(),
        ("header", "64 KiB"),
    )
    yield Case(
        "header-repeats-60k",
        (",".join(["RankOrder"] * 6000) + "\n1\n").encode(),
        ("repeats", "RankOrder"),
    )
    many = ",".join(f"c{i}" for i in range(60_000))
    yield Case("header-60k-columns", (many + "\n").encode(), ("header",))
    yield Case("header-one-huge-name", ("X" * 900_000 + "\n1\n").encode(), ("header",))
    yield Case(
        "header-repeats-id",
        (f"EventId,EventId,{header}\n").encode()
        + b"".join(f"1,1,{x}\n".encode() for x in lines[1:]),
        ("repeats", "EventId"),
    )
    # Numbers out of range or not numbers.
    for value in ("1e308", "-1e308", "9223372036854775808", "1e19", "inf"):
        frame = valid.copy()
        frame["RankOrder"] = frame["RankOrder"].astype(object)
        frame.loc[line - 1, "RankOrder"] = value
        yield Case(f"rank-{value}", _csv(frame), ("RankOrder", f"line {line + 1}"))
    frame = valid.copy()
    frame["EventId"] = frame["EventId"].astype(object)
    frame.loc[line - 1, "EventId"] = "1e308"
    yield Case("id-1e308", _csv(frame), ("EventId", f"line {line + 1}"))
    frame = valid.copy()
    frame.loc[line - 1, "EventId"] = 7
    yield Case("one-unknown-id", _csv(frame), (f"line {line + 1} has an id",))
    # Parquet: wrong types (the row list of the message must not be empty), and a bomb.
    table = pa.Table.from_pandas(valid, preserve_index=False)
    for name, array in (
        ("bool", pa.array([True] * n)),
        ("timestamp", pa.array(pd.date_range("2027-01-01", periods=n, freq="s"))),
        ("list", pa.array([[1]] * n)),
        ("binary", pa.array([b"\xff"] * n)),
        ("string", pa.array(["x"] * n)),
    ):
        typed = table.set_column(1, "RankOrder", array)
        yield Case(f"parquet-rank-{name}", _parquet(typed), ("RankOrder",))
    yield Case(
        "parquet-id-list",
        _parquet(table.set_column(0, "EventId", pa.array([[1]] * n))),
        ("EventId",),
    )
    yield Case("parquet-truncated", _parquet(table)[: -rng.randrange(10, 200)], ("parquet",))
    yield Case("parquet-no-rows", _parquet(table.slice(0, 0)), ("no rows",))


def parquet_bomb(rows: int) -> bytes:
    """A small Parquet file that decodes to ``rows`` rows of the right columns (constant values
    compress to almost nothing)."""
    table = pa.table({
        "EventId": pa.array(np.zeros(rows, dtype=np.int64)),
        "RankOrder": pa.array(np.ones(rows, dtype=np.int64)),
        "Class": pa.array(["s"] * 1) .take(pa.array(np.zeros(rows, dtype=np.int32))),
    })  # fmt: skip
    return _parquet(table, compression="zstd", row_group_size=1 << 24)


def mutations(valid: pd.DataFrame, seed: int, count: int) -> Iterator[Case]:
    """Random byte flips, insertions, deletions and truncations of a valid CSV."""
    rng = random.Random(seed)  # noqa: S311 - a seeded corpus, not a secret
    base = bytearray(_csv(valid))
    for i in range(count):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
            elif op == 2:
                del data[at : at + rng.randrange(1, 40)]
            else:
                del data[at:]
                break
        yield Case(f"mutation-{seed}-{i}", bytes(data), None)
