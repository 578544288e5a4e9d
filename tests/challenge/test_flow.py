"""The walking skeleton end to end over ASGI: register, join, download, submit, score, leaderboard."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from sqlmodel import Session, select

from challenge.models import MailOutbox, Participation, Submission
from tests.challenge.conftest import csrf_of, login, perfect_submission, random_submission


def _upload(client, slug: str, frame: pd.DataFrame | bytes, name: str = "pred.csv"):  # type: ignore[no-untyped-def]
    body = frame if isinstance(frame, bytes) else frame.to_csv(index=False).encode()
    token = csrf_of(client, f"/c/{slug}")
    return client.post(
        f"/c/{slug}/submit",
        data={"csrf_token": token, "message": "first try"},
        files={"file": (name, body, "text/csv")},
        follow_redirects=False,
    )


def _join(client, slug: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        f"/c/{slug}/join",
        data={"csrf_token": csrf_of(client, f"/c/{slug}"), "accept": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_register_join_download_submit_and_rank(
    client, make_challenge, settings, engine, stub_worker
):  # type: ignore[no-untyped-def]
    challenge = make_challenge()
    token = csrf_of(client, "/register")
    r = client.post(
        "/register",
        data={
            "username": "alice",
            "email": "alice@example.org",
            "password": "correct horse battery",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert r.status_code == 200
    assert "Check your e-mail" in r.text
    # The link in the confirmation mail finishes the registration and logs in.
    with Session(engine) as session:
        mail = session.exec(select(MailOutbox)).one()
    assert mail.to_addr == "alice@example.org"
    link = re.search(r"\{base_url\}(/register/confirm/\S+)", mail.body).group(1)  # type: ignore[union-attr]
    r = client.post(link, data={"csrf_token": csrf_of(client, link)}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/c/{challenge.slug}")
    assert "Join the challenge" in page.text
    _join(client, challenge.slug)
    with Session(engine) as session:
        part = session.exec(select(Participation)).one()
        assert part.accepted_rules_at is not None

    train = client.get(f"/c/{challenge.slug}/data/train.parquet?format=csv")
    assert train.status_code == 200
    train_df = pd.read_csv(io.BytesIO(train.content))
    assert {"Label", "Weight"} <= set(train_df.columns)
    test = client.get(f"/c/{challenge.slug}/data/test.parquet?format=csv")
    test_df = pd.read_csv(io.BytesIO(test.content))
    assert "Label" not in test_df.columns
    assert "Weight" not in test_df.columns
    assert set(train_df["EventId"]).isdisjoint(test_df["EventId"])
    sums = client.get(f"/c/{challenge.slug}/data/SHA256SUMS").text
    assert "train.csv" in sums
    assert "test.parquet" in sums

    r = _upload(client, challenge.slug, perfect_submission(settings, challenge.slug))
    assert r.status_code == 303, r.text
    with Session(engine) as session:
        sub = session.exec(select(Submission)).one()
        assert sub.status in ("received", "scoring", "scored")
    stub_worker.drain()
    with Session(engine) as session:
        sub = session.exec(select(Submission)).one()
        assert sub.status == "scored", (sub.error_message, sub.error_detail)
        assert sub.public_score is not None
        assert sub.public_score > 1.0
        assert sub.private_score is not None
        assert (
            sub.public_ci_low is not None
        )
        assert (
            sub.public_ci_low <= sub.public_score <= sub.public_ci_high
        )
    rows = client.get(f"/c/{challenge.slug}/submissions").text
    assert "scored" in rows
    assert f"{sub.public_score:.5f}" in rows
    board = client.get(f"/c/{challenge.slug}/leaderboard").text
    assert "alice" in board
    assert f"{sub.public_score:.5f}" in board
    # The private board stays hidden while the phase is open.
    assert client.get(f"/c/{challenge.slug}/leaderboard?board=private").status_code == 404


def test_malformed_csv_names_problem_and_keeps_quota(
    client, make_challenge, make_user, settings, engine, stub_worker
):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=2)
    make_user("bob")
    login(client, "bob")
    _join(client, challenge.slug)
    good = random_submission(settings, challenge.slug)
    cases = {
        "missing column": good.drop(columns=["Class"]),
        "duplicate ids": pd.concat([good, good.head(3)]),
        "unknown ids": good.assign(EventId=good["EventId"] + 10_000_000),
    }
    # A pending upload holds its quota slot until it is validated; an invalid one gives it back.
    for _, frame in cases.items():
        assert _upload(client, challenge.slug, frame).status_code == 303
        stub_worker.drain()
    assert _upload(client, challenge.slug, b"EventId,RankOrder,Class\n1,nan,s\n").status_code == 303
    stub_worker.drain()
    with Session(engine) as session:
        subs = session.exec(select(Submission).order_by(Submission.id)).all()  # type: ignore[arg-type]
        assert [s.status for s in subs] == ["invalid"] * 4
        messages = [s.error_message for s in subs]
    assert "Class" in messages[0]
    assert "duplicate" in messages[1].lower() or "appears on lines 2, 1502" in messages[1]
    assert "unknown" in messages[2].lower() or "not in the test" in messages[2].lower()
    assert all(m for m in messages)
    page = client.get(f"/c/{challenge.slug}").text
    assert "2 submissions left today" in page
    # Two valid uploads use the quota; the third is refused with the reset time.
    assert _upload(client, challenge.slug, good).status_code == 303
    assert _upload(client, challenge.slug, good).status_code == 303
    r = _upload(client, challenge.slug, good)
    assert r.status_code == 429
    assert "resets" in r.text


def test_upload_before_join_and_oversized_are_refused(client, make_challenge, make_user, settings):  # type: ignore[no-untyped-def]
    challenge = make_challenge(file_mb=1)
    make_user("carol")
    login(client, "carol")
    r = _upload(client, challenge.slug, random_submission(settings, challenge.slug))
    assert r.status_code == 403
    _join(client, challenge.slug)
    r = _upload(client, challenge.slug, b"x" * (2 * 1024 * 1024))
    assert r.status_code == 413
    assert "limit of 1 MB" in r.text
    assert not any(settings.submissions_dir.glob("*/*[!.]*.csv"))


def test_forms_require_csrf(client, make_challenge, make_user):  # type: ignore[no-untyped-def]
    challenge = make_challenge()
    make_user("dave")
    login(client, "dave")
    r = client.post(f"/c/{challenge.slug}/join", data={"accept": "yes"}, follow_redirects=False)
    assert r.status_code == 400
    r = client.post(
        f"/c/{challenge.slug}/join",
        data={"accept": "yes", "csrf_token": csrf_of(client)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403


@pytest.mark.parametrize("path", ["/c/test-higgs/data/train.parquet", "/c/test-higgs/submissions"])
def test_data_needs_login_and_join(client, make_challenge, make_user, path):  # type: ignore[no-untyped-def]
    make_challenge()
    assert client.get(path, follow_redirects=False).status_code in (303, 404)
    make_user("erin")
    login(client, "erin")
    assert client.get(path, headers={"Accept": "application/json"}).status_code in (
        404,
    ) or path.endswith("submissions")


def test_api_token_submit_and_poll(client, make_challenge, make_user, settings, engine, stub_worker):  # type: ignore[no-untyped-def]
    """The CLI's path: token, join, raw-body upload, poll. A token use must not hold a DB lock."""
    from challenge.accounts import create_api_token
    from challenge.db import session_scope

    challenge = make_challenge()
    user = make_user("fay")
    with session_scope(engine) as session:
        token = create_api_token(session, user=user, name="cli")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post(f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["quota"]["left_today"] == 3
    body = random_submission(settings, challenge.slug).to_csv(index=False).encode()
    r = client.post(
        f"/api/challenges/{challenge.slug}/submissions",
        params={"filename": "pred.csv", "message": "api"},
        content=body,
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    sub_id = r.json()["id"]
    stub_worker.drain()
    r = client.get(f"/api/submissions/{sub_id}", headers=auth)
    assert r.json()["status"] == "scored"
    assert r.json()["public_score"] is not None
    # Unsafe API calls by cookie are refused (no CSRF exposure), and bad tokens get 401.
    by_cookie = client.post(f"/api/challenges/{challenge.slug}/join", json={"accept_rules": True})
    assert by_cookie.status_code == 401
    bad = client.get("/api/me", headers={"Authorization": "Bearer pod_nope"})
    assert bad.status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_checkin_form_only_with_an_onsite_code(client, make_challenge, make_user, engine):  # type: ignore[no-untyped-def]
    from challenge.db import session_scope
    from challenge.models import Phase

    challenge = make_challenge()
    make_user("gus")
    login(client, "gus")
    assert "Registering on site?" not in client.get(f"/c/{challenge.slug}").text
    with session_scope(engine) as session:
        phase = session.exec(select(Phase)).first()
        assert phase is not None
        phase.registration_code = "HIGGS-42"
        session.add(phase)
    assert "Registering on site?" in client.get(f"/c/{challenge.slug}").text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bundle_variants_are_published_as_training_files(  # type: ignore[no-untyped-def]
    client, make_challenge, make_user, settings, engine, tmp_path
):
    """A `tes` variant in the bundle gives a downloadable train-<name> file with shifted taus."""
    import datetime as dt

    from challenge.bundle import parse_bundle
    from challenge.challenges import create_challenge, prepare_challenge
    from challenge.db import session_scope
    from tests.challenge.conftest import bundle_text

    base = make_challenge()  # provides the data file next to its bundle
    folder = next(tmp_path.glob("bundle-*"))
    now = dt.datetime.now(dt.UTC)
    text = bundle_text("tes-higgs", now - dt.timedelta(days=1), now + dt.timedelta(days=9)).replace(
        "phases:", "variants:\n  - {name: tes-up, kind: tes, scale: 1.05}\nphases:"
    )
    (folder / "tes.yaml").write_text(text)
    with session_scope(engine) as session:
        challenge = create_challenge(session, bundle=parse_bundle(folder / "tes.yaml"), creator=None)
        prepare_challenge(settings, challenge, folder / "higgs.csv")
        session.add(challenge)
    assert [f["name"] for f in challenge.public_files][-1] == "train-tes-up.parquet"
    make_user("hal")
    login(client, "hal")
    _join(client, "tes-higgs")
    shifted = pd.read_csv(io.BytesIO(client.get("/c/tes-higgs/data/train-tes-up.parquet?format=csv").content))
    nominal = pd.read_csv(io.BytesIO(client.get("/c/tes-higgs/data/train.parquet?format=csv").content))
    both = nominal.merge(shifted, on="EventId", suffixes=("", "_up"))
    assert len(both) > 0.8 * len(nominal)  # the re-applied tau pT cut may drop a few events
    ratio = both["PRI_tau_pt_up"] / both["PRI_tau_pt"]
    assert ratio.round(6).eq(1.05).all()
    assert base.slug != "tes-higgs"
    assert client.get("/c/tes-higgs/data/solution.parquet").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_description_is_sanitized_markdown(client, make_challenge, engine):  # type: ignore[no-untyped-def]
    from challenge.db import session_scope
    from challenge.models import Challenge

    challenge = make_challenge()
    with session_scope(engine) as session:
        row = session.get(Challenge, challenge.id)
        assert row is not None
        row.description_md = "Submit `EventId,RankOrder,Class`.\n\n<script>alert(1)</script>\n\n**bold**"
        session.add(row)
    page = client.get(f"/c/{challenge.slug}").text
    assert "<code>EventId,RankOrder,Class</code>" in page
    assert "<strong>bold</strong>" in page
    assert "<script>alert(1)" not in page
