"""The holdout ledger (issue #10 §1): no row hidden in a challenge is published with its label.

Each test drives one publication path and checks both the refusal (which names the holding
challenge and the number of rows) and that nothing was published; then, where it applies, that
an admin's override is possible only after the reveal and lands in the audit log.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from challenge import storage
from challenge.bundle import parse_bundle
from challenge.challenges import create_challenge, prepare_challenge, publish_variants
from challenge.cli import main
from challenge.db import session_scope
from challenge.ledger import HoldoutRefused, check_publication, ledger_of
from challenge.models import AuditEvent, Challenge, Phase, utcnow
from challenge.settings import Settings
from splitter.datasets import DatasetStore
from splitter.generate import generate_higgs
from tests.challenge.conftest import bundle_text

ROWS_RE = r"(\d+) row\(s\) hidden in challenge '{slug}'"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`podium` commands run in this process see the same database and folders as the test."""
    monkeypatch.setenv("PODIUM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PODIUM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PODIUM_LABEL_DIR", str(settings.label_dir))
    return settings


def _bundle(tmp_path: Path, slug: str, data: Path, extra: str = "") -> Path:
    now = dt.datetime.now(dt.UTC)
    folder = tmp_path / f"bundle-{slug}"
    folder.mkdir()
    (folder / "higgs.csv").symlink_to(data)
    text = bundle_text(slug, now - dt.timedelta(days=1), now + dt.timedelta(days=10)) + extra
    # Another seed than the fixture's: the same rows split the same way would hide the same rows.
    text = text.replace("seed: 7,", "seed: 8,")
    (folder / "challenge.yaml").write_text(text)
    return folder / "challenge.yaml"


def _create(settings: Settings, engine: sa.Engine, bundle: Path) -> Challenge:
    with session_scope(engine) as session:
        challenge = create_challenge(session, bundle=parse_bundle(bundle), creator=None)
        prepare_challenge(settings, challenge, bundle.parent / "higgs.csv", session=session)
        session.add(challenge)
    return challenge


def _test_ids(settings: Settings, slug: str) -> set[int]:
    path = storage.public_dir(settings, slug) / "test.parquet"
    return set(pd.read_parquet(path, columns=["EventId"])["EventId"])


def _reveal(engine: sa.Engine, slug: str) -> None:
    """Close every phase of the challenge and reveal its private board (what the reveal rule,
    private_scores_visible, asks before the holdout ledger lets go of the rows)."""
    with Session(engine) as session:
        row = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        for phase in session.exec(select(Phase).where(Phase.challenge_id == row.id)):
            phase.closes_at = utcnow() - dt.timedelta(minutes=1)
            session.add(phase)
        row.revealed_at = utcnow()
        session.add(row)
        session.commit()


def _rows_named(message: str, slug: str) -> int:
    match = re.search(ROWS_RE.format(slug=slug), message)
    assert match, message
    return int(match.group(1))


def _audit(engine: sa.Engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent)))


def test_challenge_from_another_running_challenges_rows_is_refused(
    settings: Settings,
    engine: sa.Engine,
    make_challenge: Any,
    higgs_csv_for: Any,
    tmp_path: Path,
) -> None:
    make_challenge("first")
    bundle = _bundle(tmp_path, "second", higgs_csv_for("first"))
    with pytest.raises(HoldoutRefused) as refused:
        _create(settings, engine, bundle)
    # The count is exact: the first challenge's test rows among the second's training rows.
    tmp_train = storage.public_dir(settings, "second").with_name("second.tmp") / "train.parquet"
    train_ids = set(pd.read_parquet(tmp_train, columns=["EventId"])["EventId"])
    expected = len(train_ids & _test_ids(settings, "first"))
    assert expected > 0
    assert _rows_named(refused.value.message, "first") == expected
    assert refused.value.status_code == 409
    # Nothing was published, nothing recorded for the refused challenge.
    assert not storage.public_dir(settings, "second").exists()
    assert "second" not in ledger_of(settings).holders()
    with Session(engine) as session:
        assert session.exec(select(Challenge).where(Challenge.slug == "second")).first() is None

    # A copy of the same rows under new ids and a new order is caught by content.
    copy = pd.read_csv(higgs_csv_for("first")).sample(frac=1, random_state=1)
    copy["EventId"] += 5_000_000
    path = tmp_path / "copy.csv"
    copy.to_csv(path, index=False)
    with pytest.raises(HoldoutRefused, match="hidden in challenge 'first'"):
        _create(settings, engine, _bundle(tmp_path, "third", path))
    # Rows of its own: fine.
    _create(settings, engine, _bundle(tmp_path, "fourth", higgs_csv_for("fourth")))
    assert "fourth" in ledger_of(settings).holders()


def test_own_test_rows_repeated_in_own_train_are_refused(
    settings: Settings, engine: sa.Engine, tmp_path: Path
) -> None:
    frame = generate_higgs(2000, seed=31)
    twice = pd.concat([frame, frame.assign(EventId=frame["EventId"] + 10_000)])
    path = tmp_path / "twice.csv"
    twice.to_csv(path, index=False)
    with pytest.raises(HoldoutRefused, match=r"training row\(s\) have the same feature values"):
        _create(settings, engine, _bundle(tmp_path, "dup", path))
    assert not storage.public_dir(settings, "dup").exists()


def test_variant_rows_are_checked_before_the_shift(
    settings: Settings, engine: sa.Engine, make_challenge: Any, higgs_csv_for: Any, tmp_path: Path
) -> None:
    make_challenge("holder")
    public = tmp_path / "public"
    public.mkdir()
    # A training file made of the holder's data: its TES-shifted variant matches nothing by
    # content, so the variant path must look at the rows before the shift.
    pq.write_table(
        pa.Table.from_pandas(pd.read_csv(higgs_csv_for("holder")), preserve_index=False),
        public / "train.parquet",
    )
    with Session(engine) as session:

        def guard(frame: pd.DataFrame, what: str) -> None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            check_publication(session, settings, table, what=what, before_shift=True)

        with pytest.raises(HoldoutRefused) as refused:
            publish_variants(public, [{"name": "tes-up", "kind": "tes", "scale": 1.03}],
                             guard=guard)
    assert _rows_named(refused.value.message, "holder") == len(_test_ids(settings, "holder"))
    assert not (public / "train-tes-up.parquet").exists()


def test_held_back_class_with_rows_hidden_elsewhere_is_refused(
    settings: Settings,
    engine: sa.Engine,
    make_challenge: Any,
    make_user: Any,
    higgs_csv_for: Any,
    tmp_path: Path,
) -> None:
    from challenge.teaching import create_class

    source = make_challenge("source", opens_days=-20, closes_days=-1)
    _reveal(engine, "source")
    # A dataset version holding the source's rows and 2000 rows the source never published...
    extra = generate_higgs(2000, seed=77)
    extra["EventId"] += 1_000_000
    both = pd.concat([pd.read_csv(higgs_csv_for("source")), extra])
    pool = tmp_path / "pool.csv"
    both.to_csv(pool, index=False)
    DatasetStore(settings.datasets_dir).add([pool], "pool")
    # ...of which another running challenge hides some.
    extra_path = tmp_path / "extra.csv"
    extra.to_csv(extra_path, index=False)
    _create(settings, engine, _bundle(tmp_path, "running", extra_path))
    prof = make_user("prof", role="organizer")
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(HoldoutRefused) as refused, session_scope(engine) as session:
        create_class(
            session,
            settings,
            source_slug=source.slug,
            slug="ml-101",
            instructor=prof,
            opens=now,
            closes=now + dt.timedelta(days=30),
            seed=3,
            data="held-back",
            dataset="pool:1",
        )
    assert _rows_named(refused.value.message, "running") > 0
    assert not storage.public_dir(settings, "ml-101").exists()
    with Session(engine) as session:
        assert session.exec(select(Challenge).where(Challenge.slug == "ml-101")).first() is None


def test_cli_dataset_add_and_release_refuse_hidden_labelled_rows(
    cli_env: Settings,
    make_challenge: Any,
    higgs_csv_for: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    make_challenge("holder")
    hidden = len(_test_ids(settings, "holder"))
    # The same file under another dataset name, with labels: refused, naming the challenge.
    assert main(["dataset", "add", str(higgs_csv_for("holder")), "--name", "again"]) == 3
    err = capsys.readouterr().err
    assert _rows_named(err, "holder") == hidden
    assert not (settings.datasets_dir / "again").exists()
    # Without labels or weights (what the test file itself gives away): fine.
    features = tmp_path / "features.parquet"
    pd.read_csv(higgs_csv_for("holder")).drop(columns=["Label", "Weight"]).to_parquet(features)
    assert main(["dataset", "add", str(features), "--name", "features"]) == 0
    capsys.readouterr()

    # `dataset release` of a folder holding a labelled copy: refused, nothing exported.
    public = tmp_path / "to-release"
    public.mkdir()
    pd.read_csv(higgs_csv_for("holder")).to_parquet(public / "train.parquet")
    meta = tmp_path / "release.yaml"
    meta.write_text("title: Leak\ncreators: [Someone]\n")
    out = tmp_path / "release"
    assert main(["dataset", "release", "--public", str(public), "--out", str(out),
                 "--metadata", str(meta)]) == 3
    assert _rows_named(capsys.readouterr().err, "holder") == hidden
    assert not out.exists()

    # `podium variant` of those rows: checked before the shift.
    shifted = tmp_path / "shifted.parquet"
    assert main(["variant", "tes", str(public / "train.parquet"), str(shifted),
                 "--set", "scale=1.03"]) == 3
    assert _rows_named(capsys.readouterr().err, "holder") == hidden
    assert not shifted.exists()


def test_cli_derived_version_caught_by_lineage(
    cli_env: Settings,
    engine: sa.Engine,
    higgs_csv_for: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    assert main(["dataset", "add", str(higgs_csv_for("base")), "--name", "higgs"]) == 0
    capsys.readouterr()
    bundle = _bundle(tmp_path, "lineage", higgs_csv_for("base"))
    bundle.write_text(bundle.read_text().replace("dataset: higgs.csv", "dataset: higgs:1"))
    assert main(["challenge", "create", str(bundle)]) == 0
    capsys.readouterr()
    hidden = len(_test_ids(settings, "lineage"))
    # A TES-shifted copy keeps the ids but no feature value: as a new version of the dataset the
    # challenge split, it is refused by lineage; under an unrelated name the shift itself (podium
    # variant) is where the ledger catches it.
    shifted = tmp_path / "shifted.parquet"
    from splitter.commands import run_variant

    run_variant("tes", higgs_csv_for("base"), shifted, {"scale": 1.05})
    assert main(["dataset", "add", str(shifted), "--name", "higgs"]) == 3
    err = capsys.readouterr().err
    assert _rows_named(err, "lineage") == hidden
    assert "same ids, derived dataset" in err
    assert (settings.datasets_dir / "higgs").is_dir()
    assert [p.name for p in (settings.datasets_dir / "higgs").iterdir() if p.name.isdigit()] == ["1"]


def test_cli_release_labelled_only_after_reveal_with_an_audited_override(
    cli_env: Settings,
    engine: sa.Engine,
    make_challenge: Any,
    make_user: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    finale = make_challenge("finale")
    root = make_user("root", role="admin")
    make_user("org", role="organizer")
    public = storage.public_dir(settings, "finale")
    hidden = storage.label_dir(settings, "finale")
    n_test = len(_test_ids(settings, "finale"))
    base = ["dataset", "release-labelled", "finale", "--public", str(public), "--hidden",
            str(hidden), "--id", "EventId"]
    override = ["--override-reason", "the challenge is over", "--admin", "root"]
    # Running: refused, and no override can lift it.
    for extra in ([], override):
        assert main([*base, *extra]) == 3
        err = capsys.readouterr().err
        assert _rows_named(err, "finale") == n_test
        assert "no override is possible" in err
    assert not (settings.datasets_dir / "finale").exists()
    assert _audit(engine) == []

    _reveal(engine, "finale")
    # Revealed: still refused without an override, or with a non-admin's.
    assert main(base) == 3
    assert "--override-reason" in capsys.readouterr().err
    assert main([*base, "--override-reason", "why not", "--admin", "org"]) == 3
    assert "not an admin" in capsys.readouterr().err
    assert _audit(engine) == []
    assert not (settings.datasets_dir / "finale").exists()
    # An admin's override with a reason: published, and the reason is in the audit log.
    assert main([*base, *override]) == 0
    capsys.readouterr()
    assert (settings.datasets_dir / "finale" / "1" / "manifest.json").is_file()
    [event] = _audit(engine)
    assert event.action == "ledger_override"
    assert event.reason == "the challenge is over"
    assert "release-labelled finale" in event.target
    assert event.challenge_id == finale.id
    assert event.details["hits"] == [{"holder": "finale", "rows": n_test, "by": "content"}]
    assert event.actor_id == root.id


def test_cli_challenge_create_refused_then_overridden_after_reveal(
    cli_env: Settings,
    engine: sa.Engine,
    make_challenge: Any,
    make_user: Any,
    higgs_csv_for: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    make_challenge("first")
    root = make_user("root", role="admin")
    override = ["--override-reason", "reuse after the reveal", "--admin", "root"]
    bundle = _bundle(tmp_path, "second", higgs_csv_for("first"))
    assert main(["challenge", "create", str(bundle), *override]) == 3
    err = capsys.readouterr().err
    assert _rows_named(err, "first") > 0
    assert "no override is possible" in err
    with Session(engine) as session:
        row = session.exec(select(Challenge).where(Challenge.slug == "second")).one()
        assert row.state == "failed"
        assert "hidden in challenge 'first'" in row.state_message
        assert row.public_files == []
    assert not storage.public_dir(settings, "second").exists()
    assert _audit(engine) == []

    _reveal(engine, "first")
    third = _bundle(tmp_path, "third", higgs_csv_for("first"))
    assert main(["challenge", "create", str(third)]) == 3
    assert "--override-reason" in capsys.readouterr().err
    assert main(["challenge", "create", str(_bundle(tmp_path, "fourth", higgs_csv_for("first"))),
                 *override]) == 0
    capsys.readouterr()
    [event] = _audit(engine)
    assert event.actor_id == root.id
    assert event.reason == "reuse after the reveal"
    assert "challenge 'fourth'" in event.target
    assert (storage.public_dir(settings, "fourth") / "train.parquet").is_file()
    assert "fourth" in ledger_of(settings).holders()
