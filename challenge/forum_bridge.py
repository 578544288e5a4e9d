"""The hub's side of the forum contract (:class:`forum.interface.ForumHost`).

Admins moderate every forum; a challenge's organizer (``Challenge.created_by``) moderates that
challenge's forum and may post announcements there. The forum adds its own moderator grants.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa
from markupsafe import escape
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from challenge.errors import PodiumError
from challenge.models import Challenge, Participation, User, utcnow
from challenge.sessions import session_key_hash, user_statement
from challenge.settings import Settings
from challenge.web import csrf_token, current_user, db, engine_of, read_form, render
from forum.access import ForumError
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import post_announcement
from forum.views import TEMPLATES_DIR, forum_routes

log = logging.getLogger(__name__)


@dataclass
class _RequestFacts:
    """The hub's answers for one request (the forum asks several times per page)."""

    organized: frozenset[str] | None = None
    titles: dict[str, str | None] = field(default_factory=dict)  # slug -> title if visible


def _facts(request: Request) -> _RequestFacts:
    facts = getattr(request.state, "forum_hub_facts", None)
    if not isinstance(facts, _RequestFacts):
        facts = _RequestFacts()
        request.state.forum_hub_facts = facts
    return facts


def _challenge_statement(*, with_organized: bool, slug: Any = None) -> Any:
    """Built once (bound ``slug`` and ``me``): the challenge's visibility facts, and optionally the
    slugs of the challenges ``me`` organizes in the same result. ``slug``: an SQL expression that
    gives the slug instead of the bound parameter."""
    if slug is None:
        slug = sa.bindparam("slug", type_=sa.String)
    me = sa.bindparam("me", type_=sa.Integer)
    joined = (
        select(Participation.id)
        .where(col(Participation.challenge_id) == Challenge.id, col(Participation.user_id) == me)
        .exists()
    )
    wanted = col(Challenge.slug) == slug
    if with_organized:
        wanted = sa.or_(wanted, col(Challenge.created_by) == me)
    return sa.select(
        col(Challenge.slug),
        col(Challenge.title),
        col(Challenge.is_listed),
        col(Challenge.created_by),
        joined,
    ).where(wanted)


_CHALLENGE = _challenge_statement(with_organized=False)
_CHALLENGE_AND_ORGANIZED = _challenge_statement(with_organized=True)
_USER = user_statement()  # the user of the cookie's live session (challenge/sessions.py)
_USER_KEYS = tuple(User.__table__.columns.keys())  # type: ignore[attr-defined]


def _title_if_visible(row: Sequence[Any], user: User | None) -> str | None:
    """``visible_challenge``'s rule on a row of ``_challenge_statement``: listed, or the viewer is
    an admin, its organizer or a participant."""
    _, name, listed, created_by, participates = row
    me = user.id if user is not None else None
    if listed or participates or (user is not None and (user.role == "admin" or created_by == me)):
        return str(name)
    return None


def _utc(value: Any) -> Any:
    """As ``UTCDateTime`` gives it through the ORM."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


class LoopReader:
    """Reads on the event loop for ``prefetch_on_loop``: PostgreSQL only, on a few asynchronous
    psycopg connections owned by this worker process (autocommit: each read sees the latest
    commit), never the app's pool (the middleware that hands its connections back runs on the
    loop). Statements are compiled once; a batch is sent in one round trip (pipeline mode)."""

    MAX_CONNECTIONS = 4

    def __init__(self, engine: sa.Engine) -> None:
        self.url = engine.url
        self.dialect = engine.dialect
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.opened = 0
        self.waiters: deque[asyncio.Future[psycopg.AsyncConnection[Any]]] = deque()
        self.compiled: dict[int, tuple[Any, str, dict[str, Any]]] = {}

    def _compile(self, statement: Any) -> tuple[str, dict[str, Any]]:
        known = self.compiled.get(id(statement))
        if known is None or known[0] is not statement:
            compiled = statement.compile(dialect=self.dialect)
            # Literal-execute parameters (aggregate_strings' separator) rendered in the SQL; the
            # others stay %(name)s, with their default values (literals') kept for each run.
            expanded = compiled.construct_expanded_state(dict(compiled.params))
            known = (statement, expanded.statement, dict(expanded.parameters))
            self.compiled[id(statement)] = known
        return known[1], known[2]

    async def _connection(self) -> psycopg.AsyncConnection[Any] | None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new loop (tests): the old connections are its own
            for conn in self.idle:
                conn.pgconn.finish()
            self.idle, self.opened, self.loop, self.waiters = [], 0, loop, deque()
        if self.idle:
            return self.idle.pop()
        if self.opened >= self.MAX_CONNECTIONS:  # wait for one (a read takes well under 1 ms)
            waiter: asyncio.Future[psycopg.AsyncConnection[Any]] = loop.create_future()
            self.waiters.append(waiter)
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), 1.0)
            except BaseException as exc:  # timed out, or the request was cancelled
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())  # handed over meanwhile: pass it on
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    return None  # all busy for long: the caller takes its ordinary path
                raise
        self.opened += 1
        try:
            conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            return await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=2
            )
        except BaseException:
            self.opened -= 1
            raise

    async def fetch(
        self, batch: Sequence[tuple[Any, Mapping[str, Any]]]
    ) -> list[list[tuple[Any, ...]]] | None:
        """The rows of each statement, or None when every connection is busy."""
        conn = await self._connection()
        if conn is None:
            return None
        loop = self.loop
        try:
            results: list[list[tuple[Any, ...]]] = []
            async with conn.pipeline():
                cursors = []
                for statement, params in batch:
                    sql, defaults = self._compile(statement)
                    cursor = conn.cursor()
                    await cursor.execute(sql, {**defaults, **params})
                    cursors.append(cursor)
                for cursor in cursors:
                    results.append(await asyncio.wait_for(cursor.fetchall(), 2.0))
        except BaseException:
            conn.pgconn.finish()  # a cancelled or failed read leaves the connection in doubt
            if self.loop is loop:
                self.opened -= 1
            raise
        if self.loop is loop:
            self._release(conn)
        else:
            conn.pgconn.finish()
        return results

    def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)


_reader_lock = threading.Lock()


def _loop_reader(request: Request) -> LoopReader | None:
    """The app's reader; None on SQLite (a local read does not block the loop for long)."""
    state = request.app.state
    reader: LoopReader | None = getattr(state, "forum_loop_reader", None)
    if reader is None:
        with _reader_lock:
            reader = getattr(state, "forum_loop_reader", None)
            if reader is None:
                engine = engine_of(request)
                if engine.url.get_backend_name() != "postgresql":
                    return None
                reader = state.forum_loop_reader = LoopReader(engine)
    return reader


class HubForumHost:
    """Implements ForumHost with the hub's users, roles, challenges, sessions and templates.

    Answers are memoized per request; the challenge a page is about and the challenges the user
    organizes come from one query.
    """

    def __init__(self) -> None:
        self._scoped: dict[int, tuple[Any, Any, Any]] = {}  # id(scope) -> its statements

    def current_user(self, request: Request) -> ForumUser | None:
        user = current_user(request)
        if user is None or user.id is None:
            return None
        return ForumUser(user.id, user.username)

    def is_site_moderator(self, request: Request) -> bool:
        user = current_user(request)
        return user is not None and user.role == "admin"

    def moderated_challenges(self, request: Request) -> frozenset[str]:
        return self.organized_challenges(request)

    def organized_challenges(self, request: Request) -> frozenset[str]:
        facts = _facts(request)
        if facts.organized is None:
            user = current_user(request)
            if user is None:
                facts.organized = frozenset()
            else:
                query = select(Challenge.slug)
                if user.role != "admin":
                    query = query.where(Challenge.created_by == user.id)
                facts.organized = frozenset(db(request).exec(query).all())
        return facts.organized

    def challenge_title(self, request: Request, challenge_slug: str) -> str | None:
        """The same rule as ``visible_challenge``: listed, or the viewer is an admin, its
        organizer or a participant. Reads only the columns it needs (not the description)."""
        facts = _facts(request)
        if challenge_slug in facts.titles:
            return facts.titles[challenge_slug]
        user = current_user(request)
        me = user.id if user is not None else None
        # A logged-in non-admin's organized challenges come with it (the forum asks next).
        with_organized = user is not None and user.role != "admin" and facts.organized is None
        statement = _CHALLENGE_AND_ORGANIZED if with_organized else _CHALLENGE
        rows = db(request).execute(statement, {"slug": challenge_slug, "me": me}).all()
        if with_organized:
            facts.organized = frozenset(r[0] for r in rows if r[3] == me)
        title = None
        for row in rows:
            if row[0] == challenge_slug:
                title = _title_if_visible(row, user)
        facts.titles[challenge_slug] = title
        return title

    async def prefetch_on_loop(
        self,
        request: Request,
        scope: Any,
        params: Mapping[str, Any],
        reads: Callable[[int | None], Sequence[tuple[Any, Mapping[str, Any]]]],
    ) -> list[Sequence[Sequence[Any]]] | None:
        """See :class:`forum.interface.ForumHost`. Browser sessions of participants and organizers
        (and visitors) only: API tokens and admins take the ordinary path."""
        if "session" not in request.scope or hasattr(request.state, "user"):
            return None
        if request.headers.get("authorization"):
            return None
        reader = _loop_reader(request)
        if reader is None:
            return None
        claimed, session_id = request.session.get("user_id"), request.session.get("sid")
        if claimed is not None and not session_id:
            return None  # a cookie from before server-side sessions: the ordinary path ends it
        try:
            me = int(claimed) if claimed is not None else None
            batch: list[tuple[Any, Mapping[str, Any]]] = []
            if me is not None:
                key = session_key_hash(str(session_id))
                batch.append((_USER, {"user_id": me, "key": key, "now": utcnow()}))
            statements = self._scoped.get(id(scope))
            if statements is None or statements[0] is not scope:
                statements = (
                    scope,
                    _challenge_statement(with_organized=False, slug=scope),
                    _challenge_statement(with_organized=True, slug=scope),
                )
                self._scoped[id(scope)] = statements
            batch.append((statements[1 if me is None else 2], {**params, "me": me}))
            batch.extend(reads(me))
            results = await reader.fetch(batch)
        except Exception:  # the read on the loop is an optimization: any trouble, the usual path
            log.debug("forum read on the loop failed", exc_info=True)
            return None
        if results is None:
            return None
        user = None
        if me is not None:
            found = results.pop(0)
            if not found:
                return None  # session ended or expired: the ordinary path logs the cookie out
            user = User(**{k: _utc(v) for k, v in zip(_USER_KEYS, found[0], strict=True)})
            if not user.is_active or user.role == "admin":
                return None  # the ordinary path says who they are (admins see every challenge)
        request.state.user = user
        facts = _facts(request)
        challenges = results.pop(0)
        if me is not None:
            facts.organized = frozenset(r[0] for r in challenges if r[3] == me)
        for row in challenges:
            facts.titles[row[0]] = _title_if_visible(row, user)
        return list(results)

    def display_names(self, session: Session, user_ids: Iterable[int]) -> Mapping[int, str]:
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        rows = session.exec(select(User.id, User.username).where(col(User.id).in_(ids))).all()
        return {int(i): name for i, name in rows if i is not None}

    def user_ids_for_names(self, session: Session, names: Iterable[str]) -> Mapping[str, int]:
        wanted = sorted({n.lower() for n in names})
        if not wanted:
            return {}
        rows = session.exec(
            select(User.id, User.username).where(sa.func.lower(User.username).in_(wanted))
        ).all()
        return {name.lower(): int(i) for i, name in rows if i is not None}

    def session(self, request: Request) -> Session:
        return db(request)

    async def read_form(self, request: Request) -> FormData:
        try:
            return await read_form(request)
        except PodiumError as exc:
            raise ForumError(exc.message) from exc

    def csrf_field(self, request: Request) -> str:
        token = escape(csrf_token(request))
        return f'<input type="hidden" name="csrf_token" value="{token}">'

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        return render(request, template, status_code=status_code, **context)


def announce(
    session: Session, *, challenge: Challenge, author: User, title: str, body_md: str
) -> int:
    """Post an organizer's announcement in the challenge forum; returns the thread id."""
    assert author.id is not None
    thread = post_announcement(
        session,
        challenge_slug=challenge.slug,
        author_id=author.id,
        title=title,
        body_md=body_md,
        config=ForumConfig(),
        users=HubForumHost(),
    )
    assert thread.id is not None
    return thread.id


FORUM_TEMPLATES = TEMPLATES_DIR


def forum_config(settings: Settings) -> ForumConfig:
    """The forum's policy from the ``PODIUM_FORUM_*`` settings (one per ForumConfig field)."""
    values: dict[str, Any] = {
        f.name: getattr(settings, f"forum_{f.name}")
        for f in dataclasses.fields(ForumConfig)
        if f.name != "image_hosts"
    }
    hosts = frozenset(h.strip().lower() for h in settings.forum_image_hosts.split(",") if h.strip())
    return ForumConfig(**values, image_hosts=hosts)


def forum_mount(settings: Settings | None = None, config: ForumConfig | None = None) -> Mount:
    """The forum's routes under /forum, served with the hub's users and layout; the policy comes
    from ``config``, else from the settings, else ForumConfig's defaults."""
    if config is None:
        config = forum_config(settings) if settings is not None else ForumConfig()
    return Mount("/forum", routes=forum_routes(HubForumHost(), config))
