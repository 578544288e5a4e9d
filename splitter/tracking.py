"""Toy TrackML-like events: charged particles on helices in a solenoid field.

Geometry (millimetres, a simplified TrackML detector; the field is 2 T along z):

* barrel cylinders: volume 8 (pixel, r = 32, 72, 116, 172; |z| < 500), volume 13 (short strips,
  r = 260, 360, 500, 660; |z| < 1080), volume 17 (long strips, r = 820, 1020; |z| < 1080);
* end-cap disks: volumes 7/9 (pixel, |z| = 600 ... 1500, 30 < r < 175) and 12/14 (strips,
  |z| = 1300 ... 2950, 230 < r < 700), negative z first;
* layer ids count 2, 4, 6, ... outward (as in TrackML); module ids number the phi x z (barrel)
  or phi x r (disk) cells of a layer from 1.

Each particle starts at a vertex spread around the origin, follows its helix over the first half
turn and leaves one hit per crossed surface (smeared by the surface resolution). Noise hits
(``particle_id`` 0) are thrown uniformly on random surfaces. Truth weights follow the TrackML
rules in spirit: particles with fewer than 4 hits and noise weigh 0; a hit's weight grows with
the particle pT (0.2 below 0.5 GeV, rising to 1 at 3 GeV) and is larger for the first and the
last hits of a track; weights sum to 1 in every event. Each hit also leaves one to four cells
(``-cells.csv``: ``hit_id, ch0, ch1, value``, the pixel or strip channels it fired and their
charge), as in TrackML.

The files are TrackML's: ``event000001000-hits.csv``, ``-cells.csv``, ``-particles.csv`` and
``-truth.csv`` per event, numbered from 1000 like TrackML's training events, with its columns in
its order, so trackml-library's ``load_event(prefix)`` and ``load_dataset(folder)`` read them
unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

B_FIELD_T = 2.0
_BARREL = [  # volume, layer, radius, half-length, resolution, phi modules, z modules
    *[(8, 2 * (i + 1), r, 500.0, 0.01, 16 + 8 * i, 10) for i, r in enumerate((32, 72, 116, 172))],
    *[(13, 2 * (i + 1), r, 1080.0, 0.05, 40 + 8 * i, 14)
      for i, r in enumerate((260, 360, 500, 660))],
    *[(17, 2 * (i + 1), r, 1080.0, 0.1, 64 + 8 * i, 12) for i, r in enumerate((820, 1020))],
]
_PIXEL_Z = (600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0)
_STRIP_Z = (1300.0, 1550.0, 1850.0, 2150.0, 2450.0, 2950.0)
_DISKS = [  # volume, layer, z, rmin, rmax, resolution, phi modules, r modules
    *[(7, 2 * (len(_PIXEL_Z) - i), -z, 30.0, 175.0, 0.01, 24, 4) for i, z in enumerate(_PIXEL_Z)],
    *[(9, 2 * (i + 1), z, 30.0, 175.0, 0.01, 24, 4) for i, z in enumerate(_PIXEL_Z)],
    *[(12, 2 * (len(_STRIP_Z) - i), -z, 230.0, 700.0, 0.05, 48, 6)
      for i, z in enumerate(_STRIP_Z)],
    *[(14, 2 * (i + 1), z, 230.0, 700.0, 0.05, 48, 6) for i, z in enumerate(_STRIP_Z)],
]

HITS_COLUMNS = ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]
TRUTH_COLUMNS = ["hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight"]
PARTICLES_COLUMNS = ["particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"]
CELLS_COLUMNS = ["hit_id", "ch0", "ch1", "value"]
#: TrackML numbered its training events from 1000 (``event000001000``).
FIRST_EVENT = 1000
#: The per-event files, in TrackML's names: ``event000001000-hits.csv`` and so on.
EVENT_PARTS = ("hits", "cells", "particles", "truth")


@dataclass
class TrackingEvent:
    """One simulated event: the three TrackML tables."""

    event_id: int
    hits: pd.DataFrame
    truth: pd.DataFrame
    particles: pd.DataFrame
    cells: pd.DataFrame


def _pt_weight(pt: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    w: npt.NDArray[np.float64] = np.clip(0.2 + 0.8 * (pt - 0.5) / 2.5, 0.2, 1.0)
    return w


def _order_weight(order: npt.NDArray[np.int64], nhits: npt.NDArray[np.int64]
                  ) -> npt.NDArray[np.float64]:
    # The first hits seed a track and the last ones fix its reach: they count more.
    first = np.array([10.0, 8.0, 6.0])
    last = np.array([6.0, 5.0, 4.0])  # from the last hit backwards
    from_end = nhits - 1 - order
    w = np.full(order.shape, 3.0)
    w = np.where(from_end < 3, last[np.minimum(from_end, 2)], w)
    w = np.where(order < 3, first[np.minimum(order, 2)], w)
    return w


def simulate_event(rng: np.random.Generator, event_id: int, n_particles: int = 200,
                   noise_fraction: float = 0.1) -> TrackingEvent:
    """Simulate one event (see the module docstring)."""
    n = n_particles
    pt = 0.15 * (1.0 + rng.pareto(2.5, n))  # GeV, steeply falling like minimum bias
    eta = rng.uniform(-3.0, 3.0, n)
    phi0 = rng.uniform(-np.pi, np.pi, n)
    q = rng.choice(np.array([-1, 1]), n)
    vx, vy = rng.normal(0.0, 0.01, n), rng.normal(0.0, 0.01, n)
    vz = rng.normal(0.0, 55.0, n)
    radius = pt / (0.3 * B_FIELD_T) * 1000.0  # mm
    pz = pt * np.sinh(eta)
    h = -q.astype(np.float64)  # sense of rotation in the transverse plane

    rec: dict[str, list[npt.NDArray[np.float64]]] = {k: [] for k in (
        "p", "t", "x", "y", "z", "vol", "lay", "mod", "res")}

    def add(mask: npt.NDArray[np.bool_], t: npt.NDArray[np.float64], vol: int, lay: int,
            mod: npt.NDArray[np.float64], res: float) -> None:
        idx = np.flatnonzero(mask)
        tt = t[idx]
        rr, hh, ph = radius[idx], h[idx], phi0[idx]
        rec["p"].append(idx.astype(np.float64))
        rec["t"].append(tt)
        rec["x"].append(vx[idx] + rr * hh * (np.sin(ph + hh * tt) - np.sin(ph)))
        rec["y"].append(vy[idx] - rr * hh * (np.cos(ph + hh * tt) - np.cos(ph)))
        rec["z"].append(vz[idx] + rr * tt * pz[idx] / pt[idx])
        rec["vol"].append(np.full(len(idx), vol, dtype=np.float64))
        rec["lay"].append(np.full(len(idx), lay, dtype=np.float64))
        rec["mod"].append(mod[idx])
        rec["res"].append(np.full(len(idx), res))

    with np.errstate(invalid="ignore", divide="ignore"):
        for vol, lay, r, half, res, nphi, nz in _BARREL:
            # Chord from the (nearly central) vertex: r = 2 R sin(t / 2).
            t = 2.0 * np.arcsin(np.clip(r / (2.0 * radius), -2.0, 2.0))
            z = vz + radius * t * pz / pt
            ok = (r < 2.0 * radius) & (np.abs(z) < half)
            ang = phi0 + h * t / 2.0  # direction of the chord
            mod = (np.floor((ang % (2 * np.pi)) / (2 * np.pi) * nphi)
                   + nphi * np.floor((z + half) / (2 * half) * nz) + 1)
            add(ok, t, vol, lay, mod, res)
        for vol, lay, zd, rmin, rmax, res, nphi, nr in _DISKS:
            t = (zd - vz) * pt / (radius * pz)
            chord = 2.0 * radius * np.abs(np.sin(t / 2.0))
            ok = (t > 0) & (t < np.pi) & (chord > rmin) & (chord < rmax)
            ang = phi0 + h * t / 2.0
            mod = (np.floor((ang % (2 * np.pi)) / (2 * np.pi) * nphi)
                   + nphi * np.floor((chord - rmin) / (rmax - rmin) * nr) + 1)
            add(ok, t, vol, lay, mod, res)

    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rec.items()}
    pidx = cat["p"].astype(np.int64)
    # Hit order along each track: by the turning angle.
    order = np.lexsort((cat["t"], pidx))
    cat = {k: v[order] for k, v in cat.items()}
    pidx = pidx[order]
    nhits = np.bincount(pidx, minlength=n)
    first_of = np.concatenate([[0], np.cumsum(nhits)[:-1]])
    hit_order = np.arange(len(pidx)) - first_of[pidx]
    t = cat["t"]
    tpx = pt[pidx] * np.cos(phi0[pidx] + h[pidx] * t)
    tpy = pt[pidx] * np.sin(phi0[pidx] + h[pidx] * t)
    hit_res = cat["res"]
    mx = cat["x"] + rng.normal(0.0, 1.0, len(t)) * hit_res
    my = cat["y"] + rng.normal(0.0, 1.0, len(t)) * hit_res
    mz = cat["z"] + rng.normal(0.0, 1.0, len(t)) * hit_res * 5.0
    weight = _pt_weight(pt[pidx]) * _order_weight(hit_order, nhits[pidx])
    weight = np.where(nhits[pidx] >= 4, weight, 0.0)

    particle_ids = np.sort(rng.choice(np.int64(1) << 52, size=n, replace=False)) + (1 << 52)

    # Noise hits on random surfaces.
    n_noise = round(noise_fraction * len(t))
    surf = rng.integers(0, len(_BARREL) + len(_DISKS), n_noise)
    nphi_ = rng.uniform(-np.pi, np.pi, n_noise)
    n_vol = np.zeros(n_noise)
    n_lay = np.zeros(n_noise)
    n_x, n_y, n_z = np.zeros(n_noise), np.zeros(n_noise), np.zeros(n_noise)
    for k in range(n_noise):
        s = int(surf[k])
        if s < len(_BARREL):
            vol, lay, r_layer, half = _BARREL[s][:4]
            rad = float(r_layer)
            n_z[k] = rng.uniform(-half, half)
        else:
            vol, lay, zd, rmin, rmax = _DISKS[s - len(_BARREL)][:5]
            rad = rng.uniform(rmin, rmax)
            n_z[k] = zd
        n_x[k], n_y[k] = rad * np.cos(nphi_[k]), rad * np.sin(nphi_[k])
        n_vol[k], n_lay[k] = vol, lay
    n_mod = rng.integers(1, 100, n_noise).astype(np.float64)

    all_x = np.concatenate([mx, n_x])
    all_y = np.concatenate([my, n_y])
    all_z = np.concatenate([mz, n_z])
    # Hit ids are given in a shuffled order so the file order tells nothing about tracks.
    shuffle = rng.permutation(len(all_x))
    pid = np.concatenate([particle_ids[pidx], np.zeros(n_noise, dtype=np.int64)])[shuffle]
    w = np.concatenate([weight, np.zeros(n_noise)])[shuffle]
    if w.sum() > 0:
        w = w / w.sum()
    hits = pd.DataFrame({
        "hit_id": np.arange(1, len(all_x) + 1, dtype=np.int64),
        "x": all_x[shuffle], "y": all_y[shuffle], "z": all_z[shuffle],
        "volume_id": np.concatenate([cat["vol"], n_vol])[shuffle].astype(np.int64),
        "layer_id": np.concatenate([cat["lay"], n_lay])[shuffle].astype(np.int64),
        "module_id": np.concatenate([cat["mod"], n_mod])[shuffle].astype(np.int64),
    })
    truth = pd.DataFrame({
        "hit_id": hits["hit_id"],
        "particle_id": pid,
        "tx": np.concatenate([cat["x"], n_x])[shuffle],
        "ty": np.concatenate([cat["y"], n_y])[shuffle],
        "tz": np.concatenate([cat["z"], n_z])[shuffle],
        "tpx": np.concatenate([tpx, np.zeros(n_noise)])[shuffle],
        "tpy": np.concatenate([tpy, np.zeros(n_noise)])[shuffle],
        "tpz": np.concatenate([pz[pidx], np.zeros(n_noise)])[shuffle],
        "weight": w,
    })
    particles = pd.DataFrame({
        "particle_id": particle_ids, "vx": vx, "vy": vy, "vz": vz,
        "px": pt * np.cos(phi0), "py": pt * np.sin(phi0), "pz": pz,
        "q": q.astype(np.int64), "nhits": nhits.astype(np.int64),
    })
    # Cells last, so that adding them left the other tables of a seed as they were.
    n_hits = len(hits)
    per_hit = rng.integers(1, 5, n_hits)
    cell_hit = np.repeat(hits["hit_id"].to_numpy(), per_hit)
    first = np.repeat(np.cumsum(per_hit) - per_hit, per_hit)
    step = np.arange(len(cell_hit)) - first  # 0, 1, 2 ... within a hit: neighbouring channels
    base0 = rng.integers(0, 1100, n_hits)
    base1 = rng.integers(0, 1200, n_hits)
    cells = pd.DataFrame({
        "hit_id": cell_hit,
        "ch0": np.repeat(base0, per_hit) + step // 2,
        "ch1": np.repeat(base1, per_hit) + step % 2,
        "value": np.round(rng.uniform(0.02, 0.3, len(cell_hit)), 6),
    })
    return TrackingEvent(event_id, hits, truth, particles, cells)


def tracking_table(events: list[TrackingEvent]) -> pd.DataFrame:
    """One row per hit of ``events``: ``event_id``, the hit columns and the truth columns.

    The table a tracking challenge is split from (by event: ``split: {group: event_id}``), with
    the submission keyed by ``event_id, hit_id`` as in TrackML.
    """
    frames = [
        ev.hits.merge(ev.truth, on="hit_id").assign(event_id=ev.event_id) for ev in events
    ]
    flat = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["event_id", *HITS_COLUMNS, *TRUTH_COLUMNS[1:]])
    return flat[["event_id", *HITS_COLUMNS, *TRUTH_COLUMNS[1:]]]


def generate_tracking(n_events: int, seed: int, out_dir: Path, *, n_particles: int = 200,
                      noise_fraction: float = 0.1, first_event: int = FIRST_EVENT) -> list[Path]:
    """Simulate ``n_events`` events and write them under ``out_dir``.

    Writes TrackML's files per event (``event000001000-hits.csv``, ``-cells.csv``,
    ``-particles.csv``, ``-truth.csv``, numbered from ``first_event``), one ``events.parquet``
    holding every event as a row of jagged arrays (awkward): ``event_id``, ``hits``, ``truth``
    and ``particles`` (lists of records), and ``tracking.parquet``, one row per hit
    (:func:`tracking_table`). Deterministic per ``seed``; returns the written paths.
    """
    import awkward as ak

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    children = np.random.SeedSequence(seed).spawn(n_events)
    written: list[Path] = []
    tables: dict[str, list[pd.DataFrame]] = {"hits": [], "truth": [], "particles": []}
    ids: list[int] = []
    simulated: list[TrackingEvent] = []
    for i, child in enumerate(children):
        ev = simulate_event(np.random.default_rng(child), first_event + i, n_particles,
                            noise_fraction)
        stem = out_dir / f"event{ev.event_id:09d}"
        for kind in EVENT_PARTS:
            frame: pd.DataFrame = getattr(ev, kind)
            path = Path(f"{stem}-{kind}.csv")
            frame.to_csv(path, index=False)
            written.append(path)
            if kind in tables:
                tables[kind].append(frame)
        ids.append(ev.event_id)
        simulated.append(ev)
    fields: dict[str, object] = {"event_id": np.array(ids, dtype=np.int64)}
    for kind, frames in tables.items():
        counts = np.array([len(f) for f in frames], dtype=np.int64)
        flat = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        records = ak.zip({c: flat[c].to_numpy() for c in flat.columns}) if len(flat.columns) \
            else ak.Array([])
        fields[kind] = ak.unflatten(records, counts)
    parquet = out_dir / "events.parquet"
    ak.to_parquet(ak.zip(fields, depth_limit=1), parquet)
    written.append(parquet)
    flat = out_dir / "tracking.parquet"
    tracking_table(simulated).to_parquet(flat, index=False)
    written.append(flat)
    return written


def read_truth_folder(folder: Path) -> pd.DataFrame:
    """Every ``event*-truth.csv[.gz]`` of ``folder`` as one table with an ``event_id`` column
    (from the file name) first: a TrackML solution keyed by ``event_id, hit_id``."""
    pattern = re.compile(r"^event(\d+)-truth\.csv(\.gz)?$")
    frames = []
    for path in sorted(Path(folder).iterdir()):
        match = pattern.match(path.name)
        if match:
            frame = pd.read_csv(path)
            frame.insert(0, "event_id", int(match.group(1)))
            frames.append(frame)
    if not frames:
        raise ValueError(
            f"{folder}: no TrackML truth files (event000001000-truth.csv ...); give a folder "
            "that holds them, or a solution file"
        )
    return pd.concat(frames, ignore_index=True)
