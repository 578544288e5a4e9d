"""The application factory: ``create_app(settings)`` builds the whole site from a settings object."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from challenge.db import make_engine
from challenge.errors import NotAuthenticated, PodiumError, RateLimited
from challenge.health import check_health
from challenge.ratelimit import RateLimiter
from challenge.security import (
    CONTENT_SECURITY_POLICY,
    SecurityHeaders,
    content_security_policy,
    security_headers,
)
from challenge.settings import Settings
from challenge.storage import sweep_abandoned_uploads
from challenge.web import make_templates, render

log = logging.getLogger(__name__)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class CrossOriginGuard:
    """Deny-by-default CSRF defence for cookie sessions, in front of the per-form tokens.

    A browser marks cross-site requests with Sec-Fetch-Site and Origin; unsafe requests that say
    they come from another site are refused. Token-authenticated API calls carry no cookie and pass.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if not headers.get("authorization"):
                site = headers.get("sec-fetch-site")
                origin = headers.get("origin")
                host = headers.get("host", "")
                cross = site is not None and site not in ("same-origin", "none")
                if origin and origin != "null" and origin.split("://", 1)[-1] != host:
                    cross = True
                if cross:
                    response = JSONResponse(
                        {"error": "forbidden", "message": "Cross-site form posts are refused."},
                        status_code=403,
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class DbSessionCleanup:
    """Close the request's database session, whatever happened."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            state = scope.get("state") or {}
            session = state.get("db") if isinstance(state, dict) else None
            if session is not None:
                session.close()


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


async def handle_podium_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PodiumError)
    response: Response
    if _wants_json(request):
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.field:
            body["field"] = exc.field
        response = JSONResponse(body, status_code=exc.status_code)
    elif isinstance(exc, NotAuthenticated):
        from challenge.web import redirect

        return redirect(f"/login?next={request.url.path}")
    else:
        response = render(request, "error.html", status_code=exc.status_code, error=exc)
    if isinstance(exc, RateLimited) and exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def handle_404(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": "not_found", "message": "Not found."}, status_code=404)
    return render(
        request, "error.html", status_code=404, error=PodiumError("That page does not exist.")
    )


async def handle_500(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    if _wants_json(request):
        return JSONResponse(
            {"error": "server_error", "message": "Something broke on our side."}, status_code=500
        )
    response = HTMLResponse(
        "<h1>Something broke on our side</h1><p>The error has been logged.</p>", status_code=500
    )
    # Starlette sends this page from outside the middleware stack: add the headers here.
    response.raw_headers[:] = security_headers(
        response.raw_headers, getattr(request.app.state, "csp", CONTENT_SECURITY_POLICY)
    )
    return response


def health(request: Request) -> Response:
    """200 "ok" if the database, Redis and at least one scoring worker are up, else 503."""
    ok, body = check_health(request.app.state.engine, request.app.state.health_redis)
    return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


def create_app(settings: Settings, engine: sa.Engine | None = None) -> Starlette:
    """Build the site. The engine may be shared with a worker in tests."""
    from challenge import api, evalai
    from challenge.broker import redis_client
    from challenge.forum_bridge import FORUM_TEMPLATES, forum_mount
    from challenge.views import accounts, challenges, leaderboards, lifecycle, organizer, teams
    from challenge.views import teaching as teaching_views

    engine = engine or make_engine(settings.database_url)
    try:
        sweep_abandoned_uploads(settings)
    except OSError:
        log.exception("could not sweep abandoned uploads under %s", settings.submissions_dir)
    limiter_client = health_client = None
    if not settings.redis_url.startswith("stub://"):
        try:
            limiter_client = redis_client()
            health_client = redis_client(timeout=2.0)  # /health answers even if Redis hangs
        except Exception:
            log.exception("no Redis client: rate limits are off and /health reports Redis down")
    static_dir = Path(__file__).parent / "static"
    routes = [
        Route("/health", health, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=static_dir), name="static"),
        *accounts.routes,
        *challenges.routes,
        *organizer.routes,
        *leaderboards.routes,
        *teams.routes,
        *lifecycle.routes,
        *teaching_views.routes,
        # EvalAI's paths first: they are integer-typed and literal where Podium's take a slug.
        Mount("/api", routes=[*evalai.routes, *api.routes]),
        forum_mount(settings),
    ]
    csp = content_security_policy(settings.forum_image_hosts.split(","))
    middleware = [
        Middleware(SecurityHeaders, policy=csp),
        Middleware(DbSessionCleanup),
        Middleware(CrossOriginGuard),
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key.get_secret_value(),
            session_cookie="podium_session",
            same_site="lax",
            https_only=bool(settings.secure_cookies),
            max_age=14 * 24 * 3600,
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={PodiumError: handle_podium_error, 404: handle_404, 500: handle_500},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.templates = make_templates(extra_dirs=[FORUM_TEMPLATES])
    app.state.ratelimiter = RateLimiter(limiter_client, settings.login_rate_per_minute)
    app.state.health_redis = health_client
    app.state.csp = csp
    return app
