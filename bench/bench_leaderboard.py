"""Leaderboard load benchmark: the public board of a phase with 10,000 teams and 200,000 submissions.

Target (issue 5): the paginated public page (100 rows) serves at least 60% of the requests per
second of a bare Starlette endpoint that renders the same 100-row table (same templates) from a
Python list, measured in the same run with the same uvicorn settings; p99 under 100 ms at 64
concurrent connections.

    python bench/bench_leaderboard.py [--db sqlite|postgresql] [--seconds 10] [--workers 2]

Seeds a fresh SQLite file (or PostgreSQL schema) with bulk inserts, fills the materialized board
with ``rebuild_boards`` (set-based: the same per-team choice the scorer makes; timed), checks a
sample of rows against a brute-force recomputation, checks that the pages served (cached) list
exactly the teams a brute-force query ranks there, measures the in-process CPU cost per request
(bare render; podium cache hit; podium cache miss, i.e. the page rendered from the database),
then starts uvicorn for each app in turn, same settings (``--workers``, uvloop and httptools
when installed, as ``podium serve``), and drives it with wrk (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

PG_URL = os.environ.get(
    "PODIUM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEAMS, SUBMISSIONS = 10_000, 200_000
SLUG = "bench-board"
METRIC = {"name": "ams", "weight": "Weight", "label": "Label", "positive": "s", "b_reg": 10}


def make_podium_app() -> object:
    """uvicorn factory: the real site, with ``podium serve``'s process settings."""
    from challenge.app import create_app
    from challenge.serving import tune_gc_for_serving
    from challenge.settings import load_settings

    app = create_app(load_settings())
    tune_gc_for_serving()
    return app


def make_bare_app() -> object:
    """uvicorn factory: one Starlette endpoint rendering the same page from a Python list."""
    from markupsafe import Markup
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from challenge.leaderboard import BoardPage, Entry
    from challenge.models import Challenge, Phase
    from challenge.settings import load_settings
    from challenge.web import make_templates

    env = make_templates()
    template = env.get_template("challenge/leaderboard.html")
    body = env.get_template("challenge/_leaderboard_body.html")
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(1)
    entries = []
    for i in range(100):
        score = 3.5 - i * 0.001
        entries.append(
            Entry(
                i + 1,
                i + 1,
                f"team-{i:05d}",
                score,
                score - 0.1,
                score + 0.1,
                i + 1,
                now,
                rng.randint(1, 40),
                tied_with_above=i > 0,
            )
        )
    challenge = Challenge(id=1, slug=SLUG, title="Leaderboard benchmark", metric=METRIC)
    phase = Phase(id=1, challenge_id=1, name="competition", opens_at=now)
    context = {
        "challenge": challenge,
        "phase": phase,
        "phases": [phase],
        "board": "public",
        "private_ok": False,
        "higher_is_better": True,
        "result": BoardPage(entries, TEAMS, 1, TEAMS // 100),
        "my_team_id": None,
        "phase_state": "open",
        "ladder": False,
        "settings": load_settings(),
        "user": None,
        "csrf": Markup(""),
        "csrf_value": "",
        "flashes": [],
    }

    def board(request: Any) -> HTMLResponse:
        # The same templates the site uses (page, body, table), rendered afresh from the list on
        # every request.
        html = Markup(body.render(**context))  # noqa: S704 - autoescaped template output
        return HTMLResponse(template.render(request=request, body_html=html, **context))

    app = Starlette(routes=[Route("/lb", board, methods=["GET"])])
    from challenge.serving import tune_gc_for_serving

    tune_gc_for_serving()  # the same process settings as the podium app
    return app


def seed(url: str) -> float:
    """Insert the users, teams and submissions; build the board. Returns the rebuild seconds."""
    from sqlmodel import Session

    from challenge.db import make_engine, migrate
    from challenge.leaderboard import rebuild_boards
    from challenge.models import Challenge, Phase

    migrate(url)
    engine = make_engine(url)
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(2027)
    meta = sa.MetaData()
    meta.reflect(engine, only=["user", "team", "team_member", "submission"])
    with Session(engine) as session:
        challenge = Challenge(
            slug=SLUG,
            title="Leaderboard benchmark",
            metric=METRIC,
            state="ready",
            limits={"per_day": 5, "total": 300},
        )
        session.add(challenge)
        session.flush()
        assert challenge.id is not None
        phase = Phase(
            challenge_id=challenge.id,
            name="competition",
            opens_at=now - dt.timedelta(days=40),
            closes_at=now + dt.timedelta(days=40),
        )
        session.add(phase)
        session.commit()
        cid, pid = challenge.id, phase.id
    with engine.begin() as conn:
        conn.execute(meta.tables["user"].insert(), [
            {"id": i, "username": f"user{i:05d}", "email": f"user{i}@bench.invalid",
             "password_hash": "x", "role": "participant", "is_active": True, "created_at": now}
            for i in range(1, TEAMS + 1)
        ])  # fmt: skip
        conn.execute(meta.tables["team"].insert(), [
            {"id": i, "challenge_id": cid, "name": f"team-{i:05d}", "created_at": now,
             "submission_counter": 0, "disqualified_reason": ""}
            for i in range(1, TEAMS + 1)
        ])  # fmt: skip
        conn.execute(meta.tables["team_member"].insert(), [
            {"team_id": i, "challenge_id": cid, "user_id": i, "joined_at": now}
            for i in range(1, TEAMS + 1)
        ])  # fmt: skip
        rows = []
        for n in range(SUBMISSIONS):
            team = rng.randint(1, TEAMS)
            score = rng.gauss(3.0, 0.3)
            rows.append(
                {
                    "challenge_id": cid,
                    "phase_id": pid,
                    "user_id": team,
                    "team_id": team,
                    "filename": "p.csv",
                    "stored_path": "unused",
                    "size_bytes": 1,
                    "sha256": "",
                    "message": "",
                    "status": "scored",
                    "public_score": score,
                    "private_score": score + rng.gauss(0, 0.05),
                    "public_ci_low": score - 0.1,
                    "public_ci_high": score + 0.1,
                    "error_message": "",
                    "error_detail": "",
                    "attempts": 1,
                    "is_late": False,
                    "is_final": False,
                    "baseline_label": "",
                    "created_at": now - dt.timedelta(seconds=SUBMISSIONS - n),
                }
            )
            if len(rows) == 20_000:
                conn.execute(meta.tables["submission"].insert(), rows)
                rows = []
    started = time.perf_counter()
    with Session(engine) as session:
        challenge = session.get(Challenge, cid)
        assert challenge is not None
        built = rebuild_boards(session, challenge)
        session.commit()
    rebuild = time.perf_counter() - started
    with engine.connect() as conn:  # brute force: the best score of a few teams
        for team in rng.sample(range(1, TEAMS + 1), 20):
            best = conn.execute(
                sa.text("SELECT max(public_score) FROM submission WHERE team_id = :t"), {"t": team}
            ).scalar()
            shown = conn.execute(
                sa.text("SELECT score FROM board_entry WHERE team_id = :t"), {"t": team}
            ).scalar()
            assert best == shown, (team, best, shown)
    print(f"board rows: {built} (teams with a score)")
    engine.dispose()
    return rebuild


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, *, seconds: int, connections: int) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors for {url}:\n{out}")
    result = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        result[f"p{pct}"] = float(m.group(1)) * UNITS[m.group(2)]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    return result


def serve(factory: str, port: int, env: dict[str, str], workers: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return proc


def check_served_page(base: str, path: str, url: str, page: int) -> None:
    """The page served lists exactly the teams a brute-force ranking puts on that page."""
    html = httpx.get(base + path).text
    served = [int(t) for t in re.findall(r'<tr data-team="(\d+)"', html)]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        expected = [
            int(t)
            for (t,) in conn.execute(
                sa.text(
                    "SELECT team_id FROM submission GROUP BY team_id "
                    "ORDER BY max(public_score) DESC, team_id LIMIT 100 OFFSET :o"
                ),
                {"o": (page - 1) * 100},
            )
        ]
    engine.dispose()
    assert served == expected, f"{path}: served rows differ from the brute-force ranking"


def cpu_per_request(factory: Any, path: str, n: int, *, miss: bool = False) -> float:
    """In-process CPU milliseconds per request through the whole ASGI app (thread pool too).

    ``miss``: empty the board cache before each request, so the page is built from the database.
    """
    import asyncio

    app = factory()
    p, _, q = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": p, "raw_path": p.encode(), "query_string": q.encode(),
        "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def run() -> float:
        for i in range(n + 20):
            if i == 20:
                started = time.process_time()
            if miss and hasattr(app, "state"):
                app.state.board_cache = None
            await app({**scope, "state": {}}, receive, send)
        return (time.process_time() - started) * 1000 / n

    return asyncio.run(run())


writer_count = [0]


def keep_scoring(url: str, per_second: float, stop: threading.Event) -> None:
    """Store a new best score for a random team every 1/per_second s, as the scorer does."""
    from sqlmodel import Session

    from challenge.db import make_engine
    from challenge.leaderboard import record_score_on_board

    engine = make_engine(url)
    rng = random.Random(5)
    while not stop.wait(1 / per_second):
        with Session(engine) as session:
            team = rng.randint(1, TEAMS)
            sub_id = session.execute(
                sa.text("SELECT min(id) FROM submission WHERE team_id = :t"), {"t": team}
            ).scalar()
            if sub_id is None:
                continue
            session.execute(
                sa.text("UPDATE submission SET public_score = :s WHERE id = :i"),
                {"s": 3.0 + rng.random() * 2, "i": sub_id},
            )
            record_score_on_board(session, int(sub_id))
            session.commit()
            writer_count[0] += 1
    engine.dispose()


def server_settings() -> str:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop={loop}, http={http}"


def wait_ready(url: str) -> None:
    for _ in range(150):
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not answer at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (podium serve's)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--scores-per-second",
        type=float,
        default=10,
        help="also measure page 1 while this many scores arrive (0: skip)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-lb-"))
    schema = f"bench_lb_{uuid.uuid4().hex[:8]}"
    if args.db == "postgresql":
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    env = {**os.environ, "PODIUM_DATABASE_URL": url, "PODIUM_REDIS_URL": "stub://",
           "PODIUM_ENV": "test", "PODIUM_SECRET_KEY": "bench-secret-" + "x" * 40,
           "PODIUM_DATA_DIR": str(tmp / "data")}  # fmt: skip
    os.environ.update({k: env[k] for k in ("PODIUM_REDIS_URL", "PODIUM_ENV")})
    results: dict[str, dict[str, float]] = {}
    try:
        started = time.perf_counter()
        rebuild = seed(url)
        print(
            f"seeded {TEAMS} teams / {SUBMISSIONS} submissions in "
            f"{time.perf_counter() - started:.1f}s; rebuild_boards {rebuild:.1f}s ({args.db})"
        )
        os.environ.update(env)
        pages = [f"/c/{SLUG}/leaderboard", f"/c/{SLUG}/leaderboard?page=73"]
        cpu = {
            "bare render": cpu_per_request(make_bare_app, "/lb", 300),
            "podium page 1, cache hit": cpu_per_request(make_podium_app, pages[0], 300),
            "podium page 73, cache hit": cpu_per_request(make_podium_app, pages[1], 300),
            "podium page 1, cache miss": cpu_per_request(make_podium_app, pages[0], 100, miss=True),
            "podium page 73, cache miss": cpu_per_request(
                make_podium_app, pages[1], 100, miss=True
            ),
        }
        print("\nin-process CPU per request (ms; ratio to the bare render):")
        for label, ms in cpu.items():
            print(f"  {label:30s} {ms:7.3f}  {ms / cpu['bare render']:5.2f}")
        print(
            f"\nuvicorn: {args.workers} worker(s), {server_settings()}, wrk -t2 -c{args.connections}"
        )
        runs = [
            (
                "bare Starlette, same table from a list",
                "bench.bench_leaderboard:make_bare_app",
                ["/lb"],
            ),
            (
                "podium public board",
                "bench.bench_leaderboard:make_podium_app",
                pages,
            ),
        ]
        for label, factory, paths in runs:
            port = 18000 + random.Random().randint(0, 999)
            proc = serve(factory, port, env, args.workers)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_ready(base + paths[0])
                page = httpx.get(base + paths[0]).text
                assert page.count("<tr") >= 101, "the page must show 100 rows"
                if label.startswith("podium"):
                    check_served_page(base, paths[0], url, 1)
                    check_served_page(base, paths[1], url, 73)
                for path in paths:
                    run_wrk(base + path, seconds=2, connections=args.connections)  # warm-up
                    results[f"{label} {path}"] = run_wrk(
                        base + path, seconds=args.seconds, connections=args.connections
                    )
                if label.startswith("podium") and args.scores_per_second > 0:
                    # The same page while scores keep arriving: each one changes the board, so
                    # every worker renders page 1 afresh after each score (cache misses).
                    stop = threading.Event()
                    writer = threading.Thread(
                        target=keep_scoring, args=(url, args.scores_per_second, stop)
                    )
                    writer.start()
                    try:
                        key = f"{label} {paths[0]} ({args.scores_per_second} scores/s)"
                        results[key] = run_wrk(
                            base + paths[0], seconds=args.seconds, connections=args.connections
                        )
                    finally:
                        stop.set()
                        writer.join()
                    results[key]["scores"] = float(writer_count[0])
            finally:
                proc.terminate()
                proc.wait(10)
    finally:
        if args.db == "postgresql":
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'run':60s} {'req/s':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}")
    for label, r in results.items():
        print(f"{label:60s} {r['rps']:8.0f} {r['p50']:8.1f} {r['p90']:8.1f} {r['p99']:8.1f}")
        if "scores" in r:
            print(f"{'':60s} ({r['scores']:.0f} scores stored during the run)")
    bare = next(r for k, r in results.items() if k.startswith("bare"))
    print("\nissue 5 targets: >= 0.60 x bare req/s, and p99 < 100 ms at 64 connections")
    for label, r in results.items():
        if label.startswith("podium"):
            ratio = r["rps"] / bare["rps"]
            print(
                f"  {label}: {ratio:.2f} x bare req/s "
                f"[{'met' if ratio >= 0.6 else 'MISSED'}], p99 {r['p99']:.1f} ms "
                f"[{'met' if r['p99'] < 100 else 'MISSED'}]"
            )
    print(f"  (bare endpoint itself: p99 {bare['p99']:.1f} ms; load average {os.getloadavg()})")


if __name__ == "__main__":
    main()
