"""Cached board pages never go stale: every change a viewer could see shows on the next request,
whichever process or app made it; anonymous pages carry an ETag, logged-in ones their own header.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from challenge.app import create_app
from challenge.db import session_scope
from challenge.leaderboard import bump_board_version, rebuild_boards
from challenge.models import Challenge, Phase, Submission, Team, User
from challenge.rescoring import (
    apply_rescore,
    claim_rescore,
    record_rescore,
    rescore_phase,
    store_private_intervals,
)
from challenge.teams import disqualify_team, rename_team, team_of
from challenge.views.leaderboards import board_head
from tests.challenge.conftest import login
from tests.challenge.test_teams import joined, score, upload

T0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def team_cells(html: str) -> list[str]:
    body = html.split('<table class="leaderboard">', 1)[1].split("</table>", 1)[0]
    out = []
    for tr in body.split("<tr data-team=")[1:]:
        # <td>rank</td>\n[<td>public rank</td><td>shake</td>]<td>team</td><td class="score">
        out.append(tr.split('<td class="score">', 1)[0].rsplit("<td>", 1)[1].split("</td>")[0])
    return out


def test_anonymous_page_cached_and_fresh_after_each_change(  # type: ignore[no-untyped-def]
    client, app, make_challenge, make_user, engine
):
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org, per_day=10, total=50)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    url = f"/c/{challenge.slug}/leaderboard"

    first = client.get(url)
    assert first.status_code == 200
    assert "set-cookie" not in first.headers  # no session, no CSRF token for a read-only page
    assert first.headers["cache-control"] == "no-cache"
    assert "Cookie" in first.headers["vary"]
    assert team_cells(first.text) == ["ann"]
    etag = first.headers["etag"]
    again = client.get(url)
    assert again.text == first.text
    assert again.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert len(app.state.board_cache) >= 1

    # A new score (stored by the worker, not through this app) shows at once.
    score(engine, upload(engine, challenge, ben, now=at(2)), 2.0)
    page = client.get(url, headers={"If-None-Match": etag})
    assert page.status_code == 200
    assert team_cells(page.text) == ["ben", "ann"]
    assert page.headers["etag"] != etag

    # A second app on the same database (another worker process) agrees, and so does the first
    # after a change made by neither.
    other = create_app(app.state.settings, engine)
    with TestClient(other, base_url="http://testserver") as c2:
        assert team_cells(c2.get(url).text) == ["ben", "ann"]
        with session_scope(engine) as s:
            ch = s.get(Challenge, challenge.id)
            assert ch is not None
            disqualify_team(
                s,
                challenge=ch,
                team=team_of(s, ch, s.get(User, ben.id)),  # type: ignore[arg-type]
                actor=s.get(User, org.id),  # type: ignore[arg-type]
                reason="shared accounts",
            )
        assert team_cells(c2.get(url).text) == ["ann"]
        assert team_cells(client.get(url).text) == ["ann"]

    # A rename and an organizer's edit of the title change the page too.
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        team = team_of(s, ch, s.get(User, ann.id))
        assert team is not None
        rename_team(s, team=team, actor=s.get(User, ann.id), name="Annex")  # type: ignore[arg-type]
        ch.title = "Renamed challenge"
        s.add(ch)
    page = client.get(url)
    assert team_cells(page.text) == ["Annex"]
    assert "Renamed challenge" in page.text


def test_rescore_changes_public_and_private_pages_at_once(  # type: ignore[no-untyped-def]
    client, make_challenge, make_user, engine
):
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org, per_day=10, total=50)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    a1 = upload(engine, challenge, ann, now=at(1))
    b1 = upload(engine, challenge, ben, now=at(2))
    score(engine, a1, 2.0, private=2.0)
    score(engine, b1, 1.0, private=1.0)
    with session_scope(engine) as s:
        # Revealed after the phase closed: a private score shows only then.
        s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one().closes_at = at(3)
        s.get(Challenge, challenge.id).revealed_at = at(3)  # type: ignore[union-attr]
    url = f"/c/{challenge.slug}/leaderboard"
    assert team_cells(client.get(url).text) == ["ann", "ben"]
    assert team_cells(client.get(url + "?board=private").text) == ["ann", "ben"]
    csv_before = client.get(f"/c/{challenge.slug}/leaderboard.csv?board=private").text

    # A metric fix: the rescore swaps the order on both boards, in one transaction.
    with session_scope(engine) as s:
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        assert phase.id is not None
        run = rescore_phase(s, phase_id=phase.id, actor=s.get(User, org.id))  # type: ignore[arg-type]
        run_id = run.id
    assert run_id is not None
    for sid, value in ((a1, 0.5), (b1, 3.0)):
        with session_scope(engine) as s:
            assert claim_rescore(s, run_id, sid, 60)
            record_rescore(
                s,
                run_id,
                sid,
                {"status": "scored", "public": value, "private": value, "public_ci": None},
            )
    with session_scope(engine) as s:
        assert apply_rescore(s, run_id) == "applied"
    assert team_cells(client.get(url).text) == ["ben", "ann"]
    assert team_cells(client.get(url + "?board=private").text) == ["ben", "ann"]
    csv_after = client.get(f"/c/{challenge.slug}/leaderboard.csv?board=private").text
    assert csv_after != csv_before
    assert csv_after.splitlines()[1].split(",")[1] == "ben"


def test_reveal_final_picks_and_private_intervals_show_at_once(  # type: ignore[no-untyped-def]
    client, make_challenge, make_user, engine
):
    challenge = make_challenge(per_day=10, total=50, final_selections=1)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    a1 = upload(engine, challenge, ann, now=at(1))
    a2 = upload(engine, challenge, ann, now=at(2))
    score(engine, a1, 1.0, private=5.0)
    score(engine, a2, 2.0, private=0.5)
    score(engine, upload(engine, challenge, ben, now=at(3)), 1.5, private=1.0)
    url = f"/c/{challenge.slug}/leaderboard"
    public = client.get(url)
    assert "private: hidden until every phase has closed" in public.text
    assert client.get(url + "?board=private").status_code == 404

    with session_scope(engine) as s:
        # Revealed after the phase closed: a private score shows only then.
        s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one().closes_at = at(4)
        s.get(Challenge, challenge.id).revealed_at = at(4)  # type: ignore[union-attr]
    public = client.get(url)
    assert "private: hidden until every phase has closed" not in public.text
    assert "board=private" in public.text
    private = client.get(url + "?board=private")
    assert private.status_code == 200
    assert team_cells(private.text) == ["ben", "ann"]  # ann judged on a2 (private 0.5)

    # A board change stored through another session reorders it. (Final picks lock at the close
    # and private scores show only after it, so a pick cannot be the change any more: a direct
    # write that bumps the board version, as every writer does, stands in for it.)
    with session_scope(engine) as s:
        picked = s.get(Submission, a1)
        assert picked is not None
        picked.is_final = True
        bump_board_version(s, picked.phase_id)
    assert team_cells(client.get(url + "?board=private").text) == ["ann", "ben"]

    # Private intervals graded after the reveal replace "computing…".
    with session_scope(engine) as s:
        for sub in s.exec(select(Submission).where(Submission.challenge_id == challenge.id)):
            sub.private_ci_low = None
            sub.private_ci_high = None
            s.add(sub)
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        bump_board_version(s, phase.id)
    assert "computing…" in client.get(url + "?board=private").text
    with session_scope(engine) as s:
        subs = list(s.exec(select(Submission).where(Submission.challenge_id == challenge.id)))
        store_private_intervals(s, [(x.id, x.score_version, (0.0, 9.0)) for x in subs])  # type: ignore[misc]
    text = client.get(url + "?board=private").text
    assert "computing…" not in text
    assert "[0.0000, 9.0000]" in text


def test_logged_in_viewers_get_their_header_not_the_anonymous_page(  # type: ignore[no-untyped-def]
    client, make_challenge, make_user, engine
):
    challenge = make_challenge(per_day=10, total=50)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    url = f"/c/{challenge.slug}/leaderboard"
    anonymous = client.get(url).text
    assert "Log in" in anonymous
    login(client, "ann")
    page = client.get(url)
    assert page.status_code == 200
    assert "etag" not in page.headers
    assert "Log out" in page.text
    assert "Log in" not in page.text
    assert ">ann</a>" in page.text  # the account link in the header
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        team = team_of(s, ch, s.get(User, ann.id))  # type: ignore[arg-type]
        assert team is not None
    assert f'tr[data-team="{team.id}"]' in page.text  # her row is highlighted
    assert "history.svg" in page.text
    # The cached body is shared: the board itself is the same as the anonymous one.
    assert team_cells(page.text) == team_cells(anonymous)
    # Her score shows at once for her too.
    score(engine, upload(engine, challenge, ben, now=at(2)), 2.0)
    assert team_cells(client.get(url).text) == ["ben", "ann"]
    client.cookies.clear()
    assert team_cells(client.get(url).text) == ["ben", "ann"]


def test_board_head_changes_when_a_phase_closes_or_a_board_changes(  # type: ignore[no-untyped-def]
    make_challenge, engine
):
    challenge = make_challenge(per_day=10, total=50)
    with Session(engine) as s:
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
        assert phase.closes_at is not None
        before = board_head(s.connection(), challenge.slug, now=phase.closes_at - dt.timedelta(1))
        same = board_head(s.connection(), challenge.slug, now=phase.closes_at - dt.timedelta(2))
        after = board_head(s.connection(), challenge.slug, now=phase.closes_at)
        assert board_head(s.connection(), "no-such-challenge") is None
    assert before is not None
    assert same is not None
    assert after is not None
    assert before.key == same.key
    assert after.key != before.key  # the private board becomes visible: another page
    with session_scope(engine) as s:
        bump_board_version(s, phase.id)
    with Session(engine) as s:
        bumped = board_head(s.connection(), challenge.slug, now=phase.closes_at - dt.timedelta(1))
    assert bumped is not None
    assert bumped.key != before.key


def test_embed_room_csv_and_plot_follow_the_board(  # type: ignore[no-untyped-def]
    client, make_challenge, make_user, engine
):
    challenge = make_challenge(per_day=10, total=50)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    base = f"/c/{challenge.slug}"
    views: dict[str, Any] = {
        p: client.get(base + p).text
        for p in ("/leaderboard/embed", "/room", "/leaderboard.csv", "/plots/best.svg")
    }
    for p, text in views.items():
        assert client.get(base + p).text == text
        assert "ben" not in text
    score(engine, upload(engine, challenge, ben, now=at(2)), 2.0)
    for p, text in views.items():
        fresh = client.get(base + p).text
        assert fresh != text, p
        if p != "/plots/best.svg":
            assert "ben" in fresh, p
    with Session(engine) as s:
        assert s.exec(select(Team).where(Team.challenge_id == challenge.id)).all()
    # Every rebuild leaves the page as it was (the same rows), but it is recomputed.
    page = client.get(base + "/leaderboard").text
    with session_scope(engine) as s:
        rebuild_boards(s, s.get(Challenge, challenge.id))  # type: ignore[arg-type]
    assert team_cells(client.get(base + "/leaderboard").text) == team_cells(page)


def test_requests_that_miss_together_build_the_page_once() -> None:
    import threading
    import time

    from challenge.views.leaderboards import BoardCache

    cache, builds, results = BoardCache(size=2), [], []

    def build() -> bytes:
        builds.append(1)
        time.sleep(0.05)
        return b"page"

    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build(("k",), build)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"page"] * 8
    assert len(builds) == 1
    for i in range(5):  # bounded: the oldest keys go
        cache.get_or_build((i,), lambda: b"x")
    assert len(cache) == 2

    def fail() -> bytes:
        raise LookupError("no such phase")

    for i in range(3):  # a failed build (e.g. ?phase=nonsense) caches nothing and leaves no lock
        with pytest.raises(LookupError):
            cache.get_or_build(("bad", i), fail)
    assert cache._building == {}
    assert len(cache) == 2


def test_podium_serve_runs_workers_that_agree_on_the_board(  # type: ignore[no-untyped-def]
    settings, make_challenge, make_user, engine
):
    """`podium serve --workers 2`: two processes, each with its own cache, one current board."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.challenge.live_server import free_port

    challenge = make_challenge(per_day=10, total=50)
    ann, ben = make_user("ann"), make_user("ben")
    joined(engine, challenge, ann, ben)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    port = free_port()
    env = {
        **os.environ,
        "PODIUM_ENV": "test",
        "PODIUM_SECRET_KEY": settings.secret_key,
        "PODIUM_DATABASE_URL": settings.database_url,
        "PODIUM_REDIS_URL": "stub://",
        "PODIUM_DATA_DIR": str(settings.data_dir),
    }
    cmd = [sys.executable, "-c", "from challenge.cli import main; raise SystemExit(main())"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/c/{challenge.slug}/leaderboard"
    try:
        for _ in range(150):
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()  # noqa: SIM115
        assert len(children) >= 2  # the workers (uvicorn's supervisor keeps them as children)
        seen = {team_cells(httpx.get(url).text)[0] for _ in range(10)}
        assert seen == {"ann"}
        score(engine, upload(engine, challenge, ben, now=at(2)), 2.0)
        # Whichever worker answers, every answer has the new score.
        assert {tuple(team_cells(httpx.get(url).text)) for _ in range(10)} == {("ben", "ann")}
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_loop_reads_the_same_key_as_the_threads(  # type: ignore[no-untyped-def]
    client, app, make_challenge, make_user, engine
):
    """The event loop's own read (SQLite connection, or async psycopg) is used and agrees."""
    import asyncio

    challenge = make_challenge(per_day=10, total=50)
    ann = make_user("ann")
    joined(engine, challenge, ann)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    url = f"/c/{challenge.slug}/leaderboard"
    etag = client.get(url).headers["etag"]
    reader = app.state.board_head_reader
    if engine.url.get_backend_name() == "sqlite":
        assert reader.sqlite is not None
    else:
        assert reader.pg is not None
        assert not reader.pg[1].closed
    with Session(engine) as s:
        in_thread = board_head(s.connection(), challenge.slug)
    on_loop = asyncio.run(reader.read(challenge.slug))
    assert in_thread is not None
    assert on_loop == in_thread
    reader.close_pg()
    # Served from the loop's read: the same ETag as before, then a 304.
    assert client.get(url).headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_page_is_served_when_the_loops_read_fails(  # type: ignore[no-untyped-def]
    client, app, make_challenge, make_user, engine
):
    """A busy or unreachable fast-read connection sends the request to the thread pool."""
    from tests.challenge.live_server import free_port

    challenge = make_challenge(per_day=10, total=50)
    ann = make_user("ann")
    joined(engine, challenge, ann)
    score(engine, upload(engine, challenge, ann, now=at(1)), 1.0)
    url = f"/c/{challenge.slug}/leaderboard"
    etag = client.get(url).headers["etag"]
    reader = app.state.board_head_reader
    if reader.sqlite is not None:
        with reader.sqlite.connect():  # its only connection is taken: the read times out at once
            page = client.get(url)
    else:
        reader.close_pg()
        reader.url = reader.url.set(port=free_port())  # nothing listens there
        page = client.get(url)
        assert reader.pg is None
    assert page.status_code == 200
    assert team_cells(page.text) == ["ann"]
    assert page.headers["etag"] == etag  # the same key, read in the thread
