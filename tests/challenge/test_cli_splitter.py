"""`podium dataset|variant|generate tracking` and `challenge create` with a dataset version,
through the real entry point (``main([...])``) on temporary directories."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from challenge.cli import main
from challenge.models import Challenge
from tests.challenge.conftest import bundle_text


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """These commands do not depend on the database backend: SQLite only, to keep them fast."""
    return sqlite_url


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("PODIUM_DATA_DIR", str(data))
    monkeypatch.setenv("PODIUM_LABEL_DIR", str(tmp_path / "labels"))
    return data


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out
    data: dict[str, object] = json.loads(out)
    return data


def test_dataset_add_list_show_tag_verify(tmp_path: Path, data_dir: Path, higgs_csv: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    desc = tmp_path / "about.md"
    desc.write_text("Generated HiggsML-like events.\n")
    assert main(["dataset", "add", str(higgs_csv), "--name", "higgsml", "--license",
                 "CC-BY-4.0", "--description", str(desc)]) == 0
    assert _json(capsys) == {"ref": "higgsml:1", "files": 1}
    assert (data_dir / "datasets" / "higgsml" / "1" / "manifest.json").is_file()

    assert main(["dataset", "list"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("higgsml:1")
    assert "3000 rows" in line
    assert "CC-BY-4.0" in line

    assert main(["dataset", "show", "higgsml:1"]) == 0
    manifest = _json(capsys)
    assert manifest["license"] == "CC-BY-4.0"
    assert manifest["description"] == "Generated HiggsML-like events.\n"
    files = manifest["files"]
    assert isinstance(files, list)
    assert files[0]["rows"] == 3000

    assert main(["dataset", "tag", "higgsml:1", "stable"]) == 0
    assert _json(capsys) == {"tag": "higgsml:stable", "ref": "higgsml:1"}
    assert main(["dataset", "list"]) == 0
    assert capsys.readouterr().out.strip().endswith("stable")

    assert main(["dataset", "verify", "higgsml:stable"]) == 0
    assert _json(capsys)["ok"] is True
    # A changed byte is found, and the exit code says so.
    stored = next((data_dir / "datasets" / "higgsml" / "1" / "files").iterdir())
    stored.chmod(0o644)
    raw = bytearray(stored.read_bytes())
    raw[-2] = ord("0") if raw[-2] != ord("0") else ord("1")
    stored.write_bytes(bytes(raw))
    assert main(["dataset", "verify", "higgsml:1"]) == 1
    assert _json(capsys)["ok"] is False


def test_dataset_errors_say_what_to_change(tmp_path: Path, data_dir: Path, higgs_csv: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "add", str(higgs_csv), "--name", "Higgs ML"]) == 4
    err = capsys.readouterr().err
    assert "higgs-ml" in err  # the valid name it proposes
    assert main(["dataset", "show", "nosuch:1"]) == 4
    assert "nosuch" in capsys.readouterr().err
    assert main(["dataset", "add", str(tmp_path / "missing.csv"), "--name", "x"]) == 4
    assert "missing.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "tag", "higgsml:1"])
    assert exc.value.code == 2


def test_dataset_split_from_file_and_from_version(tmp_path: Path, data_dir: Path,
                                                  higgs_csv: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "split.yaml"
    spec.write_text("seed: 3\nid_column: EventId\nlabel_column: Label\nweight_column: Weight\n"
                    "train: 0.5\npublic_test: 0.2\nprivate_test: 0.3\nstratify: Label\n"
                    "reweight: true\n")
    assert main(["dataset", "split", str(higgs_csv), "--public", str(tmp_path / "a" / "pub"),
                 "--hidden", str(tmp_path / "a" / "hid"), "--spec", str(spec)]) == 0
    report = _json(capsys)
    assert report["ok"] is True
    assert report["total_rows"] == 3000
    assert pq.ParquetFile(tmp_path / "a" / "pub" / "train.parquet").metadata.num_rows == 1500

    assert main(["dataset", "add", str(higgs_csv), "--name", "higgsml"]) == 0
    capsys.readouterr()
    # The same split given as options, on the stored version: the same files.
    assert main(["dataset", "split", "--dataset", "higgsml:1", "--public",
                 str(tmp_path / "b" / "pub"), "--hidden", str(tmp_path / "b" / "hid"),
                 "--seed", "3", "--id", "EventId", "--label", "Label", "--weight", "Weight",
                 "--train", "0.5", "--public-test", "0.2", "--private-test", "0.3",
                 "--stratify", "Label", "--reweight"]) == 0
    capsys.readouterr()
    for rel in ("pub/train.parquet", "pub/test.parquet", "hid/solution.parquet"):
        assert pq.read_table(tmp_path / "a" / rel).equals(pq.read_table(tmp_path / "b" / rel))

    assert main(["dataset", "split", str(higgs_csv), "--public", str(tmp_path / "c"),
                 "--hidden", str(tmp_path / "d"), "--seed", "1", "--id", "EventID",
                 "--label", "Label"]) == 4
    assert "Did you mean 'EventId'" in capsys.readouterr().err
    assert main(["dataset", "split", str(higgs_csv), "--public", str(tmp_path / "c"),
                 "--hidden", str(tmp_path / "d"), "--id", "EventId", "--label", "Label"]) == 2
    assert "seed" in capsys.readouterr().err


def test_variant_writes_a_shifted_table(tmp_path: Path, data_dir: Path, higgs_csv: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tes-up.parquet"
    assert main(["variant", "tes", str(higgs_csv), str(out), "--set", "scale=1.03"]) == 0
    result = _json(capsys)
    assert result["options"] == {"scale": 1.03}
    before = pd.read_csv(higgs_csv).set_index("EventId")
    after = pd.read_parquet(out).set_index("EventId")
    assert result["output_rows"] == len(after) <= len(before)
    common = after.index
    ratio = after["PRI_tau_pt"] / before.loc[common, "PRI_tau_pt"]
    assert ratio.to_numpy() == pytest.approx(1.03)
    assert main(["variant", "tes", str(higgs_csv), str(out), "--set", "scale"]) == 4
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["variant", "nosuchkind", str(higgs_csv), str(out)]) == 4
    assert "nosuchkind" in capsys.readouterr().err


def test_generate_tracking_and_higgs_parquet(tmp_path: Path, data_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trackml"
    assert main(["generate", "tracking", "--events", "2", "--seed", "4", "--out", str(out),
                 "--particles", "30"]) == 0
    assert _json(capsys)["events"] == 2
    hits = pd.read_csv(out / "event000001000-hits.csv")
    assert list(hits.columns) == ["hit_id", "x", "y", "z", "volume_id", "layer_id",
                                  "module_id"]
    assert (out / "event000001001-truth.csv").is_file()

    higgs = tmp_path / "h.parquet"
    assert main(["generate", "higgs", "--events", "800", "--seed", "2", "--out",
                 str(higgs)]) == 0
    result = _json(capsys)
    assert result["events"] == 800
    labels = result["labels"]
    assert isinstance(labels, dict)
    assert set(labels) == {"s", "b"}
    assert sum(labels.values()) == 800
    assert pq.ParquetFile(higgs).metadata.num_rows == 800


def test_challenge_create_from_a_dataset_version(tmp_path: Path, data_dir: Path,
                                                 higgs_csv: Path, database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PODIUM_DATABASE_URL", database_url)
    now = dt.datetime.now(dt.UTC)
    text = bundle_text("from-version", now, now + dt.timedelta(days=3))
    bundle = tmp_path / "bundle" / "challenge.yaml"
    bundle.parent.mkdir()
    bundle.write_text(text.replace("dataset: higgs.csv", "dataset: higgsml:1"))
    assert main(["challenge", "create", str(bundle)]) == 4
    assert "higgsml" in capsys.readouterr().err  # no such version yet: nothing created

    assert main(["dataset", "add", str(higgs_csv), "--name", "higgsml"]) == 0
    capsys.readouterr()
    assert main(["challenge", "create", str(bundle)]) == 0
    result = _json(capsys)
    assert result["state"] == "ready"
    engine = sa.create_engine(database_url)
    with Session(engine) as session:
        row = session.exec(select(Challenge).where(Challenge.slug == "from-version")).one()
        assert row.dataset_ref == "higgsml:1"
        assert row.split_report["total_rows"] == 3000
        assert {f["name"] for f in row.public_files} >= {"train.parquet", "test.parquet"}
    engine.dispose()
