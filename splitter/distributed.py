"""The Dask engine: the same split on a ``dask.dataframe`` when one machine is not enough.

Assignment needs only the key columns (id, label, weight, stratum, group), which the workers
compute in parallel and send back (pass 1 keeps about 9 bytes a row of them). The partitions are
then computed one after the other, in order, and streamed through the same writers, so the outputs
are identical to :func:`splitter.split.split_file` on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from splitter.split import Progress, SplitReport, SplitSpec, split_source


class DaskSource:
    """A :class:`splitter.split.Source` backed by a dask dataframe."""

    def __init__(self, ddf: Any, name: str = "<dask dataframe>") -> None:
        self.ddf = ddf
        self.name = name
        schema = pa.Schema.from_pandas(ddf._meta, preserve_index=False)
        # Dask holds text as large_string; Parquet readers give string. Same values, but the
        # outputs must match the single-machine ones exactly, types included.
        self._schema = pa.schema([
            pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
            for f in schema
        ], metadata=schema.metadata)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def iter_batches(self, columns: list[str] | None = None,
                     categorical: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        if columns is not None:
            # Key columns: computed by the workers in parallel, gathered once.
            schema = pa.schema([self._schema.field(c) for c in columns])
            frame = self.ddf[columns].compute().reset_index(drop=True)
            yield from pa.Table.from_pandas(frame, schema=schema,
                                            preserve_index=False).to_batches()
            return
        for part in self.ddf.to_delayed():
            frame = part.compute()
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            yield from table.to_batches()


def split_dask(ddf: Any, public_dir: Path, hidden_dir: Path, spec: SplitSpec,
               progress: Progress | None = None, *, name: str = "<dask dataframe>"
               ) -> SplitReport:
    """Split a dask dataframe; outputs and report as :func:`splitter.split.split_file`."""
    return split_source(DaskSource(ddf, name), Path(public_dir), Path(hidden_dir), spec,
                        progress)
