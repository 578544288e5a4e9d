"""Lifecycle: the scheduler's transitions, data publication, announcements and feeds, the phase
calendar, registration policies and on-site check-in, and the roles x pages access matrix."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlmodel import Session, select

from challenge.db import session_scope
from challenge.feeds import fold_line
from challenge.models import Announcement, Challenge, Participation, Phase, PhaseTransition
from challenge.schedule import advance_schedule
from tests.challenge.conftest import csrf_of, login
from tests.challenge.test_teams import joined, score, upload

ATOM = "{http://www.w3.org/2005/Atom}"


def test_scheduler_catches_up_once_and_reveals_at_close(make_challenge, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(opens_days=1, closes_days=2)
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as s:
        assert advance_schedule(s, now=now) == []
    # Down for three days: every missed transition is made, in order, exactly once.
    with session_scope(engine) as s:
        made = advance_schedule(s, now=now + dt.timedelta(days=3))
        assert [t.kind for t in made] == ["opened", "data_published", "closed", "private_revealed"]
    with session_scope(engine) as s:
        assert advance_schedule(s, now=now + dt.timedelta(days=4)) == []
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        assert ch.revealed_at is not None
        titles = [a.title for a in s.exec(select(Announcement))]
        assert "The private leaderboard is revealed" in titles
        assert not any("is open" in t for t in titles)  # stale once the phase had closed
        assert len(s.exec(select(PhaseTransition)).all()) == 4


def test_manual_reveal_is_not_automatic(make_challenge, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(opens_days=-2, closes_days=-1)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {"reveal": "manual"}
        s.add(ch)
    with session_scope(engine) as s:
        kinds = [t.kind for t in advance_schedule(s)]
        assert "private_revealed" not in kinds
        assert "closed" in kinds
        assert s.get(Challenge, challenge.id).revealed_at is None  # type: ignore[union-attr]


def test_data_waits_for_the_opening_and_upcoming_is_listed(
    client, make_challenge, make_user, engine
):  # type: ignore[no-untyped-def]
    challenge = make_challenge(opens_days=3, closes_days=10)
    alice = make_user("alice")
    joined(engine, challenge, alice)
    home = client.get("/").text
    assert "Upcoming" in home
    assert 'class="countdown"' in home
    login(client, "alice")
    r = client.get(f"/c/{challenge.slug}/data/train.parquet")
    assert r.status_code == 403
    assert "published when the challenge opens" in r.text
    assert "published when the challenge opens" in client.get(f"/c/{challenge.slug}").text
    with session_scope(engine) as s:
        phase = s.exec(select(Phase)).one()
        phase.opens_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        s.add(phase)
    assert client.get(f"/c/{challenge.slug}/data/train.parquet").status_code == 200


def test_announcement_reaches_page_feeds_and_forum(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    login(client, "org")
    token = csrf_of(client, f"/organize/{challenge.slug}/lifecycle")
    r = client.post(
        f"/organize/{challenge.slug}/announce",
        data={"csrf_token": token, "title": "Metric fix & <rescore>", "body": "We rescored."},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as s:
        a = s.exec(select(Announcement)).one()
        assert a.forum_thread_id is not None
    assert "Metric fix &amp; &lt;rescore&gt;" in client.get(f"/c/{challenge.slug}").text
    for path in (f"/c/{challenge.slug}/feed.atom", "/feed.atom"):
        feed = client.get(path)
        assert feed.headers["content-type"].startswith("application/atom+xml")
        root = ET.fromstring(feed.content)  # noqa: S314 - our own output
        assert root.tag == f"{ATOM}feed"
        for tag in ("id", "title", "updated"):
            assert root.find(f"{ATOM}{tag}") is not None
        entry = root.find(f"{ATOM}entry")
        assert entry is not None
        assert entry.findtext(f"{ATOM}title") == "Test HiggsML: Metric fix & <rescore>"
        assert entry.findtext(f"{ATOM}updated", "").endswith("Z")
    assert client.get("/forum/c/" + challenge.slug).status_code == 200


def test_ical_lines_are_crlf_folded_and_utc(client, make_challenge, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge()
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.title = "Ünïcödé " * 12 + "; with, commas"
        s.add(ch)
    r = client.get(f"/c/{challenge.slug}/calendar.ics")
    assert r.headers["content-type"].startswith("text/calendar")
    raw = r.content
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)  # folded
    unfolded = raw.replace(b"\r\n ", b"").decode("utf-8")
    starts = [line for line in unfolded.split("\r\n") if line.startswith("DTSTART")]
    assert starts
    assert all(
        line.endswith("Z") and len(line) == len("DTSTART:20270401T000000Z") for line in starts
    )
    assert "\\; with\\, commas" in unfolded
    assert unfolded.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0")


def test_fold_never_splits_a_character() -> None:
    line = "SUMMARY:" + "é" * 100
    folded = fold_line(line)
    parts = folded.encode().split(b"\r\n")
    assert all(len(p) <= 75 for p in parts)
    assert folded.replace("\r\n ", "") == line


def test_approval_domains_and_onsite_code(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    make_user("alice")  # alice@example.org
    login(client, "org")
    token = csrf_of(client, f"/organize/{challenge.slug}/lifecycle")
    r = client.post(
        f"/organize/{challenge.slug}/registration",
        data={"csrf_token": token, "approval": "yes", "email_domains": "cern.ch"},
    )
    assert r.status_code == 200
    r = client.post(
        f"/organize/{challenge.slug}/code",
        data={"csrf_token": token, "phase": "competition", "code": "HIGGS-2027"},
    )
    assert r.status_code == 200
    client.cookies.clear()
    login(client, "alice")
    token = csrf_of(client, f"/c/{challenge.slug}")
    r = client.post(f"/c/{challenge.slug}/join", data={"csrf_token": token, "accept": "yes"})
    assert r.status_code == 403
    assert "cern.ch" in r.text
    r = client.post(
        f"/c/{challenge.slug}/checkin", data={"csrf_token": token, "accept": "yes", "code": "wrong"}
    )
    assert r.status_code == 400
    assert "code" in r.text
    r = client.post(
        f"/c/{challenge.slug}/checkin",
        data={"csrf_token": token, "accept": "yes", "code": "HIGGS-2027"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as s:
        assert s.exec(select(Participation)).one().status == "approved"


def test_pending_registration_cannot_download_or_submit(make_challenge, make_user, engine, client):  # type: ignore[no-untyped-def]
    from challenge.errors import PermissionDenied

    challenge = make_challenge()
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.requires_approval = True
        s.add(ch)
    alice = make_user("alice")
    joined(engine, challenge, alice)
    with pytest.raises(PermissionDenied, match="approval"):
        upload(engine, challenge, alice)
    login(client, "alice")
    assert client.get(f"/c/{challenge.slug}/data/train.parquet").status_code == 403


def _matrix_setup(
    make_challenge: Any, make_user: Any, engine: Any
) -> tuple[Challenge, dict[str, int]]:
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    make_user("admin1", role="admin")
    make_user("otherorg", role="organizer")
    a, b = make_user("ann"), make_user("ben")
    make_user("stranger")
    joined(engine, challenge, a, b)
    sa_ = upload(engine, challenge, a)
    score(engine, sa_, 1.0)
    sb = upload(engine, challenge, b)
    score(engine, sb, 2.0)
    return challenge, {"ann": sa_, "ben": sb}


ROLES = ["anonymous", "stranger", "ann", "otherorg", "org", "admin1"]


def test_roles_by_pages_matrix(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    """Who sees what while the phase is open: the private board and other teams' files never leak."""
    challenge, subs = _matrix_setup(make_challenge, make_user, engine)
    slug = challenge.slug
    ok, hidden = 200, 404
    expect: dict[str, dict[str, Any]] = {
        f"/c/{slug}/leaderboard": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/leaderboard.csv": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/leaderboard/embed": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/room": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/feed.atom": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/calendar.ics": dict.fromkeys(ROLES, ok),
        f"/c/{slug}/leaderboard?board=private": {
            **dict.fromkeys(ROLES, hidden),
            "org": ok,
            "admin1": ok,
        },
        f"/c/{slug}/leaderboard.csv?board=private": {
            **dict.fromkeys(ROLES, hidden),
            "org": ok,
            "admin1": ok,
        },
        f"/c/{slug}/plots/shakeup.svg": {**dict.fromkeys(ROLES, hidden), "org": ok, "admin1": ok},
        f"/c/{slug}/team": {
            "anonymous": 303,
            "stranger": hidden,
            "ann": ok,
            "otherorg": hidden,
            "org": hidden,
            "admin1": hidden,
        },
        f"/organize/{slug}/lifecycle": {
            "anonymous": 303,
            "stranger": hidden,
            "ann": hidden,
            "otherorg": hidden,
            "org": ok,
            "admin1": ok,
        },
        f"/api/submissions/{subs['ben']}": {
            "anonymous": 401,
            "stranger": hidden,
            "ann": hidden,
            "otherorg": hidden,
            "org": ok,
            "admin1": ok,
        },
    }
    for role in ROLES:
        client.cookies.clear()
        if role != "anonymous":
            login(client, role)
        for path, by_role in expect.items():
            r = client.get(path, follow_redirects=False)
            assert r.status_code == by_role[role], (role, path, r.status_code)
        # ann's own history plot shows only her team's points.
        if role == "ann":
            svg = client.get(f"/c/{slug}/plots/history.svg").text
            assert svg.count("<circle") == 1
            assert "ann" in svg
    # Other teams' submissions cannot be picked as final either.
    client.cookies.clear()
    login(client, "ann")
    token = csrf_of(client, f"/c/{slug}")
    r = client.post(
        f"/c/{slug}/submissions/{subs['ben']}/final", data={"csrf_token": token, "final": "yes"}
    )
    assert r.status_code == 404
    r = client.post(
        f"/organize/{slug}/disqualify", data={"csrf_token": token, "team_id": "1", "reason": "x"}
    )
    assert r.status_code == 404


def test_roles_after_close_see_private_board(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge, _ = _matrix_setup(make_challenge, make_user, engine)
    with session_scope(engine) as s:
        phase = s.exec(select(Phase)).one()
        phase.closes_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        s.add(phase)
    for role in ("anonymous", "ann"):
        client.cookies.clear()
        if role != "anonymous":
            login(client, role)
        r = client.get(f"/c/{challenge.slug}/leaderboard?board=private")
        assert r.status_code == 200
        assert "ben" in r.text
        assert client.get(f"/c/{challenge.slug}/plots/shakeup.svg").status_code == 200


def test_extend_phase_announces_new_close(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    login(client, "org")
    token = csrf_of(client, f"/organize/{challenge.slug}/lifecycle")
    new = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).strftime("%Y-%m-%dT%H:%MZ")
    r = client.post(
        f"/organize/{challenge.slug}/extend",
        data={"csrf_token": token, "phase": "competition", "closes": new},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as s:
        assert s.exec(select(Phase)).one().closes_at.strftime("%Y-%m-%dT%H:%MZ") == new  # type: ignore[union-attr]
        assert "extended" in s.exec(select(Announcement)).one().title
    r = client.post(
        f"/organize/{challenge.slug}/extend",
        data={"csrf_token": token, "phase": "competition", "closes": "yesterday"},
    )
    assert r.status_code == 400
    assert "2027-07-07T23:59Z" in r.text


def test_scheduler_actor_runs_on_the_stub_broker(app, make_challenge, engine, stub_worker):  # type: ignore[no-untyped-def]
    import dramatiq

    from challenge.schedule import advance_schedule_job

    make_challenge(opens_days=-1, closes_days=5)
    advance_schedule_job.send()
    dramatiq.get_broker().join("maintenance", fail_fast=True)
    stub_worker.drain()
    with Session(engine) as s:
        assert {t.kind for t in s.exec(select(PhaseTransition))} == {"opened", "data_published"}
