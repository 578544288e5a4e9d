"""The run_* functions the CLI wires, end to end on small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from splitter.commands import (
    run_dataset_add,
    run_dataset_list,
    run_dataset_tag,
    run_dataset_verify,
    run_generate_higgs,
    run_generate_tracking,
    run_release,
    run_split,
    run_variant,
    to_json,
)
from splitter.generate import generate_higgs, write_higgs
from splitter.variants import VariantError


def test_write_higgs_small_equals_generate_and_chunks_keep_totals(tmp_path: Path) -> None:
    p = write_higgs(tmp_path / "h.parquet", 700, seed=5)
    pd.testing.assert_frame_equal(pd.read_parquet(p), generate_higgs(700, seed=5))
    chunked = pd.read_parquet(write_higgs(tmp_path / "c.parquet", 2500, 5, chunk_events=1000))
    assert chunked["EventId"].is_unique
    assert len(chunked) == 2500
    sums = chunked.groupby("Label")["Weight"].sum()
    assert np.isclose(sums["s"], 691.988607711987)
    assert np.isclose(sums["b"], 410999.847321509)


def test_cli_flow(tmp_path: Path) -> None:
    gen = run_generate_higgs(1000, 3, tmp_path / "higgs.csv")
    root = tmp_path / "store"
    desc = tmp_path / "d.md"
    desc.write_text("Toy data")
    added = run_dataset_add([Path(gen["path"])], "toy-higgs", root, license="CC0-1.0",
                            description=desc)
    assert added["ref"] == "toy-higgs:1"
    assert added["manifest"]["description"] == "Toy data"
    assert run_dataset_verify("toy-higgs:latest", root)["ok"]
    assert run_dataset_tag("toy-higgs:1", "v2027", root)["ref"] == "toy-higgs:1"
    listing = run_dataset_list(root)
    assert listing["versions"][0]["rows"] == 1000
    json.loads(to_json(listing))
    report = run_split(Path(gen["path"]), tmp_path / "pub", tmp_path / "hid",
                       {"seed": 1, "id_column": "EventId", "label_column": "Label",
                        "weight_column": "Weight", "stratify": "Label",
                        "reweight": {"weight": "Weight", "by": "Label"}})
    assert report["ok"]
    rel = run_release(tmp_path / "pub", tmp_path / "rel",
                      {"title": "Toy", "creators": [{"name": "Podium team"}], "license": "CC0-1.0",
                       "trackers": ["udp://tracker.example.org:1337"]})
    assert Path(rel["torrent"]).exists()
    out = run_variant("tes", Path(gen["path"]), tmp_path / "tes.parquet", ["scale=1.03"])
    assert out["output_rows"] <= 1000
    assert pd.read_parquet(tmp_path / "tes.parquet")["PRI_tau_pt"].min() >= 20
    with pytest.raises(ValueError, match="KEY=VALUE"):
        run_variant("tes", Path(gen["path"]), tmp_path / "x.parquet", ["scale"])
    with pytest.raises(VariantError, match="unknown kind"):
        run_variant("tez", Path(gen["path"]), tmp_path / "x.parquet", {})


def test_generate_tracking_command(tmp_path: Path) -> None:
    result = run_generate_tracking(2, 1, tmp_path / "trk", particles=20)
    assert result["files"] == 10  # 4 per event, events.parquet, tracking.parquet
    assert (tmp_path / "trk" / "event000001001-truth.csv").exists()
