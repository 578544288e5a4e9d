"""The organizer dashboard: each challenge's stage, and the forum posts waiting for moderation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.testclient import TestClient

from challenge.db import session_scope
from challenge.models import Challenge, utcnow
from forum.models import PENDING, VISIBLE, Post, Thread
from tests.challenge.conftest import login
from tests.challenge.test_reveal import set_times


def _post(engine: Any, slug: str | None, author: int, status: str) -> None:
    with session_scope(engine) as s:
        thread = Thread(challenge_slug=slug, category="general", title="Hi", author_id=author)
        s.add(thread)
        s.flush()
        assert thread.id is not None
        s.add(Post(thread_id=thread.id, author_id=author, body_md="x", body_html="x", status=status))


def _stage(page: str, slug: str) -> str:
    return page.split(f'data-testid="stage-{slug}">', 1)[1].split("</td>", 1)[0]


def test_stage_and_pending_posts(
    client: TestClient, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    olga = make_user("olga", role="organizer")
    other = make_user("otto", role="organizer")
    newbie = make_user("newbie")
    running = make_challenge(slug="c-running", owner=olga)
    upcoming = make_challenge(slug="c-upcoming", owner=olga, opens_days=2, closes_days=5)
    closed = make_challenge(slug="c-closed", owner=olga)
    set_times(engine, closed, competition=utcnow() - dt.timedelta(hours=1))
    with session_scope(engine) as s:  # closed, but revealed only by hand
        ch = s.get(Challenge, closed.id)
        assert ch is not None
        ch.leaderboard = {**ch.leaderboard, "reveal": "manual"}
        s.add(ch)
    revealed = make_challenge(slug="c-revealed", owner=olga)
    set_times(engine, revealed, competition=utcnow() - dt.timedelta(hours=1))  # at_close
    make_challenge(slug="c-other", owner=other)
    assert newbie.id is not None
    _post(engine, "c-running", newbie.id, PENDING)
    _post(engine, "c-running", newbie.id, PENDING)
    _post(engine, "c-running", newbie.id, VISIBLE)
    _post(engine, "c-other", newbie.id, PENDING)  # not olga's
    _post(engine, None, newbie.id, PENDING)  # site-wide: the admins'

    login(client, "olga")
    page = client.get("/organize").text
    assert _stage(page, running.slug) == "running"
    assert _stage(page, upcoming.slug) == "upcoming"
    assert _stage(page, closed.slug) == "closed"
    assert _stage(page, revealed.slug) == "revealed"
    assert "2 forum posts awaiting moderation" in page
    assert '<a href="/forum/mod">2 posts held</a>' in page
    assert "site-wide" not in page
    assert "<title>Organize — " in page
    assert "Scoring workers" not in page

    client.cookies.clear()
    make_user("root", role="admin")
    login(client, "root")
    page = client.get("/organize").text
    assert "4 forum posts awaiting moderation" in page
    assert "(1 in the site-wide forum)" in page
    assert page.count("<h2>Scoring workers</h2>") == 1  # once, and not inside <title>
