"""Fixtures for the hub: a HiggsML-like challenge on a fresh database, the app, a stub worker."""

from __future__ import annotations

import datetime as dt
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from challenge import tasks
from challenge.accounts import create_user
from challenge.app import create_app
from challenge.bundle import parse_bundle
from challenge.challenges import create_challenge, prepare_challenge
from challenge.db import make_engine, session_scope
from challenge.models import Challenge, User
from challenge.settings import Settings
from splitter.generate import generate_higgs
from tests.challenge.stub_workers import JOIN_TIMEOUT_MS, stub_broker_and_worker

PASSWORD = "correct horse battery"


def bundle_text(slug: str, opens: dt.datetime, closes: dt.datetime, **limits: int) -> str:
    lim = {"per_day": 3, "total": 10, "file_mb": 5, **limits}
    lim_text = ", ".join(f"{k}: {v}" for k, v in lim.items())
    return textwrap.dedent(f"""\
        slug: {slug}
        title: Test HiggsML
        summary: A small HiggsML-like challenge for the tests.
        description: Separate signal from background.
        dataset: higgs.csv
        license: CC-BY-4.0
        split: {{seed: 7, train: 0.5, public_test: 0.2, private_test: 0.3,
                stratify: Label, reweight: {{weight: Weight, by: Label}}}}
        submission: {{id: EventId, columns: {{RankOrder: rank, Class: {{values: [s, b]}}}}}}
        metric: {{name: ams, weight: Weight, label: Label, positive: s, b_reg: 10}}
        phases:
          - {{name: competition, opens: {opens:%Y-%m-%dT%H:%MZ}, closes: {closes:%Y-%m-%dT%H:%MZ}}}
        limits: {{{lim_text}}}
        """)


@pytest.fixture(scope="session")
def higgs_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("higgs") / "higgs.csv"
    generate_higgs(3000, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def higgs_csv_for(higgs_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The data of a test challenge: ``test-higgs`` gets ``higgs_csv``, any other slug events of
    its own (seeded by the slug), so two challenges of one test share no row (the holdout ledger
    refuses a challenge whose training rows another running challenge hides)."""
    made: dict[str, Path] = {"test-higgs": higgs_csv}

    def data(slug: str) -> Path:
        if slug not in made:
            path = tmp_path_factory.mktemp("higgs") / f"{slug}.csv"
            generate_higgs(3000, seed=zlib.crc32(slug.encode())).to_csv(path, index=False)
            made[slug] = path
        return made[slug]

    return data


@pytest.fixture
def settings(settings_factory: Any, database_url: str) -> Settings:
    s: Settings = settings_factory(database_url)
    return s


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_challenge(
    settings: Settings, engine: sa.Engine, higgs_csv_for: Any, tmp_path: Path
) -> Any:
    def make(
        slug: str = "test-higgs",
        opens_days: float = -1,
        closes_days: float = 10,
        owner: User | None = None,
        **limits: int,
    ) -> Challenge:
        now = dt.datetime.now(dt.UTC)
        folder = tmp_path / f"bundle-{slug}"
        folder.mkdir()
        (folder / "higgs.csv").symlink_to(higgs_csv_for(slug))
        (folder / "challenge.yaml").write_text(
            bundle_text(
                slug,
                now + dt.timedelta(days=opens_days),
                now + dt.timedelta(days=closes_days),
                **limits,
            )
        )
        with session_scope(engine) as session:
            challenge = create_challenge(
                session, bundle=parse_bundle(folder / "challenge.yaml"), creator=owner
            )
            prepare_challenge(settings, challenge, folder / "higgs.csv", session=session)
            session.add(challenge)
        return challenge

    return make


@pytest.fixture
def app(settings: Settings, engine: sa.Engine) -> Any:
    tasks.configure(settings, engine)
    return create_app(settings, engine)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def stub_worker() -> Iterator[Any]:
    """Run queued actors on dramatiq's StubBroker; call .drain() to process everything sent."""
    with stub_broker_and_worker() as (broker, worker):

        class Drainer:
            def drain(self) -> None:
                broker.join("scoring", timeout=JOIN_TIMEOUT_MS, fail_fast=True)  # type: ignore[call-arg]
                worker.join()

        yield Drainer()
    if tasks._context is not None and tasks._context._pool is not None:
        tasks._context._pool.close()
        tasks._context._pool = None


@pytest.fixture
def make_user(engine: sa.Engine) -> Any:
    def make(name: str, role: str = "participant") -> User:
        with session_scope(engine) as session:
            return create_user(
                session, username=name, email=f"{name}@example.org", password=PASSWORD, role=role
            )

    return make


def login(client: TestClient, name: str) -> None:
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/login",
        data={"login": name, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def perfect_submission(settings: Settings, slug: str) -> pd.DataFrame:
    """Predictions that rank true signal first (read from the solution, as only a test may)."""
    from challenge import storage

    sol = pd.read_parquet(storage.solution_path(settings, slug))
    test = pd.read_parquet(storage.public_dir(settings, slug) / "test.parquet", columns=["EventId"])
    merged = test.merge(sol, on="EventId")
    score = (merged["Label"] == "s").astype(float)
    ranks = score.rank(method="first").astype(int)
    return pd.DataFrame(
        {"EventId": merged["EventId"], "RankOrder": ranks, "Class": merged["Label"]}
    )


def random_submission(settings: Settings, slug: str, seed: int = 0) -> pd.DataFrame:
    import numpy as np

    from challenge import storage

    test = pd.read_parquet(storage.public_dir(settings, slug) / "test.parquet", columns=["EventId"])
    rng = np.random.default_rng(seed)
    n = len(test)
    return pd.DataFrame(
        {
            "EventId": test["EventId"],
            "RankOrder": rng.permutation(n) + 1,
            "Class": np.where(rng.random(n) < 0.3, "s", "b"),
        }
    )
