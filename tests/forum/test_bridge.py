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
    challenges: four statements for a logged-in participant once the body is cached."""
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
    assert len(selects) == 4, selects
