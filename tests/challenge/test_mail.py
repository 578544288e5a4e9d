"""E-mail notices: outbox rows in the event's transaction, delivery over SMTP exactly once, opt-out."""

from __future__ import annotations

import datetime as dt
import email
import socketserver
import threading
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from sqlmodel import Session, select

from challenge import tasks
from challenge.challenges import phases_of, reveal_private_leaderboard
from challenge.db import session_scope
from challenge.mail import (
    MailDeliveryError,
    deliver_outbox,
    deliver_pending,
    notify_scoring_failure,
)
from challenge.models import Challenge, MailOutbox, User, utcnow
from challenge.schedule import advance_schedule, post_announcement
from challenge.settings import Settings
from challenge.teams import invite, team_of
from tests.challenge.conftest import csrf_of, login
from tests.challenge.test_teams import joined, score, upload


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, QUIT."""

    server: SMTPServer

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 test ESMTP")
        rcpts: list[str] = []
        while line := self.rfile.readline():
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._say("250-test")
                self._say("250 8BITMIME")
            elif verb in ("HELO", "RSET", "NOOP"):
                self._say("250 OK")
            elif verb == "MAIL":
                rcpts = []
                self._say("250 OK")
            elif verb == "RCPT":
                rcpts.append(cmd.split(":", 1)[1].strip(" <>"))
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                with self.server.lock:
                    if self.server.fail_next > 0:
                        self.server.fail_next -= 1
                        self._say("451 4.3.0 Try again later")
                        continue
                    self.server.messages.append(email.message_from_bytes(b"".join(lines)))
                    self.server.recipients.append(rcpts)
                self._say("250 OK queued")
            elif verb == "QUIT":
                self._say("221 Bye")
                return
            else:
                self._say("502 Not implemented")


class SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SMTPHandler)
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _smtp_settings(settings: Settings, server: SMTPServer) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_starttls": False}
    )


def _outbox(engine: Any) -> list[MailOutbox]:
    with Session(engine) as s:
        return list(s.exec(select(MailOutbox).order_by(MailOutbox.id)))  # type: ignore[arg-type]


def test_notices_are_delivered_once_over_smtp_and_respect_opt_outs(
    client: Any, make_challenge: Any, make_user: Any, settings: Settings, engine: Any, smtp: Any
) -> None:
    challenge = make_challenge(closes_days=30)
    org = make_user("org", role="organizer")
    ann, ben, cid = make_user("ann"), make_user("ben"), make_user("cid")
    joined(engine, challenge, ann, ben, cid)
    # cid turns announcements off on the account page (a CSRF-protected form).
    login(client, "cid")
    page = client.get("/account").text
    assert "E-mail notices" in page
    kinds = [
        "invitation",
        "phase_opened",
        "phase_closed",
        "private_revealed",
        "scoring_failed",
    ]
    assert client.post("/account/mail", data={"kind": kinds}).status_code == 400  # no token
    r = client.post(
        "/account/mail",
        data={"csrf_token": csrf_of(client, "/account"), "kind": kinds},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/account").text
    assert 'value="announcement" >' in page or 'value="announcement"  >' in page
    assert 'value="invitation" checked' in page

    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        assert ch is not None
        post_announcement(
            s, challenge=ch, author=s.get(User, org.id), title="Data fix", body_md="New train file."
        )  # type: ignore[arg-type]
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        team = team_of(s, ch, ann)  # type: ignore[arg-type]
        invite(s, challenge=ch, team=team, inviter=s.get(User, ann.id), invitee_name="ben")  # type: ignore[arg-type]
    bad = upload(engine, challenge, ben)
    score(engine, bad, 0.0, status="invalid")
    with session_scope(engine) as s:  # the same event noticed again queues nothing more
        notify_scoring_failure(s, bad)
    with session_scope(engine) as s:
        ch = s.get(Challenge, challenge.id)
        for phase in phases_of(s, ch):  # type: ignore[arg-type]
            phase.closes_at = utcnow() - dt.timedelta(minutes=1)  # a reveal waits for the close
        reveal_private_leaderboard(s, challenge=ch, actor=s.get(User, org.id), confirm=ch.slug)  # type: ignore[arg-type, union-attr]

    queued = sorted((m.kind, m.to_addr) for m in _outbox(engine))
    assert queued == [
        ("announcement", "ann@example.org"),
        ("announcement", "ben@example.org"),  # not cid: opted out
        ("invitation", "ben@example.org"),
        ("private_revealed", "ann@example.org"),
        ("private_revealed", "ben@example.org"),
        ("private_revealed", "cid@example.org"),
        ("scoring_failed", "ben@example.org"),
    ]
    assert all(m.state == "pending" for m in _outbox(engine))

    # The server refuses the first message for now: it stays pending, the others go out.
    smtp_settings = _smtp_settings(settings, smtp)
    smtp.fail_next = 1
    report = deliver_pending(smtp_settings, engine)
    assert (report.sent, report.failed) == (6, 1)
    failed = [m for m in _outbox(engine) if m.state == "pending"]
    assert len(failed) == 1
    assert "451" in failed[0].last_error
    # Through the actor (what dramatiq retries): it sends the rest and raises no more.
    tasks.configure(smtp_settings, engine)
    smtp.fail_next = 1
    with pytest.raises(MailDeliveryError):
        deliver_outbox.fn()
    deliver_outbox.fn()
    deliver_outbox.fn()  # a duplicated or retried job finds nothing to send
    assert deliver_pending(smtp_settings, engine).sent == 0

    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == 7
    assert len(set(ids)) == 7  # no duplicates
    assert all(m.state == "sent" for m in _outbox(engine))
    got = sorted((m["X-Podium-Kind"], m["To"]) for m in smtp.messages)
    assert got == queued
    invitation = next(m for m in smtp.messages if m["X-Podium-Kind"] == "invitation")
    assert "ann invites you to team ann" in invitation["Subject"]
    text = invitation.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"{settings.base_url}/c/{challenge.slug}/team" in text
    failure = next(m for m in smtp.messages if m["X-Podium-Kind"] == "scoring_failed")
    assert "bad file" in failure.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_opting_out_after_queueing_skips_the_message(
    make_challenge: Any, make_user: Any, settings: Settings, engine: Any, smtp: Any
) -> None:
    from challenge.mail import set_preferences

    challenge = make_challenge()
    ann = make_user("ann")
    joined(engine, challenge, ann)
    score(engine, upload(engine, challenge, ann), 0.0, status="invalid")
    with session_scope(engine) as s:
        set_preferences(s, s.get(User, ann.id), set())  # type: ignore[arg-type]
    report = deliver_pending(_smtp_settings(settings, smtp), engine)
    assert (report.sent, report.skipped) == (0, 1)
    assert smtp.messages == []
    # Opted out before the event: nothing is queued at all.
    score(engine, upload(engine, challenge, ann), 0.0, status="invalid")
    assert len(_outbox(engine)) == 1


def test_phase_notices_and_eml_files_without_smtp(
    make_challenge: Any, make_user: Any, settings: Settings, engine: Any
) -> None:
    challenge = make_challenge(opens_days=-1, closes_days=2)
    ann = make_user("ann")
    joined(engine, challenge, ann)
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as s:
        advance_schedule(s, now=now)
    with session_scope(engine) as s:
        advance_schedule(s, now=now + dt.timedelta(days=3))
    kinds = [m.kind for m in _outbox(engine)]
    assert kinds[:2] == ["phase_opened", "phase_closed"]
    assert settings.smtp_host == ""
    report = deliver_pending(settings, engine)
    assert report.sent == len(kinds)
    assert settings.mail_dir is not None
    files = sorted(settings.mail_dir.glob("*.eml"))
    assert len(files) == len(kinds)
    opened = email.message_from_bytes(files[0].read_bytes())
    assert opened["To"] == "ann@example.org"
    assert "is open" in opened["Subject"]
    assert deliver_pending(settings, engine).sent == 0
    assert len(list(settings.mail_dir.glob("*.eml"))) == len(kinds)
