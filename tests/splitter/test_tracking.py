"""The TrackML-like simulator: files, geometry, truth weights, jagged Parquet."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd

from splitter.tracking import (
    HITS_COLUMNS,
    PARTICLES_COLUMNS,
    TRUTH_COLUMNS,
    generate_tracking,
    simulate_event,
)


def test_files_and_jagged_parquet(tmp_path: Path) -> None:
    paths = generate_tracking(3, seed=1, out_dir=tmp_path, n_particles=50)
    names = sorted(p.name for p in paths)
    assert "event000000000-hits.csv" in names
    assert "event000000002-particles.csv" in names
    assert "events.parquet" in names
    hits = pd.read_csv(tmp_path / "event000000001-hits.csv")
    truth = pd.read_csv(tmp_path / "event000000001-truth.csv")
    particles = pd.read_csv(tmp_path / "event000000001-particles.csv")
    assert list(hits.columns) == HITS_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    assert list(particles.columns) == PARTICLES_COLUMNS
    arr = ak.from_parquet(tmp_path / "events.parquet")
    assert ak.to_list(arr["event_id"]) == [0, 1, 2]
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
