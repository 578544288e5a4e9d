"""Release: exports in every format with checksum files, DataCite, CITATION.cff, torrent, and
the full labelled data as a new dataset version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torf
import yaml

from splitter.datasets import DatasetStore
from splitter.release import Creator, ReleaseMetadata, release_labelled_data, write_release
from splitter.split import SplitSpec, split_file

META = ReleaseMetadata(
    title="HiggsML toy 2027", version="1", license="CC-BY-4.0", doi="10.1234/podium.1",
    creators=[Creator("Ada Lovelace", given_name="Ada", family_name="Lovelace",
                      affiliation="Podium", orcid="0000-0002-1825-0097"),
              Creator("ATLAS collaboration")],
    keywords=["higgs", "machine learning"], description="A toy.", year=2027,
    date_released="2027-07-01",
)


def test_release_bundle(tmp_path: Path, higgs_parquet: Path) -> None:
    spec = SplitSpec(seed=1, id_column="EventId", label_column="Label", weight_column="Weight")
    split_file(higgs_parquet, tmp_path / "pub", tmp_path / "hid", spec)
    out = write_release(tmp_path / "pub", tmp_path / "rel", META)
    data = tmp_path / "rel" / "data"
    names = sorted(p.name for p in data.iterdir())
    for stem in ("train", "test"):
        for ext in (".csv", ".parquet", ".h5", ".root"):
            assert f"{stem}{ext}" in names
    assert "solution.parquet" not in names
    lines = (data / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 8
    digest, rel = lines[0].split("  ")
    assert hashlib.sha256((data / rel).read_bytes()).hexdigest() == digest
    assert len((data / "MD5SUMS").read_text().splitlines()) == 8
    dc = json.loads((tmp_path / "rel" / "datacite.json").read_text())
    assert dc["types"]["resourceTypeGeneral"] == "Dataset"
    assert dc["creators"][0]["familyName"] == "Lovelace"
    assert dc["creators"][1]["nameType"] == "Organizational"
    assert dc["rightsList"][0]["rightsIdentifierScheme"] == "SPDX"
    assert dc["publicationYear"] == "2027"
    cff = yaml.safe_load((tmp_path / "rel" / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["authors"][0] == {"family-names": "Lovelace", "given-names": "Ada",
                                 "affiliation": "Podium",
                                 "orcid": "https://orcid.org/0000-0002-1825-0097"}
    assert cff["doi"] == "10.1234/podium.1"
    t = torf.Torrent.read(out["torrent"])
    assert sorted(Path(str(f)).name for f in t.files) == names


def test_release_full_labelled_data(tmp_path: Path, higgs_small: pd.DataFrame,
                                    higgs_parquet: Path) -> None:
    store = DatasetStore(tmp_path / "store")
    store.add([higgs_parquet], "higgsml", license="CC-BY-4.0")
    spec = SplitSpec(seed=3, id_column="EventId", label_column="Label", weight_column="Weight",
                     stratify="Label")
    split_file(higgs_parquet, tmp_path / "pub", tmp_path / "hid", spec)
    v = release_labelled_data(store, "higgsml", tmp_path / "pub", tmp_path / "hid",
                              id_column="EventId", license="CC-BY-4.0", parent="higgsml:1")
    assert v.ref == "higgsml:2"
    assert v.manifest.parent == "higgsml:1"
    full = pd.read_parquet(v.file("higgsml-labelled.parquet"))
    assert len(full) == len(higgs_small)
    pd.testing.assert_frame_equal(full.drop(columns="Subset"), higgs_small)
    assert full["Subset"].value_counts().to_dict() == {"t": 1500, "v": 900, "b": 600}
    assert store.verify("higgsml:2").ok
