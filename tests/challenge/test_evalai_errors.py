"""The unmodified EvalAI CLI prints Podium's message for every refusal: it shows the "error" of a
400/401/403/406 answer only, and a bare "429 Client Error: ... for url" for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from challenge.models import Phase
from challenge.settings import Settings
from tests.challenge.conftest import perfect_submission
from tests.challenge.test_evalai import EVALAI, EvalAI, _token, site  # noqa: F401 - fixture


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def test_evalai_cli_shows_quota_and_not_found_messages(
    site: tuple[str, Settings],  # noqa: F811
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    stub_worker: Any,
    tmp_path: Path,
) -> None:
    if not EVALAI.is_file():
        pytest.fail(f"{EVALAI} is missing: run `make evalai-deps` (docs/evalai.md says how)")
    url, settings = site
    challenge = make_challenge(per_day=1)
    user = make_user("ida")
    with httpx.Client(base_url=url) as http:
        token = _token(http, "ida")
    with Session(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
    evalai = EvalAI(tmp_path)
    evalai("host", "-sh", url)
    evalai("set_token", token)
    evalai("challenge", str(challenge.id), "participate", str(user.id), stdin="y\n")
    good = tmp_path / "good.csv"
    perfect_submission(settings, challenge.slug).to_csv(good, index=False)
    submit = ("challenge", str(challenge.id), "phase", str(phase.id), "submit", "--file", str(good))
    assert "successfully submitted" in evalai(*submit, stdin="n\n")

    # The daily quota is used up: the CLI says so and when it resets (it was a bare 429 line).
    out = evalai(*submit, stdin="n\n", code=1)
    assert "Client Error" not in out
    assert "resets" in out
    out = evalai(*submit, "--large", stdin="n\n", code=1)
    assert "Client Error" not in out
    assert "resets" in out

    # Unknown objects: Podium's message, not "404 Client Error: Not Found for url".
    for args in (
        ("challenge", "999", "phases"),
        ("challenge", str(challenge.id), "phase", "999"),
        ("submission", "999"),
    ):
        out = evalai(*args, code=1)
        assert "Client Error" not in out, (args, out)
        assert "Error" in out, (args, out)
