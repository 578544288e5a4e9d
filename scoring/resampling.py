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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Bound on the number of drawn rows held in memory at once while resampling.
_CHUNK_DRAWS = 4_000_000


class Kernel:
    """A metric bound to its rows: gives the value and bootstrap replicates of it."""

    def value(self) -> float:
        """The metric on the rows as given."""
        raise NotImplementedError

    def resample(self, rng: np.random.Generator, n_resamples: int) -> FloatArray:
        """``n_resamples`` bootstrap replicates of :meth:`value`."""
        raise NotImplementedError


@dataclass
class SumKernel(Kernel):
    """Metric = ``finish(contributions.sum(axis=0))``; ``finish`` maps ``(B, k)`` to ``(B,)``."""

    contributions: FloatArray
    finish: Callable[[FloatArray], FloatArray]

    def value(self) -> float:
        sums = self.contributions.sum(axis=0, dtype=np.float64)[None, :]
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


@dataclass
class FrequencyKernel(Kernel):
    """Metric = ``compute(frequency)``, ``frequency`` a per-row multiplicity (``None`` = all 1)."""

    n_rows: int
    compute: Callable[[FloatArray | None], float]

    def value(self) -> float:
        return self.compute(None)

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
