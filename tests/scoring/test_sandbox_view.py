"""The grading jail shows its FileView and nothing else (docs/security/sandbox.md).

Each test starts a real pool (the zygotes are ``python -m scoring.zygote`` subprocesses, started
the way the worker starts them) and grades with an organizer metric that tries to get at what it
must not see.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

import scoring
from scoring.metrics import MetricSpec
from scoring.sandbox import Limits, SandboxPool
from scoring.view import FileView, Mount, bwrap_arguments, grading_mounts, runtime_view
from tests.scoring.conftest import AMS, HIGGS_FORMAT, make_higgs

Files = Callable[..., tuple[Path, Path, pd.DataFrame, pd.DataFrame]]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the full jail needs root")
LIMITS = Limits(memory_mb=512, cpu_seconds=10, wall_seconds=20, max_processes=32)
CHECKOUT = Path(scoring.__file__).resolve().parent.parent

#: An organizer metric that opens each path and fails, naming them, unless every one is absent.
PROBE = """\
PATHS = {paths!r}

def score(solution, submission):
    outcomes = {{}}
    for path in PATHS:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            outcomes[path] = "read"
        except FileNotFoundError:
            outcomes[path] = "not found"
        except Exception as exc:
            outcomes[path] = type(exc).__name__
    visible = {{p: o for p, o in outcomes.items() if o != "not found"}}
    if visible:
        raise RuntimeError("VISIBLE: " + repr(visible))
    return 1.0
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A folder laid out like the demo's: var/ with another challenge's solution, the SQLite
    database, a client token file, and the scoring package itself (imported from here)."""
    root = tmp_path / "demo"
    labels = root / "var" / "labels" / "other-challenge"
    labels.mkdir(parents=True)
    solution, _ = make_higgs(50, seed=5)
    solution.to_parquet(labels / "solution.parquet")
    with sqlite3.connect(root / "var" / "podium.db") as db:
        db.execute("create table api_token (token_hash text)")
        db.execute("insert into api_token values ('0123abcd')")
    (root / "var" / "tokens.json").write_text('{"token": "pdm_secret"}')
    shutil.copytree(
        CHECKOUT / "scoring", root / "scoring", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def secrets_of(demo: Path) -> list[str]:
    return [
        str(demo / "var" / "labels" / "other-challenge" / "solution.parquet"),
        str(demo / "var" / "podium.db"),
        str(demo / "var" / "tokens.json"),
        "var/podium.db",  # relative: from the working directory, wherever the jail puts it
        "/etc/shadow",
        "/etc/passwd",
    ]


def probe_metric(store: Path, paths: list[str]) -> MetricSpec:
    store.mkdir(exist_ok=True)
    (store / "metric.py").write_text(PROBE.format(paths=paths))
    return MetricSpec.from_dict({"name": "python", "file": "metric.py"})


@pytest.fixture(scope="module")
def plain_pool() -> Iterator[SandboxPool]:
    with SandboxPool(LIMITS) as pool:
        yield pool


@pytest.fixture
def pool_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path, bool], SandboxPool]]:
    """Start a pool from a working directory, with or without the checkout on PYTHONPATH."""
    pools: list[SandboxPool] = []

    def start(cwd: Path, checkout_on_path: bool) -> SandboxPool:
        monkeypatch.chdir(cwd)
        if checkout_on_path:
            monkeypatch.setenv("PYTHONPATH", str(CHECKOUT))
        else:
            monkeypatch.delenv("PYTHONPATH", raising=False)
        pools.append(SandboxPool(LIMITS))
        return pools[-1]

    yield start
    for pool in pools:
        pool.close()


@needs_root
def test_a_worker_started_in_the_demo_folder_shows_none_of_it(
    pool_in: Callable[[Path, bool], SandboxPool], demo: Path, higgs_files: Files, tmp_path: Path
) -> None:
    # python -m puts the working directory on sys.path, and scoring is imported from there.
    pool = pool_in(demo, False)
    sub_path, sol_path, _, _ = higgs_files(200)
    metric = probe_metric(tmp_path / "store", [*secrets_of(demo), str(demo / "scoring.txt")])
    (demo / "scoring.txt").write_text("beside the package")
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path / "store", bootstrap=0
    )
    assert result.status == "scored", result.detail
    assert result.public == 1.0
    sources = {m.source for m in pool.view}
    assert str(demo / "scoring") in sources  # the package alone, not the folder holding it
    assert not any(s == str(demo) or s.startswith(str(demo / "var")) for s in sources)


@needs_root
def test_a_worker_started_from_the_root_with_a_checkout_on_its_path_shows_none_of_it(
    pool_in: Callable[[Path, bool], SandboxPool], demo: Path, higgs_files: Files, tmp_path: Path
) -> None:
    pool = pool_in(Path("/"), True)
    sub_path, sol_path, _, _ = higgs_files(200)
    beside_the_package = [str(CHECKOUT / "pyproject.toml"), str(CHECKOUT / "challenge" / "db.py")]
    metric = probe_metric(tmp_path / "store", [*secrets_of(demo), *beside_the_package])
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path / "store", bootstrap=0
    )
    assert result.status == "scored", result.detail
    # The same files are there for the worker, so "not found" is the jail's doing.
    assert all(Path(p).exists() for p in beside_the_package)
    sources = {m.source for m in pool.view}
    assert str(CHECKOUT / "scoring") in sources
    assert str(CHECKOUT) not in sources
    assert "/" not in sources


@needs_root
def test_the_job_sees_its_own_files_only_under_input(
    pool_in: Callable[[Path, bool], SandboxPool], higgs_files: Files, tmp_path: Path
) -> None:
    pool = pool_in(tmp_path, True)
    sub_path, sol_path, _, _ = higgs_files(200)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "metric.py").write_text(
        "import os\n"
        "def score(solution, submission):\n"
        "    seen = sorted(os.listdir('/input')), sorted(os.listdir('/input/metric'))\n"
        "    assert seen == (['metric', 'solution.parquet', 'submission'], ['metric.py']), seen\n"
        f"    for path in ({str(sub_path)!r}, {str(sol_path)!r}):\n"
        "        try:\n"
        "            open(path)\n"
        "        except FileNotFoundError:\n"
        "            continue\n"
        "        raise AssertionError(path + ' is visible at its host path')\n"
        "    return 1.0\n"
    )
    metric = MetricSpec.from_dict({"name": "python", "file": "metric.py"})
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path / "store", bootstrap=0
    )
    assert result.status == "scored", result.detail


def test_the_worker_environment_does_not_reach_the_grading_code(
    pool_in: Callable[[Path, bool], SandboxPool],
    monkeypatch: pytest.MonkeyPatch,
    higgs_files: Files,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PODIUM_SECRET_KEY", "a-secret-the-metric-must-not-see")
    monkeypatch.setenv("PODIUM_DATABASE_URL", "postgresql://podium:hunter2@db/podium")
    pool = pool_in(tmp_path, True)
    sub_path, sol_path, _, _ = higgs_files(100)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "metric.py").write_text(
        "import os\n"
        "def score(solution, submission):\n"
        "    leaked = {k: v for k, v in os.environ.items() if 'PODIUM' in k or 'hunter2' in v}\n"
        "    if leaked:\n"
        "        raise RuntimeError(f'LEAKED {leaked}')\n"
        "    return 1.0\n"
    )
    metric = MetricSpec.from_dict({"name": "python", "file": "metric.py"})
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path / "store", bootstrap=0
    )
    assert result.status == "scored", result.detail


def test_organizer_code_never_shares_memory_with_another_challenges_solution(
    pool_in: Callable[[Path, bool], SandboxPool], higgs_files: Files, tmp_path: Path
) -> None:
    pool = pool_in(tmp_path, True)
    # Challenge A (a built-in metric) is graded first: its solution is now kept warm.
    other, other_sub = make_higgs(300, seed=8)
    other["EventId"] += 7_000_000_000
    other_sub["EventId"] += 7_000_000_000
    other.to_parquet(tmp_path / "other.parquet")
    other_sub.to_csv(tmp_path / "other.csv", index=False)
    warm = pool.grade(
        tmp_path / "other.csv", tmp_path / "other.parquet", HIGGS_FORMAT, AMS, bootstrap=0
    )
    assert warm.status == "scored", warm.detail
    # Challenge B's organizer metric looks for A's rows among every object of its process.
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "metric.py").write_text(
        "import gc\nimport pandas as pd\n"
        "def score(solution, submission):\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, pd.DataFrame) and 'EventId' in o.columns and len(o) \\\n"
        "                and o['EventId'].max() >= 7_000_000_000:\n"
        "            raise RuntimeError('FOUND another challenge s solution in memory')\n"
        "    return 1.0\n"
    )
    sub_path, sol_path, _, _ = higgs_files(200)
    metric = MetricSpec.from_dict({"name": "python", "file": "metric.py"})
    result = pool.grade(
        sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=tmp_path / "store", bootstrap=0
    )
    assert result.status == "scored", result.detail


@pytest.mark.parametrize(
    "name", ["/etc/shadow", "../metric.py", "sub/metric.py", "missing.py", "link.py"]
)
def test_a_metric_file_outside_the_store_is_refused_unread(
    name: str, plain_pool: SandboxPool, higgs_files: Files, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "sub").mkdir()
    (store / "sub" / "metric.py").write_text("def score(a, b):\n    return 1.0\n")
    secret = tmp_path / "metric.py"
    secret.write_text("SECRET FIRST LINE\n")
    (store / "link.py").symlink_to(secret)
    sub_path, sol_path, _, _ = higgs_files(50)
    metric = MetricSpec.from_dict({"name": "python", "file": name})
    result = plain_pool.grade(sub_path, sol_path, HIGGS_FORMAT, metric, metric_dir=store)
    assert result.status == "error"
    assert "metric store" in result.detail
    assert "SECRET" not in result.detail
    assert "root:" not in result.detail


def test_grading_mounts_put_the_job_files_under_input(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("x")
    mounts = grading_mounts(
        str(tmp_path / "s.csv"), str(tmp_path / "sol.parquet"), str(tmp_path / "m.py")
    )
    assert [(m.target, m.writable) for m in mounts] == [
        ("/input/submission", False),
        ("/input/solution.parquet", False),
        ("/input/metric/m.py", False),
    ]
    view = FileView(()).with_mounts(mounts)
    assert view.target_of(str(tmp_path / "s.csv")) == "/input/submission"
    assert view.target_of(str(tmp_path)) is None


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bubblewrap_builds_the_same_view(demo: Path, tmp_path: Path) -> None:
    view = runtime_view().with_mounts([Mount(str(tmp_path / "input.txt"), "/input/data.txt")])
    (tmp_path / "input.txt").write_text("the job's own file")
    script = (
        "import numpy, pandas, scoring.view\n"
        f"print(open('/input/data.txt').read())\n"
        f"for path in {[*secrets_of(demo), str(CHECKOUT / 'pyproject.toml')]!r}:\n"
        "    try:\n        open(path)\n    except FileNotFoundError:\n        continue\n"
        "    raise SystemExit('VISIBLE ' + path)\n"
    )
    done = subprocess.run(
        [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            *bwrap_arguments(view),
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=demo,
        check=False,
        env={"PATH": "/usr/bin", "PYTHONPATH": str(CHECKOUT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the job's own file"


def _jail_outcome(view: FileView, required: bool) -> str:
    """Enter a jail in a forked child; say whether it refused, or what it could read after."""
    from scoring.zygote import enter_jail

    root = tempfile.mkdtemp(prefix="podium-test-jail-")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        try:
            try:
                enter_jail(root, 200_123, asdict(LIMITS), view, required=required)
            except OSError:
                outcome = "refused"
            else:
                outcome = "host files visible" if os.path.exists("/etc/hostname") else "jailed"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    os.rmdir(root)
    return outcome


@needs_root
def test_a_job_whose_jail_cannot_be_built_is_refused_not_run_open(tmp_path: Path) -> None:
    broken = runtime_view().with_mounts([Mount(str(tmp_path / "gone.csv"), "/input/submission")])
    assert _jail_outcome(runtime_view(), required=True) == "jailed"
    assert _jail_outcome(broken, required=True) == "refused"
    # What ``required`` prevents: without it the same failure leaves the host's files in view.
    assert _jail_outcome(broken, required=False) == "host files visible"


def test_a_metric_given_as_source_needs_no_file(
    plain_pool: SandboxPool, higgs_files: Files
) -> None:
    sub_path, sol_path, _, _ = higgs_files(100)
    metric = MetricSpec.from_dict(
        {"name": "python", "source": "def score(solution, submission):\n    return 0.75\n"}
    )
    result = plain_pool.grade(sub_path, sol_path, HIGGS_FORMAT, metric, bootstrap=0)
    assert result.status == "scored", result.detail
    assert result.public == 0.75
