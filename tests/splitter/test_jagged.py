"""Jagged data: a TTree with a variable-length branch (Jet_Px[nJet]) and an RNTuple, written with
uproot here, ingested as list columns, split with each event's lists whole, exported back."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from splitter.datasets import DatasetStore
from splitter.formats import FormatError, export_table, read_arrow
from splitter.split import SplitSpec, split_file


def jets(n: int, seed: int = 0) -> tuple[ak.Array, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, n)
    px = ak.unflatten(rng.normal(0, 30, int(counts.sum())), counts)
    return px, np.arange(n, dtype=np.int64), rng.integers(0, 2, n)


def ntuple(path: Path, n: int = 300) -> ak.Array:
    """A TTree as real ntuples have it: the counter nJet and the jagged branch Jet_Px[nJet]."""
    px, event, label = jets(n)
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Jet_Px": "var * float64", "MET": "float64", "event": "int64",
                            "label": "int64"}, counter_name=lambda _counted: "nJet")
        met = np.random.default_rng(n).exponential(40.0, n)
        f["Events"].extend({"Jet_Px": px, "MET": met, "event": event, "label": label})
    return px


def test_a_jagged_ttree_is_read_as_list_columns(tmp_path: Path) -> None:
    px = ntuple(tmp_path / "jets.root")
    table = read_arrow(tmp_path / "jets.root")
    assert table.column_names == ["nJet", "Jet_Px", "MET", "event", "label"]
    assert pa.types.is_list(table.schema.field("Jet_Px").type)
    assert table.column("Jet_Px").to_pylist() == px.tolist()
    assert table.column("nJet").to_pylist() == ak.num(px).tolist()


def test_an_rntuple_written_by_uproot_is_read(tmp_path: Path) -> None:
    px, event, _ = jets(50, seed=1)
    path = tmp_path / "strings.root"
    with uproot.recreate(path) as f:
        f["ntuple"] = {"Jet_Px": px, "event": event,
                       "name": ak.Array([f"ev{i}" for i in range(50)])}
    assert uproot.open(path).classnames() == {"ntuple;1": "ROOT::RNTuple"}
    table = read_arrow(path)
    assert table.column("name").to_pylist()[:2] == ["ev0", "ev1"]
    assert table.column("Jet_Px").to_pylist() == px.tolist()


def test_the_manifest_shows_jagged_types_and_counts_events(tmp_path: Path) -> None:
    ntuple(tmp_path / "jets.root", n=120)
    version = DatasetStore(tmp_path / "store").add([tmp_path / "jets.root"], "jets")
    (entry,) = version.manifest.files
    assert entry.rows == 120
    assert version.manifest.total_events == 120
    types = {c["name"]: c["type"] for c in entry.schema}
    assert types["Jet_Px"].startswith("list<")


def test_a_split_keeps_each_events_lists_whole(tmp_path: Path) -> None:
    ntuple(tmp_path / "jets.root", n=400)
    pq.write_table(read_arrow(tmp_path / "jets.root"), tmp_path / "jets.parquet")
    spec = SplitSpec(seed=2, id_column="event", label_column="label", train=0.5,
                     public_test=0.2, private_test=0.3)
    original = read_arrow(tmp_path / "jets.root").to_pandas().set_index("event")
    for source in (tmp_path / "jets.root", tmp_path / "jets.parquet"):
        out = tmp_path / source.suffix.strip(".")
        report = split_file(source, out / "p", out / "h", spec)
        assert report.ok
        train = pq.read_table(out / "p" / "train.parquet").to_pandas()
        test = pq.read_table(out / "p" / "test.parquet").to_pandas()
        assert len(train) + len(test) == 400
        for frame in (train, test):
            for event, lists in zip(frame["event"], frame["Jet_Px"], strict=True):
                assert list(lists) == list(original.loc[event, "Jet_Px"])


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "root"])
def test_exports_write_jagged_columns_back(tmp_path: Path, fmt: str) -> None:
    px = ntuple(tmp_path / "jets.root", n=80)
    table = read_arrow(tmp_path / "jets.root")
    pq.write_table(table, tmp_path / "jets.parquet")
    out = export_table(tmp_path / "jets.parquet", fmt, tmp_path / f"out.{fmt}")
    assert read_arrow(out).equals(table)
    if fmt == "root":
        # uproot reads the same arrays: the counter branch and the jagged branch.
        tree = uproot.open(out)["data"]
        assert tree["Jet_Px"].array().tolist() == px.tolist()
        assert tree["nJet_Px"].array().tolist() == ak.num(px).tolist()
    if fmt == "parquet":
        assert pa.types.is_list(pq.read_schema(out).field("Jet_Px").type)


def test_csv_export_of_jagged_columns_is_refused_with_the_formats_to_use(tmp_path: Path) -> None:
    ntuple(tmp_path / "jets.root", n=10)
    pq.write_table(read_arrow(tmp_path / "jets.root"), tmp_path / "jets.parquet")
    with pytest.raises(FormatError, match=r"Jet_Px hold lists.*export as Parquet, HDF5 or ROOT"):
        export_table(tmp_path / "jets.parquet", "csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_row_hashes_of_lists_tell_order_and_length_apart() -> None:
    from splitter.split import _row_hashes

    table = pa.table({"x": pa.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [1.0], [1.0, 0.0], [],
                                     []])})
    h = _row_hashes(table, ["x"]).tolist()
    assert h[0] == h[2]
    assert h[5] == h[6]
    assert len({h[0], h[1], h[3], h[4], h[5]}) == 5


def test_a_release_of_jagged_files_has_no_csv_and_the_other_formats(tmp_path: Path) -> None:
    from splitter.release import export_public_files

    ntuple(tmp_path / "jets.root", n=30)
    public = tmp_path / "public"
    public.mkdir()
    pq.write_table(read_arrow(tmp_path / "jets.root"), public / "train.parquet")
    written = sorted(p.name for p in export_public_files(public, tmp_path / "out"))
    assert written == ["train.h5", "train.parquet", "train.root"]
