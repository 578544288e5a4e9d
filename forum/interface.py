"""What the forum needs from the site that mounts it, and nothing more.

The forum never imports the hub. The hub implements :class:`ForumHost` (in ``challenge/forum_bridge``)
and hands it to :func:`forum.views.forum_routes`. Users are referred to by their id in the host's
``user`` table; challenges by their slug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class ForumUser:
    """The logged-in person, as the forum sees them."""

    id: int
    name: str


class UserDirectory(Protocol):
    """Names for ids and ids for names; writers use it to render @mentions."""

    def display_names(self, session: Session, user_ids: Iterable[int]) -> Mapping[int, str]:
        """Names to show for these user ids (missing ids are left out)."""

    def user_ids_for_names(self, session: Session, names: Iterable[str]) -> Mapping[str, int]:
        """Resolve @mentions: lower-cased user name -> user id, for the names that exist."""


class ForumHost(UserDirectory, Protocol):
    """The site's side of the contract. Every method must be cheap: pages call several of them."""

    def current_user(self, request: Request) -> ForumUser | None:
        """The logged-in user, or None for a visitor."""

    def is_site_moderator(self, request: Request) -> bool:
        """True when the host gives the current user moderation rights everywhere (e.g. admins)."""

    def moderated_challenges(self, request: Request) -> frozenset[str]:
        """Slugs of the challenges whose forums the current user moderates through the host."""

    def organized_challenges(self, request: Request) -> frozenset[str]:
        """Slugs of the challenges the current user organizes (they may post announcements)."""

    def challenge_title(self, request: Request, challenge_slug: str) -> str | None:
        """The challenge's title when it exists and the current user may see it, else None."""

    async def prefetch_on_loop(
        self,
        request: Request,
        scope: Any,
        params: Mapping[str, Any],
        reads: Callable[[int | None], Sequence[tuple[Any, Mapping[str, Any]]]],
    ) -> list[Sequence[Sequence[Any]]] | None:
        """Read without blocking the event loop, in one round trip: what ``current_user``,
        ``is_site_moderator``, ``moderated_challenges``, ``organized_challenges`` and
        ``challenge_title`` (for the challenge whose slug the SQL expression ``scope`` gives, with
        ``params``) need for this request, kept for those calls, and the forum's ``reads(user_id)``
        (statements and their parameters; ``user_id`` is the user the request claims to be, None for
        a visitor), whose rows it returns in order. None when it cannot (no such reader on this
        database, a busy or broken connection, a user it does not describe this way): the caller
        then takes its ordinary path. It raises nothing."""

    def session(self, request: Request) -> Session:
        """The request's database session (the host closes it after the response)."""

    async def read_form(self, request: Request) -> FormData:
        """Parse a POSTed form after checking its CSRF token; raise when the check fails."""

    def csrf_field(self, request: Request) -> str:
        """The hidden input (HTML) that read_form expects in every form."""

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        """Render a forum template inside the site's layout (templates extend ``base.html``)."""
