"""Publishing: every public file in every format, checksum files, DataCite JSON, CITATION.cff,
a .torrent of the release, and the release of the full labelled data after a challenge."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from splitter.datasets import DatasetStore, DatasetVersion, Manifest
from splitter.formats import EXPORT_FORMATS, export_table, write_checksum_files
from splitter.split import USAGE_COLUMN

EXTENSIONS = {"csv": ".csv", "parquet": ".parquet", "hdf5": ".h5", "root": ".root"}


@dataclass
class Creator:
    """An author of a dataset (person or organisation)."""

    name: str
    given_name: str | None = None
    family_name: str | None = None
    affiliation: str | None = None
    orcid: str | None = None


@dataclass
class ReleaseMetadata:
    """What DataCite and CITATION.cff need to describe a release."""

    title: str
    creators: list[Creator]
    publisher: str = "Podium"
    version: str = "1"
    license: str | None = None
    description: str | None = None
    doi: str | None = None
    url: str | None = None
    keywords: list[str] = field(default_factory=list)
    year: int | None = None
    date_released: str | None = None


def export_public_files(public_dir: Path, out_dir: Path,
                        formats: Sequence[str] = EXPORT_FORMATS) -> list[Path]:
    """Write every ``*.parquet`` of ``public_dir`` into ``out_dir`` in each of ``formats``,
    plus ``MD5SUMS`` and ``SHA256SUMS`` covering them all. Returns the data files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for src in sorted(Path(public_dir).glob("*.parquet")):
        jagged = any(pa.types.is_nested(f.type) for f in pq.read_schema(src))
        for fmt in formats:
            if fmt == "csv" and jagged:
                continue  # lists per row have no CSV form; Parquet, HDF5 and ROOT hold them
            written.append(export_table(src, fmt, out_dir / f"{src.stem}{EXTENSIONS[fmt]}"))
    write_checksum_files(out_dir, written)
    return written


def datacite_json(meta: ReleaseMetadata, manifest: Manifest | None = None) -> dict[str, Any]:
    """DataCite metadata (kernel 4, the JSON of the DataCite REST API ``attributes``)."""
    year = meta.year or datetime.now(UTC).year
    creators = []
    for c in meta.creators:
        entry: dict[str, Any] = {"name": c.name,
                                 "nameType": "Personal" if c.family_name else "Organizational"}
        if c.given_name:
            entry["givenName"] = c.given_name
        if c.family_name:
            entry["familyName"] = c.family_name
        if c.affiliation:
            entry["affiliation"] = [{"name": c.affiliation}]
        if c.orcid:
            entry["nameIdentifiers"] = [{"nameIdentifier": f"https://orcid.org/{c.orcid}",
                                         "nameIdentifierScheme": "ORCID",
                                         "schemeUri": "https://orcid.org"}]
        creators.append(entry)
    attrs: dict[str, Any] = {
        "schemaVersion": "http://datacite.org/schema/kernel-4",
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Challenge dataset"},
        "creators": creators,
        "titles": [{"title": meta.title}],
        "publisher": {"name": meta.publisher},
        "publicationYear": str(year),
        "version": meta.version,
        "subjects": [{"subject": k} for k in meta.keywords],
        "dates": [{"date": meta.date_released or datetime.now(UTC).date().isoformat(),
                   "dateType": "Issued"}],
    }
    if meta.doi:
        attrs["doi"] = meta.doi
        attrs["identifiers"] = [{"identifier": f"https://doi.org/{meta.doi}",
                                 "identifierType": "DOI"}]
    if meta.url:
        attrs["url"] = meta.url
    if meta.license:
        attrs["rightsList"] = [{"rights": meta.license, "rightsIdentifier": meta.license.lower(),
                                "rightsIdentifierScheme": "SPDX",
                                "schemeUri": "https://spdx.org/licenses/"}]
    if meta.description:
        attrs["descriptions"] = [{"description": meta.description,
                                  "descriptionType": "Abstract"}]
    if manifest is not None:
        attrs["sizes"] = [f"{manifest.total_size} bytes", f"{manifest.total_rows} rows"]
        attrs["formats"] = sorted({f.format for f in manifest.files})
        if manifest.parent:
            attrs["relatedIdentifiers"] = [{"relatedIdentifier": manifest.parent,
                                            "relatedIdentifierType": "URN",
                                            "relationType": "IsNewVersionOf"}]
    return attrs


def citation_cff(meta: ReleaseMetadata) -> str:
    """A CITATION.cff (Citation File Format 1.2.0) for the release."""
    authors: list[dict[str, str]] = []
    for c in meta.creators:
        if c.family_name:
            a = {"family-names": c.family_name}
            if c.given_name:
                a["given-names"] = c.given_name
        else:
            a = {"name": c.name}
        if c.affiliation:
            a["affiliation"] = c.affiliation
        if c.orcid:
            a["orcid"] = f"https://orcid.org/{c.orcid}"
        authors.append(a)
    data: dict[str, Any] = {
        "cff-version": "1.2.0",
        "message": "If you use this dataset, please cite it as below.",
        "type": "dataset",
        "title": meta.title,
        "authors": authors,
        "version": meta.version,
        "date-released": meta.date_released or datetime.now(UTC).date().isoformat(),
    }
    if meta.license:
        data["license"] = meta.license
    if meta.doi:
        data["doi"] = meta.doi
    if meta.url:
        data["url"] = meta.url
    if meta.description:
        data["abstract"] = meta.description
    if meta.keywords:
        data["keywords"] = list(meta.keywords)
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def make_torrent(directory: Path, out_path: Path, *, trackers: Sequence[str] = (),
                 webseeds: Sequence[str] = (), comment: str | None = None) -> Path:
    """Write a .torrent of everything under ``directory`` (torf); returns ``out_path``."""
    import torf

    t = torf.Torrent(path=Path(directory), trackers=list(trackers) or None,
                     webseeds=list(webseeds) or None, comment=comment, created_by="Podium",
                     private=False)
    t.generate()
    out_path = Path(out_path)
    t.write(out_path, overwrite=True)
    return out_path


def write_release(public_dir: Path, out_dir: Path, meta: ReleaseMetadata, *,
                  manifest: Manifest | None = None, trackers: Sequence[str] = (),
                  formats: Sequence[str] = EXPORT_FORMATS) -> dict[str, Any]:
    """Everything a release needs in ``out_dir``: the public files in every format, checksum
    files, ``datacite.json``, ``CITATION.cff`` and ``release.torrent``. Returns their paths."""
    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    files = export_public_files(public_dir, data_dir, formats)
    (out_dir / "datacite.json").write_text(json.dumps(datacite_json(meta, manifest),
                                                      indent=2) + "\n")
    (out_dir / "CITATION.cff").write_text(citation_cff(meta))
    torrent = make_torrent(data_dir, out_dir / "release.torrent", trackers=trackers,
                           comment=meta.title)
    return {"files": [str(f) for f in files], "md5sums": str(data_dir / "MD5SUMS"),
            "sha256sums": str(data_dir / "SHA256SUMS"),
            "datacite": str(out_dir / "datacite.json"),
            "citation": str(out_dir / "CITATION.cff"), "torrent": str(torrent)}


SUBSET_CODES = {"train": "t", "Public": "b", "Private": "v"}


def release_labelled_data(
    store: DatasetStore,
    name: str,
    public_dir: Path,
    hidden_dir: Path,
    *,
    id_column: str,
    license: str | None = None,
    description: str | None = None,
    citation: dict[str, Any] | None = None,
    parent: str | None = None,
    guard: Callable[[pa.Table, str], None] | None = None,
) -> DatasetVersion:
    """After a challenge: join the test features with the hidden solution, add the train rows,
    and commit the result as a new version of dataset ``name`` (one Parquet file
    ``NAME-labelled.parquet`` with a ``Subset`` column: t train, b public test, v private test,
    the HiggsML ``KaggleSet`` convention). ``parent`` (``NAME:N``) is recorded in the manifest.
    ``guard(table, name)`` (the holdout ledger check) sees the labelled table before anything is
    written and raises to refuse it.
    """
    train = pq.read_table(Path(public_dir) / "train.parquet").to_pandas()
    test = pq.read_table(Path(public_dir) / "test.parquet").to_pandas()
    sol = pq.read_table(Path(hidden_dir) / "solution.parquet").to_pandas()
    keys = [c for c in sol.columns if c in test.columns]
    labelled = test.merge(sol, on=keys, how="left", validate="one_to_one")
    labelled["Subset"] = labelled.pop(USAGE_COLUMN).map(SUBSET_CODES)
    train["Subset"] = SUBSET_CODES["train"]
    full = pd.concat([train, labelled[[*train.columns]]], ignore_index=True)
    full = full.sort_values([id_column, *[k for k in keys if k != id_column]],
                            kind="stable").reset_index(drop=True)
    if guard is not None:
        guard(pa.Table.from_pandas(full, preserve_index=False), f"{name}-labelled.parquet")
    with tempfile.TemporaryDirectory(prefix="podium-release-") as tmp:
        path = Path(tmp) / f"{name}-labelled.parquet"
        full.to_parquet(path, index=False)
        return store.add([path], name, license=license, description=description,
                         citation=citation, extra={"released_from": parent} if parent else None)
