"""Ready-to-wire functions for the ``podium`` CLI (``challenge/cli.py`` parses the arguments).

Each ``run_*`` takes plain values (paths, ints, strings, dicts) and returns a JSON-serialisable
dict to print. They raise the library's ``ValueError`` subclasses (SplitError, DatasetError,
FormatError, VariantError), whose messages are meant for the user as they are. The CLI syntax
each one is meant for is in docs/splitter.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from splitter.datasets import DatasetError, DatasetStore
from splitter.formats import FormatError, read_arrow, read_table
from splitter.generate import write_higgs
from splitter.release import Creator, ReleaseMetadata, release_labelled_data, write_release
from splitter.split import SplitSpec, split_file
from splitter.tracking import generate_tracking
from splitter.variants import apply_variant


def run_generate_higgs(events: int, seed: int, out: Path) -> dict[str, Any]:
    """``podium generate higgs --events N --seed S --out FILE`` (.parquet or .csv[.gz])."""
    path = write_higgs(Path(out), events, seed)
    return {"path": str(path), "events": events, "seed": seed}


def run_generate_tracking(events: int, seed: int, out: Path, particles: int = 200,
                          noise: float = 0.1) -> dict[str, Any]:
    """``podium generate tracking --events N --seed S --out DIR [--particles P]``."""
    if events < 1 or particles < 1:
        raise ValueError(f"give at least one event and one particle (got --events {events}, "
                         f"--particles {particles})")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"--noise is the fraction of noise hits, from 0 up to (not including) "
                         f"1; got {noise}")
    paths = generate_tracking(events, seed, Path(out), n_particles=particles,
                              noise_fraction=noise)
    return {"directory": str(out), "events": events, "seed": seed, "files": len(paths)}


Guard = Callable[[pa.Table, str], None]


def _guard_tables(files: Sequence[Path], guard: Guard | None, tree: str | None = None) -> None:
    """Show each readable table file to ``guard`` (the holdout ledger check): it raises to
    refuse. Per-event tracking files and unreadable files are left to the store's own checks."""
    if guard is None:
        return
    for f in files:
        try:
            table = read_arrow(Path(f), tree=tree)
        except (FormatError, OSError, ValueError):
            continue
        guard(table, Path(f).name)


def run_dataset_add(files: Sequence[Path], name: str, root: Path, license: str | None = None,
                    description: Path | None = None, tree: str | None = None,
                    guard: Guard | None = None) -> dict[str, Any]:
    """``podium dataset add FILE... --name NAME [--license ID] [--description FILE]``.

    ``guard(table, file name)`` sees each table file first and raises to refuse it."""
    text = Path(description).read_text() if description else None
    _guard_tables(files, guard, tree)
    version = DatasetStore(Path(root)).add([Path(f) for f in files], name, license=license,
                                           description=text, tree=tree)
    return {"ref": version.ref, "manifest": version.manifest.to_dict()}


def dataset_table_path(ref: str, root: Path) -> Path:
    """The one table file of dataset version ``ref`` (what a challenge bundle's ``dataset:
    NAME:N`` splits). Raises :class:`DatasetError` when the version holds none or several."""
    version = DatasetStore(Path(root)).get(ref)
    tables = [f.path for f in version.manifest.files
              if f.format in ("csv", "parquet", "hdf5", "root")]
    if len(tables) != 1:
        listed = ", ".join(tables) or "none"
        raise DatasetError(
            f"dataset {version.ref} holds {len(tables)} table files ({listed}); a challenge "
            "splits one table: add a version with only that file (podium dataset add FILE "
            f"--name {version.manifest.name}) and name it in the bundle"
        )
    return version.file(tables[0])


def run_dataset_verify(ref: str, root: Path) -> dict[str, Any]:
    """``podium dataset verify NAME:N``: exit non-zero when ``ok`` is false."""
    return DatasetStore(Path(root)).verify(ref).to_dict()


def run_dataset_list(root: Path) -> dict[str, Any]:
    """``podium dataset list``."""
    store = DatasetStore(Path(root))
    return {"versions": [{"ref": m.ref, "files": len(m.files), "rows": m.total_rows,
                          "size": m.total_size, "created": m.created, "parent": m.parent,
                          "license": m.license} for m in store.list()],
            "tags": {n: store.tags(n) for n in store.names()}}


def run_dataset_show(ref: str, root: Path) -> dict[str, Any]:
    """``podium dataset show NAME[:N|:TAG|:latest]``: the manifest."""
    return DatasetStore(Path(root)).get(ref).manifest.to_dict()


def run_dataset_tag(ref: str, tag: str, root: Path) -> dict[str, Any]:
    """``podium dataset tag NAME:N TAG``."""
    name, n = DatasetStore(Path(root)).tag(ref, tag)
    return {"tag": f"{name}:{tag}", "ref": f"{name}:{n}"}


def run_split(input_path: Path, public_dir: Path, hidden_dir: Path, spec: dict[str, Any]
              ) -> dict[str, Any]:
    """``podium dataset split FILE --public DIR --hidden DIR --spec split.yaml`` (or the same
    keys as options: --seed --id --label --weight --train --public-test --private-test
    --stratify --group --reweight)."""
    return split_file(Path(input_path), Path(public_dir), Path(hidden_dir),
                      SplitSpec.from_dict(spec)).to_dict()


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def run_variant(kind: str, in_path: Path, out_path: Path,
                options: dict[str, Any] | Sequence[str] = (),
                guard: Guard | None = None) -> dict[str, Any]:
    """``podium variant KIND [--set KEY=VALUE ...] IN OUT``: apply a variant to a table file
    (any readable format) and write Parquet or CSV by OUT's extension. ``options`` is a dict or
    ``KEY=VALUE`` strings whose values are parsed as YAML (``scale=1.03``,
    ``columns=[a,b]``)."""
    if isinstance(options, dict):
        spec: dict[str, Any] = dict(options)
    else:
        spec = {}
        for item in options:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"option {item!r}: write KEY=VALUE, e.g. scale=1.03")
            spec[key.strip()] = _parse_value(value)
    spec["kind"] = kind
    frame = read_table(Path(in_path))
    if guard is not None:
        # Before the shift: a shifted row no longer matches its hidden twin by content.
        guard(pa.Table.from_pandas(frame, preserve_index=False), Path(in_path).name)
    out = apply_variant(frame, spec)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.name.endswith((".csv", ".csv.gz")):
        out.to_csv(out_path, index=False)
    else:
        out.to_parquet(out_path, index=False)
    return {"kind": kind, "input_rows": len(frame), "output_rows": len(out),
            "output": str(out_path), "options": {k: v for k, v in spec.items() if k != "kind"}}


def run_release(public_dir: Path, out_dir: Path, metadata: dict[str, Any],
                guard: Guard | None = None) -> dict[str, Any]:
    """``podium dataset release --public DIR --out DIR --metadata release.yaml``: exports in
    every format, MD5SUMS/SHA256SUMS, datacite.json, CITATION.cff, release.torrent.
    ``guard(table, file name)`` sees every file to be exported first and raises to refuse."""
    _guard_tables(sorted(Path(public_dir).glob("*.parquet")), guard)
    meta = dict(metadata)
    creators = [Creator(**c) if isinstance(c, dict) else Creator(str(c))
                for c in meta.pop("creators", [])]
    trackers = meta.pop("trackers", [])
    return write_release(Path(public_dir), Path(out_dir),
                         ReleaseMetadata(creators=creators, **meta), trackers=trackers)


def run_release_labelled(name: str, root: Path, public_dir: Path, hidden_dir: Path,
                         id_column: str, license: str | None = None,
                         parent: str | None = None,
                         guard: Guard | None = None) -> dict[str, Any]:
    """``podium dataset release-labelled NAME --public DIR --hidden DIR --id COLUMN``: commit the
    full labelled data as a new dataset version (``guard`` sees the labelled table first)."""
    v = release_labelled_data(DatasetStore(Path(root)), name, Path(public_dir),
                              Path(hidden_dir), id_column=id_column, license=license,
                              parent=parent, guard=guard)
    return {"ref": v.ref, "manifest": v.manifest.to_dict()}


def to_json(result: dict[str, Any]) -> str:
    """Pretty JSON for printing a result."""
    return json.dumps(result, indent=2, default=str)
