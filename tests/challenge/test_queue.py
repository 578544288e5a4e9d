"""The scoring queue's logic on dramatiq's StubBroker + Worker: duplicates, queue positions,
rescoring (atomic switch, failure, organizer route, CLI). Faults against a real Redis and real
worker processes are in test_queue_faults.py."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge import storage, tasks
from challenge.challenges import join_challenge, phases_of, reveal_private_leaderboard
from challenge.db import session_scope
from challenge.errors import NotFound
from challenge.models import (
    BoardEntry,
    Challenge,
    RescoreResult,
    RescoreRun,
    Submission,
    User,
    utcnow,
)
from challenge.rescoring import (
    apply_rescore,
    claim_rescore,
    record_rescore,
    rescore_phase,
    rescore_submission,
)
from challenge.schedule import advance_schedule
from challenge.settings import Settings
from challenge.submissions import (
    claim_for_scoring,
    create_submission,
    queue_position,
    record_interval,
    record_result,
)
from scoring.formats import SubmissionFormat
from scoring.grading import grade, load_solution
from scoring.metrics import MetricSpec
from tests.challenge.conftest import csrf_of, login, perfect_submission, random_submission
from tests.challenge.stub_workers import JOIN_TIMEOUT_MS, stub_broker_and_worker


def submit_frame(
    settings: Settings, engine: sa.Engine, challenge: Challenge, user: User, frame: pd.DataFrame
) -> int:
    """Store a prediction file and create its row, as an upload does (without sending it)."""
    body = frame.to_csv(index=False).encode()
    path = storage.new_upload_path(settings, challenge.slug, "pred.csv")
    path.write_bytes(body)
    with session_scope(engine) as session:
        sub = create_submission(
            session,
            challenge=challenge,
            user=user,
            stored_path=path,
            filename="pred.csv",
            size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )
        assert sub.id is not None
        return sub.id


def joined(engine: sa.Engine, challenge: Challenge, user: User) -> User:
    with session_scope(engine) as session:
        join_challenge(session, challenge=challenge, user=user)
    return user


@pytest.fixture
def queue_worker(app: Any) -> Iterator[Any]:
    """A StubBroker worker that drains the scoring and rescoring queues."""
    with stub_broker_and_worker() as (broker, worker):

        class Drainer:
            broker: Any

            def drain(self) -> None:
                for queue in ("scoring", "rescoring"):
                    broker.join(queue, timeout=JOIN_TIMEOUT_MS, fail_fast=True)  # type: ignore[call-arg]
                worker.join()

        drainer = Drainer()
        drainer.broker = broker
        yield drainer
    if tasks._context is not None and tasks._context._pool is not None:
        tasks._context._pool.close()
        tasks._context._pool = None


def reference_scores(settings: Settings, challenge: Challenge, path: str) -> tuple[float, float]:
    """Public and private score of a file graded in this process (no sandbox, no queue)."""
    fmt = SubmissionFormat.from_dict(challenge.submission_format)
    metric = MetricSpec.from_dict(challenge.metric)
    solution = load_solution(storage.solution_path(settings, challenge.slug), fmt, metric)
    result = grade(Path(path), solution, fmt, metric, bootstrap=0)
    assert result.status == "scored", result.message
    assert result.public is not None
    assert result.private is not None
    return result.public, result.private


def test_a_message_sent_three_times_scores_once(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    challenge = make_challenge()
    user = joined(engine, challenge, make_user("ann"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    for _ in range(3):
        tasks.score_submission.send(sid)
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    # Replaying after the result is stored changes nothing either.
    tasks.score_submission.send(sid)
    queue_worker.drain()
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        assert sub.status == "scored", sub.error_detail
        assert sub.results_recorded == 1
        assert sub.attempts == 1
        assert (sub.public_score, sub.private_score) == reference_scores(
            settings, challenge, sub.stored_path
        )


def test_queue_position_follows_send_order_across_challenges(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine
) -> None:
    first = make_challenge("first-higgs")
    second = make_challenge("second-higgs")
    user = joined(engine, first, make_user("bea"))
    joined(engine, second, user)
    frame = random_submission(settings, first.slug)
    ids = [
        submit_frame(settings, engine, first, user, frame),
        submit_frame(settings, engine, second, user, random_submission(settings, second.slug)),
        submit_frame(settings, engine, first, user, frame),
    ]
    base = dt.datetime.now(dt.UTC)
    with session_scope(engine) as session:
        # Sent in the order 2, 0, 1 (the first upload waited for the reconciler).
        for sid, offset in zip(ids, (5, 1, 9), strict=True):
            session.execute(
                sa.update(Submission)
                .where(Submission.id == sid)  # type: ignore[arg-type]
                .values(enqueued_at=base + dt.timedelta(seconds=offset))
            )

    def positions() -> list[int | None]:
        with Session(engine) as session:
            return [queue_position(session, session.get(Submission, sid)) for sid in ids]  # type: ignore[arg-type]

    assert positions() == [1, 0, 2]
    with session_scope(engine) as session:
        assert claim_for_scoring(session, ids[1], 60)
    # Being scored: 0 for itself and no longer ahead of the others.
    assert positions() == [0, 0, 1]
    with session_scope(engine) as session:
        record_result(session, ids[1], {"status": "scored", "public": 1.0, "private": 1.0})
        # A rescore of the finished one runs on its own queue and never counts here.
        rescore_submission(session, submission_id=ids[1], actor=admin(session))
    assert positions() == [0, None, 1]


def admin(session: Session) -> User:
    row = session.exec(select(User).where(User.role == "admin")).first()
    if row is None:
        row = User(username="root", email="root@example.org", password_hash="x", role="admin")
        session.add(row)
        session.flush()
    return row


def test_rescoring_a_phase_switches_all_scores_at_once(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    owner = make_user("olga", role="organizer")
    challenge = make_challenge(owner=owner)
    user = joined(engine, challenge, make_user("cid"))
    ids = [
        submit_frame(settings, engine, challenge, user, perfect_submission(settings, challenge.slug)),
        submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug)),
    ]
    for sid in ids:
        tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with Session(engine) as session:
        before = {sid: session.get(Submission, sid).public_score for sid in ids}  # type: ignore[union-attr]
        # The metric fix: a different regularisation term changes every AMS.
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.metric = {**row.metric, "b_reg": 100}
        session.add(row)
        session.commit()
        challenge = row
        phase = phases_of(session, challenge)[0]
    with session_scope(engine) as session:
        run = rescore_phase(session, phase_id=phase.id, actor=owner)  # type: ignore[arg-type]
    assert run.total == 2
    assert run.id is not None
    # Grade only the first one (as a worker would), then look at the leaderboard's source.
    tasks.rescore_one(run.id, ids[0])
    with Session(engine) as session:
        assert {sid: session.get(Submission, sid).public_score for sid in ids} == before  # type: ignore[union-attr]
        assert session.get(RescoreRun, run.id).state == "running"  # type: ignore[union-attr]
    # The rest through the queue; a duplicate of an already graded one is harmless.
    assert tasks.enqueue_rescore(engine, run.id) == 1
    tasks.rescore_one.send(run.id, ids[0])
    queue_worker.drain()
    with Session(engine) as session:
        assert session.get(RescoreRun, run.id).state == "applied"  # type: ignore[union-attr]
        for sid in ids:
            sub = session.get(Submission, sid)
            assert sub is not None
            assert sub.score_version == 1
            assert sub.results_recorded == 1
            assert sub.public_score != before[sid]
            assert (sub.public_score, sub.private_score) == reference_scores(
                settings, challenge, sub.stored_path
            )
        results = session.exec(select(RescoreResult).where(RescoreResult.run_id == run.id)).all()
        assert sorted(r.status for r in results) == ["scored", "scored"]
        # The materialized public board moved with them: the team's best new score.
        board = session.exec(select(BoardEntry).where(BoardEntry.phase_id == phase.id)).all()
        best = max(session.get(Submission, sid).public_score for sid in ids)  # type: ignore[union-attr,type-var]
        assert [b.score for b in board] == [best]
    # Applying again is a no-op.
    with session_scope(engine) as session:
        assert apply_rescore(session, run.id) == "applied"
    with Session(engine) as session:
        assert all(session.get(Submission, sid).score_version == 1 for sid in ids)  # type: ignore[union-attr]


def test_a_rescore_with_an_error_changes_nothing(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    owner = make_user("oleg", role="organizer")
    challenge = make_challenge(owner=owner)
    user = joined(engine, challenge, make_user("dan"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.metric = {**row.metric, "weight": "NoSuchColumn"}  # a broken "fix"
        session.add(row)
    with Session(engine) as session:
        before = session.get(Submission, sid)
        assert before is not None
        session.expunge(before)
    with session_scope(engine) as session:
        run = rescore_submission(session, submission_id=sid, actor=owner)
    assert run.id is not None
    tasks.enqueue_rescore(engine, run.id)
    queue_worker.drain()
    with Session(engine) as session:
        run_row = session.get(RescoreRun, run.id)
        assert run_row is not None
        assert run_row.state == "failed"
        assert "could not be rescored" in run_row.message
        after = session.get(Submission, sid)
        assert after is not None
        assert (after.status, after.public_score, after.score_version) == (
            before.status, before.public_score, 0
        )


def test_rescore_needs_the_organizer(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine
) -> None:
    challenge = make_challenge(owner=make_user("ona", role="organizer"))
    other = make_user("oz", role="organizer")
    user = joined(engine, challenge, make_user("eve"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    with session_scope(engine) as session:
        claim_for_scoring(session, sid, 60)
        record_result(session, sid, {"status": "scored", "public": 1.0, "private": 1.0})
        phase = phases_of(session, challenge)[0]
        for actor in (other, user):
            with pytest.raises(NotFound):
                rescore_submission(session, submission_id=sid, actor=actor)
            with pytest.raises(NotFound):
                rescore_phase(session, phase_id=phase.id, actor=actor)  # type: ignore[arg-type]


def test_organizer_rescores_from_the_page(
    client: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    owner = make_user("opal", role="organizer")
    challenge = make_challenge(owner=owner)
    user = joined(engine, challenge, make_user("fay"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    login(client, "opal")
    page = client.get("/organize")
    assert f'action="/organize/{challenge.slug}/rescore"' in page.text
    # No CSRF token: refused, nothing started.
    r = client.post(f"/organize/{challenge.slug}/rescore", data={}, follow_redirects=False)
    assert r.status_code == 400
    r = client.post(
        f"/organize/{challenge.slug}/rescore",
        data={"csrf_token": csrf_of(client, "/organize"), "submission_id": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303
    queue_worker.drain()
    with Session(engine) as session:
        runs = session.exec(select(RescoreRun)).all()
        assert [(r.state, r.total) for r in runs] == [("applied", 1)]
        sub = session.get(Submission, sid)
        assert sub is not None
        assert sub.score_version == 1
    assert "last rescore: applied — 1 submission(s) rescored." in client.get("/organize").text
    # Another organizer cannot rescore it.
    client.cookies.clear()
    make_user("otto", role="organizer")
    login(client, "otto")
    r = client.post(
        f"/organize/{challenge.slug}/rescore",
        data={"csrf_token": csrf_of(client, "/organize"), "submission_id": str(sid)},
        follow_redirects=False,
    )
    assert r.status_code == 404


def test_cli_rescore(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from challenge.cli import main

    challenge = make_challenge(owner=make_user("omar", role="organizer"))
    user = joined(engine, challenge, make_user("gus"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    monkeypatch.setenv("PODIUM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODIUM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PODIUM_LABEL_DIR", str(settings.label_dir))
    assert main(["challenge", "rescore", challenge.slug, "--submission", str(sid)]) == 0
    assert "1 submission, phase" in capsys.readouterr().out
    queue_worker.drain()
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        assert sub.score_version == 1
    assert main(["challenge", "rescore", "no-such-challenge"]) != 0


def test_participant_page_shows_the_queue_position(
    client: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine
) -> None:
    challenge = make_challenge()
    other = joined(engine, challenge, make_user("hal"))
    ahead = submit_frame(settings, engine, challenge, other, random_submission(settings, challenge.slug))
    tasks.enqueue_scoring(engine, ahead)
    make_user("ida")
    login(client, "ida")
    r = client.post(f"/c/{challenge.slug}/join",
                    data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}"), "accept": "yes"},
                    follow_redirects=False)
    assert r.status_code == 303
    body = random_submission(settings, challenge.slug).to_csv(index=False).encode()
    r = client.post(f"/c/{challenge.slug}/submit",
                    data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}")},
                    files={"file": ("pred.csv", body, "text/csv")}, follow_redirects=False)
    assert r.status_code == 303
    assert "1 ahead in the queue" in client.get(f"/c/{challenge.slug}/submissions").text
    with session_scope(engine) as session:
        assert claim_for_scoring(session, ahead, 60)
    assert "0 ahead in the queue" in client.get(f"/c/{challenge.slug}/submissions").text
    with session_scope(engine) as session:
        mine = session.exec(select(Submission).where(Submission.id != ahead)).one()
        assert claim_for_scoring(session, mine.id, 60)  # type: ignore[arg-type]
    assert "being scored" in client.get(f"/c/{challenge.slug}/submissions").text


def test_reconciler_resends_lost_rescores_and_applies_finished_runs(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    owner = make_user("opie", role="organizer")
    challenge = make_challenge(owner=owner)
    user = joined(engine, challenge, make_user("jo"))
    ids = [
        submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug, seed=s))
        for s in range(2)
    ]
    for sid in ids:
        tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with session_scope(engine) as session:
        phase = phases_of(session, challenge)[0]
        lost = rescore_phase(session, phase_id=phase.id, actor=owner)  # type: ignore[arg-type]
        stalled = rescore_submission(session, submission_id=ids[0], actor=owner)
    assert lost.id is not None
    assert stalled.id is not None
    # `lost` was never sent (broker down). `stalled` was graded but its worker died before the
    # switch: its result is in, the run still says running.
    with session_scope(engine) as session:
        assert claim_rescore(session, stalled.id, ids[0], 60)
        record_rescore(session, stalled.id, ids[0], {"status": "scored", "public": 2.0,
                                                     "private": 3.0})
    assert tasks.reconcile_once() == 2  # the two results of `lost`
    queue_worker.drain()
    with Session(engine) as session:
        assert session.get(RescoreRun, lost.id).state == "applied"  # type: ignore[union-attr]
        assert session.get(RescoreRun, stalled.id).state == "applied"  # type: ignore[union-attr]
        first = session.get(Submission, ids[0])
        assert first is not None
        assert first.score_version == 2
    # Nothing left to do.
    assert tasks.reconcile_once() == 0


def _grade_here(
    settings: Settings, challenge: Challenge, sub: Submission, **bootstrap: Any
) -> Any:
    fmt = SubmissionFormat.from_dict(challenge.submission_format)
    metric = MetricSpec.from_dict(challenge.metric)
    solution = load_solution(storage.solution_path(settings, challenge.slug), fmt, metric)
    return grade(Path(sub.stored_path), solution, fmt, metric, seed=sub.id or 0, **bootstrap)


def _scored_pair(
    settings: Settings, engine: sa.Engine, challenge: Challenge, make_user: Any, queue_worker: Any
) -> list[int]:
    ids = []
    for name, frame in (
        ("pia", perfect_submission(settings, challenge.slug)),
        ("quinn", random_submission(settings, challenge.slug)),
    ):
        user = joined(engine, challenge, make_user(name))
        ids.append(submit_frame(settings, engine, challenge, user, frame))
    for sid in ids:
        tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    return ids


def test_private_intervals_are_computed_when_the_board_is_revealed(
    app: Any, client: Any, make_challenge: Any, make_user: Any, settings: Settings,
    engine: sa.Engine, queue_worker: Any,
) -> None:
    owner = make_user("orla", role="organizer")
    challenge = make_challenge(owner=owner)
    ids = _scored_pair(settings, engine, challenge, make_user, queue_worker)
    with Session(engine) as session:
        for sid in ids:
            sub = session.get(Submission, sid)
            assert sub is not None
            assert sub.status == "scored", sub.error_detail
            # Scoring resamples the Public rows only, with the same seed as before the change.
            full = _grade_here(settings, challenge, sub, bootstrap=settings.score_bootstrap)
            assert (sub.public_score, sub.private_score) == (full.public, full.private)
            assert (sub.public_ci_low, sub.public_ci_high) == full.public_ci
            assert (sub.private_ci_low, sub.private_ci_high) == (None, None)
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        # Visible but not computed yet (the job is sent only after this commit).
        row.revealed_at = utcnow()
        phases_of(session, row)[0].closes_at = utcnow() - dt.timedelta(seconds=1)
    login(client, "orla")
    page = client.get(f"/c/{challenge.slug}/leaderboard?board=private")
    assert page.status_code == 200
    assert "computing…" in page.text
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.revealed_at = None
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        reveal_private_leaderboard(session, challenge=row, actor=admin(session), confirm=row.slug)
    queue_worker.drain()
    with Session(engine) as session:
        for sid in ids:
            sub = session.get(Submission, sid)
            assert sub is not None
            here = _grade_here(
                settings, challenge, sub, bootstrap=0, bootstrap_private=settings.score_bootstrap
            )
            assert here.private_ci is not None
            assert (sub.private_ci_low, sub.private_ci_high) == here.private_ci
            assert sub.private_ci_low < sub.private_ci_high  # type: ignore[operator]
    page = client.get(f"/c/{challenge.slug}/leaderboard?board=private")
    assert "computing…" not in page.text
    # Run again (a duplicate message): nothing left to do, nothing changes.
    assert tasks.grade_private_intervals(challenge.id) == 0


def test_the_scheduled_close_sends_the_job_and_the_reconciler_resends_it(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    challenge = make_challenge()
    ids = _scored_pair(settings, engine, challenge, make_user, queue_worker)
    with session_scope(engine) as session:
        phase = phases_of(session, challenge)[0]
        phase.closes_at = utcnow() - dt.timedelta(seconds=5)
        session.add(phase)
    # The broker is down when the schedule closes the phase: the message is lost.
    with (
        mock.patch.object(tasks.compute_private_intervals, "send", side_effect=OSError("down")),
        session_scope(engine) as session,
    ):
        kinds = {t.kind for t in advance_schedule(session)}
    assert {"closed", "private_revealed"} <= kinds
    queue_worker.drain()
    with Session(engine) as session:
        assert all(session.get(Submission, sid).private_ci_low is None for sid in ids)  # type: ignore[union-attr]
    # Too recent for the reconciler, then old enough.
    assert tasks.reconcile_once() == 0
    with session_scope(engine) as session:
        phase = phases_of(session, challenge)[0]
        phase.closes_at = utcnow() - dt.timedelta(seconds=settings.reconcile_after_seconds + 60)
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.revealed_at = phase.closes_at
        session.add(phase)
    assert tasks.reconcile_once() == 1
    queue_worker.drain()
    with Session(engine) as session:
        for sid in ids:
            sub = session.get(Submission, sid)
            assert sub is not None
            here = _grade_here(
                settings, challenge, sub, bootstrap=0, bootstrap_private=settings.score_bootstrap
            )
            assert (sub.private_ci_low, sub.private_ci_high) == here.private_ci
    assert tasks.reconcile_once() == 0


def test_a_submission_scored_after_the_reveal_gets_its_private_interval_at_once(
    app: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: sa.Engine,
    queue_worker: Any,
) -> None:
    challenge = make_challenge()
    user = joined(engine, challenge, make_user("rhea"))
    sid = submit_frame(settings, engine, challenge, user, random_submission(settings, challenge.slug))
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.revealed_at = utcnow()  # visible while the upload waits in the queue (a late one)
        phases_of(session, row)[0].closes_at = utcnow() - dt.timedelta(seconds=1)
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        full = _grade_here(settings, challenge, sub, bootstrap=settings.score_bootstrap)
        assert full.private_ci is not None
        assert (sub.public_ci_low, sub.public_ci_high) == full.public_ci
        assert (sub.private_ci_low, sub.private_ci_high) == full.private_ci



def test_the_score_is_stored_before_its_interval(
    app: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    queue_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    challenge = make_challenge()
    user = joined(engine, challenge, make_user("ivy"))
    sid = submit_frame(
        settings, engine, challenge, user, random_submission(settings, challenge.slug)
    )
    seen: list[tuple[Any, ...]] = []
    real = record_interval

    def look_then_record(session: Session, submission_id: int, result: dict[str, Any]) -> bool:
        # What a page shows between the two writes: the score, no interval yet.
        with Session(engine) as other:
            sub = other.get(Submission, submission_id)
            assert sub is not None
            entry = other.exec(select(BoardEntry).where(BoardEntry.submission_id == sid)).first()
            seen.append(
                (
                    sub.status,
                    sub.public_score,
                    sub.public_ci_low,
                    sub.finished_at,
                    entry.score if entry else None,
                    entry.ci_low if entry else "no row",
                )
            )
        return real(session, submission_id, result)

    monkeypatch.setattr(tasks, "record_interval", look_then_record)
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        clean = _grade_here(
            settings, challenge, sub, bootstrap=settings.score_bootstrap, bootstrap_private=0
        )
        assert seen == [("scored", clean.public, None, None, clean.public, None)]
        assert sub.status == "scored"
        assert sub.results_recorded == 1
        assert sub.finished_at is not None
        assert (sub.public_score, sub.private_score) == (clean.public, clean.private)
        assert (sub.public_ci_low, sub.public_ci_high) == clean.public_ci
        entry = session.exec(select(BoardEntry).where(BoardEntry.submission_id == sid)).one()
        assert (entry.ci_low, entry.ci_high) == clean.public_ci


def test_the_reconciler_finishes_an_interval_lost_with_its_worker(
    app: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: sa.Engine,
    queue_worker: Any,
) -> None:
    challenge = make_challenge()
    user = joined(engine, challenge, make_user("jon"))
    sid = submit_frame(
        settings, engine, challenge, user, random_submission(settings, challenge.slug)
    )
    tasks.enqueue_scoring(engine, sid)
    queue_worker.drain()
    with Session(engine) as session:
        done = session.get(Submission, sid)
        assert done is not None
        assert done.public_ci_low is not None
        expected = (done.public_ci_low, done.public_ci_high)
    # The worker died between the score and the interval.
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == sid)
            .values(public_ci_low=None, public_ci_high=None, finished_at=None)
        )
    assert tasks.reconcile_once() == 0  # the lease is still running
    with session_scope(engine) as session:
        session.execute(
            sa.update(Submission)
            .where(col(Submission.id) == sid)
            .values(scoring_started_at=utcnow() - dt.timedelta(hours=1))
        )
    assert tasks.reconcile_once() == 1
    queue_worker.drain()
    tasks.finish_interval.send(sid)  # a duplicate finds nothing left to do
    queue_worker.drain()
    assert tasks.reconcile_once() == 0
    with Session(engine) as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        assert (sub.public_ci_low, sub.public_ci_high) == expected
        assert sub.finished_at is not None
        assert (sub.results_recorded, sub.attempts) == (1, 1)
        entry = session.exec(select(BoardEntry).where(BoardEntry.submission_id == sid)).one()
        assert (entry.ci_low, entry.ci_high) == expected
