"""Votes sent at the same time, on SQLite and PostgreSQL: none ends in a server error, and the
post's score equals its stored votes afterwards."""

from __future__ import annotations

import threading
from typing import Any

from sqlmodel import Session, func, select

from forum.models import Post, Vote

ROUNDS = 3
SAME_USER = 6  # bob toggles his vote from this many sessions at once


def test_concurrent_votes_on_one_post(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], engine: Any
) -> None:
    with Session(engine) as session:
        post_id = session.exec(
            select(Post.id).where(Post.thread_id == seeded["tid"], Post.author_id == people["orga"])
        ).first()
    voters = [browser("bob") for _ in range(SAME_USER)]
    voters += [browser(name) for name in ("alice", "carol", "dave", "erin")]
    for _ in range(ROUNDS):
        barrier = threading.Barrier(len(voters))
        codes: list[int] = []

        def vote(b: Any, barrier: threading.Barrier = barrier, codes: list[int] = codes) -> None:
            barrier.wait()
            codes.append(b.post_json(f"/forum/p/{post_id}/vote").status_code)

        threads = [threading.Thread(target=vote, args=(b,)) for b in voters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(codes) == [200] * len(voters)
        with Session(engine) as session:
            post = session.get(Post, post_id)
            stored = session.exec(
                select(Vote.user_id, func.count())
                .where(Vote.post_id == post_id)
                .group_by(Vote.user_id)
            ).all()
        assert post is not None
        assert post.score == sum(n for _, n in stored)
        assert all(n == 1 for _, n in stored)
