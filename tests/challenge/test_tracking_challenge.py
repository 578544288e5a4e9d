"""A TrackML challenge from the bundle in docs/: split by event, Kaggle-format submissions keyed
by (event_id, hit_id) graded by the worker, and the demo's fourth challenge built from it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from challenge import storage
from challenge.bundle import BundleError, parse_bundle
from challenge.challenges import create_challenge, prepare_challenge
from challenge.db import session_scope
from challenge.demo import TRACKING_BUNDLE, cone_tracks
from challenge.models import Submission
from splitter.tracking import generate_tracking
from tests.challenge.conftest import PASSWORD

DOCS_BUNDLE = Path(__file__).resolve().parents[2] / "docs" / "bundles" / "trackml"


def _token(client: Any, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"login": name, "password": PASSWORD, "name": "t"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def tracking_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tracking")
    generate_tracking(16, seed=5, out_dir=folder, n_particles=40)
    return folder / "tracking.parquet"


def docs_bundle_for_test(folder: Path, data: Path) -> Path:
    """The docs bundle as shipped, with the data file next to it and the phase open now."""
    now = dt.datetime.now(dt.UTC)
    text = (DOCS_BUNDLE / "challenge.yaml").read_text()
    text = text.replace("dataset: trackml-sim:1", "dataset: tracking.parquet")
    text = re.sub(
        r"opens: \S+, closes: \S+}",
        f"opens: {now - dt.timedelta(days=1):%Y-%m-%dT%H:%MZ}, "
        f"closes: {now + dt.timedelta(days=9):%Y-%m-%dT%H:%MZ}}}",
        text,
    )
    folder.mkdir()
    (folder / "tracking.parquet").symlink_to(data)
    (folder / "description.md").write_text((DOCS_BUNDLE / "description.md").read_text())
    (folder / "challenge.yaml").write_text(text)
    return folder / "challenge.yaml"


def test_the_demo_bundle_is_the_docs_bundle() -> None:
    docs = yaml.safe_load((DOCS_BUNDLE / "challenge.yaml").read_text())
    demo = yaml.safe_load(TRACKING_BUNDLE.replace("@PHASES@", "  - {name: c, opens: x}"))
    for key in ("slug", "split", "submission", "metric", "limits", "leaderboard", "license"):
        assert demo[key] == docs[key], key


def test_a_tracking_challenge_from_the_docs_bundle_grades_kaggle_submissions(
    client: Any, settings: Any, engine: Any, make_user: Any, stub_worker: Any,
    tracking_data: Path, tmp_path: Path,
) -> None:
    bundle = parse_bundle(docs_bundle_for_test(tmp_path / "bundle", tracking_data))
    with session_scope(engine) as session:
        challenge = create_challenge(session, bundle=bundle, creator=None)
        report = prepare_challenge(settings, challenge, tmp_path / "bundle" / "tracking.parquet")
        session.add(challenge)
        slug = challenge.slug
    assert report["ok"]
    assert challenge.submission_format["id"] == ["event_id", "hit_id"]
    public = storage.public_dir(settings, slug)
    test = pd.read_parquet(public / "test.parquet")
    train = pd.read_parquet(public / "train.parquet")
    solution = pd.read_parquet(storage.solution_path(settings, slug))
    # Whole events: no event in two subsets; the test file has the hits only.
    assert not set(test["event_id"]) & set(train["event_id"])
    assert {"particle_id", "weight", "tx", "tpz"}.isdisjoint(test.columns)
    assert solution.groupby("event_id")["Usage"].nunique().max() == 1
    assert set(solution["Usage"]) == {"Public", "Private"}
    assert len(solution) == len(test)
    assert test.groupby("event_id")["hit_id"].min().eq(1).all()  # ids restart in every event

    make_user("tina")
    headers = _token(client, "tina")
    assert client.post(f"/api/challenges/{slug}/join", json={"accept_rules": True},
                       headers=headers).status_code == 200
    truth = test[["event_id", "hit_id"]].merge(solution, on=["event_id", "hit_id"])
    perfect = truth[["event_id", "hit_id"]].assign(track_id=truth["particle_id"].to_numpy())
    perfect = perfect.sample(frac=1.0, random_state=1)  # any row order
    cones = cone_tracks(test, 30, 10)
    missing = perfect.iloc[1:]
    ids = {}
    for name, frame in (("perfect", perfect), ("cones", cones), ("missing", missing)):
        r = client.post(
            f"/api/challenges/{slug}/submissions",
            files={"file": (f"{name}.csv", frame.to_csv(index=False).encode(), "text/csv")},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    stub_worker.drain()
    with session_scope(engine) as session:
        stored = {name: session.get(Submission, i) for name, i in ids.items()}
        perfect_row, cones_row, missing_row = stored["perfect"], stored["cones"], stored["missing"]
        assert perfect_row is not None
        assert cones_row is not None
        assert missing_row is not None
        assert perfect_row.status == "scored"
        assert perfect_row.public_score == pytest.approx(1.0, abs=1e-9)
        assert cones_row.status == "scored"
        assert cones_row.public_score is not None
        assert 0.0 < cones_row.public_score < 1.0
        assert missing_row.status == "invalid"
        first = perfect.iloc[0]
        assert (f"(event_id={int(first['event_id'])}, hit_id={int(first['hit_id'])})"
                in missing_row.error_message)
    board = client.get(f"/api/challenges/{slug}/leaderboard").json()
    assert board["entries"][0]["score"] == pytest.approx(1.0)


def test_bundle_checks_for_tracking(tmp_path: Path, tracking_data: Path) -> None:
    path = docs_bundle_for_test(tmp_path / "b", tracking_data)
    assert parse_bundle(path).metric["name"] == "trackml"
    text = path.read_text()
    path.write_text(text.replace("id: [event_id, hit_id]", "id: [event_id, hit_id, x]"))
    with pytest.raises(BundleError, match=r"submission\.id: a composite key has two columns"):
        parse_bundle(path)
    path.write_text(text.replace("name: trackml,", "name: ams,"))
    with pytest.raises(BundleError, match=r"metric\.label: name the label column"):
        parse_bundle(path)
