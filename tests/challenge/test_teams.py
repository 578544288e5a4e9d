"""Teams: invitations, merges and their limits, team quotas exact under concurrent uploads."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from challenge.challenges import join_challenge
from challenge.db import session_scope
from challenge.errors import PermissionDenied, PodiumError, QuotaExceeded
from challenge.models import BoardEntry, Challenge, Submission, Team, User
from challenge.submissions import claim_for_scoring, create_submission, quota_for, record_result
from challenge.teams import accept_invitation, invite, members_of, set_final_selection, team_of


def joined(engine: Any, challenge: Challenge, *users: User) -> None:
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        for u in users:
            join_challenge(s, challenge=ch, user=s.get(User, u.id))  # type: ignore[arg-type]


def upload(engine: Any, challenge: Challenge, user: User, now: dt.datetime | None = None) -> int:
    with session_scope(engine) as s:
        sub = create_submission(
            s,
            challenge=s.get(Challenge, challenge.id),
            user=s.get(User, user.id),  # type: ignore[arg-type]
            stored_path=Path("unused.csv"),
            filename="p.csv",
            size_bytes=1,
            sha256="",
            now=now,
        )
        assert sub.id is not None
        return sub.id


def score(
    engine: Any,
    sub_id: int,
    public: float,
    private: float | None = None,
    half: float = 0.05,
    status: str = "scored",
) -> None:
    with session_scope(engine) as s:
        assert claim_for_scoring(s, sub_id, 60)
    private = public if private is None else private
    with session_scope(engine) as s:
        record_result(
            s,
            sub_id,
            {
                "status": status,
                "public": public,
                "private": private,
                "public_ci": (public - half, public + half),
                "private_ci": (private - half, private + half),
                "message": "bad file" if status == "invalid" else "",
            },
        )


def team_up(engine: Any, challenge: Challenge, captain: User, member: User) -> None:
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        team = team_of(s, ch, captain)
        assert team is not None
        inv = invite(
            s,
            challenge=ch,
            team=team,
            inviter=s.get(User, captain.id),  # type: ignore[arg-type]
            invitee_name=member.username,
        )
        inv_id = inv.id
    with session_scope(engine) as s:
        accept_invitation(s, invitation_id=inv_id, user=s.get(User, member.id))  # type: ignore[arg-type]


def test_team_quota_is_shared_and_invalid_files_are_free(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=3, total=10)
    alice, bob = make_user("alice"), make_user("bob")
    joined(engine, challenge, alice, bob)
    team_up(engine, challenge, alice, bob)
    a1 = upload(engine, challenge, alice)
    score(engine, a1, 1.0, status="invalid")  # does not count
    upload(engine, challenge, alice)
    upload(engine, challenge, bob)
    upload(engine, challenge, bob)
    with pytest.raises(QuotaExceeded, match="resets"):
        upload(engine, challenge, alice)
    with Session(engine) as s:
        q = quota_for(s, s.get(Challenge, challenge.id), s.get(User, bob.id))  # type: ignore[arg-type]
        assert (q.used_today, q.left_today) == (3, 0)
        subs = s.exec(select(Submission)).all()
        assert len({x.team_id for x in subs}) == 1


def test_concurrent_uploads_of_a_team_never_exceed_the_daily_limit(
    make_challenge, make_user, engine
):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=3, total=100, team_size=4)
    users = [make_user(n) for n in ("u1", "u2", "u3", "u4")]
    joined(engine, challenge, *users)
    for other in users[1:]:
        team_up(engine, challenge, users[0], other)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def go(user: User) -> None:
        barrier.wait()
        try:
            upload(engine, challenge, user)
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=go, args=(users[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5
    with Session(engine) as s:
        assert len(s.exec(select(Submission)).all()) == 3


def test_merge_limits_size_submissions_and_deadline(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=2, total=3, team_size=2, closes_days=30)
    a, b, c, d = (make_user(n) for n in ("ann", "ben", "cid", "dot"))
    joined(engine, challenge, a, b, c, d)
    team_up(engine, challenge, a, b)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        with pytest.raises(PermissionDenied, match="maximum of 2"):
            invite(
                s,
                challenge=ch,
                team=team_of(s, ch, a),
                inviter=s.get(User, a.id),
                invitee_name="cid",
            )  # type: ignore[arg-type]
    # c and d each used 2 today: together 4 > per_day 2, and > total 3.
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    upload(engine, challenge, c, now=yesterday)
    upload(engine, challenge, c, now=yesterday)
    upload(engine, challenge, d)
    upload(engine, challenge, d)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        inv = invite(
            s, challenge=ch, team=team_of(s, ch, c), inviter=s.get(User, c.id), invitee_name="dot"
        )  # type: ignore[arg-type]
        inv_id = inv.id
    with (
        session_scope(engine) as s,
        pytest.raises(PermissionDenied, match="4 submissions; a team may make 3"),
    ):
        accept_invitation(s, invitation_id=inv_id, user=s.get(User, d.id))  # type: ignore[arg-type]
    # After the merge deadline nobody can invite.
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.merge_deadline = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        s.add(ch)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        with pytest.raises(PermissionDenied, match="merge deadline"):
            invite(
                s,
                challenge=ch,
                team=team_of(s, ch, c),
                inviter=s.get(User, c.id),
                invitee_name="ann",
            )  # type: ignore[arg-type]


def test_accepting_an_invitation_moves_submissions_and_board_rows(
    make_challenge, make_user, engine
):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=5, total=20)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    score(engine, upload(engine, challenge, a), 1.0)
    score(engine, upload(engine, challenge, b), 2.0)
    with Session(engine) as s:
        assert len(s.exec(select(BoardEntry)).all()) == 2
    team_up(engine, challenge, a, b)
    with Session(engine) as s:
        rows = s.exec(select(BoardEntry)).all()
        assert len(rows) == 1
        assert rows[0].score == 2.0
        assert rows[0].entries == 2
        team = s.get(Team, rows[0].team_id)
        assert team is not None
        assert team.name == "ann"
        merged = s.exec(select(Team).where(Team.name == "ben")).one()
        assert merged.merged_into_id == team.id


def test_final_selection_limit_and_rules(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=5, total=20, final_selections=1)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    s1, s2 = upload(engine, challenge, a), upload(engine, challenge, a)
    score(engine, s1, 1.0)
    score(engine, s2, 2.0)
    with session_scope(engine) as s:
        set_final_selection(s, submission_id=s1, user=s.get(User, a.id), final=True)  # type: ignore[arg-type]
    with session_scope(engine) as s, pytest.raises(PermissionDenied, match="already picked 1"):
        set_final_selection(s, submission_id=s2, user=s.get(User, a.id), final=True)  # type: ignore[arg-type]
    with session_scope(engine) as s, pytest.raises(PodiumError):  # not ben's team
        set_final_selection(s, submission_id=s2, user=s.get(User, b.id), final=True)  # type: ignore[arg-type]


def test_team_pages_over_http(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from tests.challenge.conftest import csrf_of, login

    challenge = make_challenge()
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    login(client, "ann")
    r = client.post(
        f"/c/{challenge.slug}/team/rename",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team"), "name": "=Quarks"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post(
        f"/c/{challenge.slug}/team/invite",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team"), "username": "nobody"},
    )
    assert r.status_code == 400
    assert "No user" in r.text
    r = client.post(
        f"/c/{challenge.slug}/team/invite",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team"), "username": "ben"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    client.cookies.clear()
    login(client, "ben")
    page = client.get(f"/c/{challenge.slug}/team").text
    assert "=Quarks" in page
    assert "invites you" in page
    with Session(engine) as s:
        from challenge.models import TeamInvitation

        inv = s.exec(select(TeamInvitation)).one()
    r = client.post(
        f"/c/{challenge.slug}/invitations/{inv.id}/accept",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert team_of(s, ch, s.get(User, b.id)).name == "=Quarks"  # type: ignore[arg-type,union-attr]


def test_leaving_a_team_rules_and_captaincy(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from challenge.errors import Conflict
    from challenge.teams import captain_of, leave_team, transfer_captaincy

    challenge = make_challenge(per_day=5, total=20, team_size=3, closes_days=30)
    a, b, c = make_user("ann"), make_user("ben"), make_user("cid")
    joined(engine, challenge, a, b, c)
    with session_scope(engine) as s, pytest.raises(Conflict, match="only member"):
        leave_team(s, challenge=s.get(Challenge, challenge.id), user=s.get(User, a.id))  # type: ignore[arg-type]
    team_up(engine, challenge, a, b)
    team_up(engine, challenge, a, c)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        team = team_of(s, ch, a)  # type: ignore[arg-type]
        assert captain_of(s, team).username == "ann"  # type: ignore[arg-type,union-attr]
        with pytest.raises(PermissionDenied, match="Only the captain"):
            transfer_captaincy(s, team=team, actor=s.get(User, b.id), username="cid")  # type: ignore[arg-type]
    # The captain leaves: the longest-standing member (ben) takes over; ann is alone again.
    with session_scope(engine) as s:
        own = leave_team(s, challenge=s.get(Challenge, challenge.id), user=s.get(User, a.id))  # type: ignore[arg-type]
        assert own.name == "ann (2)"  # her old team of one (merged away) keeps its name
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        old = s.exec(select(Team).where(Team.name == "ann")).one()
        assert [u.username for u in members_of(s, old)] == [
            "ben",
            "cid",
        ]
        assert captain_of(s, old).username == "ben"  # type: ignore[union-attr]
        assert team_of(s, ch, a).name == "ann (2)"  # type: ignore[arg-type,union-attr]
        transfer_captaincy(s, team=old, actor=s.get(User, b.id), username="cid")  # type: ignore[arg-type]
    with Session(engine) as s:
        old = s.exec(select(Team).where(Team.name == "ann")).one()
        assert captain_of(s, old).username == "cid"  # type: ignore[union-attr]
    # Once the team has a submission that counts, nobody can leave; it stays with the team.
    sub = upload(engine, challenge, b)
    with session_scope(engine) as s, pytest.raises(PermissionDenied, match="once it has submitted"):
        leave_team(s, challenge=s.get(Challenge, challenge.id), user=s.get(User, c.id))  # type: ignore[arg-type]
    with Session(engine) as s:
        kept = s.get(Submission, sub)
        assert kept is not None
        assert kept.team_id == s.exec(select(Team).where(Team.name == "ann")).one().id


def test_leaving_after_the_merge_deadline_is_refused(make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from challenge.teams import leave_team

    challenge = make_challenge(per_day=5, total=20, closes_days=30)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    team_up(engine, challenge, a, b)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.merge_deadline = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        s.add(ch)
    with session_scope(engine) as s, pytest.raises(PermissionDenied, match="merge deadline"):
        leave_team(s, challenge=s.get(Challenge, challenge.id), user=s.get(User, b.id))  # type: ignore[arg-type]


def test_leave_button_over_http_needs_csrf(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from tests.challenge.conftest import csrf_of, login

    challenge = make_challenge(closes_days=30)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    team_up(engine, challenge, a, b)
    login(client, "ben")
    page = client.get(f"/c/{challenge.slug}/team").text
    assert "Leave the team" in page
    assert "captain" in page
    r = client.post(f"/c/{challenge.slug}/team/leave", data={}, follow_redirects=False)
    assert r.status_code in (400, 403)
    with Session(engine) as s:
        assert team_of(s, s.get(Challenge, challenge.id), s.get(User, b.id)).name == "ann"  # type: ignore[arg-type,union-attr]
    r = client.post(
        f"/c/{challenge.slug}/team/leave",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "compete alone" in client.get(f"/c/{challenge.slug}/team").text
    with Session(engine) as s:
        assert team_of(s, s.get(Challenge, challenge.id), s.get(User, b.id)).name == "ben (2)"  # type: ignore[arg-type,union-attr]
    r = client.post(
        f"/c/{challenge.slug}/team/leave",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}/team")},
    )
    assert r.status_code == 409
    assert "only member" in r.text


def test_only_the_captain_renames_and_invites(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from challenge.teams import rename_team
    from tests.challenge.conftest import csrf_of, login

    challenge = make_challenge(closes_days=30)
    a, b, c = make_user("ann"), make_user("ben"), make_user("cid")
    joined(engine, challenge, a, b, c)
    team_up(engine, challenge, a, b)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        team = team_of(s, ch, b)  # type: ignore[arg-type]
        assert team is not None
        with pytest.raises(PermissionDenied, match=r"Only the captain \(ann\) can rename"):
            rename_team(s, team=team, actor=s.get(User, b.id), name="Bens")  # type: ignore[arg-type]
        with pytest.raises(PermissionDenied, match=r"Only the captain \(ann\) can invite"):
            invite(s, challenge=ch, team=team, inviter=s.get(User, b.id), invitee_name="cid")  # type: ignore[arg-type]
    # Over HTTP: ben sees neither form, and his POSTs are refused.
    login(client, "ben")
    url = f"/c/{challenge.slug}/team"
    page = client.get(url).text
    assert "/team/rename" not in page
    assert "/team/invite" not in page
    assert "Only the captain (ann) can rename the team and invite participants." in page
    for action, field, value in (("rename", "name", "Bens"), ("invite", "username", "cid")):
        r = client.post(
            f"{url}/{action}",
            data={"csrf_token": csrf_of(client, url), field: value},
            follow_redirects=False,
        )
        assert r.status_code == 403, (action, r.status_code)
        assert "Only the captain" in r.text
    with Session(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert team_of(s, ch, s.get(User, b.id)).name == "ann"  # type: ignore[arg-type,union-attr]
        from challenge.models import TeamInvitation

        assert s.exec(select(TeamInvitation).where(TeamInvitation.state == "pending")).all() == []
    client.cookies.clear()
    login(client, "ann")
    page = client.get(url).text
    assert "/team/rename" in page
    assert "/team/invite" in page
    assert "Only the captain" not in page


def test_leave_button_is_disabled_with_the_reason(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from tests.challenge.conftest import login

    challenge = make_challenge(closes_days=30)
    a, b = make_user("ann"), make_user("ben")
    joined(engine, challenge, a, b)
    team_up(engine, challenge, a, b)
    login(client, "ben")
    url = f"/c/{challenge.slug}/team"
    page = client.get(url).text
    assert 'action="/c/test-higgs/team/leave"' in page
    assert 'data-testid="leave-refused"' not in page
    # Once the team has used some of its quota, leaving would be refused: the page says so.
    upload(engine, challenge, a)
    page = client.get(url).text
    assert 'action="/c/test-higgs/team/leave"' not in page
    assert '<button type="button" disabled aria-describedby="leave-refused">Leave the team' in page
    assert "You cannot leave: The team has made 1 submission;" in page
    # After the merge deadline the reason is the deadline.
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        ch.merge_deadline = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        s.add(ch)
    page = client.get(url).text
    assert "You cannot leave: The team merge deadline" in page
    assert "teams are final" in page
