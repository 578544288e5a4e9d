"""The hub side of the forum (challenge/forum_bridge.py): who sees an unlisted challenge's forum, and
how many statements a cached thread page costs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from challenge.models import Challenge, Participation
from tests.forum.conftest import new_thread


def test_unlisted_challenge_forum_is_for_its_organizer_admins_and_participants(
    browser: Any, people: dict[str, int], db: Session
) -> None:
    secret = db.exec(select(Challenge).where(Challenge.slug == "secret")).one()
    db.add(Participation(user_id=people["carol"], challenge_id=secret.id))
    db.commit()
    tid = new_thread(browser("orgb"), "Hidden talk", "psst", where="/forum/c/secret/general")
    for name, status in [
        ("orgb", 200), ("admin", 200), ("carol", 200), ("alice", 404), ("orga", 404), (None, 404),
    ]:  # fmt: skip
        b = browser(name)
        assert b.get("/forum/c/secret").status_code == status, name
        assert b.get(f"/forum/t/{tid}").status_code == status, name
    # The organizer of the challenge moderates its forum (the moderation link and forms show).
    page = browser("orgb").get(f"/forum/t/{tid}").text
    assert 'value="lock_thread"' in page
    assert 'value="lock_thread"' not in browser("carol").get(f"/forum/t/{tid}").text


def test_a_cached_thread_page_costs_four_statements(
    browser: Any, engine: sa.Engine, seeded: dict[str, Any]
) -> None:
    """User, forum standing, thread with the viewer's facts, challenge with the user's organized
    challenges: four statements for a logged-in participant once the body is cached. PostgreSQL:
    the same reads in one round trip on the event loop, none through the app's pool."""
    alice = browser("alice")
    url = f"/forum/t/{seeded['tid']}"
    assert alice.get(url).status_code == 200
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert alice.get(url).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == (4 if engine.url.get_backend_name() == "sqlite" else 0), selects


def test_forum_policy_comes_from_the_settings(
    settings_factory: Any, database_url: str, engine: sa.Engine
) -> None:
    from challenge.app import create_app
    from challenge.forum_bridge import forum_config
    from forum.config import ForumConfig
    from tests.forum.test_page_cache import forum_views

    settings = settings_factory(
        database_url,
        forum_posts_per_page=7,
        forum_page_cache_pages=0,
        forum_image_hosts="img.example.org, Cdn.Example.net",
    )
    config = forum_config(settings)
    assert config.posts_per_page == 7
    assert config.page_cache_pages == 0
    assert config.image_hosts == frozenset({"img.example.org", "cdn.example.net"})
    assert config.premoderated_posts == ForumConfig().premoderated_posts
    # Every ForumConfig field has its setting, and the app mounts the forum with them.
    assert forum_config(settings_factory(database_url)) == ForumConfig()
    assert forum_views(create_app(settings, engine)).config.posts_per_page == 7
