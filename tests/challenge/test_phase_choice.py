"""Choosing the phase of an upload: the form names it, the participant picks among the open ones.

The demo's shape: a competition and a hackathon inside it, both open now; a finals phase not yet
open. Before this, every upload went to the hackathon (the phase that opened last) and vanished from
the competition board without a word.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from challenge.accounts import create_api_token
from challenge.cli import main
from challenge.db import session_scope
from challenge.models import Participation, Phase, Submission, utcnow
from tests.challenge.conftest import PASSWORD, csrf_of, login, random_submission


@pytest.fixture
def festival(make_challenge: Any, make_user: Any, engine: Any, client: TestClient) -> Any:
    challenge = make_challenge(per_day=10, total=50)
    now = utcnow()
    with session_scope(engine) as s:
        s.add(
            Phase(
                challenge_id=challenge.id,
                name="hackathon",
                position=1,
                opens_at=now - dt.timedelta(hours=2),
                closes_at=now + dt.timedelta(hours=6),
            )
        )
        s.add(
            Phase(
                challenge_id=challenge.id,
                name="finals",
                position=2,
                opens_at=now + dt.timedelta(days=20),
                closes_at=now + dt.timedelta(days=21),
            )
        )
    make_user("ann")
    login(client, "ann")
    r = client.post(
        f"/c/{challenge.slug}/join",
        data={"csrf_token": csrf_of(client, f"/c/{challenge.slug}"), "accept": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    return challenge


def _phase_of(engine: Any, sub_id: int) -> str:
    with Session(engine) as s:
        sub = s.get(Submission, sub_id)
        assert sub is not None
        phase = s.get(Phase, sub.phase_id)
        assert phase is not None
        return phase.name


def _web_upload(client: TestClient, slug: str, body: bytes, **data: str) -> Any:
    return client.post(
        f"/c/{slug}/submit",
        data={"csrf_token": csrf_of(client, f"/c/{slug}"), **data},
        files={"file": ("pred.csv", body, "text/csv")},
        follow_redirects=False,
    )


def test_form_offers_open_phases_and_stores_the_choice(
    client: TestClient, festival: Any, settings: Any, engine: Any
) -> None:
    slug = festival.slug
    page = client.get(f"/c/{slug}").text
    select_html = page.split('data-testid="phase-select"', 1)[1].split("</select>", 1)[0]
    assert '<option value="competition"' in select_html
    assert '<option value="hackathon" selected' in select_html  # the default, as before
    assert "finals" not in select_html  # not open yet
    body = random_submission(settings, slug).to_csv(index=False).encode()

    r = _web_upload(client, slug, body, phase="competition", message="for the long run")
    assert r.status_code == 303, r.text
    flash = client.get(f"/c/{slug}").text
    assert "received for phase competition" in flash
    r = _web_upload(client, slug, body)  # no phase named: the default one
    assert r.status_code == 303
    with Session(engine) as s:
        ids = [x.id for x in s.exec(select(Submission).order_by(Submission.id)).all()]  # type: ignore[arg-type]
    assert [_phase_of(engine, i) for i in ids] == ["competition", "hackathon"]  # type: ignore[arg-type]

    rows = client.get(f"/c/{slug}/submissions").text
    assert "<th>Phase</th>" in rows
    assert '<td class="phase">competition</td>' in rows
    assert '<td class="phase">hackathon</td>' in rows


def test_a_phase_not_open_is_refused_and_costs_nothing(
    client: TestClient, festival: Any, settings: Any, engine: Any
) -> None:
    slug = festival.slug
    body = random_submission(settings, slug).to_csv(index=False).encode()
    for name in ("finals", "nope"):
        r = client.post(
            f"/c/{slug}/submit",
            data={"csrf_token": csrf_of(client, f"/c/{slug}"), "phase": name},
            files={"file": ("pred.csv", body, "text/csv")},
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 403, r.text
        assert f"Phase '{name}' is not open for submissions" in r.text
        assert "'competition', 'hackathon'" in r.text
    with Session(engine) as s:
        assert s.exec(select(Submission)).all() == []
        part = s.exec(select(Participation)).one()
        assert part.submission_counter == 0  # the refusal rolled the quota charge back
    assert list(Path(settings.data_dir).rglob("pred*.csv")) == []


def test_api_takes_an_optional_phase_and_says_which(
    client: TestClient, festival: Any, settings: Any, engine: Any
) -> None:
    slug = festival.slug
    with session_scope(engine) as s:
        user = s.exec(select(Participation)).one().user_id
        from challenge.models import User

        token = create_api_token(s, user=s.get(User, user), name="cli")  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {token}"}
    body = random_submission(settings, slug).to_csv(index=False).encode()

    def post(**params: str) -> Any:
        return client.post(
            f"/api/challenges/{slug}/submissions",
            params={"filename": "pred.csv", **params},
            content=body,
            headers={**auth, "Content-Type": "application/octet-stream"},
        )

    r = post(phase="competition")
    assert r.status_code == 201, r.text
    assert r.json()["phase"] == "competition"
    assert _phase_of(engine, r.json()["id"]) == "competition"
    r = post()
    assert r.json()["phase"] == "hackathon"
    r = client.post(
        f"/api/challenges/{slug}/submissions",
        data={"phase": "competition"},
        files={"file": ("pred.csv", body, "text/csv")},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["phase"] == "competition"
    r = post(phase="finals")
    assert r.status_code == 403
    assert "choose one of: 'competition', 'hackathon'" in r.text
    listed = client.get(f"/api/challenges/{slug}/submissions", headers=auth).json()
    assert [x["phase"] for x in listed] == ["competition", "hackathon", "competition"]


def test_leaderboard_names_and_marks_its_phase(client: TestClient, festival: Any) -> None:
    page = client.get(f"/c/{festival.slug}/leaderboard?phase=competition").text
    assert "<title>Public leaderboard, phase competition" in page
    assert "public leaderboard, phase competition</h1>" in page
    assert 'aria-current="page" class="current">competition</a>' in page
    assert 'aria-current="page" class="current">hackathon</a>' not in page
    # The room's countdown keeps its space before the count ("58s· 5 teams" before).
    room = client.get(f"/c/{festival.slug}/room?phase=competition").text
    assert "</span> · 0 teams · refreshes every" in room


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_submit_phase_and_submissions_listing(
    festival: Any,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app: Any,
) -> None:
    from tests.challenge.live_server import free_port, serve

    port = free_port()
    with serve(app, port) as url:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
        monkeypatch.delenv("PODIUM_TOKEN", raising=False)
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
        assert main(["login", "ann", "--url", url, "--password-stdin"]) == 0
        pred = tmp_path / "p.csv"
        random_submission(settings, festival.slug).to_csv(pred, index=False)
        capsys.readouterr()
        argv = ["submit", festival.slug, str(pred), "--no-wait", "-m", "long run"]
        assert main([*argv, "--phase", "competition"]) == 0
        assert "received for phase competition" in capsys.readouterr().out
        assert main(argv) == 0
        assert "received for phase hackathon" in capsys.readouterr().out
        assert main([*argv, "--phase", "finals"]) == 3
        assert "Phase 'finals' is not open" in capsys.readouterr().err
        assert main(["submissions", festival.slug]) == 0
        lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert " hackathon " in lines[0]
    assert " competition " in lines[1]
    assert all('"long run"' in line for line in lines)


def test_evalai_route_takes_any_open_phase(
    client: TestClient, festival: Any, settings: Any, engine: Any
) -> None:
    """`evalai challenge C phase P submit`: P may be any open phase, not only the default one."""
    with session_scope(engine) as s:
        from challenge.models import User

        user = s.get(User, s.exec(select(Participation)).one().user_id)
        token = create_api_token(s, user=user, name="evalai")  # type: ignore[arg-type]
        phases = {p.name: p.id for p in s.exec(select(Phase)).all()}
    body = random_submission(settings, festival.slug).to_csv(index=False).encode()

    def submit(phase: str) -> Any:
        return client.post(
            f"/api/jobs/challenge/{festival.id}/challenge_phase/{phases[phase]}/submission/",
            files={"input_file": ("pred.csv", body, "text/csv")},
            headers={"Authorization": f"Bearer {token}"},
        )

    r = submit("competition")
    assert r.status_code == 201, r.text
    assert _phase_of(engine, r.json()["id"]) == "competition"
    r = submit("hackathon")
    assert _phase_of(engine, r.json()["id"]) == "hackathon"
    r = submit("finals")
    assert r.status_code == 403
    assert "is not taking submissions" in r.text
