"""Codabench v2 competition bundles: read ``competition.yaml``, map it onto a Podium challenge.

A bundle is a folder or a zip holding ``competition.yaml`` (docs/codabench.md lists every key and
what becomes of it). Keys Podium does not do are refused with a message naming the key; keys it
accepts with a different effect produce a note that the caller shows. A ``podium.yaml`` beside
``competition.yaml`` may add what Codabench bundles cannot say: the slug, the Python environment
(``requirements``) and each phase's budget.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, select

from challenge import storage
from challenge.bundle import SLUG_RE, BundleError, _Located
from challenge.errors import Conflict
from challenge.models import Challenge, Phase, User
from challenge.settings import Settings
from scoring.coderun import CodeRunError, Program
from scoring.jail import Budget

MAX_BUNDLE_FILES = 20_000
MAX_BUNDLE_BYTES = 4 << 30
BUDGET_KEYS = ("cpu_seconds", "wall_seconds", "memory_mb", "disk_mb", "processes", "cpus")

COMPETITION_KEYS = {
    "version", "title", "description", "image", "terms", "pages", "phases", "tasks",
    "leaderboards", "leaderboard", "solutions", "registration_auto_approve", "docker_image",
    "make_programs_available", "make_input_data_available", "enable_detailed_results",
    "show_detailed_results_in_submission_panel", "show_detailed_results_in_leaderboard",
    "contact_email", "reward", "auto_run_submissions", "can_participants_make_submissions_public",
    "forum_enabled", "queue", "fact_sheet",
}  # fmt: skip
#: Keys Podium refuses, with what to do instead.
REFUSED = {
    "queue": "Podium runs code on its own 'code' queue; remove the key.",
    "fact_sheet": "Podium asks no per-submission questions; remove the key.",
}
PHASE_KEYS = {
    "index", "name", "description", "start", "end", "tasks", "max_submissions",
    "max_submissions_per_day", "execution_time_limit", "starting_kit", "public_data",
    "hide_output", "hide_prediction_output", "hide_score_output", "auto_migrate_to_this_phase",
    "accepts_only_result_submissions",
}  # fmt: skip
TASK_KEYS = {
    "index", "name", "description", "input_data", "reference_data", "ingestion_program",
    "scoring_program", "key", "ingestion_only_during_scoring",
}  # fmt: skip
LEADERBOARD_KEYS = {"title", "key", "columns", "submission_rule", "hidden", "primary_index"}
COLUMN_KEYS = {
    "title", "key", "index", "sorting", "precision", "hidden", "computation",
    "computation_indexes",
}  # fmt: skip
COMPUTATIONS = {"sum", "avg", "min", "max"}


@dataclass
class CodabenchBundle:
    """A parsed bundle: what the challenge rows need, plus the folder it was read from."""

    root: Path
    slug: str
    title: str
    summary: str
    description_md: str
    logo: Path | None
    requires_approval: bool
    phases: list[dict[str, Any]]
    tasks: dict[int, dict[str, Any]]
    columns: list[dict[str, Any]]
    ranking: str
    higher_is_better: bool
    limits: dict[str, int]
    detailed_results: bool
    publish: dict[str, Path]
    requirements: Path | None
    notes: list[str] = field(default_factory=list)
    source_yaml: str = ""


def is_codabench_bundle(path: Path) -> bool:
    """Whether ``path`` is a folder or zip holding a ``competition.yaml``."""
    if path.is_dir():
        return (path / "competition.yaml").is_file() or (path / "competition.yml").is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return any(
                Path(n).name in ("competition.yaml", "competition.yml") for n in zf.namelist()
            )
    return False


def safe_extract(archive: Path, target: Path) -> None:
    """Unzip with no path outside ``target``, no links, and bounded size and count."""
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > MAX_BUNDLE_FILES:
            raise BundleError(f"{archive.name}: more than {MAX_BUNDLE_FILES} files.")
        if sum(m.file_size for m in members) > MAX_BUNDLE_BYTES:
            raise BundleError(f"{archive.name}: unpacks to more than {MAX_BUNDLE_BYTES >> 30} GiB.")
        root = target.resolve()
        for member in members:
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleError(f"{archive.name}: {member.filename} is a symlink; zip the file.")
            dest = (root / member.filename).resolve()
            if dest != root and root not in dest.parents:
                raise BundleError(f"{archive.name}: {member.filename} points outside the archive.")
            if member.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)


def _bundle_root(path: Path, workdir: Path) -> Path:
    if path.is_dir():
        return path
    target = workdir / "bundle"
    target.mkdir(parents=True, exist_ok=True)
    safe_extract(path, target)
    found = sorted(target.rglob("competition.y*ml"), key=lambda p: len(p.parts))
    if not found:
        raise BundleError(f"{path.name}: no competition.yaml in the zip.")
    return found[0].parent


def _date(value: Any, loc: _Located, path: tuple[str, ...]) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise loc.error(path, f"'{value}' is not a date; write 2027-04-01 00:00:00.") from exc
    # Codabench reads dates as UTC when they carry no zone.
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _text_file(root: Path, name: Any, loc: _Located, path: tuple[str, ...]) -> str:
    file = _inside(root, name, loc, path)
    if not file.is_file():
        raise loc.error(path, f"file {name} not found in the bundle.")
    return file.read_text(encoding="utf-8", errors="replace")


def _inside(root: Path, name: Any, loc: _Located, path: tuple[str, ...]) -> Path:
    resolved = (root / str(name)).resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise loc.error(path, f"{name} points outside the bundle.")
    return resolved


def _budget(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BundleError(f"podium.yaml: {where}: write a mapping such as {{memory_mb: 2048}}.")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in BUDGET_KEYS:
            raise BundleError(
                f"podium.yaml: {where}.{key}: unknown; known: {', '.join(BUDGET_KEYS)}."
            )
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise BundleError(f"podium.yaml: {where}.{key}: give a positive number.")
        out[key] = float(value)
    return out


def parse_codabench_bundle(path: Path, workdir: Path) -> CodabenchBundle:
    """Read a bundle (folder or zip, unpacked under ``workdir``) and validate it key by key."""
    root = _bundle_root(path, workdir)
    yaml_path = root / "competition.yaml"
    if not yaml_path.is_file():
        yaml_path = root / "competition.yml"
    text = yaml_path.read_text(encoding="utf-8")
    loc = _Located(yaml_path.name, text)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise loc.error((), "competition.yaml must be a mapping (title, phases, tasks, …).")
    extra: dict[str, Any] = {}
    if (root / "podium.yaml").is_file():
        extra = yaml.safe_load((root / "podium.yaml").read_text(encoding="utf-8")) or {}
        if not isinstance(extra, dict):
            raise BundleError("podium.yaml: write a mapping (slug, requirements, budget, phases).")
        for key in extra:
            if key not in ("slug", "requirements", "budget", "phases"):
                raise BundleError(
                    f"podium.yaml: {key}: unknown; the keys are slug, requirements, budget, phases."
                )
    notes: list[str] = []
    for key in raw:
        if key not in COMPETITION_KEYS:
            raise loc.error((str(key),), "not a Codabench v2 key Podium knows; remove it.")
        if key in REFUSED:
            raise loc.error((str(key),), f"not supported by Podium: {REFUSED[key]}")
    if raw.get("version", 2) not in (2, "2"):
        raise loc.error(("version",), "Podium reads Codabench v2 bundles (version: 2).")
    for key in ("title", "phases", "tasks"):
        if key not in raw:
            raise loc.error((), f"missing required key '{key}'.")
    refuse_if = {
        "auto_run_submissions": (False, "Podium runs every submission; remove the key."),
        "can_participants_make_submissions_public": (
            True, "Podium never makes a submission's code public; set it to False.",
        ),
        "forum_enabled": (False, "every Podium challenge has its forum; remove the key."),
        "show_detailed_results_in_leaderboard": (
            True, "Podium shows detailed results to their author only; set it to False.",
        ),
    }  # fmt: skip
    for key, (bad, why) in refuse_if.items():
        if key in raw and bool(raw[key]) is bad:
            raise loc.error((key,), f"not supported by Podium: {why}")

    title = str(raw["title"]).strip()
    slug = str(extra.get("slug") or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:64])
    if not SLUG_RE.match(slug):
        raise BundleError(f"podium.yaml: slug '{slug}': use lowercase letters, digits, hyphens.")
    description = str(raw.get("description") or "")
    parts = [description] if description else []
    for i, page in enumerate(raw.get("pages") or []):
        p = ("pages", str(i))
        if not isinstance(page, dict) or "file" not in page:
            raise loc.error(p, "each page needs a title and a file.")
        body = _text_file(root, page["file"], loc, (*p, "file"))
        parts.append(f"## {page.get('title', 'Page')}\n\n{body}")
    if raw.get("terms"):
        parts.append(f"## Terms\n\n{_text_file(root, raw['terms'], loc, ('terms',))}")
    if raw.get("reward"):
        parts.append(f"**Reward:** {raw['reward']}")
    if raw.get("contact_email"):
        parts.append(f"**Contact:** {raw['contact_email']}")
    logo = _inside(root, raw["image"], loc, ("image",)) if raw.get("image") else None
    if logo is not None and not logo.is_file():
        raise loc.error(("image",), f"file {raw['image']} not found in the bundle.")

    # Tasks
    tasks: dict[int, dict[str, Any]] = {}
    for i, task in enumerate(raw["tasks"] or []):
        p = ("tasks", str(i))
        if not isinstance(task, dict):
            raise loc.error(p, "each task is a mapping with index, name and scoring_program.")
        for key in task:
            if key not in TASK_KEYS:
                raise loc.error((*p, str(key)), "not a Codabench task key; remove it.")
        if "key" in task:
            raise loc.error((*p, "key"), "not supported by Podium: a task is imported from its "
                            "folders, not from another server's database; give scoring_program.")  # fmt: skip
        if task.get("ingestion_only_during_scoring"):
            raise loc.error(
                (*p, "ingestion_only_during_scoring"),
                "not supported by Podium: ingestion and scoring run one after the other.",
            )
        if "scoring_program" not in task:
            raise loc.error(p, "a task needs a scoring_program.")
        index = int(task.get("index", i))
        entry: dict[str, Any] = {"name": str(task.get("name", f"task {index}"))}
        for key in ("input_data", "reference_data", "ingestion_program", "scoring_program"):
            if task.get(key):
                source = _inside(root, task[key], loc, (*p, key))
                if not source.exists():
                    raise loc.error((*p, key), f"{task[key]} not found in the bundle.")
                entry[key] = source
        tasks[index] = entry

    # Phases
    phases: list[dict[str, Any]] = []
    extra_phases = extra.get("phases") or {}
    default_budget = _budget(extra.get("budget"), "budget")
    totals: set[int] = set()
    per_day: set[int] = set()
    publish: dict[str, Path] = {}
    raw_phases = sorted(
        enumerate(raw["phases"] or []), key=lambda ip: int(ip[1].get("index", ip[0]))
    )
    for n, (i, phase) in enumerate(raw_phases):
        p = ("phases", str(i))
        if not isinstance(phase, dict):
            raise loc.error(p, "each phase is a mapping with name, start and tasks.")
        for key in phase:
            if key not in PHASE_KEYS:
                raise loc.error((*p, str(key)), "not a Codabench phase key; remove it.")
        for key in ("name", "start", "tasks"):
            if key not in phase:
                raise loc.error(p, f"a phase needs '{key}'.")
        if phase.get("auto_migrate_to_this_phase"):
            raise loc.error((*p, "auto_migrate_to_this_phase"), "not supported by Podium: "
                            "participants submit again in each phase; remove the key.")  # fmt: skip
        task_ids = phase["tasks"] if isinstance(phase["tasks"], list) else [phase["tasks"]]
        if len(task_ids) != 1:
            raise loc.error((*p, "tasks"), "Podium runs one task per phase; list exactly one.")
        task_id = int(task_ids[0])
        if task_id not in tasks:
            raise loc.error((*p, "tasks"), f"no task with index {task_id}.")
        if phase.get("accepts_only_result_submissions") and "ingestion_program" in tasks[task_id]:
            raise loc.error((*p, "accepts_only_result_submissions"), "not supported by Podium "
                            "for a task with an ingestion program: it runs the ingestion program "
                            "on every submission.")  # fmt: skip
        opens = _date(phase["start"], loc, (*p, "start"))
        closes = _date(phase["end"], loc, (*p, "end")) if phase.get("end") else None
        if closes is None and n != len(raw_phases) - 1:
            raise loc.error((*p, "end"), "only the last phase may have no end.")
        if closes is not None and closes <= opens:
            raise loc.error((*p, "end"), "end must be after start.")
        name = str(phase["name"])
        budget = dict(default_budget)
        if "execution_time_limit" in phase:
            budget["wall_seconds"] = float(phase["execution_time_limit"])
        budget.update(_budget(extra_phases.get(name), f"phases.{name}"))
        if "max_submissions" in phase:
            totals.add(int(phase["max_submissions"]))
        if "max_submissions_per_day" in phase:
            per_day.add(int(phase["max_submissions_per_day"]))
        for key in ("starting_kit", "public_data"):
            if phase.get(key):
                source = _inside(root, phase[key], loc, (*p, key))
                if not source.exists():
                    raise loc.error((*p, key), f"{phase[key]} not found in the bundle.")
                publish[f"{key}-{_file_slug(name)}"] = source
        for key in ("hide_prediction_output", "hide_score_output"):
            if key in phase:
                notes.append(f"phases.{i}.{key}: Podium never offers those outputs for download.")
        phases.append({
            "name": name, "opens": opens, "closes": closes, "task": task_id,
            "budget": Budget.from_dict({**Budget(wall_seconds=600).to_dict(), **budget}).to_dict(),
            "hide_output": bool(phase.get("hide_output", False)),
        })  # fmt: skip
    for key, values in (("max_submissions", totals), ("max_submissions_per_day", per_day)):
        if len(values) > 1:
            raise BundleError(
                f"{yaml_path.name}: phases.*.{key}: Podium's quota is one for the whole "
                f"challenge; give every phase the same value (found {sorted(values)})."
            )
    limits = {"per_day": min(per_day) if per_day else 5, "total": min(totals) if totals else 300}

    # Leaderboard
    boards = raw.get("leaderboards", raw.get("leaderboard"))
    board_key = "leaderboards" if "leaderboards" in raw else "leaderboard"
    if not isinstance(boards, list) or len(boards) != 1:
        raise loc.error(
            (board_key,), "Podium shows one leaderboard per challenge; list exactly one."
        )
    board = boards[0]
    bp = (board_key, "0")
    for key in board:
        if key not in LEADERBOARD_KEYS:
            raise loc.error((*bp, str(key)), "not a Codabench leaderboard key; remove it.")
    if board.get("hidden"):
        raise loc.error((*bp, "hidden"), "not supported by Podium: its public board is public.")
    rule = str(board.get("submission_rule") or "Force_Best")
    if rule != "Force_Best":
        raise loc.error((*bp, "submission_rule"), f"'{rule}' is not supported by Podium, which "
                        "ranks each team's best submission (Force_Best).")  # fmt: skip
    columns: list[dict[str, Any]] = []
    for i, column in enumerate(board.get("columns") or []):
        cp = (*bp, "columns", str(i))
        for key in column:
            if key not in COLUMN_KEYS:
                raise loc.error((*cp, str(key)), "not a Codabench column key; remove it.")
        if "key" not in column:
            raise loc.error(cp, "a column needs the key the scoring program writes.")
        sorting = str(column.get("sorting", "desc")).lower()
        if sorting not in ("asc", "desc"):
            raise loc.error((*cp, "sorting"), "use asc (smaller is better) or desc.")
        computation = column.get("computation")
        if computation is not None and computation not in COMPUTATIONS:
            raise loc.error((*cp, "computation"), f"use one of {', '.join(sorted(COMPUTATIONS))}.")
        if computation is not None and not column.get("computation_indexes"):
            raise loc.error((*cp, "computation_indexes"), "list the columns to compute from.")
        columns.append({
            "key": str(column["key"]), "title": str(column.get("title", column["key"])),
            "index": int(column.get("index", i)), "sorting": sorting,
            "precision": int(column.get("precision", 2)), "hidden": bool(column.get("hidden")),
            "computation": computation,
            "computation_indexes": [int(x) for x in column.get("computation_indexes") or []],
        })  # fmt: skip
    if not columns:
        raise loc.error((*bp, "columns"), "list at least one column.")
    columns.sort(key=lambda c: c["index"])
    primary = int(board.get("primary_index", columns[0]["index"]))
    ranking = next((c for c in columns if c["index"] == primary), None)
    if ranking is None:
        raise loc.error((*bp, "primary_index"), f"no column has index {primary}.")

    # Programs can be read now (their metadata.yaml), so a bad one fails creation, not grading.
    for index, task in tasks.items():
        for role in ("ingestion_program", "scoring_program"):
            if role in task:
                try:
                    Program.load(
                        _program_dir(task[role], workdir / f"probe-{index}-{role}"), role=role
                    )
                except CodeRunError as exc:
                    raise BundleError(f"{yaml_path.name}: tasks.{index}.{exc}") from exc

    requirements = None
    if extra.get("requirements"):
        requirements = _inside(root, extra["requirements"], loc, ())
        if not requirements.is_file():
            raise BundleError(f"podium.yaml: requirements: {extra['requirements']} not found.")
    elif (root / "requirements.txt").is_file():
        requirements = root / "requirements.txt"
    if raw.get("docker_image"):
        notes.append(
            f"docker_image: {raw['docker_image']} is not run (Podium runs no containers); the "
            + ("programs run in a virtualenv built from " + requirements.name
               if requirements else "programs run in Podium's own Python environment")
        )  # fmt: skip
    if raw.get("solutions"):
        notes.append("solutions: kept in the bundle, not run; submit one as a baseline to test.")
    if raw.get("make_programs_available"):
        for task in tasks.values():
            for role in ("ingestion_program", "scoring_program"):
                if role in task:
                    publish[f"{role}-{task['name']}"] = task[role]
    if raw.get("make_input_data_available"):
        for task in tasks.values():
            if "input_data" in task:
                publish[f"input_data-{task['name']}"] = task["input_data"]
    if raw.get("registration_auto_approve") is None:
        notes.append("registration_auto_approve: absent, so registrations wait for approval "
                     "(Codabench's default).")  # fmt: skip
    return CodabenchBundle(
        root=root,
        slug=slug,
        title=title,
        summary=description[:500],
        description_md="\n\n".join(parts),
        logo=logo,
        requires_approval=not bool(raw.get("registration_auto_approve", False)),
        phases=phases,
        tasks=tasks,
        columns=columns,
        ranking=ranking["key"],
        higher_is_better=ranking["sorting"] == "desc",
        limits=limits,
        detailed_results=bool(raw.get("enable_detailed_results", False))
        and bool(raw.get("show_detailed_results_in_submission_panel", True)),
        publish=publish,
        requirements=requirements,
        notes=notes,
        source_yaml=text,
    )


def _file_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "file"


def _program_dir(source: Path, scratch: Path) -> Path:
    """A program or data given as a folder, or as a zip unpacked into ``scratch``."""
    if source.is_dir():
        return source
    scratch.mkdir(parents=True, exist_ok=True)
    safe_extract(source, scratch)
    entries = [e for e in scratch.iterdir() if e.name != "__MACOSX"]
    # Zips made of a folder hold that one folder: Codabench looks inside it too.
    if len(entries) == 1 and entries[0].is_dir() and not (scratch / "metadata.yaml").exists():
        return entries[0]
    return scratch


def _copy_readable(source: Path, target: Path, scratch: Path) -> None:
    """Copy a task folder (or unpack its zip) into the label store, world-readable (each jailed
    step runs as its own uid; the store's parent folders keep everyone else out)."""
    folder = _program_dir(source, scratch)
    shutil.copytree(folder, target, symlinks=False)
    for dirpath, _dirs, files in os.walk(target):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read by the jailed step's uid (see docstring)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


# ---------------------------------------------------------------- environment


class EnvironmentError_(BundleError):
    """The challenge's Python environment could not be built."""


def build_environment(settings: Settings, slug: str, requirements: Path) -> dict[str, Any]:
    """Build the challenge's virtualenv from ``requirements`` once, freeze it, make it read-only.

    Uses the package index pip is configured for, plus ``settings.code_pip_args``; grading
    never installs anything. Raises :class:`EnvironmentError_` with pip's reason on failure
    (an unreachable index says so).
    """
    env_dir = storage.label_dir(settings, slug) / "codabench" / "env"
    shutil.rmtree(env_dir, ignore_errors=True)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603 - our interpreter's venv module
        [sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, timeout=300
    )
    python = env_dir / "bin" / "python"
    args = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
            "--no-cache-dir", "-r", str(requirements), *settings.code_pip_args.split()]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - pip of the challenge's own virtualenv
        args, capture_output=True, text=True, timeout=1800, cwd=requirements.parent
    )
    if done.returncode != 0:
        shutil.rmtree(env_dir, ignore_errors=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        offline = any(s in done.stderr for s in ("NewConnectionError", "Temporary failure in name",
                                                  "Network is unreachable", "No route to host"))  # fmt: skip
        reason = "the package index is unreachable; " if offline else ""
        raise EnvironmentError_(
            f"requirements: could not build the Python environment from {requirements.name}: "
            f"{reason}pip said:\n{tail}"
        )
    frozen = subprocess.run(  # noqa: S603 - as above
        [str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout
    (env_dir / "frozen-requirements.txt").write_text(frozen)
    for dirpath, _dirs, files in os.walk(env_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, (mode | 0o444) & ~0o222)
        os.chmod(dirpath, 0o555)  # noqa: S103 - frozen and readable: runs read it, none writes
    return {"prefix": str(env_dir), "frozen": frozen}


# ---------------------------------------------------------------- creation


def create_codabench_challenge(
    session: Session,
    *,
    settings: Settings,
    bundle: CodabenchBundle,
    creator: User | None,
    environment: dict[str, Any] | None = None,
) -> Challenge:
    """Insert the challenge and its phases, copy the tasks to the label store and the public
    files (logo, starting kits) to the public folder. The challenge is ready at once."""
    if session.exec(select(Challenge).where(Challenge.slug == bundle.slug)).first() is not None:
        raise Conflict(f"A challenge with slug '{bundle.slug}' exists; set another in podium.yaml.")
    hidden = storage.label_dir(settings, bundle.slug) / "codabench"
    public = storage.public_dir(settings, bundle.slug)
    public.mkdir(parents=True, exist_ok=True)
    used = sorted({p["task"] for p in bundle.phases})
    tasks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="podium-codabench-") as tmp:
        for index in used:
            task = bundle.tasks[index]
            target = hidden / "tasks" / str(index)
            shutil.rmtree(target, ignore_errors=True)
            stored: dict[str, Any] = {"name": task["name"]}
            for role in ("input_data", "reference_data", "ingestion_program", "scoring_program"):
                if role in task:
                    _copy_readable(task[role], target / role, Path(tmp) / f"{index}-{role}")
                    stored[role] = str(target / role)
            tasks[str(index)] = stored
        files = []
        for name, source in bundle.publish.items():
            archive = shutil.make_archive(
                str(Path(tmp) / name), "zip", root_dir=_program_dir(source, Path(tmp) / f"p-{name}")
            )
            shutil.copy(archive, public / f"{name}.zip")
            files.append({"name": f"{name}.zip", "size": (public / f"{name}.zip").stat().st_size})
    logo_name = None
    if bundle.logo is not None:
        logo_name = "logo" + bundle.logo.suffix.lower()
        shutil.copy(bundle.logo, public / logo_name)
    row = Challenge(
        slug=bundle.slug,
        title=bundle.title,
        summary=bundle.summary,
        description_md=bundle.description_md,
        bundle_yaml=bundle.source_yaml,
        kind="codabench",
        limits={
            "per_day": bundle.limits["per_day"],
            "total": bundle.limits["total"],
            "file_mb": 100,
            "team_size": 4,
            "final_selections": 2,
        },
        leaderboard={"reveal": "at_close"},
        public_files=files,
        requires_approval=bundle.requires_approval,
        state="ready",
        created_by=creator.id if creator else None,
        codabench={
            "tasks": tasks,
            "columns": bundle.columns,
            "ranking": bundle.ranking,
            "higher_is_better": bundle.higher_is_better,
            "detailed_results": bundle.detailed_results,
            "logo": logo_name,
            "environment": environment or {"prefix": None},
            "notes": bundle.notes,
            "code": any("ingestion_program" in bundle.tasks[i] for i in used),
        },
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for position, spec in enumerate(bundle.phases):
        session.add(
            Phase(
                challenge_id=row.id,
                name=spec["name"],
                position=position,
                opens_at=spec["opens"],
                closes_at=spec["closes"],
                budget={**spec["budget"], "task": spec["task"], "hide_output": spec["hide_output"]},
            )
        )
    session.flush()
    return row


def column_scores(columns: list[dict[str, Any]], scores: dict[str, float]) -> dict[str, float]:
    """The leaderboard's columns from a scoring program's scores, computed columns included."""
    by_index = {c["index"]: c for c in columns}
    out = {c["key"]: scores[c["key"]] for c in columns if c["key"] in scores}
    for column in columns:
        if column.get("computation") and column["key"] not in out:
            values = [
                out[by_index[i]["key"]]
                for i in column["computation_indexes"]
                if i in by_index and by_index[i]["key"] in out
            ]
            if values:
                fn = column["computation"]
                out[column["key"]] = (
                    sum(values) / len(values) if fn == "avg" else
                    sum(values) if fn == "sum" else min(values) if fn == "min" else max(values)
                )  # fmt: skip
    return out
