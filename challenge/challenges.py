"""Challenges and phases: creation from a bundle, preparation (split + publish), status."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import Session, col, select

from challenge import storage
from challenge.bundle import MAX_METRIC_FILE_BYTES, METRIC_NAME_RE, SLUG_RE, Bundle
from challenge.errors import BadRequest, Conflict, NotFound, PermissionDenied
from challenge.ledger import (
    HoldoutRefused,
    Override,
    check_publication,
    dataset_lineage,
    ledger_lock,
    record_challenge,
)
from challenge.models import AuditEvent, Challenge, Participation, Phase, User, utcnow
from challenge.settings import Settings
from scoring.formats import SubmissionFormat
from scoring.metrics import MetricSpec, get_metric
from splitter.formats import file_checksums
from splitter.ledger import count_in, distinct, feature_columns, row_hashes
from splitter.split import SplitSpec, split_file
from splitter.variants import apply_variant

log = logging.getLogger(__name__)
NON_SUBMITTING_PHASES = {"announcement"}


def create_challenge(
    session: Session, *, bundle: Bundle, creator: User | None, settings: Settings | None = None
) -> Challenge:
    """Insert the challenge and its phases in state 'preparing'; the split runs afterwards.

    A bundle with an organizer metric file needs ``settings``: the file is copied into the
    challenge's metric store (:func:`challenge.storage.metric_dir`) here, once, and the metric
    names it there.
    """
    if session.exec(select(Challenge).where(Challenge.slug == bundle.slug)).first() is not None:
        raise Conflict(f"A challenge with slug '{bundle.slug}' exists; choose another slug.")
    try:
        fmt = SubmissionFormat.from_dict(bundle.submission)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"challenge.yaml: submission: {exc}") from exc
    try:
        metric = MetricSpec.from_dict(bundle.metric)
        get_metric(metric.name)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"challenge.yaml: metric: {exc}") from exc
    if bundle.metric_file is not None:
        if settings is None:
            raise TypeError("create_challenge needs settings to store the bundle's metric file")
        store_metric_file(settings, bundle.slug, bundle.metric_file)
    row = Challenge(
        slug=bundle.slug,
        title=bundle.title,
        summary=bundle.summary,
        description_md=bundle.description_md,
        bundle_yaml=bundle.source_yaml,
        dataset_ref=bundle.dataset,
        license=bundle.license,
        submission_format=fmt.to_dict(),
        metric=metric.to_dict(),
        split=bundle.split,
        variants=bundle.variants,
        limits=bundle.limits,
        leaderboard=bundle.leaderboard,
        created_by=creator.id if creator else None,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for position, spec in enumerate(bundle.phases):
        session.add(
            Phase(
                challenge_id=row.id,
                name=spec.name,
                position=position,
                opens_at=spec.opens,
                closes_at=spec.closes,
                accepts_submissions=spec.name.lower() not in NON_SUBMITTING_PHASES,
            )
        )
    session.flush()
    return row


def store_metric_file(settings: Settings, slug: str, source: Path) -> str:
    """Copy an organizer metric file into the challenge's metric store; return its store name.

    The copy is written beside and renamed over, so a grading in progress reads the old file
    or the new one, never half of one.
    """
    if not METRIC_NAME_RE.match(source.name):
        raise BadRequest(
            f"rename the metric file '{source.name}' to letters, digits, '_', '.' and '-' "
            "(e.g. metric.py)."
        )
    if source.stat().st_size > MAX_METRIC_FILE_BYTES:
        raise BadRequest(f"{source.name} is larger than 1 MiB; a metric file is Python source.")
    folder = storage.metric_dir(settings, slug)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    partial = folder / f".{source.name}.partial"
    shutil.copyfile(source, partial)
    partial.chmod(0o644)
    partial.replace(target)
    return target.name


def copy_metric_store(settings: Settings, source_slug: str, slug: str) -> None:
    """Give a challenge cloned from another (a class) its own copy of the metric store."""
    source = storage.metric_dir(settings, source_slug)
    if source.is_dir():
        shutil.copytree(source, storage.metric_dir(settings, slug), dirs_exist_ok=True)


def truth_column(metric: dict[str, Any]) -> str:
    """The solution column a bundle's metric grades against: ``label``, or for TrackML the
    particle id (its ``particle`` parameter)."""
    if metric.get("name") == "trackml":
        return str(metric.get("particle", get_metric("trackml").defaults["particle"]))
    return str(metric["label"])


def split_keys(challenge: Challenge) -> tuple[str, str | None]:
    """The split's id column and group column for the submission key.

    A composite key ``[event_id, hit_id]`` splits by its group (``split.group``, default the
    first key column) and identifies rows within a group by the other column.
    """
    key = challenge.submission_format["id"]
    group = challenge.split.get("group")
    if isinstance(key, list):
        group = str(group or key[0])
        return next(str(k) for k in key if str(k) != group), group
    return str(key), group


def release_unit(challenge: Challenge) -> str:
    """The column whose values say which rows were published: the id, or for a composite key
    the group (a split publishes or hides whole events)."""
    id_column, group = split_keys(challenge)
    return group if isinstance(challenge.submission_format["id"], list) and group else id_column


def split_spec_for(challenge: Challenge) -> SplitSpec:
    split = challenge.split
    reweight = split.get("reweight") or {}
    id_column, group = split_keys(challenge)
    return SplitSpec(
        seed=int(split["seed"]),
        id_column=id_column,
        label_column=str(split.get("label") or truth_column(challenge.metric)),
        weight_column=(reweight.get("weight") if isinstance(reweight, dict) else None)
        or challenge.metric.get("weight"),
        train=split["train"],
        public_test=split["public_test"],
        private_test=split["private_test"],
        stratify=split.get("stratify"),
        group=group,
        reweight=bool(reweight),
        reweight_by=reweight.get("by") if isinstance(reweight, dict) else None,
        hidden=tuple(split.get("hidden") or ()),
    )


def prepare_challenge(
    settings: Settings,
    challenge: Challenge,
    dataset_path: Path,
    progress: Callable[[float, str], None] | None = None,
    *,
    session: Session | None = None,
    override: Override | None = None,
) -> dict[str, object]:
    """Split the dataset into public files and the hidden solution. Runs in the worker or the CLI.

    Writes into temporary folders and renames them at the end, so a failed split never leaves
    half-published files behind. Before anything is published the holdout ledger is asked
    (challenge/ledger.py): the training rows (and each variant's rows, before the shift) must not
    be hidden in another challenge, nor the challenge's own test rows repeat a training row; then
    the new test rows are recorded as hidden by this challenge. ``session`` reads the holders'
    reveal state (a private one is opened when none is given); ``override`` is an admin's.
    """
    public = storage.public_dir(settings, challenge.slug)
    hidden = storage.label_dir(settings, challenge.slug)
    tmp_public = public.with_name(public.name + ".tmp")
    tmp_hidden = hidden.with_name(hidden.name + ".tmp")
    for folder in (tmp_public, tmp_hidden):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    report = split_file(dataset_path, tmp_public, tmp_hidden, split_spec_for(challenge), progress)
    lineage = dataset_lineage(settings, challenge.dataset_ref)

    def guard(table: pa.Table, what: str, before_shift: bool = False) -> None:
        if session is not None:
            _check(session, table, what, before_shift)
            return
        from challenge.db import make_engine, session_scope

        engine = make_engine(settings.database_url)
        try:
            with session_scope(engine) as own:
                _check(own, table, what, before_shift)
        finally:
            engine.dispose()

    def _check(s: Session, table: pa.Table, what: str, before_shift: bool) -> None:
        check_publication(
            s, settings, table, what=f"challenge '{challenge.slug}': {what}", lineage=lineage,
            skip=[challenge.slug], before_shift=before_shift, override=override,
        )

    with ledger_lock(settings):
        train = pq.read_table(tmp_public / "train.parquet")
        refuse_own_overlap(challenge, train, tmp_public / "test.parquet")
        guard(train, "train.parquet")
        names = list(storage.PUBLIC_FILES)
        names += publish_variants(
            tmp_public,
            challenge.variants,
            progress,
            guard=lambda frame, what: guard(
                pa.Table.from_pandas(frame, preserve_index=False), what, True
            ),
        )
        record_challenge(settings, challenge, tmp_public, tmp_hidden)
    metric_store = storage.metric_dir(settings, challenge.slug)
    if metric_store.is_dir():
        # The organizer metric file stored at creation lives beside the solution: keep it.
        shutil.copytree(metric_store, tmp_hidden / metric_store.name)
    for tmp, final in ((tmp_public, public), (tmp_hidden, hidden)):
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
    files = []
    for name in names:
        path = public / name
        md5, sha256 = file_checksums(path)
        files.append({"name": name, "size": path.stat().st_size, "md5": md5, "sha256": sha256})
    challenge.public_files = files
    challenge.split_report = report.to_dict()
    challenge.state = "ready"
    challenge.state_message = ""
    return challenge.split_report


def refuse_own_overlap(challenge: Challenge, train: pa.Table, test_path: Path) -> None:
    """Refuse a split whose test rows repeat a training row's features (e.g. a dataset holding
    the same event twice under two ids): that row's label would be published with the training
    file."""
    spec = split_spec_for(challenge)
    test = pq.read_table(test_path)
    truth = set(train.column_names) - set(test.column_names)
    columns = feature_columns(test.column_names, {*truth, spec.id_column, spec.group or ""})
    shared = count_in(row_hashes(train, columns), distinct(row_hashes(test, columns)))
    if shared:
        raise HoldoutRefused(
            f"Refused: challenge '{challenge.slug}': {shared} training row(s) have the same "
            "feature values as a test row, so their labels would be published; remove the "
            "duplicate rows from the dataset."
        )


def publish_variants(
    public: Path,
    variants: list[dict[str, Any]],
    progress: Callable[[float, str], None] | None = None,
    *,
    guard: Callable[[pd.DataFrame, str], None],
) -> list[str]:
    """Write ``train-<name>.parquet`` for each bundle variant: the training set with that
    systematic shift or distortion applied (labels and weights kept), so participants can study
    and train against it. The test set and the solution are never touched.

    ``guard(frame, what)`` sees each variant's rows before the shift (a shifted row no longer
    matches its hidden twin by content) and raises to refuse the variant."""
    if not variants:
        return []
    train = pd.read_parquet(public / "train.parquet")
    written = []
    for spec in variants:
        name = str(spec.get("name", ""))
        if not SLUG_RE.match(name):
            raise ValueError(
                f"variant name {name!r}: use lowercase letters, digits and hyphens (e.g. tes-up)"
            )
        if progress:
            progress(0.9, f"variant {name}")
        guard(train, f"variant train-{name}.parquet")
        shifted = apply_variant(train, spec)
        filename = f"train-{name}.parquet"
        shifted.to_parquet(public / filename, index=False)
        written.append(filename)
    return written


def phases_of(session: Session, challenge: Challenge) -> list[Phase]:
    return list(
        session.exec(
            select(Phase).where(Phase.challenge_id == challenge.id).order_by(col(Phase.position))
        )
    )


def phase_state(phase: Phase, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if now < phase.opens_at:
        return "upcoming"
    if phase.closes_at is not None and now >= phase.closes_at:
        return "closed"
    return "open"


@dataclass
class ChallengeStatus:
    label: str  # upcoming | running | finished
    submitting_phase: Phase | None  # the phase a submission made now goes to
    late: bool  # True when submissions are accepted only as late entries
    next_change: dt.datetime | None


def challenge_status(phases: list[Phase], now: dt.datetime | None = None) -> ChallengeStatus:
    now = now or utcnow()
    submitting = [p for p in phases if p.accepts_submissions]
    open_now = [p for p in submitting if phase_state(p, now) == "open"]
    upcoming = [p for p in submitting if phase_state(p, now) == "upcoming"]
    changes = [t for p in phases for t in (p.opens_at, p.closes_at) if t is not None and t > now]
    next_change = min(changes) if changes else None
    if open_now:
        # The phase that opened last wins: a hackathon day inside the competition takes it.
        phase = max(open_now, key=lambda p: p.opens_at)
        return ChallengeStatus("running", phase, False, next_change)
    if upcoming and not [p for p in submitting if phase_state(p, now) == "closed"]:
        return ChallengeStatus("upcoming", None, False, next_change)
    if upcoming:
        return ChallengeStatus("running", None, False, next_change)
    last = max(submitting, key=lambda p: p.closes_at or p.opens_at) if submitting else None
    return ChallengeStatus("finished", last, last is not None, next_change)


# ---------------------------------------------------------------- private scores and the reveal
#
# One split, one private set: every phase that takes submissions is graded against the challenge's
# one hidden solution, so every such phase ranks on the same private rows. Whether a private score
# may be shown (a board, a plot, a CSV, a participant's own submission, a graded interval) is
# decided by :func:`private_scores_visible` alone; see docs/leaderboards.md, "Who sees private
# scores", and docs/security/reveal.md.

REVEAL_MODES = ("at_close", "manual")


def ranking_phases(phases: Sequence[Phase]) -> list[Phase]:
    """The phases that rank on the challenge's private rows: every phase that takes submissions."""
    return [p for p in phases if p.accepts_submissions]


def last_close(phases: Sequence[Phase]) -> dt.datetime | None:
    """When the last phase ranking on the private rows closes (None: one has no close date, or
    no phase takes submissions, so the private scores can never be shown)."""
    ranking = ranking_phases(phases)
    closes = [p.closes_at for p in ranking if p.closes_at is not None]
    if not ranking or len(closes) < len(ranking):
        return None
    return max(closes)


def scheduled_reveal_date(leaderboard: dict[str, Any] | None) -> dt.datetime | None:
    """The bundle's reveal date (``leaderboard: {reveal: 2027-07-15T00:00Z}``), if it names one."""
    value = (leaderboard or {}).get("reveal", "at_close")
    if not isinstance(value, str) or value in REVEAL_MODES:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def reveal_due_at(challenge: Challenge, phases: Sequence[Phase]) -> dt.datetime | None:
    """When the reveal happens without anyone's action: at the last close (``at_close``), at the
    bundle's date but never before the last close, or never (``manual``, or a phase without a
    close date)."""
    closes = last_close(phases)
    if closes is None:
        return None
    mode = (challenge.leaderboard or {}).get("reveal", "at_close")
    if mode == "at_close":
        return closes
    date = scheduled_reveal_date(challenge.leaderboard)
    return max(date, closes) if date is not None else None


def phase_blocking_reveal(phases: Sequence[Phase], now: dt.datetime | None = None) -> Phase | None:
    """A phase ranking on the private rows that has not closed by ``now`` (the one closing last,
    or one without a close date), or None when they have all closed."""
    now = now or utcnow()
    waiting = [p for p in ranking_phases(phases) if p.closes_at is None or now < p.closes_at]
    if not waiting:
        return None
    endless = [p for p in waiting if p.closes_at is None]
    return endless[0] if endless else max(waiting, key=lambda p: p.closes_at or now)


def private_scores_visible_among(
    challenge: Challenge, phases: Sequence[Phase], now: dt.datetime | None = None
) -> bool:
    """:func:`private_scores_visible` with the challenge's phases already read (all of them)."""
    now = now or utcnow()
    closes = last_close(phases)
    if closes is None or now < closes:
        return False  # a phase that ranks on the private rows is open, upcoming or endless
    if challenge.revealed_at is not None:
        return True
    due = reveal_due_at(challenge, phases)
    return due is not None and now >= due


def private_scores_visible(
    session: Session, challenge: Challenge, now: dt.datetime | None = None
) -> bool:
    """Whether anyone but the challenge's organizers may see a private score of it, now.

    True only when every phase that ranks on the private rows (every phase taking submissions:
    they share the one split) has closed by the clock, AND the reveal has happened: by hand
    (``revealed_at``) or by the bundle's schedule (``at_close``, or its date). A ``revealed_at``
    set while a phase is open (a phase added or reopened later) shows nothing. This is the one
    place that decides; every surface, the graders and the holdout ledger ask it.
    """
    return private_scores_visible_among(challenge, phases_of(session, challenge), now)


def holdout_revealed(session: Session, challenge: Challenge) -> bool:
    """Whether ``challenge`` has let go of its hidden rows: until then the holdout ledger
    refuses to publish any of them with a label (challenge/ledger.py). Exactly when its private
    scores may be shown (:func:`private_scores_visible`, the one place the reveal rule lives)."""
    return private_scores_visible(session, challenge)


def reveal_refusal(
    challenge: Challenge,
    phases: Sequence[Phase],
    now: dt.datetime | None = None,
    actor: User | None = None,
) -> str | None:
    """Why the private leaderboard cannot be revealed by hand now (None: it can), saying when it
    can. With ``actor``: also refused to anyone but an admin before the bundle's reveal date."""
    if not ranking_phases(phases):
        return "This challenge has no phase that takes submissions: there is no private board."
    now = now or utcnow()
    blocking = phase_blocking_reveal(phases, now)
    if blocking is not None and blocking.closes_at is None:
        return (
            f"Phase '{blocking.name}' ranks on the private test rows and has no closing date: "
            "give it one (Extend) before the private leaderboard can be revealed."
        )
    if blocking is not None:
        return (
            f"The private leaderboard can be revealed once phase '{blocking.name}' closes, at "
            f"{blocking.closes_at:%Y-%m-%d %H:%M} UTC: every phase is scored on the same "
            "private rows, so until then private scores would tell its participants about the "
            "rows that decide it."
        )
    due = reveal_due_at(challenge, phases)
    if actor is not None and actor.role != "admin" and due is not None and now < due:
        return (
            f"The private leaderboard is revealed at {due:%Y-%m-%d %H:%M} UTC as the bundle "
            "schedules; only a site admin may reveal it earlier, giving a reason."
        )
    return None


def reveal_private_leaderboard(
    session: Session,
    *,
    challenge: Challenge,
    actor: User,
    confirm: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> AuditEvent | None:
    """Reveal the private scores by hand; cannot be undone. Returns the audit record (None: it
    was revealed already).

    Refused while any phase ranking on the private rows has not closed (whoever asks). ``confirm``
    must be the challenge's slug, typed by the organizer. Before the bundle's reveal date only a
    site admin may reveal, and ``reason`` is then required; it is recorded either way. The
    private intervals are graded once the caller commits.
    """
    if challenge.revealed_at is not None:
        return None
    now = now or utcnow()
    phases = phases_of(session, challenge)
    refusal = reveal_refusal(challenge, phases, now, actor)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if confirm.strip() != challenge.slug:
        raise BadRequest(
            f"A reveal cannot be undone: type the challenge's slug '{challenge.slug}' to confirm.",
            field="confirm",
        )
    reason = reason.strip()
    due = reveal_due_at(challenge, phases)
    early = due is not None and now < due  # an admin's forced reveal (reveal_refusal let it by)
    if early and not reason:
        raise BadRequest(
            "Say why the private leaderboard is revealed before its scheduled date; the reason "
            "is recorded.",
            field="reason",
        )
    from challenge.tasks import send_private_intervals_after_commit

    challenge.revealed_at = now
    session.add(challenge)
    assert challenge.id is not None
    event = AuditEvent(
        challenge_id=challenge.id,
        actor_id=actor.id,
        action="reveal_forced" if early else "reveal",
        reason=reason[:2000],
        created_at=now,
    )
    session.add(event)
    session.flush()
    send_private_intervals_after_commit(session, challenge.id)
    log.info(
        "private leaderboard of %s revealed by %s%s",
        challenge.slug,
        actor.username,
        f" before its date ({reason})" if early else "",
    )
    return event


def get_challenge_by_slug(session: Session, slug: str) -> Challenge:
    row = session.exec(select(Challenge).where(Challenge.slug == slug)).first()
    if row is None:
        raise NotFound(f"No challenge '{slug}'.")
    return row


def join_challenge(
    session: Session, *, challenge: Challenge, user: User, onsite: bool = False
) -> Participation:
    """Register the user, recording when they accepted the rules and the data licence.

    The organizer's e-mail domain restriction and approval apply (see teams.registration_status);
    ``onsite`` is an on-site check-in by code, approved at once. The user gets a team of one.
    """
    from challenge.teams import ensure_team, registration_status

    assert challenge.id is not None
    assert user.id is not None
    row = session.exec(
        select(Participation).where(
            Participation.challenge_id == challenge.id, Participation.user_id == user.id
        )
    ).first()
    if row is None:
        status = registration_status(challenge, user, onsite=onsite)
        row = Participation(challenge_id=challenge.id, user_id=user.id, status=status)
        session.add(row)
        session.flush()
        ensure_team(session, challenge=challenge, user=user)
    elif onsite and row.status == "pending":
        row.status = "approved"
        session.add(row)
    return row


def participation_of(
    session: Session, challenge: Challenge, user: User | None
) -> Participation | None:
    if user is None:
        return None
    return session.exec(
        select(Participation).where(
            Participation.challenge_id == challenge.id, Participation.user_id == user.id
        )
    ).first()
