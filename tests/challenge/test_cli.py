"""The `podium` command end to end: subprocesses against a real uvicorn server and a stub worker."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlmodel import Session, select

from challenge import tasks
from challenge.app import create_app
from challenge.cli import main
from challenge.models import Phase
from challenge.settings import Settings
from tests.challenge.conftest import PASSWORD, perfect_submission, random_submission
from tests.challenge.live_server import free_port, serve


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The client does not care about the database backend: SQLite only, to keep this fast."""
    return sqlite_url


@pytest.fixture
def site(settings_factory: Any, sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings: Settings = settings_factory(sqlite_url, base_url=f"http://127.0.0.1:{port}")
    from challenge.db import make_engine

    engine = make_engine(settings.database_url)
    tasks.configure(settings, engine)
    with serve(create_app(settings, engine), port) as url:
        yield url, settings
    engine.dispose()


class Podium:
    """Runs `podium` as a user would, with its own config directory and the site's environment."""

    def __init__(self, url: str, settings: Settings, home: Path) -> None:
        self.url = url
        self.home = home
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "config"),
            "PODIUM_DATABASE_URL": settings.database_url,
            "PODIUM_DATA_DIR": str(settings.data_dir),
            "PODIUM_LABEL_DIR": str(settings.label_dir),
            "PODIUM_URL": url,
        }
        self.env.pop("PODIUM_TOKEN", None)

    def __call__(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "challenge.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=120,
            check=False,
        )


def test_admin_and_participant_commands_end_to_end(
    site: tuple[str, Settings], make_challenge: Any, stub_worker: Any, tmp_path: Path, engine: Any
) -> None:
    url, settings = site
    challenge = make_challenge(per_day=2)
    slug = challenge.slug
    podium = Podium(url, settings, tmp_path)

    # Admin set-up, scripted.
    r = podium(
        "user",
        "create",
        "alice",
        "--email",
        "alice@example.org",
        "--role",
        "participant",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 0, r.stderr
    assert "created participant 'alice'" in r.stdout
    r = podium(
        "user",
        "create",
        "alice",
        "--email",
        "a2@example.org",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 4
    assert "user name is taken" in r.stderr
    r = podium("user", "create", "bob", "--email", "bob@example.org", "--password-stdin")
    assert r.returncode == 2
    assert "--password-stdin" in r.stderr
    r = podium("user", "create", "bob", "--email", "bob@example.org", "--role", "king")
    assert r.returncode == 2  # argparse refuses the role
    r = podium("token", "create", "alice", "--token-name", "ci")
    assert r.returncode == 0
    token = r.stdout.strip()
    assert token.startswith("pod_")
    assert podium("token", "create", "nobody").returncode == 4
    r = podium("challenge", "list")
    assert r.returncode == 0
    assert slug in r.stdout
    assert "running" in r.stdout

    # The token from `podium token create` works for the client.
    r = podium("challenges", PODIUM_TOKEN=token)
    assert r.returncode == 0
    assert slug in r.stdout

    # Participant: login, join, download, submit, list, leaderboard.
    assert podium("submissions", slug).returncode == 3  # not logged in yet
    r = podium("login", "alice", "--password-stdin", stdin="wrong password\n")
    assert r.returncode == 3
    assert "wrong password" in r.stderr
    r = podium("login", "alice", "--url", url, "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    config = tmp_path / "config" / "podium" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["url"] == url

    out = tmp_path / "data"
    r = podium("download", slug, "--out", str(out))
    assert r.returncode == 3
    assert f"podium join {slug} --accept-rules" in r.stderr
    assert podium("join", slug).returncode == 2
    r = podium("join", slug, "--accept-rules")
    assert r.returncode == 0
    assert "2 submissions left today" in r.stdout
    r = podium("download", slug, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        str(out / f"{slug}-train.parquet"),
        str(out / f"{slug}-test.parquet"),
    ]
    r = podium("download", slug, "--format", "csv", "--out", str(out))
    assert r.returncode == 0, r.stderr
    test_csv = pd.read_csv(out / f"{slug}-test.csv")
    assert len(test_csv) == len(pd.read_parquet(out / f"{slug}-test.parquet"))
    assert "Label" not in test_csv.columns
    assert not list(out.glob("*.part"))

    good = tmp_path / "good.csv"
    perfect_submission(settings, slug).to_csv(good, index=False)
    r = podium("submit", slug, str(good), "-m", "perfect ranks")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "scored: public score" in r.stdout

    bad = tmp_path / "bad.csv"
    random_submission(settings, slug).drop(columns=["Class"]).to_csv(bad, index=False)
    r = podium("submit", slug, str(bad), "-m", "no class column")
    assert r.returncode == 4
    assert "invalid:" in r.stderr
    assert "Class" in r.stderr
    assert podium("submit", slug, str(tmp_path / "missing.csv")).returncode == 2

    r = podium("submissions", slug)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert "invalid" in lines[0]
    assert "scored" in lines[1]
    r = podium("leaderboard", slug)
    assert r.returncode == 0
    assert "alice" in r.stdout
    assert "public leaderboard" in r.stdout
    # Before the reveal the private board is "not allowed" (3), and the message says when.
    r = podium("leaderboard", slug, "--board", "private")
    assert r.returncode == 3, r.stderr
    with Session(engine) as s:
        closes = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one().closes_at
    assert closes is not None
    assert "phase 'competition' is not revealed yet" in r.stderr
    assert f"when the last phase closes, at {closes.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" in r.stderr
    # A challenge or phase that does not exist is still a refused input (4).
    assert podium("leaderboard", "no-such-challenge", "--board", "private").returncode == 4
    r = podium("leaderboard", slug, "--board", "private", "--phase", "nope")
    assert r.returncode == 4
    assert "No phase 'nope'" in r.stderr

    # Quota: the invalid file gave its slot back; one more valid upload, then exit 5.
    r = podium("submit", slug, str(good), "--no-wait")
    assert r.returncode == 0, r.stderr
    r = podium("submit", slug, str(good), "--no-wait")
    assert r.returncode == 5
    assert "resets" in r.stderr

    # Scripts can tell a bad token and an unreachable site apart.
    r = podium("submissions", slug, PODIUM_TOKEN="pod_not-a-token")
    assert r.returncode == 3
    assert "not valid" in r.stderr
    r = podium("challenges", "--url", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "cannot reach" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_bars_on_a_terminal(
    site: tuple[str, Settings],
    make_challenge: Any,
    make_user: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = site
    challenge = make_challenge()
    make_user("carol")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("PODIUM_TOKEN", raising=False)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["login", "carol", "--url", url, "--password-stdin"]) == 0
    assert main(["join", challenge.slug, "--accept-rules"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["download", challenge.slug, "--out", str(tmp_path / "d")]) == 0
    err = capsys.readouterr().err
    assert f"{challenge.slug}-train.parquet" in err
    assert "100.0%" in err
    assert "[####" in err
    pred = tmp_path / "p.csv"
    random_submission(settings, challenge.slug).to_csv(pred, index=False)
    assert main(["submit", challenge.slug, str(pred), "--no-wait"]) == 0
    assert "p.csv" in capsys.readouterr().err
