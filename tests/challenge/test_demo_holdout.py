"""The demo, played by a participant who downloads everything: no row of an open challenge's
test set is anywhere with a label (issue #10: the three demo challenges used to split one file,
so the finished one's public train held half the running one's test rows, labels included)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from challenge.app import create_app
from challenge.challenges import holdout_revealed
from challenge.db import make_engine
from challenge.demo import DEMO_ACCOUNTS, seed_demo
from challenge.models import Challenge
from splitter.ledger import count_in, distinct, feature_columns, row_hashes

TRUTH = ("Label", "Weight", "particle_id", "weight")  # HiggsML and TrackML truth


def _login(client: TestClient, name: str, password: str) -> None:
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post("/login", data={"login": name, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def _csrf(client: TestClient, path: str) -> str:
    return client.get(path).text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_participant_downloading_everything_finds_no_labelled_test_row(
    settings_factory: Any, database_url: str
) -> None:
    settings = settings_factory(database_url)
    seed_demo(settings, events=2000)
    engine = make_engine(database_url)
    with Session(engine) as session:
        challenges = list(session.exec(select(Challenge)))
        open_slugs = {c.slug for c in challenges if not holdout_revealed(session, c)}
        files = {c.slug: [f["name"] for f in c.public_files] for c in challenges}
        key_of = {c.slug: c.submission_format["id"] for c in challenges}
    engine.dispose()
    assert open_slugs >= {"higgsml-demo", "higgsml-2027"}

    name, password = DEMO_ACCOUNTS["participant"]
    downloads: dict[str, pd.DataFrame] = {}
    with TestClient(create_app(settings)) as client:
        _login(client, name, password)
        for slug, names in files.items():
            r = client.post(f"/c/{slug}/join",
                            data={"accept": "yes", "csrf_token": _csrf(client, f"/c/{slug}")},
                            follow_redirects=False)
            assert r.status_code == 303, r.text
            for file in names:
                for fmt in ("parquet", "csv"):
                    r = client.get(f"/c/{slug}/data/{file}", params={"format": fmt})
                    if r.status_code != 200:  # an upcoming challenge publishes when it opens
                        continue
                    frame = (pd.read_parquet(io.BytesIO(r.content)) if fmt == "parquet"
                             else pd.read_csv(io.BytesIO(r.content)))
                    downloads[f"{slug}/{file}?{fmt}"] = frame
    test_files = {k.split("/")[0]: f for k, f in downloads.items()
                  if k.endswith("test.parquet?parquet")}
    assert set(test_files) >= {"higgsml-demo", "higgsml-replay"}
    labelled = {k: f for k, f in downloads.items() if set(TRUTH) & set(f.columns)}
    assert any("train.parquet" in k for k in labelled)

    for slug in open_slugs & set(test_files):
        test = test_files[slug]
        # The key's columns are ids; a composite key's first column (the event) is the unit.
        key_columns = [str(k) for k in key_of[slug]] if isinstance(key_of[slug], list) else [
            str(key_of[slug])]
        unit = key_columns[0]
        columns = feature_columns(test.columns, key_columns)
        hidden = distinct(row_hashes(pa.Table.from_pandas(test, preserve_index=False), columns))
        hidden_ids = set(test[unit])
        checked = 0
        for key, frame in labelled.items():
            if set(columns) <= set(frame.columns):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                assert count_in(row_hashes(table, columns), hidden) == 0, (slug, key)
                checked += 1
            if unit in frame.columns:
                assert not hidden_ids & set(frame[unit]), (slug, key)
        assert checked, f"no labelled file has {slug}'s feature columns: the check saw nothing"
    # The check can see a leak: the test file itself, were it labelled, matches all its rows.
    demo_test = test_files["higgsml-demo"]
    columns = feature_columns(demo_test.columns, ["EventId"])
    h = row_hashes(pa.Table.from_pandas(demo_test, preserve_index=False), columns)
    assert count_in(h, distinct(h)) == len(demo_test) > 0
    assert np.unique(h).size == len(demo_test)
