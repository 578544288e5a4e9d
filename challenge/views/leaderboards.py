"""Leaderboard pages: per phase, public and private, paginated; CSV, embed, projector room, plots."""

from __future__ import annotations

import csv
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from challenge.challenges import challenge_status, phase_state, phases_of, private_board_visible
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
from challenge.models import Challenge, Phase, User
from challenge.plots import shakeup_svg, time_series_svg
from challenge.teams import team_of
from challenge.views.challenges import visible_challenge
from challenge.web import current_user, db, render, settings_of

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
    private_ok = private_board_visible(challenge, phase) or (
        allow_private and can_preview(current_user(request), challenge)
    )
    if board == "private" and not (allow_private and private_ok):
        raise NotFound("The private leaderboard is revealed when the phase closes.")
    return BoardRequest(challenge, phase, phases, board, private_ok, higher_is_better_of(challenge))


def _page_number(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError as exc:
        raise BadRequest("page must be a whole number, e.g. ?page=2.") from exc


def board_page(request: Request, br: BoardRequest) -> BoardPage:
    session = db(request)
    page = _page_number(request)
    if br.board == "public":
        return public_board_page(
            session, br.challenge, br.phase, page=page, higher_is_better=br.higher_is_better
        )
    entries = private_leaderboard(session, br.challenge, br.phase, br.higher_is_better)
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


# Rendered public pages per app (so per database), keyed by the phase's board_version: any score,
# merge, rename or disqualification bumps the version in the database, so a stale page is never
# served.
PageCache = OrderedDict[tuple[int, int, str], tuple[int, BoardPage, Markup]]
_CACHE_SIZE = 512
_cache_lock = threading.Lock()


def _page_cache(request: Request) -> PageCache:
    with _cache_lock:
        cache: PageCache | None = getattr(request.app.state, "board_page_cache", None)
        if cache is None:
            cache = OrderedDict()
            request.app.state.board_page_cache = cache
        return cache


def cached_board(request: Request, br: BoardRequest) -> tuple[BoardPage, Markup]:
    """The page's rows and its rendered table, from the cache when the board has not changed."""
    assert br.phase.id is not None
    key = (br.phase.id, _page_number(request), br.board)
    version = br.phase.board_version
    page_cache = _page_cache(request)
    if br.board == "public":
        with _cache_lock:
            hit = page_cache.get(key)
            if hit is not None and hit[0] == version:
                page_cache.move_to_end(key)
                return hit[1], hit[2]
    result = board_page(request, br)
    env: Environment = request.app.state.templates
    html = Markup(env.get_template("challenge/_board_table.html").render(  # noqa: S704 - autoescaped
        challenge=br.challenge, phase=br.phase, board=br.board, result=result,
        entries=result.entries,
    ))  # fmt: skip
    if br.board == "public":
        with _cache_lock:
            page_cache[key] = (version, result, html)
            while len(page_cache) > _CACHE_SIZE:
                page_cache.popitem(last=False)
    return result, html


def leaderboard(request: Request) -> Response:
    br = board_request(request)
    result, table_html = cached_board(request, br)
    user = current_user(request)
    team = team_of(db(request), br.challenge, user)
    return render(
        request,
        "challenge/leaderboard.html",
        challenge=br.challenge,
        phase=br.phase,
        phases=br.phases,
        board=br.board,
        private_ok=br.private_ok,
        higher_is_better=br.higher_is_better,
        result=result,
        table_html=table_html,
        my_team_id=team.id if team else None,
        phase_state=phase_state(br.phase),
        ladder=bool((br.challenge.leaderboard or {}).get("ladder")),
    )


def leaderboard_csv(request: Request) -> Response:
    """The whole board as CSV; text cells are escaped against formula injection."""
    br = board_request(request)
    session = db(request)
    entries: list[Entry] = (
        public_leaderboard(session, br.challenge, br.phase, br.higher_is_better)
        if br.board == "public"
        else private_leaderboard(session, br.challenge, br.phase, br.higher_is_better)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = ["rank", "team", "score", "ci_low", "ci_high", "tied_with_above", "entries",
              "submitted_at"]
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
    name = f"{br.challenge.slug}-{br.phase.name}-{br.board}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _render_plain(request: Request, template: str, **context: Any) -> str:
    """Render without touching the session: no cookie is read or set (embeds, the room)."""
    env: Environment = request.app.state.templates
    return env.get_template(template).render(settings=settings_of(request), **context)


def embed(request: Request) -> Response:
    """The public board, read-only, for an iframe on any site: no cookies, framing allowed."""
    br = board_request(request, allow_private=False)
    result, _ = cached_board(request, br)
    html = _render_plain(
        request, "challenge/leaderboard_embed.html", challenge=br.challenge, phase=br.phase,
        result=result, base_url=settings_of(request).base_url,
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": "frame-ancestors *; default-src 'none'; style-src "
            "'unsafe-inline'",
            "Cache-Control": "public, max-age=30",
        },
    )


def room(request: Request) -> Response:
    """A projector view of a phase's board (hackathon room): large type, refreshes by itself."""
    br = board_request(request, allow_private=False)
    result = public_board_page(
        db(request), br.challenge, br.phase, page=1, per_page=20,
        higher_is_better=br.higher_is_better,
    )
    html = _render_plain(
        request, "challenge/room.html", challenge=br.challenge, phase=br.phase, result=result,
        state=phase_state(br.phase), refresh=15,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _svg(body: str) -> Response:
    return Response(
        body,
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


def plot_best(request: Request) -> Response:
    br = board_request(request, allow_private=False)
    points = best_score_over_time(db(request), br.phase, br.higher_is_better)
    return _svg(time_series_svg(points, title=f"Best public score, {br.phase.name}", step=True))


def plot_history(request: Request) -> Response:
    """The current user's team history (public scores; late ones in red)."""
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
    br = board_request(request)
    if not br.private_ok:
        raise NotFound("The shake-up is shown when the private leaderboard is revealed.")
    entries = private_leaderboard(db(request), br.challenge, br.phase, br.higher_is_better)
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
