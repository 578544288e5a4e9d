"""Shared fixtures for the splitter tests: small generated HiggsML-like tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from splitter.generate import generate_higgs


@pytest.fixture(scope="session")
def higgs_small() -> pd.DataFrame:
    """3000 generated events (fast to make; enough for stratification and weights)."""
    return generate_higgs(3000, seed=7)


@pytest.fixture
def higgs_parquet(tmp_path: Path, higgs_small: pd.DataFrame) -> Path:
    """The small events as a Parquet file with several row groups (exercises streaming)."""
    path = tmp_path / "higgs.parquet"
    higgs_small.to_parquet(path, row_group_size=700)
    return path
