"""Admin commands find the site wherever they run: PODIUM_DATA_DIR, the site config file, the clone.

Without one they say how to point at it in one line and create nothing (they used to die with
"no such table: user" and leave an empty var/ in the working directory).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from challenge import settings as settings_module
from challenge.cli import main


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside any clone, with no PODIUM_* site variables set."""
    for name in ("PODIUM_DATA_DIR", "PODIUM_DATABASE_URL", "PODIUM_LABEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(settings_module, "clone_var_dir", lambda: tmp_path / "clone" / "var")
    return tmp_path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_no_site_found_says_how_and_creates_nothing(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(elsewhere)
    for argv in (["challenge", "list"], ["challenge", "create", "nowhere.yaml"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line
        assert "no Podium site at" in err
        assert "PODIUM_DATA_DIR" in err
        assert "site.env" in err
        assert "Traceback" not in err
        assert "no such table" not in err
    assert _tree(elsewhere) == before  # no var/, no database, anywhere


def test_site_from_the_clone_the_config_file_and_the_environment(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The clone's var/ (make demo's site) is used from any working directory.
    clone_var = elsewhere / "clone" / "var"
    monkeypatch.setenv("PODIUM_DATA_DIR", str(clone_var / "data"))
    assert main(["migrate"]) == 0
    monkeypatch.delenv("PODIUM_DATA_DIR")
    capsys.readouterr()
    assert main(["challenge", "list"]) == 0
    assert settings_module.load_settings().label_dir == clone_var / "labels"

    # A site config file names another site; the environment still wins over it.
    site = elsewhere / "site"
    monkeypatch.setenv("PODIUM_DATA_DIR", str(site / "data"))
    assert main(["migrate"]) == 0
    monkeypatch.delenv("PODIUM_DATA_DIR")
    config = elsewhere / "config" / "podium" / "site.env"
    config.parent.mkdir(parents=True)
    config.write_text(f"PODIUM_DATA_DIR={site / 'data'}\n")
    assert settings_module.load_settings().data_dir == site / "data"
    assert main(["challenge", "list"]) == 0
    monkeypatch.setenv("PODIUM_DATA_DIR", str(elsewhere / "empty" / "data"))
    assert main(["challenge", "list"]) == 2
    assert f"no Podium site at {elsewhere / 'empty'}" in capsys.readouterr().err
    assert not (elsewhere / "empty").exists()


def test_make_demo_passes_the_port() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["make", "-n", "-C", str(root), "demo", "PORT=8123"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout
    assert "podium demo --port 8123" in out
