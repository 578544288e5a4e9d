"""A fresh StubBroker and worker per test.

dramatiq's StubBroker counts a message as unfinished from the moment it is queued until a consumer
acks it. A worker stopped at the end of one test can have taken a message (a follow-up job sent
while it shut down) that it never acks, and ``StubBroker.flush`` cannot account for it: with one
broker for the whole test process, the next test's ``broker.join`` then waited forever (seen as an
intermittent hang of test_flow under ``pytest -n 2``). Each test therefore gets its own broker,
with every actor moved onto it, and the previous broker back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq

from challenge.broker import make_broker, use_broker

#: How long a test waits for a queue to drain before failing (instead of hanging the suite).
JOIN_TIMEOUT_MS = 120_000


@contextmanager
def stub_broker_and_worker() -> Iterator[tuple[dramatiq.Broker, dramatiq.Worker]]:
    broker = make_broker("stub://")
    old = use_broker(broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield broker, worker
    finally:
        worker.stop()
        use_broker(old)
        broker.close()
