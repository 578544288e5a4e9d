"""Accounts: users, roles, passwords, API tokens. Writers take the session explicitly.

What an outsider can learn about who has an account (docs/security/accounts.md):

* a login takes one password verification whether the account exists or not (a dummy hash for
  unknown names) and fails with one message;
* registering never says whether an e-mail address is in use: the answer is always "we sent a
  link to that address"; the link finishes the registration, or, when the address already has an
  account, the mail says so to its owner instead;
* a password reset answers the same whether the address is known or not.

User names are public (leaderboards, forum), so a taken name, or one that passes for a taken
name (challenge/usernames.py), is refused as such.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets

import sqlalchemy as sa
from sqlmodel import Session, col, select

from challenge.errors import BadRequest, Conflict, PermissionDenied
from challenge.models import AccountEvent, AccountToken, ApiToken, User, utcnow
from challenge.security import (
    TOKEN_PREFIX,
    hash_password,
    hash_token,
    new_api_token,
    verify_password,
)
from challenge.usernames import username_key

ROLES = ("admin", "organizer", "participant")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,39}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
RESET_LIFETIME = dt.timedelta(hours=1)
CONFIRM_LIFETIME = dt.timedelta(hours=24)
NAME_TAKEN = (
    "That user name is taken, or too close to one that is: names that differ only in case, in "
    "punctuation or in look-alike characters (I, l and 1; 0 and O; ...) count as the same. "
    "Choose another."
)


class NotConfirmed(PermissionDenied):
    """The password is right but the e-mail address was never confirmed."""


def _check_username(session: Session, username: str) -> None:
    if not USERNAME_RE.match(username):
        raise BadRequest(
            "Username must be 2-40 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            field="username",
        )
    taken = session.exec(
        select(User.id).where(
            sa.or_(
                sa.func.lower(User.username) == username.lower(),
                col(User.username_key) == username_key(username),
            )
        )
    ).first()
    if taken is not None:
        raise Conflict(NAME_TAKEN, field="username")


def _check_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"Password must have at least {MIN_PASSWORD} characters.", field=field)


def _check_fields(session: Session, username: str, email: str, password: str) -> None:
    if not EMAIL_RE.match(email):
        raise BadRequest("Enter an e-mail address like name@example.org.", field="email")
    _check_password(password)
    _check_username(session, username)


def _add_user(session: Session, user: User) -> User:
    """Insert; a look-alike or e-mail inserted meanwhile by another request is a Conflict."""
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(NAME_TAKEN, field="username") from None
    return user


def create_user(
    session: Session, *, username: str, email: str, password: str, role: str = "participant"
) -> User:
    """Create a confirmed account (admins, the CLI, the demo); every rule broken is reported
    with what to change. An e-mail address already in use is refused as such: whoever runs this
    is not an outsider probing addresses."""
    username = username.strip()
    email = email.strip().lower()
    _check_fields(session, username, email, password)
    if role not in ROLES:
        raise BadRequest(f"Role must be one of {', '.join(ROLES)}.", field="role")
    if session.exec(select(User.id).where(col(User.email) == email)).first() is not None:
        raise Conflict("That e-mail address is already registered.", field="email")
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    return _add_user(session, user)


def register_account(
    session: Session, *, username: str, email: str, password: str, next_path: str = "/"
) -> None:
    """Registration from the web or the API: refuse a bad or taken user name, else send a link.

    A new address gets a link that confirms the new (not yet usable) account; an address that
    already has an account gets a mail telling its owner, and no account is made. Either way the
    caller answers "we sent a link", so the answer never tells whether the address is in use.
    ``next_path``: the site path the link leads to once confirmed.
    """
    from urllib.parse import quote

    from challenge.mail import queue_account_mail

    username = username.strip()
    email = email.strip().lower()
    _check_fields(session, username, email, password)
    existing = session.exec(select(User).where(col(User.email) == email)).first()
    if existing is not None:
        body = (
            f"Someone, maybe you, tried to create the account '{username}' with this address on "
            f"{{base_url}}. This address already has an account: its user name is "
            f"'{existing.username}'.\n\nLog in at {{base_url}}/login, or choose a new password "
            f"at {{base_url}}/password/forgot. If it was not you, you can ignore this message."
        )
        queue_account_mail(
            session,
            user=existing,
            kind="account_exists",
            key=f"account_exists:{existing.id}:{secrets.token_hex(8)}",
            subject="You already have an account",
            body=body,
        )
        hash_password(password)  # the same work as the other path
        return
    user = User(username=username, email=email, password_hash=hash_password(password))
    _add_user(session, user)
    # Not usable until the link is followed. (Set after the insert: the column's default, which
    # makes admins' and the CLI's accounts confirmed, would replace a None given to the INSERT.)
    user.confirmed_at = None
    session.add(user)
    session.flush()
    token = _new_account_token(session, user=user, kind="confirm", lifetime=CONFIRM_LIFETIME)
    queue_account_mail(
        session,
        user=user,
        kind="confirm_email",
        key=f"confirm_email:{user.id}:{token[:12]}",
        subject="Confirm your e-mail address",
        body=(
            f"Welcome, {username}! Follow this link within 24 hours to finish creating your "
            f"account:\n\n{{base_url}}/register/confirm/{token}"
            + (f"?next={quote(next_path, safe='/')}" if next_path != "/" else "")
            + "\n\n"
            "If you did not register, ignore this message: the account is not usable without it."
        ),
    )


def find_user_for_login(session: Session, login: str) -> User | None:
    login = login.strip()
    return session.exec(
        select(User).where(
            sa.or_(sa.func.lower(User.username) == login.lower(), col(User.email) == login.lower())
        )
    ).first()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, with the current parameters, to verify unknown logins
    against: they then cost what a known login costs."""
    return hash_password(secrets.token_urlsafe(16))


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The active user with this user name (or e-mail) and password, else None.

    Exactly one password verification whatever the case (unknown name, disabled account, wrong
    or right password), so the time taken does not tell whether the account exists. Raises
    :class:`NotConfirmed` only for the right password of an account whose e-mail address was
    never confirmed.
    """
    user = find_user_for_login(session, login)
    ok = verify_password(user.password_hash if user is not None else _dummy_hash(), password)
    if user is None or not ok or not user.is_active:
        return None
    if user.confirmed_at is None:
        raise NotConfirmed(
            "Confirm your e-mail address first: follow the link we sent when you registered. "
            "No mail? 'Forgot your password?' sends a new link, which confirms it too."
        )
    return user


def record_event(
    session: Session, *, user: User, kind: str, actor: User | None = None, ip: str = ""
) -> None:
    assert user.id is not None
    session.add(
        AccountEvent(
            user_id=user.id,
            actor_id=(actor or user).id,
            kind=kind,
            ip=ip[:45],
        )
    )


def change_password(
    session: Session,
    *,
    user: User,
    current: str,
    new: str,
    keep_session: str | None,
    ip: str = "",
) -> int:
    """Set a new password after checking the current one; ends every other session of the
    user (``keep_session``: the session id that stays logged in). Returns sessions ended."""
    from challenge.sessions import end_sessions

    if not verify_password(user.password_hash, current):
        raise BadRequest("The current password is wrong; type it again.", field="current")
    _check_password(new, field="new")
    user.password_hash = hash_password(new)
    session.add(user)
    record_event(session, user=user, kind="password_changed", ip=ip)
    return end_sessions(
        session, user=user, actor=user, reason="password changed", keep=keep_session, ip=ip
    )


def _new_account_token(session: Session, *, user: User, kind: str, lifetime: dt.timedelta) -> str:
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        AccountToken(
            user_id=user.id,
            kind=kind,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def request_password_reset(session: Session, *, email: str) -> None:
    """Mail a single-use reset link valid for an hour to the account with this address, if there
    is one. The caller answers the same either way."""
    from challenge.mail import queue_account_mail

    email = email.strip().lower()
    user = session.exec(select(User).where(col(User.email) == email)).first()
    if user is None or not user.is_active:
        return
    token = _new_account_token(session, user=user, kind="reset", lifetime=RESET_LIFETIME)
    queue_account_mail(
        session,
        user=user,
        kind="password_reset",
        key=f"password_reset:{user.id}:{token[:12]}",
        subject="Choose a new password",
        body=(
            f"Someone, maybe you, asked to choose a new password for the account "
            f"'{user.username}'. Follow this link within an hour; it works once:\n\n"
            f"{{base_url}}/password/reset/{token}\n\n"
            "If it was not you, ignore this message: your password stays as it is."
        ),
    )


_BAD_LINK = (
    "This link is not valid: it was already used, it expired, or it was copied incompletely. "
    "Ask for a new one."
)


def _use_account_token(session: Session, *, token: str, kind: str) -> User:
    """The user of an unused, unexpired token of this kind; marks it (and the user's other
    tokens of that kind) used. Raises BadRequest otherwise."""
    row = session.exec(
        select(AccountToken).where(
            AccountToken.token_hash == hash_token(token), AccountToken.kind == kind
        )
    ).first()
    now = utcnow()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise BadRequest(_BAD_LINK)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise BadRequest(_BAD_LINK)
    # Mark used with a guarded UPDATE: of two requests with the same link only one wins.
    used = session.execute(
        sa.update(AccountToken)
        .where(col(AccountToken.user_id) == user.id, col(AccountToken.kind) == kind)
        .where(col(AccountToken.used_at).is_(None))
        .values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    if not used:
        raise BadRequest(_BAD_LINK)
    session.refresh(row)
    return user


def check_reset_token(session: Session, *, token: str) -> bool:
    row = session.exec(
        select(AccountToken).where(
            AccountToken.token_hash == hash_token(token), AccountToken.kind == "reset"
        )
    ).first()
    return row is not None and row.used_at is None and row.expires_at > utcnow()


def reset_password(session: Session, *, token: str, new_password: str, ip: str = "") -> User:
    """Set the password from a reset link: the link is used up, the address counts as confirmed,
    and every session of the account ends (whoever knew the old password is logged out)."""
    from challenge.sessions import end_sessions

    _check_password(new_password)
    user = _use_account_token(session, token=token, kind="reset")
    user.password_hash = hash_password(new_password)
    if user.confirmed_at is None:
        user.confirmed_at = utcnow()
    session.add(user)
    record_event(session, user=user, kind="password_reset", ip=ip)
    end_sessions(session, user=user, actor=user, reason="password reset by e-mail", ip=ip)
    return user


def confirm_registration(session: Session, *, token: str) -> User:
    """Follow a registration link: the account becomes usable."""
    user = _use_account_token(session, token=token, kind="confirm")
    if user.confirmed_at is None:
        user.confirmed_at = utcnow()
        session.add(user)
    record_event(session, user=user, kind="email_confirmed")
    session.flush()
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
