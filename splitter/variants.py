"""Dataset variants: physics systematics, anomaly-detection mixes and generic distortions.

Every variant is described by a plain mapping, as in a challenge bundle::

    {name: tes-up, kind: tes, scale: 1.03}
    {name: skewed, kind: skew, strength: small}

and applied with :func:`apply_variant`. Kinds:

``tes``       tau energy scale: tau pT x ``scale``; the MET vector loses the change of the tau
              momentum; every DER feature is recomputed from the PRI ones; ``DER_mass_MMC`` is
              rescaled by the ratio of the sum of pT (``mmc: rescale``, default) or dropped
              (``mmc: drop``); events whose tau falls below 20 GeV are removed.
``jes``       jet energy scale: the same for the leading and subleading jets (and the scalar sum
              of all jets); jets falling below 30 GeV are removed and the jet count lowered.
``bkg_norm``  weights of one background ``process`` x ``scale`` (needs a process column).
``bkg_scale`` weights of every background event (label ``b`` or 0) x ``scale``.
``soft_met``  (2024 naming) a Gaussian soft term of width ``sigma`` added to each MET component.
``systematics`` (2024 naming) all of the FAIR Universe systematics at once: ``tes``, ``jes``,
              ``soft_met``, ``seed``, ``ttbar_scale``, ``diboson_scale``, ``bkg_scale``; with no
              option it is that challenge's nominal processing.
``skew``      anomaly-detection set: a seeded ``fraction`` of events is distorted by a chain of
              variants (``strength: small`` or ``big`` presets, or ``distortions: [...]``), and a
              column ``is_skewed`` (0/1) tells which.
``noise``     Gaussian noise of ``sigma`` (absolute, or x column std with ``relative: true``).
``shift_scale`` x -> x * ``scale`` + ``shift`` on ``columns``.
``covariate_shift`` reweights (or resamples) rows by exp(``strength`` x standardised column).
``label_noise`` flips a seeded ``rate`` of labels to another class.

Both HiggsML dialects are supported (2014: ``PRI_tau_*``, ``PRI_jet_num``, -999.0; 2024 FAIR
Universe: ``PRI_had_*``, ``PRI_n_jets``, -25.0). Undefined values are never distorted.

With the 2024 naming, ``tes``, ``jes``, ``soft_met``, ``bkg_norm``, ``bkg_scale`` and
``systematics`` do what the FAIR Universe HiggsML Uncertainty Challenge's own code does
(:func:`apply_fair_systematics`): its MET correction, its 3-decimal rounding of every PRI feature,
its post-processing cuts and jet clean-up (even at nominal), and its DER definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from splitter.kinematics import (
    FAIR_DER_COLUMNS,
    FAIR_HAD_PT_MIN,
    FAIR_JET_PT_MAX_REMOVED,
    FAIR_LEP_PT_MIN,
    FAIR_PRI_COLUMNS,
    JET_PT_MIN,
    NAMING_2024,
    TAU_PT_MIN,
    FloatArray,
    HiggsNaming,
    compute_der,
    detect_naming,
)

PROCESS_COLUMNS = ("Process", "detailed_labels", "detailed_label", "process")
WEIGHT_COLUMNS = ("Weight", "weights", "weight", "KaggleWeight")
LABEL_COLUMNS = ("Label", "labels", "label")
FAIR_SEED = 31415  # the FAIR Universe code's default seed of the soft MET term
SKEW_PRESETS: dict[str, list[dict[str, Any]]] = {
    "small": [
        {"kind": "tes", "scale": 1.01},
        {"kind": "jes", "scale": 1.01},
        {"kind": "bkg_norm", "process": "ztautau", "scale": 1.05},
    ],
    "big": [
        {"kind": "tes", "scale": 1.05},
        {"kind": "jes", "scale": 1.05},
        {"kind": "bkg_norm", "process": "ztautau", "scale": 1.3},
        {"kind": "bkg_norm", "process": "ttbar", "scale": 1.5},
    ],
}


class VariantError(ValueError):
    """A variant cannot be applied; the message says which option or column to change."""


def _need(spec: Mapping[str, Any], key: str, kind: str) -> Any:
    if key not in spec:
        raise VariantError(f"variant {spec.get('name', kind)!r} ({kind}) needs the option "
                           f"{key!r}")
    return spec[key]


def _higgs(df: pd.DataFrame, kind: str) -> HiggsNaming:
    try:
        return detect_naming(list(df.columns))
    except KeyError as exc:
        raise VariantError(f"{kind}: {exc.args[0]}") from exc


def _pri(df: pd.DataFrame) -> dict[str, FloatArray]:
    return {c: df[c].to_numpy(dtype=np.float64) for c in df.columns if c.startswith("PRI_")}


def _write_back(df: pd.DataFrame, values: Mapping[str, FloatArray]) -> pd.DataFrame:
    out = df.copy()
    for name, v in values.items():
        if name in out.columns:
            out[name] = v.astype(out[name].dtype) if out[name].dtype.kind in "iu" else v
    return out


def _recompute(df: pd.DataFrame, pri: dict[str, FloatArray], naming: HiggsNaming,
               mmc: str) -> pd.DataFrame:
    der = compute_der(pri, naming)
    if "DER_mass_MMC" in df.columns:
        if mmc == "drop":
            df = df.drop(columns=["DER_mass_MMC"])
        elif mmc == "rescale":
            old_sum = df["DER_sum_pt"].to_numpy(dtype=np.float64)
            ratio = np.divide(der["DER_sum_pt"], old_sum, out=np.ones_like(old_sum),
                              where=old_sum > 0)
            old = df["DER_mass_MMC"].to_numpy(dtype=np.float64)
            der["DER_mass_MMC"] = np.where(old == naming.undefined, old, old * ratio)
        else:
            raise VariantError(f"mmc option must be 'rescale' or 'drop', got {mmc!r}")
    return _write_back(df, {**pri, **der})


def _label_column(df: pd.DataFrame, given: str | None, kind: str) -> str:
    return _column(df, LABEL_COLUMNS, given, "label", kind)


def _background_mask(df: pd.DataFrame, column: str, kind: str) -> npt.NDArray[np.bool_]:
    values = df[column]
    if values.dtype.kind in "iuf":
        zero: npt.NDArray[np.bool_] = values.to_numpy() == 0
        return zero
    text = values.astype(str).to_numpy()
    if not set(np.unique(text)) <= {"s", "b"}:
        raise VariantError(f"{kind}: label column {column!r} must hold s/b or 1/0, found "
                           f"{', '.join(sorted(set(np.unique(text)))[:5])}")
    mask: npt.NDArray[np.bool_] = text == "b"
    return mask


def apply_fair_systematics(
    df: pd.DataFrame, *, tes: float = 1.0, jes: float = 1.0, soft_met: float = 0.0,
    seed: int = FAIR_SEED, ttbar_scale: float | None = None,
    diboson_scale: float | None = None, bkg_scale: float | None = None,
    process_scales: Mapping[str, float] | None = None, mmc: str = "rescale",
    process_column: str | None = None, weight_column: str | None = None,
    label_column: str | None = None, postprocess: bool = True,
) -> pd.DataFrame:
    """The systematics of the FAIR Universe HiggsML Uncertainty Challenge, on a 2024-named table.

    Follows the definitions of that challenge's ``ingestion_program/systematics.py``
    (``systematics``, ``mom4_manipulate``, ``postprocess``) and ``derived_quantities.py``:

    1. weights: ``ttbar_scale`` and ``diboson_scale`` multiply the weights of the events whose
       detailed label is ``ttbar`` or ``diboson``, then ``bkg_scale`` those of every background
       event (label 0 or ``b``); ``process_scales`` does the same for any process name;
    2. the MET starts as the vector (met cos phi, met sin phi); TES multiplies ``PRI_had_pt``
       and adds (1 - tes)/tes times the new tau momentum to the MET; JES multiplies the leading
       jet pT (when ``PRI_n_jets`` > 0), the subleading one (> 1) and ``PRI_jet_all_pt``, and
       corrects the MET the same way for both jets; ``soft_met`` > 0 adds to the MET x then y
       components draws of ``numpy.random.RandomState(seed).normal(0, soft_met, N)``, N the
       number of input rows (so the same seed and table give the same MET);
    3. every PRI feature but the jet count is rounded to 3 decimals, even at nominal;
    4. events with ``PRI_had_pt`` < 26 are dropped; a subleading then a leading jet with pT in
       [0, 26] is removed (its pT leaves ``PRI_jet_all_pt``, its variables become -25, the jet
       count goes down by one); events with ``PRI_lep_pt`` < 20 are dropped;
    5. the DER features are recomputed (:func:`splitter.kinematics.compute_der_fair`).

    ``postprocess=False`` skips step 4, as that code's ``dopostprocess=False`` does.

    Columns other than the features follow their rows. ``DER_mass_MMC``, absent from the 2024
    data, is rescaled or dropped as with the 2014 naming if a table has it.
    """
    naming = _higgs(df, "systematics")
    if naming != NAMING_2024:
        raise VariantError("systematics: the FAIR Universe systematics need the 2024 naming "
                           "(PRI_had_*, PRI_n_jets); use tes, jes and bkg_norm on 2014 tables")
    for name, value in (("tes", tes), ("jes", jes)):
        if not value > 0:
            raise VariantError(f"{name} must be a positive scale factor, got {value}")
    if soft_met < 0:
        raise VariantError(f"soft_met must be >= 0, got {soft_met}")
    missing = [c for c in FAIR_PRI_COLUMNS if c not in df.columns]
    if missing:
        raise VariantError(f"systematics: the 2024 table lacks the columns {', '.join(missing)}")

    out = df.copy()
    scales = dict(process_scales or {})
    if ttbar_scale is not None:
        scales["ttbar"] = scales.get("ttbar", 1.0) * ttbar_scale
    if diboson_scale is not None:
        scales["diboson"] = scales.get("diboson", 1.0) * diboson_scale
    if scales or bkg_scale is not None:
        wcol = _column(df, WEIGHT_COLUMNS, weight_column, "weight", "systematics")
        w = out[wcol].to_numpy(dtype=np.float64).copy()
        if scales:
            pcol = _column(df, PROCESS_COLUMNS, process_column, "process", "systematics")
            names = df[pcol].astype(str).to_numpy()
            for process, factor in scales.items():
                w[names == process] *= factor
        if bkg_scale is not None:
            lcol = _label_column(df, label_column, "systematics")
            w[_background_mask(df, lcol, "systematics")] *= bkg_scale
        out[wcol] = w

    pri = {c: df[c].to_numpy(dtype=np.float64).copy() for c in FAIR_PRI_COLUMNS}
    njet = df["PRI_n_jets"].to_numpy(dtype=np.float64).copy()
    mx = pri["PRI_met"] * np.cos(pri["PRI_met_phi"])
    my = pri["PRI_met"] * np.sin(pri["PRI_met_phi"])
    if tes != 1.0:
        pri["PRI_had_pt"] = pri["PRI_had_pt"] * tes
        f = (1.0 - tes) / tes
        mx = mx + pri["PRI_had_pt"] * np.cos(pri["PRI_had_phi"]) * f
        my = my + pri["PRI_had_pt"] * np.sin(pri["PRI_had_phi"]) * f
    if jes != 1.0:
        for jet, present in (("leading", njet > 0), ("subleading", njet > 1)):
            pt = np.where(present, pri[f"PRI_jet_{jet}_pt"] * jes, pri[f"PRI_jet_{jet}_pt"])
            pri[f"PRI_jet_{jet}_pt"] = pt
            phi = np.where(present, pri[f"PRI_jet_{jet}_phi"], 0.0)
            pt0 = np.where(present, pt, 0.0)
            f = (1.0 - jes) / jes
            mx = mx + pt0 * np.cos(phi) * f
            my = my + pt0 * np.sin(phi) * f
        pri["PRI_jet_all_pt"] = pri["PRI_jet_all_pt"] * jes
    if soft_met > 0:
        state = np.random.RandomState(int(seed))  # the legacy generator, as that code uses
        sx = state.normal(0.0, soft_met, size=len(df))
        sy = state.normal(0.0, soft_met, size=len(df))
        mx, my = mx + sx, my + sy
    pri["PRI_met"] = np.sqrt(mx**2 + my**2)
    pri["PRI_met_phi"] = np.arctan2(my, mx)
    pri = {c: np.round(v, 3) for c, v in pri.items()}

    keep = pri["PRI_had_pt"] >= FAIR_HAD_PT_MIN if postprocess else np.ones(len(df), bool)
    for jet in ("subleading", "leading") if postprocess else ():
        pt = pri[f"PRI_jet_{jet}_pt"]
        gone = (pt >= 0.0) & (pt <= FAIR_JET_PT_MAX_REMOVED)
        pri["PRI_jet_all_pt"] = np.where(gone, pri["PRI_jet_all_pt"] - pt,
                                         pri["PRI_jet_all_pt"])
        for var in ("pt", "eta", "phi"):
            pri[f"PRI_jet_{jet}_{var}"] = np.where(gone, -25.0, pri[f"PRI_jet_{jet}_{var}"])
        njet = njet - gone
    if postprocess:
        keep &= pri["PRI_lep_pt"] >= FAIR_LEP_PT_MIN

    pri["PRI_n_jets"] = njet
    for c in FAIR_DER_COLUMNS:
        if c not in out.columns:
            out[c] = 0.0
    out = _recompute(out, pri, NAMING_2024, mmc)
    return out[keep].reset_index(drop=True)


def apply_tes(df: pd.DataFrame, scale: float, *, mmc: str = "rescale") -> pd.DataFrame:
    """Tau energy scale systematic (see the module docstring)."""
    naming = _higgs(df, "tes")
    if naming == NAMING_2024:
        return apply_fair_systematics(df, tes=scale, mmc=mmc)
    pri = _pri(df)
    pt_col, phi_col = naming.col("tau", "pt"), naming.col("tau", "phi")
    old_pt = pri[pt_col]
    new_pt = old_pt * scale
    dpt = new_pt - old_pt
    phi = pri[phi_col]
    mx = pri["PRI_met"] * np.cos(pri["PRI_met_phi"]) - dpt * np.cos(phi)
    my = pri["PRI_met"] * np.sin(pri["PRI_met_phi"]) - dpt * np.sin(phi)
    pri[pt_col] = new_pt
    pri["PRI_met"] = np.hypot(mx, my)
    pri["PRI_met_phi"] = np.arctan2(my, mx)
    if "PRI_met_sumet" in pri:
        pri["PRI_met_sumet"] = pri["PRI_met_sumet"] + dpt
    out = _recompute(df, pri, naming, mmc)
    return out[new_pt >= TAU_PT_MIN].reset_index(drop=True)


def apply_jes(df: pd.DataFrame, scale: float, *, mmc: str = "rescale") -> pd.DataFrame:
    """Jet energy scale systematic (see the module docstring)."""
    naming = _higgs(df, "jes")
    if naming == NAMING_2024:
        return apply_fair_systematics(df, jes=scale, mmc=mmc)
    pri = _pri(df)
    undef = naming.undefined
    njet = pri[naming.jet_num].copy()
    lead, sub = pri["PRI_jet_leading_pt"], pri["PRI_jet_subleading_pt"]
    has1, has2 = njet >= 1, njet >= 2
    new_lead = np.where(has1, lead * scale, lead)
    new_sub = np.where(has2, sub * scale, sub)
    d1 = np.where(has1, new_lead - lead, 0.0)
    d2 = np.where(has2, new_sub - sub, 0.0)
    mx = (pri["PRI_met"] * np.cos(pri["PRI_met_phi"])
          - d1 * np.cos(pri["PRI_jet_leading_phi"]) - d2 * np.cos(pri["PRI_jet_subleading_phi"]))
    my = (pri["PRI_met"] * np.sin(pri["PRI_met_phi"])
          - d1 * np.sin(pri["PRI_jet_leading_phi"]) - d2 * np.sin(pri["PRI_jet_subleading_phi"]))
    all_pt = pri["PRI_jet_all_pt"] * scale
    # Jets that fall below threshold leave the jet list (their pT leaves the scalar sum); a lower
    # jet of the same event is softer still, so it goes too.
    lose1 = has1 & (new_lead < JET_PT_MIN)
    lose2 = has2 & ((new_sub < JET_PT_MIN) | lose1)
    all_pt = all_pt - np.where(lose2, new_sub, 0.0) - np.where(lose1, new_lead, 0.0)
    njet = np.where(lose1, 0, np.where(lose2, 1, njet))
    all_pt = np.where(njet == 0, 0.0, np.maximum(all_pt, 0.0))
    for var, new in (("pt", new_lead), ("eta", pri["PRI_jet_leading_eta"]),
                     ("phi", pri["PRI_jet_leading_phi"])):
        pri[f"PRI_jet_leading_{var}"] = np.where(njet >= 1, new, undef)
    for var, new in (("pt", new_sub), ("eta", pri["PRI_jet_subleading_eta"]),
                     ("phi", pri["PRI_jet_subleading_phi"])):
        pri[f"PRI_jet_subleading_{var}"] = np.where(njet >= 2, new, undef)
    pri[naming.jet_num] = njet.astype(np.float64)
    pri["PRI_jet_all_pt"] = all_pt
    pri["PRI_met"] = np.hypot(mx, my)
    pri["PRI_met_phi"] = np.arctan2(my, mx)
    if "PRI_met_sumet" in pri:
        pri["PRI_met_sumet"] = pri["PRI_met_sumet"] + d1 + d2
    return _recompute(df, pri, naming, mmc)


def _column(df: pd.DataFrame, candidates: tuple[str, ...], given: str | None, what: str,
            kind: str) -> str:
    if given:
        if given not in df.columns:
            raise VariantError(f"{kind}: no {what} column {given!r}; columns: "
                               f"{', '.join(map(str, df.columns))}")
        return given
    for c in candidates:
        if c in df.columns:
            return c
    raise VariantError(f"{kind}: needs a {what} column ({' or '.join(candidates)}); name it "
                       f"with the option {what}_column")


def apply_bkg_norm(df: pd.DataFrame, process: str, scale: float, *,
                   process_column: str | None = None,
                   weight_column: str | None = None) -> pd.DataFrame:
    """Scale the weights of the events of one background ``process`` by ``scale``.

    On a 2024-named table this is the FAIR Universe processing with that scale (as its
    ``ttbar_scale``/``diboson_scale``): the nominal rounding and cuts apply too."""
    pcol = _column(df, PROCESS_COLUMNS, process_column, "process", "bkg_norm")
    wcol = _column(df, WEIGHT_COLUMNS, weight_column, "weight", "bkg_norm")
    mask = (df[pcol].astype(str) == process).to_numpy()
    if not mask.any():
        known = ", ".join(sorted(map(str, df[pcol].unique())))
        raise VariantError(f"bkg_norm: no event of process {process!r} in column {pcol!r}; "
                           f"processes: {known}")
    if _is_2024(df):
        return apply_fair_systematics(df, process_scales={process: scale},
                                      process_column=pcol, weight_column=wcol)
    out = df.copy()
    w = out[wcol].to_numpy(dtype=np.float64).copy()
    w[mask] *= scale
    out[wcol] = w
    return out


def _is_2024(df: pd.DataFrame) -> bool:
    try:
        return detect_naming(list(df.columns)) == NAMING_2024
    except KeyError:
        return False


def apply_bkg_scale(df: pd.DataFrame, scale: float, *, label_column: str | None = None,
                    weight_column: str | None = None) -> pd.DataFrame:
    """Scale the weights of every background event (label ``b`` or 0) by ``scale``; on a
    2024-named table with the FAIR Universe processing (its ``bkg_scale``)."""
    wcol = _column(df, WEIGHT_COLUMNS, weight_column, "weight", "bkg_scale")
    lcol = _label_column(df, label_column, "bkg_scale")
    mask = _background_mask(df, lcol, "bkg_scale")
    if _is_2024(df):
        return apply_fair_systematics(df, bkg_scale=scale, label_column=lcol,
                                      weight_column=wcol)
    out = df.copy()
    w = out[wcol].to_numpy(dtype=np.float64).copy()
    w[mask] *= scale
    out[wcol] = w
    return out


def _fair_spec(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    def num(key: str) -> float | None:
        return None if spec.get(key) is None else float(spec[key])

    known = {"name", "kind", "tes", "jes", "soft_met", "seed", "ttbar_scale", "diboson_scale",
             "bkg_scale", "mmc", "process_column", "weight_column", "label_column",
             "postprocess"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise VariantError(f"systematics: unknown option(s) {', '.join(unknown)}; options: "
                           f"{', '.join(sorted(known - {'name', 'kind'}))}")
    return apply_fair_systematics(
        df, tes=float(spec.get("tes", 1.0)), jes=float(spec.get("jes", 1.0)),
        soft_met=float(spec.get("soft_met", 0.0)), seed=int(spec.get("seed", FAIR_SEED)),
        ttbar_scale=num("ttbar_scale"), diboson_scale=num("diboson_scale"),
        bkg_scale=num("bkg_scale"), mmc=str(spec.get("mmc", "rescale")),
        process_column=spec.get("process_column"), weight_column=spec.get("weight_column"),
        label_column=spec.get("label_column"), postprocess=bool(spec.get("postprocess", True)))


def _soft_met_spec(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    if not _is_2024(df):
        raise VariantError("soft_met: needs the 2024 naming (PRI_had_*, PRI_n_jets); the 2014 "
                           "tables have no soft-term definition in Podium")
    return apply_fair_systematics(df, soft_met=float(_need(spec, "sigma", "soft_met")),
                                  seed=int(spec.get("seed", FAIR_SEED)),
                                  mmc=str(spec.get("mmc", "rescale")))


def _rng(spec: Mapping[str, Any]) -> np.random.Generator:
    return np.random.default_rng(int(spec.get("seed", 0)))


def _numeric_columns(df: pd.DataFrame, spec: Mapping[str, Any], kind: str) -> list[str]:
    cols = spec.get("columns")
    if cols is None:
        raise VariantError(f"{kind}: name the columns to distort with the option 'columns'")
    if isinstance(cols, str):
        cols = [cols]
    for c in cols:
        if c not in df.columns:
            raise VariantError(f"{kind}: no column {c!r}; columns: "
                               f"{', '.join(map(str, df.columns))}")
        if df[c].dtype.kind not in "iuf":
            raise VariantError(f"{kind}: column {c!r} is not numeric (type {df[c].dtype})")
    return list(cols)


def _defined(values: FloatArray, spec: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
    skip = spec.get("skip_values", [-999.0, -25.0])
    mask: npt.NDArray[np.bool_] = np.isfinite(values) & ~np.isin(values, skip)
    return mask


def apply_noise(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Gaussian noise on ``columns``: ``sigma`` absolute, or relative to each column's std."""
    rng = _rng(spec)
    sigma = float(_need(spec, "sigma", "noise"))
    out = df.copy()
    for c in _numeric_columns(df, spec, "noise"):
        v = out[c].to_numpy(dtype=np.float64).copy()
        ok = _defined(v, spec)
        s = sigma * (float(np.std(v[ok])) if spec.get("relative") else 1.0)
        v[ok] += rng.normal(0.0, s, int(ok.sum()))
        out[c] = v
    return out


def apply_shift_scale(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """x -> x * scale + shift on ``columns`` (defined values only)."""
    shift, scale = float(spec.get("shift", 0.0)), float(spec.get("scale", 1.0))
    out = df.copy()
    for c in _numeric_columns(df, spec, "shift_scale"):
        v = out[c].to_numpy(dtype=np.float64).copy()
        ok = _defined(v, spec)
        v[ok] = v[ok] * scale + shift
        out[c] = v
    return out


def apply_covariate_shift(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Shift the distribution of ``column`` by weighting rows with exp(strength * z).

    With ``mode: reweight`` (default when the table has a weight column) the weights are
    multiplied by that factor, renormalised to keep their total; with ``mode: resample`` a
    seeded ``fraction`` of rows is drawn without replacement with those probabilities.
    """
    col = str(_need(spec, "column", "covariate_shift"))
    _numeric_columns(df, {"columns": [col]}, "covariate_shift")
    strength = float(spec.get("strength", 0.5))
    v = df[col].to_numpy(dtype=np.float64)
    ok = _defined(v, spec)
    z = np.zeros_like(v)
    if ok.any():
        z[ok] = (v[ok] - v[ok].mean()) / (v[ok].std() or 1.0)
    factor = np.exp(strength * np.clip(z, -5, 5))
    wcol = next((c for c in WEIGHT_COLUMNS if c in df.columns), None)
    mode = spec.get("mode", "reweight" if wcol else "resample")
    if mode == "reweight":
        wcol = _column(df, WEIGHT_COLUMNS, spec.get("weight_column"), "weight",
                       "covariate_shift")
        out = df.copy()
        w = out[wcol].to_numpy(dtype=np.float64)
        new = w * factor
        out[wcol] = new * (w.sum() / new.sum())
        return out
    if mode != "resample":
        raise VariantError(f"covariate_shift: mode must be reweight or resample, got {mode!r}")
    n = round(float(spec.get("fraction", 0.5)) * len(df))
    idx = _rng(spec).choice(len(df), size=n, replace=False, p=factor / factor.sum())
    return df.iloc[np.sort(idx)].reset_index(drop=True)


def apply_label_noise(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Flip a seeded ``rate`` of the labels in ``column`` to another class, uniformly."""
    col = str(_need(spec, "column", "label_noise"))
    if col not in df.columns:
        raise VariantError(f"label_noise: no column {col!r}")
    rate = float(_need(spec, "rate", "label_noise"))
    if not 0 <= rate <= 1:
        raise VariantError(f"label_noise: rate must lie in [0, 1], got {rate}")
    rng = _rng(spec)
    values = df[col].to_numpy()
    classes = np.unique(values)
    if len(classes) < 2:
        raise VariantError(f"label_noise: column {col!r} has a single class")
    flip = rng.uniform(size=len(df)) < rate
    codes = np.searchsorted(classes, values)
    shift = rng.integers(1, len(classes), size=len(df))
    new_codes = np.where(flip, (codes + shift) % len(classes), codes)
    out = df.copy()
    out[col] = classes[new_codes]
    return out


def apply_skew(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Mix original events with distorted ones, labelled by a 0/1 column ``is_skewed``.

    Rows keep their input order; distorted rows removed by a threshold are dropped.
    """
    if "distortions" in spec:
        chain = list(spec["distortions"])
    else:
        strength = str(spec.get("strength", "small"))
        if strength not in SKEW_PRESETS:
            raise VariantError(f"skew: strength must be one of {', '.join(SKEW_PRESETS)} or "
                               f"give a list of distortions, got {strength!r}")
        chain = SKEW_PRESETS[strength]
    fraction = float(spec.get("fraction", 0.5))
    rng = _rng(spec)
    pick = rng.uniform(size=len(df)) < fraction
    base = df.assign(_row=np.arange(len(df)))
    distorted = base[pick].reset_index(drop=True)
    for step in chain:
        distorted = apply_variant(distorted, dict(step))
    kept = base[~pick].assign(is_skewed=np.int8(0))
    distorted = distorted.assign(is_skewed=np.int8(1))
    common = [c for c in kept.columns if c in distorted.columns]
    out = pd.concat([kept[common], distorted[common]], ignore_index=True)
    return out.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)


_KINDS: dict[str, Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]] = {
    "tes": lambda df, s: apply_tes(df, float(_need(s, "scale", "tes")),
                                   mmc=str(s.get("mmc", "rescale"))),
    "jes": lambda df, s: apply_jes(df, float(_need(s, "scale", "jes")),
                                   mmc=str(s.get("mmc", "rescale"))),
    "bkg_norm": lambda df, s: apply_bkg_norm(
        df, str(_need(s, "process", "bkg_norm")), float(_need(s, "scale", "bkg_norm")),
        process_column=s.get("process_column"), weight_column=s.get("weight_column")),
    "bkg_scale": lambda df, s: apply_bkg_scale(
        df, float(_need(s, "scale", "bkg_scale")), label_column=s.get("label_column"),
        weight_column=s.get("weight_column")),
    "soft_met": _soft_met_spec,
    "systematics": _fair_spec,
    "skew": apply_skew,
    "noise": apply_noise,
    "shift_scale": apply_shift_scale,
    "covariate_shift": apply_covariate_shift,
    "label_noise": apply_label_noise,
}
VARIANT_KINDS = tuple(_KINDS)


def apply_variant(df: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """Apply the variant described by ``spec`` (``{name, kind, ...options}``) to ``df`` and
    return a new DataFrame; ``df`` is not modified."""
    kind = spec.get("kind")
    if kind not in _KINDS:
        raise VariantError(f"variant {spec.get('name', '?')!r}: unknown kind {kind!r}; kinds: "
                           f"{', '.join(VARIANT_KINDS)}")
    return _KINDS[str(kind)](df, spec)
