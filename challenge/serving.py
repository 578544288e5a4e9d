"""Process-level settings for a long-running web worker (``podium serve`` and the benchmarks).

CPython's cyclic garbage collector walks every tracked object of a generation when it runs. A web
worker starts with a few hundred thousand long-lived objects (modules, SQLAlchemy metadata,
templates) and then allocates mostly short-lived ones per request; left at the defaults, the full
collections that the request churn triggers walk the start-up heap again and again, which showed
up as the slowest 1 % of thread pages (p99 ~140-180 ms against ~80-115 ms with this tuning in A/B
runs of bench/bench_forum.py at 32 connections; docs/benchmarks.md, Forum).

Not used by tests or short commands: freezing is for a process that serves until it is stopped.
"""

from __future__ import annotations

import gc

#: Allocations between young-generation collections (CPython's default is 700). Requests allocate
#: thousands of short-lived objects each; a larger young generation collects them in fewer passes.
YOUNG_THRESHOLD = 50_000


def tune_gc_for_serving() -> None:
    """Move the start-up heap out of the collector's sight and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
