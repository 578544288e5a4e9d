"""Account security (docs/security/accounts.md): sessions that end, e-mailed links, what an
outsider can learn about who has an account, rate limits, look-alike names."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from challenge import security
from challenge.accounts import NAME_TAKEN
from challenge.db import session_scope
from challenge.models import AccountEvent, AccountToken, MailOutbox, User, UserSession
from tests.challenge.conftest import PASSWORD, csrf_of, login

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def browsers(app: Any) -> Iterator[Any]:
    """Clients of their own (cookies), each from an address of its own unless given one."""
    made: list[TestClient] = []

    def make(address: str | None = None) -> TestClient:
        client = TestClient(
            app,
            base_url="http://testserver",
            client=(address or f"10.0.0.{len(made) + 1}", 40000),
        )
        client.__enter__()
        made.append(client)
        return client

    yield make
    for client in made:
        client.__exit__(None, None, None)


def _logged_in_as(client: TestClient) -> str | None:
    r = client.get("/account", follow_redirects=False)
    if r.status_code != 200:
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")
        return None
    return re.search(r"<h1>([^<]+)</h1>", r.text).group(1)  # type: ignore[union-attr]


def _post(client: TestClient, url: str, data: dict[str, str], page: str | None = None) -> Any:
    token = csrf_of(client, page or url)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def _link(engine: sa.Engine, kind: str, to: str) -> str:
    with Session(engine) as session:
        mail = session.exec(
            select(MailOutbox)
            .where(MailOutbox.kind == kind, MailOutbox.to_addr == to)
            .order_by(col(MailOutbox.id).desc())
        ).first()
    assert mail is not None, f"no {kind} mail to {to}"
    return re.search(r"\{base_url\}(/(?:password/reset|register/confirm)/\S+)", mail.body).group(1)  # type: ignore[union-attr]


# ---------------------------------------------------------------- sessions


def test_logout_ends_the_session_on_the_server(
    browsers: Any, make_user: Any, engine: sa.Engine
) -> None:
    make_user("alice")
    browser = browsers()
    login(browser, "alice")
    stolen = dict(browser.cookies)  # a copy of the cookie, as an attacker would keep it
    assert _logged_in_as(browser) == "alice"
    with Session(engine) as session:
        assert len(session.exec(select(UserSession)).all()) == 1
    _post(browser, "/logout", {}, page="/")
    with Session(engine) as session:
        assert session.exec(select(UserSession)).all() == []
    replay = browsers()
    replay.cookies.update(stolen)
    assert _logged_in_as(replay) is None
    assert "Log in" in replay.get("/").text


def test_a_cookie_without_a_live_session_is_no_login(
    browsers: Any, make_user: Any, engine: sa.Engine
) -> None:
    """An expired session, and a cookie signed with the site's secret but naming a user without a
    session (the shape of every cookie before sessions were kept), log in no one."""
    from itsdangerous import TimestampSigner

    alice = make_user("alice")
    browser = browsers()
    login(browser, "alice")
    with session_scope(engine) as session:
        row = session.exec(select(UserSession)).one()
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.add(row)
    assert _logged_in_as(browser) is None

    import base64
    import json

    secret = browser.app.state.settings.secret_key.get_secret_value()  # type: ignore[attr-defined]
    payload = base64.b64encode(json.dumps({"user_id": alice.id}).encode())
    forged = browsers()
    forged.cookies.set("podium_session", TimestampSigner(secret).sign(payload).decode())
    assert _logged_in_as(forged) is None


def test_password_change_ends_every_other_session(
    browsers: Any, make_user: Any, engine: sa.Engine
) -> None:
    make_user("alice")
    here, there = browsers(), browsers()
    login(here, "alice")
    login(there, "alice")
    token = _token(here)
    r = _post(here, "/account/password", {"current": "wrong password", "new": NEW_PASSWORD})
    assert r.status_code == 400
    assert "current password is wrong" in r.text
    assert _logged_in_as(there) == "alice"  # nothing changed yet
    r = _post(here, "/account/password", {"current": PASSWORD, "new": NEW_PASSWORD})
    assert r.status_code == 303
    assert _logged_in_as(here) == "alice"  # this session stays
    assert _logged_in_as(there) is None  # the other one is over
    # API tokens keep working (they are revoked on the account page).
    assert here.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with Session(engine) as session:
        kinds = [e.kind for e in session.exec(select(AccountEvent))]
        assert "password_changed" in kinds
        assert "sessions_ended" in kinds
        assert len(session.exec(select(UserSession)).all()) == 1
    again = browsers()
    r = _post(again, "/login", {"login": "alice", "password": PASSWORD}, page="/login")
    assert r.status_code == 400
    r = _post(again, "/login", {"login": "alice", "password": NEW_PASSWORD}, page="/login")
    assert r.status_code == 303


def _token(client: TestClient) -> str:
    r = _post(client, "/account", {"action": "create", "name": "laptop"})
    assert r.status_code == 200
    return re.search(r'id="new-token">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]


def test_admin_ends_a_users_sessions_audited(
    browsers: Any, make_user: Any, engine: sa.Engine
) -> None:
    admin = make_user("root", role="admin")
    bob = make_user("bob")
    make_user("mallory")
    a, b, m = browsers(), browsers(), browsers()
    login(a, "root")
    login(b, "bob")
    login(m, "mallory")
    # Not an admin: the page and the action do not exist.
    assert m.get("/admin/users").status_code == 404
    token = csrf_of(m, "/")
    r = m.post(f"/admin/users/{bob.id}/end-sessions", data={"csrf_token": token})
    assert r.status_code == 404
    assert _logged_in_as(b) == "bob"
    page = a.get("/admin/users?q=bob")
    assert page.status_code == 200
    assert "bob" in page.text
    r = _post(a, f"/admin/users/{bob.id}/end-sessions", {}, page="/admin/users")
    assert r.status_code == 303
    assert _logged_in_as(b) is None
    assert _logged_in_as(a) == "root"
    with Session(engine) as session:
        event = session.exec(select(AccountEvent).where(AccountEvent.user_id == bob.id)).one()
        assert (event.kind, event.actor_id) == ("sessions_ended", admin.id)
        assert "by admin root" in event.detail
    assert "sessions_ended" in a.get("/admin/users").text


# ---------------------------------------------------------------- password reset


def test_password_reset_by_email(browsers: Any, make_user: Any, engine: sa.Engine) -> None:
    make_user("alice")
    logged = browsers()
    login(logged, "alice")
    asker = browsers()
    known = _post(asker, "/password/forgot", {"email": "alice@example.org"})
    unknown = _post(asker, "/password/forgot", {"email": "nobody@example.org"})
    # The same answer whether the address has an account or not.
    assert known.status_code == unknown.status_code == 200
    assert _without_csrf(known.text).replace("alice@", "nobody@") == _without_csrf(unknown.text)
    with Session(engine) as session:
        mails = session.exec(select(MailOutbox)).all()
        assert [(m.kind, m.to_addr) for m in mails] == [("password_reset", "alice@example.org")]
        stored = session.exec(select(AccountToken)).one()
    link = _link(engine, "password_reset", "alice@example.org")
    assert stored.token_hash not in link  # only the token's hash is stored
    assert link.rsplit("/", 1)[1] not in stored.token_hash
    r = _post(asker, link, {"password": NEW_PASSWORD})
    assert r.status_code == 303
    assert _logged_in_as(asker) == "alice"
    assert _logged_in_as(logged) is None  # whoever knew the old password is out
    # Single use.
    again = browsers()
    assert again.get(link).status_code == 400
    r = _post(again, link, {"password": "yet another password"}, page="/password/forgot")
    assert r.status_code == 400
    assert "not valid" in r.text
    # Expiry.
    _post(asker, "/password/forgot", {"email": "alice@example.org"})
    late = _link(engine, "password_reset", "alice@example.org")
    with session_scope(engine) as session:
        for row in session.exec(select(AccountToken).where(col(AccountToken.used_at).is_(None))):
            row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            session.add(row)
    r = _post(again, late, {"password": "yet another password"}, page="/password/forgot")
    assert r.status_code == 400
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "alice")).one()
        assert security.verify_password(user.password_hash, NEW_PASSWORD)


def _without_csrf(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", page)


# ---------------------------------------------------------------- who has an account


class _CountingHasher:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.verified = 0

    def verify(self, hash_: str, password: str) -> bool:
        self.verified += 1
        result: bool = self.real.verify(hash_, password)
        return result

    def hash(self, password: str) -> str:
        result: str = self.real.hash(password)
        return result


def test_login_costs_one_hash_verification_whether_the_account_exists(
    browsers: Any, make_user: Any, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice")
    make_user("gone")
    with session_scope(engine) as session:
        gone = session.exec(select(User).where(User.username == "gone")).one()
        gone.is_active = False
        session.add(gone)
    spy = _CountingHasher(security._hasher)
    monkeypatch.setattr(security, "_hasher", spy)
    browser = browsers()
    pages = {}
    for name, password in [
        ("nobody-here", "whatever1"),
        ("alice", "wrong password"),
        ("gone", PASSWORD),
        ("alice", PASSWORD),
    ]:
        before = spy.verified
        r = _post(browser, "/login", {"login": name, "password": password}, page="/login")
        assert spy.verified - before == 1, name  # known or not: the same work
        pages[name, password] = r
        if r.status_code == 303:
            _post(browser, "/logout", {}, page="/")
    failures = [pages["nobody-here", "whatever1"], pages["alice", "wrong password"]]
    failures.append(pages["gone", PASSWORD])
    assert {r.status_code for r in failures} == {400}
    assert all("Unknown user name or wrong password." in r.text for r in failures)
    # The API and EvalAI logins go through the same check.
    for path, body in [
        ("/api/auth/token", {"json": {"login": "nobody-here", "password": "x" * 9}}),
        ("/api/auth/login", {"data": {"username": "nobody-here", "password": "x" * 9}}),
    ]:
        before = spy.verified
        assert browser.post(path, **body).status_code in (400, 401)
        assert spy.verified - before == 1, path


def test_registration_does_not_tell_whether_an_address_is_used(
    browsers: Any, make_user: Any, engine: sa.Engine
) -> None:
    make_user("alice")  # alice@example.org
    browser = browsers()
    fresh = _post(
        browser,
        "/register",
        {"username": "newcomer", "email": "new@example.org", "password": PASSWORD},
    )
    taken = _post(
        browser,
        "/register",
        {"username": "prober", "email": "alice@example.org", "password": PASSWORD},
    )
    assert fresh.status_code == taken.status_code == 200
    assert _without_csrf(fresh.text).replace("new@", "alice@") == _without_csrf(taken.text)
    assert "already" not in taken.text.replace("If that address already has an account", "")
    with Session(engine) as session:
        names = set(session.exec(select(User.username)))
        assert names == {"alice", "newcomer"}  # no 'prober' account
        mails = {(m.kind, m.to_addr) for m in session.exec(select(MailOutbox))}
    # The owner of the used address hears of it; the new address gets its link.
    assert mails == {("account_exists", "alice@example.org"), ("confirm_email", "new@example.org")}
    # Not usable before the link is followed; the link logs in, once.
    r = _post(browser, "/login", {"login": "newcomer", "password": PASSWORD}, page="/login")
    assert r.status_code == 403
    assert "Confirm your e-mail address first" in r.text
    r = _post(browser, "/login", {"login": "newcomer", "password": "bad password"}, page="/login")
    assert "Unknown user name or wrong password." in r.text  # no hint without the password
    link = _link(engine, "confirm_email", "new@example.org")
    assert _post(browser, link, {}).status_code == 303
    assert _logged_in_as(browser) == "newcomer"
    assert _post(browsers(), link, {}).status_code == 400


def test_a_taken_or_look_alike_user_name_is_refused(browsers: Any, make_user: Any) -> None:
    make_user("alice")
    browser = browsers()
    for name in ("alice", "Alice", "ALICE", "aIice", "a1ice", "alice.", "a_lice", "a-lice"):
        r = _post(
            browser,
            "/register",
            {"username": name, "email": f"{name.lower()}x@example.org", "password": PASSWORD},
        )
        assert r.status_code == 409, name
        assert "user name is taken, or too close to one that is" in r.text
    r = _post(
        browser,
        "/register",
        {"username": "alicia", "email": "alicia@example.org", "password": PASSWORD},
    )
    assert r.status_code == 200


def test_look_alikes_are_refused_by_the_database_too(engine: sa.Engine, make_user: Any) -> None:
    """The unique key holds even for a writer that skips create_user's check (or races it)."""
    make_user("alice")
    with Session(engine) as session:
        session.add(User(username="aIice", email="x@example.org", password_hash="-"))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()


def test_create_user_refuses_look_alikes(engine: sa.Engine, make_user: Any) -> None:
    from challenge.accounts import create_user
    from challenge.errors import Conflict

    make_user("marc")
    for name in ("rnarc", "MARC.", "m-a-r-c"):
        with Session(engine) as session, pytest.raises(Conflict) as info:
            create_user(session, username=name, email=f"{name}@example.org", password=PASSWORD)
        assert info.value.message == NAME_TAKEN


def test_a_site_without_smtp_says_where_its_mail_goes(
    browsers: Any, settings: Any
) -> None:
    """`make demo` sends no e-mail: the 'check your e-mail' page says the message is a file on the
    server (else a visitor of the demo waits for a mail that never comes); a production site, or
    one with an SMTP server, never shows a server path."""
    data = {"username": "newcomer", "email": "new@example.org", "password": PASSWORD}
    page = _post(browsers(), "/register", data).text
    assert 'data-testid="mail-to-files"' in page
    assert str(settings.mail_dir) in page
    for changed in ({"smtp_host": "smtp.example.org"}, {"env": "production"}):
        original = {k: getattr(settings, k) for k in changed}
        for key, value in changed.items():
            object.__setattr__(settings, key, value)
        try:
            data["username"] = data["username"] + "x"
            data["email"] = "x" + data["email"]
            page = _post(browsers(), "/register", data).text
        finally:
            for key, value in original.items():
                object.__setattr__(settings, key, value)
        assert "Check your e-mail" in page
        assert 'data-testid="mail-to-files"' not in page
        assert str(settings.mail_dir) not in page
