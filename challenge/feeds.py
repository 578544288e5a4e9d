"""Atom feeds of announcements (per challenge and site-wide) and an iCalendar of phase dates.

Atom (RFC 4287) is built with ElementTree, so it is well-formed whatever the titles contain.
iCalendar (RFC 5545): CRLF line ends, lines folded at 75 octets without splitting a UTF-8
character, text values escaped, every time in UTC (``...Z``).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from challenge.models import Announcement, Challenge, Phase

ATOM_NS = "http://www.w3.org/2005/Atom"
ET.register_namespace("", ATOM_NS)
SHORT_PHASE = dt.timedelta(days=2)  # shorter phases become one calendar event, longer two


@dataclass
class FeedItem:
    announcement: Announcement
    challenge: Challenge
    author: str


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def atom_feed(
    *, title: str, feed_url: str, page_url: str, items: Iterable[FeedItem], base_url: str,
    updated: dt.datetime,
) -> bytes:
    """An Atom document with one entry per announcement, newest first."""
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _sub(feed, "id", feed_url)
    _sub(feed, "title", title)
    _sub(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    _sub(feed, "link", rel="alternate", href=page_url, type="text/html")
    author = _sub(feed, "author")
    _sub(author, "name", "Podium")
    items = list(items)
    newest = max((i.announcement.created_at for i in items), default=updated)
    _sub(feed, "updated", _rfc3339(newest))
    for item in items:
        a, c = item.announcement, item.challenge
        link = f"{base_url}/c/{c.slug}/announcements#a{a.id}"
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"{base_url}/c/{c.slug}/announcements/{a.id}")
        _sub(entry, "title", f"{c.title}: {a.title}")
        _sub(entry, "updated", _rfc3339(a.created_at))
        _sub(entry, "published", _rfc3339(a.created_at))
        who = _sub(entry, "author")
        _sub(who, "name", item.author)
        _sub(entry, "link", rel="alternate", href=link, type="text/html")
        _sub(entry, "content", a.body_md, type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


# ---------------------------------------------------------------- iCalendar


def ical_escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
        .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    )


def fold_line(line: str, limit: int = 75) -> str:
    """Fold a content line into CRLF + space continuations of at most ``limit`` octets each."""
    out: list[str] = []
    current, size = "", 0
    for ch in line:
        width = len(ch.encode("utf-8"))
        budget = limit if not out else limit - 1  # continuation lines start with a space
        if size + width > budget:
            out.append(current)
            current, size = "", 0
        current += ch
        size += width
    out.append(current)
    return "\r\n ".join(out)


def _ical_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def phase_calendar(
    challenge: Challenge, phases: list[Phase], *, base_url: str, host: str, now: dt.datetime
) -> bytes:
    """Phase dates as VEVENTs: short phases (a hackathon day) as one event, long ones as two."""
    url = f"{base_url}/c/{challenge.slug}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Podium//Challenge calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{ical_escape(challenge.title)}",
    ]

    def event(uid: str, summary: str, start: dt.datetime, end: dt.datetime | None) -> None:
        lines.extend([
            "BEGIN:VEVENT",
            f"UID:{uid}@{host}",
            f"DTSTAMP:{_ical_time(now)}",
            f"DTSTART:{_ical_time(start)}",
        ])
        if end is not None:
            lines.append(f"DTEND:{_ical_time(end)}")
        lines.extend([
            f"SUMMARY:{ical_escape(summary)}",
            f"DESCRIPTION:{ical_escape(f'{challenge.title}: {summary}. {url}')}",
            f"URL:{url}",
            "END:VEVENT",
        ])

    for p in phases:
        name = f"{challenge.title} — {p.name}"
        if p.closes_at is not None and p.closes_at - p.opens_at <= SHORT_PHASE:
            event(f"podium-{challenge.slug}-{p.id}", name, p.opens_at, p.closes_at)
            continue
        event(f"podium-{challenge.slug}-{p.id}-opens", f"{name} opens", p.opens_at, None)
        if p.closes_at is not None:
            event(f"podium-{challenge.slug}-{p.id}-closes", f"{name} closes", p.closes_at, None)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(fold_line(line) for line in lines) + "\r\n").encode("utf-8")
