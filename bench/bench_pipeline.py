"""A HiggsML-size submission from HTTP upload to stored score, through the real pieces.

    python bench/bench_pipeline.py [--latency 60] [--throughput 60] [--redis redis://127.0.0.1:6379/14]

The app runs in this process over ASGI (Starlette's TestClient: real HTTP semantics, multipart,
token auth, no socket); uploads go to ``POST /api/challenges/{slug}/submissions``; the scoring
message goes through dramatiq on the real Redis (the given database is flushed first) to
``python -m dramatiq challenge.tasks`` worker processes, which grade in the sandbox and store the
result in a SQLite file. Each file has 550,000 rows (``EventId,RankOrder,Class``, 100,000 Public
/ 450,000 Private), like HiggsML's test set.

* latency: one worker process, uploads one at a time; time from the start of the POST until
  the row is ``scored`` in the database (polled every 5 ms); p50 / p99.
* latency to the interval too: the worker stores the score first and the bootstrap interval a
  moment later (``finished_at`` set); both are printed.
* throughput: two worker processes; all uploads sent back to back; submissions per second from
  the first POST until the last one has its interval stored (and, printed too, to the last
  score).
* CPU per submission in the throughput phase: this process (the app and the test client) and
  the worker processes with their zygotes and grading children (read from /proc).
* floor, same run: pyarrow CSV parse + AMS with one boolean mask, in this process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scoring import floor, write_files

ROWS = 550_000


def configure_environment(root: Path, redis_url: str) -> dict[str, str]:
    env = {
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "PODIUM_DATABASE_URL": f"sqlite:///{root / 'podium.db'}",
        "PODIUM_REDIS_URL": redis_url,
        "PODIUM_DATA_DIR": str(root / "data"),
        "PODIUM_LABEL_DIR": str(root / "labels"),
    }
    os.environ.update(env)
    return env


def make_challenge(root: Path, solution: Path, users: int) -> tuple[str, list[str]]:
    """A challenge whose hidden solution is the 550,000-row one; participants with API tokens."""
    from challenge import storage
    from challenge.accounts import create_api_token, create_user
    from challenge.bundle import parse_bundle
    from challenge.challenges import create_challenge, join_challenge, prepare_challenge
    from challenge.db import make_engine, migrate, session_scope
    from challenge.settings import load_settings
    from splitter.generate import generate_higgs

    settings = load_settings()
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    folder = root / "bundle"
    folder.mkdir()
    generate_higgs(2000, seed=1).to_csv(folder / "higgs.csv", index=False)
    now = dt.datetime.now(dt.UTC)
    (folder / "challenge.yaml").write_text(textwrap.dedent(f"""\
        slug: bench-higgs
        title: Pipeline benchmark
        summary: HiggsML-size submissions.
        description: Benchmark.
        dataset: higgs.csv
        license: CC-BY-4.0
        split: {{seed: 7, train: 0.5, public_test: 0.2, private_test: 0.3,
                stratify: Label, reweight: {{weight: Weight, by: Label}}}}
        submission: {{id: EventId, columns: {{RankOrder: rank, Class: {{values: [s, b]}}}}}}
        metric: {{name: ams, weight: Weight, label: Label, positive: s, b_reg: 10}}
        phases:
          - {{name: competition, opens: {now - dt.timedelta(days=1):%Y-%m-%dT%H:%MZ},
              closes: {now + dt.timedelta(days=1):%Y-%m-%dT%H:%MZ}}}
        limits: {{per_day: 1000, total: 10000, file_mb: 100}}
        """))
    with session_scope(engine) as session:
        challenge = create_challenge(session, bundle=parse_bundle(folder / "challenge.yaml"),
                                     creator=None)
        prepare_challenge(settings, challenge, folder / "higgs.csv")
        session.add(challenge)
    # The hub reads only this file when grading: swap in the HiggsML-size solution.
    storage.solution_path(settings, "bench-higgs").write_bytes(solution.read_bytes())
    tokens = []
    with session_scope(engine) as session:
        for i in range(users):
            user = create_user(session, username=f"bench{i}", email=f"bench{i}@example.org",
                               password="correct horse battery")  # noqa: S106 - bench accounts
            join_challenge(session, challenge=challenge, user=user)
            tokens.append(create_api_token(session, user=user, name="bench"))
    engine.dispose()
    return "bench-higgs", tokens


def start_workers(env: dict[str, str], processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "challenge.tasks", "--processes", str(processes),
         "--threads", "1", "--queues", "scoring"],
        # As `podium worker` starts them (challenge.cli.start_worker_process).
        env={"dramatiq_worker_timeout": "25", "dramatiq_queue_prefetch": "1", **os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Pipeline:
    def __init__(self, slug: str, tokens: list[str], body: bytes) -> None:
        import sqlalchemy as sa
        from starlette.testclient import TestClient

        from challenge.app import create_app
        from challenge.db import make_engine
        from challenge.settings import load_settings

        settings = load_settings()
        self.engine = make_engine(settings.database_url)
        self.client = TestClient(create_app(settings, self.engine))
        self.slug = slug
        self.tokens = tokens
        self.body = body
        self.sent = 0
        self._status = sa.text("SELECT status FROM submission WHERE id = :id")
        self._finished = sa.text("SELECT finished_at IS NOT NULL FROM submission WHERE id = :id")

    def upload(self) -> int:
        token = self.tokens[self.sent % len(self.tokens)]
        self.sent += 1
        r = self.client.post(
            f"/api/challenges/{self.slug}/submissions?filename=pred.csv",
            content=self.body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        )
        if r.status_code != 201:
            raise RuntimeError(f"upload refused: {r.status_code} {r.text[:300]}")
        return int(r.json()["id"])

    def status(self, submission_id: int) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(self._status, {"id": submission_id}).scalar_one())

    def wait(self, submission_id: int, timeout: float = 120.0) -> str:
        """Until the score is stored (the participant sees it; the interval may follow)."""
        deadline = time.perf_counter() + timeout
        while (status := self.status(submission_id)) in ("received", "scoring"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"submission {submission_id} still {status}")
            time.sleep(0.005)
        return status

    def wait_finished(self, submission_id: int, timeout: float = 120.0) -> None:
        """Until the job is over: the bootstrap interval stored too (``finished_at`` set)."""
        deadline = time.perf_counter() + timeout
        while True:
            with self.engine.connect() as conn:
                if conn.execute(self._finished, {"id": submission_id}).scalar_one():
                    return
            if time.perf_counter() > deadline:
                raise RuntimeError(f"submission {submission_id} has no interval yet")
            time.sleep(0.005)


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU of every process in a session, with their reaped children's.

    The worker processes, their sandbox zygotes and (reaped by the zygotes) every grading
    child: the worker side's whole CPU bill, read from /proc.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state(0) ppid pgrp session(3) ... utime(11) stime cutime cstime.
        if int(fields[3]) == session_id:
            total += sum(int(f) for f in fields[11:15])
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=int, default=60, help="sequential submissions")
    parser.add_argument("--throughput", type=int, default=60, help="back-to-back submissions")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = configure_environment(root, args.redis)
        solution, submission = write_files(root, ROWS)
        body = submission.read_bytes()
        users = max(1, (args.latency + args.throughput) // 10 + 1)  # the API allows 12/min each
        slug, tokens = make_challenge(root, solution, users)
        pipeline = Pipeline(slug, tokens, body)
        floors = [floor(solution, submission) for _ in range(10)]

        workers = start_workers(env, 1)
        try:
            pipeline.wait(pipeline.upload(), timeout=180)  # warm: worker start, zygote, cache
            latencies = []
            finished = []
            upload_times = []
            sequential_ids = []
            for _ in range(args.latency):
                started = time.perf_counter()
                sid = pipeline.upload()
                upload_times.append(time.perf_counter() - started)
                status = pipeline.wait(sid)
                latencies.append(time.perf_counter() - started)
                pipeline.wait_finished(sid)
                finished.append(time.perf_counter() - started)
                sequential_ids.append(sid)
                assert status == "scored", status
        finally:
            stop(workers)

        workers = start_workers(env, 2)
        try:
            for _ in range(2):
                pipeline.wait(pipeline.upload(), timeout=180)  # both processes warm
            time.sleep(1.0)
            worker_cpu = session_cpu_seconds(workers.pid)
            app_cpu = time.process_time()
            started = time.perf_counter()
            ids = [pipeline.upload() for _ in range(args.throughput)]
            uploaded = time.perf_counter() - started
            app_cpu = time.process_time() - app_cpu
            statuses = [pipeline.wait(i, timeout=600) for i in ids]
            scored = time.perf_counter() - started
            for i in ids:
                pipeline.wait_finished(i, timeout=600)
            elapsed = time.perf_counter() - started
            worker_cpu = session_cpu_seconds(workers.pid) - worker_cpu
            assert set(statuses) == {"scored"}, statuses
        finally:
            stop(workers)
        with pipeline.engine.connect() as conn:
            import sqlalchemy as sa

            rows = conn.execute(
                sa.text("SELECT id, duration_ms FROM submission WHERE status = 'scored'")
            ).all()
            grading = [float(d) for i, d in rows if i in set(sequential_ids) and d is not None]

    f50 = float(np.median(floors))
    p50, p99 = np.percentile(latencies, [50, 99])
    g50 = float(np.median(grading))
    u50 = float(np.median(upload_times)) * 1e3
    print(f"rows per submission: {ROWS:,}; file {len(body) / 1e6:.1f} MB; load {os.getloadavg()}")
    print(f"floor (pyarrow parse + AMS in process): p50 {f50 * 1e3:.1f} ms")
    print(f"upload -> score stored, 1 worker, {len(latencies)} sequential: p50 {p50 * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms, x{p50 / f50:.1f} the floor")
    i50, i99 = np.percentile(finished, [50, 99])
    print(f"upload -> interval stored too: p50 {i50 * 1e3:.1f} ms, p99 {i99 * 1e3:.1f} ms")
    print(f"of which: HTTP upload (201 received) p50 {u50:.1f} ms; sandbox grading "
          f"(duration_ms stored by the worker) p50 {g50:.1f} ms")
    print(
        f"throughput, 2 worker processes, {args.throughput} back to back: "
        f"{args.throughput / elapsed:.2f} submissions/s with their intervals "
        f"({args.throughput / scored:.2f}/s to the last score; uploads alone took "
        f"{uploaded:.1f} s)"
    )
    n = args.throughput
    print(
        f"CPU per submission: app + test client {app_cpu / n * 1e3:.1f} ms (this process, "
        f"during the uploads), workers + zygotes + grading children {worker_cpu / n * 1e3:.1f} ms "
        f"(/proc), total {(app_cpu + worker_cpu) / n * 1e3:.1f} ms; Redis and the kernel's "
        "writeback threads not counted"
    )


if __name__ == "__main__":
    main()
