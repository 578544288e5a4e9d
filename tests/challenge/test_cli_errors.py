"""No `podium` command ends in a traceback: every command, given wrong arguments or bad files,
prints one line on stderr and exits with a code docs/cli.md documents."""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from challenge.cli import build_parser, main
from challenge.db import migrate
from tests.challenge.live_server import free_port
from tests.conftest import REDIS_PORT

DOCUMENTED = {1, 2, 3, 4, 5, 6}
DOCS = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Path:
    """A site configuration of its own (empty database, data folders) and a dead server URL."""
    values = {
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "PODIUM_DATABASE_URL": sqlite_url,
        "PODIUM_DATA_DIR": str(tmp_path / "data"),
        "PODIUM_LABEL_DIR": str(tmp_path / "labels"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PODIUM_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PODIUM_DEBUG", raising=False)
    # Commands that queue jobs use the tests' Redis, never an embedded one of their own.
    monkeypatch.setenv("PODIUM_REDIS_URL", f"redis://127.0.0.1:{REDIS_PORT}/14")
    migrate(sqlite_url)
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, argv: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in DOCUMENTED, (argv, code, err)
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("podium"), (argv, err)
    assert "Traceback" not in err


def leaf_commands() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    def walk(parser: argparse.ArgumentParser, path: list[str]
             ) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
            return
        for name, child in subs[0].choices.items():
            yield from walk(child, [*path, name])

    yield from walk(build_parser(), [])


def test_every_command_refuses_an_unknown_option_in_one_line(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = list(leaf_commands())
    assert len(commands) > 30
    for path, _parser in commands:
        argv = [*path, "--no-such-option"]
        code, err = run(argv, capsys)
        assert code == 2, (argv, err)
        assert_one_line(code, err, argv)
        # And each is documented.
        assert f"podium {' '.join(path)}" in DOCS, path


def bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {
        "missing": folder / "nope.csv",
        "bad_yaml": folder / "bad.yaml",
        "truncated": folder / "cut.parquet",
        "text": folder / "notes.txt",
        "solution_csv": folder / "solution.csv",
        "one_column": folder / "one.csv",
        "submission": folder / "sub.csv",
        "garbage_gz": folder / "sub.csv.gz",
    }
    files["bad_yaml"].write_text("slug: [unclosed\n")
    frame = pd.DataFrame({"EventId": np.arange(10), "Label": ["s", "b"] * 5,
                          "Weight": np.ones(10)})
    frame.to_parquet(folder / "good.parquet")
    files["truncated"].write_bytes((folder / "good.parquet").read_bytes()[:100])
    files["text"].write_text("hello\n")
    frame.to_csv(files["solution_csv"], index=False)
    frame[["EventId"]].to_csv(files["one_column"], index=False)
    pd.DataFrame({"EventId": np.arange(10), "score": np.linspace(0, 1, 10)}).to_csv(
        files["submission"], index=False)
    files["garbage_gz"].write_bytes(gzip.compress(b"EventId,score\n1,0.5\n")[:-12] + b"x" * 12)
    return files


def test_commands_with_bad_files_and_values_print_one_line(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a password\n" * 10))
    f = bad_files(env / "files")
    out = str(env / "out")
    cases: list[tuple[list[str], int]] = [
        (["migrate"], 0),
        (["challenge", "create", str(f["missing"])], 4),
        (["challenge", "create", str(f["bad_yaml"])], 4),
        (["challenge", "list"], 0),
        (["challenge", "rescore", "no-such-challenge"], 4),
        (["user", "create", "ann", "--email", "not-an-email", "--password-stdin"], 4),
        (["token", "create", "nobody"], 4),
        (["class", "create", "nope", "klass", "--opens", "someday", "--closes", "x"], 4),
        (["class", "create", "nope", "klass", "--opens", "2027-01-01T00:00Z",
          "--closes", "2027-02-01T00:00Z"], 4),
        (["class", "grades", "nope"], 4),
        (["class", "reset", "nope", "--opens", "2027-01-01T00:00Z", "--closes", "x"], 4),
        (["score", "--metric", "ams", "--solution", str(f["missing"]), "--submission",
          str(f["submission"])], 4),
        (["score", "--metric", "nosuchmetric", "--solution", str(f["solution_csv"]),
          "--submission", str(f["submission"])], 2),
        (["score", "--metric", "ams", "--solution", str(f["solution_csv"]), "--submission",
          str(f["one_column"])], 4),
        (["score", "--metric", "ams", "--solution", str(f["truncated"]), "--submission",
          str(f["submission"])], 4),
        (["score", "--metric", "ams", "--solution", str(f["solution_csv"]), "--submission",
          str(f["garbage_gz"])], 4),
        (["score", "--metric", "ams", "--solution", str(f["text"]), "--submission",
          str(f["submission"])], 4),
        (["score", "--metric", "ams", "--param", "nokey", "--solution", str(f["solution_csv"]),
          "--submission", str(f["submission"])], 2),
        (["generate", "higgs", "--events", "-5", "--out", str(env / "h.csv")], 4),
        # A folder that cannot be made (a file is in the way): an OSError, still one line.
        (["generate", "higgs", "--events", "10", "--out", str(f["text"] / "h.csv")], 4),
        (["generate", "tracking", "--events", "1", "--noise", "7", "--out", out], 4),
        (["dataset", "add", str(f["missing"]), "--name", "x"], 4),
        (["dataset", "add", str(f["truncated"]), "--name", "x"], 4),
        (["dataset", "add", str(f["text"]), "--name", "x"], 4),
        (["dataset", "list"], 0),
        (["dataset", "show", "nothing:1"], 4),
        (["dataset", "verify", "nothing:1"], 4),
        (["dataset", "tag", "nothing:1", "best"], 4),
        (["dataset", "split", str(f["missing"]), "--public", out, "--hidden", out,
          "--seed", "1", "--id", "EventId", "--label", "Label"], 4),
        (["dataset", "split", str(f["solution_csv"]), "--public", out, "--hidden", out,
          "--seed", "1", "--id", "EventId", "--group", "EventId", "--label", "Label"], 4),
        (["dataset", "split", str(f["solution_csv"]), "--public", out, "--hidden", out,
          "--seed", "1", "--id", "EventId", "--label", "Label", "--train", "lots"], 4),
        (["dataset", "split", str(f["solution_csv"]), "--public", out, "--hidden", out], 2),
        (["dataset", "release", "--public", out, "--out", out, "--metadata",
          str(f["missing"])], 4),
        (["dataset", "release", "--public", out, "--out", out, "--metadata",
          str(f["bad_yaml"])], 4),
        (["dataset", "release-labelled", "x", "--public", out, "--hidden", out, "--id",
          "EventId"], 4),
        (["variant", "nosuchkind", str(f["solution_csv"]), str(env / "v.parquet")], 4),
        (["variant", "noise", str(f["missing"]), str(env / "v.parquet")], 4),
        (["variant", "noise", str(f["solution_csv"]), str(env / "v.parquet"), "--set",
          "scale"], 4),
        (["demo", "--port", "eighty"], 2),
        (["serve", "--workers", "many"], 2),
        (["worker", "--processes", "x"], 2),
        (["scheduler", "--interval", "soon"], 2),
        (["challenges"], 1),
        (["join", "higgs", "--accept-rules"], 3),
        (["download", "higgs", "--out", out], 3),
        (["submit", "higgs", str(f["missing"])], 2),
        (["submissions", "higgs"], 3),
        (["leaderboard", "higgs"], 1),
        (["login", "ann", "--password-stdin"], 1),
    ]
    wrong = []
    for argv, expected in cases:
        code, err = run(argv, capsys)
        if code != expected:
            wrong.append((argv, expected, code, err))
        elif expected:
            assert_one_line(code, err, argv)
    assert not wrong, "\n".join(f"{a} expected {e} got {c}: {r}" for a, e, c, r in wrong)
    # Every leaf command is exercised above.
    leaves = {" ".join(path) for path, _ in leaf_commands()}
    exercised = {" ".join(argv[: len(path)]) for argv, _ in cases for path, _p in
                 leaf_commands() if argv[: len(path)] == path}
    assert leaves <= exercised, sorted(leaves - exercised)


def test_dataset_show_into_a_closed_pipe_ends_quietly(env: Path) -> None:
    """`podium dataset show X | head -1`: no BrokenPipeError traceback, exit 0."""
    files = [env / f"part{i}.csv" for i in range(60)]
    for i, path in enumerate(files):
        pd.DataFrame({"EventId": [i], "x": [0.5]}).to_csv(path, index=False)
    assert main(["dataset", "add", *map(str, files), "--name", "many"]) == 0
    script = (
        "import sys; from challenge.cli import main; sys.exit(main(['dataset', 'show', "
        "'many:1']))"
    )
    proc = subprocess.run(  # noqa: S602 - our own interpreter, a fixed pipeline
        f"{sys.executable} -c \"{script}\" | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True, capture_output=True, text=True, env=os.environ, executable="/bin/bash",
        timeout=120, check=False,
    )
    assert proc.stdout.strip() == "{"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipe" not in proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_score_reads_every_format_the_splitter_reads(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV, HDF5 or ROOT solution and an HDF5 or ROOT submission score like Parquet ones."""
    from splitter.formats import export_table

    rng = np.random.default_rng(2)
    n = 400
    label = np.where(rng.random(n) < 0.4, "s", "b")
    solution = pd.DataFrame({"EventId": np.arange(n), "Label": label,
                             "Weight": rng.uniform(0.1, 1.0, n)})
    submission = pd.DataFrame({"EventId": np.arange(n),
                               "prediction": np.where(rng.random(n) < 0.8, label,
                                                      rng.choice(["s", "b"], n))})
    solution.to_parquet(env / "sol.parquet")
    submission.to_parquet(env / "sub.parquet")
    scores: dict[str, Any] = {}
    metric = ["--metric", "f1", "--param", "positive=s", "--param", "label=Label"]
    for fmt in ("parquet", "csv", "hdf5", "root"):
        sol = export_table(env / "sol.parquet", fmt, env / f"sol.{fmt}")
        sub = export_table(env / "sub.parquet", fmt, env / f"sub.{fmt}")
        code = main(["score", *metric, "--solution", str(sol), "--submission", str(sub)])
        out = capsys.readouterr()
        assert code == 0, out.err
        scores[fmt] = re.search(r'"public": ([0-9.]+)', out.out)
    values = {fmt: float(m.group(1)) for fmt, m in scores.items() if m}
    assert len(values) == 4
    assert len(set(values.values())) == 1, values


def test_an_unexpected_error_is_one_line_too(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here a command that raises RuntimeError) exits 1 with one line naming it; the trace
    only with PODIUM_DEBUG=1."""
    import splitter.commands

    def broken(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(splitter.commands, "run_dataset_list", broken)
    code, err = run(["dataset", "list"], capsys)
    assert code == 1
    assert_one_line(code, err, ["dataset", "list"])
    assert "internal error (RuntimeError: something broke)" in err
    assert "PODIUM_DEBUG=1" in err
    monkeypatch.setenv("PODIUM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something"):
        main(["dataset", "list"])
