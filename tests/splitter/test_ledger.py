"""The holdout ledger's library half: canonical row hashes, membership, entries and lookups."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from splitter.generate import generate_higgs
from splitter.ledger import (
    HoldoutLedger,
    LedgerEntry,
    count_in,
    distinct,
    feature_columns,
    id_hashes,
    row_hashes,
)
from splitter.variants import apply_variant

TRUTH = ["EventId", "Label", "Weight"]


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_higgs(4000, seed=5)


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _features(frame: pd.DataFrame) -> list[str]:
    return feature_columns(frame.columns, TRUTH)


def test_row_hash_is_canonical_across_formats_orders_and_dtypes(events: pd.DataFrame) -> None:
    cols = _features(events)
    base = row_hashes(_table(events), cols)
    # Column order, a CSV round trip, float32 storage, ints stored as floats: same hashes.
    shuffled = events[list(reversed(events.columns))]
    buffer = io.StringIO()
    events.to_csv(buffer, index=False)
    buffer.seek(0)
    from_csv = pd.read_csv(buffer)
    as_f32 = events.astype({c: "float32" for c in cols if events[c].dtype == np.float64})
    as_float = events.astype({"PRI_jet_num": "float64"})
    buffer = io.StringIO()
    as_f32.to_csv(buffer, index=False)
    buffer.seek(0)
    f32_csv = pd.read_csv(buffer)
    for variant in (shuffled, from_csv, as_f32, as_float, f32_csv):
        assert np.array_equal(row_hashes(_table(variant), cols), base)
    # Nulls are NaN whatever the column's type; -0.0 is 0.0, in every format.
    holes = events.astype({"PRI_jet_num": "Int64"}).copy()
    holes.loc[0, ["PRI_jet_num", "PRI_met"]] = pd.NA, np.nan
    as_nan = events.astype({"PRI_jet_num": "float64"}).copy()
    as_nan.loc[0, ["PRI_jet_num", "PRI_met"]] = np.nan
    assert row_hashes(_table(holes), cols)[0] == row_hashes(_table(as_nan), cols)[0]
    negzero = events.copy()
    negzero.loc[0, "PRI_tau_eta"] = -0.0
    buffer = io.StringIO()
    negzero.to_csv(buffer, index=False)
    buffer.seek(0)
    assert row_hashes(_table(pd.read_csv(buffer)), cols)[0] == row_hashes(
        _table(negzero.astype({"PRI_tau_eta": "float32"})), cols)[0]
    zero = negzero.copy()
    zero.loc[0, "PRI_tau_eta"] = 0.0
    assert row_hashes(_table(zero), cols)[0] == row_hashes(_table(negzero), cols)[0]


def test_row_hash_ignores_ids_and_labels_and_sees_every_feature(events: pd.DataFrame) -> None:
    cols = _features(events)
    base = row_hashes(_table(events), cols)
    relabelled = events.assign(EventId=events["EventId"] + 10**6, Label="s", Weight=1.0)
    assert np.array_equal(row_hashes(_table(relabelled), cols), base)
    for column in cols:
        changed = events.copy()
        changed.loc[0, column] = changed.loc[0, column] + 1.0
        assert row_hashes(_table(changed), cols)[0] != base[0], column
    assert len(np.unique(base)) == len(events)


def test_row_hash_of_string_features() -> None:
    a = pa.table({"x": [1.0, 2.0, 2.0], "kind": ["a", "b", "c"]})
    b = pa.table({"kind": pa.array(["a", "b", "c"]).dictionary_encode(), "x": [1, 2, 2]})
    ha, hb = row_hashes(a, ["x", "kind"]), row_hashes(b, ["x", "kind"])
    assert np.array_equal(ha, hb)
    assert len(set(ha.tolist())) == 3


def test_no_collision_among_many_generated_rows() -> None:
    frame = generate_higgs(300_000, seed=9)
    h = row_hashes(_table(frame), _features(frame))
    assert len(np.unique(h)) == len(frame)


def test_rows_a_few_float32_steps_apart_in_two_columns_do_not_collide(
        events: pd.DataFrame) -> None:
    # The first version multiplied column k by an arithmetic progression (2k + 3) * S: a row with
    # +5 float32 steps in its first column and -3 in its second had the same hash (3*5 = 5*3), and
    # ten million generated rows held 57 colliding pairs. Independent random multipliers: none.
    cols = _features(events)
    base = events.iloc[[7]].astype(dict.fromkeys(cols, "float32"))
    rows = [base]
    for i in range(6):
        for j in range(i + 1, 6):
            for di in range(-6, 7):
                for dj in range(-6, 7):
                    if di == 0 and dj == 0:
                        continue
                    row = base.copy()
                    for column, d in ((cols[i], di), (cols[j], dj)):
                        bits = row[column].to_numpy().view(np.int32) + np.int32(d)
                        row[column] = bits.view(np.float32)
                    rows.append(row)
    # (A change in one column alone is made once per partner column: keep one of each.)
    table = _table(pd.concat(rows, ignore_index=True).drop_duplicates(subset=cols))
    h = row_hashes(table, cols)
    assert len(np.unique(h)) == len(h)


@pytest.mark.parametrize(("n_values", "n_pool"), [(100, 50), (50_000, 3_000), (200_000, 150_000)])
def test_count_in_agrees_with_isin(n_values: int, n_pool: int) -> None:
    rng = np.random.default_rng(n_values)
    pool = distinct(rng.integers(0, 2**63, n_pool, dtype=np.int64).astype(np.uint64) * np.uint64(2))
    values = rng.integers(0, 2**63, n_values, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    values[: n_values // 3] = rng.choice(pool, n_values // 3)
    assert count_in(values, pool) == int(np.isin(values, pool).sum())
    assert count_in(values, pool[:0]) == 0


def _record(ledger: HoldoutLedger, holder: str, hidden: pd.DataFrame,
            lineage: list[str] | None = None) -> None:
    cols = _features(hidden)
    entry = LedgerEntry(holder=holder, rows=len(hidden), columns=cols,
                        truth_columns=["Label", "Weight"], id_column="EventId",
                        lineage=lineage or [])
    ledger.record(entry, row_hashes(_table(hidden), cols), id_hashes(hidden["EventId"]))


def test_find_by_content_only_for_labelled_tables(tmp_path: Path, events: pd.DataFrame) -> None:
    ledger = HoldoutLedger(tmp_path / "ledger")
    hidden = events.iloc[:1000]
    _record(ledger, "held", hidden)
    assert ledger.holders() == ["held"]
    # A copy under new ids, in another column order, with labels: caught, with the row count.
    copy = events.iloc[500:3000].assign(EventId=lambda f: f["EventId"] + 7_000_000)
    hits = ledger.find(_table(copy[list(reversed(copy.columns))]))
    assert [h.to_dict() for h in hits] == [{"holder": "held", "rows": 500, "by": "content"}]
    # The same rows without any truth column publish no label (that is the test file itself).
    assert ledger.find(_table(copy.drop(columns=["Label", "Weight"]))) == []
    # ...unless they are about to be shifted by a variant that keeps the labels.
    assert ledger.find(_table(copy.drop(columns=["Label"])))[0].rows == 500
    assert ledger.find(_table(events.iloc[2000:])) == []
    assert ledger.find(_table(copy), skip=["held"]) == []
    ledger.forget("held")
    assert ledger.holders() == []


def test_find_by_lineage_catches_a_shifted_copy(tmp_path: Path, events: pd.DataFrame) -> None:
    ledger = HoldoutLedger(tmp_path / "ledger")
    _record(ledger, "held", events.iloc[:1000], lineage=["higgs:1"])
    shifted = apply_variant(events.iloc[:2000], {"kind": "tes", "scale": 1.03})
    # The shift changed the features: the content check no longer sees the hidden rows...
    assert ledger.find(_table(shifted)) == []
    # ...but a version derived from the dataset the challenge split still shares its ids.
    hits = ledger.find(_table(shifted), lineage=["higgs:2", "higgs:1"])
    assert [h.to_dict() for h in hits] == [{"holder": "held", "rows": 1000, "by": "lineage"}]
    assert ledger.find(_table(shifted), lineage=["other:1"]) == []


def test_record_split_keeps_test_rows_and_truth_columns(tmp_path: Path,
                                                        events: pd.DataFrame) -> None:
    public, hidden = tmp_path / "public", tmp_path / "hidden"
    public.mkdir()
    hidden.mkdir()
    test = events.iloc[:800]
    pq.write_table(_table(test.drop(columns=["Label", "Weight"])), public / "test.parquet")
    pq.write_table(_table(test[["EventId", "Label", "Weight"]].assign(Usage="Public")),
                   hidden / "solution.parquet")
    ledger = HoldoutLedger(tmp_path / "ledger")
    entry = ledger.record_split("c1", public, hidden, id_column="EventId", lineage=["d:1"])
    assert entry.rows == 800
    assert entry.truth_columns == ["Label", "Weight"]
    assert "EventId" not in entry.columns
    assert ledger.entry("c1") == entry
    assert ledger.find(_table(events))[0].rows == 800
