"""Whole thread-page bodies, cached per worker process and keyed by the thread's version.

Every write that changes what a thread's pages show bumps ``forum_thread.version`` in its own
transaction (``forum.models.bump_thread_versions``, an ORM flush hook, so no writer can forget it).
A page body is keyed by (thread id, version, page, viewer class): a reader that sees version *n*
reads the body of version *n* or newer, whichever worker process rendered it, and a write is
visible on the next request everywhere. Nothing is ever invalidated; old versions age out of the LRU.

The viewer class (:class:`ViewerClass`) holds everything about the viewer the body depends on
(logged in, moderator of this forum, may reply, may accept the answer, ...). What differs between
viewers of one class (the CSRF field, the subscribe button, each post's vote/edit/flag controls)
stays in slots (``forum.fragments.PageTemplate``) filled per request from the query that reads the
thread's row (:func:`thread_and_viewer_facts`). Participants with their own held posts in the
thread see a page nobody else sees: their pages are rendered for them and not cached.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from forum.fragments import PageTemplate
from forum.models import PENDING, Post, Subscription, Thread, Vote


@dataclass(frozen=True, slots=True)
class ViewerClass:
    """What a thread page body depends on besides the thread: shared by many viewers."""

    logged_in: bool
    moderator: bool  # of this thread's forum: sees held and hidden posts, moderation forms
    nav_moderation: bool  # moderates some forum: the "Moderation" link
    can_reply: bool
    can_accept: bool  # the asker (or a moderator) outside Announcements
    scope_title: str


@dataclass(frozen=True, slots=True)
class ViewerFacts:
    subscribed: bool
    voted: frozenset[int]
    has_pending: bool  # own held posts in the thread (the page is theirs alone)


def _thread_with_viewer_facts() -> Any:
    """Built once (bound parameters ``user_id`` and ``thread_id``): building a statement costs more
    CPU than running it."""
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    thread_id = sa.bindparam("thread_id", type_=sa.Integer)
    subscribed = (
        select(Subscription.thread_id)
        .where(col(Subscription.user_id) == user_id, col(Subscription.thread_id) == thread_id)
        .exists()
    )
    pending = (
        select(Post.id)
        .where(
            col(Post.thread_id) == thread_id,
            col(Post.author_id) == user_id,
            col(Post.status) == PENDING,
        )
        .exists()
    )
    votes = (
        select(sa.func.aggregate_strings(sa.cast(col(Vote.post_id), sa.String), ","))
        .join(Post, col(Post.id) == Vote.post_id)
        .where(col(Vote.user_id) == user_id, col(Post.thread_id) == thread_id)
        .scalar_subquery()
    )
    return select(Thread, subscribed, pending, votes).where(col(Thread.id) == thread_id)


_THREAD_WITH_VIEWER_FACTS = _thread_with_viewer_facts()
# For readers that run it themselves (``ForumHost.prefetch_on_loop``): rows for
# :func:`thread_from_row`. A visitor's ``user_id`` is None: the viewer facts are then all false.
THREAD_WITH_VIEWER_FACTS = _THREAD_WITH_VIEWER_FACTS
# The slug of the forum the thread ``thread_id`` is in (NULL: the site-wide forum, or no thread).
THREAD_SCOPE = (
    select(Thread.challenge_slug)
    .where(col(Thread.id) == sa.bindparam("thread_id", type_=sa.Integer))
    .scalar_subquery()
)
_THREAD_KEYS = tuple(Thread.__table__.columns.keys())  # type: ignore[attr-defined]


def _viewer_facts(is_subscribed: Any, has_pending: Any, voted: str | None) -> ViewerFacts:
    return ViewerFacts(
        subscribed=bool(is_subscribed),
        voted=frozenset(int(i) for i in voted.split(",")) if voted else frozenset(),
        has_pending=bool(has_pending),
    )


def thread_from_row(row: Sequence[Any], logged_in: bool) -> tuple[Thread, ViewerFacts | None]:
    """A row of ``THREAD_WITH_VIEWER_FACTS`` read outside the ORM: a detached thread and the
    viewer's facts (None for a visitor, as :func:`thread_and_viewer_facts` gives)."""
    n = len(_THREAD_KEYS)
    values = {k: _utc(v) for k, v in zip(_THREAD_KEYS, row[:n], strict=True)}
    thread = Thread(**values)
    return thread, _viewer_facts(*row[n : n + 3]) if logged_in else None


def _utc(value: Any) -> Any:
    """As the ORM's ``UTCDateTime`` gives it."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


def thread_and_viewer_facts(
    session: Session, thread_id: int, user_id: int | None
) -> tuple[Thread | None, ViewerFacts | None]:
    """The thread row and, for a logged-in viewer, their subscription, votes and held posts in the
    thread: one round trip either way. Permission checks are the caller's (``access_thread`` then
    finds the row in the session)."""
    if user_id is None:
        return session.get(Thread, thread_id), None
    row = session.execute(
        _THREAD_WITH_VIEWER_FACTS, {"user_id": user_id, "thread_id": thread_id}
    ).one_or_none()
    if row is None:
        return None, None
    thread, is_subscribed, has_pending, voted = row
    return thread, _viewer_facts(is_subscribed, has_pending, voted)


class PageCache:
    """A thread-safe LRU of :class:`PageTemplate` with hit/miss counters."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, PageTemplate] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> PageTemplate | None:
        with self._lock:
            page = self._entries.get(key)
            if page is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return page

    def put(self, key: Hashable, page: PageTemplate) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = page
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
