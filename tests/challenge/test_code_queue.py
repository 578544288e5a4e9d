"""Code runs on their own queue and worker pool, with real pieces: a Redis server of the test's
own, `python -m dramatiq` worker processes as `podium worker` starts them (a file-scoring pool and
a code-run pool), the real jail, SQLite and PostgreSQL.

A long code run in flight must not delay file scoring; a code worker killed mid-run loses
nothing: the reconciler sends the run again and it is stored exactly once.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from challenge import storage, tasks
from challenge.cli import CODE_QUEUES, FILE_QUEUES
from challenge.codabench import create_codabench_challenge, parse_codabench_bundle
from challenge.coderuns import run_code_submission
from challenge.db import session_scope
from challenge.models import Participation, Submission
from challenge.settings import Settings
from challenge.submissions import create_submission
from scoring.jail import host_capabilities
from tests.challenge.conftest import random_submission
from tests.challenge.test_queue import joined, submit_frame
from tests.challenge.test_queue_faults import OwnRedis, Workers, own_redis, sender  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not host_capabilities()["complete"],
        reason="code runs need the jail (root, bubblewrap, seccomp, cgroups)",
    ),
]
BUNDLES = Path(__file__).parents[1] / "bundles" / "codabench"
SLOW_MODEL = (BUNDLES / "code-task" / "starting_kit" / "model.py").read_text() + (
    "\n\nimport time\n_fit = Model.fit\n\n\ndef _slow_fit(self, X, y):\n"
    "    time.sleep(SLEEP)\n    _fit(self, X, y)\n\n\nModel.fit = _slow_fit\n"
)


class Pools(Workers):
    """The two pools `podium worker` starts: file scoring, and code runs."""

    def start_pool(self, queues: tuple[str, ...]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "challenge.tasks", "challenge.schedule",
             "challenge.coderuns", "--processes", "1", "--threads", "1", "--queues", *queues],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc


@pytest.fixture
def pools(settings: Settings, own_redis: OwnRedis, tmp_path: Path) -> Iterator[Pools]:  # noqa: F811
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    p = Pools(settings, own_redis.url, log_dir)
    yield p
    p.stop_all()


def code_upload(settings: Settings, engine: sa.Engine, slug: str, user: Any, sleep: float) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model.py", SLOW_MODEL.replace("SLEEP", repr(sleep)))
    path = storage.new_upload_path(settings, slug, "model.zip")
    path.write_bytes(buf.getvalue())
    with session_scope(engine) as session:
        from challenge.challenges import get_challenge_by_slug

        sub = create_submission(
            session, challenge=get_challenge_by_slug(session, slug), user=user, stored_path=path,
            filename="model.zip", size_bytes=path.stat().st_size, sha256="",
        )  # fmt: skip
        assert sub.id is not None
        return sub.id


def state(engine: sa.Engine, sid: int) -> tuple[str, int]:
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        return sub.status, sub.results_recorded


def wait_for(check: Any, pools: Pools, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n--- worker logs ---\n{pools.logs()}")
        time.sleep(0.1)


def test_a_long_code_run_does_not_delay_file_scoring_and_survives_its_worker(
    settings: Settings, engine: sa.Engine, make_challenge: Any, make_user: Any,
    own_redis: OwnRedis, pools: Pools, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    files = make_challenge(per_day=50, total=100)
    bundle = parse_codabench_bundle(BUNDLES / "code-task", tmp_path / "parse")
    with session_scope(engine) as session:
        code = create_codabench_challenge(session, settings=settings, bundle=bundle, creator=None)
    user = joined(engine, files, make_user("quinn"))
    joined(engine, code, user)
    with session_scope(engine) as session:  # the organizer approves (registration_auto_approve)
        session.execute(sa.update(Participation).values(status="approved"))
    send = sender(own_redis.url)
    pools.start_pool(FILE_QUEUES)
    code_pool = pools.start_pool(CODE_QUEUES)

    long_run = code_upload(settings, engine, code.slug, user, sleep=25.0)
    send(run_code_submission, long_run)
    wait_for(lambda: state(engine, long_run)[0] == "scoring", pools, "the code run to start")
    # File scoring goes on at its own pace while the code run is in flight.
    for seed in range(3):
        sid = submit_frame(
            settings, engine, files, user, random_submission(settings, files.slug, seed)
        )
        started = time.monotonic()
        send(tasks.score_submission, sid)
        wait_for(lambda sid=sid: state(engine, sid)[0] == "scored", pools, "a file score", 60)
        assert time.monotonic() - started < 15  # not behind a 25 s code run
    assert state(engine, long_run)[0] == "scoring"  # still in flight

    # Its worker dies mid-run: the reconciler (once the run's lease expired) sends it again.
    pools.kill(code_pool)
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(Submission.id == long_run)  # type: ignore[arg-type]
            .values(scoring_started_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
        )
    pools.start_pool(CODE_QUEUES)
    send(tasks.reconcile)
    wait_for(lambda: state(engine, long_run)[0] == "scored", pools, "the rerun's score", 240)
    status, recorded = state(engine, long_run)
    assert (status, recorded) == ("scored", 1)
    with Session(engine) as session:
        sub = session.get(Submission, long_run)
        assert sub is not None
        assert sub.attempts == 2
        assert set(sub.scores) == {"accuracy", "duration"}
