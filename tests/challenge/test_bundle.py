"""Bundle mistakes are reported with the file, the YAML line and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from challenge.bundle import BundleError, parse_bundle_text

GOOD = """\
slug: my-higgs
title: My HiggsML
dataset: higgs.csv
split: {seed: 1, train: 0.5, public_test: 0.2, private_test: 0.3, stratify: Label}
submission: {id: EventId, columns: {RankOrder: rank, Class: {values: [s, b]}}}
metric: {name: ams, weight: Weight, label: Label, positive: s}
phases:
  - {name: competition, opens: 2027-04-01T00:00Z, closes: 2027-06-30T23:59Z}
limits: {per_day: 5}
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "higgs.csv").write_text("EventId,Label\n1,s\n")
    return tmp_path


def test_good_bundle(base: Path) -> None:
    bundle = parse_bundle_text(GOOD, base_dir=base)
    assert bundle.slug == "my-higgs"
    assert bundle.limits["per_day"] == 5
    assert bundle.limits["total"] == 300  # defaults fill the rest
    assert bundle.phases[0].opens.tzinfo is not None


@pytest.mark.parametrize(
    ("old", "new", "line", "hint"),
    [
        ("slug: my-higgs", "slug: My Higgs!", 1, "e.g. 'my-higgs'"),
        ("closes: 2027-06-30T23:59Z", "closes: 2027-03-30T23:59Z", 8, "closes must be after opens"),
        ("opens: 2027-04-01T00:00Z", "opens: 2027-04-01T00:00", 8, "add a timezone"),
        ("private_test: 0.3", "private_test: 0.4", 4, "add up to 1.1"),
        ("limits: {per_day: 5}", "limits: {per_day: 0}", 9, "whole number of at least 1"),
        ("limits: {per_day: 5}", "limits: {per_hour: 5}", 9, "unknown limit"),
        ("dataset: higgs.csv", "dataset: missing.csv", 3, "not found next to the bundle"),
        ("title: My HiggsML", "title: My HiggsML\ncolour: blue", 3, "unknown key"),
    ],
)
def test_errors_point_at_the_line(base: Path, old: str, new: str, line: int, hint: str) -> None:
    with pytest.raises(BundleError) as info:
        parse_bundle_text(GOOD.replace(old, new), base_dir=base)
    assert f"challenge.yaml line {line}:" in info.value.message
    assert hint in info.value.message


def test_broken_yaml_names_the_line(base: Path) -> None:
    with pytest.raises(BundleError) as info:
        parse_bundle_text(GOOD.replace("title: My HiggsML", "title: [unclosed"), base_dir=base)
    assert "line" in info.value.message
    assert "not valid YAML" in info.value.message
