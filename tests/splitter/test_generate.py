"""The toy HiggsML simulator: schema, determinism, physics facts of DESIGN.md section 6."""

from __future__ import annotations

import numpy as np
import pandas as pd

from splitter.generate import (
    BACKGROUND_WEIGHT_TOTAL,
    SIGNAL_WEIGHT_TOTAL,
    generate_higgs,
    generate_higgs_with_process,
)
from splitter.kinematics import HIGGS_COLUMNS_2014, NAMING_2014, compute_der

JET_COLUMNS_1 = ["PRI_jet_leading_pt", "PRI_jet_leading_eta", "PRI_jet_leading_phi"]
JET_COLUMNS_2 = [
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_lep_eta_centrality",
]


def test_columns_are_the_2014_ones_in_order(higgs_small: pd.DataFrame) -> None:
    assert list(higgs_small.columns) == HIGGS_COLUMNS_2014
    assert len(HIGGS_COLUMNS_2014) == 33
    assert higgs_small["EventId"].dtype == np.int64
    assert higgs_small["EventId"].iloc[0] == 100000
    assert higgs_small["EventId"].is_monotonic_increasing
    assert set(higgs_small["Label"]) == {"s", "b"}


def test_same_seed_same_bits_other_seed_other_events() -> None:
    a = generate_higgs(500, seed=11)
    b = generate_higgs(500, seed=11)
    c = generate_higgs(500, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["DER_mass_vis"].to_numpy(), c["DER_mass_vis"].to_numpy())


def test_weight_totals_match_higgsml_whatever_n() -> None:
    for n in (50, 2000):
        df = generate_higgs(n, seed=1)
        sums = df.groupby("Label")["Weight"].sum()
        assert np.isclose(sums["s"], SIGNAL_WEIGHT_TOTAL, rtol=1e-12)
        assert np.isclose(sums["b"], BACKGROUND_WEIGHT_TOTAL, rtol=1e-12)
        assert (df["Weight"] > 0).all()
    assert np.isclose(SIGNAL_WEIGHT_TOTAL, 691.99, atol=0.01)
    assert np.isclose(BACKGROUND_WEIGHT_TOTAL, 410999.85, atol=0.01)


def test_undefined_pattern_follows_jet_multiplicity(higgs_small: pd.DataFrame) -> None:
    df = higgs_small
    nj = df["PRI_jet_num"]
    assert set(nj.unique()) == {0, 1, 2, 3}
    assert (df.loc[nj == 0, JET_COLUMNS_1] == -999.0).all().all()
    assert (df.loc[nj >= 1, JET_COLUMNS_1] != -999.0).all().all()
    assert (df.loc[nj <= 1, JET_COLUMNS_2] == -999.0).all().all()
    assert (df.loc[nj >= 2, JET_COLUMNS_2] != -999.0).all().all()
    assert (df.loc[nj == 0, "PRI_jet_all_pt"] == 0.0).all()
    # The MMC fails in a minority of events, as in 2014 (about 15 %).
    failed = (df["DER_mass_MMC"] == -999.0).mean()
    assert 0.05 < failed < 0.3
    others = df.drop(columns=["DER_mass_MMC", *JET_COLUMNS_1, *JET_COLUMNS_2])
    assert not (others == -999.0).any().any()


def test_preselection_thresholds(higgs_small: pd.DataFrame) -> None:
    assert higgs_small["PRI_tau_pt"].min() >= 20.0
    assert higgs_small["PRI_lep_pt"].min() >= 26.0
    jets = higgs_small.loc[higgs_small["PRI_jet_num"] >= 1, "PRI_jet_leading_pt"]
    assert jets.min() >= 30.0
    assert higgs_small["PRI_tau_eta"].abs().max() <= 2.5


def test_der_features_are_recomputable_from_pri(higgs_small: pd.DataFrame) -> None:
    der = compute_der({c: higgs_small[c].to_numpy() for c in higgs_small.columns}, NAMING_2014)
    for name, values in der.items():
        np.testing.assert_allclose(higgs_small[name].to_numpy(), np.round(values, 3), atol=1e-9,
                                   err_msg=name)


def test_visible_mass_peaks_below_resonance_z_below_h() -> None:
    df = generate_higgs_with_process(20000, seed=3)
    med = df.groupby("Process")["DER_mass_vis"].median()
    assert 50 < med["ztautau"] < 75
    assert 65 < med["htautau"] < 95
    assert med["ztautau"] + 8 < med["htautau"]
    mmc = df[df["DER_mass_MMC"] > 0].groupby("Process")["DER_mass_MMC"].median()
    assert abs(mmc["htautau"] - 125) < 10
    assert abs(mmc["ztautau"] - 91) < 10
    # W + jets: lepton and neutrino from a W give a Jacobian peak in the transverse mass.
    mt = df.groupby("Process")["DER_mass_transverse_met_lep"].median()
    assert mt["wjets"] > 2 * mt["htautau"]
