"""Small HiggsML-like solution and submission files for the scoring tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.formats import SubmissionFormat
from scoring.metrics import MetricSpec

HIGGS_FORMAT = SubmissionFormat.from_dict(
    {"id": "EventId", "columns": {"RankOrder": "rank", "Class": {"values": ["s", "b"]}}}
)
AMS = MetricSpec.from_dict(
    {"name": "ams", "weight": "Weight", "label": "Label", "positive": "s", "b_reg": 10}
)


def make_higgs(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A solution (EventId, Label, Weight, Usage) and a matching, shuffled submission."""
    rng = np.random.default_rng(seed)
    ids = np.arange(100_000, 100_000 + n)
    label = np.where(rng.random(n) < 0.35, "s", "b")
    weight = np.where(label == "s", rng.uniform(0.001, 0.01, n), rng.uniform(0.5, 3.0, n))
    usage = np.where(rng.random(n) < 0.3, "Public", "Private")
    solution = pd.DataFrame({"EventId": ids, "Label": label, "Weight": weight, "Usage": usage})
    score = (label == "s") + rng.normal(0, 0.9, n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(score, kind="stable")] = np.arange(1, n + 1)
    klass = np.where(rank > 0.8 * n, "s", "b")
    perm = rng.permutation(n)
    submission = pd.DataFrame(
        {"EventId": ids[perm], "RankOrder": rank[perm], "Class": klass[perm]}
    )
    return solution, submission


@pytest.fixture
def higgs_files(tmp_path: Path) -> Callable[..., tuple[Path, Path, pd.DataFrame, pd.DataFrame]]:
    """Write a solution Parquet and a submission CSV; return paths and frames."""

    def write(n: int = 2000, seed: int = 0) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
        solution, submission = make_higgs(n, seed)
        sol_path = tmp_path / f"solution-{seed}.parquet"
        sub_path = tmp_path / f"submission-{seed}.csv"
        solution.to_parquet(sol_path)
        submission.to_csv(sub_path, index=False)
        return sub_path, sol_path, solution, submission

    return write
