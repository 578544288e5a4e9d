"""The hub's side of the forum contract (:class:`forum.interface.ForumHost`).

Admins moderate every forum; a challenge's organizer (``Challenge.created_by``) moderates that
challenge's forum and may post announcements there. The forum adds its own moderator grants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from markupsafe import escape
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from challenge.errors import PodiumError
from challenge.models import Challenge, Participation, User
from challenge.settings import Settings
from challenge.web import csrf_token, current_user, db, read_form, render
from forum.access import ForumError
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import post_announcement
from forum.views import TEMPLATES_DIR, forum_routes


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


def _challenge_statement(*, with_organized: bool) -> Any:
    """Built once (bound ``slug`` and ``me``): the challenge's visibility facts, and optionally the
    slugs of the challenges ``me`` organizes in the same result."""
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


class HubForumHost:
    """Implements ForumHost with the hub's users, roles, challenges, sessions and templates.

    Answers are memoized per request; the challenge a page is about and the challenges the user
    organizes come from one query.
    """

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
        for slug, name, listed, created_by, participates in rows:
            if slug == challenge_slug and (
                listed
                or participates
                or (user is not None and (user.role == "admin" or created_by == me))
            ):
                title = name
        facts.titles[challenge_slug] = title
        return title

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
