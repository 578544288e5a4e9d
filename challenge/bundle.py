"""Challenge bundles (challenge.yaml): parse, validate, and point every error at its YAML line."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from challenge.errors import BadRequest

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_LIMITS = {"per_day": 5, "total": 300, "file_mb": 100, "team_size": 4, "final_selections": 2}


class BundleError(BadRequest):
    """A bundle mistake, with the file and line where it is."""


@dataclass
class PhaseSpec:
    name: str
    opens: dt.datetime
    closes: dt.datetime | None


@dataclass
class Bundle:
    slug: str
    title: str
    description_md: str
    summary: str
    dataset: str
    dataset_path: Path | None
    license: str
    split: dict[str, Any]
    variants: list[dict[str, Any]]
    submission: dict[str, Any]
    metric: dict[str, Any]
    phases: list[PhaseSpec]
    limits: dict[str, Any]
    leaderboard: dict[str, Any]
    source_yaml: str
    base_dir: Path = field(default_factory=Path)
    #: The organizer metric file (``metric: {name: python, file: ...}``), resolved inside the
    #: bundle's folder; ``metric["file"]`` is then its name in the challenge's metric store.
    metric_file: Path | None = None


class _Located:
    """Remembers the line of every mapping key so that errors can name it."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self.lines: dict[tuple[str, ...], int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise BundleError(f"{filename}{where}: not valid YAML ({exc}).") from exc
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[str, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                self._walk(value, sub)
                self.lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, str(i)))

    def error(self, path: tuple[str, ...], message: str) -> BundleError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        dotted = ".".join(path) if path else "(top level)"
        return BundleError(f"{self.filename} line {line}: {dotted}: {message}")


def _as_datetime(value: Any, loc: _Located, path: tuple[str, ...]) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise loc.error(
                path, f"'{value}' is not a date-time; write e.g. 2027-04-01T00:00Z."
            ) from exc
    else:
        raise loc.error(path, "write a date-time such as 2027-04-01T00:00Z.")
    if parsed.tzinfo is None:
        raise loc.error(path, "add a timezone (for example a trailing Z for UTC).")
    return parsed.astimezone(dt.UTC)


#: Largest organizer metric file accepted (it is Python source, not data).
MAX_METRIC_FILE_BYTES = 1 << 20
METRIC_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def _metric_file(value: Any, base_dir: Path, loc: _Located) -> Path:
    """The metric file named by the bundle: a file inside the bundle's folder, nowhere else."""
    where = ("metric", "file")
    if not isinstance(value, str) or not value.strip():
        raise loc.error(where, "name the metric file next to the bundle, e.g. file: metric.py.")
    if Path(value).is_absolute():
        raise loc.error(
            where, f"'{value}' is an absolute path; give the metric file's path relative to the "
            "bundle (e.g. metric.py) and keep the file in the bundle's folder."
        )
    folder = base_dir.resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder):
        raise loc.error(
            where, f"'{value}' leaves the bundle's folder; keep the metric file in the folder of "
            "the bundle (or below it) and name it relative to the bundle."
        )
    if not path.is_file():
        raise loc.error(where, f"file {value} not found next to the bundle.")
    if not METRIC_NAME_RE.match(path.name):
        raise loc.error(
            where, f"rename '{path.name}' to letters, digits, '_', '.' and '-' (e.g. metric.py)."
        )
    if path.stat().st_size > MAX_METRIC_FILE_BYTES:
        raise loc.error(where, f"{value} is larger than 1 MiB; a metric file is Python source.")
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise loc.error(where, f"{value} is not UTF-8 text; save it as UTF-8.") from exc
    return path


def parse_bundle(path: Path) -> Bundle:
    """Read and validate a bundle file; relative file names are resolved next to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: no such file.") from exc
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text; save the bundle as UTF-8.") from exc
    return parse_bundle_text(text, filename=path.name, base_dir=path.parent)


def parse_bundle_text(text: str, *, filename: str = "challenge.yaml", base_dir: Path) -> Bundle:
    loc = _Located(filename, text)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise loc.error((), "the bundle must be a mapping of keys such as slug, title, dataset.")
    known = {
        "slug",
        "title",
        "summary",
        "description",
        "dataset",
        "license",
        "split",
        "variants",
        "submission",
        "metric",
        "phases",
        "limits",
        "leaderboard",
    }
    for key in raw:
        if key not in known:
            raise loc.error((str(key),), f"unknown key; the keys are {', '.join(sorted(known))}.")
    for key in ("slug", "title", "dataset", "split", "submission", "metric", "phases"):
        if key not in raw:
            raise loc.error((), f"missing required key '{key}'.")

    slug = str(raw["slug"])
    if not SLUG_RE.match(slug):
        fixed = re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")[:64] or "my-challenge"
        raise loc.error(("slug",), f"use lowercase letters, digits and hyphens, e.g. '{fixed}'.")

    description = raw.get("description", "")
    description_md = ""
    if isinstance(description, str) and description.endswith(".md"):
        desc_path = base_dir / description
        if not desc_path.is_file():
            raise loc.error(("description",), f"file {description} not found next to the bundle.")
        description_md = desc_path.read_text(encoding="utf-8")
    elif isinstance(description, str):
        description_md = description

    dataset = str(raw["dataset"])
    dataset_path: Path | None = None
    if (
        re.match(r"^[a-z0-9-]+:(\d+|latest|[A-Za-z0-9_.-]+)$", dataset)
        and not (base_dir / dataset).exists()
    ):
        dataset_path = None  # a dataset-store reference such as higgsml:1
    else:
        dataset_path = (base_dir / dataset).resolve()
        if not dataset_path.is_file():
            raise loc.error(
                ("dataset",),
                f"file {dataset} not found next to the bundle; give a "
                "path relative to the bundle or a dataset version such as higgsml:1.",
            )

    split = raw["split"]
    if not isinstance(split, dict):
        raise loc.error(
            ("split",),
            "write a mapping: {seed: 1, train: 0.5, public_test: 0.2, private_test: 0.3}.",
        )
    if "seed" not in split or not isinstance(split["seed"], int):
        raise loc.error(("split", "seed"), "give an integer seed so the split is reproducible.")
    sizes = [split.get(k) for k in ("train", "public_test", "private_test")]
    for key, value in zip(("train", "public_test", "private_test"), sizes, strict=True):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise loc.error(
                ("split", key), "give a positive fraction (0.2) or a row count (100000)."
            )
    if all(isinstance(v, float) for v in sizes) and abs(sum(sizes) - 1.0) > 1e-9:  # type: ignore[arg-type]
        raise loc.error(("split",), f"fractions add up to {sum(sizes):.4g}, not 1.")  # type: ignore[arg-type]

    submission = raw["submission"]
    if not isinstance(submission, dict) or "id" not in submission or "columns" not in submission:
        raise loc.error(
            ("submission",),
            "write {id: EventId, columns: {RankOrder: rank, Class: {values: [s, b]}}}.",
        )
    metric = raw["metric"]
    if not isinstance(metric, dict) or "name" not in metric:
        raise loc.error(
            ("metric",), "write {name: ams, weight: Weight, label: Label, positive: s}."
        )
    if "label" not in metric and "label" not in split:
        raise loc.error(
            ("metric", "label"),
            "name the label column the split keeps hidden: label: Label in the metric, or in "
            "the split (split: {..., label: Label}) for a metric that takes no label, such as "
            "python.",
        )
    metric_file = None
    if metric.get("name") == "python" and "file" in metric:
        metric_file = _metric_file(metric["file"], base_dir, loc)
        metric["file"] = metric_file.name

    phases_raw = raw["phases"]
    if not isinstance(phases_raw, list) or not phases_raw:
        raise loc.error(("phases",), "list at least one phase with a name and an 'opens' time.")
    phases: list[PhaseSpec] = []
    for i, item in enumerate(phases_raw):
        p = ("phases", str(i))
        if not isinstance(item, dict) or "name" not in item or "opens" not in item:
            raise loc.error(p, "each phase needs a name and an 'opens' time.")
        opens = _as_datetime(item["opens"], loc, (*p, "opens"))
        closes = _as_datetime(item["closes"], loc, (*p, "closes")) if item.get("closes") else None
        if closes is not None and closes <= opens:
            raise loc.error((*p, "closes"), "closes must be after opens.")
        phases.append(PhaseSpec(name=str(item["name"]), opens=opens, closes=closes))

    limits = dict(DEFAULT_LIMITS)
    for key, value in (raw.get("limits") or {}).items():
        if key not in DEFAULT_LIMITS:
            raise loc.error(
                ("limits", str(key)), f"unknown limit; known: {', '.join(DEFAULT_LIMITS)}."
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise loc.error(("limits", str(key)), "give a whole number of at least 1.")
        limits[key] = value

    variants = raw.get("variants") or []
    if not isinstance(variants, list) or not all(
        isinstance(v, dict) and "name" in v and "kind" in v for v in variants
    ):
        raise loc.error(("variants",), "list variants as {name: tes-up, kind: tes, scale: 1.03}.")

    leaderboard = dict(raw.get("leaderboard") or {})
    reveal = leaderboard.setdefault("reveal", "at_close")
    if reveal not in ("at_close", "manual"):
        # A date: the reveal happens then, but never before the last phase closes.
        if not isinstance(reveal, dt.datetime | str):
            raise loc.error(
                ("leaderboard", "reveal"),
                "use 'at_close', 'manual' or a date such as 2027-07-15T00:00Z.",
            )
        try:
            when = _as_datetime(reveal, loc, ("leaderboard", "reveal"))
        except BundleError as exc:
            raise loc.error(
                ("leaderboard", "reveal"),
                "use 'at_close', 'manual' or a date such as 2027-07-15T00:00Z.",
            ) from exc
        leaderboard["reveal"] = when.isoformat()

    return Bundle(
        slug=slug,
        title=str(raw["title"]),
        summary=str(raw.get("summary", "")),
        description_md=description_md,
        dataset=dataset,
        dataset_path=dataset_path,
        license=str(raw.get("license", "")),
        split=dict(split),
        variants=list(variants),
        submission=dict(submission),
        metric=dict(metric),
        phases=phases,
        limits=limits,
        leaderboard=leaderboard,
        source_yaml=text,
        base_dir=base_dir,
        metric_file=metric_file,
    )
