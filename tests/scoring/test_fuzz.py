"""Malformed files end "invalid" with a message that names the problem, never "error" (which
charges the participant's quota and e-mails the organizers): a seeded corpus of the
malformations fuzzing found, plus random byte mutations (tests/scoring/fuzz_corpus.py).

Also: a metric returning NaN or inf is the organizers' error, not a score; a grading child that
leaves a process holding its pipes does not make the answer wait out the wall clock; the jail
folders of killed zygotes are swept.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from scoring.custom import load_source
from scoring.grading import grade
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool
from scoring.zygote import JAIL_PREFIX, sweep_jails
from tests.scoring.conftest import AMS, HIGGS_FORMAT, make_higgs
from tests.scoring.fuzz_corpus import Case, malformed, mutations, parquet_bomb

MAX_BYTES = 16 << 20
SECONDS_PER_FILE = 3.0  # the quadratic header check took 60 s on an 800 KB header


@pytest.fixture(scope="module")
def higgs() -> tuple[pd.DataFrame, pd.DataFrame]:
    solution, submission = make_higgs(300, 0)
    return solution, submission.sort_values("EventId").reset_index(drop=True)


def _problems(case: Case, path: Path, solution: pd.DataFrame) -> str | None:
    """Why the outcome of grading ``case`` is wrong, or None."""
    path.write_bytes(case.data)
    started = time.perf_counter()
    result = grade(path, solution, HIGGS_FORMAT, AMS, bootstrap=0, max_bytes=MAX_BYTES)
    took = time.perf_counter() - started
    if took > SECONDS_PER_FILE:
        return f"took {took:.1f} s"
    if result.status == "error":
        return f"error: {result.detail.splitlines()[0] if result.detail else result.message}"
    if "-9223372036854775808" in result.message:
        return f"wrapped integer in {result.message!r}"
    if case.expect is None:
        return None
    if result.status != "invalid":
        return f"{result.status}, not invalid"
    missing = [w for w in case.expect if w.lower() not in result.message.lower()]
    return f"message {result.message!r} lacks {missing}" if missing else None


def test_every_malformed_file_is_invalid_and_named(
    higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    solution, valid = higgs
    cases = [c for seed in range(6) for c in malformed(valid, seed)]
    assert len(cases) >= 200
    wrong = {c.name: p for c in cases if (p := _problems(c, tmp_path / "f", solution))}
    assert not wrong, wrong


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mutations_never_end_in_error(
    higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, seed: int
) -> None:
    solution, valid = higgs
    wrong = {
        c.name: p
        for c in mutations(valid, seed, 150)
        if (p := _problems(c, tmp_path / "f", solution))
    }
    assert not wrong, wrong


def test_a_parquet_bomb_is_refused_before_it_is_decoded(
    higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    solution, _ = higgs
    bomb = tmp_path / "bomb.parquet"
    bomb.write_bytes(parquet_bomb(3_000_000))
    assert bomb.stat().st_size < 200_000
    result = grade(bomb, solution, HIGGS_FORMAT, AMS, bootstrap=0, max_bytes=MAX_BYTES)
    assert result.status == "invalid", result.detail
    assert "3000000 rows" in result.message
    assert "over the 16 MiB limit" in result.message


# ---------------------------------------------------------------- through the sandbox


@pytest.fixture(scope="module")
def pool() -> SandboxPool:
    with SandboxPool(Limits(memory_mb=768, cpu_seconds=10, wall_seconds=20, max_processes=32)) as p:
        yield p  # type: ignore[misc]


def test_malformed_files_are_invalid_in_the_sandbox(
    pool: SandboxPool, higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    solution, valid = higgs
    sol = tmp_path / "solution.parquet"
    solution.to_parquet(sol)
    picked = {c.name: c for c in malformed(valid, 0)}
    for name in ("latin1-header-Prédiction", "utf16-bom", "header-repeats-800k", "rank-1e308",
                 "unbalanced-quote", "empty-zip", "parquet-rank-bool"):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(picked[name].data)
        result = pool.grade(path, sol, HIGGS_FORMAT, AMS, bootstrap=0, max_bytes=MAX_BYTES)
        assert result.status == "invalid", (name, result.message, result.detail)
    bomb = tmp_path / "bomb.parquet"
    bomb.write_bytes(parquet_bomb(3_000_000))
    result = pool.grade(bomb, sol, HIGGS_FORMAT, AMS, bootstrap=0, max_bytes=MAX_BYTES)
    assert result.status == "invalid", result.detail
    assert "over the 16 MiB limit" in result.message


def _python_metric(tmp_path: Path, body: str) -> MetricSpec:
    path = tmp_path / "metric.py"
    path.write_text(body)
    return MetricSpec.from_dict({"name": "python", "file": "metric.py"})


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "{'score': float('-inf')}"])
def test_a_metric_returning_nan_or_inf_is_an_organizer_error(
    pool: SandboxPool, higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, value: str
) -> None:
    solution, valid = higgs
    sol, sub = tmp_path / "solution.parquet", tmp_path / "sub.csv"
    solution.to_parquet(sol)
    valid.to_csv(sub, index=False)
    metric = _python_metric(tmp_path, f"def score(solution, submission):\n    return {value}\n")
    for result in (
        grade(sub, solution, HIGGS_FORMAT, load_source(metric, tmp_path), bootstrap=0),
        pool.grade(sub, sol, HIGGS_FORMAT, metric, metric_dir=tmp_path, bootstrap=0),
    ):
        assert result.status == "error", result
        assert "organizers" in result.message
        assert "must be a finite number" in result.detail
        assert result.public is None


def test_a_child_holding_the_pipes_open_does_not_delay_an_error_answer(
    pool: SandboxPool, higgs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """The metric starts a process that keeps the result and log pipes, then fails: the answer
    came only when the wall clock (20 s here) ran out."""
    solution, valid = higgs
    sol, sub = tmp_path / "solution.parquet", tmp_path / "sub.csv"
    solution.to_parquet(sol)
    valid.to_csv(sub, index=False)
    metric = _python_metric(
        tmp_path,
        "import os, time\n"
        "def score(solution, submission):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    raise RuntimeError('the metric failed')\n",
    )
    started = time.monotonic()
    result = pool.grade(sub, sol, HIGGS_FORMAT, metric, metric_dir=tmp_path, bootstrap=0)
    took = time.monotonic() - started
    assert result.status == "error"
    assert "the metric failed" in result.detail
    assert took < 5, f"the answer waited {took:.1f} s"
    # The pool goes on serving (the orphan is killed with the sandbox uid's processes).
    ok = pool.grade(sub, sol, HIGGS_FORMAT, AMS, bootstrap=0)
    assert ok.status == "scored", ok


def test_the_jail_folders_of_killed_zygotes_are_swept(tmp_path: Path) -> None:
    folder = tempfile.gettempdir()
    dead_pid = 4_194_304 + 12345  # above Linux's pid_max: no process has it
    dead = Path(folder) / f"{JAIL_PREFIX}{dead_pid}-test"
    alive = Path(folder) / f"{JAIL_PREFIX}{os.getpid()}-test"
    not_empty = Path(folder) / f"{JAIL_PREFIX}{dead_pid}-full"
    for d in (dead, alive, not_empty):
        d.mkdir(exist_ok=True)
    (not_empty / "keep").write_text("x")
    try:
        sweep_jails(folder)
        assert not dead.exists()
        assert alive.exists()  # its zygote (this process) lives
        assert (not_empty / "keep").exists()  # rmdir only: never removes content
    finally:
        (not_empty / "keep").unlink(missing_ok=True)
        for d in (dead, alive, not_empty):
            if d.exists():
                d.rmdir()


def test_a_new_zygote_sweeps_the_jail_of_a_killed_one() -> None:
    folder = Path(tempfile.gettempdir())
    with SandboxPool(Limits(memory_mb=512, cpu_seconds=5, wall_seconds=5)) as first:
        zygote = first._builtin._proc  # the built-in metrics' zygote
        assert zygote is not None
        jails = list(folder.glob(f"{JAIL_PREFIX}{zygote.pid}-*"))
        assert len(jails) == 1
        os.kill(zygote.pid, signal.SIGKILL)
        zygote.wait()
        assert jails[0].exists()  # killed: it could not remove its jail
    with SandboxPool(Limits(memory_mb=512, cpu_seconds=5, wall_seconds=5)) as second:
        assert second._builtin._proc is not None
        assert not jails[0].exists()
