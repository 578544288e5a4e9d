"""The demo forum is not empty: a welcome thread with answers, the participant past pre-moderation."""

from __future__ import annotations

from sqlmodel import Session, col, select

from challenge.db import make_engine
from challenge.demo import WELCOME_TITLE, seed_demo_forum
from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.models import PENDING, VISIBLE, Post, Thread
from forum.posting import create_reply


def test_demo_forum_has_a_visible_welcome_thread(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        for name, role in [("admin", "admin"), ("organizer", "organizer"), ("alice", "participant")]:
            session.add(User(username=name, email=f"{name}@x.invalid", password_hash="x", role=role))
        session.commit()
    seed_demo_forum(engine)
    seed_demo_forum(engine)  # a restart does not duplicate it
    with Session(engine) as session:
        threads = session.exec(select(Thread).where(Thread.title == WELCOME_TITLE)).all()
        assert len(threads) == 1
        thread = threads[0]
        assert thread.status == VISIBLE
        assert thread.challenge_slug is None
        posts = session.exec(select(Post).where(Post.thread_id == thread.id)).all()
        assert len(posts) == 5
        assert {p.status for p in posts} == {VISIBLE}
        alice = session.exec(select(User).where(col(User.username) == "alice")).one()
        assert alice.id is not None
        assert sum(p.author_id == alice.id for p in posts) == 2
        # Her next post goes straight out: the demo participant is past pre-moderation.
        post = create_reply(
            session, actor=Actor(ForumUser(alice.id, "alice")), users=None,
            config=ForumConfig(), thread=thread, body_md="One more question",
        )  # fmt: skip
        assert post.status != PENDING
        assert post.held_reason == ""
    engine.dispose()
