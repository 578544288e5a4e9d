"""Passwords, API tokens, CSRF tokens and the security headers of every response."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_hasher = PasswordHasher()
TOKEN_PREFIX = "pod_"  # noqa: S105 - a public prefix, not a secret


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> str:
    """A token shown once to its owner; only its SHA-256 is stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# ---------------------------------------------------------------- response headers

# What the pages need (docs/operations.md, "Security headers"): scripts only from the site's own
# files (no inline script); inline styles for KaTeX and a few templates' <style> blocks; the
# vendored KaTeX fonts; the empty data: icon of base.html (and the https hosts forum posts may
# show images from, PODIUM_FORUM_IMAGE_HOSTS).
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:{images}; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICY = _POLICY.format(images="")
_HOST = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?$")


def content_security_policy(image_hosts: Iterable[str] = ()) -> str:
    """The site's policy; ``image_hosts`` are https hosts whose images pages may show."""
    hosts = sorted({h.strip().lower() for h in image_hosts if h.strip()})
    bad = [h for h in hosts if not _HOST.match(h)]
    if bad:
        raise ValueError(f"not a host name: {bad[0]!r} (PODIUM_FORUM_IMAGE_HOSTS)")
    return _POLICY.format(images="".join(f" https://{h}" for h in hosts))


_ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
_CSP = b"content-security-policy"
_XFO = b"x-frame-options"


def security_headers(
    headers: list[tuple[bytes, bytes]], policy: str = CONTENT_SECURITY_POLICY
) -> list[tuple[bytes, bytes]]:
    """The response headers ``headers`` with the site's security headers added.

    A response that sets its own Content-Security-Policy keeps it; without a ``frame-ancestors``
    directive it gets ``frame-ancestors 'none'``. A policy that allows framing (the embeddable
    leaderboard's ``frame-ancestors *``) gets no ``X-Frame-Options``; every other response gets
    ``X-Frame-Options: DENY`` too, for browsers that ignore ``frame-ancestors``.
    """
    names = {name.lower() for name, _ in headers}
    out = list(headers)
    for name, value in _ALWAYS:
        if name not in names:
            out.append((name, value))
    framable = False
    if _CSP in names:
        for i, (name, value) in enumerate(out):
            if name.lower() == _CSP:
                own = value.decode("latin-1")
                if "frame-ancestors" not in own:
                    out[i] = (name, (own.rstrip("; ") + "; frame-ancestors 'none'").encode())
                else:
                    framable = "frame-ancestors 'none'" not in own
    else:
        out.append((_CSP, policy.encode()))
    if not framable and _XFO not in names:
        out.append((_XFO, b"DENY"))
    return out


class SecurityHeaders:
    """ASGI middleware: :func:`security_headers` on every HTTP response."""

    def __init__(self, app: ASGIApp, policy: str = CONTENT_SECURITY_POLICY) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": security_headers(list(message.get("headers", [])), self.policy),
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
