"""The Dask engine gives exactly the single-machine split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask.dataframe as dd
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from splitter.distributed import split_dask
from splitter.split import SplitSpec, split_file


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_dask_matches_single_machine(tmp_path: Path, higgs_parquet: Path,
                                     client: Client) -> None:
    spec = SplitSpec(seed=99, id_column="EventId", label_column="Label", weight_column="Weight",
                     stratify="Label", reweight=True, train=0.6, public_test=0.1,
                     private_test=0.3)
    single = split_file(higgs_parquet, tmp_path / "s" / "pub", tmp_path / "s" / "hid", spec)
    ddf = dd.read_parquet(higgs_parquet, split_row_groups=True)
    assert ddf.npartitions > 1
    dist = split_dask(ddf, tmp_path / "d" / "pub", tmp_path / "d" / "hid", spec)
    for rel in ("pub/train.parquet", "pub/test.parquet", "hid/solution.parquet"):
        a = pq.read_table(tmp_path / "s" / rel)
        b = pq.read_table(tmp_path / "d" / rel)
        assert a.schema.remove_metadata() == b.schema.remove_metadata()
        assert a.equals(b), rel
    assert single.to_dict()["subsets"] == dist.to_dict()["subsets"]
    assert dist.ok
