"""Toy simulator of HiggsML-like events (H -> tau tau against Z -> tau tau, ttbar and W + jets).

The physics is deliberately simple but keeps what a teacher points at:

* resonances are generated with their mass (H 125 GeV, Z 91.19 GeV), a transverse momentum that
  balances part (``RECOIL_SHARE``) of the jets, and an isotropic two-body decay into two taus
  boosted to the lab frame;
* the jet count follows per-process probabilities and the leading jet a falling spectrum above
  30 GeV, so that the 0/1/2/3+ jet mix and the jet pT quantiles match the 2014 data;
* one tau decays leptonically, the other hadronically, in the collinear approximation: the visible
  products carry a fraction x of the tau momentum and the neutrinos the rest, so the MET is the sum
  of the neutrino transverse momenta plus a resolution term, and the visible mass peaks below the
  resonance mass, lower for the Z than for the H;
* W + jets and ttbar have a real lepton from a W decay and a hadronic tau (real, or faked by a jet);
* the preselection of the 2014 data is applied (tau pT > 20, lepton pT > 26, jets pT > 30 GeV,
  |eta| < 2.5 for tau and lepton, < 4.5 for jets);
* DER features are computed from the (rounded) PRI features with the HiggsML definitions in
  :mod:`splitter.kinematics`; ``DER_mass_MMC`` is a collinear-approximation mass which fails
  (-999.0) in about one event in six, as in the 2014 data;
* weights are per-event luminosity weights normalised so that, whatever the number of events,
  signal weights sum to 691.99 and background weights to 410999.85 (the 2014 totals), with a
  clipped spread so that no event weighs far more than its process's average.

The parameters are calibrated against the released 2014 data: docs/splitter.md ("Calibration of
the generator") lists generated against published values, and a test keeps that table true.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from splitter.kinematics import (
    HIGGS_COLUMNS_2014,
    JET_PT_MIN,
    LEP_PT_MIN,
    NAMING_2014,
    TAU_PT_MIN,
    compute_der,
)

FloatArray = npt.NDArray[np.float64]

SIGNAL_WEIGHT_TOTAL = 691.988607711987
BACKGROUND_WEIGHT_TOTAL = 410999.847321509
FIRST_EVENT_ID = 100000
UNDEFINED = -999.0
TAU_MASS = 1.777
RECOIL_SHARE = 0.7
MMC_FAILURE = 0.24  # share of unsolvable collinear configurations where the MMC stand-in fails


@dataclass(frozen=True)
class _Process:
    name: str
    label: str
    event_fraction: float  # share of the generated events
    weight_total: float  # sum of the weights of this process
    weight_spread: float  # sigma of the log-normal per-event weight variation (clipped at 2)
    jet_probs: tuple[float, float, float, float]  # P(0, 1, 2, 3+ jets above 30 GeV)
    jet_pt_scale: float
    jet_eta_sigma: float


# Calibrated against the released 2014 data (docs/splitter.md, "Calibration of the generator"):
# the jet-count probabilities reproduce its 40/31/20/9 % mix, the event shares its signal
# fraction and, with W + jets and ttbar (MET outside the tau-lepton angle) above half of the
# background, its negative median MET phi centrality.
PROCESSES = (
    _Process("htautau", "s", 0.342, SIGNAL_WEIGHT_TOTAL, 0.12, (0.33, 0.33, 0.23, 0.11), 50.0,
             2.2),
    _Process("ztautau", "b", 0.140, 0.35 * BACKGROUND_WEIGHT_TOTAL, 0.3, (0.60, 0.28, 0.09, 0.03),
             40.0, 1.6),
    _Process("ttbar", "b", 0.098, 0.05 * BACKGROUND_WEIGHT_TOTAL, 0.3, (0.05, 0.20, 0.45, 0.30),
             45.0, 1.3),
    _Process("wjets", "b", 0.420, 0.60 * BACKGROUND_WEIGHT_TOTAL, 0.3, (0.48, 0.31, 0.15, 0.06),
             40.0, 1.6),
)


def _counts(n: int) -> list[int]:
    # Largest-remainder apportionment so the counts add up to n exactly.
    raw = np.array([p.event_fraction for p in PROCESSES]) * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return [int(c) for c in counts]


def _pt_eta_phi(p: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    pt = np.hypot(p[:, 0], p[:, 1])
    eta = np.arcsinh(p[:, 2] / np.maximum(pt, 1e-9))
    phi = np.arctan2(p[:, 1], p[:, 0])
    return pt, eta, phi


def _two_body(
    rng: np.random.Generator, mass: FloatArray, px: FloatArray, py: FloatArray, y: FloatArray,
    m_daughter: float,
) -> tuple[FloatArray, FloatArray]:
    """Isotropic decay of a particle of given mass and momentum into two equal-mass daughters."""
    m = len(mass)
    pt2 = px * px + py * py
    mt = np.sqrt(mass * mass + pt2)
    energy = mt * np.cosh(y)
    pz = mt * np.sinh(y)
    p_star = np.sqrt(np.maximum(mass * mass / 4.0 - m_daughter**2, 0.0))
    e_star = mass / 2.0
    cos_t = rng.uniform(-1.0, 1.0, m)
    sin_t = np.sqrt(1.0 - cos_t * cos_t)
    phi = rng.uniform(-np.pi, np.pi, m)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1) * p_star[:, None]
    beta = np.stack([px, py, pz], axis=1) / energy[:, None]
    gamma = energy / mass
    out = []
    for sign in (1.0, -1.0):
        q = sign * d
        bq = np.einsum("ij,ij->i", beta, q)
        # (gamma - 1) / beta^2 written as gamma^2 / (gamma + 1): stable when beta -> 0.
        coef = gamma * gamma / (gamma + 1.0) * bq + gamma * e_star
        out.append(q + coef[:, None] * beta)
    return out[0], out[1]


def _jets(
    rng: np.random.Generator, m: int, proc: _Process
) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray]:
    """Jets above threshold: count, leading/subleading (pt, eta, phi) and the sum of all jets."""
    cum = np.cumsum(proc.jet_probs)
    n = np.searchsorted(cum / cum[-1], rng.uniform(size=m), side="right").astype(np.int64)
    n = np.minimum(n, 3) + (n >= 3) * rng.poisson(0.3, m)  # 3+: a few events with 4 or more
    # A steeply falling spectrum above threshold for the leading jet (as in the 2014 data, whose
    # leading-jet pT quantiles follow an exponential of about 50 GeV above 30), softer ones for
    # the next jets, each at most as hard as the one before.
    lead_pt = JET_PT_MIN + rng.exponential(proc.jet_pt_scale, m)
    sub_pt = np.minimum(lead_pt, JET_PT_MIN + rng.exponential(0.5 * proc.jet_pt_scale, m))
    third_pt = np.minimum(sub_pt, JET_PT_MIN + rng.exponential(0.3 * proc.jet_pt_scale, m))
    etas = np.clip(rng.normal(0.0, proc.jet_eta_sigma, (2, m)), -4.5, 4.5)
    phis = rng.uniform(-np.pi, np.pi, (3, m))
    w1 = np.where(n >= 1, lead_pt, 0.0)
    w2 = np.where(n >= 2, sub_pt, 0.0)
    w3 = np.where(n >= 3, third_pt, 0.0)
    # Jets beyond the third only enter the sums; give them a typical soft pT.
    extra = np.where(n > 3, (n - 3) * (JET_PT_MIN + proc.jet_pt_scale / 3.0), 0.0)
    all_pt = w1 + w2 + w3 + extra
    jx = w1 * np.cos(phis[0]) + w2 * np.cos(phis[1]) + w3 * np.cos(phis[2])
    jy = w1 * np.sin(phis[0]) + w2 * np.sin(phis[1]) + w3 * np.sin(phis[2])
    lead = np.stack([lead_pt, etas[0], phis[0]])
    sub = np.stack([sub_pt, etas[1], phis[1]])
    return n, lead, sub, np.stack([jx, jy]), all_pt


def _candidates(rng: np.random.Generator, m: int, proc: _Process) -> dict[str, FloatArray]:
    """Generate m candidate events of one process and return those passing the preselection."""
    n_jets, lead, sub, jet_sum, jet_all_pt = _jets(rng, m, proc)
    # The resonance (or W) balances part of the jets' momentum; the rest goes to unclustered
    # activity, so the recoil is softer than the jets.
    recoil_x = -RECOIL_SHARE * jet_sum[0] + rng.normal(0.0, 4.0, m)
    recoil_y = -RECOIL_SHARE * jet_sum[1] + rng.normal(0.0, 4.0, m)
    rapidity = rng.normal(0.0, 1.2, m)

    if proc.name in ("htautau", "ztautau"):
        if proc.name == "htautau":
            mass = rng.normal(125.0, 2.0, m)
        else:
            mass = np.clip(91.19 + 1.25 * rng.standard_cauchy(m), 70.0, 130.0)
        tau1, tau2 = _two_body(rng, mass, recoil_x, recoil_y, rapidity, TAU_MASS)
        # Collinear approximation: visible products keep a fraction x of the tau momentum.
        x_lep = rng.beta(1.6, 2.0, m)
        x_had = rng.beta(2.2, 1.4, m)
        lep = tau1 * x_lep[:, None]
        had = tau2 * x_had[:, None]
        nu = tau1 * (1.0 - x_lep)[:, None] + tau2 * (1.0 - x_had)[:, None]
    else:
        # One W -> l nu; the hadronic tau is real (ttbar, second W -> tau nu) or a fake jet.
        w_mass = np.clip(80.38 + 1.0 * rng.standard_cauchy(m), 60.0, 110.0)
        share = 0.5 if proc.name == "ttbar" else 1.0
        lep, nu1 = _two_body(rng, w_mass, share * recoil_x, share * recoil_y, rapidity, 0.0)
        if proc.name == "ttbar":
            w2_mass = np.clip(80.38 + 1.0 * rng.standard_cauchy(m), 60.0, 110.0)
            tau, nu2 = _two_body(
                rng, w2_mass, 0.5 * recoil_x, 0.5 * recoil_y, rng.normal(0.0, 1.2, m), TAU_MASS
            )
            x_had = rng.beta(2.2, 1.4, m)
            had = tau * x_had[:, None]
            nu = nu1 + nu2 + tau * (1.0 - x_had)[:, None]
        else:
            fake_pt = 15.0 + rng.exponential(18.0, m)
            fake_eta = rng.normal(0.0, 1.3, m)
            fake_phi = rng.uniform(-np.pi, np.pi, m)
            had = np.stack(
                [fake_pt * np.cos(fake_phi), fake_pt * np.sin(fake_phi),
                 fake_pt * np.sinh(fake_eta)],
                axis=1,
            )
            nu = nu1

    lep_pt, lep_eta, lep_phi = _pt_eta_phi(lep)
    tau_pt, tau_eta, tau_phi = _pt_eta_phi(had)
    # Preselection of the 2014 data, applied before the rest is computed to save work.
    keep = (
        (tau_pt > TAU_PT_MIN)
        & (lep_pt > LEP_PT_MIN)
        & (np.abs(tau_eta) < 2.5)
        & (np.abs(lep_eta) < 2.5)
    )
    k = int(keep.sum())
    n_jets, jet_all_pt, nu = n_jets[keep], jet_all_pt[keep], nu[keep]
    lead, sub = lead[:, keep], sub[:, keep]
    tau_pt, tau_eta, tau_phi = tau_pt[keep], tau_eta[keep], tau_phi[keep]
    lep_pt, lep_eta, lep_phi = lep_pt[keep], lep_eta[keep], lep_phi[keep]
    sumet = tau_pt + lep_pt + jet_all_pt + rng.gamma(3.0, 20.0, k)
    resolution = 0.9 * np.sqrt(sumet)
    met_x = nu[:, 0] + rng.normal(0.0, 1.0, k) * resolution
    met_y = nu[:, 1] + rng.normal(0.0, 1.0, k) * resolution

    has1 = n_jets >= 1
    has2 = n_jets >= 2
    ev: dict[str, FloatArray] = {
        "PRI_tau_pt": tau_pt,
        "PRI_tau_eta": tau_eta,
        "PRI_tau_phi": tau_phi,
        "PRI_lep_pt": lep_pt,
        "PRI_lep_eta": lep_eta,
        "PRI_lep_phi": lep_phi,
        "PRI_met": np.hypot(met_x, met_y),
        "PRI_met_phi": np.arctan2(met_y, met_x),
        "PRI_met_sumet": sumet,
        "PRI_jet_num": np.minimum(n_jets, 3).astype(np.float64),
        "PRI_jet_leading_pt": np.where(has1, lead[0], UNDEFINED),
        "PRI_jet_leading_eta": np.where(has1, lead[1], UNDEFINED),
        "PRI_jet_leading_phi": np.where(has1, lead[2], UNDEFINED),
        "PRI_jet_subleading_pt": np.where(has2, sub[0], UNDEFINED),
        "PRI_jet_subleading_eta": np.where(has2, sub[1], UNDEFINED),
        "PRI_jet_subleading_phi": np.where(has2, sub[2], UNDEFINED),
        "PRI_jet_all_pt": jet_all_pt,
    }
    return ev


def _mass_mmc(rng: np.random.Generator, ev: dict[str, FloatArray], mvis: FloatArray) -> FloatArray:
    """Collinear-approximation di-tau mass standing in for the MMC, with its failures."""
    m = len(mvis)
    v1x = ev["PRI_lep_pt"] * np.cos(ev["PRI_lep_phi"])
    v1y = ev["PRI_lep_pt"] * np.sin(ev["PRI_lep_phi"])
    v2x = ev["PRI_tau_pt"] * np.cos(ev["PRI_tau_phi"])
    v2y = ev["PRI_tau_pt"] * np.sin(ev["PRI_tau_phi"])
    mex = ev["PRI_met"] * np.cos(ev["PRI_met_phi"])
    mey = ev["PRI_met"] * np.sin(ev["PRI_met_phi"])
    det = v1x * v2y - v1y * v2x
    with np.errstate(divide="ignore", invalid="ignore"):
        a1 = (mex * v2y - mey * v2x) / det
        a2 = (v1x * mey - v1y * mex) / det
        m_col = mvis * np.sqrt((1.0 + np.maximum(a1, 0.0)) * (1.0 + np.maximum(a2, 0.0)))
    solvable = (a1 > -0.25) & (a2 > -0.25) & np.isfinite(m_col) & (m_col < 3.0 * mvis + 60.0)
    smeared = m_col * rng.normal(1.0, 0.06, m)
    fallback = mvis * rng.normal(1.35, 0.15, m)
    fails = ~solvable & (rng.uniform(0.0, 1.0, m) < MMC_FAILURE)
    out: FloatArray = np.where(solvable, smeared, np.where(fails, UNDEFINED, fallback))
    return out


def _process_events(
    rng: np.random.Generator, count: int, proc: _Process
) -> dict[str, FloatArray]:
    parts: list[dict[str, FloatArray]] = []
    have = 0
    efficiency = 0.3
    while have < count:
        m = max(1000, int((count - have) / efficiency * 1.1))
        ev = _candidates(rng, m, proc)
        kept = len(ev["PRI_tau_pt"])
        efficiency = max(kept / m, 0.01)
        parts.append(ev)
        have += kept
    if not parts:
        parts.append(_candidates(rng, 0, proc))
    pri = {k: np.concatenate([p[k] for p in parts])[:count] for k in parts[0]}
    # Round the PRI features as the 2014 files do, then derive DER from the rounded values so a
    # recomputation from the published columns gives back the published DER columns.
    pri = {k: np.round(v, 3) for k, v in pri.items()}
    der = {k: np.round(v, 3) for k, v in compute_der(pri, NAMING_2014).items()}
    der["DER_mass_MMC"] = np.round(_mass_mmc(rng, pri, der["DER_mass_vis"]), 3)
    # Clipped at two sigma: the released weights have no long tail (background at most ~8 for
    # 250,000 events), so neither do these.
    raw_w = np.exp(np.clip(rng.normal(0.0, 1.0, count), -2.0, 2.0) * proc.weight_spread)
    weight = raw_w * (proc.weight_total / raw_w.sum()) if count else raw_w
    return {**der, **pri, "Weight": weight}


def generate_higgs_with_process(n_events: int, seed: int) -> pd.DataFrame:
    """Like :func:`generate_higgs` with an extra ``Process`` column naming the physics process
    (``htautau``, ``ztautau``, ``ttbar``, ``wjets``), which ``bkg_norm`` variants need."""
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    seq = np.random.SeedSequence(seed)
    children = seq.spawn(len(PROCESSES) + 1)
    counts = _counts(n_events)
    blocks = [
        _process_events(np.random.default_rng(child), count, proc)
        for child, count, proc in zip(children[:-1], counts, PROCESSES, strict=True)
    ]
    process_code = np.repeat(np.arange(len(PROCESSES)), counts)
    order = np.random.default_rng(children[-1]).permutation(n_events)
    process_code = process_code[order]
    is_signal = np.array([p.label == "s" for p in PROCESSES])[process_code]
    columns: dict[str, object] = {
        "EventId": np.arange(FIRST_EVENT_ID, FIRST_EVENT_ID + n_events, dtype=np.int64)
    }
    for name in HIGGS_COLUMNS_2014[1:-1]:
        columns[name] = np.concatenate([b[name] for b in blocks])[order]
    weight = np.asarray(columns["Weight"])
    # With a handful of events some process may be empty; renormalise per class so the 2014
    # totals hold exactly in every case.
    for mask, total in ((is_signal, SIGNAL_WEIGHT_TOTAL), (~is_signal, BACKGROUND_WEIGHT_TOTAL)):
        s = weight[mask].sum()
        if s > 0:
            weight[mask] *= total / s
    columns["PRI_jet_num"] = np.asarray(columns["PRI_jet_num"]).astype(np.int64)
    columns["Label"] = np.where(is_signal, "s", "b")
    columns["Process"] = np.array([p.name for p in PROCESSES])[process_code]
    return pd.DataFrame(columns)


def generate_higgs(n_events: int, seed: int) -> pd.DataFrame:
    """Generate ``n_events`` HiggsML-like events, deterministically for a given ``seed``.

    Columns are exactly those of the 2014 challenge, in the 2014 order: ``EventId`` (int64, from
    100000 upward), the 13 ``DER_*`` and 17 ``PRI_*`` features (``PRI_jet_num`` int64, the others
    float64 with -999.0 where undefined), ``Weight`` and ``Label`` (``"s"``/``"b"``). Signal weights
    sum to 691.99 and background weights to 410999.85 whatever ``n_events`` is.
    """
    return generate_higgs_with_process(n_events, seed).drop(columns=["Process"])


def write_higgs(path: Path, n_events: int, seed: int, *, chunk_events: int = 1_000_000) -> Path:
    """Generate ``n_events`` events straight to a Parquet or CSV file, one chunk at a time
    (memory stays at one chunk; each chunk is a Parquet row group).

    Chunk k uses the seed sequence (seed, k) and continues the EventId numbering; weights are
    scaled so the whole file, not each chunk, sums to the HiggsML totals. For n_events <=
    chunk_events the file holds exactly ``generate_higgs(n_events, seed)``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    as_csv = path.name.endswith((".csv", ".csv.gz"))
    writer: Any = None
    done = 0
    k = 0
    try:
        while done < n_events or (n_events == 0 and k == 0):
            m = min(chunk_events, n_events - done)
            chunk_seed = seed if n_events <= chunk_events else int(
                np.random.SeedSequence([seed, k]).generate_state(1)[0])
            frame = generate_higgs(m, chunk_seed)
            frame["EventId"] += done
            frame["Weight"] *= m / n_events if n_events else 1.0
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = (pacsv.CSVWriter(tmp, table.schema) if as_csv
                          else pq.ParquetWriter(tmp, table.schema))
            writer.write_table(table)
            done += m
            k += 1
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path
