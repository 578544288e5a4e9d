"""The thread page cache (forum.pagecache): every write shows on the next request, whoever made it
and through whichever app (worker process); each viewer class sees its own page; the viewer's own
bits (CSRF, votes, subscription, edit links) are never shared."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.routing import Mount
from starlette.testclient import TestClient

from challenge.app import create_app
from forum.models import Post, Thread
from forum.views import ForumViews
from tests.forum.conftest import CSRF_RE, Browser, new_thread, reply


def forum_views(app: Any) -> ForumViews:
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/forum")
    route = next(r for r in mount.routes if getattr(r, "path", "") == "/t/{thread_id}")
    views = route.endpoint.__wrapped__.__self__
    assert isinstance(views, ForumViews)
    return views


def test_writes_by_others_show_on_the_next_request(
    app: Any, browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    cache = forum_views(app).page_cache
    tid, orga = seeded["tid"], seeded["orga"]
    alice, bob, anon = browser("alice"), browser("bob"), browser(None)
    first = reply(bob, tid, "first version of bob's reply").json()["id"]
    url = f"/forum/t/{tid}"

    def seen(b: Browser) -> str:
        return str(b.get(url).text)

    assert "first version" in seen(alice)
    hits = cache.hits
    assert "first version" in seen(alice)
    assert cache.hits == hits + 1  # the second view came from the cache

    # A reply by someone else.
    reply(bob, tid, "a second reply from bob")
    assert "a second reply from bob" in seen(alice)
    assert "a second reply from bob" in seen(anon)
    # An edit.
    assert bob.post(f"/forum/p/{first}/edit", {"body": "edited text of bob"}).status_code == 303
    page = seen(alice)
    assert "edited text of bob" in page
    assert "first version" not in page
    # A vote by a third user changes the score everybody sees.
    assert f'data-testid="score-{first}">0 ▲' in seen(alice)
    assert browser("carol").post_json(f"/forum/p/{first}/vote").json()["voted"] is True
    assert f'data-testid="score-{first}">1 ▲' in seen(alice)
    assert f'data-testid="score-{first}">1 ▲' in seen(anon)
    # A moderator hides it: gone for participants and visitors, kept for moderators.
    seen(orga)
    r = orga.post("/forum/mod/act", {"action": "hide_post", "target_id": first, "reason": "x"})
    assert r.status_code == 303
    assert f'id="post-{first}"' not in seen(alice)
    assert f'id="post-{first}"' not in seen(anon)
    assert "hidden: x" in seen(orga)
    r = orga.post("/forum/mod/act", {"action": "restore_post", "target_id": first})
    assert r.status_code == 303
    assert f'id="post-{first}"' in seen(alice)
    # Lock: the reply form goes away for participants, the moderator keeps it.
    assert 'id="reply"' in seen(alice)
    assert (
        orga.post("/forum/mod/act", {"action": "lock_thread", "target_id": tid}).status_code == 303
    )
    page = seen(alice)
    assert 'id="reply"' not in page
    assert "This thread is locked." in page
    assert 'id="reply"' in seen(orga)
    # Pin and a new title (thread row changes).
    assert (
        orga.post("/forum/mod/act", {"action": "pin_thread", "target_id": tid}).status_code == 303
    )
    assert "📌" in seen(alice)
    # A write that bypasses the forum's writers (a plain ORM insert) still bumps the version.
    db.add(Post(thread_id=tid, author_id=people["dave"], body_md="x", body_html="<p>direct</p>"))
    db.commit()
    assert "<p>direct</p>" in seen(alice)
    assert "<p>direct</p>" in seen(anon)


def test_pending_posts_are_seen_by_their_author_and_moderators_only(
    browser: Any, seeded: dict[str, Any]
) -> None:
    tid, orga = seeded["tid"], seeded["orga"]
    alice, newbie, anon = browser("alice"), browser("newbie"), browser(None)
    url = f"/forum/t/{tid}"
    for b in (alice, newbie, anon, orga):
        b.get(url)  # every class has a cached page now
    held = reply(newbie, tid, "my very first post").json()
    assert held["status"] == "pending"
    assert "my very first post" in newbie.get(url).text
    assert "waiting for a moderator" in newbie.get(url).text
    assert "my very first post" in orga.get(url).text
    assert "my very first post" not in alice.get(url).text
    assert "my very first post" not in anon.get(url).text
    # The newbie's page (with their held post) was not shared with another participant.
    assert "my very first post" not in browser("bob").get(url).text
    r = orga.post("/forum/mod/act", {"action": "approve_post", "target_id": held["id"]})
    assert r.status_code == 303
    assert "my very first post" in alice.get(url).text
    assert "waiting for a moderator" not in alice.get(url).text


def test_viewers_own_bits_are_not_shared(
    browser: Any, people: dict[str, int], seeded: dict[str, Any]
) -> None:
    tid = seeded["tid"]
    alice, bob = browser("alice"), browser("bob")
    mine = reply(alice, tid, "alice's reply").json()["id"]
    url = f"/forum/t/{tid}"
    assert bob.post_json(f"/forum/p/{mine}/vote").json()["voted"] is True
    assert bob.post(f"/forum/t/{tid}/subscribe", {"on": "1"}).status_code == 303
    carol = browser("carol")
    bob_page, alice_page, carol_page = (b.get(url).text for b in (bob, alice, carol))
    # Same cached body for bob and carol (same class), their own bits differ.
    vote_form = (
        f'action="/forum/p/{mine}/vote" class="inline"><input type="hidden" name="csrf_token"'
    )
    assert f'{vote_form} value="{bob.csrf}"><button class="link" type="submit">Unvote' in bob_page
    assert (
        f'{vote_form} value="{carol.csrf}"><button class="link" type="submit">Upvote' in carol_page
    )
    assert "Unvote" not in carol_page
    assert "Unsubscribe" in bob_page
    assert "Unsubscribe" not in carol_page
    # Alice wrote the post: she may edit it, not vote for or flag it; the others may not edit it.
    assert f'href="/forum/p/{mine}/edit"' in alice_page
    assert f'action="/forum/p/{mine}/vote"' not in alice_page
    assert f'href="/forum/p/{mine}/edit"' not in bob_page
    assert f'href="/forum/p/{mine}/flag"' in bob_page
    for b, page in ((bob, bob_page), (alice, alice_page)):
        tokens = set(CSRF_RE.findall(page))
        assert tokens == {b.csrf}
    assert "slot-" not in bob_page  # the per-process marker never reaches a page


def test_two_worker_processes_share_nothing_but_the_database(
    settings_factory: Any, database_url: str, engine: Any, browser: Any, seeded: dict[str, Any]
) -> None:
    """Two apps on one database stand for two uvicorn workers: a write through one shows in the
    other's cached page at once (the version is read from the database on every request)."""
    tid = seeded["tid"]
    other = create_app(settings_factory(database_url), engine)
    with TestClient(other, base_url="http://testserver") as client:
        other_alice = Browser(client)
        other_alice.csrf = CSRF_RE.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
        r = client.post(
            "/login",
            data={
                "login": "alice",
                "password": "correct horse battery",
                "csrf_token": other_alice.csrf,
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        url = f"/forum/t/{tid}"
        assert "news from worker one" not in client.get(url).text
        assert "news from worker one" not in client.get(url).text
        assert forum_views(other).page_cache.hits >= 1
        reply(browser("bob"), tid, "news from worker one")  # through the first app
        assert "news from worker one" in client.get(url).text


def test_every_writer_bumps_the_version(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    tid, orga = seeded["tid"], seeded["orga"]
    alice, bob = browser("alice"), browser("bob")
    versions = []

    def version() -> int:
        db.expire_all()
        thread = db.get(Thread, tid)
        assert thread is not None
        versions.append(thread.version)
        return thread.version

    post = reply(alice, tid, "an answer").json()["id"]
    steps = [
        lambda: reply(bob, tid, "another"),
        lambda: alice.post(f"/forum/p/{post}/edit", {"body": "an edited answer"}),
        lambda: bob.post_json(f"/forum/p/{post}/vote"),
        lambda: orga.post(f"/forum/t/{tid}/accept", {"post_id": str(post)}),
        lambda: bob.post_json(f"/forum/p/{post}/flag", {"kind": "spam"}),
        lambda: orga.post("/forum/mod/act", {"action": "restore_post", "target_id": post}),
        lambda: orga.post(
            "/forum/mod/act", {"action": "hide_post", "target_id": post, "reason": "r"}
        ),
        lambda: orga.post("/forum/mod/act", {"action": "restore_post", "target_id": post}),
        lambda: orga.post("/forum/mod/act", {"action": "lock_thread", "target_id": tid}),
        lambda: orga.post("/forum/mod/act", {"action": "pin_thread", "target_id": tid}),
        lambda: orga.post(
            "/forum/mod/act", {"action": "move_thread", "target_id": tid, "category": "data"}
        ),
        lambda: orga.post(
            "/forum/mod/act", {"action": "hide_thread", "target_id": tid, "reason": "r"}
        ),
        lambda: orga.post("/forum/mod/act", {"action": "restore_thread", "target_id": tid}),
    ]
    before = version()
    for step in steps:
        r = step()
        assert r.status_code in (200, 201, 303), r.text
        after = version()
        assert after > before, (step, versions)
        before = after
    # Merging another thread in changes both threads.
    other = new_thread(alice, "dup", "dup body")
    db.expire_all()
    other_before = db.get(Thread, other).version  # type: ignore[union-attr]
    r = orga.post(
        "/forum/mod/act", {"action": "merge_thread", "target_id": other, "into": str(tid)}
    )
    assert r.status_code == 303
    assert version() > before
    db.expire_all()
    assert db.get(Thread, other).version > other_before  # type: ignore[union-attr]


def test_the_cache_is_a_bounded_lru() -> None:
    from forum.fragments import PageTemplate
    from forum.pagecache import PageCache

    cache = PageCache(2)
    pages = [PageTemplate((f"body {i}",)) for i in range(3)]
    cache.put("a", pages[0])
    cache.put("b", pages[1])
    assert cache.get("a") is pages[0]  # "a" is now the most recent
    cache.put("c", pages[2])
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is pages[0]
    assert cache.get("c") is pages[2]
    off = PageCache(0)
    off.put("a", pages[0])
    assert off.get("a") is None


def test_page_numbers_share_entries(app: Any, browser: Any, seeded: dict[str, Any]) -> None:
    cache = forum_views(app).page_cache
    alice = browser("alice")
    url = f"/forum/t/{seeded['tid']}"
    alice.get(url)
    entries = len(cache)
    for query in ("?page=1", "?page=01", "?page=001"):
        assert alice.get(url + query).status_code == 200
    assert len(cache) == entries
