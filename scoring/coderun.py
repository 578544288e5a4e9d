"""Run one Codabench task (ingestion, then scoring) on a submission, each step in the jail.

The folder layout and the commands are Codabench's (its compute worker's ``/app`` layout, the
``command`` of each program's ``metadata.yaml``), so an organizer's programs run unchanged:

=================  ===========================  ================================
inside the jail    ingestion step               scoring step
=================  ===========================  ================================
/app/program       ingestion program (ro)       scoring program (ro)
/app/ingested_…    the submission (ro)          —
/app/input_data    input data (ro)              —
/app/input/ref     —                            reference data (ro)
/app/input/res     —                            ingestion output, or the
                                                submission itself (ro)
/app/output        predictions (rw)             scores.json, detailed HTML (rw)
/app/shared        shared folder (rw)           shared folder (ro)
=================  ===========================  ================================

The participant's code (ingestion step) never sees ``reference_data``; the scoring program never
sees the participant's code. Legacy placeholders in a command (``$program``, ``$input``,
``$output``, ``$shared``, ``$submission_program``, ``$ingestion_program``, ``$predictions``,
``$tmp``) are replaced by those paths; ``$hidden`` (reference data given to the ingestion step)
is refused by name.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scoring.jail import Budget, Mount, RunResult, read_output_file, run_jailed, runtime_mounts

MAX_SCORES_BYTES = 1 << 20
MAX_DETAILED_BYTES = 4 << 20
DETAILED_NAMES = ("detailed_results.html", "detailed_results.htm")


class CodeRunError(ValueError):
    """A program folder or command Podium cannot run as given; the message names what to fix."""


@dataclass(frozen=True)
class Program:
    """An organizer's program folder and the command its ``metadata.yaml`` gives."""

    path: Path
    command: str

    @classmethod
    def load(cls, path: Path, *, role: str) -> Program:
        for name in ("metadata.yaml", "metadata.yml", "metadata"):
            meta = path / name
            if meta.is_file():
                break
        else:
            raise CodeRunError(
                f"{role}: no metadata.yaml in {path.name}/ (it gives the 'command')."
            )
        try:
            raw = yaml.safe_load(meta.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CodeRunError(f"{role}: {meta.name} is not valid YAML ({exc}).") from exc
        if not isinstance(raw, dict) or not str(raw.get("command") or "").strip():
            raise CodeRunError(f"{role}: {meta.name} has no 'command' key.")
        command = str(raw["command"]).strip()
        if "$hidden" in command:
            raise CodeRunError(
                f"{role}: command uses $hidden (the reference data); Podium never shows reference "
                "data to the step that runs participants' code."
            )
        return cls(path=path, command=command)


@dataclass(frozen=True)
class Task:
    """One Codabench task: its programs and data folders (already unpacked)."""

    scoring_program: Program
    ingestion_program: Program | None = None
    input_data: Path | None = None
    reference_data: Path | None = None


@dataclass
class TaskOutcome:
    """What a task run gave: scores by leaderboard key, or a failure with a message."""

    status: str  # scored | failed | error
    message: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    detailed_html: str | None = None
    ingestion: RunResult | None = None
    scoring: RunResult | None = None

    def usage(self) -> dict[str, Any]:
        return {
            step: result.usage()
            for step, result in (("ingestion", self.ingestion), ("scoring", self.scoring))
            if result is not None
        }


_PLACEHOLDERS_INGESTION = {
    "$ingestion_program": "/app/program",
    "$submission_program": "/app/ingested_program",
    "$predictions": "/app/output",
    "$program": "/app/program",
    "$input": "/app/input_data",
    "$output": "/app/output",
    "$shared": "/app/shared",
    "$tmp": "/tmp",  # noqa: S108 - the jail's own tmpfs
}
_PLACEHOLDERS_SCORING = {
    **_PLACEHOLDERS_INGESTION,
    "$submission_program": "/app/input/res",
    "$predictions": "/app/input/res",
    "$input": "/app/input",
}


def expand_command(command: str, *, step: str) -> str:
    """Replace Codabench's legacy ``$name`` placeholders by the jail's paths (longest first)."""
    table = _PLACEHOLDERS_INGESTION if step == "ingestion" else _PLACEHOLDERS_SCORING
    pattern = re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], command)


def read_scores(output: Path) -> dict[str, float]:
    """``scores.json`` (or the legacy ``scores.txt``, ``key: value`` lines) a scoring step wrote."""
    raw = read_output_file(output, "scores.json", MAX_SCORES_BYTES)
    if raw is not None:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CodeRunError(f"scores.json is not valid JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise CodeRunError('scores.json must be an object such as {"accuracy": 0.9}.')
    else:
        text = read_output_file(output, "scores.txt", MAX_SCORES_BYTES)
        if text is None:
            raise CodeRunError("the scoring program wrote no scores.json in /app/output.")
        data = {}
        for line in text.decode(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                data[key.strip()] = value.strip()
    scores: dict[str, float] = {}
    for key, value in data.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # Codabench ignores keys that are not scores too (e.g. a 'notes' string)
        if math.isfinite(number):
            scores[str(key)] = number
    return scores


def run_task(
    task: Task,
    submission: Path,
    work: Path,
    *,
    budget: Budget,
    scoring_budget: Budget | None = None,
    python_prefixes: Sequence[str | Path] = (),
    allow_partial: bool = False,
    log_limit: int = 64 << 10,
) -> TaskOutcome:
    """Run ingestion (if the task has one) on ``submission``, then scoring; never raises for what
    the programs do.

    ``work`` is a fresh folder for the run's outputs; ``python_prefixes`` the challenge's Python
    environment (default: the worker's own). A result submission (no ingestion program) is
    shown to the scoring program as ``/app/input/res``.
    """
    runtime = runtime_mounts(python_prefixes)
    env_bin = [f"{Path(p).resolve()}/bin" for p in python_prefixes]
    env = {"PATH": ":".join([*env_bin, "/usr/local/bin", "/usr/bin", "/bin"])}
    shared = work / "shared"
    predictions = work / "predictions"
    scored = work / "scores"
    for folder in (shared, predictions, scored):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    outcome = TaskOutcome(status="failed")
    if task.ingestion_program is not None:
        mounts = [
            Mount(task.ingestion_program.path, "/app/program"),
            Mount(submission, "/app/ingested_program"),
            Mount(predictions, "/app/output", writable=True),
            Mount(shared, "/app/shared", writable=True),
        ]
        if task.input_data is not None:
            mounts.append(Mount(task.input_data, "/app/input_data"))
        command = expand_command(task.ingestion_program.command, step="ingestion")
        outcome.ingestion = run_jailed(
            ["/bin/sh", "-c", command], mounts=mounts, budget=budget, runtime=runtime, env=env,
            cwd="/app/program", allow_partial=allow_partial, log_limit=log_limit,
        )  # fmt: skip
        if not outcome.ingestion.ok:
            outcome.message = (
                outcome.ingestion.message
                if outcome.ingestion.exceeded
                else f"Your code failed in the ingestion step "
                f"(exit code {outcome.ingestion.exit_code}); its output is below."
            )
            return outcome
        results = predictions
    else:
        results = submission
    mounts = [
        Mount(task.scoring_program.path, "/app/program"),
        Mount(results, "/app/input/res"),
        Mount(scored, "/app/output", writable=True),
        Mount(shared, "/app/shared"),
    ]
    if task.reference_data is not None:
        mounts.append(Mount(task.reference_data, "/app/input/ref"))
    command = expand_command(task.scoring_program.command, step="scoring")
    outcome.scoring = run_jailed(
        ["/bin/sh", "-c", command], mounts=mounts, budget=scoring_budget or budget,
        runtime=runtime, env=env, cwd="/app/program", allow_partial=allow_partial,
        log_limit=log_limit,
    )  # fmt: skip
    if not outcome.scoring.ok:
        # Its output may quote reference data: participants get the exit code, organizers the log.
        outcome.message = outcome.scoring.message if outcome.scoring.exceeded else (
            f"The scoring program failed on this submission (exit code "
            f"{outcome.scoring.exit_code}); the organizers can read its log."
        )  # fmt: skip
        return outcome
    try:
        outcome.scores = read_scores(scored)
    except CodeRunError as exc:
        outcome.status = "error"
        outcome.message = f"Scoring failed on the organizers' side: {exc}"
        return outcome
    for name in DETAILED_NAMES:
        html = read_output_file(scored, name, MAX_DETAILED_BYTES)
        if html is not None:
            outcome.detailed_html = html.decode(errors="replace")
            break
    outcome.status = "scored"
    return outcome
