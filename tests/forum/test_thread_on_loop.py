"""The thread page's cache hits on PostgreSQL read on the event loop (``prefetch_on_loop``), with no
statement through the app's pool, and keep every rule: sanctions, unlisted challenges, held posts,
moderators, the viewer's own bits. SQLite (and any trouble) takes the ordinary path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from challenge.models import Challenge
from forum.models import Sanction
from tests.forum.conftest import new_thread, reply


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _same(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", page)


def test_cache_hits_read_on_the_loop_and_keep_the_rules(
    app: Any, browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    postgres = app.state.engine.url.get_backend_name() == "postgresql"
    tid, orga = seeded["tid"], seeded["orga"]
    alice, bob, anon = browser("alice"), browser("bob"), browser(None)
    mine = reply(alice, tid, "alice's reply about the AMS").json()["id"]
    reply(bob, tid, "bob votes here")
    assert bob.post_json(f"/forum/p/{mine}/vote").json()["voted"] is True
    url = f"/forum/t/{tid}"
    for viewer in (alice, bob, anon, orga):
        first = viewer.get(url)
        assert first.status_code == 200
        with statements(app.state.engine) as seen:
            again = viewer.get(url)
        assert again.status_code == 200
        assert _same(again.text) == _same(first.text)
        # PostgreSQL: nothing through the app's pool; SQLite: the ordinary (inline) path.
        assert (seen == []) is postgres, seen
    # Per-viewer bits are filled in on the fast path too.
    assert "Unvote" in bob.get(url).text  # bob voted for alice's reply
    assert "Unvote" not in alice.get(url).text
    assert 'name="csrf_token"' in alice.get(url).text
    assert 'id="reply"' in alice.get(url).text
    assert 'id="reply"' not in anon.get(url).text

    # A ban applies at once, cached page or not (sanctions do not change the thread's version).
    admin = people["admin"]
    db.add(Sanction(user_id=people["bob"], kind="ban", reason="spam", created_by=admin))
    db.commit()
    page = bob.get(url)
    assert page.status_code == 403
    assert "You are banned from this forum" in page.text
    # A suspension still lets them read.
    db.add(
        Sanction(user_id=people["carol"], kind="suspend", challenge_slug="higgs", created_by=admin)
    )
    db.commit()
    carol = browser("carol")
    assert carol.get(url).status_code == 200
    assert carol.get(url).status_code == 200

    # A thread in an unlisted challenge: its organizer sees it, others get a 404 every time.
    orgb = browser("orgb")
    secret = new_thread(orgb, "Secret plans", "Psst", where="/forum/c/secret/general")
    assert orgb.get(f"/forum/t/{secret}").status_code == 200
    assert orgb.get(f"/forum/t/{secret}").status_code == 200
    assert alice.get(f"/forum/t/{secret}").status_code == 404
    assert anon.get(f"/forum/t/{secret}").status_code == 404
    # Listed now: visible to all, through the cache.
    challenge = db.exec(select(Challenge).where(Challenge.slug == "secret")).one()
    challenge.is_listed = True
    db.add(challenge)
    db.commit()
    assert alice.get(f"/forum/t/{secret}").status_code == 200
    assert alice.get(f"/forum/t/{secret}").status_code == 200
    challenge.is_listed = False
    db.add(challenge)
    db.commit()
    assert alice.get(f"/forum/t/{secret}").status_code == 404

    # A participant's held post: theirs and moderators' only, never from a shared page.
    newbie = browser("newbie")
    held = reply(newbie, tid, "a first post, held for review").json()["id"]
    assert f'id="post-{held}"' in newbie.get(url).text
    assert f'id="post-{held}"' in newbie.get(url).text
    assert f'id="post-{held}"' not in alice.get(url).text
    assert f'id="post-{held}"' in orga.get(url).text
    assert f'id="post-{held}"' in orga.get(url).text
    assert anon.get(url + "?page=99").status_code == 404
    assert anon.get("/forum/t/987654").status_code == 404


def test_a_broken_loop_connection_takes_the_ordinary_path(
    app: Any, browser: Any, seeded: dict[str, Any]
) -> None:
    alice = browser("alice")
    url = f"/forum/t/{seeded['tid']}"
    assert alice.get(url).status_code == 200
    reader = getattr(app.state, "forum_loop_reader", None)
    if reader is None:  # SQLite: there is no such reader
        assert app.state.engine.url.get_backend_name() == "sqlite"
        return
    reader.url = reader.url.set(port=1)  # new connections fail
    for conn in reader.idle:
        conn.pgconn.finish()  # the open ones are broken
    with statements(app.state.engine) as seen:
        assert alice.get(url).status_code == 200
        assert alice.get(url).status_code == 200
    assert seen  # served by the ordinary path


def test_an_ended_session_is_a_visitor_on_the_loop_path(
    app: Any, browser: Any, seeded: dict[str, Any]
) -> None:
    """The loop read checks the server-side session too: after logout, a copy of the cookie
    shows the page to a visitor, from the cache as from the database."""
    from starlette.testclient import TestClient

    alice = browser("alice")
    url = f"/forum/t/{seeded['tid']}"
    for _ in range(2):  # the second is a cache hit (read on the loop on PostgreSQL)
        page = alice.get(url).text
        assert 'href="/account">alice</a>' in page
    kept = dict(alice.client.cookies)
    alice.post("/logout")
    with TestClient(app, base_url="http://testserver") as replay:
        replay.cookies.update(kept)
        for _ in range(2):
            with statements(app.state.engine) as seen:
                page = replay.get(url).text
            assert 'href="/account">alice</a>' not in page
            assert "Log in" in page
        assert replay.get("/account", follow_redirects=False).status_code == 303
    postgres = app.state.engine.url.get_backend_name() == "postgresql"
    assert (seen == []) is postgres  # the last one was served on the loop (PostgreSQL)
