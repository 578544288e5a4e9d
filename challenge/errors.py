"""Errors that carry an HTTP status; one handler in app.py renders them as HTML or JSON."""

from __future__ import annotations


class PodiumError(Exception):
    """A problem the user can act on. ``message`` is shown as is, so it must say what to change."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(PodiumError):
    pass


class NotAuthenticated(PodiumError):
    status_code = 401
    code = "not_authenticated"


class NotFound(PodiumError):
    """Also used for 'forbidden': a user cannot tell a hidden object from a missing one."""

    status_code = 404
    code = "not_found"


class PermissionDenied(PodiumError):
    """For actions on objects the user can already see (e.g. a closed phase)."""

    status_code = 403
    code = "forbidden"


class Conflict(PodiumError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(PodiumError):
    status_code = 413
    code = "too_large"


class QuotaExceeded(PodiumError):
    status_code = 429
    code = "quota_exceeded"


class RateLimited(PodiumError):
    """Too many attempts; ``retry_after`` (seconds) goes out as the Retry-After header."""

    status_code = 429
    code = "rate_limited"

    def __init__(
        self, message: str, *, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after
