"""HiggsML feature definitions: the DER_* features as functions of the PRI_* ones.

The formulas follow appendix B of the HiggsML 2014 documentation (Adam-Bourdarios et al.,
"Learning to discover: the Higgs boson machine learning challenge"). They are shared by the toy
generator (which derives DER features from the PRI ones it simulates) and by the systematic
variants (which must recompute every DER feature after shifting a PRI one), so that both agree to
the last digit.

Two naming conventions are supported: the 2014 Kaggle one (``PRI_tau_*``, ``PRI_jet_num``,
-999.0 for undefined values) and the 2024 FAIR Universe one (``PRI_had_*``, ``PRI_n_jets``, -25.0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HiggsNaming:
    """Column names and the undefined-value marker of one HiggsML dialect."""

    tau: str  # prefix of the hadronic tau columns, e.g. "PRI_tau"
    jet_num: str
    undefined: float
    deltar: str
    pt_ratio: str
    has_sumet: bool

    def col(self, obj: str, var: str) -> str:
        """Name of a PRI column, e.g. ``col("tau", "pt")`` -> ``PRI_tau_pt``."""
        prefix = self.tau if obj == "tau" else f"PRI_{obj}"
        return f"{prefix}_{var}"


NAMING_2014 = HiggsNaming(
    tau="PRI_tau",
    jet_num="PRI_jet_num",
    undefined=-999.0,
    deltar="DER_deltar_tau_lep",
    pt_ratio="DER_pt_ratio_lep_tau",
    has_sumet=True,
)
NAMING_2024 = HiggsNaming(
    tau="PRI_had",
    jet_num="PRI_n_jets",
    undefined=-25.0,
    deltar="DER_deltar_had_lep",
    pt_ratio="DER_pt_ratio_lep_had",
    has_sumet=False,
)

# Cuts of the HiggsML preselection, re-applied by the systematic variants.
TAU_PT_MIN = 20.0
LEP_PT_MIN = 26.0
JET_PT_MIN = 30.0

# Cuts of the FAIR Universe challenge's post-processing (its ingestion_program/systematics.py):
# events with a hadronic tau under 26 GeV or a lepton under 20 GeV are dropped; leading and
# subleading jets with pT in [0, 26] GeV are removed from the event.
FAIR_HAD_PT_MIN = 26.0
FAIR_LEP_PT_MIN = 20.0
FAIR_JET_PT_MAX_REMOVED = 26.0
FAIR_PRI_COLUMNS = [
    "PRI_had_pt",
    "PRI_had_eta",
    "PRI_had_phi",
    "PRI_lep_pt",
    "PRI_lep_eta",
    "PRI_lep_phi",
    "PRI_met",
    "PRI_met_phi",
    "PRI_jet_leading_pt",
    "PRI_jet_leading_eta",
    "PRI_jet_leading_phi",
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
    "PRI_jet_all_pt",
]
FAIR_DER_COLUMNS = [
    "DER_mass_transverse_met_lep",
    "DER_mass_vis",
    "DER_pt_h",
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_deltar_had_lep",
    "DER_pt_tot",
    "DER_sum_pt",
    "DER_pt_ratio_lep_had",
    "DER_met_phi_centrality",
    "DER_lep_eta_centrality",
]

DER_COLUMNS_2014 = [
    "DER_mass_MMC",
    "DER_mass_transverse_met_lep",
    "DER_mass_vis",
    "DER_pt_h",
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_deltar_tau_lep",
    "DER_pt_tot",
    "DER_sum_pt",
    "DER_pt_ratio_lep_tau",
    "DER_met_phi_centrality",
    "DER_lep_eta_centrality",
]
PRI_COLUMNS_2014 = [
    "PRI_tau_pt",
    "PRI_tau_eta",
    "PRI_tau_phi",
    "PRI_lep_pt",
    "PRI_lep_eta",
    "PRI_lep_phi",
    "PRI_met",
    "PRI_met_phi",
    "PRI_met_sumet",
    "PRI_jet_num",
    "PRI_jet_leading_pt",
    "PRI_jet_leading_eta",
    "PRI_jet_leading_phi",
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
    "PRI_jet_all_pt",
]
HIGGS_COLUMNS_2014 = ["EventId", *DER_COLUMNS_2014, *PRI_COLUMNS_2014, "Weight", "Label"]


def detect_naming(columns: list[str] | tuple[str, ...] | Mapping[str, object]) -> HiggsNaming:
    """Return the dialect of a HiggsML table from its column names.

    Raises ``KeyError`` naming the columns looked for when neither dialect matches.
    """
    cols = set(columns)
    if {"PRI_tau_pt", "PRI_jet_num"} <= cols:
        return NAMING_2014
    if {"PRI_had_pt", "PRI_n_jets"} <= cols:
        return NAMING_2024
    raise KeyError(
        "not a HiggsML table: expected PRI_tau_pt and PRI_jet_num (2014 naming) or "
        "PRI_had_pt and PRI_n_jets (2024 FAIR Universe naming)"
    )


def delta_phi(a: FloatArray, b: FloatArray) -> FloatArray:
    """Azimuthal difference wrapped into [-pi, pi)."""
    d: FloatArray = np.mod(a - b + np.pi, 2.0 * np.pi) - np.pi
    return d


def _pair_mass(pt1: FloatArray, eta1: FloatArray, phi1: FloatArray, pt2: FloatArray,
               eta2: FloatArray, phi2: FloatArray) -> FloatArray:
    # Massless objects: m^2 = 2 pT1 pT2 (cosh(d eta) - cos(d phi)). Undefined jets (-999) may
    # overflow cosh; callers mask those rows, so the overflow is expected and silenced.
    with np.errstate(over="ignore", invalid="ignore"):
        m2 = 2.0 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(phi1 - phi2))
        out: FloatArray = np.sqrt(np.maximum(m2, 0.0))
    return out


def compute_der(pri: Mapping[str, npt.ArrayLike], naming: HiggsNaming) -> dict[str, FloatArray]:
    """Compute every DER feature except ``DER_mass_MMC`` from the PRI columns.

    ``pri`` maps PRI column names (in ``naming``'s dialect) to arrays. Jet variables of absent jets
    may hold any value: the jet count decides, and the result uses ``naming.undefined`` where the
    HiggsML definitions leave a feature undefined (fewer than two jets).

    With the 2024 naming the FAIR Universe challenge's definitions are used
    (:func:`compute_der_fair`), which differ from the 2014 ones in corner cases.
    """
    if naming == NAMING_2024:
        return compute_der_fair(pri)

    def g(name: str) -> FloatArray:
        return np.asarray(pri[name], dtype=np.float64)

    tau_pt, tau_eta, tau_phi = g(naming.col("tau", "pt")), g(naming.col("tau", "eta")), g(
        naming.col("tau", "phi")
    )
    lep_pt, lep_eta, lep_phi = g("PRI_lep_pt"), g("PRI_lep_eta"), g("PRI_lep_phi")
    met, met_phi = g("PRI_met"), g("PRI_met_phi")
    njet = g(naming.jet_num)
    j1_pt, j1_eta, j1_phi = g("PRI_jet_leading_pt"), g("PRI_jet_leading_eta"), g(
        "PRI_jet_leading_phi"
    )
    j2_pt, j2_eta, j2_phi = g("PRI_jet_subleading_pt"), g("PRI_jet_subleading_eta"), g(
        "PRI_jet_subleading_phi"
    )
    jet_all_pt = g("PRI_jet_all_pt")
    has1 = njet >= 1
    has2 = njet >= 2
    undef = naming.undefined

    out: dict[str, FloatArray] = {}
    out["DER_mass_transverse_met_lep"] = np.sqrt(
        np.maximum(2.0 * lep_pt * met * (1.0 - np.cos(lep_phi - met_phi)), 0.0)
    )
    out["DER_mass_vis"] = _pair_mass(tau_pt, tau_eta, tau_phi, lep_pt, lep_eta, lep_phi)

    hx = tau_pt * np.cos(tau_phi) + lep_pt * np.cos(lep_phi) + met * np.cos(met_phi)
    hy = tau_pt * np.sin(tau_phi) + lep_pt * np.sin(lep_phi) + met * np.sin(met_phi)
    out["DER_pt_h"] = np.hypot(hx, hy)

    deta = np.abs(j1_eta - j2_eta)
    out["DER_deltaeta_jet_jet"] = np.where(has2, deta, undef)
    out["DER_mass_jet_jet"] = np.where(
        has2, _pair_mass(j1_pt, j1_eta, j1_phi, j2_pt, j2_eta, j2_phi), undef
    )
    out["DER_prodeta_jet_jet"] = np.where(has2, j1_eta * j2_eta, undef)
    out[naming.deltar] = np.hypot(tau_eta - lep_eta, delta_phi(tau_phi, lep_phi))

    tx = hx + np.where(has1, j1_pt * np.cos(j1_phi), 0.0) + np.where(
        has2, j2_pt * np.cos(j2_phi), 0.0
    )
    ty = hy + np.where(has1, j1_pt * np.sin(j1_phi), 0.0) + np.where(
        has2, j2_pt * np.sin(j2_phi), 0.0
    )
    out["DER_pt_tot"] = np.hypot(tx, ty)
    out["DER_sum_pt"] = tau_pt + lep_pt + np.where(has1, jet_all_pt, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[naming.pt_ratio] = np.where(tau_pt > 0, lep_pt / tau_pt, undef)

    # MET phi centrality: +sqrt(2) when the MET lies between the tau and the lepton in phi.
    sign = np.sign(np.sin(tau_phi - lep_phi))
    sign = np.where(sign == 0, 1.0, sign)
    a = np.sin(met_phi - lep_phi) * sign
    b = np.sin(tau_phi - met_phi) * sign
    norm = np.sqrt(a * a + b * b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["DER_met_phi_centrality"] = np.where(norm > 0, (a + b) / norm, 0.0)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        centre = 0.5 * (j1_eta + j2_eta)
        cen = np.exp(-4.0 / (j1_eta - j2_eta) ** 2 * (lep_eta - centre) ** 2)
    out["DER_lep_eta_centrality"] = np.where(has2 & (deta > 0), cen, np.where(has2, 0.0, undef))
    return out


def compute_der_fair(pri: Mapping[str, npt.ArrayLike]) -> dict[str, FloatArray]:
    """The DER features as the FAIR Universe HiggsML Uncertainty Challenge computes them
    (``DER_data`` of its ``ingestion_program/derived_quantities.py``), with the 2024 naming.

    Written from that code's definitions, with the same arithmetic in the same order so that the
    results agree to the last bit where it matters. Where they differ from the 2014 definitions:

    * objects are massless four-vectors (p = pT cosh eta) and the masses are computed as
      sqrt(E^2 - p^2) of their sum (the jet-pair and transverse masses clipped at 0, as there;
      the visible mass clipped at 0 too, where that code gives NaN for exactly collinear pairs);
    * ``DER_sum_pt`` adds ``PRI_jet_all_pt`` whatever the jet count;
    * ``DER_pt_ratio_lep_had`` is lep/had without a guard;
    * ``DER_met_phi_centrality``: when sin(had - lep) is 0 the sign is 0, so the value is retried
      with the lepton phi moved by 1e-4, and is -25 if still undefined;
    * ``DER_lep_eta_centrality``: jets at equal eta use a squared difference of 1e-4;
    * the jet-pair features trust ``PRI_n_jets`` only: an event left with two jets but an
      undefined subleading jet (possible after the jet clean-up of an event with three jets)
      gets values computed from the -25 markers, as there.
    """

    def g(name: str) -> FloatArray:
        return np.asarray(pri[name], dtype=np.float64)

    n = g("PRI_n_jets")
    one, two = (n >= 1).astype(np.float64), (n >= 2).astype(np.float64)
    not_two = (n <= 1).astype(np.float64)
    h_pt, h_eta, h_phi = g("PRI_had_pt"), g("PRI_had_eta"), g("PRI_had_phi")
    l_pt, l_eta, l_phi = g("PRI_lep_pt"), g("PRI_lep_eta"), g("PRI_lep_phi")
    met, met_phi = g("PRI_met"), g("PRI_met_phi")
    a_pt, a_eta, a_phi = g("PRI_jet_leading_pt"), g("PRI_jet_leading_eta"), g(
        "PRI_jet_leading_phi"
    )
    b_pt, b_eta, b_phi = g("PRI_jet_subleading_pt"), g("PRI_jet_subleading_eta"), g(
        "PRI_jet_subleading_phi"
    )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        hx, hy, hz, hp = (h_pt * np.cos(h_phi), h_pt * np.sin(h_phi), h_pt * np.sinh(h_eta),
                          h_pt * np.cosh(h_eta))
        lx, ly, lz, lp = (l_pt * np.cos(l_phi), l_pt * np.sin(l_phi), l_pt * np.sinh(l_eta),
                          l_pt * np.cosh(l_eta))
        mx, my = met * np.cos(met_phi), met * np.sin(met_phi)
        ax, ay = a_pt * np.cos(a_phi) * one, a_pt * np.sin(a_phi) * one
        az, ap = a_pt * np.sinh(a_eta) * one, a_pt * np.cosh(a_eta) * one
        bx, by = b_pt * np.cos(b_phi) * two, b_pt * np.sin(b_phi) * two
        bz, bp = b_pt * np.sinh(b_eta) * two, b_pt * np.cosh(b_eta) * two

        out: dict[str, FloatArray] = {}
        c = (met + l_pt) ** 2 - (mx + lx) ** 2 - (my + ly) ** 2
        out["DER_mass_transverse_met_lep"] = np.sqrt(c * (c >= 0))
        c = (lp + hp) ** 2 - (lx + hx) ** 2 - (ly + hy) ** 2 - (lz + hz) ** 2
        out["DER_mass_vis"] = np.sqrt(np.maximum(c, 0.0))
        out["DER_pt_h"] = np.sqrt((hx + lx + mx) ** 2 + (hy + ly + my) ** 2)
        out["DER_deltaeta_jet_jet"] = np.abs(b_eta - a_eta) * two - 25.0 * (1.0 - two)
        c = (ap + bp) ** 2 - (ax + bx) ** 2 - (ay + by) ** 2 - (az + bz) ** 2
        out["DER_mass_jet_jet"] = np.sqrt(c * (c >= 0)) * two - 25.0 * not_two
        out["DER_prodeta_jet_jet"] = a_eta * b_eta * two - 25.0 * not_two
        dphi = np.abs(np.mod(l_phi - h_phi + 3.0 * np.pi, 2.0 * np.pi) - np.pi)
        out["DER_deltar_had_lep"] = np.sqrt((l_eta - h_eta) ** 2 + dphi**2)
        out["DER_pt_tot"] = np.sqrt((hx + lx + mx + ax + bx) ** 2 + (hy + ly + my + ay + by) ** 2)
        out["DER_sum_pt"] = h_pt + l_pt + g("PRI_jet_all_pt")
        out["DER_pt_ratio_lep_had"] = l_pt / h_pt
        out["DER_met_phi_centrality"] = _fair_met_phi_centrality(met_phi, l_phi, h_phi)
        diff = (a_eta - b_eta) ** 2
        diff = np.where(diff == 0.0, diff + 1e-4, diff)
        mean = (a_eta + b_eta) / 2
        out["DER_lep_eta_centrality"] = (np.exp(-4 / diff * (l_eta - mean) ** 2) * two
                                         - 25.0 * not_two)
    return out


def _fair_met_phi_centrality(met_phi: FloatArray, lep_phi: FloatArray,
                             had_phi: FloatArray) -> FloatArray:
    def value(lep: FloatArray) -> tuple[FloatArray, FloatArray]:
        sign = np.sign(np.sin(had_phi - lep))
        a = np.sin(met_phi - lep) * sign
        b = np.sin(had_phi - met_phi) * sign
        den = np.sqrt(a**2 + b**2)
        zero = (den == 0).astype(np.float64)
        return (a + b) / (den + zero) * (1.0 - zero) - 25.0 * zero, den

    first, den = value(lep_phi)
    retry, _ = value(lep_phi + 0.0001)
    out: FloatArray = np.where(den == 0, retry, first)
    return out
