"""Leaderboards read stored scores only; the private one is shown after the reveal.

The public board of a phase is materialized in ``board_entry``: one row per team holding the
team's best on-time public score, rewritten whenever a score is recorded
(:func:`record_score_on_board`, called from ``submissions.record_result``) or teams merge. A page
of the board is then one indexed range query. The private board is computed on demand from the
teams' final selections (or their best public submissions when they picked none).

Ranks that are statistically tied are marked when the 95% bootstrap intervals of neighbouring
entries overlap. The web process never reads hidden labels, so a paired bootstrap (sharper) is not
possible here; overlap of marginal intervals is the conservative choice (see docs/leaderboards.md).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm
from sqlmodel import Session, col, func, select

from challenge.models import BoardEntry, Challenge, Phase, Submission, Team

PER_PAGE = 100
Z95 = 1.959964


@dataclass
class Entry:
    """One line of a leaderboard. ``rank`` is None for the organizer's baselines (not ranked)."""

    rank: int | None
    team_id: int
    team_name: str
    score: float
    ci_low: float | None
    ci_high: float | None
    submission_id: int
    submitted_at: dt.datetime
    entries: int
    public_rank: int | None = None  # on the private board: the rank this team had in public
    tied_with_above: bool = False  # its interval overlaps the one of the entry ranked just above
    baseline: str = ""

    @property
    def username(self) -> str:
        """The name shown for the entry (kept for API clients of the per-user boards)."""
        return self.team_name

    @property
    def user_id(self) -> int:
        return self.team_id

    @property
    def shake(self) -> int | None:
        """Places gained (+) or lost (-) from the public to the private board."""
        if self.public_rank is None or self.rank is None:
            return None
        return self.public_rank - self.rank


@dataclass
class BoardPage:
    entries: list[Entry]
    total: int
    page: int
    pages: int
    baselines: list[tuple[Entry, int]] = field(default_factory=list)  # (entry, would-be rank)


def higher_is_better_of(challenge: Challenge) -> bool:
    from scoring.metrics import MetricSpec

    if challenge.kind == "codabench":  # the ranking column's sorting (challenge/codabench.py)
        return bool(challenge.codabench.get("higher_is_better", True))
    return MetricSpec.from_dict(challenge.metric).higher_is_better


def _sort_key(score: float, higher_is_better: bool) -> float:
    return -score if higher_is_better else score


def intervals_overlap(a: Entry, b: Entry) -> bool:
    if a.ci_low is None or a.ci_high is None or b.ci_low is None or b.ci_high is None:
        return False
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


def mark_ties(entries: list[Entry], above: Entry | None = None) -> list[Entry]:
    """Flag each entry whose interval overlaps the one ranked just above it."""
    prev = above
    for entry in entries:
        entry.tied_with_above = prev is not None and intervals_overlap(prev, entry)
        prev = entry
    return entries


# ---------------------------------------------------------------- keeping the board


class Scored(Protocol):
    """What the board's choice reads of a submission (an ORM row or a plain result row)."""

    @property
    def public_score(self) -> float | None: ...
    @property
    def public_ci_low(self) -> float | None: ...
    @property
    def public_ci_high(self) -> float | None: ...


S = TypeVar("S", bound=Scored)


def ladder_margin(challenge: Challenge, sub: Scored) -> float | None:
    """The Ladder's step for this submission, or None when the ladder is off.

    A fixed ``leaderboard.ladder_margin`` from the bundle wins; otherwise one standard error of
    the new score, from its stored 95% bootstrap interval (noise-scaled, as Blum & Hardt suggest).
    """
    settings = challenge.leaderboard or {}
    if not settings.get("ladder"):
        return None
    if settings.get("ladder_margin") is not None:
        return float(settings["ladder_margin"])
    if sub.public_ci_low is None or sub.public_ci_high is None:
        return 0.0
    return (sub.public_ci_high - sub.public_ci_low) / (2 * Z95)


def _board_rows(session: Session, team_id: int, phase_id: int) -> list[Submission]:
    return list(
        session.exec(
            select(Submission)
            .where(
                Submission.team_id == team_id,
                Submission.phase_id == phase_id,
                Submission.status == "scored",
                col(Submission.is_late).is_(False),
                Submission.baseline_label == "",
                col(Submission.public_score).is_not(None),
            )
            .order_by(col(Submission.created_at), col(Submission.id))
        )
    )


def best_for_board(subs: Sequence[S], higher_is_better: bool, challenge: Challenge) -> S | None:
    """The submission a team shows: its best score (earliest on ties), or the Ladder's pick.

    ``subs`` are the team's on-time scored submissions of one phase, oldest first."""
    shown: S | None = None
    for sub in subs:
        assert sub.public_score is not None
        if shown is None:
            shown = sub
            continue
        assert shown.public_score is not None
        gain = (sub.public_score - shown.public_score) * (1 if higher_is_better else -1)
        margin = ladder_margin(challenge, sub)
        if (margin is None and gain > 0) or (margin is not None and gain > margin):
            shown = sub
    return shown


def bump_board_version(session: Session, phase_id: int | None) -> None:
    """Invalidate the cached pages of a phase's board (see views/leaderboards.py)."""
    session.execute(
        sa.update(Phase)
        .where(col(Phase.id) == phase_id)
        .values(board_version=col(Phase.board_version) + 1)
    )


def bump_challenge_boards(session: Session, challenge_id: int) -> None:
    """Invalidate every board of a challenge (team renamed or disqualified)."""
    session.execute(
        sa.update(Phase)
        .where(col(Phase.challenge_id) == challenge_id)
        .values(board_version=col(Phase.board_version) + 1)
    )


def refresh_board_entry(session: Session, *, team_id: int, phase_id: int) -> BoardEntry | None:
    """Recompute one team's row of a phase's public board from its submissions (idempotent)."""
    phase = session.get(Phase, phase_id)
    assert phase is not None
    bump_board_version(session, phase_id)
    challenge = session.get(Challenge, phase.challenge_id)
    assert challenge is not None
    hib = higher_is_better_of(challenge)
    subs = _board_rows(session, team_id, phase_id)
    best = best_for_board(subs, hib, challenge)
    row = session.exec(
        select(BoardEntry).where(BoardEntry.phase_id == phase_id, BoardEntry.team_id == team_id)
    ).first()
    if best is None:
        if row is not None:
            session.delete(row)
            session.flush()
        return None
    assert best.public_score is not None
    assert best.id is not None
    if row is None:
        row = BoardEntry(
            phase_id=phase_id,
            team_id=team_id,
            submission_id=best.id,
            sort_key=0.0,
            score=0.0,
            submitted_at=best.created_at,
        )
    row.submission_id = best.id
    row.score = best.public_score
    row.sort_key = _sort_key(best.public_score, hib)
    row.ci_low, row.ci_high = best.public_ci_low, best.public_ci_high
    row.submitted_at = best.created_at
    row.entries = len(subs)
    session.add(row)
    session.flush()
    return row


def record_score_on_board(session: Session, submission_id: int) -> None:
    """Hook for ``record_result``: bring the submitting team's board row up to date.

    Locks the team row first, so two scores of one team stored at the same time are folded in one
    after the other (each recompute then sees the other's committed row).
    """
    sub = session.get(Submission, submission_id)
    if sub is None or sub.team_id is None:
        return
    session.execute(
        sa.update(Team)
        .where(col(Team.id) == sub.team_id)
        .values(submission_counter=col(Team.submission_counter))
    )
    session.refresh(sub)
    refresh_board_entry(session, team_id=sub.team_id, phase_id=sub.phase_id)


def refresh_team_boards(session: Session, *, team_id: int) -> None:
    """Recompute a team's rows on every phase it has submissions in (after a merge)."""
    phase_ids = set(
        session.exec(select(Submission.phase_id).where(Submission.team_id == team_id)).all()
    )
    phase_ids |= set(
        session.exec(select(BoardEntry.phase_id).where(BoardEntry.team_id == team_id)).all()
    )
    for phase_id in sorted(phase_ids):
        refresh_board_entry(session, team_id=team_id, phase_id=phase_id)


def rebuild_boards(session: Session, challenge: Challenge) -> int:
    """Recompute every board row of a challenge (after a rescore or a metric fix).

    Set-based: one read of the challenge's on-time scored submissions, the same choice per team
    and phase as :func:`refresh_board_entry` makes (:func:`best_for_board`, so the Ladder is
    replayed in submission order), one bulk insert. Returns the number of rows.
    """
    phase_ids = [
        int(i)
        for i in session.exec(select(Phase.id).where(Phase.challenge_id == challenge.id))
        if i is not None
    ]
    session.execute(sa.delete(BoardEntry).where(col(BoardEntry.phase_id).in_(phase_ids)))
    for phase_id in phase_ids:
        bump_board_version(session, phase_id)
    s = Submission
    rows = session.execute(
        sa.select(
            col(s.id), col(s.team_id), col(s.phase_id), col(s.public_score),
            col(s.public_ci_low), col(s.public_ci_high), col(s.created_at),
        )
        .where(
            col(s.challenge_id) == challenge.id,
            col(s.team_id).is_not(None),
            col(s.status) == "scored",
            col(s.is_late).is_(False),
            col(s.baseline_label) == "",
            col(s.public_score).is_not(None),
        )
        .order_by(col(s.created_at), col(s.id))
    ).all()  # fmt: skip
    groups: dict[tuple[int, int], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.team_id, row.phase_id), []).append(row)
    hib = higher_is_better_of(challenge)
    values = []
    for (team_id, phase_id), subs in groups.items():
        best = best_for_board(subs, hib, challenge)
        assert best is not None
        values.append(
            {
                "phase_id": phase_id,
                "team_id": team_id,
                "submission_id": best.id,
                "sort_key": _sort_key(best.public_score, hib),
                "score": best.public_score,
                "ci_low": best.public_ci_low,
                "ci_high": best.public_ci_high,
                "submitted_at": best.created_at,
                "entries": len(subs),
            }
        )
    for start in range(0, len(values), 5000):
        session.execute(sa.insert(BoardEntry), values[start : start + 5000])
    session.flush()
    return len(values)


# ---------------------------------------------------------------- reading the board


def _entry_from_row(row: Any, rank: int | None) -> Entry:
    """An entry from one row of :func:`_ranked_query` (plain columns: no ORM objects to build)."""
    return Entry(
        rank=rank,
        team_id=row.team_id,
        team_name=row.name,
        score=row.score,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        submission_id=row.submission_id,
        submitted_at=row.submitted_at,
        entries=row.entries,
    )


def _ranked_query(phase: Phase) -> Any:
    b = BoardEntry
    return (
        sa.select(
            col(b.team_id), col(b.score), col(b.ci_low), col(b.ci_high), col(b.submission_id),
            col(b.submitted_at), col(b.entries), col(Team.name),
        )
        .join(Team, col(Team.id) == b.team_id)
        .where(col(b.phase_id) == phase.id, col(Team.disqualified_at).is_(None))
        .order_by(col(b.sort_key), col(b.submitted_at), col(b.submission_id))
    )  # fmt: skip


def count_board(session: Session, phase: Phase) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(BoardEntry)
            .join(Team, col(Team.id) == BoardEntry.team_id)
            .where(BoardEntry.phase_id == phase.id, col(Team.disqualified_at).is_(None))
        ).one()
    )


def baseline_entries(
    session: Session, phase: Phase, higher_is_better: bool, board: str = "public"
) -> list[Entry]:
    """The organizer's baselines on this phase: shown for reference, never ranked."""
    rows = session.exec(
        select(Submission).where(
            Submission.phase_id == phase.id,
            Submission.status == "scored",
            col(Submission.baseline_label) > "",  # a range on ix_submission_baseline
        )
    ).all()
    out = []
    for sub in rows:
        score = sub.public_score if board == "public" else sub.private_score
        if score is None:
            continue
        lo, hi = (
            (sub.public_ci_low, sub.public_ci_high)
            if board == "public"
            else (sub.private_ci_low, sub.private_ci_high)
        )
        assert sub.id is not None
        label = sub.baseline_label
        out.append(Entry(None, 0, label, score, lo, hi, sub.id, sub.created_at, 1, baseline=label))
    out.sort(key=lambda e: _sort_key(e.score, higher_is_better))
    return out


def public_board_page(
    session: Session,
    challenge: Challenge,
    phase: Phase,
    *,
    page: int = 1,
    per_page: int = PER_PAGE,
    higher_is_better: bool | None = None,
) -> BoardPage:
    """One page of the public board: ranks, tie marks, and where the baselines would place."""
    hib = higher_is_better_of(challenge) if higher_is_better is None else higher_is_better
    total = count_board(session, phase)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    offset = (page - 1) * per_page
    start = max(0, offset - 1)  # one row above the page, to mark a tie across the page break
    rows = session.execute(
        _ranked_query(phase).offset(start).limit(per_page + (offset - start))
    ).all()
    entries = [_entry_from_row(r, start + i + 1) for i, r in enumerate(rows)]
    above = entries.pop(0) if offset > 0 and entries else None
    mark_ties(entries, above)
    baselines = []
    for base in baseline_entries(session, phase, hib):
        better = session.exec(
            select(func.count())
            .select_from(BoardEntry)
            .join(Team, col(Team.id) == BoardEntry.team_id)
            .where(
                BoardEntry.phase_id == phase.id,
                col(Team.disqualified_at).is_(None),
                col(BoardEntry.sort_key) < _sort_key(base.score, hib),
            )
        ).one()
        baselines.append((base, int(better) + 1))
    return BoardPage(entries, total, page, pages, baselines)


def public_leaderboard(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[Entry]:
    """The whole public board: each team's best on-time score; ties go to the earlier submission."""
    rows = session.execute(_ranked_query(phase)).all()
    return mark_ties([_entry_from_row(r, i) for i, r in enumerate(rows, start=1)])


def _team_names(session: Session, team_ids: set[int]) -> dict[int, tuple[str, bool]]:
    if not team_ids:
        return {}
    rows = session.exec(
        select(Team.id, Team.name, Team.disqualified_at).where(col(Team.id).in_(team_ids))
    ).all()
    return {int(i): (n, d is not None) for i, n, d in rows if i is not None}


def _private_pools(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> tuple[dict[int, tuple[str, bool]], list[tuple[list[Submission], int]]]:
    """Team names and, per team not disqualified, the submissions its private score is taken
    from (its final selections, or its best public ones) with its number of entries."""
    n_final = int(challenge.limits.get("final_selections", 2))
    subs = session.exec(
        select(Submission)
        .where(
            Submission.phase_id == phase.id,
            Submission.status == "scored",
            col(Submission.is_late).is_(False),
            Submission.baseline_label == "",
            col(Submission.team_id).is_not(None),
            col(Submission.public_score).is_not(None),
            col(Submission.private_score).is_not(None),
        )
        .order_by(col(Submission.created_at), col(Submission.id))
    ).all()
    by_team: dict[int, list[Submission]] = {}
    for sub in subs:
        assert sub.team_id is not None
        by_team.setdefault(sub.team_id, []).append(sub)
    names = _team_names(session, set(by_team))
    order = _private_order(higher_is_better)
    pools = []
    for team_id, team_subs in by_team.items():
        if names.get(team_id, ("", True))[1]:
            continue  # disqualified
        finals = [s for s in team_subs if s.is_final][:n_final]
        pool = finals or sorted(team_subs, key=lambda s: order(s.public_score, s))[:n_final]
        pools.append((pool, len(team_subs)))
    return names, pools


def _private_order(
    higher_is_better: bool,
) -> Callable[[float | None, Submission], tuple[float, dt.datetime, int]]:
    sign = -1.0 if higher_is_better else 1.0

    def order(value: float | None, sub: Submission) -> tuple[float, dt.datetime, int]:
        assert value is not None
        assert sub.id is not None
        return (sign * value, sub.created_at, sub.id)

    return order


def private_board_candidates(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[Submission]:
    """Every submission the private board may show: each team's final selections (or best
    public ones) and the organizer's baselines. Their private intervals are computed when the
    board is revealed (:func:`challenge.tasks.compute_private_intervals`)."""
    _, pools = _private_pools(session, challenge, phase, higher_is_better)
    out = [sub for pool, _ in pools for sub in pool]
    out.extend(
        session.exec(
            select(Submission).where(
                Submission.phase_id == phase.id,
                Submission.status == "scored",
                col(Submission.baseline_label) > "",
                col(Submission.private_score).is_not(None),
            )
        ).all()
    )
    return out


def private_leaderboard(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[Entry]:
    """Each team is judged on its final selections, or its best public ones when it picked none.

    The team's private score is the best private score among those (at most
    ``limits.final_selections``); ties go to the earlier submission. An entry whose private
    interval is not computed yet has ``ci_low`` None (the page says "computing…").
    """
    names, pools = _private_pools(session, challenge, phase, higher_is_better)
    order = _private_order(higher_is_better)
    chosen_rows: list[tuple[Submission, int]] = [
        (min(pool, key=lambda s: order(s.private_score, s)), count) for pool, count in pools
    ]
    chosen_rows.sort(key=lambda t: order(t[0].private_score, t[0]))
    public_ranks = {
        e.team_id: e.rank for e in public_leaderboard(session, challenge, phase, higher_is_better)
    }
    entries = []
    for rank, (sub, count) in enumerate(chosen_rows, start=1):
        assert sub.team_id is not None
        assert sub.id is not None
        assert sub.private_score is not None
        entries.append(
            Entry(
                rank,
                sub.team_id,
                names[sub.team_id][0],
                sub.private_score,
                sub.private_ci_low,
                sub.private_ci_high,
                sub.id,
                sub.created_at,
                count,
                public_rank=public_ranks.get(sub.team_id),
            )
        )
    return mark_ties(entries)


# ---------------------------------------------------------------- what a participant sees


@dataclass(frozen=True)
class ShownScore:
    """A submission's public score as its team may see it.

    Without the Ladder that is the exact score. Under the Ladder (Blum & Hardt 2015) it is the
    value the Ladder released when the submission was scored: its own score if it beat the team's
    shown score by more than the margin, else the shown score it failed to beat (``exact`` False:
    "not better than your best by the margin"). The interval goes with the value shown, since the
    midpoint of a submission's own interval would give its score away.
    """

    score: float | None
    ci_low: float | None
    ci_high: float | None
    exact: bool = True


def ladder_on(challenge: Challenge) -> bool:
    return bool((challenge.leaderboard or {}).get("ladder"))


def _exact(sub: Submission) -> ShownScore:
    return ShownScore(sub.public_score, sub.public_ci_low, sub.public_ci_high)


def _ladder_releases(
    subs: list[Submission], higher_is_better: bool, challenge: Challenge
) -> dict[int, ShownScore]:
    """Replay the Ladder over one team's scored submissions of one phase, in submission order.

    On-time submissions move the shown one exactly as :func:`best_for_board` does; a late one is
    compared with the shown one but never replaces it (it is not ranked).
    """
    shown: Submission | None = None
    out: dict[int, ShownScore] = {}
    for sub in subs:
        assert sub.id is not None
        assert sub.public_score is not None
        if shown is None:
            better = True
        else:
            assert shown.public_score is not None
            gain = (sub.public_score - shown.public_score) * (1 if higher_is_better else -1)
            margin = ladder_margin(challenge, sub)
            better = gain > (margin or 0.0)
        if better or shown is None:
            out[sub.id] = _exact(sub)
            if not sub.is_late:
                shown = sub
        else:
            out[sub.id] = ShownScore(
                shown.public_score, shown.public_ci_low, shown.public_ci_high, exact=False
            )
    return out


def participant_scores(session: orm.Session, subs: list[Submission]) -> dict[int, ShownScore]:
    """The public score of each submission as its participants may see it (submission lists,
    the API, the EvalAI API, the team's history plot). See :class:`ShownScore`; organizers'
    baselines and challenges without the Ladder show exact scores."""
    out: dict[int, ShownScore] = {}
    replay: dict[tuple[int, int], Challenge] = {}
    for sub in subs:
        assert sub.id is not None
        challenge = session.get(Challenge, sub.challenge_id)
        if (
            challenge is None
            or not ladder_on(challenge)
            or sub.public_score is None
            or sub.baseline_label
            or sub.team_id is None
        ):
            out[sub.id] = _exact(sub)
        else:
            replay[(sub.team_id, sub.phase_id)] = challenge
    for (team_id, phase_id), challenge in replay.items():
        rows = list(
            session.execute(
                select(Submission)
                .where(
                    Submission.team_id == team_id,
                    Submission.phase_id == phase_id,
                    Submission.status == "scored",
                    Submission.baseline_label == "",
                    col(Submission.public_score).is_not(None),
                )
                .order_by(col(Submission.created_at), col(Submission.id))
            ).scalars()
        )
        released = _ladder_releases(rows, higher_is_better_of(challenge), challenge)
        for sub in subs:
            if sub.id is not None and (sub.team_id, sub.phase_id) == (team_id, phase_id):
                out[sub.id] = released.get(sub.id, _exact(sub))
    return out


def participant_score(session: orm.Session | None, sub: Submission) -> ShownScore:
    """:func:`participant_scores` for one submission (``session`` None: the one it was loaded
    in)."""
    if sub.public_score is None:
        return _exact(sub)  # nothing to hide (a fresh upload may be detached already)
    session = session or orm.object_session(sub)
    assert session is not None, "a scored submission attached to a session"
    assert sub.id is not None
    return participant_scores(session, [sub])[sub.id]


# ---------------------------------------------------------------- histories for the plots


def team_score_history(
    session: Session, team_id: int, phase: Phase
) -> list[tuple[dt.datetime, float, bool]]:
    """(time, public score as the team sees it, late) for each scored submission of a team."""
    subs = list(
        session.exec(
            select(Submission)
            .where(
                Submission.team_id == team_id,
                Submission.phase_id == phase.id,
                Submission.status == "scored",
                col(Submission.public_score).is_not(None),
            )
            .order_by(col(Submission.created_at), col(Submission.id))
        )
    )
    shown = participant_scores(session, subs)
    out = []
    for sub in subs:
        assert sub.id is not None
        score = shown[sub.id].score
        if score is not None:
            out.append((sub.created_at, float(score), bool(sub.is_late)))
    return out


def best_score_over_time(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[tuple[dt.datetime, float]]:
    """The top public score of the phase after each improvement (a step function's corners).

    Under the Ladder only the scores the board shows are used (each team's current shown
    submission), so the plot gives away no score the Ladder held back.
    """
    rows: Sequence[tuple[dt.datetime, float | None]]
    if ladder_on(challenge):
        rows = session.exec(
            select(BoardEntry.submitted_at, BoardEntry.score)
            .join(Team, col(Team.id) == BoardEntry.team_id)
            .where(BoardEntry.phase_id == phase.id, col(Team.disqualified_at).is_(None))
            .order_by(col(BoardEntry.submitted_at))
        ).all()
    else:
        rows = session.exec(
            select(Submission.created_at, Submission.public_score)
            .join(Team, col(Team.id) == Submission.team_id)
            .where(
                Submission.phase_id == phase.id,
                Submission.status == "scored",
                col(Submission.is_late).is_(False),
                Submission.baseline_label == "",
                col(Submission.public_score).is_not(None),
                col(Team.disqualified_at).is_(None),
            )
            .order_by(col(Submission.created_at))
        ).all()
    out: list[tuple[dt.datetime, float]] = []
    for when, score in rows:
        if score is None:
            continue
        if not out or (score > out[-1][1] if higher_is_better else score < out[-1][1]):
            out.append((when, float(score)))
    return out
