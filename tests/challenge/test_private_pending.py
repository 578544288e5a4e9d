"""The private board before the reveal: a placeholder that says when, and leaks nothing."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from starlette.testclient import TestClient

from challenge.models import utcnow
from tests.challenge.conftest import login
from tests.challenge.test_reveal import set_times
from tests.challenge.test_teams import joined, score, upload

PRIVATE = 7171.7171  # a private score no public number on the page contains


def test_placeholder_says_when_and_shows_no_row(
    client: TestClient, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    challenge = make_challenge(per_day=10, total=50)
    zed = make_user("zed-the-participant")
    joined(engine, challenge, zed)
    sid = upload(engine, challenge, zed)
    score(engine, sid, 0.5, private=PRIVATE)
    closes = utcnow() + dt.timedelta(days=3)
    set_times(engine, challenge, competition=closes)
    url = f"/c/{challenge.slug}/leaderboard?board=private"
    for who in ("anonymous", "zed-the-participant"):
        if who != "anonymous":
            login(client, who)
        r = client.get(url)
        assert r.status_code == 404  # still no board: crawlers and scripts see the same answer
        page = html.unescape(r.text)
        assert 'data-testid="private-pending"' in page
        assert "<title>Private leaderboard, phase competition (not revealed yet)" in page
        assert f"at {closes:%Y-%m-%d %H:%M} UTC" in page
        assert "Still open: phase competition" in page
        assert "7171" not in page
        assert "zed-the-participant</td>" not in page
        assert "<table" not in page
        assert "We could not do that" not in page

    # After the last close (reveal at_close), the same address shows the board itself.
    set_times(engine, challenge, competition=utcnow() - dt.timedelta(minutes=1))
    r = client.get(url)
    assert r.status_code == 200
    assert "7171.7" in r.text
    assert 'data-testid="private-pending"' not in r.text


def test_manual_reveal_placeholder_names_the_organizers(
    client: TestClient, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    from challenge.db import session_scope
    from challenge.models import Challenge

    challenge = make_challenge()
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {**ch.leaderboard, "reveal": "manual"}
        s.add(ch)
    set_times(engine, challenge, competition=utcnow() - dt.timedelta(hours=1))
    r = client.get(f"/c/{challenge.slug}/leaderboard?board=private")
    assert r.status_code == 404
    assert "revealed by the organizers once every phase" in r.text
    assert "Still open" not in r.text  # every phase has closed: only the reveal is missing
