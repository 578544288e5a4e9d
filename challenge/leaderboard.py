"""Leaderboards read stored scores only; the private one is shown after the reveal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from challenge.models import Challenge, Phase, Submission, User


@dataclass
class Entry:
    rank: int
    user_id: int
    username: str
    score: float
    ci_low: float | None
    ci_high: float | None
    submission_id: int
    submitted_at: dt.datetime
    entries: int
    public_rank: int | None = None  # on the private board: the rank this entry had in public


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


def _scored_rows(session: Session, phase: Phase) -> list[tuple[Submission, str]]:
    rows = session.exec(
        select(Submission, User.username)
        .join(User, col(User.id) == Submission.user_id)
        .where(
            Submission.phase_id == phase.id,
            Submission.status == "scored",
            col(Submission.is_late).is_(False),
        )
        .order_by(col(Submission.created_at), col(Submission.id))
    ).all()
    return [(s, name) for s, name in rows]


def _rank(best: dict[int, tuple[Submission, str, int]], attr: str, higher: bool) -> list[Entry]:
    def key(item: tuple[Submission, str, int]) -> tuple[float, dt.datetime, int]:
        sub = item[0]
        value = getattr(sub, attr)
        assert sub.id is not None
        return (-value if higher else value, sub.created_at, sub.id)

    ordered = sorted(best.values(), key=key)
    entries = []
    for i, (sub, name, count) in enumerate(ordered, start=1):
        assert sub.id is not None
        ci = (
            (sub.public_ci_low, sub.public_ci_high)
            if attr == "public_score"
            else (sub.private_ci_low, sub.private_ci_high)
        )
        entries.append(
            Entry(
                i,
                sub.user_id,
                name,
                getattr(sub, attr),
                ci[0],
                ci[1],
                sub.id,
                sub.created_at,
                count,
            )
        )
    return entries


def public_leaderboard(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[Entry]:
    """Best public score per participant; ties go to the earlier submission."""
    best: dict[int, tuple[Submission, str, int]] = {}
    counts: dict[int, int] = {}
    for sub, name in _scored_rows(session, phase):
        if sub.public_score is None:
            continue
        counts[sub.user_id] = counts.get(sub.user_id, 0) + 1
        held = best.get(sub.user_id)
        if held is None or _better(sub.public_score, held[0].public_score or 0.0, higher_is_better):
            best[sub.user_id] = (sub, name, 0)
    best = {u: (s, n, counts[u]) for u, (s, n, _) in best.items()}
    return _rank(best, "public_score", higher_is_better)


def private_leaderboard(
    session: Session, challenge: Challenge, phase: Phase, higher_is_better: bool
) -> list[Entry]:
    """Each participant is judged on their final selections: the best public ones, up to the limit."""
    n_final = int(challenge.limits.get("final_selections", 2))
    by_user: dict[int, list[tuple[Submission, str]]] = {}
    for sub, name in _scored_rows(session, phase):
        if sub.public_score is not None and sub.private_score is not None:
            by_user.setdefault(sub.user_id, []).append((sub, name))
    best: dict[int, tuple[Submission, str, int]] = {}
    for user_id, subs in by_user.items():
        ranked = sorted(
            subs,
            key=lambda t: (
                -(t[0].public_score or 0.0) if higher_is_better else (t[0].public_score or 0.0),
                t[0].created_at,
            ),
        )
        chosen = ranked[:n_final]
        winner = chosen[0]
        for cand in chosen[1:]:
            if _better(
                cand[0].private_score or 0.0, winner[0].private_score or 0.0, higher_is_better
            ):
                winner = cand
        best[user_id] = (winner[0], winner[1], len(subs))
    entries = _rank(best, "private_score", higher_is_better)
    public_ranks = {
        e.user_id: e.rank for e in public_leaderboard(session, challenge, phase, higher_is_better)
    }
    for entry in entries:
        entry.public_rank = public_ranks.get(entry.user_id)
    return entries
