"""Dataset versions: ingestion, manifests, immutability, tags, verification."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from splitter.datasets import DatasetError, DatasetStore, suggest_name
from splitter.formats import export_table


@pytest.fixture
def files(tmp_path: Path, higgs_small: pd.DataFrame) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    df = higgs_small.head(500)
    out = {"parquet": src / "higgs.parquet", "csv": src / "higgs.csv",
           "gz": src / "higgs.csv.gz"}
    df.to_parquet(out["parquet"])
    df.to_csv(out["csv"], index=False)
    df.to_csv(out["gz"], index=False, compression="gzip")
    out["h5"] = export_table(out["parquet"], "hdf5", src / "higgs.h5")
    out["root"] = export_table(out["parquet"], "root", src / "higgs.root")
    return out


def test_add_makes_version_with_full_manifest(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    v = store.add(list(files.values()), "higgsml", license="CC-BY-4.0",
                  description="toy", citation={"title": "HiggsML toy"})
    assert v.ref == "higgsml:1"
    m = v.manifest
    assert m.parent is None
    assert m.license == "CC-BY-4.0"
    assert m.created.endswith("+00:00")
    by_name = {f.path: f for f in m.files}
    assert set(by_name) == {p.name for p in files.values()}
    for f in m.files:
        assert f.rows == 500, f.path
        assert f.size == (v.file(f.path)).stat().st_size
        assert len(f.md5) == 32
        assert len(f.sha256) == 64
    assert by_name["higgs.csv.gz"].format == "csv"
    assert by_name["higgs.root"].format == "root"
    assert {"name": "EventId", "type": "int64"} in by_name["higgs.parquet"].schema
    on_disk = json.loads((v.directory / "manifest.json").read_text())
    assert on_disk["version"] == 1
    assert on_disk["files"][0]["sha256"]
    # Committed files are read-only.
    mode = v.file("higgs.parquet").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_versions_tags_and_latest(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    v1 = store.add([files["parquet"]], "higgsml")
    v2 = store.edit("higgsml:1", add=[files["csv"]], license="CC0-1.0")
    assert v2.ref == "higgsml:2"
    assert v2.manifest.parent == "higgsml:1"
    assert {f.path for f in v2.manifest.files} == {"higgs.parquet", "higgs.csv"}
    assert {f.path for f in store.get("higgsml:1").manifest.files} == {"higgs.parquet"}
    assert store.get("higgsml:1").manifest.license is None
    assert store.resolve("higgsml:latest") == ("higgsml", 2)
    assert store.resolve("higgsml") == ("higgsml", 2)
    store.tag("higgsml:1", "stable")
    assert store.resolve("higgsml:stable") == ("higgsml", 1)
    v3 = store.edit("higgsml:stable", remove=["higgs.parquet"], add=[files["gz"]])
    assert v3.ref == "higgsml:3"
    assert v3.manifest.parent == "higgsml:1"
    assert [m.ref for m in store.list()] == ["higgsml:1", "higgsml:2", "higgsml:3"]
    assert v1.manifest == store.get("higgsml:1").manifest
    with pytest.raises(DatasetError, match="no tag 'beta'"):
        store.resolve("higgsml:beta")
    with pytest.raises(DatasetError, match="no version 9"):
        store.resolve("higgsml:9")


def test_bad_names_get_a_suggestion(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    with pytest.raises(DatasetError,
                       match=r"invalid dataset name 'Higgs ML_2014'.*'higgs-ml-2014'"):
        store.add([files["csv"]], "Higgs ML_2014")
    assert suggest_name("--Track__ML--") == "track-ml"


def test_verify_detects_corruption(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    v = store.add([files["parquet"], files["csv"]], "higgsml")
    assert store.verify("higgsml:1").ok
    target = v.file("higgs.csv")
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    (v.files_dir / "stray.txt").write_text("x")
    result = store.verify("higgsml:1")
    assert not result.ok
    assert any(p.startswith("higgs.csv: MD5") for p in result.problems)
    assert any(p.startswith("higgs.csv: SHA-256") for p in result.problems)
    assert "stray.txt: not in the manifest" in result.problems
    os.remove(v.file("higgs.parquet"))
    assert "higgs.parquet: missing" in store.verify("higgsml:1").problems


def test_corrupt_file_commits_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(files["parquet"].read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"bad\.parquet.*truncated or corrupt"):
        store.add([files["csv"], bad], "higgsml")
    assert store.versions("higgsml") == []
    assert not list((tmp_path / "store" / "higgsml").iterdir())


def test_root_file_without_named_tree(tmp_path: Path, files: dict[str, Path]) -> None:
    store = DatasetStore(tmp_path / "store")
    with pytest.raises(DatasetError, match=r"higgs\.root: no TTree named 'events'.*data"):
        store.add([files["root"]], "higgsml", tree="events")


def test_mixed_types_in_csv_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    p.write_text("id,x\n" + "".join(f"{i},{i}.5\n" for i in range(100)) + "100,oops\n")
    with pytest.raises(DatasetError, match=r"mixed\.csv: column 'x' holds numbers but line 102"):
        DatasetStore(tmp_path / "s").add([p], "mixed")


def test_tracking_files_count_events(tmp_path: Path) -> None:
    for ev in (0, 1):
        stem = tmp_path / f"event00000000{ev}"
        pd.DataFrame({"hit_id": [1, 2], "x": [0.1, 0.2], "y": [1.0, 2.0], "z": [3.0, 4.0],
                      "volume_id": [7, 7], "layer_id": [2, 4], "module_id": [1, 1]}).to_csv(
            f"{stem}-hits.csv", index=False)
        pd.DataFrame({"hit_id": [1, 2], "particle_id": [0, 5]}).to_csv(f"{stem}-truth.csv",
                                                                       index=False)
    paths = sorted(tmp_path.glob("event*.csv"))
    v = DatasetStore(tmp_path / "store").add(paths, "trackml-toy")
    assert v.manifest.total_events == 2
    assert {f.format for f in v.manifest.files} == {"trackml-hits", "trackml-truth"}


def _tracking_event(folder: Path, ev: int, *, truth_rows: int = 2, cells: bool = False) -> None:
    stem = folder / f"event{ev:09d}"
    pd.DataFrame({"hit_id": [1, 2], "x": [0.1, 0.2], "y": [1.0, 2.0], "z": [3.0, 4.0],
                  "volume_id": [7, 7], "layer_id": [2, 4], "module_id": [1, 1]}).to_csv(
        f"{stem}-hits.csv", index=False)
    pd.DataFrame({"hit_id": range(1, truth_rows + 1), "particle_id": [0] * truth_rows}).to_csv(
        f"{stem}-truth.csv", index=False)
    if cells:
        pd.DataFrame({"hit_id": [1, 1, 2], "ch0": [10, 11, 40], "ch1": [3, 3, 8],
                      "value": [0.2, 0.1, 0.3]}).to_csv(f"{stem}-cells.csv", index=False)


def test_tracking_cells_files_are_recognised(tmp_path: Path) -> None:
    for ev in (0, 1):
        _tracking_event(tmp_path, ev, cells=True)
    v = DatasetStore(tmp_path / "store").add(sorted(tmp_path.glob("event*.csv")), "cells")
    cells = [f for f in v.manifest.files if f.format == "trackml-cells"]
    assert [f.rows for f in cells] == [3, 3]
    assert v.manifest.total_events == 2


def test_incomplete_tracking_events_are_refused(tmp_path: Path) -> None:
    for ev in (0, 1, 2):
        _tracking_event(tmp_path, ev, cells=ev != 1)
    store = DatasetStore(tmp_path / "store")
    with pytest.raises(DatasetError, match=r"event000000001-cells\.csv missing.*leave out every "
                                           r"cells file"):
        store.add(sorted(tmp_path.glob("event*.csv")), "partial")
    (tmp_path / "event000000002-hits.csv").unlink()
    files = [p for p in sorted(tmp_path.glob("event*.csv")) if "cells" not in p.name]
    with pytest.raises(DatasetError, match=r"event000000002-hits\.csv missing"):
        store.add(files, "partial")
    assert store.list() == []


def test_truth_needs_one_row_per_hit(tmp_path: Path) -> None:
    _tracking_event(tmp_path, 0, truth_rows=3)
    with pytest.raises(DatasetError, match=r"event000000000-truth\.csv has 3 rows but "
                                           r"event000000000-hits\.csv has 2"):
        DatasetStore(tmp_path / "store").add(sorted(tmp_path.glob("event*.csv")), "bad")
