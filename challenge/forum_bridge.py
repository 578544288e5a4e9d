"""The hub's side of the forum contract (:class:`forum.interface.ForumHost`).

Admins moderate every forum; a challenge's organizer (``Challenge.created_by``) moderates that
challenge's forum and may post announcements there. The forum adds its own moderator grants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from markupsafe import escape
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from challenge.errors import PodiumError
from challenge.models import Challenge, User
from challenge.views.challenges import visible_challenge
from challenge.web import csrf_token, current_user, db, read_form, render
from forum.access import ForumError
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import post_announcement
from forum.views import TEMPLATES_DIR, forum_routes


class HubForumHost:
    """Implements ForumHost with the hub's users, roles, challenges, sessions and templates."""

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
        user = current_user(request)
        if user is None:
            return frozenset()
        query = select(Challenge.slug)
        if user.role != "admin":
            query = query.where(Challenge.created_by == user.id)
        return frozenset(db(request).exec(query).all())

    def challenge_title(self, request: Request, challenge_slug: str) -> str | None:
        try:
            return visible_challenge(request, challenge_slug).title
        except PodiumError:
            return None

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


def forum_mount(config: ForumConfig | None = None) -> Mount:
    """The forum's routes under /forum, served with the hub's users and layout."""
    return Mount("/forum", routes=forum_routes(HubForumHost(), config or ForumConfig()))
