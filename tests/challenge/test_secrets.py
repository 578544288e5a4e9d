"""The secret that signs session cookies: no command but the demo runs without a real one."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from challenge import cli
from challenge.settings import (
    PLACEHOLDER_SECRET,
    ConfigurationError,
    Settings,
    load_demo_settings,
    load_settings,
)

GOOD = "a-real-secret-of-more-than-32-characters-0123456789"


@pytest.mark.parametrize("env", ["development", "test", "production"])
@pytest.mark.parametrize("secret", [None, "", PLACEHOLDER_SECRET, "short-secret"])
def test_no_environment_accepts_a_missing_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, env: str, secret: str | None
) -> None:
    monkeypatch.delenv("PODIUM_SECRET_KEY", raising=False)
    if secret is not None:
        monkeypatch.setenv("PODIUM_SECRET_KEY", secret)
    monkeypatch.setenv("PODIUM_ENV", env)
    with pytest.raises(ConfigurationError, match="PODIUM_SECRET_KEY") as info:
        load_settings()
    assert "secrets.token_hex(32)" in str(info.value)  # says how to make one


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate"],
        ["serve"],
        ["worker"],
        ["scheduler"],
        ["user", "create", "eve", "--email", "eve@example.org", "--password-stdin"],
        ["challenge", "list"],
    ],
)
def test_commands_refuse_to_start_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("started without a secret")

    import io

    import uvicorn

    from challenge import db

    monkeypatch.delenv("PODIUM_SECRET_KEY", raising=False)
    monkeypatch.setattr(db, "migrate", started)
    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(cli, "start_worker_process", started)
    monkeypatch.setattr(cli, "run_scheduler_forever", started)
    monkeypatch.setattr(cli, "_ensure_redis", started)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(argv) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "PODIUM_SECRET_KEY is not set" in err
    assert "export PODIUM_SECRET_KEY=" in err


def test_demo_makes_a_private_secret_per_site(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets_seen = []
    for site in ("one", "two"):
        monkeypatch.delenv("PODIUM_SECRET_KEY", raising=False)
        monkeypatch.setenv("PODIUM_DATA_DIR", str(tmp_path / site / "data"))
        settings = load_demo_settings()
        path = tmp_path / site / "secret_key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = settings.secret_key.get_secret_value()
        assert len(secret) >= 48
        assert path.read_text().strip() == secret
        # What the demo's worker processes inherit.
        import os

        assert os.environ["PODIUM_SECRET_KEY"] == secret
        # A restart keeps it (logins survive).
        monkeypatch.delenv("PODIUM_SECRET_KEY")
        assert load_demo_settings().secret_key.get_secret_value() == secret
        secrets_seen.append(secret)
    assert secrets_seen[0] != secrets_seen[1]
    # A secret file others may read is not trusted.
    (tmp_path / "one" / "secret_key").chmod(0o644)
    monkeypatch.delenv("PODIUM_SECRET_KEY")
    monkeypatch.setenv("PODIUM_DATA_DIR", str(tmp_path / "one" / "data"))
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_demo_settings()


def test_demo_uses_the_operators_secret_when_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PODIUM_SECRET_KEY", GOOD)
    monkeypatch.setenv("PODIUM_DATA_DIR", str(tmp_path / "data"))
    assert load_demo_settings().secret_key.get_secret_value() == GOOD
    assert not (tmp_path / "secret_key").exists()


def test_secrets_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from challenge import db

    url = "postgresql+psycopg://podium:hunter2-db-password@db.example:5432/podium"
    monkeypatch.setenv("PODIUM_SECRET_KEY", GOOD)
    monkeypatch.setenv("PODIUM_DATABASE_URL", url)
    monkeypatch.setenv("PODIUM_SMTP_PASSWORD", "hunter3-smtp-password")
    migrated = []
    monkeypatch.setattr(db, "migrate", migrated.append)
    assert cli.main(["migrate"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert migrated == [url]  # the real URL reaches the database...
    assert "db.example:5432/podium is up to date" in out
    assert "hunter2" not in out  # ...and its password is not printed
    settings = load_settings()
    shown = repr(settings) + str(settings)
    for secret in (GOOD, "hunter2", "hunter3"):
        assert secret not in shown
    assert settings.smtp_password.get_secret_value() == "hunter3-smtp-password"


@pytest.mark.parametrize(("env", "secure"), [("production", True), ("development", False)])
def test_secure_cookies_on_in_production(
    sqlite_url: str, settings_factory: Any, env: str, secure: bool
) -> None:
    from challenge.app import create_app

    settings: Settings = settings_factory(sqlite_url, env=env)
    assert settings.secure_cookies is secure
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        cookie = client.get("/login").headers["set-cookie"]
    assert ("; secure" in cookie.lower()) is secure
