"""Full-text search over thread titles and post bodies: FTS5 on SQLite, tsvector on PostgreSQL.

Only visible posts are indexed; hiding or moving a post updates the index, so the search never leaks
hidden content. Queries are plain words (all must match); quotes and operators are not interpreted,
so user input cannot break the query syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from forum.rendering import plain_text

WORD_RE = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 12


@dataclass(frozen=True)
class SearchHit:
    post_id: int
    thread_id: int
    title: str
    snippet: str  # plain text; the template escapes it


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def index_post(session: Session, *, post_id: int, title: str, body: str, new: bool = False) -> None:
    """Add or replace a post in the index (call for visible posts only; ``new``: never indexed)."""
    if not new:
        unindex_post(session, post_id=post_id)
    if _is_postgres(session):
        session.execute(
            sa.text(
                "INSERT INTO forum_search (post_id, document) VALUES (:id, "
                "setweight(to_tsvector('english', :title), 'A') || to_tsvector('english', :body))"
            ),
            {"id": post_id, "title": title, "body": body},
        )
    else:
        session.execute(
            sa.text("INSERT INTO forum_search (rowid, title, body) VALUES (:id, :title, :body)"),
            {"id": post_id, "title": title, "body": body},
        )


def unindex_post(session: Session, *, post_id: int) -> None:
    column = "post_id" if _is_postgres(session) else "rowid"
    session.execute(sa.text(f"DELETE FROM forum_search WHERE {column} = :id"), {"id": post_id})  # noqa: S608 - fixed column names


def search_terms(query: str) -> list[str]:
    return WORD_RE.findall(query)[:MAX_TERMS]


def search_posts(
    session: Session, *, query: str, challenge_slug: str | None, limit: int = 30, offset: int = 0
) -> list[SearchHit]:
    """Visible posts of visible threads in one forum (a challenge's or the site-wide one)."""
    terms = search_terms(query)
    if not terms:
        return []
    scope = "t.challenge_slug = :slug" if challenge_slug is not None else "t.challenge_slug IS NULL"
    params: dict[str, object] = {"slug": challenge_slug, "limit": limit, "offset": offset}
    if _is_postgres(session):
        params["q"] = " ".join(terms)
        sql = (
            "SELECT p.id, p.thread_id, t.title, "  # noqa: S608 - scope is one of two fixed strings
            "p.body_md "
            "FROM forum_search s JOIN forum_post p ON p.id = s.post_id "
            "JOIN forum_thread t ON t.id = p.thread_id "
            "WHERE s.document @@ plainto_tsquery('english', :q) "
            f"AND p.status = 'visible' AND t.status = 'visible' AND {scope} "
            "ORDER BY ts_rank(s.document, plainto_tsquery('english', :q)) DESC, p.id DESC "
            "LIMIT :limit OFFSET :offset"
        )
    else:
        # Each term quoted: FTS5 reads it as a literal word, never as syntax.
        params["q"] = " ".join('"' + t.replace('"', "") + '"' for t in terms)
        sql = (
            "SELECT p.id, p.thread_id, t.title, "  # noqa: S608 - scope is one of two fixed strings
            "p.body_md "
            "FROM forum_search JOIN forum_post p ON p.id = forum_search.rowid "
            "JOIN forum_thread t ON t.id = p.thread_id "
            "WHERE forum_search MATCH :q "
            f"AND p.status = 'visible' AND t.status = 'visible' AND {scope} "
            "ORDER BY forum_search.rank, p.id DESC LIMIT :limit OFFSET :offset"
        )
    rows = session.execute(sa.text(sql), params).all()
    return [SearchHit(int(r[0]), int(r[1]), str(r[2]), snippet(str(r[3]), terms)) for r in rows]


def snippet(body_md: str, terms: list[str], words: int = 24) -> str:
    """A few words of the post's text (its Markdown syntax removed) around the first match, the
    matching words marked «so». The database's own excerpt would cut through Markdown."""
    text = plain_text(body_md).split()
    stems = [t.lower()[:5] for t in terms]  # the index stems words; a prefix is close enough here

    def hit(word: str) -> bool:
        found = [w.lower() for w in WORD_RE.findall(word)]
        return any(w.startswith(s) for w in found for s in stems)

    first = next((i for i, w in enumerate(text) if hit(w)), 0)
    start = max(0, first - words // 3)
    shown = [f"\u00ab{w}\u00bb" if hit(w) else w for w in text[start : start + words]]
    return ("… " if start else "") + " ".join(shown) + (" …" if start + words < len(text) else "")
