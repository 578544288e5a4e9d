"""The forum through the real app, on SQLite and PostgreSQL: posting, answers, votes, search,
subscriptions, limits, moderation and the roles x actions matrix."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlmodel import Session, col, select

from forum.models import AuditEntry, Flag, Notification, Post, PostRevision, Sanction, Thread
from forum.posting import post_announcement
from tests.forum.conftest import new_thread, reply


def test_thread_reply_quote_edit_history(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, bob = browser("alice"), browser("bob")
    tid = new_thread(
        alice,
        "Negative weights?",
        "Why are some weights **negative**?\n\n```python\nx = 1 < 2\n```\n\n$w_i$",
    )
    page = alice.get(f"/forum/t/{tid}")
    assert "<strong>negative</strong>" in page.text
    assert '<code class="language-python">x = 1 &lt; 2' in page.text
    assert '<span class="math inline">w_i</span>' in page.text
    first = db.exec(select(Post).where(Post.thread_id == tid)).one()
    quote = bob.get(f"/forum/t/{tid}/reply?quote={first.id}")
    assert "&gt; **@alice** wrote:" in quote.text
    r = reply(bob, tid, "> **@alice** wrote:\n> Why?\n\nThey are not, @alice.")
    assert r.status_code == 201
    assert r.json()["status"] == "visible"
    bob_post = r.json()["id"]
    page = alice.get(f"/forum/t/{tid}").text
    assert "<blockquote>" in page
    # A mention links to the user's page, which exists.
    mention = f'<a href="/forum/u/{people["alice"]}" rel="nofollow noopener noreferrer ugc">'
    assert mention + '<span class="mention">@alice</span></a>' in page
    # The only user page the forum has is the moderators' history page (see docs/forum.md).
    assert browser("admin").get(f"/forum/u/{people['alice']}").status_code == 200
    # Editing keeps the previous text; only author and moderators see the history.
    r = bob.post(f"/forum/p/{bob_post}/edit", {"body": "They are all positive."})
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Post, bob_post).body_md == "They are all positive."
    assert (
        db.exec(select(PostRevision).where(PostRevision.post_id == bob_post))
        .one()
        .body_md.startswith("> **@alice**")
    )
    assert "They are not" in bob.get(f"/forum/p/{bob_post}/history").text
    assert browser("orga").get(f"/forum/p/{bob_post}/history").status_code == 200
    assert alice.get(f"/forum/p/{bob_post}/history").status_code == 404
    assert alice.post(f"/forum/p/{bob_post}/edit", {"body": "hijack"}).status_code == 404
    # The asker edits the first post and the title.
    r = alice.post(
        f"/forum/p/{first.id}/edit", {"body": "Edited question", "title": "Negative event weights?"}
    )
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Thread, tid).title == "Negative event weights?"
    # Notifications: alice follows her thread and was mentioned (one notification, the mention).
    kinds = db.exec(select(Notification.kind).where(Notification.user_id == people["alice"])).all()
    assert kinds == ["mention"]
    assert "mentioned you" in alice.get("/forum/notifications").text


def test_accepted_answer_votes_and_feed(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, bob, carol = browser("alice"), browser("bob"), browser("carol")
    tid = new_thread(alice, "Which metric?", "Which one?")
    early = reply(bob, tid, "Maybe accuracy").json()["id"]
    good = reply(carol, tid, "It is the AMS with b_reg = 10").json()["id"]
    assert bob.post(f"/forum/t/{tid}/accept", {"post_id": str(good)}).status_code == 403
    assert alice.post(f"/forum/t/{tid}/accept", {"post_id": str(good)}).status_code == 303
    page = alice.get(f"/forum/t/{tid}").text
    # The accepted answer comes right after the question, before the earlier reply, and only there.
    assert page.index(f'id="post-{good}"') < page.index(f'id="post-{early}"')
    assert page.count(f'data-post="{good}"') == 1
    assert page.count("It is the AMS with b_reg") == 1
    # The asker (and a moderator) can take the mark back; anyone else cannot.
    assert "Un-accept" in page
    assert "Un-accept" not in bob.get(f"/forum/t/{tid}").text
    assert bob.post(f"/forum/t/{tid}/accept", {"post_id": ""}).status_code == 403
    assert alice.post(f"/forum/t/{tid}/accept", {"post_id": ""}).status_code == 303
    db.expire_all()
    assert db.get(Thread, tid).accepted_post_id is None  # type: ignore[union-attr]
    page = alice.get(f"/forum/t/{tid}").text
    assert "Accepted answer" not in page
    assert page.count("It is the AMS with b_reg") == 1
    admin = browser("admin")
    assert alice.post(f"/forum/t/{tid}/accept", {"post_id": str(good)}).status_code == 303
    assert "Un-accept" in admin.get(f"/forum/t/{tid}").text
    assert admin.post(f"/forum/t/{tid}/accept", {"post_id": ""}).status_code == 303
    db.expire_all()
    assert db.get(Thread, tid).accepted_post_id is None  # type: ignore[union-attr]
    assert alice.post(f"/forum/t/{tid}/accept", {"post_id": str(good)}).status_code == 303
    assert bob.post_json(f"/forum/p/{good}/vote").json() == {
        "post": good,
        "voted": True,
        "score": 1,
    }
    assert alice.post_json(f"/forum/p/{good}/vote").json()["score"] == 2
    assert bob.post_json(f"/forum/p/{good}/vote").json() == {
        "post": good,
        "voted": False,
        "score": 1,
    }
    assert carol.post_json(f"/forum/p/{good}/vote").status_code == 403  # own post
    feed = browser(None).get(f"/forum/t/{tid}/feed.atom")
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert "AMS with b_reg" in feed.text
    assert "<feed" in feed.text


def test_search_finds_visible_posts_only(
    browser: Any, people: dict[str, int], seeded: dict[str, Any]
) -> None:
    alice, bob = browser("alice"), browser("bob")
    tid = new_thread(alice, "Tau energy scale", "How large is the systematic shift?")
    hidden = reply(bob, tid, "The calorimeter calibration uncertainty is three percent").json()[
        "id"
    ]
    reply(bob, tid, 'Try "quotes" AND (operators) OR NEAR/3 -- nothing breaks')
    hits = alice.get("/forum/search", params={"q": "calorimeter calibration", "in": "higgs"}).text
    assert f"/forum/p/{hidden}" in hits
    assert (
        "Tau energy scale" in alice.get("/forum/search", params={"q": "energy", "in": "higgs"}).text
    )
    assert (
        alice.get("/forum/search", params={"q": '"quotes" AND ( NEAR', "in": "higgs"}).status_code
        == 200
    )
    orga = seeded["orga"]
    assert (
        orga.post(
            "/forum/mod/act", {"action": "hide_post", "target_id": hidden, "reason": "spam"}
        ).status_code
        == 303
    )
    assert (
        f"/forum/p/{hidden}"
        not in alice.get("/forum/search", params={"q": "calorimeter", "in": "higgs"}).text
    )
    # Another forum's posts do not show up.
    assert f"/forum/p/{hidden}" not in alice.get("/forum/search", params={"q": "systematic"}).text


def test_new_accounts_are_premoderated_and_links_held(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    newbie, alice, orga = browser("newbie"), browser("alice"), seeded["orga"]
    tid = new_thread(newbie, "My first question", "Hello all")
    assert db.get(Thread, tid).status == "pending"
    assert alice.get(f"/forum/t/{tid}").status_code == 404  # others do not see it yet
    assert "waiting for a moderator" in newbie.get(f"/forum/t/{tid}").text
    queue = orga.get("/forum/mod").text
    assert "My first question" in queue
    assert "first 2 posts of a new account" in queue
    post_id = db.exec(select(Post.id).where(Post.thread_id == tid)).one()
    assert (
        orga.post("/forum/mod/act", {"action": "approve_post", "target_id": post_id}).status_code
        == 303
    )
    db.expire_all()
    assert db.get(Thread, tid).status == "visible"
    assert alice.get(f"/forum/t/{tid}").status_code == 200
    second = reply(newbie, tid, "second post").json()
    assert second["status"] == "pending"
    orga.post("/forum/mod/act", {"action": "approve_post", "target_id": second["id"]})
    assert reply(newbie, tid, "third, no links").json()["status"] == "visible"
    spam = reply(newbie, tid, "http://a.example http://b.example https://c.example")
    assert spam.json()["status"] == "pending"
    assert "links from a new account" in db.get(Post, spam.json()["id"]).held_reason
    audit = db.exec(select(AuditEntry.action).where(AuditEntry.actor_id == people["orga"])).all()
    assert audit.count("approve_post") == 2


def test_flags_from_trusted_users_hide_until_a_moderator_decides(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice = browser("alice")
    tid = seeded["tid"]
    target = reply(alice, tid, "Buy cheap watches").json()["id"]
    newbie = browser("newbie")
    assert (
        newbie.post_json(f"/forum/p/{target}/flag", {"kind": "spam", "reason": "ad"}).json()[
            "status"
        ]
        == "visible"
    )
    for name in ("bob", "carol"):
        assert (
            browser(name)
            .post_json(f"/forum/p/{target}/flag", {"kind": "spam", "reason": "ad"})
            .json()["status"]
            == "visible"
        )
    dave = browser("dave")
    assert dave.post_json(f"/forum/p/{target}/flag", {"kind": "nonsense"}).status_code == 400
    assert (
        dave.post_json(f"/forum/p/{target}/flag", {"kind": "spam", "reason": "ad"}).json()["status"]
        == "hidden"
    )
    assert (
        dave.post_json(f"/forum/p/{target}/flag", {"kind": "spam"}).status_code == 404
    )  # gone for him
    assert (
        alice.post_json(f"/forum/p/{alice_post(db, people)}/flag", {"kind": "spam"}).status_code
        == 403
    )
    assert f'id="post-{target}"' not in browser("erin").get(f"/forum/t/{tid}").text
    orga = seeded["orga"]
    assert f'id="post-{target}"' in orga.get(f"/forum/t/{tid}").text  # kept, visible to moderators
    assert "Buy cheap watches" in orga.get("/forum/mod").text
    assert (
        db.exec(select(AuditEntry).where(AuditEntry.action == "auto_hide")).one().target_id
        == target
    )
    assert (
        orga.post("/forum/mod/act", {"action": "restore_post", "target_id": target}).status_code
        == 303
    )
    db.expire_all()
    assert db.get(Post, target).status == "visible"
    assert {f.resolution for f in db.exec(select(Flag).where(Flag.post_id == target))} == {
        "dismissed"
    }


def alice_post(db: Session, people: dict[str, int]) -> int:
    return db.exec(
        select(Post.id).where(Post.author_id == people["alice"]).order_by(col(Post.id))
    ).first()


def test_thread_moderation_lock_pin_move_merge_hide(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, orga = browser("alice"), seeded["orga"]
    a = new_thread(alice, "Data question one", "one")
    b = new_thread(alice, "Data question one again", "duplicate")
    reply(alice, b, "more detail")

    def act(action: str, target: int, **params: str) -> Any:
        return orga.post(
            "/forum/mod/act", {"action": action, "target_id": target, "reason": "tidy", **params}
        )

    assert act("lock_thread", a).status_code == 303
    assert reply(alice, a, "locked?").status_code == 403
    assert act("lock_thread", a).status_code == 400  # already locked: a clear refusal
    assert act("pin_thread", a).status_code == 303
    assert act("move_thread", a, category="nowhere").status_code == 400
    assert act("move_thread", a, category="data").status_code == 303
    assert "Data question one" in alice.get("/forum/c/higgs/data").text
    assert act("merge_thread", b, into=str(a)).status_code == 303
    assert alice.get(f"/forum/t/{b}", follow_redirects=False).status_code == 301
    db.expire_all()
    assert db.get(Thread, a).reply_count == 2
    assert act("hide_thread", a).status_code == 303
    assert alice.get(f"/forum/t/{a}").status_code == 404
    assert orga.get(f"/forum/t/{a}").status_code == 200
    actions = db.exec(select(AuditEntry.action).order_by(col(AuditEntry.id))).all()
    assert actions == ["lock_thread", "pin_thread", "move_thread", "merge_thread", "hide_thread"]
    assert all(
        e.reason == "tidy" and e.actor_id == people["orga"] for e in db.exec(select(AuditEntry))
    )
    assert "merge_thread" in orga.get("/forum/mod").text


def test_suspension_and_ban(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, orga, tid = browser("alice"), seeded["orga"], seeded["tid"]
    base = {"action": "sanction_user", "target_id": people["alice"], "challenge": "higgs"}
    assert (
        orga.post("/forum/mod/act", {**base, "kind": "suspend", "days": "3"}).status_code == 400
    )  # no reason
    assert (
        orga.post(
            "/forum/mod/act", {**base, "kind": "suspend", "days": "x", "reason": "r"}
        ).status_code
        == 400
    )
    assert (
        orga.post(
            "/forum/mod/act", {**base, "kind": "suspend", "days": "3", "reason": "heated"}
        ).status_code
        == 303
    )
    r = reply(alice, tid, "let me speak")
    assert r.status_code == 403
    assert "suspended" in r.json()["message"]
    assert alice.get(f"/forum/t/{tid}").status_code == 200  # still reads
    # The suspension is per challenge: the site-wide forum is open.
    assert new_thread(alice, "Elsewhere", "fine", where="/forum/site/general")
    # An organizer cannot sanction in the site-wide forum or in another challenge.
    assert (
        orga.post(
            "/forum/mod/act", {**base, "challenge": "", "kind": "ban", "reason": "x"}
        ).status_code
        == 404
    )
    assert (
        orga.post(
            "/forum/mod/act",
            {"action": "lift_sanction", "target_id": people["alice"], "challenge": "higgs"},
        ).status_code
        == 303
    )
    assert reply(alice, tid, "back").status_code == 201
    admin = browser("admin")
    assert (
        admin.post(
            "/forum/mod/act", {**base, "challenge": "", "kind": "ban", "reason": "abuse"}
        ).status_code
        == 303
    )
    assert alice.get(f"/forum/t/{tid}").status_code == 403
    user_page = admin.get(f"/forum/u/{people['alice']}").text
    assert "ban" in user_page
    assert "abuse" in user_page
    assert "let me speak" not in user_page
    assert db.exec(select(Sanction).where(Sanction.kind == "ban")).one().ends_at is None


def test_limits_have_clear_messages(
    browser: Any, people: dict[str, int], seeded: dict[str, Any]
) -> None:
    alice, tid = browser("alice"), seeded["tid"]
    r = reply(alice, tid, "x" * 30_001)
    assert r.status_code == 413
    assert "30,001 characters; the limit is 30,000" in r.json()["message"]
    r = reply(alice, tid, ">" * 8 + " deep")
    assert r.status_code == 400
    assert "nested 8 levels" in r.json()["message"]
    r = alice.post(f"/forum/t/{tid}/reply", {"body": "x" * 30_001})
    assert r.status_code == 413
    assert "xxxxxxxx" in r.text
    assert reply(alice, tid, "   ").status_code == 400
    assert (
        alice.post("/forum/c/higgs/general/new", {"title": "t" * 201, "body": "b"}).status_code
        == 400
    )
    for i in range(6):
        assert reply(alice, tid, f"quick {i}").status_code == 201
    r = reply(alice, tid, "one too many")
    assert r.status_code == 429
    assert "6 times a minute" in r.json()["message"]
    assert alice.get(f"/forum/t/{tid}?page=99").status_code == 404
    assert alice.get(f"/forum/t/{tid}?page=abc").status_code == 400


def test_huge_thread_is_paginated(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    tid = seeded["tid"]
    for i in range(120):
        db.add(
            Post(
                thread_id=tid,
                author_id=people["bob"],
                body_md=f"n{i}",
                body_html=f"<p>marker-{i}</p>",
            )
        )
    db.commit()
    alice = browser("alice")
    first = alice.get(f"/forum/t/{tid}").text
    assert first.count('class="post ') == 50
    assert "Page 1 of 3" in first
    last = alice.get(f"/forum/t/{tid}?page=last").text
    assert "marker-119" in last
    assert "Page 3 of 3" in last


def test_announcements(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, orga = browser("alice"), seeded["orga"]
    assert (
        alice.post("/forum/c/higgs/announcements/new", {"title": "x", "body": "y"}).status_code
        == 403
    )
    tid = new_thread(orga, "Phase 2 opens", "Good luck", where="/forum/c/higgs/announcements")
    assert reply(alice, tid, "thanks").status_code == 403
    thread = post_announcement(
        db,
        challenge_slug="higgs",
        author_id=people["orga"],
        title="Data v2",
        body_md="Fixed labels",
    )
    db.commit()
    assert thread.category == "announcements"
    assert thread.status == "visible"
    assert "Data v2" in alice.get("/forum/c/higgs/announcements").text


ACTIONS = ["read", "reply", "edit_other", "hide", "lock", "mod_page", "user_page", "announce"]
ALLOWED = {
    # role: actions allowed in the forum of 'higgs' (organized by orga)
    None: {"read"},
    "newbie": {"read", "reply"},
    "alice": {"read", "reply"},
    "orgb": {"read", "reply", "mod_page", "user_page"},  # moderates only their own challenge
    "orga": set(ACTIONS),
    "admin": set(ACTIONS),
}


@pytest.mark.parametrize("who", list(ALLOWED), ids=lambda w: str(w))
def test_roles_by_actions_matrix(
    who: str | None, browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    tid = seeded["tid"]
    bob_post = reply(browser("bob"), tid, "bob's post").json()["id"]
    b = browser(who)

    def done(r: Any, status: int = 303) -> bool:
        return r.status_code == status and "/login" not in r.headers.get("location", "")

    def page(url: str) -> bool:
        return done(b.get(url, follow_redirects=False), 200)

    def act(action: str, target: int) -> bool:
        return done(
            b.post("/forum/mod/act", {"action": action, "target_id": target, "reason": "r"})
        )

    outcome = {
        "read": page(f"/forum/t/{tid}"),
        "reply": reply(b, tid, "a reply").status_code == 201,
        "edit_other": done(b.post(f"/forum/p/{bob_post}/edit", {"body": "changed"})),
        "hide": act("hide_post", bob_post),
        "lock": act("lock_thread", tid),
        "mod_page": page("/forum/mod"),
        "user_page": page(f"/forum/u/{people['bob']}"),
        "announce": done(b.post("/forum/c/higgs/announcements/new", {"title": "A", "body": "B"})),
    }
    assert {k for k, v in outcome.items() if v} == ALLOWED[who]
    db.expire_all()
    if "hide" not in ALLOWED[who]:
        assert db.get(Post, bob_post).status == "visible"
        assert db.get(Post, bob_post).body_md == "bob's post"


def test_hidden_challenge_forum_and_csrf(
    browser: Any, people: dict[str, int], seeded: dict[str, Any]
) -> None:
    alice = browser("alice")
    assert alice.get("/forum/c/secret").status_code == 404
    assert alice.post("/forum/c/secret/general/new", {"title": "t", "body": "b"}).status_code == 404
    assert browser("orgb").get("/forum/c/secret").status_code == 200
    assert alice.get("/forum/c/nope/general").status_code == 404
    # Without the token, or with another session's, nothing is written.
    r = alice.client.post(
        f"/forum/t/{seeded['tid']}/reply", data={"body": "no token"}, follow_redirects=False
    )
    assert r.status_code == 400
    assert "form expired" in r.text
    bob = browser("bob")
    r = alice.client.post(
        f"/forum/t/{seeded['tid']}/reply", data={"body": "x", "csrf_token": bob.csrf}
    )
    assert r.status_code == 400
    r = alice.post(
        f"/forum/t/{seeded['tid']}/reply",
        {"body": "cross"},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403


def test_cached_post_fragments_carry_each_viewers_token_and_current_state(
    browser: Any, seeded: dict[str, Any]
) -> None:
    """Posts come from a shared fragment cache: each viewer still gets their own CSRF token, and
    a vote shows at once (the cache key holds the score)."""
    tid = seeded["tid"]
    alice, bob = browser("alice"), browser("bob")
    post_id = reply(alice, tid, "cached **reply**").json()["id"]
    for viewer, other in ((bob, alice), (alice, bob)):
        page = viewer.get(f"/forum/t/{tid}").text
        assert f'value="{viewer.csrf}"' in page
        assert other.csrf not in page
        assert "csrf-" not in page  # the per-process marker never reaches a page
    assert f'data-testid="score-{post_id}">0 ▲' in bob.get(f"/forum/t/{tid}").text
    assert bob.post_json(f"/forum/p/{post_id}/vote").json()["voted"] is True
    page = bob.get(f"/forum/t/{tid}").text
    assert f'data-testid="score-{post_id}">1 ▲' in page
    assert "Unvote" in page


def test_people_behind_one_address_each_have_their_own_post_limit(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    """A hackathon room posts from one address: each account has its own limit, and the room
    is not refused as a whole (the forum once had one per-address bucket of 20 a minute)."""
    tid = seeded["tid"]
    room = [browser(name) for name in ("alice", "bob", "carol", "dave", "erin")]
    for b in room:  # all from the TestClient's one address
        for i in range(6):
            assert reply(b, tid, f"from the room {i}").status_code == 201
    posted = db.exec(select(Post).where(col(Post.body_md).startswith("from the room"))).all()
    assert len(posted) == 30
    r = reply(room[0], tid, "one too many")
    assert r.status_code == 429
    assert "6 times a minute" in r.json()["message"]


def test_search_snippets_are_text_not_markdown(
    browser: Any, people: dict[str, int], seeded: dict[str, Any]
) -> None:
    alice = browser("alice")
    tid = new_thread(alice, "Pileup", "Plain question")
    reply(alice, tid, "> quoted\n\nThe **pileup** weight is in [the docs](https://example.org/w)"
          " and `pileup_w`.")  # fmt: skip
    page = alice.get("/forum/search", params={"q": "pileup weight", "in": "higgs"}).text
    snippet = page.split('<ol class="hits">', 1)[1].split("</ol>", 1)[0]
    assert "The «pileup» «weight» is in the docs and «pileup_w.»" in snippet
    for syntax in ("**", "](", "`", "&gt;"):
        assert syntax not in snippet


def test_moderation_nav_links_are_separated(browser: Any, people: dict[str, int]) -> None:
    page = browser("admin").get("/forum/mod").text
    nav = page.split('<nav class="forum-nav"', 1)[1].split("</nav>", 1)[0]
    text = re.sub(r"<[^>]+>", "", nav)
    assert "Notifications · Moderation" in " ".join(text.split())


def test_preview_renders_without_saving(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice = browser("alice")
    tid = new_thread(alice, "Preview me", "First")
    before = len(db.exec(select(Post).where(Post.thread_id == tid)).all())
    body = "Some **bold**, $x^2$ and <img src=x onerror=alert(1)><script>alert(2)</script>"
    r = alice.post(f"/forum/t/{tid}/reply", {"body": body, "preview": "1"})
    assert r.status_code == 200
    preview = r.text.split('data-testid="preview">', 1)[1].split("</section>", 1)[0]
    assert "<strong>bold</strong>" in preview
    assert '<span class="math inline">x^2</span>' in preview
    assert "onerror" not in preview and "<script" not in preview  # noqa: PT018
    assert "Some **bold**" in r.text  # the text stays in the form, escaped
    assert len(db.exec(select(Post).where(Post.thread_id == tid)).all()) == before
    # New thread and edit forms preview too, and nothing is created or changed.
    r = alice.post("/forum/c/higgs/general/new", {"title": "T", "body": "*hi*", "preview": "1"})
    assert r.status_code == 200
    assert "<em>hi</em>" in r.text
    first = db.exec(select(Post).where(Post.thread_id == tid)).first()
    assert first is not None
    r = alice.post(f"/forum/p/{first.id}/edit", {"title": "X", "body": "`c`", "preview": "1"})
    assert r.status_code == 200
    assert "<code>c</code>" in r.text
    db.expire_all()
    assert db.get(Post, first.id).body_md == "First"  # type: ignore[union-attr]
    # CSRF as for every form.
    r = alice.client.post(f"/forum/t/{tid}/reply", data={"body": "x", "preview": "1"})
    assert r.status_code == 400
    assert "<em>" not in r.text
