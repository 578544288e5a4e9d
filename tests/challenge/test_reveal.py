"""Private scores and the reveal (docs/security/reveal.md).

A challenge's phases that take submissions all rank on the same private test rows (one split), so
no private score may show, on any surface, while one of them is open: not when a hackathon inside
the competition has closed, not even when ``revealed_at`` is set. The reveal is refused before the
last close, asks for a typed confirmation after it, and before a scheduled date is an admin's act
with a recorded reason.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from challenge.bundle import parse_bundle
from challenge.challenges import (
    phases_of,
    private_scores_visible,
    reveal_private_leaderboard,
)
from challenge.db import session_scope
from challenge.errors import BadRequest, PermissionDenied
from challenge.models import AuditEvent, Challenge, Phase, PhaseTransition, User, utcnow
from challenge.schedule import advance_schedule
from tests.challenge.conftest import PASSWORD, csrf_of, login
from tests.challenge.test_teams import joined, score, upload

# Private scores no public number on these pages can contain (4 digits, intervals included).
HACK_PRIVATE = {"ann": 4242.4242, "ben": 5353.5353}
COMP_PRIVATE = 6464.6464  # ann's competition submission
MARKS = ("4242", "5353", "6464")


def text(response: Any) -> str:
    """The page's text with HTML entities decoded (autoescape writes ' as &#39;)."""
    return html.unescape(response.text)


def token(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD, "name": "t"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def set_times(engine: Any, challenge: Challenge, **closes: dt.datetime | None) -> None:
    """Move phases' close times (phase name -> new close)."""
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        for phase in phases_of(s, ch):
            if phase.name in closes:
                phase.closes_at = closes[phase.name]
                s.add(phase)


def set_reveal(engine: Any, challenge: Challenge, mode: str) -> None:
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.leaderboard = {**ch.leaderboard, "reveal": mode}
        s.add(ch)


@pytest.fixture
def two_phases(make_challenge: Any, make_user: Any, engine: Any) -> dict[str, Any]:
    """The demo's shape: a month-long competition and a hackathon inside it that has closed.

    ann and ben submitted in the hackathon (distinctive private scores); ann also in the
    competition, which is still open.
    """
    org = make_user("orga", role="organizer")
    make_user("root", role="admin")
    challenge = make_challenge(owner=org, opens_days=-2, closes_days=10, per_day=10, total=50)
    now = utcnow()
    with session_scope(engine) as s:
        s.add(
            Phase(
                challenge_id=challenge.id,
                name="hackathon",
                position=1,
                opens_at=now - dt.timedelta(hours=30),
                closes_at=now - dt.timedelta(hours=2),
            )
        )
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    during = now - dt.timedelta(hours=20)
    subs = {}
    for i, (user, private) in enumerate(((ann, HACK_PRIVATE["ann"]), (ben, HACK_PRIVATE["ben"]))):
        sid = upload(engine, challenge, user, now=during + dt.timedelta(minutes=i))
        score(engine, sid, 0.25 + i / 10, private=private)
        subs[user.username] = sid
    subs["ann-competition"] = upload(engine, challenge, ann)
    score(engine, subs["ann-competition"], 0.2, private=COMP_PRIVATE)
    with Session(engine) as s:
        phases = {p.name: p for p in phases_of(s, s.get(Challenge, challenge.id))}  # type: ignore[arg-type]
        from challenge.models import Submission

        phase_of = {k: s.get(Submission, v).phase_id for k, v in subs.items()}  # type: ignore[union-attr]
    assert phase_of["ann"] == phases["hackathon"].id  # made during the hackathon
    assert phase_of["ann-competition"] == phases["competition"].id
    return {"challenge": challenge, "phases": phases, "subs": subs, "org": org}


def surfaces(app: Any, ctx: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Every place a private score could show, as an anonymous visitor and as ann (a
    participant of both phases): (status, body)."""
    challenge = ctx["challenge"]
    slug, cid = challenge.slug, challenge.id
    hack, comp = ctx["phases"]["hackathon"], ctx["phases"]["competition"]
    out: dict[str, tuple[int, str]] = {}
    with TestClient(app) as anon, TestClient(app) as ann:
        login(ann, "ann")
        tok = token(ann, "ann")

        def get(name: str, client: TestClient, url: str, **kw: Any) -> None:
            r = client.get(url, **kw)
            out[name] = (r.status_code, r.text)

        for who, c in (("anon", anon), ("ann", ann)):
            for ph in ("hackathon", "competition"):
                q = f"phase={ph}"
                get(f"{who} html private {ph}", c, f"/c/{slug}/leaderboard?{q}&board=private")
                get(f"{who} html public {ph}", c, f"/c/{slug}/leaderboard?{q}")
                get(f"{who} csv private {ph}", c, f"/c/{slug}/leaderboard.csv?{q}&board=private")
                get(f"{who} csv public {ph}", c, f"/c/{slug}/leaderboard.csv?{q}")
                get(f"{who} shakeup {ph}", c, f"/c/{slug}/plots/shakeup.svg?{q}&board=private")
                get(f"{who} shakeup bare {ph}", c, f"/c/{slug}/plots/shakeup.svg?{q}")
                get(f"{who} best plot {ph}", c, f"/c/{slug}/plots/best.svg?{q}")
                get(f"{who} embed {ph}", c, f"/c/{slug}/leaderboard/embed?{q}")
                get(f"{who} room {ph}", c, f"/c/{slug}/room?{q}")
                get(
                    f"{who} api private {ph}",
                    c,
                    f"/api/challenges/{slug}/leaderboard?{q}&board=private",
                )
                get(f"{who} api public {ph}", c, f"/api/challenges/{slug}/leaderboard?{q}")
            get(f"{who} html default board", c, f"/c/{slug}/leaderboard")
            get(f"{who} evalai splits", c, f"/api/challenges/{cid}/challenge_phase_split")
            for ph in (hack, comp):
                for n in (2 * ph.id - 1, 2 * ph.id):
                    get(
                        f"{who} evalai board {ph.name} {n}",
                        c,
                        f"/api/jobs/challenge_phase_split/{n}/leaderboard/",
                    )
        # A participant's own submissions, everywhere they are listed.
        get("ann history plot", ann, f"/c/{slug}/plots/history.svg?phase=hackathon")
        get("ann overview", ann, f"/c/{slug}")
        get("ann submission rows", ann, f"/c/{slug}/submissions")
        get("ann api submissions", ann, f"/api/challenges/{slug}/submissions", headers=tok)
        for key, sid in ctx["subs"].items():
            if key.startswith("ann"):
                get(f"ann api submission {key}", ann, f"/api/submissions/{sid}", headers=tok)
                get(f"ann evalai submission {key}", ann, f"/api/jobs/submission/{sid}", headers=tok)
        for ph in (hack, comp):
            get(
                f"ann evalai submissions {ph.name}",
                ann,
                f"/api/jobs/challenge/{cid}/challenge_phase/{ph.id}/submission/",
                headers=tok,
            )
    return out


PRIVATE_BOARDS = ("html private", "csv private", "shakeup", "api private")


def assert_hidden(found: dict[str, tuple[int, str]]) -> None:
    leaks = {name: m for name, (_, body) in found.items() for m in MARKS if m in body}
    assert not leaks, f"private scores shown: {leaks}"
    for name, (status, body) in found.items():
        if any(kind in name for kind in PRIVATE_BOARDS):
            assert status == 404, (name, status)
        elif name.startswith(("anon evalai board", "ann evalai board")):
            private_split = int(name.rsplit(" ", 1)[1]) % 2 == 0
            assert status == (400 if private_split else 200), (name, status, body[:200])
        else:
            assert status == 200, (name, status, body[:200])
    for who in ("anon", "ann"):
        splits = found[f"{who} evalai splits"][1]
        assert '"visibility":1' in splits.replace(" ", "")
        assert '"visibility":3' in splits.replace(" ", "")
    assert "hidden until every phase has closed" in found["anon html public hackathon"][1]


def assert_shown(found: dict[str, tuple[int, str]]) -> None:
    for who in ("anon", "ann"):
        for ph, marks in (("hackathon", ("4242", "5353")), ("competition", ("6464",))):
            for kind in ("html private", "csv private", "api private"):
                status, body = found[f"{who} {kind} {ph}"]
                assert status == 200, (who, kind, ph)
                assert all(m in body for m in marks), (who, kind, ph)
            status, body = found[f"{who} shakeup {ph}"]
            assert status == 200
            assert "<svg" in body
            assert "ann" in body
        assert '"visibility":1' not in found[f"{who} evalai splits"][1].replace(" ", "")
    for name in ("ann overview", "ann submission rows", "ann api submissions"):
        assert "4242" in found[name][1], name
        assert "6464" in found[name][1], name
    assert "4242" in found["ann api submission ann"][1]
    assert "4242" in found["ann evalai submission ann"][1]
    assert "4242" in found["ann evalai submissions hackathon"][1]
    assert "6464" in found["ann evalai submissions competition"][1]


@pytest.mark.parametrize("mode", ["at_close", "manual"])
def test_no_private_score_anywhere_while_a_phase_on_the_same_rows_is_open(
    app: Any, engine: Any, two_phases: dict[str, Any], mode: str
) -> None:
    """The issue's case: the hackathon has closed, the competition (same private rows) runs on.
    Every surface keeps the private scores hidden; after the last close (and the organizer's
    reveal in manual mode) every one shows them."""
    ctx = two_phases
    challenge = ctx["challenge"]
    set_reveal(engine, challenge, mode)
    assert_hidden(surfaces(app, ctx))

    # The scheduler catching up changes nothing: the hackathon's close reveals nothing.
    with session_scope(engine) as s:
        kinds = {(t.phase_id, t.kind) for t in advance_schedule(s)}
        assert (ctx["phases"]["hackathon"].id, "closed") in kinds
        assert not any(k == "private_revealed" for _, k in kinds)
        assert s.get(Challenge, challenge.id).revealed_at is None  # type: ignore[union-attr]
    assert_hidden(surfaces(app, ctx))

    # The last phase closes.
    set_times(engine, challenge, competition=utcnow() - dt.timedelta(minutes=1))
    if mode == "manual":
        assert_hidden(surfaces(app, ctx))  # closed, not revealed yet
        with session_scope(engine) as s:
            ch = s.get(Challenge, challenge.id)
            org = s.get(User, ctx["org"].id)
            assert ch is not None
            assert org is not None
            reveal_private_leaderboard(s, challenge=ch, actor=org, confirm=ch.slug)
    assert_shown(surfaces(app, ctx))


def test_revealed_at_set_while_a_phase_is_open_shows_nothing(
    app: Any, engine: Any, two_phases: dict[str, Any]
) -> None:
    """By construction: the reveal flag alone does not show a private score; the open phase
    (here one added after a reveal, as the demo adds its hackathon) keeps them hidden."""
    ctx = two_phases
    with session_scope(engine) as s:
        ch = s.get(Challenge, ctx["challenge"].id)
        assert ch is not None
        ch.revealed_at = utcnow()
        assert not private_scores_visible(s, ch)
    assert_hidden(surfaces(app, ctx))


def test_a_phase_without_a_close_date_keeps_private_scores_hidden(
    engine: Any, two_phases: dict[str, Any]
) -> None:
    ctx = two_phases
    set_times(engine, ctx["challenge"], competition=None)
    with session_scope(engine) as s:
        ch = s.get(Challenge, ctx["challenge"].id)
        assert ch is not None
        ch.revealed_at = utcnow()
        assert not private_scores_visible(s, ch)
        planned = advance_schedule(s, now=utcnow() + dt.timedelta(days=400))
        assert "private_revealed" not in {t.kind for t in planned}


def test_the_schedule_reveals_at_the_last_close_only(
    engine: Any, two_phases: dict[str, Any]
) -> None:
    ctx = two_phases
    challenge, comp = ctx["challenge"], ctx["phases"]["competition"]
    with session_scope(engine) as s:
        advance_schedule(s)  # the hackathon's close: no reveal
        assert s.get(Challenge, challenge.id).revealed_at is None  # type: ignore[union-attr]
    assert comp.closes_at is not None
    with session_scope(engine) as s:
        made = advance_schedule(s, now=comp.closes_at + dt.timedelta(seconds=1))
        assert ("private_revealed", comp.id) in {(t.kind, t.phase_id) for t in made}
        assert s.get(Challenge, challenge.id).revealed_at is not None  # type: ignore[union-attr]
        audit = s.exec(select(AuditEvent).where(AuditEvent.challenge_id == challenge.id)).one()
        assert (audit.action, audit.actor_id) == ("reveal", None)


# ---------------------------------------------------------------- the reveal action


def _post_reveal(client: TestClient, slug: str, **fields: str) -> Any:
    data = {"csrf_token": csrf_of(client, f"/organize/{slug}/reveal"), **fields}
    return client.post(f"/organize/{slug}/reveal", data=data, follow_redirects=False)


def _revealed(engine: Any, challenge: Challenge) -> tuple[dt.datetime | None, list[AuditEvent]]:
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        events = list(
            s.exec(
                select(AuditEvent)
                .where(AuditEvent.challenge_id == challenge.id)
                .order_by(col(AuditEvent.id))
            )
        )
        return ch.revealed_at, events


@pytest.mark.parametrize("who", ["orga", "root"])
def test_reveal_is_refused_before_the_last_close_saying_when(
    client: Any, engine: Any, two_phases: dict[str, Any], who: str
) -> None:
    """Organizer or admin, with a confirmation and a reason: refused while the competition is
    open, though the hackathon has closed; no button is offered."""
    ctx = two_phases
    challenge = ctx["challenge"]
    set_reveal(engine, challenge, "manual")
    closes = ctx["phases"]["competition"].closes_at
    when = f"{closes:%Y-%m-%d %H:%M} UTC"
    login(client, who)
    page = client.get(f"/organize/{challenge.slug}/reveal")
    assert page.status_code == 200
    assert f"once phase 'competition' closes, at {when}" in text(page)
    assert 'name="confirm"' not in page.text
    r = _post_reveal(client, challenge.slug, confirm=challenge.slug, reason="sponsor asked")
    assert r.status_code == 403
    assert f"once phase 'competition' closes, at {when}" in text(r)
    assert _revealed(engine, challenge) == (None, [])
    # The running challenge offers no reveal on the organizer's pages.
    for path in ("/organize", f"/organize/{challenge.slug}/lifecycle"):
        html = client.get(path).text
        assert f'href="/organize/{challenge.slug}/reveal"' not in html
        assert "Reveal now" not in html
    assert "once phase 'competition' closes" in text(
        client.get(f"/organize/{challenge.slug}/lifecycle")
    )
    # The JSON API answers the same.
    r = client.post(
        f"/api/challenges/{challenge.slug}/reveal",
        json={"confirm": challenge.slug, "reason": "x"},
        headers=token(client, who),
    )
    assert r.status_code == 403
    assert when in r.json()["message"]
    assert _revealed(engine, challenge) == (None, [])


def test_upcoming_challenge_offers_no_reveal(
    client: Any, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    org = make_user("orga", role="organizer")
    challenge = make_challenge(owner=org, opens_days=3, closes_days=10)
    login(client, "orga")
    for path in ("/organize", f"/organize/{challenge.slug}/lifecycle"):
        html = client.get(path).text
        assert f'href="/organize/{challenge.slug}/reveal"' not in html
    assert _post_reveal(client, challenge.slug, confirm=challenge.slug).status_code == 403
    assert _revealed(engine, challenge) == (None, [])


def test_reveal_after_the_close_asks_for_confirmation(
    client: Any, engine: Any, two_phases: dict[str, Any]
) -> None:
    ctx = two_phases
    challenge = ctx["challenge"]
    set_reveal(engine, challenge, "manual")
    set_times(engine, challenge, competition=utcnow() - dt.timedelta(minutes=1))
    login(client, "orga")
    lifecycle = client.get(f"/organize/{challenge.slug}/lifecycle").text
    assert f'href="/organize/{challenge.slug}/reveal"' in lifecycle
    assert "Reveal now" not in lifecycle  # a link to the confirmation page, not a one-click form
    assert f'href="/organize/{challenge.slug}/reveal"' in client.get("/organize").text
    page = client.get(f"/organize/{challenge.slug}/reveal")
    assert 'name="confirm"' in page.text
    assert "cannot be undone" in page.text
    assert "<script" not in page.text  # a plain form: no JavaScript needed (CSP script-src 'self')
    # Not confirmed, or confirmed with another slug: nothing happens.
    for confirm in ("", "yes", challenge.slug.upper()):
        r = _post_reveal(client, challenge.slug, confirm=confirm)
        assert r.status_code == 400
        assert f"type the challenge's slug '{challenge.slug}'" in text(r)
    # A form from elsewhere (no CSRF token) is refused too.
    r = client.post(
        f"/organize/{challenge.slug}/reveal",
        data={"confirm": challenge.slug},
        follow_redirects=False,
    )
    assert r.status_code == 400
    assert _revealed(engine, challenge) == (None, [])
    assert (
        client.get(f"/c/{challenge.slug}/leaderboard?board=private").status_code == 200
    )  # preview

    r = _post_reveal(client, challenge.slug, confirm=challenge.slug)
    assert r.status_code == 303
    at, events = _revealed(engine, challenge)
    assert at is not None
    assert [(e.action, e.actor_id, e.reason) for e in events] == [("reveal", ctx["org"].id, "")]
    with TestClient(client.app) as anon:
        assert anon.get(f"/c/{challenge.slug}/leaderboard?board=private").status_code == 200
    # Again: harmless, nothing more recorded.
    assert _post_reveal(client, challenge.slug, confirm=challenge.slug).status_code == 303
    assert _revealed(engine, challenge) == (at, events)


def test_an_admin_may_reveal_before_the_scheduled_date_with_a_reason(
    client: Any, app: Any, engine: Any, two_phases: dict[str, Any]
) -> None:
    """Scheduled for after the close: the organizer waits; an admin may reveal early, giving a
    reason (recorded), but never while a phase on the private rows is open."""
    ctx = two_phases
    challenge = ctx["challenge"]
    date = utcnow() + dt.timedelta(days=30)
    set_reveal(engine, challenge, date.isoformat())
    # While the competition runs the admin is refused like anyone, reason or not.
    login(client, "root")
    r = _post_reveal(client, challenge.slug, confirm=challenge.slug, reason="press release")
    assert r.status_code == 403
    assert "once phase 'competition' closes" in text(r)
    assert _revealed(engine, challenge) == (None, [])

    set_times(engine, challenge, competition=utcnow() - dt.timedelta(minutes=1))
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        assert not private_scores_visible(s, ch)  # closed, but the date is a month away
    with TestClient(app) as org:
        login(org, "orga")
        page = org.get(f"/organize/{challenge.slug}/reveal").text
        assert f"revealed at {date:%Y-%m-%d %H:%M} UTC" in page
        assert "only a site admin" in page
        assert 'name="confirm"' not in page
        r = _post_reveal(org, challenge.slug, confirm=challenge.slug, reason="why not")
        assert r.status_code == 403
        assert "only a site admin may reveal it earlier" in r.text
    assert _revealed(engine, challenge) == (None, [])

    page = client.get(f"/organize/{challenge.slug}/reveal").text
    assert 'name="reason"' in page
    assert "required" in page
    r = _post_reveal(client, challenge.slug, confirm=challenge.slug, reason="  ")
    assert r.status_code == 400
    assert "Say why" in r.text
    assert _revealed(engine, challenge) == (None, [])
    r = _post_reveal(
        client, challenge.slug, confirm=challenge.slug, reason="Results shown at the workshop"
    )
    assert r.status_code == 303
    at, events = _revealed(engine, challenge)
    assert at is not None
    with Session(engine) as s:
        admin_id = s.exec(select(User.id).where(User.username == "root")).one()
    assert [(e.action, e.actor_id, e.reason) for e in events] == [
        ("reveal_forced", admin_id, "Results shown at the workshop")
    ]
    with TestClient(app) as anon:
        r = anon.get(f"/api/challenges/{challenge.slug}/leaderboard?phase=hackathon&board=private")
        assert r.status_code == 200
        assert r.json()["entries"][0]["score"] == HACK_PRIVATE["ben"]


def test_scheduled_reveal_date_waits_for_the_last_close(
    engine: Any, two_phases: dict[str, Any]
) -> None:
    """A date before the last close does not open anything early; the schedule reveals at the
    later of the two."""
    ctx = two_phases
    challenge, comp = ctx["challenge"], ctx["phases"]["competition"]
    early = utcnow() - dt.timedelta(hours=1)  # after the hackathon, before the competition's close
    set_reveal(engine, challenge, early.isoformat())
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        assert not private_scores_visible(s, ch)
        assert advance_schedule(s) is not None
        assert ch.revealed_at is None
        assert comp.closes_at is not None
        later = comp.closes_at + dt.timedelta(minutes=1)
        assert private_scores_visible(s, ch, now=later)
        made = advance_schedule(s, now=later)
        assert "private_revealed" in {t.kind for t in made}
        done = s.exec(
            select(PhaseTransition).where(PhaseTransition.kind == "private_revealed")
        ).one()
        assert done.due_at == comp.closes_at


def test_reveal_library_guards(engine: Any, two_phases: dict[str, Any]) -> None:
    """The writer itself refuses (every entry point goes through it)."""
    ctx = two_phases
    with session_scope(engine) as s:
        ch = s.get(Challenge, ctx["challenge"].id)
        admin = s.exec(select(User).where(User.username == "root")).one()
        assert ch is not None
        with pytest.raises(PermissionDenied, match="once phase 'competition' closes"):
            reveal_private_leaderboard(s, challenge=ch, actor=admin, confirm=ch.slug, reason="x")
        for phase in phases_of(s, ch):
            phase.closes_at = utcnow() - dt.timedelta(seconds=1)
        with pytest.raises(BadRequest, match="type the challenge's slug"):
            reveal_private_leaderboard(s, challenge=ch, actor=admin, confirm="")
        # Before a scheduled date: the organizer is refused, the admin needs a reason.
        ch.leaderboard = {**ch.leaderboard, "reveal": (utcnow() + dt.timedelta(days=9)).isoformat()}
        organizer = s.get(User, ctx["org"].id)
        assert organizer is not None
        with pytest.raises(PermissionDenied, match="only a site admin may reveal it earlier"):
            reveal_private_leaderboard(
                s, challenge=ch, actor=organizer, confirm=ch.slug, reason="x"
            )
        with pytest.raises(BadRequest, match="Say why"):
            reveal_private_leaderboard(s, challenge=ch, actor=admin, confirm=ch.slug)
        assert ch.revealed_at is None
        assert s.exec(select(AuditEvent)).first() is None


def test_bundle_reveal_date(tmp_path: Any) -> None:
    from tests.challenge.conftest import bundle_text

    now = utcnow()
    text = bundle_text("dated", now, now + dt.timedelta(days=1))
    path = tmp_path / "challenge.yaml"
    path.write_text(text + "leaderboard: {reveal: 2030-01-02T03:04Z}\n")
    (tmp_path / "higgs.csv").write_text("EventId\n1\n")
    assert parse_bundle(path).leaderboard["reveal"] == "2030-01-02T03:04:00+00:00"
    path.write_text(text + "leaderboard: {reveal: soon}\n")
    with pytest.raises(BadRequest, match="'at_close', 'manual' or a date"):
        parse_bundle(path)
