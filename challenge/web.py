"""Request helpers shared by the views: templates, the current user, CSRF, rendering."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from challenge.accounts import user_for_token
from challenge.errors import BadRequest, NotAuthenticated, NotFound
from challenge.models import User
from challenge.security import csrf_matches, new_csrf_token
from challenge.settings import Settings
from challenge.wording import counted


def engine_of(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def db(request: Request) -> Session:
    """The request's database session (one per request, closed by the middleware)."""
    session: Session | None = getattr(request.state, "db", None)
    if session is None:
        session = Session(engine_of(request), expire_on_commit=False)
        request.state.db = session
    return session


def current_user(request: Request) -> User | None:
    if hasattr(request.state, "user"):
        user: User | None = request.state.user
        return user
    user = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith(("bearer ", "token ")):
        session = db(request)
        user = user_for_token(session, auth.split(None, 1)[1])
        # Commit the last-used stamp now: an open write would hold SQLite's lock for the whole
        # request and block the upload's own transaction.
        session.commit()
        if user is None:
            raise NotAuthenticated(
                "The API token is not valid; create a new one on your account page."
            )
        request.state.via_token = True
    else:
        user_id = request.session.get("user_id") if "session" in request.scope else None
        if user_id is not None:
            user = db(request).get(User, int(user_id))
            if user is not None and not user.is_active:
                user = None
    request.state.user = user
    return user


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise NotAuthenticated("Log in first.")
    return user


def require_role(request: Request, *roles: str) -> User:
    user = require_user(request)
    if user.role not in roles:
        raise NotFound("Not found.")
    return user


def limit_login_rate(request: Request) -> None:
    """Login attempts per client address and minute (browser, API and EvalAI logins alike)."""
    client_ip = request.client.host if request.client else "?"
    request.app.state.ratelimiter.hit(
        f"login:{client_ip}", settings_of(request).login_rate_per_minute, 60, "login attempts"
    )


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = new_csrf_token()
        request.session["csrf"] = token
    return str(token)


async def read_form(request: Request) -> FormData:
    """Parse a POSTed form and check its CSRF token; every form view goes through here."""
    form = await request.form(max_files=2, max_fields=200)
    given = form.get("csrf_token")
    if not csrf_matches(request.session.get("csrf"), given if isinstance(given, str) else None):
        raise BadRequest(
            "The form expired or came from another site. Reload the page and submit it again."
        )
    return form


def _fmt_time(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt_score(value: float | None, digits: int = 5) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _markdown(source: str) -> Markup:
    """Organizer-written Markdown (challenge descriptions), sanitized like forum posts."""
    from forum.rendering import render_markdown

    return Markup(render_markdown(source).html)  # noqa: S704 - nh3-sanitized HTML


def make_templates(extra_dirs: list[str] | None = None) -> Environment:
    from pathlib import Path

    dirs = [str(Path(__file__).parent / "templates"), *(extra_dirs or [])]
    env = Environment(
        loader=FileSystemLoader(dirs),
        autoescape=select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _fmt_time
    env.filters["score"] = _fmt_score
    env.filters["markdown"] = _markdown
    env.filters["bytes"] = _fmt_bytes
    env.filters["counted"] = counted
    env.filters["isotime"] = lambda v: v.isoformat() if v else ""
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    env: Environment = request.app.state.templates
    user = current_user(request) if "session" in request.scope else None
    flashes = request.session.pop("flash", []) if "session" in request.scope else []
    token = csrf_token(request) if "session" in request.scope else ""
    # The token is URL-safe base64 (secrets.token_urlsafe): nothing in it needs escaping.
    csrf_field = Markup(f'<input type="hidden" name="csrf_token" value="{token}">')  # noqa: S704
    html = env.get_template(template).render(
        request=request,
        user=user,
        settings=settings_of(request),
        csrf=csrf_field,
        csrf_value=token,
        flashes=flashes,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def flash(
    request: Request, message: str, kind: str = "info", status_url: str = "", fallback_url: str = ""
) -> None:
    """A notice for the next page; with ``status_url`` podium.js keeps it up to date in place
    (polling that JSON route), and ``fallback_url`` is the link that does it without JavaScript."""
    item = {"kind": kind, "message": message}
    if status_url:
        item.update(status_url=status_url, fallback_url=fallback_url)
    request.session.setdefault("flash", []).append(item)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
