"""Small helpers for the words users read (pages, notices, the CLI); no web imports here."""

from __future__ import annotations


def counted(n: int, singular: str, plural: str = "") -> str:
    """``3 submissions``, ``1 entry``: a count with its noun in the right number."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
