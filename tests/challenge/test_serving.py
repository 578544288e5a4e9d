"""A serving process freezes its start-up heap and collects young objects less often."""

from __future__ import annotations

import subprocess
import sys

import pytest

from challenge.serving import YOUNG_THRESHOLD


def test_tune_gc_for_serving_freezes_the_start_up_heap() -> None:
    # In a child interpreter: freezing is for the serving process, never this test process.
    code = (
        "import gc, challenge.app\n"
        "from challenge.serving import tune_gc_for_serving\n"
        "assert gc.get_freeze_count() == 0\n"
        "tune_gc_for_serving()\n"
        "print(gc.get_freeze_count(), gc.get_threshold()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    frozen, young = (int(x) for x in out.stdout.split())
    assert frozen > 10_000  # the imported application's modules, classes and metadata
    assert young == YOUNG_THRESHOLD


def test_podium_serve_factory_tunes_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from challenge import cli, serving

    calls: list[bool] = []
    monkeypatch.setattr(serving, "tune_gc_for_serving", lambda: calls.append(True))
    monkeypatch.setattr(cli, "load_settings", lambda: object())
    monkeypatch.setattr("challenge.app.create_app", lambda settings: "app")
    assert cli.web_app() == "app"
    assert calls == [True]
