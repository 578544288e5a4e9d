"""Leaderboards: team best, ties, late and baselines, private board from final picks, ladder,
pagination, CSV escaping, the embed, plots, and who may see what."""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlmodel import Session, select

from challenge.db import session_scope
from challenge.leaderboard import (
    private_leaderboard,
    public_board_page,
    public_leaderboard,
    rebuild_boards,
)
from challenge.models import BoardEntry, Challenge, Phase, Submission, User
from challenge.schedule import mark_baseline
from challenge.teams import disqualify_team, set_final_selection, team_of
from tests.challenge.conftest import login
from tests.challenge.test_teams import joined, score, upload

T0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def board(engine: Any, challenge: Challenge, private: bool = False) -> list[Any]:
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        fn = private_leaderboard if private else public_leaderboard
        return fn(s, ch, phase, True)  # type: ignore[arg-type]


def test_best_per_team_ties_to_earlier_late_and_disqualified_excluded(
    make_challenge, make_user, engine
):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=10, total=50)
    a, b, c = (make_user(n) for n in ("ann", "ben", "cid"))
    joined(engine, challenge, a, b, c)
    score(engine, upload(engine, challenge, a, now=at(1)), 1.0, half=0.01)
    score(engine, upload(engine, challenge, a, now=at(2)), 3.0, half=0.01)
    score(engine, upload(engine, challenge, a, now=at(3)), 2.0, half=0.01)
    score(engine, upload(engine, challenge, b, now=at(4)), 3.0, half=0.5)  # same score, later
    score(engine, upload(engine, challenge, c, now=at(5)), 2.9, half=0.01)
    entries = board(engine, challenge)
    assert [(e.rank, e.team_name, e.score, e.entries) for e in entries] == [
        (1, "ann", 3.0, 3),
        (2, "ben", 3.0, 1),
        (3, "cid", 2.9, 1),
    ]
    assert [e.tied_with_above for e in entries] == [False, True, True]
    # A late submission is scored but never ranked.
    with session_scope(engine) as s:
        sid = upload(engine, challenge, c, now=at(6))
    with session_scope(engine) as s:
        row = s.get(Submission, sid)
        assert row is not None
        row.is_late = True
        s.add(row)
    score(engine, sid, 99.0)
    assert board(engine, challenge)[0].team_name == "ann"
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        disqualify_team(
            s,
            challenge=ch,
            team=team_of(s, ch, s.get(User, a.id)),
            actor=s.get(User, a.id),
            reason="x",
        )  # type: ignore[arg-type]
    assert [e.team_name for e in board(engine, challenge)] == ["ben", "cid"]
    # Rebuilding from scratch gives the same materialized rows.
    with Session(engine) as s:
        before = sorted((r.team_id, r.submission_id, r.score) for r in s.exec(select(BoardEntry)))
    with session_scope(engine) as s:
        rebuild_boards(s, s.get(Challenge, challenge.id))  # type: ignore[arg-type]
    with Session(engine) as s:
        assert (
            sorted((r.team_id, r.submission_id, r.score) for r in s.exec(select(BoardEntry)))
            == before
        )


def test_private_board_uses_final_picks_or_best_public(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=10, total=50, final_selections=1)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    a1 = upload(engine, challenge, a, now=at(1))
    a2 = upload(engine, challenge, a, now=at(2))
    score(engine, a1, 1.0, private=5.0)
    score(engine, a2, 2.0, private=0.5)
    score(engine, upload(engine, challenge, b, now=at(3)), 1.5, private=1.0)
    # No picks: ann is judged on her best public one (a2, private 0.5).
    priv = board(engine, challenge, private=True)
    assert [(e.team_name, e.score, e.public_rank, e.shake) for e in priv] == [
        ("ben", 1.0, 2, 1),
        ("ann", 0.5, 1, -1),
    ]
    with session_scope(engine) as s:
        set_final_selection(s, submission_id=a1, user=s.get(User, a.id), final=True)  # type: ignore[arg-type]
    priv = board(engine, challenge, private=True)
    assert [(e.team_name, e.score) for e in priv] == [("ann", 5.0), ("ben", 1.0)]


def test_ladder_shows_only_clear_improvements(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=10, total=50)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {"reveal": "at_close", "ladder": True, "ladder_margin": 0.1}
        s.add(ch)
    a = make_user("ann")
    joined(engine, challenge, a)
    for i, value in enumerate((1.0, 1.05, 1.09, 1.2, 1.25)):
        score(engine, upload(engine, challenge, a, now=at(i)), value)
    assert board(engine, challenge)[0].score == 1.2  # 1.05, 1.09 and 1.25 are within the margin


def test_baselines_shown_not_ranked_and_pagination(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org, per_day=10, total=50)
    users = [make_user(f"p{i}") for i in range(5)]
    joined(engine, challenge, org, *users)
    for i, u in enumerate(users):
        score(engine, upload(engine, challenge, u, now=at(i)), float(i), half=0.1)
    base = upload(engine, challenge, org, now=at(10))
    score(engine, base, 2.5)
    with session_scope(engine) as s:
        mark_baseline(
            s,
            challenge=s.get(Challenge, challenge.id),
            submission_id=base,
            label="BDT",
            actor=s.get(User, org.id),
        )  # type: ignore[arg-type]
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        phase = s.exec(select(Phase)).one()
        page2 = public_board_page(s, ch, phase, page=2, per_page=2)  # type: ignore[arg-type]
        assert (page2.total, page2.pages) == (5, 3)
        assert [(e.rank, e.team_name) for e in page2.entries] == [(3, "p2"), (4, "p1")]
        assert page2.entries[0].tied_with_above is False  # 3.0±0.1 vs 2.0±0.1 across the page break
        assert [(b.team_name, place) for b, place in page2.baselines] == [("BDT", 3)]
        assert "org" not in [e.team_name for e in public_leaderboard(s, ch, phase, True)]  # type: ignore[arg-type]


def test_csv_embed_plots_and_private_visibility(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    evil, ben = make_user("evil"), make_user("ben")
    joined(engine, challenge, evil, ben)
    with session_scope(engine) as s:
        t = team_of(s, s.get(Challenge, challenge.id), s.get(User, evil.id))  # type: ignore[arg-type]
        assert t is not None
        t.name = '=HYPERLINK("http://x")'
        s.add(t)
    score(engine, upload(engine, challenge, evil, now=at(1)), 2.0, private=1.0)
    score(engine, upload(engine, challenge, ben, now=at(2)), 1.0, private=2.0)
    r = client.get(f"/c/{challenge.slug}/leaderboard.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["rank", "team", "score"]
    assert rows[1][1] == '\'=HYPERLINK("http://x")'
    assert rows[2][1] == "ben"
    client.cookies.clear()
    embed = client.get(f"/c/{challenge.slug}/leaderboard/embed")
    assert embed.status_code == 200
    assert "frame-ancestors *" in embed.headers["content-security-policy"]
    assert "set-cookie" not in embed.headers
    assert "x-frame-options" not in embed.headers
    assert "ben" in embed.text
    assert "&#34;http://x&#34;" in embed.text
    svg = client.get(f"/c/{challenge.slug}/plots/best.svg")
    assert ET.fromstring(svg.content).tag == "{http://www.w3.org/2000/svg}svg"  # noqa: S314 - our own output
    # Private board and shake-up: hidden from everyone but the organizer until the close.
    for path in (
        "/leaderboard?board=private",
        "/leaderboard.csv?board=private",
        "/plots/shakeup.svg",
    ):
        assert client.get(f"/c/{challenge.slug}{path}").status_code == 404
    login(client, "ben")
    assert client.get(f"/c/{challenge.slug}/leaderboard?board=private").status_code == 404
    history = client.get(f"/c/{challenge.slug}/plots/history.svg")
    assert history.status_code == 200
    assert b"<circle" in history.content
    client.cookies.clear()
    login(client, "org")
    page = client.get(f"/c/{challenge.slug}/leaderboard?board=private")
    assert page.status_code == 200
    assert "Shake" in page.text
    shake = client.get(f"/c/{challenge.slug}/plots/shakeup.svg")
    assert shake.status_code == 200
    assert shake.content.count(b"<circle") == 2
    ET.fromstring(shake.content)  # noqa: S314 - our own output


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "plain"])
def test_csv_cell_escaping(value: str) -> None:
    from challenge.views.leaderboards import escape_csv_cell

    out = escape_csv_cell(value)
    assert out == (value if value == "plain" else "'" + value)


@pytest.mark.parametrize("ladder", [False, True])
def test_rebuild_equals_the_incremental_board(ladder, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    """rebuild_boards (set-based) gives exactly the rows the per-score refresh kept, Ladder
    replay, ties to the earlier submission, entry counts and intervals included."""
    challenge = make_challenge(per_day=20, total=50)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {"reveal": "at_close", "ladder": ladder, "ladder_margin": 0.05}
        s.add(ch)
    users = [make_user(f"u{i}") for i in range(3)]
    joined(engine, challenge, *users)
    plan = {  # margin 0.05: the Ladder shows 1.1, 1.2 (the earlier) and 0.99
        0: [1.0, 1.02, 1.1, 1.12, 1.12],
        1: [1.2, 1.2],
        2: [0.9, 0.95, 0.99],
    }
    minute = 0
    for step in range(5):  # interleaved in time
        for i, values in plan.items():
            if step < len(values):
                sub = upload(engine, challenge, users[i], now=at(minute))
                score(engine, sub, values[step], half=0.01 * (minute + 1))
                minute += 1

    def rows() -> list[tuple[Any, ...]]:
        with Session(engine) as s:
            return sorted(
                (r.team_id, r.submission_id, r.score, r.sort_key, r.ci_low, r.ci_high, r.entries,
                 r.submitted_at)
                for r in s.exec(select(BoardEntry))
            )  # fmt: skip

    incremental = rows()
    expected = [1.1, 1.2, 0.99] if ladder else [1.12, 1.2, 0.99]
    assert [r[2] for r in sorted(incremental, key=lambda r: r[0])] == expected
    with session_scope(engine) as s:
        assert rebuild_boards(s, s.get(Challenge, challenge.id)) == 3  # type: ignore[arg-type]
    assert rows() == incremental


def test_phase_links_are_separated(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    """The links under the title read "public · private · CSV" (a template tag ate a space)."""
    import re

    challenge = make_challenge(owner=make_user("org", role="organizer"))

    def links(path: str) -> str:
        html = client.get(f"/c/{challenge.slug}{path}").text
        para = html.split("<p class=\"phase-tabs\">Phase:", 1)[1].split("</p>", 1)[0]
        return " ".join(re.sub(r"<[^>]+>", "", para).split())

    assert links("/leaderboard") == (
        "competition · public · private: hidden until every phase has closed · CSV · room view · embed"
    )
    login(client, "org")  # the organizer previews the private board
    assert links("/leaderboard") == "competition · public · private · CSV · room view · embed"
    assert links("/leaderboard?board=private") == "competition · public · private · CSV · room view"
