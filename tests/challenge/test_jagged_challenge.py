"""A challenge split from a jagged ROOT ntuple: the lists stay whole per event, and the public
files download as Parquet, HDF5 and ROOT, while CSV is refused with the formats to use."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import uproot

from challenge import storage
from challenge.bundle import parse_bundle
from challenge.challenges import create_challenge, join_challenge, prepare_challenge
from challenge.db import session_scope
from challenge.models import User
from tests.challenge.conftest import login
from tests.splitter.test_jagged import ntuple


def test_jagged_challenge_downloads(
    client: Any, settings: Any, engine: Any, make_user: Any, tmp_path: Path
) -> None:
    px = ntuple(tmp_path / "jets.root", n=200)
    now = dt.datetime.now(dt.UTC)
    (tmp_path / "challenge.yaml").write_text(textwrap.dedent(f"""\
        slug: jets
        title: Jets
        description: Predict the label from the jets.
        dataset: jets.root
        split: {{seed: 1, train: 0.5, public_test: 0.2, private_test: 0.3}}
        submission: {{id: event, columns: {{label: probability}}}}
        metric: {{name: log_loss, label: label, positive: 1, probability: label}}
        phases:
          - {{name: competition, opens: {now - dt.timedelta(days=1):%Y-%m-%dT%H:%MZ}}}
        """))
    with session_scope(engine) as session:
        challenge = create_challenge(session, bundle=parse_bundle(tmp_path / "challenge.yaml"),
                                     creator=None)
        prepare_challenge(settings, challenge, tmp_path / "jets.root")
        session.add(challenge)
    test = pq.read_table(storage.public_dir(settings, "jets") / "test.parquet").to_pandas()
    by_event = dict(enumerate(px.tolist()))
    assert all(list(v) == by_event[e] for e, v in zip(test["event"], test["Jet_Px"], strict=True))
    user = make_user("jo")
    with session_scope(engine) as session:
        from challenge.challenges import get_challenge_by_slug

        row = session.get(User, user.id)
        assert row is not None
        join_challenge(session, challenge=get_challenge_by_slug(session, "jets"), user=row)
    login(client, "jo")
    r = client.get("/c/jets/data/test.parquet?format=csv")
    assert r.status_code == 400
    assert "export as Parquet, HDF5 or ROOT" in r.text
    r = client.get("/c/jets/data/test.parquet?format=root")
    assert r.status_code == 200
    (tmp_path / "down.root").write_bytes(r.content)
    tree = uproot.open(tmp_path / "down.root")["data"]
    assert tree["Jet_Px"].array().tolist() == test["Jet_Px"].apply(list).tolist()
