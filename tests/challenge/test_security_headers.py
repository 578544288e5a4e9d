"""Every response carries the security headers (nosniff, Referrer-Policy, a Content-Security-Policy,
no framing), except that the read-only leaderboard embed stays framable (found by the QA pass:
no response had any of them)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from challenge.security import (
    CONTENT_SECURITY_POLICY,
    content_security_policy,
    security_headers,
)


def _directives(policy: str) -> dict[str, str]:
    parts = (p.strip().split(None, 1) for p in policy.split(";") if p.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in parts}


def test_the_site_policy_allows_only_the_sites_own_scripts() -> None:
    policy = _directives(CONTENT_SECURITY_POLICY)
    assert policy["script-src"] == "'self'"  # no inline script, no eval
    assert policy["style-src"] == "'self' 'unsafe-inline'"  # KaTeX's inline styles
    assert policy["font-src"] == "'self'"  # the vendored KaTeX fonts
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"


def test_forum_image_hosts_may_show_images(settings_factory: Any, sqlite_url: str) -> None:
    from challenge.app import create_app

    app = create_app(settings_factory(sqlite_url, forum_image_hosts="i.example.org, x.example"))
    with TestClient(app) as c:
        policy = _directives(c.get("/login").headers["content-security-policy"])
    assert policy["img-src"] == "'self' data: https://i.example.org https://x.example"
    with pytest.raises(ValueError, match="not a host name"):
        content_security_policy(["evil.example; script-src *"])


def test_a_route_policy_is_kept_and_gets_frame_ancestors() -> None:
    svg = dict(security_headers([(b"content-security-policy", b"default-src 'none'")]))
    assert svg[b"content-security-policy"] == b"default-src 'none'; frame-ancestors 'none'"
    assert svg[b"x-frame-options"] == b"DENY"
    embed = dict(security_headers([(b"content-security-policy", b"frame-ancestors *")]))
    assert embed[b"content-security-policy"] == b"frame-ancestors *"
    assert b"x-frame-options" not in embed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_response_has_the_security_headers(
    client: Any, app: Any, make_challenge: Any
) -> None:
    challenge = make_challenge()
    slug = challenge.slug

    def boom(request: Any) -> Response:
        raise RuntimeError("boom")

    app.router.routes.append(Route("/test-boom", boom))
    paths = [
        "/", f"/c/{slug}", f"/c/{slug}/leaderboard", f"/c/{slug}/plots/best.svg",
        f"/c/{slug}/room", "/static/podium.js", "/forum/static/katex/katex.min.css",
        "/forum/", "/api/challenges", "/login", "/no-such-page", "/health",
    ]  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as c:
        responses = {p: c.get(p) for p in [*paths, "/test-boom"]}
    assert responses["/test-boom"].status_code == 500
    assert responses["/no-such-page"].status_code == 404
    for path, r in responses.items():
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert r.headers.get("referrer-policy") == "same-origin", path
        assert r.headers.get("x-frame-options") == "DENY", path
        policy = _directives(r.headers.get("content-security-policy", ""))
        assert policy.get("frame-ancestors") == "'none'", path
    for path in ("/", f"/c/{slug}", f"/c/{slug}/leaderboard", "/forum/", "/test-boom"):
        assert responses[path].headers["content-security-policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_leaderboard_embed_stays_framable(client: Any, make_challenge: Any) -> None:
    challenge = make_challenge()
    r = client.get(f"/c/{challenge.slug}/leaderboard/embed")
    assert r.status_code == 200
    assert "x-frame-options" not in r.headers
    policy = _directives(r.headers["content-security-policy"])
    assert policy["frame-ancestors"] == "*"
    assert policy["default-src"] == "'none'"  # no script at all in an embed
    assert r.headers["x-content-type-options"] == "nosniff"


def test_no_template_relies_on_what_the_csp_blocks() -> None:
    """``script-src 'self'`` blocks javascript: URLs, inline handlers and inline scripts: a link
    or button built on them silently does nothing (the error pages' "Go back" did)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    blocked = re.compile(r"javascript:|\son[a-z]+\s*=|<script(?![^>]*\bsrc=)", re.IGNORECASE)
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("challenge/templates", "forum/templates")
        for path in sorted((root / folder).rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if blocked.search(line)
    ]
    assert offenders == []
