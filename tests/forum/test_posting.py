"""Replies: notifications (one per person, written in bulk), held replies, the thread counters and
version, and writes into forums the user may not see."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from forum.models import Notification, Thread
from tests.forum.conftest import new_thread, reply, seasoned


def notes(db: Session, thread_id: int) -> list[tuple[int, str]]:
    db.expire_all()
    return sorted(
        (n.user_id, n.kind)
        for n in db.exec(select(Notification).where(Notification.thread_id == thread_id))
    )


def test_subscribers_and_mentioned_users_are_told_once(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    alice, bob, carol, dave = (browser(n) for n in ("alice", "bob", "carol", "dave"))
    tid = new_thread(alice, "Who wins?", "Guess")  # alice follows her thread
    reply(bob, tid, "me")  # bob follows it now; alice is told
    assert carol.post(f"/forum/t/{tid}/subscribe", {"on": "1"}).status_code == 303
    before = len(notes(db, tid))
    r = reply(dave, tid, "Not @bob, says @erin and @dave")
    assert r.status_code == 201
    new = notes(db, tid)
    for n in notes(db, tid)[:before]:
        new.remove(n)
    p = people
    # bob is mentioned and subscribed: one notification (the mention); dave wrote it: none.
    assert sorted(new) == sorted(
        [
            (p["alice"], "reply"),
            (p["bob"], "mention"),
            (p["carol"], "reply"),
            (p["erin"], "mention"),
        ]
    )
    db.expire_all()
    thread = db.get(Thread, tid)
    assert thread is not None
    assert thread.reply_count == 2
    assert thread.last_post_at is not None


def test_held_reply_notifies_when_approved(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    tid, orga = seeded["tid"], seeded["orga"]
    alice = browser("alice")
    tid = new_thread(alice, "Question", "Q")
    before = notes(db, tid)
    held = reply(browser("newbie"), tid, "first post of mine").json()
    assert held["status"] == "pending"
    assert notes(db, tid) == before
    db.expire_all()
    version = db.get(Thread, tid).version  # type: ignore[union-attr]
    r = orga.post("/forum/mod/act", {"action": "approve_post", "target_id": held["id"]})
    assert r.status_code == 303
    assert (people["alice"], "reply") in notes(db, tid)
    db.expire_all()
    assert db.get(Thread, tid).version > version  # type: ignore[union-attr]


def test_no_writing_into_a_forum_one_cannot_see(
    browser: Any, people: dict[str, int], db: Session
) -> None:
    orgb = browser("orgb")
    tid = new_thread(orgb, "Hidden", "psst", where="/forum/c/secret/general")
    post = db.exec(select(col(Thread.id)).where(Thread.id == tid)).one()
    first = reply(orgb, tid, "an organizer's reply").json()["id"]
    seasoned(db, people["alice"], post)
    alice = browser("alice")  # not a participant of the unlisted challenge
    assert reply(alice, tid, "let me in").status_code == 404
    assert alice.get(f"/forum/t/{tid}/reply").status_code == 404
    assert alice.post_json(f"/forum/p/{first}/vote").status_code == 404
    assert alice.get(f"/forum/p/{first}/flag").status_code == 404
    assert alice.get(f"/forum/p/{first}", follow_redirects=False).status_code == 404
    assert alice.post(f"/forum/t/{tid}/subscribe", {"on": "1"}).status_code == 404
