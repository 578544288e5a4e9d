"""`podium submit` of a model zip to a Codabench code challenge, against a live site."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from challenge.codabench import create_codabench_challenge, parse_codabench_bundle
from challenge.db import make_engine, session_scope
from challenge.models import Participation
from challenge.settings import Settings
from scoring.jail import host_capabilities
from tests.challenge.conftest import PASSWORD
from tests.challenge.test_cli import Podium, site  # noqa: F401 - the live site fixture
from tests.challenge.test_codabench import BROKEN_MODEL, BUNDLES, GOOD_MODEL, code_worker  # noqa: F401

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not host_capabilities()["complete"],
    reason="code runs need the jail (root, bubblewrap, seccomp, cgroups)",
)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The client does not care about the database backend: SQLite only, as test_cli does."""
    return sqlite_url


def zipped(path: Path, code: str) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("my-model/model.py", code)  # a zip of a folder counts as its contents
    path.write_bytes(buf.getvalue())
    return path


def test_podium_submit_a_model_zip_shows_columns_and_tracebacks(
    site: tuple[str, Settings], make_user: Any, tmp_path: Path, code_worker: Any,  # noqa: F811
) -> None:  # fmt: skip
    url, settings = site
    engine = make_engine(settings.database_url)
    bundle = parse_codabench_bundle(BUNDLES / "code-task", tmp_path / "parse")
    with session_scope(engine) as session:
        slug = create_codabench_challenge(
            session, settings=settings, bundle=bundle, creator=None
        ).slug
    make_user("carol")
    podium = Podium(url, settings, tmp_path)
    r = podium("login", "carol", "--url", url, "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = podium("join", slug, "--accept-rules")
    assert r.returncode == 0, r.stderr
    with session_scope(engine) as session:  # the organizer approves
        session.execute(sa.update(Participation).values(status="approved"))

    r = podium("submit", slug, str(zipped(tmp_path / "good.zip", GOOD_MODEL)), "--timeout", "120")
    assert r.returncode == 0, r.stderr
    assert "ingestion done" in r.stdout  # the run's own output
    assert "scored: public score" in r.stdout
    assert "  accuracy: " in r.stdout
    assert "  duration: " in r.stdout

    r = podium("submit", slug, str(zipped(tmp_path / "bad.zip", BROKEN_MODEL)), "--timeout", "120")
    assert r.returncode != 0
    assert "ValueError: my model is broken" in r.stderr
    assert "Your code failed in the ingestion step" in r.stderr
    engine.dispose()
