"""Rendered posts, cached per worker process: a thread page joins cached fragments instead of running
the post template fifty times.

A fragment is a pure function of its key, so no write has to invalidate anything: the key is the
post's row as read for this request (every column the template shows, ``body_html`` included) and
the viewer's facts that change the post's controls (:class:`PostView`). An edited, voted, flagged,
hidden or renamed post has a new key; every worker process stays right whatever another process
wrote, and stale entries simply age out of the LRU. The one per-session string, the CSRF field, is
never cached: fragments hold an unguessable per-process marker there, replaced when the page is
assembled.
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
    mine: bool
    voted: bool
    can_reply: bool
    can_accept: bool
    is_first: bool
    moderator: bool


class PostFragments:
    """An LRU of rendered posts keyed by (:class:`PostRow`, :class:`PostView`); thread-safe."""

    def __init__(self, max_entries: int = 2000) -> None:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._template = env.get_template("forum/_post.html")
        # Post bodies are sanitized HTML written by users: the marker must be unguessable so that
        # no post can make the page put the viewer's CSRF token where the post's author wants it.
        self._marker = f"csrf-{secrets.token_hex(16)}"
        self._parts = functools.lru_cache(maxsize=max_entries)(self._render_parts)

    def _render_parts(self, row: PostRow, view: PostView) -> tuple[str, ...]:
        html = self._template.render(
            p=row,
            v=view,
            fmt_time=fmt_time,
            forum_csrf=Markup(self._marker),  # noqa: S704 - hex, nothing to escape
        )
        return tuple(html.split(self._marker))

    def render(self, row: PostRow, view: PostView, csrf_field: str) -> str:
        """The post's HTML for this viewer, with the session's CSRF field filled in."""
        return csrf_field.join(self._parts(row, view))

    def stats(self) -> tuple[int, int, int]:
        """(hits, misses, entries): for benchmarks and tests."""
        info = self._parts.cache_info()
        return info.hits, info.misses, info.currsize
