"""Variants: TES/JES systematics on both HiggsML namings, bkg_norm, skew, generic distortions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splitter.generate import generate_higgs_with_process
from splitter.kinematics import NAMING_2014, NAMING_2024, compute_der
from splitter.variants import VariantError, apply_variant


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_higgs_with_process(4000, seed=21)


def to_2024(df: pd.DataFrame) -> pd.DataFrame:
    """The FAIR Universe 2024 naming: PRI_had_*, PRI_n_jets, -25 undefined, no MMC/sumet."""
    out = df.drop(columns=["DER_mass_MMC", "PRI_met_sumet"]).rename(columns={
        "PRI_tau_pt": "PRI_had_pt", "PRI_tau_eta": "PRI_had_eta", "PRI_tau_phi": "PRI_had_phi",
        "PRI_jet_num": "PRI_n_jets", "DER_deltar_tau_lep": "DER_deltar_had_lep",
        "DER_pt_ratio_lep_tau": "DER_pt_ratio_lep_had", "Weight": "weights",
        "Process": "detailed_labels"})
    num = out.select_dtypes("number").columns
    out[num] = out[num].replace(-999.0, -25.0)
    return out


def assert_der_consistent(df: pd.DataFrame, naming: object) -> None:
    der = compute_der({c: df[c].to_numpy() for c in df.columns}, naming)  # type: ignore[arg-type]
    for name, values in der.items():
        np.testing.assert_allclose(df[name].to_numpy(), values, atol=1e-9, err_msg=name)


def test_tes_unit_scale_changes_nothing(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"kind": "tes", "scale": 1.0})
    assert len(out) == len(events)
    for col in events.columns:
        if events[col].dtype.kind == "f":
            np.testing.assert_allclose(out[col], events[col], atol=2e-3, err_msg=col)


def test_tes_scales_tau_corrects_met_and_recomputes(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"name": "tes-up", "kind": "tes", "scale": 1.03})
    base = events.set_index("EventId").loc[out["EventId"]].reset_index()
    np.testing.assert_allclose(out["PRI_tau_pt"], base["PRI_tau_pt"] * 1.03)
    dpt = 0.03 * base["PRI_tau_pt"]
    mx = base["PRI_met"] * np.cos(base["PRI_met_phi"]) - dpt * np.cos(base["PRI_tau_phi"])
    my = base["PRI_met"] * np.sin(base["PRI_met_phi"]) - dpt * np.sin(base["PRI_tau_phi"])
    np.testing.assert_allclose(out["PRI_met"], np.hypot(mx, my))
    assert_der_consistent(out, NAMING_2014)
    assert (out["DER_mass_vis"] > base["DER_mass_vis"]).all()
    ratio = out["DER_sum_pt"] / base["DER_sum_pt"]
    defined = base["DER_mass_MMC"] != -999.0
    np.testing.assert_allclose(out.loc[defined, "DER_mass_MMC"],
                               base.loc[defined, "DER_mass_MMC"] * ratio[defined])
    assert (out.loc[~defined, "DER_mass_MMC"] == -999.0).all()
    assert (out.loc[base["PRI_jet_num"] <= 1, "DER_mass_jet_jet"] == -999.0).all()


def test_tes_down_reapplies_threshold_and_can_drop_mmc(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"kind": "tes", "scale": 0.9, "mmc": "drop"})
    assert "DER_mass_MMC" not in out.columns
    expected = int((events["PRI_tau_pt"] * 0.9 >= 20.0).sum())
    assert len(out) == expected < len(events)
    assert out["PRI_tau_pt"].min() >= 20.0


def test_tes_on_2024_naming(events: pd.DataFrame) -> None:
    df = to_2024(events)
    out = apply_variant(df, {"kind": "tes", "scale": 1.05})
    assert_der_consistent(out, NAMING_2024)
    undefined_jj = out["PRI_n_jets"] <= 1
    assert (out.loc[undefined_jj, "DER_mass_jet_jet"] == -25.0).all()
    assert not (out == -999.0).any().any()
    assert out["PRI_had_pt"].min() >= 20.0


def test_jes_moves_jets_and_jet_count(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"kind": "jes", "scale": 0.8})
    assert len(out) == len(events)
    assert_der_consistent(out, NAMING_2014)
    assert (out["PRI_jet_num"] <= events["PRI_jet_num"]).all()
    assert (out["PRI_jet_num"] < events["PRI_jet_num"]).any()
    kept = (out["PRI_jet_num"] >= 1) & (events["PRI_jet_num"] >= 1)
    np.testing.assert_allclose(out.loc[kept, "PRI_jet_leading_pt"],
                               events.loc[kept, "PRI_jet_leading_pt"] * 0.8)
    lead = out.loc[out["PRI_jet_num"] >= 1, "PRI_jet_leading_pt"]
    assert lead.min() >= 30.0
    assert (out.loc[out["PRI_jet_num"] == 0, "PRI_jet_leading_pt"] == -999.0).all()
    out24 = apply_variant(to_2024(events), {"kind": "jes", "scale": 1.1})
    assert_der_consistent(out24, NAMING_2024)


def test_bkg_norm_scales_one_process(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"kind": "bkg_norm", "process": "ztautau", "scale": 1.2})
    z = events["Process"] == "ztautau"
    np.testing.assert_allclose(out.loc[z, "Weight"], events.loc[z, "Weight"] * 1.2)
    np.testing.assert_array_equal(out.loc[~z, "Weight"], events.loc[~z, "Weight"])
    with pytest.raises(VariantError, match="no event of process 'zz'"):
        apply_variant(events, {"kind": "bkg_norm", "process": "zz", "scale": 1.2})
    with pytest.raises(VariantError, match="needs a process column"):
        apply_variant(events.drop(columns="Process"),
                      {"kind": "bkg_norm", "process": "ztautau", "scale": 1.2})
    # 2024 naming: the FAIR Universe processing (nominal cuts) with the ttbar weights doubled.
    nominal = apply_variant(to_2024(events), {"kind": "systematics"})
    out24 = apply_variant(to_2024(events), {"kind": "bkg_norm", "process": "ttbar",
                                            "scale": 2.0})
    tt = (nominal["detailed_labels"] == "ttbar").to_numpy()
    assert tt.any()
    assert len(out24) == len(nominal)
    np.testing.assert_allclose(out24["weights"][tt], nominal["weights"][tt] * 2.0)
    np.testing.assert_array_equal(out24["weights"][~tt], nominal["weights"][~tt])


@pytest.mark.parametrize("strength", ["small", "big"])
def test_skew_mixes_and_labels(events: pd.DataFrame, strength: str) -> None:
    spec = {"kind": "skew", "strength": strength, "seed": 4}
    out = apply_variant(events, spec)
    again = apply_variant(events, spec)
    pd.testing.assert_frame_equal(out, again)
    assert set(out["is_skewed"]) == {0, 1}
    assert 0.4 < out["is_skewed"].mean() < 0.6
    assert out["EventId"].is_monotonic_increasing
    base = events.set_index("EventId")
    sk = out[out["is_skewed"] == 1]
    np.testing.assert_allclose(
        sk["PRI_tau_pt"].to_numpy(),
        base.loc[sk["EventId"], "PRI_tau_pt"].to_numpy() * (1.01 if strength == "small" else 1.05))
    orig = out[out["is_skewed"] == 0]
    np.testing.assert_array_equal(orig["PRI_tau_pt"].to_numpy(),
                                  base.loc[orig["EventId"], "PRI_tau_pt"].to_numpy())


def test_skew_custom_list(events: pd.DataFrame) -> None:
    out = apply_variant(events, {"kind": "skew", "fraction": 0.3, "distortions": [
        {"kind": "shift_scale", "columns": ["PRI_met"], "scale": 2.0}]})
    assert 0.2 < out["is_skewed"].mean() < 0.4


def test_generic_distortions(events: pd.DataFrame) -> None:
    noisy = apply_variant(events, {"kind": "noise", "columns": ["PRI_jet_leading_pt"],
                                   "sigma": 5.0, "seed": 1})
    again = apply_variant(events, {"kind": "noise", "columns": ["PRI_jet_leading_pt"],
                                   "sigma": 5.0, "seed": 1})
    pd.testing.assert_frame_equal(noisy, again)
    undefined = events["PRI_jet_leading_pt"] == -999.0
    assert (noisy.loc[undefined, "PRI_jet_leading_pt"] == -999.0).all()
    diff = noisy.loc[~undefined, "PRI_jet_leading_pt"] - events.loc[~undefined,
                                                                    "PRI_jet_leading_pt"]
    assert 4.0 < diff.std() < 6.0

    shifted = apply_variant(events, {"kind": "shift_scale", "columns": "PRI_met", "shift": 1.0,
                                     "scale": 2.0})
    np.testing.assert_allclose(shifted["PRI_met"], events["PRI_met"] * 2 + 1)

    cov = apply_variant(events, {"kind": "covariate_shift", "column": "PRI_met",
                                 "strength": 0.8})
    assert np.isclose(cov["Weight"].sum(), events["Weight"].sum())
    assert np.average(cov["PRI_met"], weights=cov["Weight"]) > np.average(
        events["PRI_met"], weights=events["Weight"])
    res = apply_variant(events.drop(columns="Weight"), {"kind": "covariate_shift",
                                                        "column": "PRI_met", "fraction": 0.5,
                                                        "seed": 2})
    assert len(res) == 2000
    assert res["PRI_met"].mean() > events["PRI_met"].mean()

    flipped = apply_variant(events, {"kind": "label_noise", "column": "Label", "rate": 0.1,
                                     "seed": 3})
    rate = (flipped["Label"] != events["Label"]).mean()
    assert 0.07 < rate < 0.13


def test_unknown_kind_and_missing_options(events: pd.DataFrame) -> None:
    with pytest.raises(VariantError, match="unknown kind 'tess'"):
        apply_variant(events, {"name": "x", "kind": "tess"})
    with pytest.raises(VariantError, match="needs the option 'scale'"):
        apply_variant(events, {"name": "x", "kind": "tes"})
    with pytest.raises(VariantError, match="not a HiggsML table"):
        apply_variant(pd.DataFrame({"a": [1.0]}), {"kind": "tes", "scale": 1.1})
