"""The holdout ledger in the hub: record each challenge's hidden rows, refuse publications of them.

The ledger itself (hashes, lineage, lookups) is :mod:`splitter.ledger`; this module adds what
needs the database: whether the holding challenge has revealed (``holdout_revealed``), the
refusal as an error with a status, and an admin's override written to the audit log.

Rules. A table about to be published with a label (a challenge's public train file or a bundle
variant, a class's data, a dataset release or labelled release, a new dataset version, a
variant file) is refused when some of its rows are hidden in a challenge: while that challenge
has not revealed, nobody can lift the refusal; after the reveal an admin can, once, by giving a
reason that goes into ``audit_event``. See docs/security/ledger.md.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from sqlmodel import Session, select

from challenge.errors import Conflict, PermissionDenied
from challenge.models import AuditEvent, Challenge, User
from challenge.settings import Settings
from splitter.datasets import DatasetError, DatasetStore
from splitter.ledger import Hit, HoldoutLedger

OVERRIDE_ACTION = "ledger_override"


class HoldoutRefused(Conflict):
    """Publishing would give away rows a challenge hides; the message names it and the rows."""

    code = "holdout"


@dataclass(frozen=True)
class Override:
    """An admin's decision to publish rows of revealed challenges anyway, and why."""

    actor: User
    reason: str


def ledger_of(settings: Settings) -> HoldoutLedger:
    """The ledger of this site (beside the public files: it holds no label, only hashes of
    test-set features that participants download anyway)."""
    return HoldoutLedger(settings.data_dir / "ledger")


@contextmanager
def ledger_lock(settings: Settings) -> Iterator[None]:
    """Serialise check-then-record: two challenges prepared at once from the same rows must not
    both pass the check before either is recorded."""
    root = ledger_of(settings).root
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def dataset_lineage(settings: Settings, ref: str | None) -> list[str]:
    """``ref`` (``NAME:N``, or a class's ``held-back:NAME:N``) and every version it descends
    from (manifest ``parent``, and ``released_from`` of a labelled release). Empty for a file
    path or simulated data, which have no lineage in the dataset store."""
    if not ref:
        return []
    ref = ref.removeprefix("held-back:")
    store = DatasetStore(settings.datasets_dir)
    out: list[str] = []
    todo = [ref]
    while todo:
        current = todo.pop()
        try:
            version = store.get(current)
        except (DatasetError, OSError, ValueError):
            continue
        if version.ref in out:
            continue
        out.append(version.ref)
        m = version.manifest
        todo += [r for r in (m.parent, m.extra.get("released_from")) if isinstance(r, str) and r]
    return out


def _describe(hit: Hit, holder: Challenge | None) -> str:
    how = "same feature values" if hit.by == "content" else "same ids, derived dataset"
    state = "" if holder is None or holder.revealed_at is None else (
        f", revealed {holder.revealed_at:%Y-%m-%d %H:%M} UTC")
    return f"{hit.rows} row(s) hidden in challenge '{hit.holder}' ({how}{state})"


def check_publication(
    session: Session,
    settings: Settings,
    table: pa.Table,
    *,
    what: str,
    lineage: Sequence[str] = (),
    skip: Sequence[str] = (),
    before_shift: bool = False,
    override: Override | None = None,
) -> list[Hit]:
    """Refuse to publish ``table`` (named ``what`` in messages) if it gives away hidden rows.

    Raises :class:`HoldoutRefused` naming each holding challenge and its row count when a holder
    has not revealed (whatever ``override`` says), or when a revealed holder's rows are in it and
    no override is given. With an admin's ``override`` and only revealed holders, writes an
    ``audit_event`` (flushed, committed with the caller's transaction) and returns the hits.
    """
    from challenge.challenges import holdout_revealed

    ledger = ledger_of(settings)
    if not ledger.holders():
        return []
    hits = ledger.find(table, lineage=lineage, skip=skip, before_shift=before_shift)
    if not hits:
        return []
    holders = {
        c.slug: c
        for c in session.exec(select(Challenge).where(Challenge.slug.in_([h.holder for h in hits])))  # type: ignore[attr-defined]
    }
    # A ledger entry whose challenge row is gone still holds (fail closed).
    holding = [h for h in hits if holders.get(h.holder) is None
               or not holdout_revealed(session, holders[h.holder])]
    listed = "; ".join(_describe(h, holders.get(h.holder)) for h in hits)
    if holding:
        names = ", ".join(f"'{h.holder}'" for h in holding)
        raise HoldoutRefused(
            f"Refused: {what} would publish with labels {listed}. Those rows stay unpublished "
            f"until {names} reveal{'s' if len(holding) == 1 else ''} its private leaderboard; "
            "no override is possible before that. Leave those rows out (or use data of its own)."
        )
    if override is None:
        raise HoldoutRefused(
            f"Refused: {what} would publish with labels {listed}. Those challenges have "
            "revealed; an admin may publish the rows anyway by giving a reason "
            "(--override-reason), which is kept in the audit log."
        )
    if override.actor.role != "admin":
        raise PermissionDenied("Only an admin can override the holdout ledger.")
    if not override.reason.strip():
        raise HoldoutRefused("Say why the rows may be published: the reason goes in the audit log.")
    for hit in hits:  # one event per challenge whose rows are published, filed under it
        holder = holders[hit.holder]
        session.add(
            AuditEvent(
                challenge_id=holder.id,
                actor_id=override.actor.id,
                action=OVERRIDE_ACTION,
                target=what[:500],
                reason=override.reason.strip(),
                details={"hits": [hit.to_dict()]},
            )
        )
    session.flush()
    return hits


def record_challenge(
    settings: Settings, challenge: Challenge, public_dir: Path, hidden_dir: Path
) -> None:
    """Record ``challenge``'s hidden rows (its test file) under its slug, replacing any entry.

    The id kept for the lineage check is the unit a split hides whole: the row id, or for a
    composite key (``[event_id, hit_id]``) the event; the key's other columns are ids too."""
    from challenge.challenges import release_unit

    unit = release_unit(challenge)
    key = challenge.submission_format["id"]
    ledger_of(settings).record_split(
        challenge.slug,
        public_dir,
        hidden_dir,
        id_column=unit,
        key_columns=[str(k) for k in key if str(k) != unit] if isinstance(key, list) else [],
        lineage=dataset_lineage(settings, challenge.dataset_ref),
        source=challenge.dataset_ref,
    )
