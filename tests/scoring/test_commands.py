from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from scoring.commands import run_score_command
from scoring.metrics import UnknownMetric
from tests.scoring.conftest import HIGGS_FORMAT
from tests.scoring.test_grading import expected_ams

Files = Callable[..., tuple[Path, Path, pd.DataFrame, pd.DataFrame]]


def test_score_command_infers_the_format(higgs_files: Files) -> None:
    sub_path, sol_path, solution, submission = higgs_files(800)
    out = run_score_command("ams", sol_path, sub_path, {"b_reg": 10}, bootstrap=20)
    assert out["status"] == "scored", out
    assert out["metric"] == "ams"
    assert out["higher_is_better"] is True
    assert out["public"] == pytest.approx(expected_ams(solution, submission, "Public"), rel=1e-12)
    assert isinstance(out["public_ci"], list)
    same = run_score_command("ams", sol_path, sub_path, {}, format=HIGGS_FORMAT.to_dict(),
                             bootstrap=20)
    assert same["public"] == out["public"]


def test_score_command_refuses_unknown_metrics(higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(50)
    with pytest.raises(UnknownMetric, match="known metrics"):
        run_score_command("amz", sol_path, sub_path, {})


def test_score_command_runs_the_organizers_own_metric_file(
    higgs_files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_path, sol_path, _, _ = higgs_files(100)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metric.py").write_text("def score(solution, submission):\n    return 0.5\n")
    monkeypatch.chdir(tmp_path)  # a path relative to where the organizer runs the command
    out = run_score_command("python", sol_path, sub_path, {"file": "mine/metric.py"}, bootstrap=0)
    assert out["status"] == "scored", out
    assert (out["public"], out["private"]) == (0.5, 0.5)
    assert out["params"] == {"file": "mine/metric.py"}
