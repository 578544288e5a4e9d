"""Leaderboard pages: per phase, public and private, paginated; CSV, embed, projector room, plots."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from jinja2 import Environment
from markupsafe import Markup
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from challenge.challenges import (
    challenge_status,
    phase_blocking_reveal,
    phase_state,
    phases_of,
    private_scores_visible_among,
    reveal_due_at,
    scheduled_reveal_date,
)
from challenge.errors import BadRequest, NotFound
from challenge.leaderboard import (
    PER_PAGE,
    BoardPage,
    Entry,
    baseline_entries,
    best_score_over_time,
    higher_is_better_of,
    private_leaderboard,
    public_board_page,
    public_leaderboard,
    team_score_history,
)
from challenge.models import Challenge, Phase, Submission, User, utcnow
from challenge.plots import shakeup_svg, time_series_svg
from challenge.teams import team_of
from challenge.views.challenges import visible_challenge
from challenge.web import current_user, db, engine_of, query_int, render, settings_of

log = logging.getLogger(__name__)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_csv_cell(value: str) -> str:
    """Neutralize spreadsheet formulas in text cells (OWASP CSV injection): prefix a quote."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def can_preview(user: User | None, challenge: Challenge) -> bool:
    """Organizers of the challenge and admins see the private board before the reveal."""
    return user is not None and (user.role == "admin" or user.id == challenge.created_by)


@dataclass
class BoardRequest:
    challenge: Challenge
    phase: Phase
    phases: list[Phase]
    board: str
    private_ok: bool
    higher_is_better: bool


def board_request(request: Request, *, allow_private: bool = True) -> BoardRequest:
    """Resolve ?phase= and ?board= for a challenge the user may see; private only when visible."""
    challenge = visible_challenge(request, request.path_params["slug"])
    session = db(request)
    all_phases = phases_of(session, challenge)
    phases = [p for p in all_phases if p.accepts_submissions]
    wanted = request.query_params.get("phase")
    phase: Phase | None
    if wanted:
        phase = next((p for p in phases if p.name == wanted), None)
        if phase is None:
            raise NotFound(f"No phase '{wanted}' in this challenge.")
    else:
        phase = challenge_status(all_phases).submitting_phase or (phases[0] if phases else None)
    if phase is None:
        raise NotFound("This challenge has no leaderboard.")
    board = request.query_params.get("board", "public")
    if board not in ("public", "private"):
        raise BadRequest("board must be 'public' or 'private'.")
    private_ok = private_scores_visible_among(challenge, all_phases) or (
        allow_private and can_preview(current_user(request), challenge)
    )
    if board == "private" and not (allow_private and private_ok):
        raise PrivateBoardHidden(challenge, phase, phases, all_phases)
    return BoardRequest(challenge, phase, phases, board, private_ok, higher_is_better_of(challenge))


class PrivateBoardHidden(NotFound):
    """A private board asked for before the reveal: still a 404 everywhere, but the board page
    renders it as a placeholder saying when the board will be shown (and nothing more)."""

    def __init__(
        self, challenge: Challenge, phase: Phase, phases: list[Phase], all_phases: list[Phase]
    ) -> None:
        super().__init__(private_hidden_message(challenge, all_phases))
        self.challenge, self.phase, self.phases = challenge, phase, phases
        self.due = reveal_due_at(challenge, all_phases)
        self.blocking = phase_blocking_reveal(all_phases)


def _private_placeholder(request: Request, hidden: PrivateBoardHidden) -> Response:
    """The page in place of a private board not revealed yet: when it will be, and why."""
    return render(
        request,
        "challenge/private_pending.html",
        status_code=404,
        challenge=hidden.challenge,
        phase=hidden.phase,
        phases=hidden.phases,
        board="private",
        due=hidden.due,
        blocking=hidden.blocking,
        message=str(hidden),
    )


def private_hidden_message(challenge: Challenge, phases: list[Phase]) -> str:
    """Why a private board is not shown, and when it will be."""
    due = reveal_due_at(challenge, phases)
    if due is not None:
        return (
            "The private leaderboard is revealed when the last phase that ranks on the private "
            f"test rows has closed, at {due:%Y-%m-%d %H:%M} UTC."
        )
    return (
        "The private leaderboard is revealed by the organizers once every phase that ranks on "
        "the private test rows has closed."
    )


def _page_number(request: Request) -> int:
    return query_int(request, "page", 1, maximum=1_000_000)


def board_page(request: Request, br: BoardRequest, head: BoardHead | None = None) -> BoardPage:
    session = db(request)
    page = _page_number(request)
    if br.board == "public":
        return public_board_page(
            session, br.challenge, br.phase, page=page, higher_is_better=br.higher_is_better
        )
    entries = private_entries(request, br, head)
    pages = max(1, math.ceil(len(entries) / PER_PAGE))
    page = min(page, pages)

    def better(e: Entry, b: Entry) -> bool:
        return e.score > b.score if br.higher_is_better else e.score < b.score

    baselines = [
        (b, 1 + sum(1 for e in entries if better(e, b)))
        for b in baseline_entries(session, br.phase, br.higher_is_better, "private")
    ]
    return BoardPage(
        entries[(page - 1) * PER_PAGE : page * PER_PAGE], len(entries), page, pages, baselines
    )


# ---------------------------------------------------------------- caching
#
# Every board change (a score, a rescore, a merge, a rename, a disqualification, a final pick, a
# private interval) bumps ``phase.board_version`` in the same transaction. A request reads the
# versions of the challenge's phases together with everything else a board page depends on (the
# challenge's title, metric, settings and reveal, the phases' names and times, and which phases
# have opened or closed by now) in ONE small query, and hashes that into ``BoardHead.key``. Pages
# are cached per app (so per database) under that key: a cache entry can never outlive the state
# it was rendered from, in this process or any other, and nothing has to be invalidated.


@dataclass(frozen=True)
class BoardHead:
    key: str  # a digest of everything but the viewer that a board page is rendered from
    listed: bool


def _head_query() -> sa.Select[Any]:
    c, p = Challenge, Phase
    columns: list[Any] = [
        *(c.id, c.is_listed, c.title, c.metric, c.leaderboard, c.limits, c.revealed_at),
        *(c.created_by, p.id, p.name, p.position, p.opens_at, p.closes_at),
        *(p.accepts_submissions, p.board_version),
    ]
    return (
        sa.select(*columns)
        .select_from(c)
        .outerjoin(p, col(p.challenge_id) == col(c.id))
        .where(col(c.slug) == sa.bindparam("slug"))
        .order_by(col(p.position), col(p.id))
    )


# Built once: constructing the statement costs more than running it (it is on every request).
_HEAD_QUERY = _head_query()


def board_head(conn: sa.Connection, slug: str, now: dt.datetime | None = None) -> BoardHead | None:
    """The cache key of a challenge's boards, from one indexed query (None: no such challenge)."""
    return head_from_rows(conn.execute(_HEAD_QUERY, {"slug": slug}).all(), slug, now or utcnow())


def _plain(value: Any) -> Any:
    """One spelling per value whichever driver read it (time zones of datetimes differ)."""
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value


def head_from_rows(rows: Sequence[Any], slug: str, now: dt.datetime) -> BoardHead | None:
    """:func:`board_head` from the rows of ``_HEAD_QUERY``."""
    if not rows:
        return None
    parts: list[Any] = [slug, tuple(map(_plain, rows[0][:8]))]
    # A scheduled reveal date passing changes what the boards show without changing a row.
    reveal_date = scheduled_reveal_date(rows[0][4] if isinstance(rows[0][4], dict) else None)
    parts.append(reveal_date is not None and now >= reveal_date)
    for row in rows:
        opens, closes = row[11], row[12]
        # Which phases are open or closed decides the default phase and the private reveal.
        opened = opens is not None and now >= opens
        closed = closes is not None and now >= closes
        parts.append((*map(_plain, row[8:]), opened, closed))
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return BoardHead(digest, bool(rows[0][1]))


T = TypeVar("T")


class BoardCache:
    """A bounded LRU of rendered board responses and computed rows, for one app."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def get_or_build(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The cached value, or ``build()`` stored. One build per key at a time: the requests
        that miss together right after a board change wait for the first one's result instead of
        all rendering the same page."""
        value: T | None = self.get(key)
        if value is not None:
            return value
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        try:
            with building:
                value = self.get(key)
                if value is None:
                    value = build()
                    self.put(key, value)
        finally:  # also when the build raised (a bad ?phase=): the lock must not pile up
            with self._lock:
                self._building.pop(key, None)
        return value

    def __len__(self) -> int:
        return len(self._data)


_cache_lock = threading.Lock()


def board_cache(request: Request, *, big: bool = False) -> BoardCache:
    """The app's cache (two apps on two databases never share pages keyed by the same ids).

    ``big``: whole private boards and CSV files (up to a few MB each for 10,000 teams) live in a
    cache of their own with few entries, so that old board versions cannot pile up to gigabytes
    before the LRU drops them. Pages (~25 kB) get 512 entries.
    """
    name = "board_cache_big" if big else "board_cache"
    cache: BoardCache | None = getattr(request.app.state, name, None)
    if cache is None:
        with _cache_lock:
            cache = getattr(request.app.state, name, None)
            if cache is None:
                cache = BoardCache(size=8 if big else 512)
                setattr(request.app.state, name, cache)
    return cache


def is_anonymous(request: Request) -> bool:
    """A viewer whose page is the same as everyone else's: no login, no token, no flash."""
    if request.headers.get("authorization"):
        return False
    session = request.session if "session" in request.scope else {}
    return not session.get("user_id") and not session.get("flash")


def _query_key(request: Request, *names: str) -> tuple[str | None, ...]:
    return tuple(request.query_params.get(n) for n in names)


def _etag(key: tuple[Any, ...]) -> str:
    return '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'


def _not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match", "")
    return etag in [t.strip().removeprefix("W/") for t in given.split(",")]


# Shared caches may keep the anonymous page but must ask again (ETag) and never hand it to a
# logged-in browser, whose page shows its name and team.
ANONYMOUS_HEADERS = {"Cache-Control": "no-cache", "Vary": "Cookie, Authorization"}


def private_entries(request: Request, br: BoardRequest, head: BoardHead | None) -> list[Entry]:
    """The whole private board of the phase, computed once per board version and process."""
    if head is None:
        return private_leaderboard(db(request), br.challenge, br.phase, br.higher_is_better)
    return board_cache(request, big=True).get_or_build(
        ("private", head.key, br.phase.id),
        lambda: private_leaderboard(db(request), br.challenge, br.phase, br.higher_is_better),
    )


def board_body(request: Request, br: BoardRequest, head: BoardHead | None) -> Markup:
    """The viewer-independent part of the board page (title, phase links, table, plots)."""
    key = (
        "body",
        head.key if head else None,
        br.phase.id,
        br.board,
        _page_number(request),
        br.private_ok,
    )

    def build() -> Markup:
        result = board_page(request, br, head)
        env: Environment = request.app.state.templates
        columns, column_scores = code_columns(request, br.challenge, result)
        html = env.get_template("challenge/_leaderboard_body.html").render(
            columns=columns,
            column_scores=column_scores,
            challenge=br.challenge,
            phase=br.phase,
            phases=br.phases,
            board=br.board,
            private_ok=br.private_ok,
            higher_is_better=br.higher_is_better,
            result=result,
            ladder=bool((br.challenge.leaderboard or {}).get("ladder")),
        )
        return Markup(html)  # noqa: S704 - autoescaped template output

    return build() if head is None else board_cache(request).get_or_build(key, build)


def code_columns(
    request: Request, challenge: Challenge, result: Any
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """A Codabench challenge's other leaderboard columns and each shown entry's scores
    (the ranking column is the board's Score)."""
    if challenge.kind != "codabench":
        return [], {}
    ranking = challenge.codabench.get("ranking")
    columns = [
        c for c in challenge.codabench.get("columns", [])
        if not c.get("hidden") and c["key"] != ranking
    ]  # fmt: skip
    ids = [e.submission_id for e in getattr(result, "entries", [])]
    if not columns or not ids:
        return columns, {}
    rows = db(request).exec(
        select(Submission.id, Submission.scores).where(col(Submission.id).in_(ids))
    ).all()
    return columns, {int(i): dict(scores or {}) for i, scores in rows if i is not None}


class HeadReader:
    """Reads ``board_head`` on the event loop without waiting for the app's connection pool.

    The loop must never wait for that pool: its connections are handed back by the middleware,
    which runs on the loop. SQLite: a connection of its own (a local read of ~50 us, no network).
    PostgreSQL: an asynchronous psycopg connection, so the loop serves other requests during the
    round trip. Autocommit: each read sees the latest committed board.
    """

    def __init__(self, engine: sa.Engine) -> None:
        url = self.url = engine.url
        self.lock = threading.Lock()
        self.sqlite: sa.Engine | None = None
        self.pg: tuple[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] | None = None
        if url.get_backend_name() == "sqlite":
            self.sqlite = sa.create_engine(
                url,
                pool_size=1,
                max_overflow=0,
                pool_timeout=0,  # in use (a second loop): the caller takes the thread pool
                isolation_level="AUTOCOMMIT",
                connect_args={"check_same_thread": False, "timeout": 0.5},
            )
        else:
            # psycopg's dialect: %(slug)s parameters, as AsyncConnection takes them.
            self.sql = str(_HEAD_QUERY.compile(dialect=engine.dialect))

    async def read(self, slug: str) -> BoardHead | None:
        if self.sqlite is not None:
            with self.sqlite.connect() as conn:
                return board_head(conn, slug)
        loop = asyncio.get_running_loop()
        if self.pg is None or self.pg[0] is not loop or self.pg[1].closed:
            self.close_pg()
            conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            fresh = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=2
            )
            self.pg = (loop, fresh)
        pg_conn = self.pg[1]
        try:
            async with pg_conn.cursor() as cur:
                await asyncio.wait_for(cur.execute(self.sql, {"slug": slug}), 2.0)
                rows = await cur.fetchall()
        except BaseException:
            self.close_pg()  # a cancelled or failed read leaves the connection in doubt
            raise
        return head_from_rows(rows, slug, utcnow())

    def close_pg(self) -> None:
        if self.pg is not None:
            self.pg[1].pgconn.finish()  # closes the socket without awaiting: any loop will do
            self.pg = None


def _head_reader(request: Request) -> HeadReader:
    reader: HeadReader | None = getattr(request.app.state, "board_head_reader", None)
    if reader is None:
        with _cache_lock:
            reader = getattr(request.app.state, "board_head_reader", None)
            if reader is None:
                reader = HeadReader(engine_of(request))
                request.app.state.board_head_reader = reader
    return reader


async def leaderboard(request: Request) -> Response:
    """The board page; a private board before the reveal gets the placeholder page."""
    try:
        return await _leaderboard(request)
    except PrivateBoardHidden as hidden:
        return await run_in_threadpool(_private_placeholder, request, hidden)


async def _leaderboard(request: Request) -> Response:
    """The board page. Anonymous viewers get the whole page from the cache (with an ETag, and
    304 when it has not changed); logged-in ones get the cached body inside their own header.

    ``async`` on purpose (the one exception to "database-bound views are plain def"): a cache hit
    costs one indexed read of ~20 values (``board_head``, see :class:`HeadReader`), cheaper
    than the hop to the thread pool, and it is the pool's 40 threads fighting for the GIL that
    made the latency tail at 64 connections (docs/benchmarks.md). Everything else runs in the
    pool, and so does the whole page when that connection is busy or broken.
    """
    try:
        head = await _head_reader(request).read(request.path_params["slug"])
    except Exception:  # the fast read is an optimization: any trouble, take the ordinary path
        log.debug("board head read on the loop failed", exc_info=True)
        return await run_in_threadpool(_page, request, None, False)
    if head is not None and head.listed and is_anonymous(request):
        key = ("page", head.key, *_query_key(request, "phase", "board", "page"))
        etag = _etag(key)
        headers = {**ANONYMOUS_HEADERS, "ETag": etag}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        page: bytes | None = board_cache(request).get(key)
        if page is None:
            page = await _build_once(request, key, lambda: _anonymous_page(request, head))
        if page is not None:
            return HTMLResponse(page, headers=headers)
    return await run_in_threadpool(_page, request, head, True)


async def _build_once(
    request: Request, key: tuple[Any, ...], build: Callable[[], bytes]
) -> bytes | None:
    """Build a missed page in the thread pool once, however many requests wait for it.

    Right after a board change every open connection misses at once; they await one build here
    instead of each taking a pool thread to wait on the same lock. None if the build failed (the
    caller then renders on its own, with its own error page).
    """
    loop = asyncio.get_running_loop()
    inflight: dict[tuple[Any, ...], asyncio.Future[bytes]] | None = getattr(
        request.app.state, "board_inflight", None
    )
    if inflight is None:
        inflight = request.app.state.board_inflight = {}
    future = inflight.get(key)
    if future is None or future.get_loop() is not loop:
        cache = board_cache(request)
        future = asyncio.ensure_future(run_in_threadpool(cache.get_or_build, key, build))
        inflight[key] = future

        def forget(done: asyncio.Future[bytes], key: tuple[Any, ...] = key) -> None:
            if inflight.get(key) is done:
                del inflight[key]

        future.add_done_callback(forget)
    try:
        return await asyncio.shield(future)
    except Exception:
        return None


def _page(request: Request, head: BoardHead | None, head_known: bool) -> Response:
    if not head_known:
        head = board_head(db(request).connection(), request.path_params["slug"])
    if head is not None and head.listed and is_anonymous(request):
        key = ("page", head.key, *_query_key(request, "phase", "board", "page"))
        etag = _etag(key)
        headers = {**ANONYMOUS_HEADERS, "ETag": etag}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        page = board_cache(request).get_or_build(key, lambda: _anonymous_page(request, head))
        return HTMLResponse(page, headers=headers)
    return _viewer_page(request, head)


def _anonymous_page(request: Request, head: BoardHead) -> bytes:
    br = board_request(request)
    env: Environment = request.app.state.templates
    return (
        env.get_template("challenge/leaderboard.html")
        .render(
            request=request,
            user=None,
            settings=settings_of(request),
            csrf="",
            csrf_value="",
            flashes=[],
            challenge=br.challenge,
            phase=br.phase,
            board=br.board,
            body_html=board_body(request, br, head),
            my_team_id=None,
        )
        .encode()
    )


def _viewer_page(request: Request, head: BoardHead | None) -> Response:
    br = board_request(request)
    team = team_of(db(request), br.challenge, current_user(request))
    return render(
        request,
        "challenge/leaderboard.html",
        challenge=br.challenge,
        phase=br.phase,
        board=br.board,
        body_html=board_body(request, br, head),
        my_team_id=team.id if team else None,
    )


def _shared(
    request: Request,
    kind: str,
    head: BoardHead | None,
    build: Callable[[], T],
    *query: str,
    big: bool = False,
) -> T:
    """A viewer-independent response body, from the cache when the boards have not changed.

    Only for listed challenges, whose boards every visitor may see: the caller has either
    checked the viewer (``board_request``) or knows the output does not depend on them.
    """
    if head is None or not head.listed:
        return build()
    key = (kind, head.key, *_query_key(request, *query))
    return board_cache(request, big=big).get_or_build(key, build)


def _csv(request: Request, head: BoardHead | None) -> tuple[bytes, str]:
    br = board_request(request)
    session = db(request)
    entries: list[Entry] = (
        public_leaderboard(session, br.challenge, br.phase, br.higher_is_better)
        if br.board == "public"
        else private_entries(request, br, head)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = [
        "rank",
        "team",
        "score",
        "ci_low",
        "ci_high",
        "tied_with_above",
        "entries",
        "submitted_at",
    ]
    if br.board == "private":
        header.append("public_rank")
    writer.writerow(header)
    for e in entries:
        row: list[Any] = [
            e.rank,
            escape_csv_cell(e.team_name),
            repr(e.score),
            "" if e.ci_low is None else repr(e.ci_low),
            "" if e.ci_high is None else repr(e.ci_high),
            int(e.tied_with_above),
            e.entries,
            e.submitted_at.isoformat(),
        ]
        if br.board == "private":
            row.append(e.public_rank or "")
        writer.writerow(row)
    return out.getvalue().encode(), f"{br.challenge.slug}-{br.phase.name}-{br.board}.csv"


def leaderboard_csv(request: Request) -> Response:
    """The whole board as CSV; text cells are escaped against formula injection."""
    head = board_head(db(request).connection(), request.path_params["slug"])
    if is_anonymous(request):
        body, name = _shared(
            request, "csv", head, lambda: _csv(request, head), "phase", "board", big=True
        )
    else:  # an organizer may preview the private board: not the anonymous file
        body, name = _csv(request, head)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _render_plain(request: Request, template: str, **context: Any) -> str:
    """Render without touching the session: no cookie is read or set (embeds, the room)."""
    env: Environment = request.app.state.templates
    return env.get_template(template).render(settings=settings_of(request), **context)


def embed(request: Request) -> Response:
    """The public board, read-only, for an iframe on any site: no cookies, framing allowed."""
    head = board_head(db(request).connection(), request.path_params["slug"])

    def build() -> bytes:
        br = board_request(request, allow_private=False)
        result = public_board_page(
            db(request), br.challenge, br.phase, page=1, higher_is_better=br.higher_is_better
        )
        return _render_plain(
            request,
            "challenge/leaderboard_embed.html",
            challenge=br.challenge,
            phase=br.phase,
            result=result,
            base_url=settings_of(request).base_url,
        ).encode()

    return HTMLResponse(
        _shared(request, "embed", head, build, "phase"),
        headers={
            "Content-Security-Policy": "frame-ancestors *; default-src 'none'; style-src "
            "'unsafe-inline'",
            "Cache-Control": "public, max-age=30",
        },
    )


def room(request: Request) -> Response:
    """A projector view of a phase's board (hackathon room): large type, refreshes by itself."""
    head = board_head(db(request).connection(), request.path_params["slug"])

    def build() -> bytes:
        br = board_request(request, allow_private=False)
        result = public_board_page(
            db(request),
            br.challenge,
            br.phase,
            page=1,
            per_page=20,
            higher_is_better=br.higher_is_better,
        )
        return _render_plain(
            request,
            "challenge/room.html",
            challenge=br.challenge,
            phase=br.phase,
            result=result,
            state=phase_state(br.phase),
            refresh=15,
        ).encode()

    return HTMLResponse(
        _shared(request, "room", head, build, "phase"), headers={"Cache-Control": "no-store"}
    )


def _svg(body: str | bytes) -> Response:
    return Response(
        body,
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


def plot_best(request: Request) -> Response:
    head = board_head(db(request).connection(), request.path_params["slug"])

    def build() -> bytes:
        br = board_request(request, allow_private=False)
        points = best_score_over_time(db(request), br.challenge, br.phase, br.higher_is_better)
        title = f"Best public score, {br.phase.name}"
        return time_series_svg(points, title=title, step=True).encode()

    return _svg(_shared(request, "best", head, build, "phase"))


def plot_history(request: Request) -> Response:
    """The current user's team history (public scores as the team sees them; late ones red)."""
    br = board_request(request, allow_private=False)
    team = team_of(db(request), br.challenge, current_user(request))
    if team is None or team.id is None:
        raise NotFound("Join the challenge to see your team's score history.")
    rows = team_score_history(db(request), team.id, br.phase)
    return _svg(
        time_series_svg(
            [(t, s) for t, s, _ in rows],
            title=f"{team.name}: public scores, {br.phase.name}",
            marks=[late for _, _, late in rows],
        )
    )


def plot_shakeup(request: Request) -> Response:
    head = board_head(db(request).connection(), request.path_params["slug"])
    br = board_request(request)
    if not br.private_ok:
        raise NotFound("The shake-up is shown when the private leaderboard is revealed.")
    entries = private_entries(request, br, head)
    pairs = [(e.public_rank, e.rank, e.team_name) for e in entries if e.public_rank and e.rank]
    return _svg(shakeup_svg(pairs, title=f"Shake-up, {br.phase.name}"))


routes = [
    Route("/c/{slug}/leaderboard", leaderboard, methods=["GET"], name="leaderboard"),
    Route("/c/{slug}/leaderboard.csv", leaderboard_csv, methods=["GET"], name="leaderboard_csv"),
    Route("/c/{slug}/leaderboard/embed", embed, methods=["GET"], name="leaderboard_embed"),
    Route("/c/{slug}/room", room, methods=["GET"], name="room"),
    Route("/c/{slug}/plots/best.svg", plot_best, methods=["GET"]),
    Route("/c/{slug}/plots/history.svg", plot_history, methods=["GET"]),
    Route("/c/{slug}/plots/shakeup.svg", plot_shakeup, methods=["GET"]),
]
