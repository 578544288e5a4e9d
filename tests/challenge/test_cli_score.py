"""`podium score` and `podium generate higgs`, driven through the real CLI entry point."""

from __future__ import annotations

import json
import math
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from challenge import storage
from challenge.cli import main
from tests.challenge.conftest import random_submission


def _ams(s: float, b: float, b_reg: float = 10.0) -> float:
    """AMS from DESIGN.md §6 in 50-digit decimals: (s+b+b_r)ln(1+s/(b+b_r)) - s cancels badly."""
    with localcontext() as ctx:
        ctx.prec = 50
        ds, db = Decimal(s), Decimal(b) + Decimal(b_reg)
        return float((2 * ((ds + db) * (1 + ds / db).ln() - ds)).sqrt())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_score_prints_json_matching_the_definition(
    make_challenge: Any, settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    challenge = make_challenge()
    solution = storage.solution_path(settings, challenge.slug)
    submission = random_submission(settings, challenge.slug, seed=5)
    sub_path = tmp_path / "pred.csv"
    submission.to_csv(sub_path, index=False)
    code = main([
        "score", "--metric", "ams", "--solution", str(solution), "--submission", str(sub_path),
        "--param", "weight=Weight", "--param", "label=Label", "--param", "positive=s",
        "--param", "prediction=Class",
    ])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    sol = pd.read_parquet(solution).merge(submission, on="EventId")
    for usage, key in (("Public", "public"), ("Private", "private")):
        part = sol[(sol["Usage"] == usage) & (sol["Class"] == "s")]
        s = math.fsum(part.loc[part["Label"] == "s", "Weight"])
        b = math.fsum(part.loc[part["Label"] == "b", "Weight"])
        assert out[key] == pytest.approx(_ams(s, b), rel=1e-12)


def test_generate_higgs_writes_the_2014_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.csv"
    assert main(["generate", "higgs", "--events", "500", "--seed", "3", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 500
    assert frame.columns[0] == "EventId"
    assert list(frame.columns[-2:]) == ["Weight", "Label"]
    assert sum(c.startswith("DER_") for c in frame.columns) == 13
    assert sum(c.startswith("PRI_") for c in frame.columns) == 17
    jetless = frame[frame["PRI_jet_num"] == 0]
    assert (jetless["PRI_jet_leading_pt"] == -999.0).all()
    again = tmp_path / "h2.csv"
    main(["generate", "higgs", "--events", "500", "--seed", "3", "--out", str(again)])
    assert out.read_bytes() == again.read_bytes()
