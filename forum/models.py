"""The forum's tables. Users are referred to by the host's table name (``user.id``), challenges by slug.

Content is never deleted: posts and threads carry a status (pending, visible, hidden, merged) and
moderators see everything. The search index (``forum_search``) is not a model: it is an FTS5 table on
SQLite and a tsvector table on PostgreSQL, created by the migration and kept by ``forum.search``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use timezone-aware values")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Post and thread states. "merged" only applies to threads (see merged_into_id).
PENDING, VISIBLE, HIDDEN, MERGED = "pending", "visible", "hidden", "merged"


class Thread(SQLModel, table=True):
    __tablename__ = "forum_thread"
    __table_args__ = (
        sa.Index("ix_forum_thread_listing", "challenge_slug", "category", "status", "last_post_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    challenge_slug: str | None = Field(default=None, max_length=64)  # None: the site-wide forum
    category: str = Field(max_length=20)
    title: str = Field(max_length=200)
    author_id: int = Field(foreign_key="user.id", index=True)
    status: str = Field(default=VISIBLE, max_length=10)
    hidden_reason: str = Field(default="", max_length=500)
    is_locked: bool = False
    is_pinned: bool = False
    accepted_post_id: int | None = None
    merged_into_id: int | None = None
    reply_count: int = 0  # visible replies, kept by forum.posting
    # Bumped (in SQL, in the writer's transaction) by every change to what the thread's pages show:
    # the thread page cache (forum.pagecache) keys on it, so it holds across worker processes.
    version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_post_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Post(SQLModel, table=True):
    __tablename__ = "forum_post"
    __table_args__ = (
        sa.Index("ix_forum_post_thread_order", "thread_id", "status", "id"),
        sa.Index("ix_forum_post_author_time", "author_id", "created_at"),
        sa.Index("ix_forum_post_ip_time", "author_ip", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="forum_thread.id")
    author_id: int = Field(foreign_key="user.id")
    body_md: str = Field(sa_type=sa.Text)
    body_html: str = Field(sa_type=sa.Text)  # rendered and sanitized once, at write time
    status: str = Field(default=VISIBLE, max_length=10, index=True)
    hidden_reason: str = Field(default="", max_length=500)
    held_reason: str = Field(default="", max_length=200)  # why it waits in the queue
    score: int = 0
    flag_count: int = 0  # open flags
    edit_count: int = 0
    author_ip: str = Field(default="", max_length=45)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    edited_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class PostRevision(SQLModel, table=True):
    """The text a post had before an edit (the current text lives in the post)."""

    __tablename__ = "forum_post_revision"

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(foreign_key="forum_post.id", index=True)
    editor_id: int = Field(foreign_key="user.id")
    title: str = Field(default="", max_length=200)  # thread title then, for first posts
    body_md: str = Field(sa_type=sa.Text)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Vote(SQLModel, table=True):
    __tablename__ = "forum_vote"

    post_id: int = Field(foreign_key="forum_post.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


FLAG_KINDS = ("spam", "off-topic", "abusive")


class Flag(SQLModel, table=True):
    __tablename__ = "forum_flag"
    __table_args__ = (sa.UniqueConstraint("post_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(foreign_key="forum_post.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=20)
    reason: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    resolved_by: int | None = Field(default=None, foreign_key="user.id")
    resolution: str = Field(default="", max_length=20)  # upheld | dismissed


class Moderator(SQLModel, table=True):
    """Forum-only moderators, on top of those the host names (admins, challenge organizers)."""

    __tablename__ = "forum_moderator"
    __table_args__ = (sa.UniqueConstraint("user_id", "challenge_slug"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    challenge_slug: str | None = Field(default=None, max_length=64)  # None: site-wide


SANCTION_KINDS = ("suspend", "ban")


class Sanction(SQLModel, table=True):
    """A suspension (read-only) or ban (no access) of a user, in one challenge or site-wide."""

    __tablename__ = "forum_sanction"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=10)
    challenge_slug: str | None = Field(default=None, max_length=64)  # None: the whole forum
    reason: str = Field(default="", max_length=500)
    created_by: int = Field(foreign_key="user.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ends_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: until lifted
    lifted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEntry(SQLModel, table=True):
    """Who did what, when and why. Written by every moderation action, never edited."""

    __tablename__ = "forum_audit"

    id: int | None = Field(default=None, primary_key=True)
    actor_id: int | None = Field(default=None, foreign_key="user.id", index=True)  # None: automatic
    action: str = Field(max_length=30)
    challenge_slug: str | None = Field(default=None, max_length=64, index=True)
    target_type: str = Field(max_length=10)  # post | thread | user
    target_id: int
    reason: str = Field(default="", max_length=500)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class Subscription(SQLModel, table=True):
    __tablename__ = "forum_subscription"

    user_id: int = Field(foreign_key="user.id", primary_key=True)
    thread_id: int = Field(foreign_key="forum_thread.id", primary_key=True, index=True)


class Notification(SQLModel, table=True):
    __tablename__ = "forum_notification"
    __table_args__ = (sa.Index("ix_forum_notification_user_unread", "user_id", "read_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id")
    kind: str = Field(max_length=20)  # reply | mention | moderation
    thread_id: int = Field(foreign_key="forum_thread.id")
    post_id: int | None = Field(default=None, foreign_key="forum_post.id")
    actor_id: int | None = Field(default=None, foreign_key="user.id")
    text: str = Field(default="", max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---------------------------------------------------------------- thread versions


def _changed(session: OrmSession, obj: object) -> bool:
    return obj in session.new or obj in session.deleted or session.is_modified(obj)


# Threads whose version this transaction has bumped already (or will, see mark_versioned): one bump
# per transaction is enough, since readers only ever see committed states.
_VERSIONED = "forum_versioned_threads"


def mark_versioned(session: OrmSession, thread_id: int) -> None:
    """The caller bumps the thread's version itself in this transaction (e.g. together with other
    columns in one UPDATE): flushes need not."""
    session.info.setdefault(_VERSIONED, set()).add(thread_id)


@sa.event.listens_for(OrmSession, "after_transaction_end")
def _forget_versioned(session: OrmSession, transaction: Any) -> None:
    # The end of the transaction or of a savepoint forgets (at worst a thread is bumped twice);
    # the subtransactions each flush runs in do not.
    if transaction.parent is None or transaction.nested:
        session.info.pop(_VERSIONED, None)


@sa.event.listens_for(OrmSession, "after_flush")
def bump_thread_versions(session: OrmSession, flush_context: Any) -> None:
    """Every flush that adds, changes or removes a post, vote or flag, or changes a thread, bumps
    the version of the thread(s) concerned in the same transaction, in SQL (``version + 1``, so
    concurrent writers never end on the same number), once per transaction. Writers need not
    remember to do it; the thread page cache (``forum.pagecache``) keys on the version.
    """
    thread_ids: set[int] = set()
    post_ids: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Post):
            if _changed(session, obj):
                thread_ids.add(obj.thread_id)
                # A post moved by a merge changes both threads' pages.
                old = sa.inspect(obj).attrs.thread_id.history.deleted
                thread_ids.update(t for t in old if t is not None)
        elif isinstance(obj, Thread):
            if obj.id is not None and obj not in session.new and _changed(session, obj):
                thread_ids.add(obj.id)
        elif isinstance(obj, Vote | Flag) and _changed(session, obj):
            post_ids.add(obj.post_id)
    done: set[int] = session.info.setdefault(_VERSIONED, set())
    thread_ids -= done
    if not thread_ids and not post_ids:
        return
    table = Thread.__table__  # type: ignore[attr-defined]
    post = Post.__table__  # type: ignore[attr-defined]
    where = table.c.id.in_(sorted(thread_ids))
    if post_ids:
        owners = sa.select(post.c.thread_id).where(post.c.id.in_(sorted(post_ids)))
        where = sa.or_(where, table.c.id.in_(owners))
    session.connection().execute(sa.update(table).where(where).values(version=table.c.version + 1))
    done |= thread_ids
