"""Request helpers shared by the views: templates, the current user, CSRF, rendering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlmodel import Session
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from challenge.accounts import user_for_token
from challenge.errors import BadRequest, NotAuthenticated, NotFound
from challenge.models import User
from challenge.security import csrf_matches, new_csrf_token
from challenge.sessions import end_session, start_session, user_for_session
from challenge.settings import Settings
from challenge.wording import counted

# The largest id our tables hold (their keys are INTEGER: 32 bits on PostgreSQL): a bigger number
# in a path is no row of ours, and handed to the database it raised (SQLite's OverflowError past
# 2**63 - 1, PostgreSQL's "integer out of range").
MAX_DB_INT = 2**31 - 1


def _at_most(limit: int) -> str:
    """A regex for the decimal numbers from 0 to ``limit`` (leading zeros within its length)."""
    digits = str(limit)
    alternatives = [f"[0-9]{{1,{len(digits) - 1}}}"]
    for i, d in enumerate(digits):
        if d != "0":
            rest = len(digits) - i - 1
            alternatives.append(
                digits[:i] + f"[0-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    alternatives.append(digits)
    return "|".join(alternatives)


class DatabaseIdConvertor(Convertor[int]):
    """``{name:dbint}``: a path integer a database column can hold; a bigger one matches no route
    (404), like an id that does not exist."""

    regex = f"(?:{_at_most(MAX_DB_INT)})"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("dbint", DatabaseIdConvertor())


def query_int(
    request: Request, name: str, default: int, *, minimum: int = 1, maximum: int = MAX_DB_INT
) -> int:
    """An integer query parameter; anything else is a 400 that says what to send."""
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise BadRequest(
            f"{name} must be a whole number from {minimum} to {maximum}, not '{raw[:40]}'.",
            field=name,
        )
    return value


async def json_object(request: Request, example: str) -> dict[str, Any]:
    """The request's JSON body, which must be an object; else a 400 showing ``example``."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest(f"Send a JSON object: {example}.")
    return body


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
    elif "session" in request.scope:
        claimed, session_id = request.session.get("user_id"), request.session.get("sid")
        if claimed is not None:
            if session_id:
                user = user_for_session(
                    db(request), user_id=int(claimed), session_id=str(session_id)
                )
            if user is None:  # ended, expired, or a cookie from before sessions were kept
                request.session.pop("user_id", None)
                request.session.pop("sid", None)
    request.state.user = user
    return user


def log_in(request: Request, user: User) -> None:
    """Start a server-side session for ``user`` and put it in the (new) cookie; commits."""
    session = db(request)
    session_id = start_session(
        session,
        user=user,
        ip=client_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    session.commit()
    request.session.clear()  # a new CSRF token too: nothing of the visitor's session carries over
    request.session["user_id"] = user.id
    request.session["sid"] = session_id
    request.state.user = user


def log_out(request: Request) -> None:
    """End this browser's session on the server, then forget the cookie's contents."""
    session_id = request.session.get("sid")
    if session_id:
        session = db(request)
        end_session(session, str(session_id))
        session.commit()
    request.session.clear()


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


def client_address(request: Request) -> str:
    """The client's address (uvicorn puts the proxy's X-Forwarded-For here for ``serve``)."""
    return request.client.host if request.client else "?"


def rate_limit(request: Request, name: str, *, account: str | None = None) -> None:
    """Count one ``name`` action (challenge/ratelimit.py) from this address on ``account``;
    429 with Retry-After past a limit."""
    request.app.state.ratelimiter.hit(name, address=client_address(request), account=account)


def limit_login_rate(request: Request, login: str) -> None:
    """Before checking a password (browser, API and EvalAI logins alike): the address's
    attempts, and the failures on that login name (``count_failed_login`` counts them)."""
    limiter = request.app.state.ratelimiter
    limiter.hit("login", address=client_address(request))
    limiter.check("login", account=login.strip().lower() or "-")


def count_failed_login(request: Request, login: str) -> None:
    request.app.state.ratelimiter.count("login", account=login.strip().lower() or "-")


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = new_csrf_token()
        request.session["csrf"] = token
    return str(token)


async def read_form(request: Request) -> FormData:
    """Parse a POSTed form and check its CSRF token; every form view goes through here."""
    form = await request.form(max_files=2, max_fields=200)
    check_csrf(request, form)
    return form


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse a form whose CSRF token is not the session's (upload forms call it directly)."""
    given = form.get("csrf_token")
    if not csrf_matches(request.session.get("csrf"), given if isinstance(given, str) else None):
        raise BadRequest(
            "The form expired or came from another site. Reload the page and submit it again."
        )


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
