"""Every setting and every CLI command is documented (a test fails when one is not)."""

from __future__ import annotations

import argparse
from pathlib import Path

from challenge.cli import build_parser
from challenge.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _command_paths(sub, (*prefix, name))
                paths.extend(nested or [(*prefix, name)])
    return paths


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = [
        " ".join(p) for p in _command_paths(build_parser()) if f"`podium {' '.join(p)}" not in text
    ]
    assert not missing, f"document these commands in docs/cli.md: {missing}"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [
        f"PODIUM_{name.upper()}"
        for name in Settings.model_fields
        if f"`PODIUM_{name.upper()}`" not in text
    ]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"
