"""Reading tables, exports and checksums."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from splitter.formats import FormatError, export_table, file_checksums, read_table


def test_csv_gz_and_parquet_read_the_same(tmp_path: Path, higgs_small: pd.DataFrame) -> None:
    df = higgs_small.head(200)
    csv = tmp_path / "a.csv"
    df.to_csv(csv, index=False)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    pq_path = tmp_path / "a.parquet"
    df.to_parquet(pq_path)
    for path in (csv, gz, pq_path):
        got = read_table(path)
        pd.testing.assert_frame_equal(got, df, check_dtype=False, check_exact=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "hdf5", "root"])
def test_export_round_trip(tmp_path: Path, higgs_small: pd.DataFrame, fmt: str) -> None:
    df = higgs_small.head(300)
    src = tmp_path / "in.parquet"
    df.to_parquet(src, row_group_size=100)
    ext = {"csv": "csv", "parquet": "parquet", "hdf5": "h5", "root": "root"}[fmt]
    out = export_table(src, fmt, tmp_path / f"out.{ext}")
    back = read_table(out)
    assert list(back.columns) == list(df.columns)
    assert len(back) == 300
    pd.testing.assert_series_equal(back["DER_mass_vis"], df["DER_mass_vis"], check_exact=False)
    assert list(back["Label"].astype(str)) == list(df["Label"])


def test_checksums_match_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    data = b"podium" * 400_000
    p.write_bytes(data)
    md5, sha = file_checksums(p)
    assert md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert sha == hashlib.sha256(data).hexdigest()


def test_mixed_types_in_a_csv_column_name_the_column(tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    rows = ["id,x"] + [f"{i},{i * 0.5}" for i in range(5000)] + ["5000,abc"]
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(FormatError,
                       match=r"column .x. holds numbers but line 5002 has .abc.*same type"):
        read_table(p)


def test_truncated_parquet_is_reported(tmp_path: Path, higgs_small: pd.DataFrame) -> None:
    p = tmp_path / "t.parquet"
    higgs_small.to_parquet(p)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(FormatError, match=r"t\.parquet.*truncated"):
        read_table(p)


def test_unknown_extension(tmp_path: Path) -> None:
    p = tmp_path / "x.xlsx"
    p.write_text("nope")
    with pytest.raises(FormatError, match="extensions"):
        read_table(p)
