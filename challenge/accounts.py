"""Accounts: users, roles, API tokens. Writers take the session explicitly."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge.errors import BadRequest, Conflict
from challenge.models import ApiToken, User, utcnow
from challenge.security import (
    TOKEN_PREFIX,
    hash_password,
    hash_token,
    new_api_token,
    verify_password,
)

ROLES = ("admin", "organizer", "participant")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,39}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


def create_user(
    session: Session, *, username: str, email: str, password: str, role: str = "participant"
) -> User:
    """Create an account; every rule broken is reported with what to change."""
    username = username.strip()
    email = email.strip().lower()
    if not USERNAME_RE.match(username):
        raise BadRequest(
            "Username must be 2-40 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            field="username",
        )
    if not EMAIL_RE.match(email):
        raise BadRequest("Enter an e-mail address like name@example.org.", field="email")
    if len(password) < MIN_PASSWORD:
        raise BadRequest(
            f"Password must have at least {MIN_PASSWORD} characters.", field="password"
        )
    if role not in ROLES:
        raise BadRequest(f"Role must be one of {', '.join(ROLES)}.", field="role")
    taken = session.exec(
        select(User).where(
            sa.or_(sa.func.lower(User.username) == username.lower(), col(User.email) == email)
        )
    ).first()
    if taken is not None:
        what = "username" if taken.username.lower() == username.lower() else "e-mail address"
        raise Conflict(f"That {what} is already registered; choose another or log in.", field=what)
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def find_user_for_login(session: Session, login: str) -> User | None:
    login = login.strip()
    return session.exec(
        select(User).where(
            sa.or_(sa.func.lower(User.username) == login.lower(), col(User.email) == login.lower())
        )
    ).first()


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The active user with this user name (or e-mail) and password, else None."""
    user = find_user_for_login(session, login)
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        return None
    return user


def create_api_token(session: Session, *, user: User, name: str) -> str:
    """Store the hash of a new token and return the token itself (shown once)."""
    if not name.strip():
        raise BadRequest("Give the token a name, e.g. 'laptop' or 'ci'.", field="name")
    token = new_api_token()
    assert user.id is not None
    session.add(
        ApiToken(
            user_id=user.id,
            name=name.strip()[:80],
            prefix=token[: len(TOKEN_PREFIX) + 6],
            token_hash=hash_token(token),
        )
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    row = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()))
    ).first()
    if row is None or row.revoked:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    now = utcnow()
    # Note the use at most every few minutes: a write per API call would serialize readers.
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=5):
        row.last_used_at = now
        session.add(row)
    return user


def revoke_api_token(session: Session, *, user: User, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        return
    row.revoked = True
    session.add(row)
