"""E-mail notices: an outbox written in the event's own transaction, sent by a dramatiq actor.

Events and who gets them (each kind can be turned off per user on the account page):

* ``announcement``: an organizer's announcement (scheduler notices are mailed as the phase kinds
  below instead), to the challenge's approved participants;
* ``invitation``: a team invitation, to the invitee;
* ``phase_opened`` / ``phase_closed``: the scheduler recorded the transition, to the participants;
* ``private_revealed``: the challenge's private leaderboard was revealed, to the participants;
* ``scoring_failed``: a submission ended invalid or in error, to its submitter.

How: a SQLAlchemy ``after_flush`` listener sees the new Announcement, TeamInvitation and
PhaseTransition rows and the Challenge whose ``revealed_at`` was just set, and inserts one
:class:`~challenge.models.MailOutbox` row per recipient on the same connection, so the notice
exists exactly when the event is committed. Each row has a unique ``dedupe_key`` and is inserted
with ON CONFLICT DO NOTHING: an event noticed twice (a reveal by the scheduler and by hand) queues
one message. Scoring failures are queued by :func:`notify_scoring_failure`, which
``record_result`` calls in its transaction (its UPDATE is not an ORM change a flush would see).

After the commit, :func:`deliver_outbox` is sent (the scheduler also sends it every tick, which
catches up messages whose send was lost). It claims each pending row (pending -> sending, one
UPDATE, so two workers never take the same row), sends it, then marks it sent. A failure puts
the row back to pending and the actor raises, so dramatiq retries it with backoff; rows already
sent are never sent again. A crash between the SMTP send and the mark would resend that one
message after the claim lease (5 minutes); its Message-ID is stable, so mail systems can drop the
copy. With no ``PODIUM_SMTP_HOST`` the message is written as ``mail_dir/<id>-<kind>.eml``
instead (the demo does that).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import dramatiq
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from challenge import broker as _broker  # noqa: F401 - sets the broker before the actor exists
from challenge.models import (
    Announcement,
    Challenge,
    MailOptOut,
    MailOutbox,
    Participation,
    Phase,
    PhaseTransition,
    Submission,
    Team,
    TeamInvitation,
    User,
    utcnow,
)
from challenge.settings import Settings

log = logging.getLogger(__name__)

KINDS = {
    "announcement": "Announcements from the organizers of a challenge you joined",
    "invitation": "Invitations to join a team",
    "phase_opened": "A phase of a challenge you joined opens",
    "phase_closed": "A phase of a challenge you joined closes",
    "private_revealed": "A challenge's private leaderboard is revealed",
    "scoring_failed": "One of your submissions could not be scored",
}
TRANSITION_KINDS = {
    "opened": "phase_opened",
    "closed": "phase_closed",
    "private_revealed": "private_revealed",
}
MAX_ATTEMPTS = 8
CLAIM_LEASE = dt.timedelta(minutes=5)
BATCH = 500
BASE = "{base_url}"  # replaced by settings.base_url when the message is sent
_PENDING_FLAG = "podium_mail_queued"


# ---------------------------------------------------------------- preferences


def opted_out(session: Session, user: User) -> set[str]:
    return set(session.exec(select(MailOptOut.kind).where(MailOptOut.user_id == user.id)).all())


def preferences(session: Session, user: User) -> list[tuple[str, str, bool]]:
    """(kind, description, wanted) for the account page."""
    off = opted_out(session, user)
    return [(kind, text, kind not in off) for kind, text in KINDS.items()]


def set_preferences(session: Session, user: User, wanted: set[str]) -> None:
    """Keep e-mailing the kinds in ``wanted``; opt out of every other kind."""
    assert user.id is not None
    off = opted_out(session, user)
    for kind in KINDS:
        if kind in wanted and kind in off:
            session.execute(
                sa.delete(MailOptOut).where(
                    col(MailOptOut.user_id) == user.id, col(MailOptOut.kind) == kind
                )
            )
        elif kind not in wanted and kind not in off:
            session.add(MailOptOut(user_id=user.id, kind=kind))
    session.flush()


# ---------------------------------------------------------------- queueing


@dataclass
class Notice:
    user_id: int
    kind: str
    key: str
    subject: str
    body: str


def _footer(slug: str) -> str:
    return (
        f"\n\n-- \n{BASE}/c/{slug}\nYou get this because you joined this challenge. Choose which "
        f"notices you get by e-mail on {BASE}/account."
    )


def _challenge(conn: sa.Connection, challenge_id: int) -> tuple[str, str]:
    row = conn.execute(
        sa.select(col(Challenge.slug), col(Challenge.title)).where(
            col(Challenge.id) == challenge_id
        )
    ).one()
    return str(row[0]), str(row[1])


def _participants(conn: sa.Connection, challenge_id: int) -> list[int]:
    return [
        int(r[0])
        for r in conn.execute(
            sa.select(col(Participation.user_id)).where(
                col(Participation.challenge_id) == challenge_id,
                col(Participation.status) == "approved",
            )
        )
    ]


def _insert(conn: sa.Connection, notices: list[Notice]) -> int:
    """Queue the notices for their active, opted-in recipients; returns how many were offered."""
    if not notices:
        return 0
    ids = sorted({n.user_id for n in notices})
    users: dict[int, str] = {
        int(str(r[0])): str(r[1])
        for r in conn.execute(
            sa.select(col(User.id), col(User.email)).where(
                col(User.id).in_(ids), col(User.is_active)
            )
        )
    }
    off = {
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            sa.select(col(MailOptOut.user_id), col(MailOptOut.kind)).where(
                col(MailOptOut.user_id).in_(ids)
            )
        )
    }
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for n in notices:
        if n.user_id not in users or (n.user_id, n.kind) in off:
            continue
        rows.setdefault(
            n.key,
            {
                "user_id": n.user_id,
                "kind": n.kind,
                "dedupe_key": n.key[:160],
                "to_addr": users[n.user_id],
                "subject": n.subject[:250],
                "body": n.body,
                "state": "pending",
                "attempts": 0,
                "created_at": now,
                "last_error": "",
            },
        )
    if not rows:
        return 0
    table: Any = getattr(MailOutbox, "__table__")  # noqa: B009 - SQLModel does not type it
    insert: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
    # A key already queued (the same event seen twice, or by a concurrent transaction) is skipped.
    conn.execute(insert.on_conflict_do_nothing(index_elements=["dedupe_key"]), list(rows.values()))
    return len(rows)


def _mark_queued(session: OrmSession) -> None:
    session.info[_PENDING_FLAG] = True


def _announcement_notices(conn: sa.Connection, ann: Announcement) -> list[Notice]:
    slug, title = _challenge(conn, ann.challenge_id)
    body = f"{ann.body_md}{_footer(slug)}"
    return [
        Notice(uid, "announcement", f"announcement:{ann.id}:{uid}", f"[{title}] {ann.title}", body)
        for uid in _participants(conn, ann.challenge_id)
    ]


def _invitation_notices(conn: sa.Connection, inv: TeamInvitation) -> list[Notice]:
    team = conn.execute(
        sa.select(col(Team.name), col(Team.challenge_id)).where(col(Team.id) == inv.team_id)
    ).one()
    inviter = conn.execute(
        sa.select(col(User.username)).where(col(User.id) == inv.invited_by)
    ).scalar_one()
    slug, title = _challenge(conn, int(team[1]))
    body = (
        f"{inviter} invites you to join team '{team[0]}' in {title}.\n\n"
        f"Accept or decline on {BASE}/c/{slug}/team. Accepting merges your current team (and "
        f"its submissions) into '{team[0]}'.{_footer(slug)}"
    )
    subject = f"[{title}] {inviter} invites you to team {team[0]}"
    return [Notice(inv.user_id, "invitation", f"invitation:{inv.id}", subject, body)]


def _transition_notices(conn: sa.Connection, row: PhaseTransition) -> list[Notice]:
    kind = TRANSITION_KINDS.get(row.kind)
    if kind is None:
        return []
    phase = conn.execute(
        sa.select(col(Phase.name), col(Phase.closes_at)).where(col(Phase.id) == row.phase_id)
    ).one()
    name, closes = str(phase[0]), phase[1]
    if closes is not None and closes.tzinfo is None:
        closes = closes.replace(tzinfo=dt.UTC)
    if kind == "phase_opened" and closes is not None and closes <= row.done_at:
        return []  # recorded late, after the phase had closed: its close is the news
    if kind == "private_revealed":
        return _reveal_notices(conn, row.challenge_id)
    slug, title = _challenge(conn, row.challenge_id)
    if kind == "phase_opened":
        subject = f"[{title}] Phase '{name}' is open"
        text = f"Phase '{name}' of {title} is open" + (
            f" until {closes:%Y-%m-%d %H:%M} UTC." if closes is not None else "."
        )
    else:
        subject = f"[{title}] Phase '{name}' has closed"
        text = (
            f"Phase '{name}' of {title} has closed. Submissions made from now on are scored but "
            f"marked late and not ranked. Leaderboard: {BASE}/c/{slug}/leaderboard"
        )
    return [
        Notice(uid, kind, f"{kind}:{row.phase_id}:{uid}", subject, text + _footer(slug))
        for uid in _participants(conn, row.challenge_id)
    ]


def _reveal_notices(conn: sa.Connection, challenge_id: int) -> list[Notice]:
    slug, title = _challenge(conn, challenge_id)
    body = (
        f"The private leaderboard of {title} is revealed: the final standings and the shake-up "
        f"are on {BASE}/c/{slug}/leaderboard.{_footer(slug)}"
    )
    subject = f"[{title}] The private leaderboard is revealed"
    return [
        Notice(uid, "private_revealed", f"private_revealed:{challenge_id}:{uid}", subject, body)
        for uid in _participants(conn, challenge_id)
    ]


def _after_flush(session: OrmSession, _context: Any) -> None:
    notices: list[Notice] = []
    conn: sa.Connection | None = None
    for obj in list(session.new):
        if isinstance(obj, Announcement | TeamInvitation | PhaseTransition):
            conn = conn or session.connection()
            if isinstance(obj, Announcement) and obj.author_id is not None:
                notices += _announcement_notices(conn, obj)
            elif isinstance(obj, TeamInvitation):
                notices += _invitation_notices(conn, obj)
            elif isinstance(obj, PhaseTransition):
                notices += _transition_notices(conn, obj)
    for obj in list(session.dirty):
        if isinstance(obj, Challenge) and obj.id is not None:
            history = sa.inspect(obj).attrs.revealed_at.history
            if history.added and history.added[0] is not None and not any(history.deleted):
                conn = conn or session.connection()
                notices += _reveal_notices(conn, obj.id)
    if notices and conn is not None and _insert(conn, notices):
        _mark_queued(session)


def notify_scoring_failure(session: Session, submission_id: int) -> None:
    """Queue the 'could not be scored' notice for a submission that ended invalid or in error."""
    sub = session.get(Submission, submission_id, populate_existing=True)
    if sub is None or sub.status not in ("invalid", "error") or sub.baseline_label:
        return
    conn = session.connection()
    slug, title = _challenge(conn, sub.challenge_id)
    if sub.status == "invalid":
        subject = f"[{title}] Submission #{sub.id} ({sub.filename}) was refused"
        text = (
            f"Your submission #{sub.id} ({sub.filename}) could not be scored: "
            f"{sub.error_message or 'the file is not valid'}\nIt does not count against your "
            "quota; fix the file and upload it again."
        )
    else:
        subject = f"[{title}] Submission #{sub.id} ({sub.filename}) failed to score"
        text = (
            f"Scoring your submission #{sub.id} ({sub.filename}) failed: "
            f"{sub.error_message or 'an error on our side'}\nThe organizers can see the details "
            "and rescore it."
        )
    notice = Notice(
        sub.user_id, "scoring_failed", f"scoring_failed:{sub.id}", subject, text + _footer(slug)
    )
    if _insert(conn, [notice]):
        _mark_queued(session)


def queue_account_mail(
    session: Session, *, user: User, kind: str, key: str, subject: str, body: str
) -> None:
    """Queue a message about the account itself (a confirmation or password reset link).

    Not a notice: no opt-out applies, and it goes to the address even before it is confirmed.
    ``body`` may use ``{base_url}``.
    """
    assert user.id is not None
    session.add(
        MailOutbox(
            user_id=user.id,
            kind=kind,
            dedupe_key=key[:160],
            to_addr=user.email,
            subject=subject[:250],
            body=body,
        )
    )
    session.flush()
    _mark_queued(session)


def _after_commit(session: OrmSession) -> None:
    if session.info.pop(_PENDING_FLAG, False):
        try:
            deliver_outbox.send()
        except Exception:
            log.exception("could not send the mail job; the scheduler's next tick will")


def _after_rollback(session: OrmSession) -> None:
    session.info.pop(_PENDING_FLAG, None)


sa.event.listen(OrmSession, "after_flush", _after_flush)
sa.event.listen(OrmSession, "after_commit", _after_commit)
sa.event.listen(OrmSession, "after_rollback", _after_rollback)


# ---------------------------------------------------------------- sending


class MailDeliveryError(RuntimeError):
    """Some messages could not be sent; they stay pending and the job is retried."""


def build_message(settings: Settings, row: MailOutbox) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = row.to_addr
    msg["Subject"] = row.subject
    msg["Date"] = format_datetime(row.created_at)
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "podium.invalid"
    msg["Message-ID"] = f"<podium-mail-{row.id}@{domain}>"  # stable: a resend is recognisable
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Podium-Kind"] = row.kind
    msg.set_content(row.body.replace(BASE, settings.base_url))
    return msg


class Transport:
    """SMTP when ``smtp_host`` is set (one connection per batch), else .eml files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def send(self, row: MailOutbox, msg: EmailMessage) -> None:
        s = self.settings
        if not s.smtp_host:
            assert s.mail_dir is not None
            folder = Path(s.mail_dir)
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"{row.id:08d}-{row.kind}.eml"
            tmp = final.with_suffix(".tmp")
            tmp.write_bytes(bytes(msg))
            os.replace(tmp, final)  # same name on a resend: never two files for one message
            return
        if self._smtp is None:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            try:
                smtp.ehlo()
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if s.smtp_user:
                    smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        try:
            self._smtp.send_message(msg)
        except BaseException:
            self.close()  # the next message starts on a fresh connection
            raise

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


@dataclass
class DeliveryReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0


def _claimable(now: dt.datetime) -> Any:
    return sa.or_(
        col(MailOutbox.state) == "pending",
        sa.and_(col(MailOutbox.state) == "sending", col(MailOutbox.claimed_at) < now - CLAIM_LEASE),
    )


def deliver_pending(
    settings: Settings, engine: sa.Engine, *, now: dt.datetime | None = None
) -> DeliveryReport:
    """Send every claimable message once; see the module docstring for the guarantees."""
    report = DeliveryReport()
    now = now or utcnow()
    with Session(engine) as session:
        ids = list(
            session.exec(
                select(MailOutbox.id)
                .where(_claimable(now))
                .order_by(col(MailOutbox.id))
                .limit(BATCH)
            ).all()
        )
    transport = Transport(settings)
    try:
        for outbox_id in ids:
            with Session(engine) as session:
                claimed = session.execute(
                    sa.update(MailOutbox)
                    .where(col(MailOutbox.id) == outbox_id, _claimable(now))
                    .values(
                        state="sending", claimed_at=utcnow(), attempts=col(MailOutbox.attempts) + 1
                    )
                )
                session.commit()
                if not claimed.rowcount:  # type: ignore[attr-defined]
                    continue  # another worker has it, or it was sent meanwhile
                row = session.get(MailOutbox, outbox_id)
                assert row is not None
                wanted = (
                    session.exec(
                        select(MailOptOut.id).where(
                            MailOptOut.user_id == row.user_id, MailOptOut.kind == row.kind
                        )
                    ).first()
                    is None
                )
                if not wanted:  # opted out after it was queued
                    row.state = "skipped"
                    session.add(row)
                    session.commit()
                    report.skipped += 1
                    continue
                try:
                    transport.send(row, build_message(settings, row))
                except Exception as exc:
                    row.state = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
                    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    session.add(row)
                    session.commit()
                    report.failed += 1
                    log.warning("mail %s to %s failed: %s", row.id, row.to_addr, exc)
                    continue
                row.state = "sent"
                row.sent_at = utcnow()
                row.last_error = ""
                session.add(row)
                session.commit()
                report.sent += 1
    finally:
        transport.close()
    return report


@dramatiq.actor(queue_name="mail", max_retries=MAX_ATTEMPTS, min_backoff=5_000, max_backoff=600_000)
def deliver_outbox() -> None:
    """Send the pending e-mail notices; raises (so dramatiq retries) when some could not be sent."""
    from challenge.tasks import context

    ctx = context()
    report = deliver_pending(ctx.settings, ctx.engine)
    if report.failed:
        raise MailDeliveryError(f"{report.failed} message(s) could not be sent; retrying later")
