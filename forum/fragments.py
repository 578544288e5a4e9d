"""Rendered posts, cached per worker process: a thread page joins cached fragments instead of running
the post template fifty times.

A fragment is a pure function of its key, so no write has to invalidate anything: the key is the
post's row as read for this request (every column the template shows, ``body_html`` included) and
the facts about the viewer's class that change the post's controls (:class:`PostView`). An edited,
voted, flagged, hidden or renamed post has a new key; every worker process stays right whatever
another process wrote, and stale entries simply age out of the LRU.

What differs between viewers of one class is never rendered into a fragment: fragments hold *slots*
(an unguessable per-process marker around a short code) where the CSRF field and the viewer's own
controls of a post (vote, edit, flag: they depend on whether the viewer wrote or voted for it) go.
:class:`PageTemplate` fills the slots per request; the thread page cache (``forum.pagecache``)
stores whole page bodies with their slots still open.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from sqlmodel import col

from forum.models import Post

TEMPLATES_DIR = str(Path(__file__).parent / "templates")

# The columns a thread page reads for each post (in this order; see PostRow).
POST_COLUMNS = (
    col(Post.id),
    col(Post.author_id),
    col(Post.status),
    col(Post.body_html),
    col(Post.hidden_reason),
    col(Post.held_reason),
    col(Post.score),
    col(Post.flag_count),
    col(Post.created_at),
    col(Post.edited_at),
)


def fmt_time(value: Any) -> str:
    """Timestamps as pages show them (UTC, to the minute)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


@dataclass(frozen=True, slots=True)
class PostRow:
    """What a page shows of one post, read with :data:`POST_COLUMNS` (no ORM object needed)."""

    id: int
    author_id: int
    status: str
    body_html: str
    hidden_reason: str
    held_reason: str
    score: int
    flag_count: int
    created_at: dt.datetime
    edited_at: dt.datetime | None

    @classmethod
    def of(cls, row: Any) -> PostRow:
        return cls(*row[: len(POST_COLUMNS)])


@dataclass(frozen=True, slots=True)
class PostView:
    """Everything besides the post that its HTML depends on: where it is and who looks at it."""

    anchor: str  # "post", or "answer" for the copy shown under the question
    name: str  # the author's display name
    thread_id: int
    page_number: int  # only used in moderators' forms (0 otherwise, so viewers share entries)
    accepted: bool
    logged_in: bool
    can_reply: bool
    can_accept: bool
    is_first: bool
    moderator: bool


class PostFragments:
    """An LRU of rendered posts keyed by (:class:`PostRow`, :class:`PostView`); thread-safe.

    Fragments come out with their slots open (see :class:`PageTemplate`).
    """

    def __init__(self, max_entries: int = 2000) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._template = self.env.get_template("forum/_post.html")
        # Post bodies are sanitized HTML written by users: the marker must be unguessable so that
        # no post can open a slot (and make the page put the viewer's CSRF token where it wants).
        self.marker = f"slot-{secrets.token_hex(16)}"
        self.csrf_slot = Markup(self.slot("C"))  # noqa: S704 - hex, nothing to escape
        self.subscription_slot = Markup(self.slot("S"))  # noqa: S704 - hex, nothing to escape
        self._html = functools.lru_cache(maxsize=max_entries)(self._render)

    def slot(self, code: str) -> str:
        return f"{self.marker}{code}{self.marker}"

    def _render(self, row: PostRow, view: PostView) -> str:
        personal = self.slot(f"P{row.id},{row.author_id},{row.status}")
        return self._template.render(
            p=row,
            v=view,
            fmt_time=fmt_time,
            forum_csrf=self.csrf_slot,
            personal=Markup(personal),  # noqa: S704 - hex and numbers, nothing to escape
        )

    def render(self, row: PostRow, view: PostView) -> str:
        """The post's HTML for this viewer class, slots open."""
        return self._html(row, view)

    def page(self, template: str, **context: Any) -> PageTemplate:
        """Render a page body (posts already joined in) with the forum's templates; slots open."""
        html = self.env.get_template(template).render(
            fmt_time=fmt_time, forum_csrf=self.csrf_slot, **context
        )
        return PageTemplate(tuple(html.split(self.marker)))

    def stats(self) -> tuple[int, int, int]:
        """(hits, misses, entries): for benchmarks and tests."""
        info = self._html.cache_info()
        return info.hits, info.misses, info.currsize


@dataclass(frozen=True, slots=True)
class Viewer:
    """One request's viewer, for filling a page's slots."""

    csrf_field: str
    user_id: int | None
    voted: frozenset[int]  # ids of the posts (of this thread) the viewer voted for
    subscribed: bool
    moderator: bool
    thread_id: int


@dataclass(frozen=True, slots=True)
class PageTemplate:
    """A rendered page body split at its slots: ``parts[0::2]`` are HTML, ``parts[1::2]`` codes.

    Codes: ``C`` the CSRF field; ``S`` the thread's subscribe button; ``P<post>,<author>,<status>``
    the viewer's own controls of a post. Filling costs a few microseconds per post.
    """

    parts: tuple[str, ...]

    def fill(self, viewer: Viewer) -> str:
        out: list[str] = []
        add = out.append
        for i, part in enumerate(self.parts):
            if not i % 2:
                add(part)
            elif part == "C":
                add(viewer.csrf_field)
            elif part == "S":
                add(subscription_form(viewer))
            elif part[:1] == "P":
                post_id, author_id, status = part[1:].split(",")
                add(personal_controls(viewer, int(post_id), int(author_id), status))
        return "".join(out)


def subscription_form(viewer: Viewer) -> str:
    if viewer.user_id is None:
        return ""
    on, label = ("0", "Unsubscribe") if viewer.subscribed else ("1", "Subscribe")
    return (
        f'<form method="post" action="/forum/t/{viewer.thread_id}/subscribe" class="inline">'
        f'{viewer.csrf_field}<input type="hidden" name="on" value="{on}">'
        f'<button class="link" type="submit">{label}</button></form>'
    )


def personal_controls(viewer: Viewer, post_id: int, author_id: int, status: str) -> str:
    """Upvote/Unvote, Edit and Flag as this viewer may use them on this post."""
    if viewer.user_id is None:
        return ""
    mine = author_id == viewer.user_id
    html = []
    if not mine and status == "visible":
        label = "Unvote" if post_id in viewer.voted else "Upvote"
        html.append(
            f'<form method="post" action="/forum/p/{post_id}/vote" class="inline">'
            f'{viewer.csrf_field}<button class="link" type="submit">{label}</button></form>'
        )
    if mine or viewer.moderator:
        html.append(f'<a href="/forum/p/{post_id}/edit">Edit</a>')
    if not mine and status == "visible":
        html.append(f'<a href="/forum/p/{post_id}/flag">Flag</a>')
    return "\n".join(html)
