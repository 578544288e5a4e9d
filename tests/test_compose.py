"""compose.yaml is the production sketch: parse it and check it against the project."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from challenge.cli import build_parser

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


def test_secrets_are_required() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for var in ("PODIUM_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + var + r":\?", text), var
    assert "PODIUM_SECRET_KEY: ${PODIUM_SECRET_KEY:-" not in text


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
