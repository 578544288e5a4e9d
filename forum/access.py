"""Who may see and do what: the acting user, categories, sanctions, trust, and visibility rules.

Missing and forbidden look the same to the user (:class:`NotFound`) wherever the object's existence
is itself private (hidden posts, banned users' view); actions on objects the user can already see
are refused with :class:`Forbidden` and a message that says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.models import MERGED, PENDING, VISIBLE, Moderator, Post, Sanction, Thread, utcnow

# A page number past this is refused: its offset would overflow the database's integers.
MAX_PAGE = 1_000_000
# The largest id the tables hold (INTEGER keys, 32 bits on PostgreSQL); a bigger one in a URL is no
# post or thread of ours (and the database refused it with an error).
MAX_ID = 2**31 - 1


class ForumError(Exception):
    """A problem the user can act on; ``message`` says what to change."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ForumError):
    status_code = 404


class Forbidden(ForumError):
    status_code = 403


class NotLoggedIn(ForumError):
    status_code = 401


class TooLarge(ForumError):
    status_code = 413


class RateLimited(ForumError):
    status_code = 429


class Conflict(ForumError):
    status_code = 409


CHALLENGE_CATEGORIES = {
    "general": "General",
    "data": "Data",
    "scoring": "Scoring",
    "announcements": "Announcements",
}
SITE_CATEGORIES = {"general": "Site-wide discussion"}
ANNOUNCEMENTS = "announcements"


def categories_for(challenge_slug: str | None) -> dict[str, str]:
    return SITE_CATEGORIES if challenge_slug is None else CHALLENGE_CATEGORIES


def check_category(challenge_slug: str | None, category: str) -> None:
    names = categories_for(challenge_slug)
    if category not in names:
        raise NotFound(f"No category '{category}'; choose one of {', '.join(names)}.")


class Actor:
    """The user acting, with their moderation reach. Host lookups run only when first needed.

    ``sanctions``, when given, are the user's sanctions in force (from :func:`forum_standing`,
    read once per request); without it, each check asks the database.
    """

    def __init__(
        self,
        user: ForumUser | None,
        *,
        site_moderator: bool = False,
        moderated: Callable[[], Iterable[str]] = tuple,
        organized: Callable[[], Iterable[str]] = tuple,
        sanctions: tuple[Sanction, ...] | None = None,
    ) -> None:
        self.user = user
        self.site_moderator = site_moderator
        self._moderated = moderated
        self._organized = organized
        self.sanctions = sanctions

    @property
    def id(self) -> int | None:
        return self.user.id if self.user else None

    @cached_property
    def moderated(self) -> frozenset[str]:
        return frozenset(self._moderated())

    @cached_property
    def organized(self) -> frozenset[str]:
        return frozenset(self._organized())

    def moderates(self, challenge_slug: str | None) -> bool:
        """Moderator of this scope (a challenge's forum, or the site-wide one when None)."""
        if self.user is None:
            return False
        if self.site_moderator:
            return True
        return challenge_slug is not None and challenge_slug in self.moderated

    def organizes(self, challenge_slug: str | None) -> bool:
        return challenge_slug is not None and challenge_slug in self.organized

    def require_user(self) -> ForumUser:
        if self.user is None:
            raise NotLoggedIn("Log in to take part in the forum.")
        return self.user


def forum_moderator_scopes(session: Session, user_id: int) -> tuple[bool, frozenset[str]]:
    """The forum's own moderator grants: (site-wide?, challenge slugs)."""
    rows = session.exec(select(Moderator.challenge_slug).where(Moderator.user_id == user_id)).all()
    return (None in rows, frozenset(r for r in rows if r is not None))


@dataclass(frozen=True)
class Standing:
    """A user's forum-side grants and sanctions in force, read in one query."""

    site_moderator: bool
    moderated: frozenset[str]
    sanctions: tuple[Sanction, ...]


def _standing_statement() -> sa.CompoundSelect[Any]:
    """Built once (bound ``user_id`` and ``now``): building a statement costs more than running it."""
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    now = sa.bindparam("now", type_=Sanction.__table__.c.ends_at.type)  # type: ignore[attr-defined]
    sanctions = select(
        col(Sanction.kind),
        col(Sanction.challenge_slug),
        col(Sanction.ends_at),
        col(Sanction.reason),
    ).where(
        col(Sanction.user_id) == user_id,
        col(Sanction.lifted_at).is_(None),
        sa.or_(col(Sanction.ends_at).is_(None), col(Sanction.ends_at) > now),
    )
    grants = select(
        sa.literal("moderator"),
        col(Moderator.challenge_slug),
        sa.null(),
        sa.literal(""),
    ).where(col(Moderator.user_id) == user_id)
    return sa.union_all(sanctions, grants)


_STANDING = _standing_statement()


STANDING = _STANDING  # bound ``user_id`` and ``now``; rows for :func:`standing_from_rows`


def forum_standing(session: Session, user_id: int) -> Standing:
    """The forum's own moderator grants and the user's sanctions in force, in one round trip."""
    rows = session.execute(_STANDING, {"user_id": user_id, "now": utcnow()}).all()
    return standing_from_rows(rows, user_id)


def standing_from_rows(rows: Iterable[Sequence[Any]], user_id: int) -> Standing:
    """:func:`forum_standing` from the rows of ``STANDING``, however they were read."""
    rows = list(rows)
    scopes = [slug for kind, slug, _, _ in rows if kind == "moderator"]
    found = tuple(
        Sanction(
            user_id=user_id,
            kind=kind,
            challenge_slug=slug,
            ends_at=ends,
            reason=reason,
            created_by=0,
        )
        for kind, slug, ends, reason in rows
        if kind != "moderator"
    )
    return Standing(None in scopes, frozenset(s for s in scopes if s is not None), found)


def active_sanction(
    session: Session,
    user_id: int,
    challenge_slug: str | None,
    kinds: tuple[str, ...] = ("suspend", "ban"),
    preloaded: tuple[Sanction, ...] | None = None,
) -> Sanction | None:
    """The sanction that applies to the user in this scope now (site-wide ones apply everywhere)."""
    now = utcnow()
    if preloaded is not None:
        applying = [
            s
            for s in preloaded
            if s.kind in kinds
            and s.challenge_slug in (None, challenge_slug)
            and (s.ends_at is None or s.ends_at > now)
        ]
        # "ban" sorts before "suspend": the stronger one wins
        return min(applying, key=lambda s: s.kind, default=None)
    scope: sa.ColumnElement[bool] = col(Sanction.challenge_slug).is_(None)
    if challenge_slug is not None:
        scope = sa.or_(scope, col(Sanction.challenge_slug) == challenge_slug)
    return session.exec(
        select(Sanction)
        .where(
            Sanction.user_id == user_id,
            col(Sanction.kind).in_(kinds),
            col(Sanction.lifted_at).is_(None),
            sa.or_(col(Sanction.ends_at).is_(None), col(Sanction.ends_at) > now),
            scope,
        )
        .order_by(col(Sanction.kind))  # "ban" sorts before "suspend": the stronger one wins
    ).first()


def _until(sanction: Sanction) -> str:
    if sanction.ends_at is None:
        return "until a moderator lifts it"
    return "until " + sanction.ends_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_can_read(session: Session, actor: Actor, challenge_slug: str | None) -> None:
    """Banned users lose access to the forum of the scope they were banned from."""
    if actor.user is None or actor.moderates(challenge_slug):
        return
    ban = active_sanction(
        session, actor.user.id, challenge_slug, kinds=("ban",), preloaded=actor.sanctions
    )
    if ban is not None:
        raise Forbidden(
            f"You are banned from this forum {_until(ban)}. Reason: {ban.reason or '-'}"
        )


def check_can_write(session: Session, actor: Actor, challenge_slug: str | None) -> ForumUser:
    """Logged in and neither suspended nor banned here."""
    user = actor.require_user()
    if actor.moderates(challenge_slug):
        return user
    sanction = active_sanction(session, user.id, challenge_slug, preloaded=actor.sanctions)
    if sanction is not None:
        what = "banned from" if sanction.kind == "ban" else "suspended in"
        raise Forbidden(
            f"You are {what} this forum {_until(sanction)}, so you can read but not post, edit, "
            f"vote or flag. Reason: {sanction.reason or '-'}"
        )
    return user


def approved_post_count(session: Session, user_id: int) -> int:
    """Posts of the user a moderator let through (or that needed no approval)."""
    return session.exec(
        select(func.count())
        .select_from(Post)
        .where(Post.author_id == user_id, Post.status != PENDING)
    ).one()


def is_trusted(session: Session, user_id: int, config: ForumConfig) -> bool:
    """Trusted users' flags count towards hiding a post automatically."""
    if approved_post_count(session, user_id) < config.trusted_user_posts:
        return False
    return active_sanction(session, user_id, None) is None


def can_see_thread(actor: Actor, thread: Thread) -> bool:
    # A merged thread is only a pointer to the thread it went into; the page redirects there.
    if thread.status in (VISIBLE, MERGED) or actor.moderates(thread.challenge_slug):
        return True
    return thread.status == PENDING and actor.id is not None and actor.id == thread.author_id


def can_see_post(actor: Actor, thread: Thread, post: Post) -> bool:
    if not can_see_thread(actor, thread):
        return False
    if post.status == VISIBLE or actor.moderates(thread.challenge_slug):
        return True
    return post.status == PENDING and actor.id is not None and actor.id == post.author_id


def can_write_in(actor: Actor, thread_or_slug: Thread | str | None, category: str) -> bool:
    """Announcements are written by the challenge's organizers and moderators only."""
    slug = thread_or_slug.challenge_slug if isinstance(thread_or_slug, Thread) else thread_or_slug
    if category != ANNOUNCEMENTS:
        return actor.user is not None
    return actor.moderates(slug) or actor.organizes(slug)


@dataclass
class Page:
    """One page of a listing: which page, how many in all, and the page count."""

    number: int
    size: int
    total: int
    items: list[object] = field(default_factory=list)

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def page_number(raw: str | None, *, last: int | None = None) -> int:
    """Parse ?page=; 'last' jumps to the last page; nonsense is a clear error."""
    if raw in (None, ""):
        return 1
    if raw == "last" and last is not None:
        return last
    try:
        number = int(str(raw))
    except ValueError:
        raise ForumError(f"Page must be a number from 1, not '{raw}'.") from None
    if not 1 <= number <= MAX_PAGE:
        raise ForumError(f"Page must be a number from 1 to {MAX_PAGE}, not '{raw}'.")
    return number
