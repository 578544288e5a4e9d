"""Immutable, checksummed dataset versions stored as directories.

Layout under the store root::

    ROOT/NAME/N/manifest.json     the manifest of version N (see :class:`Manifest`)
    ROOT/NAME/N/files/...         the data files, read-only once committed
    ROOT/NAME/tags.json           {"tag": N}: tags are the only mutable thing

A version is built in a temporary directory next to its final place and renamed into place in
one step, so no partial version is ever visible; a committed version never changes: editing one
(:meth:`DatasetStore.edit`) makes version N+1 whose manifest names N as its parent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from splitter.formats import FormatError, file_checksums, inspect_file

NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REF_RE = re.compile(r"^(?P<name>[^:]+)(?::(?P<version>[^:]+))?$")
MANIFEST = "manifest.json"


class DatasetError(ValueError):
    """A dataset operation cannot be done; the message says what to change."""


def suggest_name(name: str) -> str:
    """A valid dataset name close to ``name``: lowercase, digits and single hyphens."""
    s = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    return s or "dataset"


def check_name(name: str) -> str:
    """Return ``name`` if valid, else raise :class:`DatasetError` proposing a valid one."""
    if not NAME_RE.match(name):
        raise DatasetError(
            f"invalid dataset name {name!r}: use lowercase letters, digits and hyphens only "
            f"(no leading, trailing or double hyphen), for example {suggest_name(name)!r}"
        )
    return name


@dataclass
class FileEntry:
    """One file of a version, as recorded in its manifest."""

    path: str
    format: str
    size: int
    rows: int
    events: int | None
    schema: list[dict[str, str]]
    md5: str
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """Everything known about a dataset version."""

    name: str
    version: int
    files: list[FileEntry]
    created: str
    license: str | None = None
    description: str | None = None
    citation: dict[str, Any] | None = None
    parent: str | None = None
    total_rows: int = 0
    total_events: int | None = None
    total_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``NAME:N``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["files"] = [FileEntry(**f) for f in data["files"]]
        return cls(**data)


@dataclass
class DatasetVersion:
    """A committed version: its manifest and where its files are."""

    manifest: Manifest
    directory: Path

    @property
    def ref(self) -> str:
        """``NAME:N``."""
        return self.manifest.ref

    @property
    def files_dir(self) -> Path:
        """Directory holding the data files."""
        return self.directory / "files"

    def file(self, relpath: str) -> Path:
        """Absolute path of one of the version's files."""
        return self.files_dir / relpath


@dataclass
class VerifyResult:
    """Outcome of :meth:`DatasetStore.verify`."""

    ref: str
    ok: bool
    checked: int
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)


# Module-level alias: inside DatasetStore the name ``list`` is the method.
_Sources = list[tuple[Path, str]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DatasetStore:
    """Dataset versions under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        """Names of all datasets."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def versions(self, name: str) -> list[int]:
        """Committed version numbers of ``name``, ascending."""
        d = self.root / name
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir()
                      if p.name.isdigit() and (p / MANIFEST).is_file())

    def list(self) -> list[Manifest]:
        """Manifests of every version of every dataset."""
        return [self.get(f"{n}:{v}").manifest for n in self.names() for v in self.versions(n)]

    def tags(self, name: str) -> dict[str, int]:
        """Tags of dataset ``name``."""
        p = self.root / name / "tags.json"
        return {str(k): int(v) for k, v in json.loads(p.read_text()).items()} if p.exists() else {}

    def resolve(self, ref: str) -> tuple[str, int]:
        """Turn ``NAME``, ``NAME:N``, ``NAME:latest`` or ``NAME:TAG`` into ``(NAME, N)``."""
        m = REF_RE.match(ref.strip())
        if not m:
            raise DatasetError(f"bad dataset reference {ref!r}; write NAME:N, NAME:latest or "
                               "NAME:TAG")
        name, version = m.group("name"), m.group("version") or "latest"
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise DatasetError(f"no dataset named {name!r}; datasets: {known}")
        if version == "latest":
            return name, versions[-1]
        if version.isdigit():
            if int(version) not in versions:
                raise DatasetError(f"{name} has no version {version}; versions: "
                                   f"{', '.join(map(str, versions))}")
            return name, int(version)
        tags = self.tags(name)
        if version not in tags:
            raise DatasetError(f"{name} has no tag {version!r}; tags: "
                               f"{', '.join(sorted(tags)) or 'none'}; or give a version number")
        return name, tags[version]

    def get(self, ref: str) -> DatasetVersion:
        """The committed version ``ref`` points at."""
        name, n = self.resolve(ref)
        d = self.root / name / str(n)
        return DatasetVersion(Manifest.from_dict(json.loads((d / MANIFEST).read_text())), d)

    # ------------------------------------------------------------------ writing

    def add(
        self,
        files: Sequence[Path],
        name: str,
        *,
        license: str | None = None,
        description: str | None = None,
        citation: dict[str, Any] | None = None,
        tree: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> DatasetVersion:
        """Ingest ``files`` as a new version of ``name`` (version 1, or latest + 1 with the latest
        as parent). Every file is read through and checksummed first; a bad file raises
        :class:`DatasetError` naming it and nothing is committed."""
        check_name(name)
        if not files:
            raise DatasetError("no files given; name at least one data file")
        paths = [Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{p}: no such file")
        seen: dict[str, Path] = {}
        for p in paths:
            if p.name in seen:
                raise DatasetError(f"{p} and {seen[p.name]} have the same file name; rename one")
            seen[p.name] = p
        parent = self.versions(name)
        return self._commit(
            name,
            [(p, p.name) for p in paths],
            license=license,
            description=description,
            citation=citation,
            parent=f"{name}:{parent[-1]}" if parent else None,
            tree=tree,
            extra=extra or {},
        )

    def edit(
        self,
        ref: str,
        *,
        add: Sequence[Path] = (),
        remove: Sequence[str] = (),
        license: str | None = None,
        description: str | None = None,
        citation: dict[str, Any] | None = None,
    ) -> DatasetVersion:
        """Make ``NAME:N+1`` from version ``ref`` with files added, removed or metadata changed.
        The version ``ref`` itself is never modified."""
        base = self.get(ref)
        m = base.manifest
        kept = [f for f in m.files if f.path not in set(remove)]
        missing = set(remove) - {f.path for f in m.files}
        if missing:
            raise DatasetError(f"{base.ref} has no file(s) {', '.join(sorted(missing))}; "
                               f"files: {', '.join(f.path for f in m.files)}")
        sources = [(base.file(f.path), f.path) for f in kept]
        names = {f.path for f in kept}
        for p in add:
            if Path(p).name in names:
                raise DatasetError(f"{base.ref} already has a file {Path(p).name}; remove it "
                                   "in the same edit or rename the new one")
            sources.append((Path(p), Path(p).name))
        return self._commit(
            m.name,
            sources,
            license=license if license is not None else m.license,
            description=description if description is not None else m.description,
            citation=citation if citation is not None else m.citation,
            parent=base.ref,
            tree=None,
            extra=m.extra,
            known={f.path: f for f in kept},
        )

    def _commit(
        self,
        name: str,
        sources: _Sources,
        *,
        license: str | None,
        description: str | None,
        citation: dict[str, Any] | None,
        parent: str | None,
        tree: str | None,
        extra: dict[str, Any],
        known: dict[str, FileEntry] | None = None,
    ) -> DatasetVersion:
        ds_dir = self.root / name
        ds_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=ds_dir))
        try:
            files_dir = tmp / "files"
            files_dir.mkdir()
            entries: list[FileEntry] = []
            for src, rel in sources:
                dest = files_dir / rel
                if known and rel in known:
                    # Unchanged file of the parent version: a hard link shares the bytes.
                    try:
                        os.link(src, dest)
                    except OSError:
                        shutil.copy2(src, dest)
                    entries.append(known[rel])
                    continue
                shutil.copyfile(src, dest)
                try:
                    info = inspect_file(dest, tree=tree)
                except FormatError as exc:
                    raise DatasetError(str(exc).replace(str(dest), str(src))) from exc
                md5, sha = file_checksums(dest)
                entries.append(FileEntry(
                    path=rel, format=info.format, size=dest.stat().st_size, rows=info.rows,
                    events=info.events, schema=info.schema, md5=md5, sha256=sha,
                    extra=info.extra,
                ))
            entries.sort(key=lambda e: e.path)
            check_tracking_events(entries)
            manifest = Manifest(
                name=name, version=0, files=entries, created=_now(), license=license,
                description=description, citation=citation, parent=parent,
                total_rows=sum(e.rows for e in entries),
                total_events=_total_events(entries),
                total_size=sum(e.size for e in entries), extra=extra,
            )
            for f in files_dir.rglob("*"):
                if f.is_file():
                    f.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            # Claim the next number by renaming: if another writer took it first the rename
            # fails (the target exists and is not empty) and we try the next one.
            while True:
                existing = self.versions(name)
                n = (existing[-1] + 1) if existing else 1
                manifest.version = n
                (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
                try:
                    os.rename(tmp, ds_dir / str(n))
                except OSError:
                    if (ds_dir / str(n)).exists():
                        continue
                    raise
                break
        except BaseException:
            _remove_tree(tmp)
            raise
        return DatasetVersion(manifest, ds_dir / str(n))

    def tag(self, ref: str, tag: str) -> tuple[str, int]:
        """Point ``tag`` of the dataset at the version ``ref`` resolves to; return it."""
        name, n = self.resolve(ref)
        if tag == "latest" or tag.isdigit() or not NAME_RE.match(tag):
            raise DatasetError(f"invalid tag {tag!r}: use lowercase letters, digits and hyphens, "
                               "not a number and not 'latest'")
        tags = self.tags(name)
        tags[tag] = n
        p = self.root / name / "tags.json"
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(tags, indent=2, sort_keys=True) + "\n")
        tmp.replace(p)
        return name, n

    def verify(self, ref: str) -> VerifyResult:
        """Re-read every file of version ``ref`` and compare size, MD5 and SHA-256 with the
        manifest; report missing, extra and changed files."""
        version = self.get(ref)
        problems: list[str] = []
        listed = {f.path for f in version.manifest.files}
        for entry in version.manifest.files:
            p = version.file(entry.path)
            if not p.is_file():
                problems.append(f"{entry.path}: missing")
                continue
            size = p.stat().st_size
            if size != entry.size:
                problems.append(f"{entry.path}: size {size} bytes, manifest says {entry.size}")
            md5, sha = file_checksums(p)
            if md5 != entry.md5:
                problems.append(f"{entry.path}: MD5 {md5} differs from manifest {entry.md5}")
            if sha != entry.sha256:
                problems.append(f"{entry.path}: SHA-256 {sha} differs from manifest "
                                f"{entry.sha256}")
        if version.files_dir.is_dir():
            for p in sorted(version.files_dir.rglob("*")):
                rel = p.relative_to(version.files_dir).as_posix()
                if p.is_file() and rel not in listed:
                    problems.append(f"{rel}: not in the manifest")
        return VerifyResult(version.ref, not problems, len(version.manifest.files), problems)


def check_tracking_events(entries: list[FileEntry]) -> None:
    """Refuse an incomplete set of TrackML per-event files: every event needs hits, a kind of
    file (truth, particles, cells) given for one event is needed for all, and a truth file has
    one row per hit."""
    kinds: dict[int, dict[str, FileEntry]] = {}
    for e in entries:
        if e.format.startswith("trackml-"):
            kinds.setdefault(int(e.extra["event"]), {})[e.format.removeprefix("trackml-")] = e
    if not kinds:
        return
    present = {k for files in kinds.values() for k in files}
    for kind in sorted(present | {"hits"}):
        missing = sorted(ev for ev, files in kinds.items() if kind not in files)
        if missing:
            have = sorted(set(kinds) - set(missing))
            shown = ", ".join(f"event{ev:09d}-{kind}.csv" for ev in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(
                f"TrackML files incomplete: {shown}{more} missing, while "
                f"{len(have)} other event(s) have one (e.g. event{have[0]:09d}-{kind}.csv); "
                f"add the missing files" + ("" if kind == "hits" else
                                            f", or leave out every {kind} file")
            )
    for _event, files in sorted(kinds.items()):
        hits, truth = files.get("hits"), files.get("truth")
        if hits is not None and truth is not None and hits.rows != truth.rows:
            raise DatasetError(
                f"{truth.path} has {truth.rows} rows but {hits.path} has {hits.rows}; the "
                "truth file needs exactly one row per hit of its event"
            )


def _total_events(entries: list[FileEntry]) -> int | None:
    tracking = {e.extra.get("event") for e in entries if e.format.startswith("trackml-")}
    if tracking:
        return len(tracking)
    counts = [e.events for e in entries if e.events is not None]
    return sum(counts) if counts else None


def _remove_tree(path: Path) -> None:
    # Read-only files do not prevent removal: only the directories' permissions matter.
    shutil.rmtree(path, ignore_errors=True)
