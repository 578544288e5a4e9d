"""The TrackML-like simulator: files, geometry, truth weights, jagged Parquet."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from splitter.tracking import (
    HITS_COLUMNS,
    PARTICLES_COLUMNS,
    TRUTH_COLUMNS,
    generate_tracking,
    read_truth_folder,
    simulate_event,
)


def test_files_and_jagged_parquet(tmp_path: Path) -> None:
    paths = generate_tracking(3, seed=1, out_dir=tmp_path, n_particles=50)
    names = sorted(p.name for p in paths)
    assert "event000001000-hits.csv" in names
    assert "event000001002-particles.csv" in names
    assert "event000001002-cells.csv" in names
    assert "events.parquet" in names
    hits = pd.read_csv(tmp_path / "event000001001-hits.csv")
    truth = pd.read_csv(tmp_path / "event000001001-truth.csv")
    particles = pd.read_csv(tmp_path / "event000001001-particles.csv")
    assert list(hits.columns) == HITS_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    assert list(particles.columns) == PARTICLES_COLUMNS
    arr = ak.from_parquet(tmp_path / "events.parquet")
    assert ak.to_list(arr["event_id"]) == [1000, 1001, 1002]
    assert int(ak.num(arr["hits"], axis=1)[1]) == len(hits)
    np.testing.assert_allclose(ak.to_numpy(arr["hits"][1]["x"]), hits["x"].to_numpy())
    again = generate_tracking(3, seed=1, out_dir=tmp_path / "b", n_particles=50)
    assert again[0].read_bytes() == paths[0].read_bytes()


def test_event_physics() -> None:
    ev = simulate_event(np.random.default_rng(3), 0, n_particles=300)
    hits, truth, particles = ev.hits, ev.truth, ev.particles
    assert hits["hit_id"].is_unique
    assert (hits["hit_id"] == truth["hit_id"]).all()
    noise = truth["particle_id"] == 0
    assert 0.05 < noise.mean() < 0.15
    assert (truth.loc[noise, "weight"] == 0).all()
    assert np.isclose(truth["weight"].sum(), 1.0)
    # Hits lie on the detector surfaces.
    barrel = hits[hits["volume_id"] == 8]
    r = np.hypot(barrel["x"], barrel["y"])
    assert np.all(np.min(np.abs(r.to_numpy()[:, None] - np.array([32, 72, 116, 172])),
                         axis=1) < 0.5)
    assert set(hits["volume_id"]) <= {7, 8, 9, 12, 13, 14, 17}
    assert set(hits["layer_id"]) <= set(range(2, 16, 2))
    # Particle hit counts agree with the truth table; short tracks weigh nothing.
    counts = truth[~noise].groupby("particle_id").size()
    p = particles.set_index("particle_id")
    assert (p.loc[counts.index, "nhits"] == counts).all()
    short = p.index[(p["nhits"] > 0) & (p["nhits"] < 4)]
    assert (truth.loc[truth["particle_id"].isin(short), "weight"] == 0).all()
    # A track's hits follow its helix: the truth momentum keeps pT.
    one = truth[truth["particle_id"] == counts.idxmax()]
    pt = np.hypot(one["tpx"], one["tpy"])
    assert np.allclose(pt, pt.iloc[0])
    # Higher-pT tracks weigh more per hit.
    merged = truth[~noise & (truth["weight"] > 0)].merge(particles, on="particle_id")
    merged["pt"] = np.hypot(merged["px"], merged["py"])
    low = merged.loc[merged["pt"] < 0.4, "weight"].mean()
    high = merged.loc[merged["pt"] > 1.0, "weight"].mean()
    assert high > low


# The column types trackml-library's loader asks pandas for (trackml/dataset.py, *_DTYPES):
# every column of every part must parse with them.
TRACKML_LIBRARY_DTYPES = {
    "hits": {"hit_id": "i4", "x": "f4", "y": "f4", "z": "f4", "volume_id": "i4",
             "layer_id": "i4", "module_id": "i4"},
    "cells": {"hit_id": "i4", "ch0": "i4", "ch1": "i4", "value": "f4"},
    "particles": {"particle_id": "i8", "vx": "f4", "vy": "f4", "vz": "f4", "px": "f4",
                  "py": "f4", "pz": "f4", "q": "i4", "nhits": "i4"},
    "truth": {"hit_id": "i4", "particle_id": "i8", "tx": "f4", "ty": "f4", "tz": "f4",
              "tpx": "f4", "tpy": "f4", "tpz": "f4", "weight": "f4"},
}


def test_files_are_what_trackml_library_loads(tmp_path: Path) -> None:
    """What trackml-library's load_event(prefix) and load_dataset(folder) do, step by step:
    one file per part matching ``{prefix}-{part}.csv*`` for the default parts (hits, cells,
    particles, truth), each read with its dtypes; events found by the ``event\\d{9}-`` names."""
    generate_tracking(3, seed=2, out_dir=tmp_path, n_particles=40)
    pattern = re.compile(r".*event\d{9}-[a-zA-Z]+.csv(.gz)?$")
    prefixes = sorted({n.split("-", 1)[0] for n in os.listdir(tmp_path) if pattern.match(n)})
    assert prefixes == ["event000001000", "event000001001", "event000001002"]
    assert [int(re.findall(r".*event(\d+)", p)[0]) for p in prefixes] == [1000, 1001, 1002]
    for prefix in prefixes:
        parts = {}
        for part, dtypes in TRACKML_LIBRARY_DTYPES.items():
            files = glob.glob(f"{tmp_path / prefix}-{part}.csv*")
            assert len(files) == 1, (prefix, part, files)
            frame = pd.read_csv(files[0], header=0, index_col=False, dtype=dtypes)
            assert list(frame.columns) == list(dtypes), part
            parts[part] = frame
        hits, cells, truth = parts["hits"], parts["cells"], parts["truth"]
        assert set(cells["hit_id"]) == set(hits["hit_id"])
        assert (truth["hit_id"] == hits["hit_id"]).all()
        assert hits["hit_id"].tolist() == list(range(1, len(hits) + 1))


def test_truth_folder_is_a_solution_keyed_by_event_and_hit(tmp_path: Path) -> None:
    generate_tracking(2, seed=3, out_dir=tmp_path, n_particles=30)
    solution = read_truth_folder(tmp_path)
    assert list(solution.columns[:3]) == ["event_id", "hit_id", "particle_id"]
    assert sorted(set(solution["event_id"])) == [1000, 1001]
    flat = pd.read_parquet(tmp_path / "tracking.parquet")
    assert len(flat) == len(solution)
    assert list(flat.columns[:2]) == ["event_id", "hit_id"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no TrackML truth files"):
        read_truth_folder(tmp_path / "empty")
