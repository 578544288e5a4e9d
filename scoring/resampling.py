"""Bootstrap resampling of metric values, vectorized over resamples.

A metric reduces a table of aligned rows to one number. Two shapes cover the registry:

* :class:`SumKernel` — the metric is a function of column sums of per-row contributions
  (AMS: weighted signal and background among selected rows; accuracy: weighted correct and total).
  A bootstrap resample of ``n`` rows drawn with replacement only changes those sums, and rows whose
  contributions are all zero never change them. So each resample draws how many of its ``n`` rows
  land on the non-zero rows (a binomial), then which ones (uniform integers), and adds them up with
  one ``bincount`` per contribution column: the exact multinomial bootstrap at the cost of the
  non-zero rows only.
* :class:`FrequencyKernel` — anything else (ROC AUC): the metric is recomputed with each row's
  weight multiplied by how many times the resample drew it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Bound on the number of drawn rows held in memory at once while resampling. Small enough
#: that the index and value buffers (3 MiB) are reused from chunk to chunk and stay in cache:
#: in a freshly forked sandbox child every newly touched page is a page fault, and 4 M-draw
#: chunks cost ~5,000 more of them per submission (same draws, same result).
_CHUNK_DRAWS = 1 << 18
#: Independent random streams a cell bootstrap is cut into (fixed: results must not depend on
#: the machine), and the work above which two of them run on two threads.
_STREAMS = 2
_THREADED_DRAWS = 2_000_000


class Kernel:
    """A metric bound to its rows: gives the value and bootstrap replicates of it."""

    def value(self) -> float:
        """The metric on the rows as given."""
        raise NotImplementedError

    def resample(self, rng: np.random.Generator, n_resamples: int) -> FloatArray:
        """``n_resamples`` bootstrap replicates of :meth:`value`."""
        raise NotImplementedError

    def weighted(self, frequency: FloatArray) -> float:
        """The metric with row ``i`` counted ``frequency[i]`` times (for paired resampling)."""
        raise NotImplementedError


@dataclass
class SumKernel(Kernel):
    """Metric = ``finish(contributions.sum(axis=0))``; ``finish`` maps ``(B, k)`` to ``(B,)``."""

    contributions: FloatArray
    finish: Callable[[FloatArray], FloatArray]

    def value(self) -> float:
        sums = self.contributions.sum(axis=0, dtype=np.float64)[None, :]
        return float(self.finish(sums)[0])

    def weighted(self, frequency: FloatArray) -> float:
        sums = (self.contributions * frequency[:, None]).sum(axis=0)[None, :]
        return float(self.finish(sums)[0])

    def resample(self, rng: np.random.Generator, n_resamples: int) -> FloatArray:
        n, k = self.contributions.shape
        if n == 0 or n_resamples <= 0:
            return np.full(max(n_resamples, 0), np.nan)
        support = np.flatnonzero(np.any(self.contributions != 0, axis=1))
        active = self.contributions[support]
        sums = np.zeros((n_resamples, k))
        if len(support) > 0:
            hits = rng.binomial(n, len(support) / n, size=n_resamples)
            start = 0
            while start < n_resamples:
                # Group resamples so that one chunk holds at most _CHUNK_DRAWS drawn rows.
                cum = np.cumsum(hits[start:])
                stop = start + max(1, int(np.searchsorted(cum, _CHUNK_DRAWS, side="right")))
                counts = hits[start:stop]
                draws = rng.integers(0, len(support), size=int(counts.sum()))
                labels = np.repeat(np.arange(stop - start), counts)
                for j in range(k):
                    sums[start:stop, j] = np.bincount(
                        labels, weights=active[draws, j], minlength=stop - start
                    )
                start = stop
        return self.finish(sums)


def _segment_sums(values: FloatArray, counts: NDArray[np.int64]) -> FloatArray:
    """Sums of consecutive segments of ``values`` with lengths ``counts`` (zero-length -> 0)."""
    out = np.zeros(len(counts))
    nonempty = counts > 0
    if values.size and nonempty.any():
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out[nonempty] = np.add.reduceat(values, offsets[nonempty])
    return out


@dataclass
class CellKernel(Kernel):
    """Metric = ``finish(sums)`` where each row adds its ``value`` to one cell (or none, ``-1``).

    Confusion-matrix metrics (cells = true class x predicted class, value = weight) and AMS
    (cells = selected signal / selected background) have this shape. Resampling first splits
    each resample's ``n`` draws among the cells (one multinomial over cells), then draws rows
    within each cell and sums their values segment by segment: exact, and the random draws
    fall only on rows that count.
    """

    cells: NDArray[np.int64]
    values: FloatArray
    n_cells: int
    finish: Callable[[FloatArray], FloatArray]

    def _by_cell(self) -> list[FloatArray]:
        # Row order within a cell matters (the draws index into it); a mask per cell keeps it
        # and, for the few cells metrics have, costs less than one stable argsort of all rows.
        if self.n_cells <= 16:
            return [self.values[self.cells == c] for c in range(self.n_cells)]
        order = np.argsort(self.cells, kind="stable")
        sorted_cells = self.cells[order]
        bounds = np.searchsorted(sorted_cells, np.arange(-1, self.n_cells + 1))
        return [
            self.values[order[bounds[c + 1] : bounds[c + 2]]] for c in range(self.n_cells)
        ]

    def value(self) -> float:
        used = self.cells >= 0
        sums = np.bincount(self.cells[used], weights=self.values[used], minlength=self.n_cells)
        return float(self.finish(sums[None, :].astype(np.float64))[0])

    def weighted(self, frequency: FloatArray) -> float:
        used = self.cells >= 0
        sums = np.bincount(
            self.cells[used], weights=(self.values * frequency)[used], minlength=self.n_cells
        )
        return float(self.finish(sums[None, :].astype(np.float64))[0])

    def resample(self, rng: np.random.Generator, n_resamples: int) -> FloatArray:
        n = len(self.cells)
        if n == 0 or n_resamples <= 0:
            return np.full(max(n_resamples, 0), np.nan)
        groups = self._by_cell()
        sizes = np.array([len(g) for g in groups] + [n - sum(len(g) for g in groups)])
        sums = np.zeros((n_resamples, self.n_cells))
        # The resamples are cut into a fixed number of blocks, each with its own random stream,
        # so the result does not depend on how many threads ran them; the blocks run on two
        # threads when there is enough work (numpy draws and gathers without the GIL).
        bounds = np.linspace(0, n_resamples, _STREAMS + 1).astype(int)
        streams = rng.spawn(_STREAMS)
        jobs = [
            (streams[i], sums[bounds[i] : bounds[i + 1]])
            for i in range(_STREAMS)
            if bounds[i + 1] > bounds[i]
        ]

        def run(stream: np.random.Generator, out: FloatArray) -> None:
            self._resample_block(stream, groups, sizes, out)

        expected_draws = n_resamples * int(sizes[:-1].sum())
        if expected_draws >= _THREADED_DRAWS and len(jobs) > 1:
            helper = threading.Thread(target=run, args=jobs[1], daemon=True)
            helper.start()
            run(*jobs[0])
            helper.join()
            for job in jobs[2:]:
                run(*job)
        else:
            for job in jobs:
                run(*job)
        return self.finish(sums)

    def _resample_block(
        self,
        rng: np.random.Generator,
        groups: list[FloatArray],
        sizes: NDArray[np.int64],
        sums: FloatArray,
    ) -> None:
        """Fill ``sums`` (resamples x cells) with the cell sums of ``len(sums)`` resamples."""
        n = len(self.cells)
        n_resamples = len(sums)
        # How many of each resample's n draws land in each cell (last column: rows in no cell).
        per_cell = rng.multinomial(n, sizes / n, size=n_resamples)
        for c, group in enumerate(groups):
            counts = per_cell[:, c].astype(np.int64)
            if group.size == 0 or counts.sum() == 0:
                continue
            index_type = np.int32 if group.size < 2**31 else np.int64
            start = 0
            while start < n_resamples:
                cum = np.cumsum(counts[start:])
                stop = start + max(1, int(np.searchsorted(cum, _CHUNK_DRAWS, side="right")))
                part = counts[start:stop]
                draws = rng.integers(0, group.size, size=int(part.sum()), dtype=index_type)
                sums[start:stop, c] = _segment_sums(group[draws], part)
                start = stop


@dataclass
class FrequencyKernel(Kernel):
    """Metric = ``compute(frequency)``, ``frequency`` a per-row multiplicity (``None`` = all 1)."""

    n_rows: int
    compute: Callable[[FloatArray | None], float]

    def value(self) -> float:
        return self.compute(None)

    def weighted(self, frequency: FloatArray) -> float:
        return self.compute(frequency)

    def resample(self, rng: np.random.Generator, n_resamples: int) -> FloatArray:
        out = np.empty(max(n_resamples, 0))
        if self.n_rows == 0:
            out.fill(np.nan)
            return out
        for b in range(n_resamples):
            draws = rng.integers(0, self.n_rows, size=self.n_rows)
            freq = np.bincount(draws, minlength=self.n_rows).astype(np.float64)
            out[b] = self.compute(freq)
        return out


def percentile_interval(replicates: FloatArray, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile bootstrap interval; ``None`` when there are no finite replicates."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
