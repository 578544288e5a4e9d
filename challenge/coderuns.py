"""Code runs: a Codabench challenge's submissions, run on the ``code`` queue by their own workers.

The same guarantees as file scoring (challenge/tasks.py): the claim is a compare-and-set with a
lease, the result is stored only while the row is still ``scoring``, and the reconciler re-sends
what was lost; only the lease is the phase's budget (a run may take an hour) and the queue is
another, so that no code run ever waits in front of a 150 ms file score.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import dramatiq
import sqlalchemy as sa
from sqlmodel import col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before any actor exists
from challenge.codabench import column_scores, safe_extract
from challenge.db import session_scope
from challenge.errors import BadRequest
from challenge.models import Challenge, Phase, Submission, utcnow
from challenge.submissions import claim_for_scoring, record_result
from challenge.tasks import MAX_INFRA_RETRIES, InfrastructureError, context
from scoring.coderun import CodeRunError, Program, Task, TaskOutcome, run_task
from scoring.jail import Budget, JailUnavailable

log = logging.getLogger(__name__)
#: What a lease adds to the two steps' wall budgets (unzipping, reading scores, storing).
LEASE_MARGIN_SECONDS = 120.0


def run_dir(settings: Any, submission_id: int) -> Path:
    return Path(settings.data_dir) / "coderuns" / str(submission_id)


def detailed_results_path(settings: Any, submission_id: int) -> Path:
    return run_dir(settings, submission_id) / "detailed_results.html"


def phase_budget(phase: Phase) -> Budget:
    return Budget.from_dict(phase.budget or {})


def code_lease_seconds(phase: Phase) -> float:
    """How long a claimed code run may stay ``scoring`` before it counts as lost."""
    return 2 * phase_budget(phase).wall_seconds + LEASE_MARGIN_SECONDS


def task_of(challenge: Challenge, phase: Phase) -> Task:
    spec = challenge.codabench["tasks"][str(int(phase.budget.get("task", 0)))]

    def path(key: str) -> Path | None:
        return Path(spec[key]) if spec.get(key) else None

    ingestion = path("ingestion_program")
    scoring = path("scoring_program")
    assert scoring is not None
    return Task(
        scoring_program=Program.load(scoring, role="scoring_program"),
        ingestion_program=Program.load(ingestion, role="ingestion_program") if ingestion else None,
        input_data=path("input_data"),
        reference_data=path("reference_data"),
    )


def unpack_submission(stored: Path, filename: str, target: Path, limit_bytes: int) -> None:
    """A participant's zip unpacked (safely) into ``target``; any other file is put there as is
    (a results task may take a bare predictions file)."""
    target.mkdir(parents=True)
    if zipfile.is_zipfile(stored):
        with zipfile.ZipFile(stored) as zf:
            if sum(m.file_size for m in zf.infolist()) > limit_bytes:
                raise BadRequest(
                    f"The zip unpacks to more than {limit_bytes >> 20} MB (the phase's disk budget)."
                )
        safe_extract(stored, target)
        entries = list(target.iterdir())
        # A zip of a folder: its contents are the submission (as Codabench does).
        if len(entries) == 1 and entries[0].is_dir() and not (target / "model.py").exists():
            inner = entries[0]
            for child in inner.iterdir():
                child.rename(target / child.name)
            inner.rmdir()
    else:
        shutil.copy(stored, target / Path(filename).name)
    for dirpath, _dirs, files in os.walk(target):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read by the jailed step's own uid
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


def outcome_to_result(
    challenge: Challenge, phase: Phase, outcome: TaskOutcome
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(the result for record_result, the run log for the author, the column scores)."""
    ingestion = outcome.ingestion
    run_log: dict[str, Any] = {
        "usage": outcome.usage(),
        "hidden": bool(phase.budget.get("hide_output")),
        "stdout": ingestion.stdout if ingestion else "",
        "stderr": ingestion.stderr if ingestion else "",
        "exceeded": (ingestion.exceeded if ingestion else None)
        or (outcome.scoring.exceeded if outcome.scoring else None),
    }
    organizer_detail = ""
    if outcome.scoring is not None:
        organizer_detail = (
            f"scoring program exit code {outcome.scoring.exit_code}\n"
            f"--- stdout ---\n{outcome.scoring.stdout}\n--- stderr ---\n{outcome.scoring.stderr}"
        )
    seconds = sum(u.get("wall_seconds", 0.0) for u in run_log["usage"].values())
    if outcome.status == "scored":
        scores = column_scores(challenge.codabench["columns"], outcome.scores)
        ranking = challenge.codabench["ranking"]
        if ranking not in scores:
            return (
                {"status": "error", "duration_ms": seconds * 1000,
                 "message": "Scoring failed on the organizers' side; they have been told.",
                 "detail": f"scores.json has no '{ranking}' (the ranking column): "
                           f"{sorted(outcome.scores)}\n{organizer_detail}"},
                run_log, scores,
            )  # fmt: skip
        return (
            {"status": "scored", "public": scores[ranking], "private": None,
             "duration_ms": seconds * 1000, "detail": organizer_detail},
            run_log, scores,
        )  # fmt: skip
    # A results submission the scoring program rejects is like an invalid file (no quota);
    # code that ran and failed used the compute and counts.
    status = "invalid" if ingestion is None and outcome.status == "failed" else "error"
    return (
        {"status": status, "message": outcome.message, "detail": organizer_detail,
         "duration_ms": seconds * 1000},
        run_log, {},
    )  # fmt: skip


_published = False


def publish_jail_once(allow_partial: bool) -> None:
    """Tell /health and the admin page what this worker's host gives the jail (once per process)."""
    global _published
    if _published:
        return
    _published = True
    from challenge.health import publish_code_jail
    from scoring.jail import host_capabilities

    client = getattr(dramatiq.get_broker(), "client", None)
    publish_code_jail(client, {**host_capabilities(), "partial_allowed": allow_partial})


def grade_code_submission(submission_id: int) -> bool:
    """Claim, run and store one code submission; False when another worker has it. Idempotent."""
    ctx = context()
    settings = ctx.settings
    publish_jail_once(settings.code_allow_partial_isolation)
    with session_scope(ctx.engine) as session:
        sub = session.get(Submission, submission_id)
        if sub is None:
            return False
        phase = session.get(Phase, sub.phase_id)
        challenge = session.get(Challenge, sub.challenge_id)
        assert phase is not None
        assert challenge is not None
        session.expunge(phase)
        session.expunge(challenge)
        stored, filename = Path(sub.stored_path), sub.filename
        if not claim_for_scoring(session, submission_id, code_lease_seconds(phase)):
            log.info("code submission %s already claimed or finished; skipping", submission_id)
            return False
    budget = phase_budget(phase)
    work = run_dir(settings, submission_id)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chmod(work, 0o700)
    prefix = (challenge.codabench.get("environment") or {}).get("prefix")
    try:
        try:
            unpack_submission(stored, filename, work / "submission", budget.disk_mb << 20)
            outcome = run_task(
                task_of(challenge, phase), work / "submission", work / "steps",
                budget=budget, python_prefixes=[prefix] if prefix else [],
                allow_partial=settings.code_allow_partial_isolation,
                log_limit=settings.code_log_kb << 10,
            )  # fmt: skip
            result, run_log, scores = outcome_to_result(challenge, phase, outcome)
            if outcome.detailed_html is not None and challenge.codabench.get("detailed_results"):
                detailed_results_path(settings, submission_id).write_text(outcome.detailed_html)
                run_log["detailed"] = True
        except (BadRequest, zipfile.BadZipFile) as exc:
            result = {"status": "invalid", "message": str(exc) or "Not a valid zip file.",
                      "detail": ""}  # fmt: skip
            run_log, scores = {}, {}
        except JailUnavailable as exc:
            log.error("code run %s refused: %s", submission_id, exc)
            result = {
                "status": "error",
                "message": "This challenge's code cannot run yet: the server cannot isolate it. "
                "The organizers have been told.",
                "detail": f"the jail is incomplete on this worker: {exc}. Fix the host, or let "
                "an admin set PODIUM_CODE_ALLOW_PARTIAL_ISOLATION (docs/security/codabench.md).",
            }
            run_log, scores = {}, {}
        except CodeRunError as exc:
            result = {"status": "error", "detail": str(exc),
                      "message": "Scoring failed on the organizers' side; they have been told."}  # fmt: skip
            run_log, scores = {}, {}
    except Exception as exc:
        log.exception("code run %s failed on the worker", submission_id)
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else 0
        if retries < MAX_INFRA_RETRIES:
            with session_scope(ctx.engine) as session:
                session.execute(
                    sa.update(Submission)
                    .where(col(Submission.id) == submission_id, col(Submission.status) == "scoring")
                    .values(status="received")
                )
            raise InfrastructureError(str(exc)) from exc
        # Out of retries: an error the organizers see, as for files (challenge/tasks.py).
        result = {
            "status": "error",
            "detail": f"{type(exc).__name__}: {exc}",
            "message": "Running your code failed on our side. The organizers have been told.",
        }
        run_log, scores = {}, {}
    finally:
        for folder in ("submission", "steps"):
            shutil.rmtree(work / folder, ignore_errors=True)
    with session_scope(ctx.engine) as session:
        # Scores and log first, in the transaction that stores the result: both or neither.
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == submission_id, col(Submission.status) == "scoring")
            .values(scores=scores, run_log=run_log)
        )
        record_result(session, submission_id, result)
    return True


@dramatiq.actor(
    queue_name="code",
    max_retries=MAX_INFRA_RETRIES,
    min_backoff=500,
    max_backoff=30_000,
    time_limit=48 * 3600 * 1000,  # the jail enforces the phase's wall budget
)
def run_code_submission(submission_id: int) -> None:
    """Run one code submission (ingestion and scoring programs) and store its scores."""
    grade_code_submission(submission_id)


def stuck_code_runs(session: Any, now: dt.datetime) -> list[int]:
    """Code submissions whose run lease expired (their worker died); per phase budget."""
    rows = session.exec(
        select(Submission.id, Submission.scoring_started_at, Phase)
        .join(Phase, col(Phase.id) == col(Submission.phase_id))
        .join(Challenge, col(Challenge.id) == col(Submission.challenge_id))
        .where(col(Submission.status) == "scoring", col(Challenge.kind) == "codabench")
    ).all()
    return [
        int(i)
        for i, started, phase in rows
        if started is not None and started < now - dt.timedelta(seconds=code_lease_seconds(phase))
    ]


def is_code_challenge_submission(session: Any, submission_id: int) -> bool:
    kind = session.exec(
        select(Challenge.kind)
        .join(Submission, col(Submission.challenge_id) == col(Challenge.id))
        .where(col(Submission.id) == submission_id)
    ).first()
    return bool(kind == "codabench")


def mark_sent(engine: sa.Engine, submission_id: int) -> None:
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == submission_id)
            .values(enqueued_at=utcnow())
        )
