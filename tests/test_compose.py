"""compose.yaml is the production sketch: parse it and check it against the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from challenge.cli import build_parser
from challenge.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_services_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"web", "worker", "scheduler", "redis", "postgres"} <= set(services)
    for name in ("web", "worker", "redis", "postgres"):
        assert "healthcheck" in services[name], name


def test_label_store_only_in_worker() -> None:
    services = _compose()["services"]
    holders = [
        n
        for n, s in services.items()
        if any(str(v).startswith("labels:") for v in s.get("volumes", []))
    ]
    assert holders == ["worker"]


LONG_RUNNING = ("web", "worker", "scheduler", "redis", "postgres")
OURS = ("web", "worker", "scheduler", "migrate")  # services running the podium image


def test_long_running_services_restart_and_ours_run_under_init() -> None:
    services = _compose()["services"]
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), name
    for name in OURS:
        # Without an init, podium is PID 1: SIGTERM is ignored and compose SIGKILLs after 10 s.
        assert services[name].get("init") is True, name
    assert services["migrate"].get("restart") == "no"  # one-shot


def test_scheduler_has_a_healthcheck_fed_by_its_ticks() -> None:
    scheduler = _compose()["services"]["scheduler"]
    command = scheduler["command"]
    alive = command[command.index("--alive-file") + 1]
    assert alive in " ".join(scheduler["healthcheck"]["test"])


def test_the_web_can_write_its_data_volume() -> None:
    """The web runs as podium; a new named volume copies the ownership of the image's folder,
    so the Dockerfile must create /data owned by podium."""
    compose = _compose()
    web = compose["services"]["web"]
    mounts = dict(str(v).split(":", 1) for v in web["volumes"])
    assert mounts == {"publicdata": "/data"}
    assert "publicdata" in compose["volumes"]
    assert "user" not in web  # the image's USER podium
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER podium$", dockerfile, re.M)
    assert re.search(r"chown podium:podium /data\b", dockerfile)
    assert re.search(r"mkdir -p /data\b", dockerfile)


def test_secrets_are_files_not_environment_variables() -> None:
    compose = _compose()
    declared = compose["secrets"]
    assert set(declared) == {"postgres_password", "podium_secret_key", "podium_database_url"}
    for name, secret in declared.items():
        assert secret == {"file": f"./secrets/{name}"}, name
    text = (ROOT / "compose.yaml").read_text()
    for var in ("PODIUM_SECRET_KEY", "POSTGRES_PASSWORD", "PODIUM_DATABASE_URL"):
        assert not re.search(rf"^\s+{var}:", text, re.M), f"{var} as a plain variable"
    services = compose["services"]
    for name in OURS:
        env = services[name]["environment"]
        assert "PODIUM_SECRET_KEY" not in env
        assert "PODIUM_DATABASE_URL" not in env
        assert set(services[name]["secrets"]) == {"podium_secret_key", "podium_database_url"}
        assert env["PODIUM_SECURE_COOKIES"] == "true", name
        assert env["PODIUM_ENV"] == "production"
    postgres = services["postgres"]
    assert postgres["secrets"] == ["postgres_password"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_settings_read_compose_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file /run/secrets/podium_<setting> sets the setting (trailing newline dropped); the
    environment still wins; without the folder nothing changes (and nothing warns)."""
    from challenge import settings as settings_module

    for var in ("PODIUM_SECRET_KEY", "PODIUM_DATABASE_URL", "PODIUM_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "absent")
    with pytest.raises(settings_module.ConfigurationError, match="PODIUM_SECRET_KEY"):
        load_settings()  # no secret anywhere: refused (only `podium demo` makes one)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "podium_secret_key").write_text("k" * 40 + "\n")
    (secrets / "podium_database_url").write_text("postgresql://podium:pw@postgres:5432/podium\n")
    monkeypatch.setattr(settings_module, "SECRETS_DIR", secrets)
    loaded = load_settings(env="production")
    assert str(_plain(loaded.secret_key)) == "k" * 40
    assert loaded.database_url == "postgresql://podium:pw@postgres:5432/podium"
    monkeypatch.setenv("PODIUM_DATABASE_URL", "sqlite:///x.db")
    assert load_settings().database_url == "sqlite:///x.db"


def _plain(value: object) -> object:
    """A SecretStr's value, or the value (the secret key may become a SecretStr)."""
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else value


def test_commands_exist_in_the_cli() -> None:
    parser = build_parser()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "podium":
            continue
        args = parser.parse_args(command[1:])
        assert callable(args.fn), name


def test_session_cookie_is_secure() -> None:
    env = _compose()["x-podium-env"]
    assert env["PODIUM_ENV"] == "production"
    assert str(env["PODIUM_SECURE_COOKIES"]).lower() == "true"
