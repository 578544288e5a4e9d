"""Browser sessions kept on the server, so that they can be ended.

The signed session cookie carries the user's id and a random session id; the ``user_session``
table holds the SHA-256 of each live session id. A request is logged in only while its row exists
and has not expired: logging out deletes the row, a password change deletes the user's other rows,
a password reset or an admin deletes them all. An old copy of the cookie then logs in no one.

Reading the session is one indexed read, joined with the user row the request needs anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge.models import AccountEvent, User, UserSession, utcnow

SESSION_DAYS = 14


def session_key_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(session: Session, *, user: User, ip: str = "", user_agent: str = "") -> str:
    """Record a new login of ``user`` and return the session id for the cookie."""
    assert user.id is not None
    now = utcnow()
    # The user's expired rows go now: nothing else reads them.
    session.execute(
        sa.delete(UserSession).where(
            col(UserSession.user_id) == user.id, col(UserSession.expires_at) < now
        )
    )
    session_id = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            user_id=user.id,
            key_hash=session_key_hash(session_id),
            created_at=now,
            expires_at=now + dt.timedelta(days=SESSION_DAYS),
            ip=ip[:45],
            user_agent=user_agent[:200],
        )
    )
    session.flush()
    return session_id


def user_statement() -> Any:
    """The active user ``user_id`` whose live session has the hash ``key``, given ``now``: one
    read on the session's unique index (built once; the forum's loop reader runs it too)."""
    return (
        sa.select(*User.__table__.columns)  # type: ignore[attr-defined]
        .join(UserSession, col(UserSession.user_id) == col(User.id))
        .where(
            col(UserSession.key_hash) == sa.bindparam("key", type_=sa.String),
            col(UserSession.user_id) == sa.bindparam("user_id", type_=sa.Integer),
            col(UserSession.expires_at) > sa.bindparam("now", type_=sa.DateTime(timezone=True)),
        )
    )


_USER_FOR_SESSION = select(User).join(UserSession, col(UserSession.user_id) == col(User.id))


def user_for_session(session: Session, *, user_id: int, session_id: str) -> User | None:
    """The user of this live session, or None (ended, expired, or not that user's)."""
    user = session.exec(
        _USER_FOR_SESSION.where(
            col(UserSession.key_hash) == session_key_hash(session_id),
            col(UserSession.user_id) == user_id,
            col(UserSession.expires_at) > utcnow(),
        )
    ).first()
    if user is None or not user.is_active:
        return None
    return user


def end_session(session: Session, session_id: str) -> None:
    """Log this session out (logout)."""
    session.execute(
        sa.delete(UserSession).where(col(UserSession.key_hash) == session_key_hash(session_id))
    )


def end_sessions(
    session: Session,
    *,
    user: User,
    actor: User,
    reason: str,
    keep: str | None = None,
    ip: str = "",
) -> int:
    """End every session of ``user`` (but ``keep``, a session id); audited. Returns how many."""
    assert user.id is not None
    query = sa.delete(UserSession).where(col(UserSession.user_id) == user.id)
    if keep:
        query = query.where(col(UserSession.key_hash) != session_key_hash(keep))
    ended: int = session.execute(query).rowcount  # type: ignore[attr-defined]
    session.add(
        AccountEvent(
            user_id=user.id,
            actor_id=actor.id,
            kind="sessions_ended",
            detail=f"{ended} session(s) ended: {reason}"[:200],
            ip=ip[:45],
        )
    )
    session.flush()
    return ended


def live_sessions(session: Session, user: User) -> list[UserSession]:
    return list(
        session.exec(
            select(UserSession)
            .where(UserSession.user_id == user.id, col(UserSession.expires_at) > utcnow())
            .order_by(col(UserSession.created_at).desc())
        )
    )
