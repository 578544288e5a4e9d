"""Truth-derived extra columns (HiggsML's KaggleSet/KaggleWeight) never reach the public test file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from splitter.generate import generate_higgs
from splitter.split import SplitError, SplitSpec, split_file


def test_hidden_columns_go_to_the_solution_only(tmp_path: Path) -> None:
    frame = generate_higgs(2000, seed=4)
    frame["KaggleWeight"] = frame["Weight"] * 2
    frame["KaggleSet"] = "t"
    src = tmp_path / "higgs.parquet"
    frame.to_parquet(src, index=False)
    spec = SplitSpec.from_dict({
        "seed": 1, "id_column": "EventId", "label_column": "Label", "weight_column": "Weight",
        "train": 0.5, "public_test": 0.2, "private_test": 0.3, "stratify": "Label",
        "hidden": ["KaggleWeight", "KaggleSet"],
    })
    split_file(src, tmp_path / "pub", tmp_path / "hid", spec)
    test_cols = pq.read_schema(tmp_path / "pub" / "test.parquet").names
    assert "KaggleWeight" not in test_cols
    assert "KaggleSet" not in test_cols
    solution = pd.read_parquet(tmp_path / "hid" / "solution.parquet")
    assert {"KaggleWeight", "KaggleSet", "Usage"} <= set(solution.columns)


def test_unknown_hidden_column_is_named(tmp_path: Path) -> None:
    src = tmp_path / "higgs.parquet"
    generate_higgs(200, seed=4).to_parquet(src, index=False)
    spec = SplitSpec(seed=1, id_column="EventId", label_column="Label", hidden=("KagleWeight",))
    with pytest.raises(SplitError, match="KagleWeight"):
        split_file(src, tmp_path / "pub", tmp_path / "hid", spec)
