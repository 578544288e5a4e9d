"""Codabench tasks run step by step in the jail (scoring/coderun.py), on the test bundles."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from scoring.coderun import CodeRunError, Program, Task, expand_command, run_task
from scoring.jail import Budget, host_capabilities

BUNDLES = Path(__file__).parents[1] / "bundles" / "codabench"
BUDGET = Budget(cpu_seconds=30, wall_seconds=60, memory_mb=512, disk_mb=64, processes=32)

needs_jail = pytest.mark.skipif(
    os.geteuid() != 0 or not host_capabilities()["complete"],
    reason="the code-run jail needs root, bubblewrap, seccomp and cgroups",
)


def results_task() -> Task:
    root = BUNDLES / "results-task"
    return Task(
        scoring_program=Program.load(root / "scoring_program", role="scoring_program"),
        reference_data=root / "reference_data",
    )


def code_task(root: Path = BUNDLES / "code-task") -> Task:
    return Task(
        scoring_program=Program.load(root / "scoring_program", role="scoring_program"),
        ingestion_program=Program.load(root / "ingestion_program", role="ingestion_program"),
        input_data=root / "input_data",
        reference_data=root / "reference_data",
    )


def model_zip(tmp_path: Path, code: str) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "model.py").write_text(textwrap.dedent(code))
    return folder


def test_legacy_placeholders_become_the_jail_paths() -> None:
    assert expand_command("python3 $program/score.py $input $output", step="scoring") == (
        "python3 /app/program/score.py /app/input /app/output"
    )
    assert (
        expand_command(
            "python $ingestion_program/run.py $input $output $submission_program $shared",
            step="ingestion",
        )
        == "python /app/program/run.py /app/input_data /app/output /app/ingested_program /app/shared"
    )


def test_a_command_asking_for_hidden_data_in_ingestion_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metadata.yaml").write_text("command: python $program/run.py $hidden\n")
    with pytest.raises(CodeRunError, match=r"\$hidden"):
        Program.load(tmp_path, role="ingestion_program")


def test_a_program_without_command_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "metadata.yaml").write_text("description: no command\n")
    with pytest.raises(CodeRunError, match=r"ingestion_program: metadata\.yaml has no 'command'"):
        Program.load(tmp_path, role="ingestion_program")


@needs_jail
def test_results_submission_is_scored_by_the_scoring_program(tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    submission.mkdir()
    shutil.copy(BUNDLES / "results-task" / "reference_data" / "labels.csv",
                submission / "predictions.csv")  # fmt: skip
    outcome = run_task(results_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "scored", (outcome.message, outcome.scoring)
    assert outcome.scores == {"accuracy": 1.0, "efficiency": 1.0}
    assert outcome.detailed_html is not None
    assert "40 of 40 correct" in outcome.detailed_html
    assert outcome.ingestion is None


@needs_jail
def test_results_submission_without_the_file_fails_without_the_scoring_log(
    tmp_path: Path,
) -> None:
    submission = tmp_path / "submission"
    submission.mkdir()
    outcome = run_task(results_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "failed"
    assert outcome.message == (
        "The scoring program failed on this submission (exit code 1); "
        "the organizers can read its log."
    )
    assert outcome.scoring is not None
    assert "predictions.csv is missing" in outcome.scoring.stderr  # for the organizers


@needs_jail
def test_model_is_trained_run_and_scored_in_two_columns(tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(BUNDLES / "code-task" / "starting_kit", submission)
    outcome = run_task(code_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "scored", (outcome.message, outcome.ingestion, outcome.scoring)
    assert set(outcome.scores) == {"accuracy", "duration"}
    assert outcome.scores["accuracy"] > 0.9
    assert outcome.ingestion is not None
    assert "ingestion done" in outcome.ingestion.stdout
    assert set(outcome.usage()) == {"ingestion", "scoring"}


@needs_jail
def test_failing_model_shows_its_traceback_in_the_ingestion_log(tmp_path: Path) -> None:
    submission = model_zip(
        tmp_path,
        """
        class Model:
            def fit(self, X, y):
                raise ValueError("my model is broken")
        """,
    )
    outcome = run_task(code_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "failed"
    assert outcome.message.startswith("Your code failed in the ingestion step (exit code 1)")
    assert outcome.ingestion is not None
    assert "ValueError: my model is broken" in outcome.ingestion.stderr
    assert outcome.scoring is None


@needs_jail
def test_model_cannot_find_the_reference_data(tmp_path: Path) -> None:
    submission = model_zip(
        tmp_path,
        """
        import os
        found = []
        for root, dirs, files in os.walk('/'):
            if root.startswith(('/proc', '/sys', '/usr', '/dev')):
                dirs[:] = []
                continue
            found += [os.path.join(root, f) for f in files if f == 'test_labels.csv']
        print('FOUND', found)

        class Model:
            def fit(self, X, y):
                pass

            def predict(self, X):
                return [0 for _ in X]
        """,
    )
    outcome = run_task(code_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.ingestion is not None
    assert "FOUND []" in outcome.ingestion.stdout, outcome.ingestion.stdout
    assert outcome.status == "scored"


@needs_jail
def test_scoring_program_never_sees_the_participants_code(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLES / "code-task", bundle)
    (bundle / "scoring_program" / "score.py").write_text(
        textwrap.dedent(
            """
            import json, os
            seen = os.path.exists('/app/ingested_program') or any(
                f.endswith('.py') for _, _, files in os.walk('/app/input') for f in files)
            json.dump({'accuracy': 1.0, 'sees_code': float(seen)}, open('/app/output/scores.json', 'w'))
            """
        )
    )
    submission = tmp_path / "submission"
    shutil.copytree(bundle / "starting_kit", submission)
    outcome = run_task(code_task(bundle), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "scored", (outcome.message, outcome.scoring)
    assert outcome.scores["sees_code"] == 0.0


@needs_jail
def test_model_over_its_memory_budget_gets_one_line(tmp_path: Path) -> None:
    submission = model_zip(
        tmp_path,
        """
        class Model:
            def fit(self, X, y):
                self.hog = b'x' * (10 << 30)
        """,
    )
    outcome = run_task(code_task(), submission, tmp_path / "work", budget=BUDGET)
    assert outcome.status == "failed"
    assert outcome.message == "Stopped: the memory budget (512 MB) was exceeded."
