"""/forum/mod/moderators: only admins grant and revoke forum moderators; grants take effect at once,
are audited, and need the CSRF token."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from forum.models import AuditEntry, Moderator
from tests.forum.conftest import new_thread

PAGE = "/forum/mod/moderators"


def grants(db: Session) -> list[tuple[int, str | None]]:
    db.expire_all()
    return sorted(
        ((m.user_id, m.challenge_slug) for m in db.exec(select(Moderator))),
        key=lambda g: (g[0], g[1] or ""),
    )


def test_only_admins_see_and_use_the_page(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    # A forum-granted site-wide moderator moderates everything but is not an admin.
    db.add(Moderator(user_id=people["erin"], challenge_slug=None))
    db.commit()
    for name in ("orga", "orgb", "alice", "erin"):
        b = browser(name)
        assert b.get(PAGE).status_code == 404, name
        r = b.post(PAGE, {"action": "grant", "username": "bob", "challenge": "higgs"})
        assert r.status_code == 404, name
    anon = browser(None)
    assert anon.get(PAGE, follow_redirects=False).status_code == 303  # to the login page
    assert grants(db) == [(people["erin"], None)]
    admin = browser("admin")
    assert admin.get(PAGE).status_code == 200
    assert 'href="/forum/mod/moderators"' in admin.get("/forum/mod").text
    assert 'href="/forum/mod/moderators"' not in browser("orga").get("/forum/mod").text
    # Without the CSRF token nothing changes.
    r = admin.client.post(PAGE, data={"action": "grant", "username": "bob", "challenge": "higgs"})
    assert r.status_code in (400, 403)
    assert grants(db) == [(people["erin"], None)]


def test_grant_and_revoke_take_effect_and_are_audited(
    browser: Any, people: dict[str, int], seeded: dict[str, Any], db: Session
) -> None:
    tid = seeded["tid"]
    admin, bob = browser("admin"), browser("bob")
    site_thread = new_thread(browser("alice"), "Site talk", "hi", where="/forum/site/general")
    assert 'value="lock_thread"' not in bob.get(f"/forum/t/{tid}").text
    r = admin.post(
        PAGE, {"action": "grant", "username": "Bob", "challenge": "higgs", "reason": "helps a lot"}
    )
    assert r.status_code == 303
    assert grants(db) == [(people["bob"], "higgs")]
    assert 'value="lock_thread"' in bob.get(f"/forum/t/{tid}").text  # at once (page cache too)
    assert 'value="lock_thread"' not in bob.get(f"/forum/t/{site_thread}").text
    assert bob.get("/forum/mod").status_code == 200
    page = admin.get(PAGE).text
    assert "bob" in page
    assert "helps a lot" in page
    # Clear refusals.
    r = admin.post(PAGE, {"action": "grant", "username": "bob", "challenge": "higgs"})
    assert r.status_code == 409
    assert "moderates this forum already" in r.text
    r = admin.post(PAGE, {"action": "grant", "username": "nobody", "challenge": ""})
    assert r.status_code == 404
    assert "No user named" in r.text
    r = admin.post(PAGE, {"action": "grant", "username": "bob", "challenge": "nope"})
    assert r.status_code == 404
    assert "No challenge" in r.text
    # Site-wide.
    assert admin.post(PAGE, {"action": "grant", "username": "carol"}).status_code == 303
    assert 'value="lock_thread"' in browser("carol").get(f"/forum/t/{site_thread}").text
    # Revoke bob's grant.
    grant_id = db.exec(select(Moderator.id).where(Moderator.user_id == people["bob"])).one()
    r = admin.post(PAGE, {"action": "revoke", "grant_id": str(grant_id), "reason": "stepped down"})
    assert r.status_code == 303
    assert 'value="lock_thread"' not in bob.get(f"/forum/t/{tid}").text
    assert bob.get("/forum/mod").status_code == 404
    assert admin.post(PAGE, {"action": "revoke", "grant_id": str(grant_id)}).status_code == 404
    db.expire_all()
    log = db.exec(
        select(AuditEntry)
        .where(col(AuditEntry.action).in_(["grant_moderator", "revoke_moderator"]))
        .order_by(col(AuditEntry.id))
    ).all()
    assert [(a.action, a.target_id, a.challenge_slug, a.actor_id, a.reason) for a in log] == [
        ("grant_moderator", people["bob"], "higgs", people["admin"], "helps a lot"),
        ("grant_moderator", people["carol"], None, people["admin"], ""),
        ("revoke_moderator", people["bob"], "higgs", people["admin"], "stepped down"),
    ]
