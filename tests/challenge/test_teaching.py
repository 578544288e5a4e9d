"""Teaching: classes cloned from finished challenges, invite codes, grades, the next term."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlmodel import Session, select

from challenge import storage
from challenge.cli import main
from challenge.models import Challenge, Classroom, ClassTerm, Phase, Submission
from challenge.teaching import DEFAULT_GRADE_RULE, check_grade_rule, grade_for
from tests.challenge.conftest import PASSWORD, csrf_of, login, perfect_submission

EVENTS = 2000


def _token(client: Any, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD, "name": "t"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _submit(client: Any, headers: dict[str, str], slug: str, frame: pd.DataFrame) -> int:
    r = client.post(
        f"/api/challenges/{slug}/submissions?filename=p.csv",
        content=frame.to_csv(index=False).encode(),
        headers=headers,
    )
    assert r.status_code == 201, r.text
    sub_id: int = r.json()["id"]
    return sub_id


def _old_label_submission(settings: Any, class_slug: str, higgs_csv: Path) -> pd.DataFrame:
    """What a student holding the source challenge's released labels would submit."""
    released = pd.read_csv(higgs_csv, usecols=["EventId", "Label"])
    test = pd.read_parquet(
        storage.public_dir(settings, class_slug) / "test.parquet", columns=["EventId"]
    )
    merged = test.merge(released, on="EventId", how="left").fillna({"Label": "b"})
    ranks = (merged["Label"] == "s").astype(float).rank(method="first").astype(int)
    return pd.DataFrame(
        {"EventId": merged["EventId"], "RankOrder": ranks, "Class": merged["Label"]}
    )


def _create_form(client: Any, **fields: str) -> Any:
    data = {"csrf_token": csrf_of(client, "/teach"), "title": "", "seed": "", **fields}
    return client.post("/teach", data=data, follow_redirects=False)


def test_class_from_a_finished_challenge(
    client: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Any,
    engine: Any,
    stub_worker: Any,
    higgs_csv: Path,
) -> None:
    running = make_challenge("still-running")
    source = make_challenge("higgs-2026", opens_days=-20, closes_days=-1)
    make_user("prof", role="organizer")
    make_user("rival", role="organizer")
    for name in ("ann", "ben", "cid"):
        make_user(name)
    login(client, "prof")
    page = client.get("/teach")
    assert page.status_code == 200
    assert "higgs-2026" in page.text
    assert "still-running" not in page.text.split("<select", 1)[1]
    times = {"opens": "2026-01-01T00:00", "closes": "2099-01-01T00:00"}
    r = _create_form(client, source=running.slug, slug="ml-101", **times)
    assert r.status_code == 400
    assert "only a finished challenge" in r.text
    r = _create_form(client, source=source.slug, slug="ml-101", seed="4242", **times)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/teach/ml-101"

    with Session(engine) as session:
        klass = session.exec(select(Challenge).where(Challenge.slug == "ml-101")).one()
        classroom = session.exec(select(Classroom)).one()
        term = session.exec(select(ClassTerm)).one()
    assert klass.is_listed is False
    assert klass.split["seed"] == 4242
    assert term.data_seed == 4242
    assert klass.created_by == classroom.instructor_id
    # Fresh simulated events: same columns and size as the source, different values.
    old = pd.read_parquet(storage.public_dir(settings, source.slug) / "train.parquet")
    new = pd.read_parquet(storage.public_dir(settings, "ml-101") / "train.parquet")
    assert list(old.columns) == list(new.columns)
    assert abs(len(old) - len(new)) <= 2
    both = old.merge(new, on="EventId", suffixes=("_old", "_new"))
    assert len(both) > 0
    assert (both["DER_mass_vis_old"] != both["DER_mass_vis_new"]).mean() > 0.99

    # Private: not listed, invisible before joining; joined with the invite code.
    assert "ml-101" not in [c["slug"] for c in client.get("/api/challenges").json()]
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "ann")
    assert client.get("/c/ml-101").status_code == 404
    r = client.post("/join", data={"csrf_token": csrf_of(client, "/join"), "code": "nope"})
    assert r.status_code == 404
    r = client.post(
        "/join",
        data={"csrf_token": csrf_of(client, "/join"), "code": classroom.invite_code},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/c/ml-101"
    assert client.get("/c/ml-101").status_code == 200

    # The released labels of the source are useless on the class's test set.
    ann = _token(client, "ann")
    cheat = _submit(client, ann, "ml-101", _old_label_submission(settings, "ml-101", higgs_csv))
    ben = _token(client, "ben")
    assert (
        client.post(
            "/api/challenges/ml-101/submissions?filename=p.csv", content=b"x", headers=ben
        ).status_code
        == 404
    )
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "ben")
    client.post(
        "/join", data={"csrf_token": csrf_of(client, "/join"), "code": classroom.invite_code}
    )
    honest = _submit(client, ben, "ml-101", perfect_submission(settings, "ml-101"))
    stub_worker.drain()
    with Session(engine) as session:
        cheat_row = session.get(Submission, cheat)
        honest_row = session.get(Submission, honest)
    assert cheat_row is not None
    assert honest_row is not None
    assert cheat_row.status == "scored"
    assert honest_row.status == "scored"
    assert cheat_row.private_score < 0.5 * honest_row.private_score  # type: ignore[operator]

    # Grades: ranked on the private score, default rule by rank percentile.
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "cid")
    client.post(
        "/join", data={"csrf_token": csrf_of(client, "/join"), "code": classroom.invite_code}
    )
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "prof")
    r = client.get("/teach/ml-101/grades.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    # Two ranked of three on the roster: rank 1 has nobody ahead (position 0 %: "A"), rank 2
    # everybody (100 %: "D"); a student without a scored submission gets the rule's "none" grade.
    assert [(x["username"], x["rank"], x["grade"], x["submissions"]) for x in rows] == [
        ("ben", "1", "A", "1"),
        ("ann", "2", "D", "1"),
        ("cid", "", "F", "0"),
    ]
    assert rows[0]["username"] == "ben"
    assert rows[0]["grade"] == "A"  # the best of two: nobody ahead
    assert rows[1]["grade"] == "D"
    assert rows[2]["grade"] == "F"
    assert rows[2]["rank"] == ""
    assert float(rows[0]["best_private"]) == pytest.approx(honest_row.private_score, abs=1e-5)
    assert "ann" in client.get("/teach/ml-101").text
    # A custom rule: thresholds on the private score.
    rule = {"kind": "threshold", "on": "private", "cuts": [[1.0, "pass"]], "none": "absent"}
    r = client.post(
        "/teach/ml-101/rule",
        data={"csrf_token": csrf_of(client, "/teach/ml-101"), "rule": json.dumps(rule)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    grades = {
        x["username"]: x["grade"]
        for x in csv.DictReader(io.StringIO(client.get("/teach/ml-101/grades.csv").text))
    }
    expected_ann = "pass" if cheat_row.private_score >= 1.0 else "absent"  # type: ignore[operator]
    assert grades == {"ben": "pass", "ann": expected_ann, "cid": "absent"}
    r = client.post(
        "/teach/ml-101/rule",
        data={"csrf_token": csrf_of(client, "/teach/ml-101"), "rule": '{"kind": "curve"}'},
    )
    assert r.status_code == 400
    assert "rank_percent, threshold or linear" in r.text

    # Another instructor sees nothing.
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login(client, "rival")
    assert client.get("/teach/ml-101").status_code == 404
    assert client.get("/teach/ml-101/grades.csv").status_code == 404


@pytest.fixture
def cli_env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODIUM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PODIUM_LABEL_DIR", str(settings.label_dir))


def test_cli_create_grades_and_reset_for_next_term(
    cli_env: None,
    client: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Any,
    engine: Any,
    stub_worker: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    make_challenge("higgs-2026", opens_days=-20, closes_days=-1)
    make_user("prof", role="organizer")
    make_user("dora")
    args = [
        "higgs-2026",
        "stat-201",
        "--opens",
        "2026-01-01T00:00Z",
        "--closes",
        "2099-01-01T00:00Z",
    ]
    assert main(["class", "create", *args, "--events", str(EVENTS), "--seed", "7"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["events"] == EVENTS
    assert main(["class", "create", *args]) == 4  # the slug is taken
    assert "taken" in capsys.readouterr().err

    dora = _token(client, "dora")
    with Session(engine) as session:
        from challenge.models import User
        from challenge.teaching import join_class

        user = session.exec(select(User).where(User.username == "dora")).one()
        join_class(session, code=created["invite_code"], user=user)
        session.commit()
    first = _submit(client, dora, "stat-201", perfect_submission(settings, "stat-201"))
    stub_worker.drain()
    old_test = pd.read_parquet(storage.public_dir(settings, "stat-201") / "test.parquet")

    assert (
        main(
            [
                "class",
                "reset",
                "stat-201",
                "--opens",
                "2026-01-01T00:00Z",
                "--closes",
                "2099-06-01T00:00Z",
                "--seed",
                "7",
            ]
        )
        == 4
    )
    assert "different seed" in capsys.readouterr().err
    assert (
        main(
            [
                "class",
                "reset",
                "stat-201",
                "--opens",
                "2026-01-01T00:00Z",
                "--closes",
                "2099-06-01T00:00Z",
                "--seed",
                "8",
            ]
        )
        == 0
    )
    reset = json.loads(capsys.readouterr().out)
    assert reset["term"] == 2
    assert reset["invite_code"] != created["invite_code"]
    new_test = pd.read_parquet(storage.public_dir(settings, "stat-201") / "test.parquet")
    assert not old_test["PRI_tau_pt"].head(50).equals(new_test["PRI_tau_pt"].head(50))

    with Session(engine) as session:
        phases = session.exec(select(Phase).order_by(Phase.position)).all()  # type: ignore[arg-type]
        klass_phases = [p for p in phases if p.name.startswith("term")]
        archived = session.get(Submission, first)
    assert [(p.name, p.accepts_submissions) for p in klass_phases] == [
        ("term 1 (archived)", False),
        ("term 2", True),
    ]
    assert archived is not None
    assert archived.status == "scored"  # archived, not deleted

    # Term 1's grades are still there; term 2's roster starts empty; the old code is dead.
    out = tmp_path / "t1.csv"
    assert main(["class", "grades", "stat-201", "--term", "1", "--out", str(out)]) == 0
    term1 = list(csv.DictReader(out.open()))
    assert [(r["username"], r["rank"], r["submissions"]) for r in term1] == [("dora", "1", "1")]
    assert main(["class", "grades", "stat-201"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "username,email,submissions,best_public,best_private,rank,grade"
    ]
    assert main(["class", "grades", "stat-201", "--term", "9"]) == 4
    with Session(engine) as session:
        from challenge.models import User
        from challenge.teaching import join_class

        user = session.exec(select(User).where(User.username == "dora")).one()
        with pytest.raises(Exception, match="invite code"):
            join_class(session, code=created["invite_code"], user=user)
    # Submissions now go to term 2, scored against the new data.
    second = _submit(client, dora, "stat-201", perfect_submission(settings, "stat-201"))
    stub_worker.drain()
    with Session(engine) as session:
        row = session.get(Submission, second)
    assert row is not None
    assert row.status == "scored"
    assert row.phase_id == klass_phases[1].id


def test_rank_grades_by_position_in_classes_of_one_two_and_thirty() -> None:
    """(rank - 1) / (n - 1): the best student is at 0 %, the last at 100 %, alone means best."""
    rule = check_grade_rule(DEFAULT_GRADE_RULE)  # A: top 10 %, B: 30 %, C: 60 %, D: the rest

    def grades(ranks: list[int], n: int) -> list[str]:
        return [grade_for(rule, 1.0, r, n, True) for r in ranks]

    assert grades([1], 1) == ["A"]  # the only student (rank/n said 100 %: a D)
    assert grades([1, 2], 2) == ["A", "D"]
    assert grades([1, 1], 2) == ["A", "A"]  # tied for first
    thirty = grades(list(range(1, 31)), 30)
    # positions 0, 3.4, 6.9, 10.3 ...: 3 A (10 % of 30), 6 B, 9 C, 12 D
    assert [thirty.count(g) for g in "ABCD"] == [3, 6, 9, 12]
    assert thirty[0] == "A"
    assert thirty[-1] == "D"
    assert thirty == sorted(thirty)  # never a better grade below a worse one


def test_grade_rules() -> None:
    rank_rule = check_grade_rule({"kind": "rank_percent", "bands": [[25, "A"], [100, "B"]]})
    assert [grade_for(rank_rule, 1.0, r, 4, True) for r in (1, 2, 3, 4)] == ["A", "B", "B", "B"]
    assert grade_for(rank_rule, None, None, 4, True) == "F"
    cuts = check_grade_rule({"kind": "threshold", "cuts": [[0.2, "A"], [0.5, "B"]], "none": "-"})
    assert grade_for(cuts, 0.1, 1, 3, False) == "A"  # lower is better: under 0.2
    assert grade_for(cuts, 0.4, 2, 3, False) == "B"
    assert grade_for(cuts, 0.9, 3, 3, False) == "-"
    linear = check_grade_rule({"kind": "linear", "worst": 1.0, "best": 3.0, "points": 20})
    assert grade_for(linear, 2.0, 1, 1, True) == "10.0"
    assert grade_for(linear, 9.0, 1, 1, True) == "20.0"
    for bad, message in [
        ({"kind": "rank_percent", "bands": [[50, "A"], [20, "B"]]}, "ascending"),
        ({"kind": "rank_percent", "bands": [[50, "A"]]}, "reach 100"),
        ({"kind": "linear", "worst": 1, "best": 1}, "differ"),
        ({"kind": "threshold", "cuts": [], "on": "private"}, "at least one"),
        ({"kind": "threshold", "cuts": [[1, "A"]], "on": "train"}, "'on'"),
    ]:
        with pytest.raises(Exception, match=message):
            check_grade_rule(bad)


def _higgs_versions(settings: Any, higgs_csv: Path, tmp_path: Path) -> None:
    """Dataset 'higgs': version 1 is what the source split; version 2 adds 2000 rows it never had."""
    from splitter.datasets import DatasetStore
    from splitter.generate import generate_higgs

    store = DatasetStore(settings.datasets_dir)
    store.add([higgs_csv], "higgs")
    old = pd.read_csv(higgs_csv)
    extra = generate_higgs(2000, seed=99)
    extra["EventId"] = extra["EventId"] - extra["EventId"].min() + old["EventId"].max() + 1
    v2 = tmp_path / "v2" / "higgs.csv"
    v2.parent.mkdir()
    pd.concat([old, extra[old.columns]], ignore_index=True).to_csv(v2, index=False)
    store.add([v2], "higgs")


def test_class_resplit_from_held_back_rows(
    client: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Any,
    engine: Any,
    stub_worker: Any,
    higgs_csv: Path,
    tmp_path: Path,
) -> None:
    from challenge.models import User
    from challenge.teaching import join_class, reset_class
    from tests.challenge.conftest import random_submission

    source = make_challenge("higgs-2026", opens_days=-20, closes_days=-1)
    _higgs_versions(settings, higgs_csv, tmp_path)
    with Session(engine) as session:
        row = session.get(Challenge, source.id)
        assert row is not None
        row.dataset_ref = "higgs:1"
        session.add(row)
        session.commit()
    make_user("prof", role="organizer")
    for name in ("ann", "ben", "cid"):
        make_user(name)
    login(client, "prof")
    times = {"opens": "2026-01-01T00:00", "closes": "2099-01-01T00:00"}
    # The source split every row of its own dataset: nothing was held back.
    r = _create_form(client, source=source.slug, slug="ml-201", data="held-back", **times)
    assert r.status_code == 400
    assert "0 row(s) that &#39;higgs-2026&#39; never published" in r.text
    r = _create_form(
        client, source=source.slug, slug="ml-201", data="held-back", dataset="higgs:2", **times
    )
    assert r.status_code == 303, r.text

    released = set(pd.read_csv(higgs_csv, usecols=["EventId"])["EventId"])  # the full release
    public = storage.public_dir(settings, "ml-201")
    class_test = set(pd.read_parquet(public / "test.parquet", columns=["EventId"])["EventId"])
    class_train = set(pd.read_parquet(public / "train.parquet", columns=["EventId"])["EventId"])
    solution = pd.read_parquet(storage.solution_path(settings, "ml-201"))
    assert len(class_test) + len(class_train) == 2000
    assert not class_test & released
    assert not class_train & released
    assert set(solution["EventId"]) == class_test
    with Session(engine) as session:
        klass = session.exec(select(Challenge).where(Challenge.slug == "ml-201")).one()
        classroom = session.exec(select(Classroom)).one()
    assert klass.dataset_ref == "held-back:higgs:2"
    assert klass.split["train"] == pytest.approx(0.5)

    # Released labels are worth chance on the class's test set; honest work is not.
    scores = {}
    for name, frame in [
        ("ann", _old_label_submission(settings, "ml-201", higgs_csv)),
        ("ben", perfect_submission(settings, "ml-201")),
        ("cid", random_submission(settings, "ml-201", seed=3)),
    ]:
        with Session(engine) as session:
            user = session.exec(select(User).where(User.username == name)).one()
            join_class(session, code=classroom.invite_code, user=user)
            session.commit()
        scores[name] = _submit(client, _token(client, name), "ml-201", frame)
    stub_worker.drain()
    with Session(engine) as session:
        got = {n: session.get(Submission, i) for n, i in scores.items()}
    assert all(s is not None and s.status == "scored" for s in got.values())
    cheat, honest, chance = (got[n].private_score for n in ("ann", "ben", "cid"))  # type: ignore[union-attr]
    assert cheat is not None
    assert honest is not None
    assert chance is not None
    assert cheat < 0.2 * honest
    assert abs(cheat - chance) < 0.2 * honest

    # The next term re-splits the held-back rows minus the training rows term 1 handed out.
    with Session(engine) as session:
        room = session.exec(select(Classroom)).one()
        reset_class(
            session,
            settings,
            classroom=room,
            opens=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            closes=dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
            seed=12,
        )
        session.commit()
    test2 = set(pd.read_parquet(public / "test.parquet", columns=["EventId"])["EventId"])
    train2 = set(pd.read_parquet(public / "train.parquet", columns=["EventId"])["EventId"])
    assert len(test2) + len(train2) == 2000 - len(class_train)
    assert not (test2 | train2) & (released | class_train)


def test_cli_held_back_class_names_the_dataset_problem(
    cli_env: None,
    make_challenge: Any,
    make_user: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_challenge("higgs-2026", opens_days=-20, closes_days=-1)  # its dataset is a bare file
    make_user("prof", role="organizer")
    args = [
        "higgs-2026",
        "stat-301",
        "--opens",
        "2026-01-01T00:00Z",
        "--closes",
        "2099-01-01T00:00Z",
    ]
    assert main(["class", "create", *args, "--held-back", "--owner", "prof"]) == 4
    err = capsys.readouterr().err
    assert "Dataset 'higgs.csv' cannot be read" in err
    assert "NAME:N" in err
    assert main(["class", "create", *args, "--held-back", "--dataset", "nope:1"]) == 4
    assert "Dataset 'nope:1' cannot be read" in capsys.readouterr().err


def test_only_own_or_public_reusable_challenges_can_be_cloned(
    cli_env: None,
    client: Any,
    make_challenge: Any,
    make_user: Any,
    settings: Any,
    engine: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another organizer's unlisted challenge, or one whose licence forbids reuse, answers like a
    missing one: nothing is created and no file of it is published to the refused instructor."""
    from challenge.models import User

    prof = make_user("prof", role="organizer")
    rival = make_user("rival", role="organizer")
    finished = {"opens_days": -20, "closes_days": -1}
    make_challenge("rival-unlisted", owner=rival, **finished)
    make_challenge("rival-nc", owner=rival, **finished)
    make_challenge("rival-open", owner=rival, **finished)
    make_challenge("prof-own", owner=prof, **finished)
    with Session(engine) as session:
        for slug, listed, licence in [
            ("rival-unlisted", False, "CC-BY-4.0"),
            ("rival-nc", True, "CC-BY-NC-4.0"),
            ("prof-own", False, "Proprietary"),
        ]:
            row = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
            row.is_listed, row.license = listed, licence
            session.add(row)
        session.commit()
    login(client, "prof")
    offered = client.get("/teach").text.split("<select", 1)[1].split("</select>", 1)[0]
    assert "prof-own" in offered
    assert "rival-open" in offered
    assert "rival-unlisted" not in offered
    assert "rival-nc" not in offered

    times = {"opens": "2026-01-01T00:00", "closes": "2099-01-01T00:00"}
    missing = _create_form(client, source="no-such", slug="k1", **times)
    assert missing.status_code == 404
    for source in ("rival-unlisted", "rival-nc"):
        r = _create_form(client, source=source, slug="k1", **times)
        assert r.status_code == 404, source
        assert r.text.replace(source, "no-such") == missing.text
        assert "that you may clone" in r.text
    cli = ["class", "create", "rival-unlisted", "k1", "--opens", "2026-01-01T00:00Z"]
    assert main([*cli, "--closes", "2099-01-01T00:00Z", "--owner", "prof"]) == 4
    assert "No challenge 'rival-unlisted' that you may clone" in capsys.readouterr().err
    with Session(engine) as session:
        assert session.exec(select(Challenge).where(Challenge.slug == "k1")).first() is None
        assert session.exec(select(Classroom)).all() == []
    assert not storage.public_dir(settings, "k1").exists()
    assert not storage.label_dir(settings, "k1").exists()

    # One's own (even unlisted, any licence) and public reusable ones are cloned.
    for n, source in enumerate(("prof-own", "rival-open")):
        r = _create_form(client, source=source, slug=f"ok-{n}", **times)
        assert r.status_code == 303, r.text
    # An admin may clone anything finished.
    make_user("root", role="admin")
    cli = ["class", "create", "rival-nc", "k2", "--opens", "2026-01-01T00:00Z"]
    assert main([*cli, "--closes", "2099-01-01T00:00Z", "--owner", "root"]) == 0
    with Session(engine) as session:
        owners = {
            c.slug: session.get(User, c.created_by).username  # type: ignore[union-attr]
            for c in session.exec(select(Challenge)).all()
            if c.slug in ("ok-0", "ok-1", "k2")
        }
    assert owners == {"ok-0": "prof", "ok-1": "prof", "k2": "root"}


@pytest.mark.parametrize(
    ("licence", "reusable"),
    [
        ("CC-BY-4.0", True),
        ("cc-by-sa-4.0", True),
        ("CC0-1.0", True),
        ("ODbL-1.0", True),
        ("MIT", True),
        ("Apache-2.0", True),
        ("CC-BY-NC-4.0", False),
        ("CC-BY-ND-4.0", False),
        ("CC-BY-NC-SA-4.0", False),
        ("", False),
        ("Proprietary", False),
        ("CC-BY-4.0 plus our terms", False),
    ],
)
def test_licences_that_allow_reuse(licence: str, reusable: bool) -> None:
    from challenge.teaching import licence_allows_reuse

    assert licence_allows_reuse(licence) is reusable
