"""Codabench bundles as Podium challenges (challenge/codabench.py, challenge/coderuns.py).

The bundles under tests/bundles/codabench are written as a Codabench organizer writes them: a
results task (scoring program only) and a code task (ingestion and scoring programs).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlmodel import select
from starlette.testclient import TestClient

from challenge import storage, tasks
from challenge.broker import make_broker, use_broker
from challenge.bundle import BundleError
from challenge.codabench import (
    build_environment,
    column_scores,
    create_codabench_challenge,
    parse_codabench_bundle,
    safe_extract,
)
from challenge.db import session_scope
from challenge.models import Challenge, Participation, Phase, Submission
from challenge.settings import Settings
from scoring.jail import host_capabilities
from tests.challenge.conftest import csrf_of, login
from tests.challenge.stub_workers import JOIN_TIMEOUT_MS, stub_broker_and_worker

BUNDLES = Path(__file__).parents[1] / "bundles" / "codabench"
GOOD_MODEL = (BUNDLES / "code-task" / "starting_kit" / "model.py").read_text()
BROKEN_MODEL = (
    "class Model:\n    def fit(self, X, y):\n        raise ValueError('my model is broken')\n"
)

needs_jail = pytest.mark.skipif(
    os.geteuid() != 0 or not host_capabilities()["complete"],
    reason="code runs need the jail (root, bubblewrap, seccomp, cgroups)",
)


def copy_bundle(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(BUNDLES / name, target)
    return target


def edit_yaml(bundle: Path, old: str, new: str) -> None:
    path = bundle / "competition.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder))
    return target


def model_zip(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model.py", code)
    return buf.getvalue()


# ---------------------------------------------------------------- reading a bundle


def test_results_bundle_maps_onto_a_challenge(tmp_path: Path) -> None:
    bundle = parse_codabench_bundle(BUNDLES / "results-task", tmp_path)
    assert bundle.slug == "tau-or-not-tau-results"
    assert bundle.title == "Tau or not tau (results)"
    assert "## Overview" in bundle.description_md
    assert "## Terms" in bundle.description_md
    assert bundle.requires_approval is False
    assert [c["key"] for c in bundle.columns] == ["accuracy", "efficiency"]
    assert bundle.ranking == "accuracy"
    assert bundle.higher_is_better is True
    assert bundle.limits == {"per_day": 5, "total": 50}
    assert bundle.phases[0]["budget"]["wall_seconds"] == 120
    assert bundle.detailed_results is True
    assert any(
        n.startswith("docker_image: codalab/codalab-legacy:py3 is not run") for n in bundle.notes
    )


def test_code_bundle_from_a_zip(tmp_path: Path) -> None:
    archive = zip_folder(BUNDLES / "code-task", tmp_path / "code-task.zip")
    bundle = parse_codabench_bundle(archive, tmp_path / "work")
    assert [p["name"] for p in bundle.phases] == ["Feedback", "Final"]
    assert bundle.phases[1]["closes"] is None
    assert bundle.requires_approval is True
    assert bundle.ranking == "accuracy"
    assert {c["key"]: c["sorting"] for c in bundle.columns} == {
        "accuracy": "desc", "duration": "asc",
    }  # fmt: skip
    assert "ingestion_program" in bundle.tasks[0]
    assert "starting_kit-Feedback" in bundle.publish


REFUSALS = [
    ("version: 2\n", "version: 2\nqueue: my-gpu-queue\n", "queue: not supported by Podium"),
    ("version: 2\n", "version: 2\nfact_sheet: {}\n", "fact_sheet: not supported"),
    ("version: 2\n", "version: 2\nsecret_sauce: 1\n", "secret_sauce: not a Codabench v2 key"),
    ("version: 2\n", "version: 1.5\n", "version: Podium reads Codabench v2"),
    ("submission_rule: Force_Best", "submission_rule: Force_Last",
     "leaderboards.0.submission_rule: 'Force_Last' is not supported"),
    ("    name: Classify events\n", "    name: Classify events\n    key: 6a9c-uuid\n",
     "tasks.0.key: not supported by Podium"),
    ("    execution_time_limit: 120\n",
     "    execution_time_limit: 120\n    auto_migrate_to_this_phase: True\n",
     "phases.0.auto_migrate_to_this_phase: not supported"),
    ("        precision: 4\n", "        precision: 4\n        computation: median\n",
     "leaderboards.0.columns.0.computation: use one of"),
    ("enable_detailed_results: True\n",
     "enable_detailed_results: True\nshow_detailed_results_in_leaderboard: True\n",
     "show_detailed_results_in_leaderboard: not supported by Podium"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), REFUSALS)
def test_what_podium_does_not_do_is_refused_by_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    bundle = copy_bundle(tmp_path, "results-task")
    edit_yaml(bundle, old, new)
    with pytest.raises(BundleError, match=r"competition\.yaml line [0-9]+: ") as info:
        parse_codabench_bundle(bundle, tmp_path / "work")
    assert message in str(info.value)


def test_a_program_without_command_fails_creation(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path, "code-task")
    (bundle / "ingestion_program" / "metadata.yaml").write_text("description: run me\n")
    with pytest.raises(BundleError, match=r"tasks\.0\.ingestion_program: metadata\.yaml has no"):
        parse_codabench_bundle(bundle, tmp_path / "work")


def test_a_zip_slipping_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(BundleError, match="points outside the archive"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_computed_columns() -> None:
    columns = [
        {"key": "a", "index": 0}, {"key": "b", "index": 1},
        {"key": "mean", "index": 2, "computation": "avg", "computation_indexes": [0, 1]},
    ]  # fmt: skip
    assert column_scores(columns, {"a": 1.0, "b": 3.0, "junk": 9.0}) == {
        "a": 1.0, "b": 3.0, "mean": 2.0,
    }  # fmt: skip


# ---------------------------------------------------------------- environment


def tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel, so that building an environment needs no network in the test."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tinyhep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tinyhep/__init__.py", "VALUE = 42\n")
        zf.writestr("tinyhep-1.0.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: tinyhep\nVersion: 1.0\n")  # fmt: skip
        wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        zf.writestr("tinyhep-1.0.dist-info/WHEEL", wheel)
        zf.writestr("tinyhep-1.0.dist-info/RECORD", "")
    return path


def test_environment_is_built_once_and_frozen(tmp_path: Path, settings_factory: Any) -> None:
    settings: Settings = settings_factory("sqlite://", code_pip_args="--no-index")
    wheel = tiny_wheel(tmp_path / "bundle" / "wheels")
    requirements = tmp_path / "bundle" / "requirements.txt"
    requirements.write_text(f"./wheels/{wheel.name}\n")
    env = build_environment(settings, "env-test", requirements)
    prefix = Path(env["prefix"])
    assert "tinyhep @ file:" in env["frozen"]  # the exact wheel, pinned by hash
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import tinyhep; print(tinyhep.VALUE)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "42"
    site = next(prefix.glob("lib/python*/site-packages"))
    assert not os.stat(site).st_mode & 0o222  # frozen: no one adds a package


def test_environment_offline_gives_a_clear_error(tmp_path: Path, settings_factory: Any) -> None:
    settings: Settings = settings_factory("sqlite://", code_pip_args="--no-index")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("surely-not-a-package-podium==9.9\n")
    with pytest.raises(BundleError, match="requirements: could not build the Python environment"):
        build_environment(settings, "env-test", requirements)


# ---------------------------------------------------------------- one command


def test_challenge_create_takes_a_codabench_zip(
    settings: Settings, tmp_path: Path, engine: sa.Engine
) -> None:
    archive = zip_folder(BUNDLES / "code-task", tmp_path / "code-task.zip")
    env = {
        **os.environ,
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_DATA_DIR": str(settings.data_dir),
        "PODIUM_LABEL_DIR": str(settings.label_dir),
        "PODIUM_REDIS_URL": "stub://",
    }
    done = subprocess.run(
        [sys.executable, "-m", "challenge.cli", "challenge", "create", str(archive)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["slug"] == "uncertain-higgs-code"
    assert out["columns"] == ["accuracy", "duration"]
    assert "registration_auto_approve" not in done.stderr  # it is given in this bundle
    with session_scope(engine) as session:
        row = session.exec(select(Challenge).where(Challenge.slug == out["slug"])).one()
        assert (row.kind, row.state) == ("codabench", "ready")
        phases = session.exec(select(Phase).where(Phase.challenge_id == row.id)).all()
        assert [p.budget["wall_seconds"] for p in phases] == [300.0, 600.0]
    reference = storage.label_dir(settings, out["slug"]) / "codabench" / "tasks" / "0"
    assert (reference / "reference_data" / "test_labels.csv").is_file()
    public = storage.public_dir(settings, out["slug"])
    assert (public / "starting_kit-Feedback.zip").is_file()
    assert (public / "logo.png").is_file()
    assert not any("label" in p.name for p in public.rglob("*"))  # hidden data stays hidden
    again = subprocess.run(
        [sys.executable, "-m", "challenge.cli", "challenge", "create", str(archive)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode != 0
    assert "exists" in again.stderr


# ---------------------------------------------------------------- code submissions


@pytest.fixture
def code_challenge(settings: Settings, engine: sa.Engine, tmp_path: Path) -> Challenge:
    bundle = parse_codabench_bundle(BUNDLES / "code-task", tmp_path / "parse")
    with session_scope(engine) as session:
        return create_codabench_challenge(session, settings=settings, bundle=bundle, creator=None)


@pytest.fixture
def code_worker() -> Iterator[Any]:
    with stub_broker_and_worker() as (broker, worker):

        class Drainer:
            def drain(self) -> None:
                for queue in ("scoring", "code"):
                    broker.join(queue, timeout=JOIN_TIMEOUT_MS, fail_fast=True)  # type: ignore[call-arg]
                worker.join()

        yield Drainer()


def join_approved(client: TestClient, engine: sa.Engine, slug: str, name: str) -> None:
    login(client, name)
    r = client.post(f"/c/{slug}/join", data={"csrf_token": csrf_of(client, f"/c/{slug}"),
                                             "accept": "yes"}, follow_redirects=False)  # fmt: skip
    assert r.status_code in (200, 303), r.text
    with session_scope(engine) as session:  # the organizer approves (registration_auto_approve)
        session.execute(sa.update(Participation).values(status="approved"))


def upload(client: TestClient, slug: str, data: bytes, name: str = "model.zip") -> int:
    r = client.post(
        f"/c/{slug}/submit",
        data={"csrf_token": csrf_of(client, f"/c/{slug}")},
        files={"file": (name, data, "application/zip")},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@needs_jail
def test_model_zip_uploaded_in_the_browser_is_scored_into_the_columns(
    client: TestClient, engine: sa.Engine, settings: Settings, code_challenge: Challenge,
    code_worker: Any, make_user: Any,
) -> None:  # fmt: skip
    make_user("ana")
    make_user("bob")
    slug = code_challenge.slug
    join_approved(client, engine, slug, "ana")
    good = upload(client, slug, model_zip(GOOD_MODEL))
    broken = upload(client, slug, model_zip(BROKEN_MODEL))
    code_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Submission, good)
        assert row is not None
        assert row.status == "scored", (row.error_message, row.error_detail)
        assert set(row.scores) == {"accuracy", "duration"}
        assert row.public_score == row.scores["accuracy"] > 0.9
        assert row.results_recorded == 1
        assert row.run_log["usage"]["ingestion"]["cpu_seconds"] > 0
        failed = session.get(Submission, broken)
        assert failed is not None
        assert failed.status == "error"
        assert "ValueError: my model is broken" in failed.run_log["stderr"]
    # The author sees the scores, the run output and the traceback …
    rows = client.get(f"/c/{slug}/submissions").text
    assert f'data-testid="scores-{good}"' in rows
    assert "Accuracy: " in rows
    assert "ValueError: my model is broken" in rows
    api = client.get(f"/api/submissions/{broken}").json()
    assert "ValueError: my model is broken" in api["log"]["stderr"]
    board = client.get(f"/api/challenges/{slug}/leaderboard").json()
    assert board["ranking"] == "accuracy"
    assert [c["key"] for c in board["columns"]] == ["accuracy", "duration"]
    assert set(board["entries"][0]["scores"]) == {"accuracy", "duration"}
    page = client.get(f"/c/{slug}/leaderboard").text  # the board shows every column
    assert "<th>Predict time (s)</th>" in page
    assert 'data-column="duration"' in page
    # … nobody else does.
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "bob")
    assert client.get(f"/api/submissions/{broken}").status_code == 404
    assert "my model is broken" not in client.get(f"/c/{slug}/submissions").text
    assert client.get(f"/submissions/{good}/detailed").status_code == 404


@needs_jail
def test_detailed_results_are_served_under_a_csp_sandbox(
    client: TestClient, engine: sa.Engine, settings: Settings, tmp_path: Path,
    code_worker: Any, make_user: Any,
) -> None:  # fmt: skip
    bundle = parse_codabench_bundle(BUNDLES / "results-task", tmp_path / "parse")
    with session_scope(engine) as session:
        challenge = create_codabench_challenge(
            session, settings=settings, bundle=bundle, creator=None
        )
    make_user("ana")
    join_approved(client, engine, challenge.slug, "ana")
    labels = (BUNDLES / "results-task" / "reference_data" / "labels.csv").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("predictions.csv", labels)
    sub_id = upload(client, challenge.slug, buf.getvalue(), "results.zip")
    missing = upload(client, challenge.slug, model_zip("nothing here"), "empty.zip")
    code_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Submission, sub_id)
        assert row is not None
        assert (row.status, row.scores) == ("scored", {"accuracy": 1.0, "efficiency": 1.0})
        bad = session.get(Submission, missing)
        assert bad is not None
        assert bad.status == "invalid"  # a results file the scoring program rejects: no quota
        assert "predictions.csv is missing" in bad.error_detail  # organizers read the log
        assert "predictions.csv is missing" not in bad.error_message
    page = client.get(f"/submissions/{sub_id}/detailed")
    assert page.status_code == 200
    assert "40 of 40 correct" in page.text
    csp = page.headers["content-security-policy"]
    assert csp.startswith("sandbox;")
    assert "allow-scripts" not in csp
    assert "allow-same-origin" not in csp


@needs_jail
def test_reconciler_sends_lost_code_runs_to_the_code_queue(
    engine: sa.Engine, settings: Settings, code_challenge: Challenge, client: TestClient,
    code_worker: Any, make_user: Any,
) -> None:  # fmt: skip
    make_user("ana")
    join_approved(client, engine, code_challenge.slug, "ana")
    lost = make_broker("stub://")  # a broker no worker reads: the message is lost with it
    previous = use_broker(lost)
    try:
        sub_id = upload(client, code_challenge.slug, model_zip(GOOD_MODEL))
        assert lost.queues["code"].qsize() == 1  # it went to the code queue, not 'scoring'
        assert lost.queues.get("scoring") is None or lost.queues["scoring"].qsize() == 0
    finally:
        use_broker(previous)
        lost.close()
    with session_scope(engine) as session:  # never sent, five minutes ago
        row = session.get(Submission, sub_id)
        assert row is not None
        row.enqueued_at = None
        row.created_at = row.created_at - dt.timedelta(minutes=5)
        session.add(row)
    tasks.configure(settings, engine)
    assert tasks.reconcile_once() == 1
    code_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Submission, sub_id)
        assert row is not None
        assert row.status == "scored"
        assert row.results_recorded == 1


# ---------------------------------------------------------------- partial isolation

PARTIAL = {
    "bwrap": True, "root": True, "user_namespaces": True, "seccomp": True, "cgroup": None,
    "missing": ["no cgroup limits (memory, pids, cpu): not delegated here"], "complete": False,
}  # fmt: skip


@needs_jail
def test_a_host_missing_a_wall_refuses_code_until_an_admin_accepts(
    client: TestClient, engine: sa.Engine, settings: Settings, code_challenge: Challenge,
    code_worker: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import scoring.jail

    monkeypatch.setattr(scoring.jail, "_capabilities", PARTIAL)
    make_user("ana")
    join_approved(client, engine, code_challenge.slug, "ana")
    refused = upload(client, code_challenge.slug, model_zip(GOOD_MODEL))
    code_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Submission, refused)
        assert row is not None
        assert row.status == "error"
        assert "the server cannot isolate it" in row.error_message
        assert "no cgroup limits" in row.error_detail
    monkeypatch.setattr(settings, "code_allow_partial_isolation", True)
    accepted = upload(client, code_challenge.slug, model_zip(GOOD_MODEL))
    code_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Submission, accepted)
        assert row is not None
        assert row.status == "scored", row.error_detail


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_and_admin_page_show_what_the_jail_misses(
    client: TestClient, app: Any, make_user: Any, redis_url: str
) -> None:
    import redis

    from challenge.health import beat, publish_code_jail

    r = redis.Redis.from_url(redis_url)
    app.state.health_redis = r
    app.state.ratelimiter.client = r
    beat(r, "host:1:1")
    assert "code_isolation" not in client.get("/health").json()  # no code worker yet
    publish_code_jail(r, PARTIAL)
    body = client.get("/health").json()
    assert body["status"] == "ok"  # file grading is unaffected
    assert body["code_isolation"] == {
        "complete": False, "missing": PARTIAL["missing"], "workers": 1,
    }  # fmt: skip
    make_user("root", role="admin")
    login(client, "root")
    page = client.get("/organize").text
    assert "PARTIAL: no cgroup limits (memory, pids, cpu): not delegated here" in page
    assert "until an admin sets PODIUM_CODE_ALLOW_PARTIAL_ISOLATION" in page


def test_a_worker_failure_is_retried_then_stored_as_an_error(
    client: TestClient, engine: sa.Engine, settings: Settings, code_challenge: Challenge,
    make_user: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import dramatiq

    from challenge import coderuns

    make_user("ana")
    join_approved(client, engine, code_challenge.slug, "ana")
    lost = make_broker("stub://")  # nothing runs it: the test calls the actor's function
    previous = use_broker(lost)
    try:
        sub_id = upload(client, code_challenge.slug, model_zip(GOOD_MODEL))
    finally:
        use_broker(previous)
        lost.close()
    tasks.configure(settings, engine)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk of the worker is full")

    monkeypatch.setattr(coderuns, "run_task", broken)
    with pytest.raises(tasks.InfrastructureError):  # dramatiq retries it with backoff
        coderuns.grade_code_submission(sub_id)
    assert _status(engine, sub_id) == ("received", 0)  # claimable again at once

    class LastTry:
        options: ClassVar[dict[str, int]] = {"retries": tasks.MAX_INFRA_RETRIES}

    monkeypatch.setattr(dramatiq.middleware.CurrentMessage, "get_current_message", lambda: LastTry)
    assert coderuns.grade_code_submission(sub_id) is True
    assert _status(engine, sub_id) == ("error", 1)
    with session_scope(engine) as session:
        row = session.get(Submission, sub_id)
        assert row is not None
        assert "disk of the worker is full" in row.error_detail
        assert "on our side" in row.error_message


def _status(engine: sa.Engine, sub_id: int) -> tuple[str, int]:
    with session_scope(engine) as session:
        row = session.get(Submission, sub_id)
        assert row is not None
        return row.status, row.results_recorded


def test_rescoring_a_code_challenge_is_refused_with_a_reason(
    engine: sa.Engine, code_challenge: Challenge, make_user: Any
) -> None:
    from challenge.errors import BadRequest
    from challenge.rescoring import rescore_phase

    admin = make_user("root", role="admin")
    with session_scope(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == code_challenge.id)).first()
        assert phase is not None
        with pytest.raises(BadRequest, match="not available for Codabench challenges"):
            rescore_phase(session, phase_id=int(phase.id or 0), actor=admin)
