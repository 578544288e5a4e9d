"""Organizer metric files: created from a bundle, stored with the challenge, read only inside the
grading jail; and the scoring worker's jail shows none of the demo folder it runs from."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from challenge import storage, tasks
from challenge.accounts import create_api_token
from challenge.bundle import BundleError, parse_bundle
from challenge.challenges import create_challenge, phases_of, prepare_challenge
from challenge.cli import EXIT_INVALID, main
from challenge.db import session_scope
from challenge.models import Challenge, Submission, User
from challenge.settings import Settings
from scoring.custom import load_source
from scoring.formats import SubmissionFormat
from scoring.grading import grade, load_solution
from scoring.metrics import MetricSpec
from tests.challenge.conftest import random_submission
from tests.challenge.stub_workers import JOIN_TIMEOUT_MS, stub_broker_and_worker
from tests.challenge.test_queue import joined, submit_frame

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scoring.md"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the full jail needs root")


def documented(marker: str) -> str:
    """The fenced block of docs/scoring.md whose first line is ``marker``."""
    text = DOCS.read_text()
    match = re.search(r"```\w+\n(" + re.escape(marker) + r"\n.*?)```", text, re.S)
    assert match is not None, f"docs/scoring.md has no block starting with {marker!r}"
    return match.group(1)


@pytest.fixture
def settings(settings_factory: Any, database_url: str, tmp_path: Path) -> Settings:
    """The demo's layout: data and labels under var/ of the folder the worker runs from."""
    s: Settings = settings_factory(
        database_url, data_dir=tmp_path / "var" / "data", label_dir=tmp_path / "var" / "labels"
    )
    return s


@pytest.fixture
def worker(app: Any) -> Iterator[Any]:
    with stub_broker_and_worker() as (broker, stub):

        class Drainer:
            def drain(self) -> None:
                broker.join("scoring", timeout=JOIN_TIMEOUT_MS, fail_fast=True)  # type: ignore[call-arg]
                stub.join()

        yield Drainer()
    if tasks._context is not None and tasks._context._pool is not None:
        tasks._context._pool.close()
        tasks._context._pool = None


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_DATA_DIR": str(settings.data_dir),
        "PODIUM_LABEL_DIR": str(settings.label_dir),
        "PODIUM_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def open_now(engine: sa.Engine, slug: str) -> Challenge:
    """Move the challenge's phase around now, so it takes submissions."""
    with session_scope(engine) as session:
        challenge = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        now = dt.datetime.now(dt.UTC)
        for phase in phases_of(session, challenge):
            phase.opens_at, phase.closes_at = now - dt.timedelta(days=1), now + dt.timedelta(days=9)
            session.add(phase)
        session.expunge(challenge)
    return challenge


def scored(engine: sa.Engine, sid: int) -> Submission:
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        return sub


def test_the_documented_python_metric_bundle_is_created_and_grades_as_written(
    app: Any,
    worker: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    cli_env: dict[str, str],
    higgs_csv: Path,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "challenge.yaml").write_text(documented("# challenge.yaml"))
    (folder / "metric.py").write_text(documented("# metric.py"))
    (folder / "higgs.csv").symlink_to(higgs_csv)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "challenge.cli",
            "challenge",
            "create",
            str(folder / "challenge.yaml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **cli_env},
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    challenge = open_now(engine, "weighted-accuracy")
    assert challenge.metric == {"name": "python", "file": "metric.py", "higher_is_better": True}
    stored = storage.metric_dir(settings, challenge.slug) / "metric.py"
    assert stored.read_text() == (folder / "metric.py").read_text()
    assert storage.solution_path(settings, challenge.slug).is_file()  # beside it, both kept
    test_file = storage.public_dir(settings, challenge.slug) / "test.parquet"
    assert not {"Label", "Weight"} & set(pd.read_parquet(test_file).columns)

    user = joined(engine, challenge, make_user("ann"))
    sid = submit_frame(
        settings, engine, challenge, user, random_submission(settings, challenge.slug)
    )
    tasks.score_submission.send(sid)
    worker.drain()
    sub = scored(engine, sid)
    assert sub.status == "scored", sub.error_detail
    # The same file graded in this process gives the same numbers.
    fmt = SubmissionFormat.from_dict(challenge.submission_format)
    metric = load_source(MetricSpec.from_dict(challenge.metric), stored.parent)
    reference = grade(
        Path(sub.stored_path),
        load_solution(storage.solution_path(settings, challenge.slug), fmt, metric),
        fmt,
        metric,
        bootstrap=0,
    )
    assert (sub.public_score, sub.private_score) == (reference.public, reference.private)
    assert 0 < (sub.public_score or 0) < 1


BUNDLE = """\
slug: {slug}
title: An organizer metric
dataset: higgs.csv
split: {{seed: 3, train: 0.5, public_test: 0.2, private_test: 0.3, label: Label}}
submission: {{id: EventId, columns: {{RankOrder: rank, Class: {{values: [s, b]}}}}}}
metric: {{name: python, file: {file}}}
phases:
  - {{name: competition, opens: 2026-01-01T00:00Z, closes: 2099-01-01T00:00Z}}
"""


def bundle_folder(tmp_path: Path, higgs_csv: Path, slug: str, file: str, body: str) -> Path:
    folder = tmp_path / f"bundle-{slug}"
    folder.mkdir()
    (folder / "higgs.csv").symlink_to(higgs_csv)
    (folder / "metric.py").write_text(body)
    (folder / "challenge.yaml").write_text(BUNDLE.format(slug=slug, file=file))
    return folder


@pytest.mark.parametrize(
    ("file", "hint"),
    [
        ("/etc/shadow", "is an absolute path"),
        ("../outside.py", "leaves the bundle's folder"),
        ("link.py", "leaves the bundle's folder"),
        ("missing.py", "not found next to the bundle"),
    ],
)
def test_a_metric_file_outside_the_bundle_is_refused_at_creation(
    file: str,
    hint: str,
    cli_env: dict[str, str],
    settings: Settings,
    higgs_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "outside.py").write_text("SECRET FIRST LINE\n")
    folder = bundle_folder(tmp_path, higgs_csv, "refused", file, "def score(a, b):\n    return 1\n")
    (folder / "link.py").symlink_to(tmp_path / "outside.py")
    assert main(["challenge", "create", str(folder / "challenge.yaml")]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "challenge.yaml line 6: metric.file:" in err
    assert hint in err
    assert "SECRET" not in err
    assert not storage.label_dir(settings, "refused").exists()


def test_the_label_column_is_asked_for_where_it_belongs(tmp_path: Path, higgs_csv: Path) -> None:
    folder = bundle_folder(tmp_path, higgs_csv, "no-label", "metric.py", "")
    text = (folder / "challenge.yaml").read_text().replace(", label: Label}", "}")
    (folder / "challenge.yaml").write_text(text)
    with pytest.raises(BundleError) as info:
        parse_bundle(folder / "challenge.yaml")
    assert "split: {..., label: Label}" in info.value.message


PROBE = """\
PATHS = {paths!r}

def score(solution, submission):
    outcomes = {{}}
    for path in PATHS:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            outcomes[path] = "read"
        except FileNotFoundError:
            outcomes[path] = "not found"
        except Exception as exc:
            outcomes[path] = type(exc).__name__
    visible = {{p: o for p, o in outcomes.items() if o != "not found"}}
    if visible:
        raise RuntimeError("VISIBLE: " + repr(visible))
    return 1.0
"""


@needs_root
@pytest.mark.parametrize("where", ["demo folder", "root"])
def test_the_worker_jail_shows_nothing_of_the_folder_it_runs_from(
    where: str,
    app: Any,
    worker: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    higgs_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = make_challenge("other-higgs")  # its solution lies in var/labels beside ours
    owner = make_user("olga", "organizer")
    with session_scope(engine) as session:
        admin = session.get(User, make_user("root-admin", "admin").id)
        assert admin is not None
        create_api_token(session, user=admin, name="ci")  # stored in the database
    tokens = tmp_path / "var" / "tokens.json"
    tokens.write_text('{"url": "http://demo", "token": "pdm_not_for_metrics"}')
    url = sa.engine.make_url(settings.database_url)
    database = Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
    if database is None:  # PostgreSQL: a demo database file stands in
        database = tmp_path / "var" / "podium.db"
        database.write_bytes(b"SQLite format 3\x00")
    secrets = [
        str(storage.solution_path(settings, other.slug)),
        str(storage.solution_path(settings, "probe")),  # even its own, at its host path
        str(database),
        str(tokens),
        "var/tokens.json",
        "/etc/shadow",
    ]
    folder = bundle_folder(tmp_path, higgs_csv, "probe", "metric.py", PROBE.format(paths=secrets))
    with session_scope(engine) as session:
        challenge = create_challenge(
            session,
            bundle=parse_bundle(folder / "challenge.yaml"),
            creator=owner,
            settings=settings,
        )
        prepare_challenge(settings, challenge, folder / "higgs.csv")
        session.add(challenge)
    assert all(Path(p).exists() for p in secrets[:4])  # there for the worker, not for the jail
    challenge = open_now(engine, "probe")
    user = joined(engine, challenge, make_user("ann"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, "probe"))
    # The zygote starts with the first job and inherits the worker's working directory.
    monkeypatch.chdir(tmp_path if where == "demo folder" else Path("/"))
    tasks.score_submission.send(sid)
    worker.drain()
    sub = scored(engine, sid)
    assert sub.status == "scored", sub.error_detail
    assert sub.public_score == 1.0


def test_a_metric_path_from_before_the_store_is_never_read_and_can_be_stored(
    app: Any,
    worker: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    higgs_csv: Path,
    tmp_path: Path,
    cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = "def score(solution, submission):\n    return 0.25\n"
    folder = bundle_folder(tmp_path, higgs_csv, "legacy", "metric.py", body)
    with session_scope(engine) as session:
        challenge = create_challenge(
            session,
            bundle=parse_bundle(folder / "challenge.yaml"),
            creator=None,
            settings=settings,
        )
        prepare_challenge(settings, challenge, folder / "higgs.csv")
        # What a challenge created before the store holds: an absolute path, read by the worker.
        secret = tmp_path / "secret.txt"
        secret.write_text("SECRET FIRST LINE\n")
        challenge.metric = {"name": "python", "file": str(secret)}
        session.add(challenge)
    challenge = open_now(engine, "legacy")
    user = joined(engine, challenge, make_user("ann"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, "legacy"))
    tasks.score_submission.send(sid)
    worker.drain()
    sub = scored(engine, sid)
    assert sub.status == "error"
    assert "podium challenge metric SLUG FILE" in (sub.error_detail or "")
    assert "SECRET" not in (sub.error_detail or "")

    fixed = tmp_path / "fixed.py"
    fixed.write_text(body)
    assert main(["challenge", "metric", "legacy", str(fixed)]) == 0
    assert "stored fixed.py as the metric file of legacy" in capsys.readouterr().out
    with Session(engine) as session:
        row = session.exec(select(Challenge).where(Challenge.slug == "legacy")).one()
        assert row.metric == {"name": "python", "file": "fixed.py"}
    assert (storage.metric_dir(settings, "legacy") / "fixed.py").read_text() == body
    again = submit_frame(settings, engine, challenge, user, random_submission(settings, "legacy"))
    tasks.score_submission.send(again)
    worker.drain()
    sub = scored(engine, again)
    assert sub.status == "scored", sub.error_detail
    assert sub.public_score == 0.25


def test_storing_a_metric_file_for_a_built_in_metric_is_refused(
    make_challenge: Any,
    cli_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_challenge("plain-higgs")
    (tmp_path / "m.py").write_text("def score(a, b):\n    return 1\n")
    assert main(["challenge", "metric", "plain-higgs", str(tmp_path / "m.py")]) == EXIT_INVALID
    assert "built-in metric 'ams'" in capsys.readouterr().err


def test_a_class_cloned_from_a_python_metric_challenge_grades_with_its_own_copy(
    app: Any,
    worker: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    higgs_csv: Path,
    tmp_path: Path,
) -> None:
    from challenge.teaching import create_class

    body = "def score(solution, submission):\n    return 0.5\n"
    folder = bundle_folder(tmp_path, higgs_csv, "finished", "metric.py", body)
    text = (folder / "challenge.yaml").read_text().replace("2099-01-01", "2026-01-02")
    (folder / "challenge.yaml").write_text(text)
    prof = make_user("prof", "organizer")
    with session_scope(engine) as session:
        source = create_challenge(
            session,
            bundle=parse_bundle(folder / "challenge.yaml"),
            creator=prof,
            settings=settings,
        )
        prepare_challenge(settings, source, folder / "higgs.csv")
        session.add(source)
    with session_scope(engine) as session:
        instructor = session.get(User, prof.id)
        assert instructor is not None
        now = dt.datetime.now(dt.UTC)
        create_class(
            session,
            settings,
            source_slug="finished",
            slug="metric-class",
            instructor=instructor,
            opens=now - dt.timedelta(hours=1),
            closes=now + dt.timedelta(days=9),
            seed=3,
            events=2000,
        )
    # The class has its own store: a later fix to the source's file does not change it.
    (storage.metric_dir(settings, "finished") / "metric.py").write_text("broken(\n")
    assert (storage.metric_dir(settings, "metric-class") / "metric.py").read_text() == body
    with Session(engine) as session:
        klass = session.exec(select(Challenge).where(Challenge.slug == "metric-class")).one()
    user = joined(engine, klass, make_user("ann"))
    sid = submit_frame(settings, engine, klass, user, random_submission(settings, klass.slug))
    tasks.score_submission.send(sid)
    worker.drain()
    sub = scored(engine, sid)
    assert sub.status == "scored", sub.error_detail
    assert sub.public_score == 0.5
