"""EvalAI compatibility: the unmodified `evalai` CLI (1.3.18) against a real uvicorn server.

The CLI lives in its own virtualenv, var/evalai-venv (it pins old packages); `make evalai-deps`
creates it (see docs/evalai.md). This test installs nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from challenge import tasks
from challenge.app import create_app
from challenge.db import make_engine
from challenge.models import EvalAIUpload, Phase, Submission, utcnow
from challenge.settings import Settings
from tests.challenge.conftest import PASSWORD, perfect_submission, random_submission
from tests.challenge.live_server import free_port, serve

ROOT = Path(__file__).resolve().parents[2]
EVALAI = ROOT / "var" / "evalai-venv" / "bin" / "evalai"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def site(settings_factory: Any, sqlite_url: str) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings: Settings = settings_factory(sqlite_url, base_url=f"http://127.0.0.1:{port}")
    engine = make_engine(settings.database_url)
    tasks.configure(settings, engine)
    with serve(create_app(settings, engine), port) as url:
        yield url, settings
    engine.dispose()


def _token(client: Any, name: str) -> str:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD, "name": "t"})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


# evalai 1.3.18 asks pypi.org for its newest version before every command (evalai/main.py) and
# exits when a newer one exists. The tests must not depend on the internet, so this one function
# is replaced, through sitecustomize, by "the installed version is the newest". Nothing that talks
# to Podium is touched.
SITECUSTOMIZE = """\
import evalai.utils.updates
from evalai.version import __version__

evalai.utils.updates.get_latest_version = lambda: __version__
"""


class EvalAI:
    def __init__(self, home: Path) -> None:
        (home / "site").mkdir()
        (home / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.env = {
            "HOME": str(home),
            "PATH": os.environ.get("PATH", ""),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(home / "site"),
        }

    def __call__(self, *args: str, stdin: str = "", code: int = 0) -> str:
        r = subprocess.run(
            [str(EVALAI), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        assert r.returncode == code, (args, r.stdout, r.stderr)
        return re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)


def test_unmodified_evalai_cli(
    site: tuple[str, Settings],
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    stub_worker: Any,
    tmp_path: Path,
) -> None:
    if not EVALAI.is_file():
        pytest.fail(f"{EVALAI} is missing: run `make evalai-deps` (docs/evalai.md says how)")
    url, settings = site
    challenge = make_challenge()
    user = make_user("eve")
    import httpx

    with httpx.Client(base_url=url) as http:
        token = _token(http, "eve")
    with Session(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
    evalai = EvalAI(tmp_path)

    assert "is set as the host url" in evalai("host", "-sh", url)
    assert "successfully set" in evalai("set_token", token)
    assert "Test HiggsML" in evalai("challenges")
    assert "Test HiggsML" in evalai("challenges", "ongoing")
    assert "Separate signal" in evalai("challenge", str(challenge.id))
    assert "competition" in evalai("challenge", str(challenge.id), "phases")
    detail = evalai("challenge", str(challenge.id), "phase", str(phase.id))
    assert "Maximum Submissions per day : 3" in detail
    splits = evalai("challenge", str(challenge.id), "phase", str(phase.id), "splits")
    assert str(phase.id * 2 - 1) in splits
    assert "Public test" in splits
    assert "Private test" not in splits  # hidden until revealed
    teams = evalai("teams", "--participant")
    assert "eve" in teams

    # Submitting before participating is refused with Podium's message.
    good = tmp_path / "good.csv"
    perfect_submission(settings, challenge.slug).to_csv(good, index=False)
    out = evalai(
        "challenge",
        str(challenge.id),
        "phase",
        str(phase.id),
        "submit",
        "--file",
        str(good),
        stdin="n\n",
        code=1,
    )
    assert "Join the challenge first" in out
    out = evalai("challenge", str(challenge.id), "participate", str(user.id), stdin="y\n")
    assert "is now participating" in out

    out = evalai(
        "challenge",
        str(challenge.id),
        "phase",
        str(phase.id),
        "submit",
        "--file",
        str(good),
        stdin="n\n",
    )
    assert "successfully submitted" in out
    plain_id = int(re.search(r"with the ID (\d+)", out).group(1))  # type: ignore[union-attr]
    bad = tmp_path / "bad.csv"
    random_submission(settings, challenge.slug).to_csv(bad, index=False)
    out = evalai(
        "challenge",
        str(challenge.id),
        "phase",
        str(phase.id),
        "submit",
        "--file",
        str(bad),
        "--large",
        stdin="n\n",
    )
    assert "successfully submitted for evaluation" in out
    stub_worker.drain()

    with Session(engine) as session:
        subs = session.exec(select(Submission).order_by(Submission.id)).all()  # type: ignore[arg-type]
        upload = session.exec(select(EvalAIUpload)).one()
    assert [s.status for s in subs] == ["scored", "scored"]
    assert subs[0].id == plain_id
    assert upload.submission_id == subs[1].id
    assert subs[1].filename == "bad.csv"
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == subs[1].sha256

    listing = evalai("challenge", str(challenge.id), "phase", str(phase.id), "submissions")
    assert listing.count("finished") == 2
    assert "finished" in evalai("submission", str(plain_id))
    board = evalai("challenge", str(challenge.id), "leaderboard", str(phase.id * 2 - 1))
    assert "eve" in board
    assert f"{subs[0].public_score:.3f}"[:5] in board
    out = evalai("challenge", str(challenge.id), "leaderboard", str(phase.id * 2), code=1)
    assert "revealed when the last phase" in out
    # A bad token gets EvalAI's own advice.
    evalai("set_token", "pod_wrong")
    out = evalai("challenge", str(challenge.id), "phase", str(phase.id), "submissions", code=1)
    assert "isn't valid" in out


def test_presigned_urls_are_unguessable_short_lived_and_multipart(
    client: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Settings,
    engine: Any,
    stub_worker: Any,
) -> None:
    challenge = make_challenge(file_mb=45)  # room for the CLI's 20 MB parts: up to 3 of them
    make_user("fay")
    headers = {"Authorization": f"Bearer {_token(client, 'fay')}"}
    client.post(
        f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True}, headers=headers
    )
    with Session(engine) as session:
        phase = session.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
    presign = f"/api/jobs/phases/{phase.id}/get_submission_file_presigned_url/"
    r = client.post(
        presign, data={"file_name": "/home/fay/p.csv", "num_file_chunks": "2"}, headers=headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    urls = [u["url"] for u in body["presigned_urls"]]
    assert [u["partNumber"] for u in body["presigned_urls"]] == [1, 2]
    key = urls[0].split("/uploads/", 1)[1].split("/", 1)[0]
    assert len(key) >= 40  # 256 random bits
    with Session(engine) as session:
        row = session.exec(select(EvalAIUpload)).one()
        assert row.key_hash != key
        assert key not in json.dumps(row.model_dump(), default=str)
        assert row.expires_at - utcnow() <= dt.timedelta(minutes=30)

    data = random_submission(settings, challenge.slug).to_csv(index=False).encode()
    halves = [data[: len(data) // 2], data[len(data) // 2 :]]
    wrong = urls[0].replace(key, key[:-4] + "AAAA")
    assert client.put(wrong, content=halves[0]).status_code == 404
    assert client.put(urls[0].rsplit("/", 1)[0] + "/3", content=b"x").status_code == 404
    etags = []
    for n, (u, part) in enumerate(zip(urls, halves, strict=True), start=1):
        r = client.put(u, content=part)  # no auth header, as the CLI sends it
        assert r.status_code == 200
        etags.append({"ETag": r.headers["ETag"], "PartNumber": n})
    finish = f"/api/jobs/phases/{phase.id}/finish_submission_file_upload/{body['submission_pk']}/"
    r = client.post(
        finish,
        data={"parts": json.dumps([etags[0]]), "upload_id": body["upload_id"]},
        headers=headers,
    )
    assert r.status_code == 400
    assert "Part 2" in r.json()["error"]
    tampered = [etags[0], {"ETag": '"00"', "PartNumber": 2}]
    r = client.post(finish, data={"parts": json.dumps(tampered)}, headers=headers)
    assert r.status_code == 400
    assert "does not match" in r.json()["error"]
    other = {"Authorization": f"Bearer {_token(client, make_user('gus').username)}"}
    assert client.post(finish, data={"parts": json.dumps(etags)}, headers=other).status_code == 406
    r = client.post(finish, data={"parts": json.dumps(etags)}, headers=headers)
    assert r.status_code == 200, r.text
    stub_worker.drain()
    with Session(engine) as session:
        sub = session.get(Submission, r.json()["id"])
        assert sub is not None
        assert sub.status == "scored"
        assert sub.filename == "p.csv"
        assert sub.sha256 == hashlib.sha256(data).hexdigest()
    # Used URLs are dead; so are expired ones.
    assert client.put(urls[0], content=halves[0]).status_code == 404
    r = client.post(presign, data={"file_name": "q.csv", "num_file_chunks": "1"}, headers=headers)
    late = r.json()["presigned_urls"][0]["url"]
    with Session(engine) as session:
        row = session.get(EvalAIUpload, r.json()["submission_pk"])
        assert row is not None
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
        session.add(row)
        session.commit()
    r = client.put(late, content=b"EventId\n")
    assert r.status_code == 404
    assert "expired" in r.json()["error"]
    # Too many parts for the challenge's size cap is refused before any upload.
    r = client.post(
        presign, data={"file_name": "big.csv", "num_file_chunks": "50"}, headers=headers
    )
    assert r.status_code == 406  # EvalAI's status for a refusal: the CLI prints the message


def test_evalai_participant_teams_are_podium_teams(
    site: tuple[str, Settings],
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    stub_worker: Any,
    tmp_path: Path,
) -> None:
    """Teams, their captain and members, team submissions and the team's name on the board."""
    if not EVALAI.is_file():
        pytest.fail(f"{EVALAI} is missing: run `make evalai-deps` (docs/evalai.md says how)")
    import httpx

    from challenge.db import session_scope
    from challenge.models import Challenge, Team, User
    from challenge.teams import accept_invitation, invite, rename_team, team_of
    from tests.challenge.test_teams import joined

    url, settings = site
    challenge = make_challenge()
    eve, finn, gus = make_user("eve"), make_user("finn"), make_user("gus")
    joined(engine, challenge, eve, finn, gus)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        team = team_of(s, ch, eve)
        assert team is not None
        rename_team(s, team=team, actor=s.get(User, eve.id), name="Quarks")  # type: ignore[arg-type]
        inv = invite(s, challenge=ch, team=team, inviter=s.get(User, eve.id), invitee_name="finn")  # type: ignore[arg-type]
        inv_id = inv.id
    with session_scope(engine) as s:
        accept_invitation(s, invitation_id=inv_id, user=s.get(User, finn.id))  # type: ignore[arg-type]
    with Session(engine) as s:
        quarks = s.exec(select(Team).where(Team.name == "Quarks")).one()
        gus_team = s.exec(select(Team).where(Team.name == "gus")).one()
        phase = s.exec(select(Phase).where(Phase.challenge_id == challenge.id)).one()
    with httpx.Client(base_url=url) as http:
        token = _token(http, "finn")
        eve_headers = {"Authorization": f"Bearer {_token(http, 'eve')}"}
        body = perfect_submission(settings, challenge.slug).to_csv(index=False).encode()
        r = http.post(
            f"/api/challenges/{challenge.slug}/submissions?filename=eve.csv",
            content=body,
            headers=eve_headers,
        )
        assert r.status_code == 201, r.text
        eve_sub = r.json()["id"]
        teams_json = http.get(
            "/api/participants/participant_team", headers={"Authorization": f"Bearer {token}"}
        ).json()["results"]
    stub_worker.drain()
    assert [(t["id"], t["team_name"], t["created_by"]) for t in teams_json] == [
        (quarks.id, "Quarks", "eve")
    ]
    assert {m["member_name"]: m["status"] for m in teams_json[0]["members"]} == {
        "eve": "Accepted",
        "finn": "Self",
    }
    evalai = EvalAI(tmp_path)
    evalai("host", "-sh", url)
    evalai("set_token", token)
    teams = evalai("teams", "--participant")
    assert "Quarks" in teams
    assert f"/c/{challenge.slug}/team" in teams
    assert "eve, finn" in teams
    assert evalai("challenges", "--participant").count("Test HiggsML") == 1
    # Another team's id is refused; finn's own team (or user id) is accepted.
    out = evalai(
        "challenge", str(challenge.id), "participate", str(gus_team.id), stdin="y\n", code=1
    )
    assert "is not yours" in out
    assert "is now participating" in evalai(
        "challenge", str(challenge.id), "participate", str(quarks.id), stdin="y\n"
    )
    # Finn sees the team's submissions, eve's included, and can open eve's.
    listing = evalai("challenge", str(challenge.id), "phase", str(phase.id), "submissions")
    assert str(eve_sub) in listing
    assert "finished" in evalai("submission", str(eve_sub))
    board = evalai("challenge", str(challenge.id), "leaderboard", str(phase.id * 2 - 1))
    assert "Quarks" in board
    # Gus, not in the team, cannot open it.
    with httpx.Client(base_url=url) as http:
        gus_headers = {"Authorization": f"Bearer {_token(http, 'gus')}"}
        assert http.get(f"/api/jobs/submission/{eve_sub}", headers=gus_headers).status_code == 406
