"""Forum fixtures: the real app over ASGI, users of every role, a challenge, logged-in clients."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from starlette.testclient import TestClient

from challenge.app import create_app
from challenge.db import make_engine
from challenge.models import Challenge, User
from challenge.security import hash_password
from forum.models import Post

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # argon2 is slow on purpose: hash once for all test users


class Browser:
    """A TestClient logged in as one user, which knows its CSRF token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def login(self, username: str) -> Browser:
        page = self.client.get("/login")
        self.csrf = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        response = self.client.post(
            "/login",
            data={"login": username, "password": PASSWORD, "csrf_token": self.csrf},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        # Logging in starts a new session, hence a new CSRF token.
        self.csrf = CSRF_RE.search(self.client.get("/forum/").text).group(1)  # type: ignore[union-attr]
        return self

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        kw.setdefault("follow_redirects", False)
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    def post_json(self, url: str, data: dict[str, Any] | None = None) -> Any:
        return self.post(url, data, headers={"accept": "application/json"})


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings_factory: Any, database_url: str, engine: sa.Engine) -> Any:
    return create_app(settings_factory(database_url), engine)


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def people(db: Session) -> dict[str, int]:
    """admin, organizer (of 'higgs'), other organizer, and participants; returns name -> id."""
    ids = {}
    for name, role in [
        ("admin", "admin"), ("orga", "organizer"), ("orgb", "organizer"), ("alice", "participant"),
        ("bob", "participant"), ("carol", "participant"), ("dave", "participant"),
        ("erin", "participant"), ("newbie", "participant"),
    ]:  # fmt: skip
        user = User(username=name, email=f"{name}@example.org", password_hash=_HASH, role=role)
        db.add(user)
        db.flush()
        ids[name] = user.id
    db.add(Challenge(slug="higgs", title="HiggsML", created_by=ids["orga"], state="ready"))
    db.add(Challenge(slug="secret", title="Hidden one", created_by=ids["orgb"], is_listed=False))
    db.commit()
    return ids


@pytest.fixture
def browser(app: Any, people: dict[str, int]) -> Iterator[Callable[[str | None], Browser]]:
    clients: list[TestClient] = []

    def make(username: str | None) -> Browser:
        client = TestClient(app, base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        b = Browser(client)
        if username:
            b.login(username)
        else:
            page = client.get("/login")
            b.csrf = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        return b

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def seasoned(db: Session, user_id: int, thread_id: int, n: int = 5) -> None:
    """Give a user n approved posts so that they are past pre-moderation and trusted."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)  # outside the rate-limit windows
    for i in range(n):
        db.add(
            Post(
                thread_id=thread_id,
                author_id=user_id,
                body_md=f"old {i}",
                body_html=f"<p>old {i}</p>",
                created_at=long_ago,
            )
        )
    db.commit()


def new_thread(
    b: Any,
    title: str = "How is AMS computed?",
    body: str = "Question body",
    where: str = "/forum/c/higgs/general",
) -> int:
    r = b.post(f"{where}/new", {"title": title, "body": body})
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def reply(b: Any, thread_id: int, body: str) -> Any:
    return b.post_json(f"/forum/t/{thread_id}/reply", {"body": body})


@pytest.fixture
def seeded(browser: Any, people: dict[str, int], db: Session) -> dict[str, Any]:
    """A thread by the organizer, with alice, bob, carol, dave and erin past pre-moderation."""
    orga = browser("orga")
    tid = new_thread(orga, "Welcome", "Say hello")
    for name in ("alice", "bob", "carol", "dave", "erin"):
        seasoned(db, people[name], tid)
    return {"tid": tid, "orga": orga}
