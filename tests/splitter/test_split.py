"""Seeded splits: reproducibility, exact stratified counts, leakage, reweighting, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from splitter.split import SplitError, SplitSpec, split_dataframe, split_file

SPEC = SplitSpec(
    seed=2027,
    id_column="EventId",
    label_column="Label",
    weight_column="Weight",
    train=0.5,
    public_test=0.2,
    private_test=0.3,
    stratify="Label",
    reweight=True,
)


def run(path: Path, out: Path, spec: SplitSpec = SPEC) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 pd.DataFrame]:
    split_file(path, out / "public", out / "hidden", spec)
    return (
        pd.read_parquet(out / "public" / "train.parquet"),
        pd.read_parquet(out / "public" / "test.parquet"),
        pd.read_parquet(out / "hidden" / "solution.parquet"),
    )


def test_same_seed_gives_identical_bytes(tmp_path: Path, higgs_parquet: Path) -> None:
    split_file(higgs_parquet, tmp_path / "a" / "pub", tmp_path / "a" / "hid", SPEC)
    split_file(higgs_parquet, tmp_path / "b" / "pub", tmp_path / "b" / "hid", SPEC)
    for rel in ("pub/train.parquet", "pub/test.parquet", "hid/solution.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    other = dataclasses.replace(SPEC, seed=1)
    split_file(higgs_parquet, tmp_path / "c" / "pub", tmp_path / "c" / "hid", other)
    a = pd.read_parquet(tmp_path / "a" / "pub" / "train.parquet")["EventId"]
    c = pd.read_parquet(tmp_path / "c" / "pub" / "train.parquet")["EventId"]
    assert set(a) != set(c)


def test_assignment_ignores_row_order_and_format(tmp_path: Path, higgs_small: pd.DataFrame,
                                                 higgs_parquet: Path) -> None:
    train, test, sol = run(higgs_parquet, tmp_path / "p")
    shuffled = higgs_small.sample(frac=1.0, random_state=3)
    csv = tmp_path / "shuffled.csv"
    shuffled.to_csv(csv, index=False)
    train2, test2, sol2 = run(csv, tmp_path / "c")
    assert set(train["EventId"]) == set(train2["EventId"])
    # Test order is a keyed hash of the id and the solution is sorted by id: both independent
    # of the input order.
    assert list(test["EventId"]) == list(test2["EventId"])
    pd.testing.assert_frame_equal(sol[["EventId", "Label", "Usage"]],
                                  sol2[["EventId", "Label", "Usage"]])


def test_stratification_and_counts_are_exact(tmp_path: Path, higgs_small: pd.DataFrame,
                                             higgs_parquet: Path) -> None:
    train, _test, sol = run(higgs_parquet, tmp_path)
    n = len(higgs_small)
    assert (len(train), (sol["Usage"] == "Public").sum(), (sol["Usage"] == "Private").sum()) == (
        n * 5 // 10, n * 2 // 10, n * 3 // 10)
    n_s = (higgs_small["Label"] == "s").sum()
    # Per stratum, the counts are the apportioned ones: within one event of the exact share.
    assert abs((train["Label"] == "s").sum() - n_s * 0.5) <= 1
    pub = sol[sol["Usage"] == "Public"]
    assert abs((pub["Label"] == "s").sum() - n_s * 0.2) <= 1


def test_exact_integer_counts_leave_the_rest_unused(tmp_path: Path, higgs_parquet: Path) -> None:
    spec = dataclasses.replace(SPEC, train=1000, public_test=400, private_test=900)
    report = split_file(higgs_parquet, tmp_path / "pub", tmp_path / "hid", spec)
    assert report.subsets["train"].rows == 1000
    assert report.subsets["public_test"].rows == 400
    assert report.subsets["private_test"].rows == 900
    assert report.unused_rows == 3000 - 2300
    assert len(pd.read_parquet(tmp_path / "pub" / "test.parquet")) == 1300


def test_no_leakage_in_outputs(tmp_path: Path, higgs_small: pd.DataFrame,
                               higgs_parquet: Path) -> None:
    train, test, sol = run(higgs_parquet, tmp_path)
    assert "Label" not in test.columns
    assert "Weight" not in test.columns
    assert list(test.columns) == [c for c in higgs_small.columns if c not in ("Label", "Weight")]
    assert list(sol.columns) == ["EventId", "Label", "Weight", "Usage"]
    assert sol["EventId"].is_monotonic_increasing
    assert not set(train["EventId"]) & set(test["EventId"])
    assert set(test["EventId"]) == set(sol["EventId"])
    assert len(train) + len(test) == len(higgs_small)
    # The test file is shuffled: not in input (id) order.
    assert not test["EventId"].is_monotonic_increasing
    report = split_file(higgs_parquet, tmp_path / "again" / "p", tmp_path / "again" / "h", SPEC)
    assert report.ok
    assert {c.name for c in report.checks} >= {
        "no_id_in_two_subsets",
        "no_label_or_weight_in_public_test",
        "no_identical_feature_rows_across_train_and_test",
    }


def test_duplicated_feature_rows_are_reported(tmp_path: Path, higgs_small: pd.DataFrame) -> None:
    df = higgs_small.head(400).copy()
    dup = pd.concat([df, df.assign(EventId=df["EventId"] + 10_000)], ignore_index=True)
    report = split_dataframe(dup, tmp_path / "p", tmp_path / "h", SPEC)
    check = next(c for c in report.checks
                 if c.name == "no_identical_feature_rows_across_train_and_test")
    assert not check.passed
    assert "test rows" in check.detail
    assert not report.ok


def test_reweight_restores_full_totals_per_subset(tmp_path: Path, higgs_small: pd.DataFrame,
                                                  higgs_parquet: Path) -> None:
    train, _test, sol = run(higgs_parquet, tmp_path)
    totals = higgs_small.groupby("Label")["Weight"].sum()
    parts = {"train": train, "public": sol[sol["Usage"] == "Public"],
             "private": sol[sol["Usage"] == "Private"]}
    for name, part in parts.items():
        sums = part.groupby("Label")["Weight"].sum()
        np.testing.assert_allclose(sums.to_numpy(), totals.to_numpy(), rtol=1e-9, err_msg=name)


def test_without_reweight_weights_are_untouched(tmp_path: Path, higgs_small: pd.DataFrame,
                                                higgs_parquet: Path) -> None:
    spec = dataclasses.replace(SPEC, reweight=False)
    train, _test, _sol = run(higgs_parquet, tmp_path, spec)
    orig = higgs_small.set_index("EventId").loc[train["EventId"], "Weight"].to_numpy()
    np.testing.assert_array_equal(train["Weight"].to_numpy(), orig)


def test_grouped_split_keeps_groups_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_events = 60
    sizes = rng.integers(1, 30, n_events)
    hits = pd.DataFrame({
        "event_id": np.repeat(np.arange(n_events), sizes),
        "hit_id": np.concatenate([np.arange(1, s + 1) for s in sizes]),
        "x": rng.normal(size=sizes.sum()),
        "particle_id": rng.integers(0, 5, sizes.sum()),
    })
    spec = SplitSpec(seed=5, id_column="hit_id", label_column="particle_id", group="event_id",
                     train=30, public_test=10, private_test=20)
    report = split_dataframe(hits, tmp_path / "p", tmp_path / "h", spec)
    train = pd.read_parquet(tmp_path / "p" / "train.parquet")
    sol = pd.read_parquet(tmp_path / "h" / "solution.parquet")
    assert train["event_id"].nunique() == 30
    assert sol.groupby("event_id")["Usage"].nunique().max() == 1
    assert (sol["Usage"] == "Public").groupby(sol["event_id"]).first().sum() == 10
    assert not set(train["event_id"]) & set(sol["event_id"])
    assert report.subsets["train"].groups == 30
    assert report.ok


def test_progress_is_reported(tmp_path: Path, higgs_parquet: Path) -> None:
    seen: list[float] = []
    split_file(higgs_parquet, tmp_path / "p", tmp_path / "h", SPEC,
               progress=lambda f, _m: seen.append(f))
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"label_column": "label"}, r"label column 'label'.*Did you mean 'Label'"),
        ({"id_column": "Id"}, r"id column 'Id' is not in the file"),
        ({"weight_column": "KaggleWeight"}, r"weight column 'KaggleWeight'"),
        ({"train": 0.6}, r"add up to 1.1, not 1"),
        ({"train": 2000, "public_test": 1000, "private_test": 1000}, r"only 3000 rows"),
        ({"train": 10, "public_test": 0.2}, r"not a mix"),
        ({"group": "event"}, r"group column 'event'"),
    ],
)
def test_bad_spec_names_what_to_change(tmp_path: Path, higgs_parquet: Path,
                                       change: dict[str, object], match: str) -> None:
    spec = dataclasses.replace(SPEC, **change)  # type: ignore[arg-type]
    with pytest.raises(SplitError, match=match):
        split_file(higgs_parquet, tmp_path / "p", tmp_path / "h", spec)
    assert not (tmp_path / "p" / "train.parquet").exists()


def test_nan_label_names_the_row(tmp_path: Path, higgs_small: pd.DataFrame) -> None:
    df = higgs_small.head(100).copy()
    df.loc[41, "Label"] = None
    with pytest.raises(SplitError, match=r"'Label' is empty at row 42"):
        split_dataframe(df, tmp_path / "p", tmp_path / "h", SPEC)


def test_duplicated_ids_are_refused(tmp_path: Path, higgs_small: pd.DataFrame) -> None:
    df = higgs_small.head(100).copy()
    df.loc[50, "EventId"] = df.loc[10, "EventId"]
    path = tmp_path / "dup.csv"
    df.to_csv(path, index=False)
    with pytest.raises(SplitError, match=r"dup\.csv: duplicated id.*row 51.*100010"):
        split_file(path, tmp_path / "p", tmp_path / "h", SPEC)


def test_empty_group_is_refused(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": range(6), "g": ["a", "a", "", "b", "b", "c"], "y": [0, 1] * 3})
    spec = SplitSpec(seed=1, id_column="id", label_column="y", group="g")
    with pytest.raises(SplitError, match=r"group column 'g' is empty at row 3"):
        split_dataframe(df, tmp_path / "p", tmp_path / "h", spec)


def test_truncated_file_is_refused_and_nothing_written(tmp_path: Path,
                                                      higgs_parquet: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(higgs_parquet.read_bytes()[: 5000])
    with pytest.raises(SplitError, match=r"bad\.parquet.*corrupt"):
        split_file(bad, tmp_path / "p", tmp_path / "h", SPEC)
    assert not list((tmp_path).glob("p/*"))


def test_spec_from_bundle_mapping() -> None:
    spec = SplitSpec.from_dict({"seed": 2027, "id_column": "EventId", "label_column": "Label",
                                "train": 250000, "public_test": 100000, "private_test": 450000,
                                "stratify": "Label", "reweight": {"weight": "Weight",
                                                                  "by": "Label"}})
    assert spec.reweight
    assert spec.weight_column == "Weight"
    assert spec.reweight_by == "Label"
    with pytest.raises(SplitError, match="unknown option"):
        SplitSpec.from_dict({"seed": 1, "id_column": "a", "label_column": "b", "trian": 0.5})


def test_written_files_are_valid_parquet(tmp_path: Path, higgs_parquet: Path) -> None:
    run(higgs_parquet, tmp_path)
    for p in (tmp_path / "public" / "test.parquet", tmp_path / "hidden" / "solution.parquet"):
        assert pq.ParquetFile(p).metadata.num_rows == 1500
    assert not list(tmp_path.rglob("*.partial"))
    assert not list((tmp_path / "hidden").glob("podium-split-*"))


# ----------------------------------------------------------------------------- streaming


def test_csv_is_streamed_in_blocks_with_the_same_split(tmp_path: Path, higgs_small: pd.DataFrame,
                                                       higgs_parquet: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import splitter.formats

    # 64 KiB blocks: the 3000-row file is read in many record batches, in both passes.
    monkeypatch.setattr(splitter.formats, "_CSV_BLOCK", 1 << 16)
    csv = tmp_path / "higgs.csv"
    higgs_small.to_csv(csv, index=False)
    train, test, sol = run(csv, tmp_path / "c")
    train_p, test_p, sol_p = run(higgs_parquet, tmp_path / "p")
    pd.testing.assert_frame_equal(train, train_p)
    pd.testing.assert_frame_equal(test, test_p)
    pd.testing.assert_frame_equal(sol, sol_p)


def test_csv_value_of_another_type_in_a_later_block_names_column_and_line(
        tmp_path: Path, higgs_small: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import splitter.formats

    monkeypatch.setattr(splitter.formats, "_CSV_BLOCK", 1 << 16)
    df = higgs_small.astype({"PRI_met": object})
    df.loc[2500, "PRI_met"] = "high"
    csv = tmp_path / "bad.csv"
    df.to_csv(csv, index=False)
    with pytest.raises(SplitError, match=r"bad\.csv: column 'PRI_met'.*another type"):
        split_file(csv, tmp_path / "p", tmp_path / "h", SPEC)
    assert not list(tmp_path.glob("p/*.parquet"))


def test_group_mixing_strata_is_refused(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": range(6), "g": [1, 1, 2, 2, 3, 3], "y": [0, 0, 1, 0, 1, 1]})
    spec = SplitSpec(seed=1, id_column="id", label_column="y", group="g", stratify="y",
                     train=1, public_test=1, private_test=1)
    with pytest.raises(SplitError, match=r"group 2 mixes several values.*row 4"):
        split_dataframe(df, tmp_path / "p", tmp_path / "h", spec)


def test_duplicate_feature_rows_are_counted_exactly_on_large_inputs(tmp_path: Path) -> None:
    # Above 65536 rows the check first narrows both sides with a bit table: still exact.
    rng = np.random.default_rng(1)
    n = 80_000
    df = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n),
                       "y": rng.integers(0, 2, n)})
    df.loc[n - 50:, ["a", "b"]] = df.loc[: 49, ["a", "b"]].to_numpy()  # 50 copied rows
    report = split_dataframe(df, tmp_path / "p", tmp_path / "h",
                             SplitSpec(seed=4, id_column="id", label_column="y"))
    train = pd.read_parquet(tmp_path / "p" / "train.parquet")
    test = pd.read_parquet(tmp_path / "p" / "test.parquet")
    expected = int(test.merge(train[["a", "b"]], on=["a", "b"]).shape[0])
    assert expected > 0
    check = next(c for c in report.checks
                 if c.name == "no_identical_feature_rows_across_train_and_test")
    assert check.detail.startswith(f"{expected} test rows")
    ids = next(c for c in report.checks if c.name == "no_id_in_two_subsets")
    assert ids.passed


def test_a_regression_target_is_not_reported_class_by_class(tmp_path: Path) -> None:
    """2,304 dimuon-like candidates with a continuous target: the report counts its values
    instead of listing each one as a class; a real label still gets its classes."""
    rng = np.random.default_rng(3)
    n = 2304
    frame = pd.DataFrame({"row": np.arange(n), "x": rng.normal(size=n),
                          "mass": rng.normal(91.0, 3.0, n)})
    spec = SplitSpec(seed=1, id_column="row", label_column="mass", train=0.5,
                     public_test=0.2, private_test=0.3)
    report = split_dataframe(frame, tmp_path / "p", tmp_path / "h", spec)
    train = report.subsets["train"]
    assert train.class_counts == {}
    assert train.class_weights == {}
    assert train.label_values == train.rows  # every mass distinct
    assert sum(s.label_values for s in report.subsets.values()) == n
    frame["kind"] = np.where(frame["mass"] > 91.0, "s", "b")
    labelled = dataclasses.replace(spec, label_column="kind")
    report = split_dataframe(frame, tmp_path / "p2", tmp_path / "h2", labelled)
    assert set(report.subsets["train"].class_counts) == {"s", "b"}
    assert report.subsets["train"].label_values == 2


def test_id_and_group_naming_the_same_column_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"event": [1, 1, 2, 3], "x": [0.1, 0.2, 0.3, 0.4], "y": [0, 1, 0, 1]})
    spec = SplitSpec(seed=1, id_column="event", label_column="y", group="event", train=1,
                     public_test=1, private_test=1)
    with pytest.raises(SplitError, match="the id column and the group column are both 'event'"):
        split_dataframe(frame, tmp_path / "p", tmp_path / "h", spec)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_row_position_as_the_id(tmp_path: Path, suffix: str) -> None:
    """A dimuon file: 2,304 candidates from 500 events, the event number repeats and nothing but
    the target is unique. ``@row`` (the row's position in the file) is the id; events stay
    whole."""
    rng = np.random.default_rng(4)
    per_event = rng.integers(1, 9, 500)
    per_event[0] += 2304 - per_event.sum()
    per_event = np.abs(per_event)
    n = int(per_event.sum())
    frame = pd.DataFrame({"event": np.repeat(np.arange(500), per_event),
                          "pt": rng.exponential(20.0, n), "mass": rng.normal(91.0, 3.0, n)})
    path = tmp_path / f"dimuon{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    spec = SplitSpec(seed=3, id_column="@row", label_column="mass", group="event", train=0.5,
                     public_test=0.2, private_test=0.3)
    report = split_file(path, tmp_path / "p", tmp_path / "h", spec)
    assert report.ok
    train = pd.read_parquet(tmp_path / "p" / "train.parquet")
    test = pd.read_parquet(tmp_path / "p" / "test.parquet")
    sol = pd.read_parquet(tmp_path / "h" / "solution.parquet")
    assert len(train) + len(test) == n
    assert sorted([*train["@row"], *test["@row"]]) == list(range(n))
    # The number is the row's position in the file: the features there are the row's.
    assert np.allclose(frame["pt"].to_numpy()[test["@row"]], test["pt"].to_numpy())
    assert np.allclose(frame["mass"].to_numpy()[sol["@row"]], sol["mass"].to_numpy())
    assert not set(train["event"]) & set(test["event"])
    assert sol.groupby("event")["Usage"].nunique().max() == 1
