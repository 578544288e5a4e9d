"""Table models. Input and output schemas live next to the views that use them (see schemas.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use timezone-aware values")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def ts_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class User(SQLModel, table=True):
    __tablename__ = "user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=40)
    email: str = Field(index=True, unique=True, max_length=254)
    password_hash: str = Field(max_length=255)
    role: str = Field(default="participant", max_length=20)  # admin | organizer | participant
    is_active: bool = True
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The look-alike key of the username (challenge/usernames.py), set on every write; unique, so
    # 'aIice' or 'alice.' cannot join 'alice'.
    username_key: str = Field(default="", max_length=120, unique=True, index=True)
    # When the owner proved the e-mail address theirs (None: registered, link not yet followed).
    # Accounts made by an admin or the CLI count as confirmed.
    confirmed_at: dt.datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)


def _set_username_key(_mapper: Any, _connection: Any, user: User) -> None:
    from challenge.usernames import username_key

    user.username_key = username_key(user.username)


sa.event.listen(User, "before_insert", _set_username_key)
sa.event.listen(User, "before_update", _set_username_key)


class UserSession(SQLModel, table=True):
    """A browser login. The cookie holds a random id; only its SHA-256 is stored here, so
    deleting the row ends the session whatever cookie is still around."""

    __tablename__ = "user_session"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    ip: str = Field(default="", max_length=45)
    user_agent: str = Field(default="", max_length=200)


class AccountToken(SQLModel, table=True):
    """A single-use link sent by e-mail: ``reset`` a password, or ``confirm`` a registration.
    Only the token's SHA-256 is stored."""

    __tablename__ = "account_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=12)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    used_at: dt.datetime | None = ts_column()


class AccountEvent(SQLModel, table=True):
    """The audit log of account security: logins ended, passwords changed or reset."""

    __tablename__ = "account_event"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    actor_id: int | None = Field(default=None, foreign_key="user.id")
    kind: str = Field(max_length=30)
    detail: str = Field(default="", max_length=200)
    ip: str = Field(default="", max_length=45)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=80)
    prefix: str = Field(max_length=12, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = ts_column()
    revoked: bool = False


class Challenge(SQLModel, table=True):
    __tablename__ = "challenge"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(index=True, unique=True, max_length=64)
    title: str = Field(max_length=200)
    summary: str = Field(default="", max_length=500)
    description_md: str = Field(default="", sa_type=sa.Text)
    bundle_yaml: str = Field(default="", sa_type=sa.Text)
    dataset_ref: str = Field(default="", max_length=200)
    license: str = Field(default="", max_length=80)
    submission_format: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    metric: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    split: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    variants: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    limits: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    leaderboard: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    public_files: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    split_report: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # preparing -> ready | failed ; the split runs as a background job.
    state: str = Field(default="preparing", max_length=20)
    state_message: str = Field(default="", sa_type=sa.Text)
    is_listed: bool = True
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revealed_at: dt.datetime | None = ts_column()
    # Registration policy and team deadline, set by the organizer (see challenge/teams.py).
    requires_approval: bool = False
    email_domains: str = Field(default="", max_length=500)  # comma-separated; empty = anyone
    merge_deadline: dt.datetime | None = ts_column()
    # files: graded prediction files; codabench: the programs of an imported Codabench bundle
    # (challenge/codabench.py), whose task layout, columns and environment are in ``codabench``.
    kind: str = Field(default="files", max_length=12)
    codabench: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class Phase(SQLModel, table=True):
    __tablename__ = "phase"

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    name: str = Field(max_length=80)
    position: int = 0
    opens_at: dt.datetime = Field(sa_type=UTCDateTime)
    closes_at: dt.datetime | None = ts_column()
    accepts_submissions: bool = True
    registration_code: str = Field(default="", max_length=40)  # on-site check-in
    board_version: int = 0  # bumped whenever the phase's board changes; keys the page cache
    budget: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # code runs: scoring.jail.Budget


class Participation(SQLModel, table=True):
    """A user's registration in a challenge; its row is locked to count quota atomically."""

    __tablename__ = "participation"
    __table_args__ = (sa.UniqueConstraint("user_id", "challenge_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    accepted_rules_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submission_counter: int = 0  # bumped under lock by every upload; serializes quota checks
    status: str = Field(default="approved", max_length=12)  # approved | pending | rejected


SUBMISSION_STATES = ("received", "scoring", "scored", "invalid", "error")


class Submission(SQLModel, table=True):
    __tablename__ = "submission"
    __table_args__ = (sa.Index("ix_submission_baseline", "phase_id", "baseline_label"),)

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    phase_id: int = Field(foreign_key="phase.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    filename: str = Field(max_length=255)
    stored_path: str = Field(max_length=500)
    size_bytes: int = 0
    sha256: str = Field(default="", max_length=64)
    message: str = Field(default="", max_length=500)
    status: str = Field(default="received", max_length=12, index=True)
    public_score: float | None = None
    private_score: float | None = None
    public_ci_low: float | None = None
    public_ci_high: float | None = None
    private_ci_low: float | None = None
    private_ci_high: float | None = None
    error_message: str = Field(default="", sa_type=sa.Text)  # shown to the participant
    error_detail: str = Field(default="", sa_type=sa.Text)  # organizers only
    attempts: int = 0
    is_late: bool = False
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    is_final: bool = False  # picked by the team for the private leaderboard
    baseline_label: str = Field(
        default="", max_length=80
    )  # organizer's baseline: shown, not ranked
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    enqueued_at: dt.datetime | None = ts_column()
    scoring_started_at: dt.datetime | None = ts_column()
    finished_at: dt.datetime | None = ts_column()
    duration_ms: float | None = None
    # Results stored by the scoring actor: exactly 1 once scored, whatever the queue did.
    results_recorded: int = 0
    score_version: int = 0  # bumped each time a rescore is applied to this submission
    # Code challenges: every leaderboard column's score (public_score is the ranking column's),
    # and the run's bounded output and usage, shown to its author only.
    scores: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    run_log: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class Team(SQLModel, table=True):
    """Who competes: every participant is in exactly one team per challenge (a team of one first).

    Its row is locked by uploads and merges, so team quotas are exact under concurrency.
    """

    __tablename__ = "team"
    __table_args__ = (sa.UniqueConstraint("challenge_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    name: str = Field(max_length=80)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submission_counter: int = 0
    merged_into_id: int | None = Field(default=None, foreign_key="team.id")
    # The team's contact (EvalAI's "created_by"); None: the longest-standing member.
    captain_id: int | None = Field(default=None, foreign_key="user.id")
    disqualified_at: dt.datetime | None = ts_column()
    disqualified_reason: str = Field(default="", max_length=500)


class TeamMember(SQLModel, table=True):
    __tablename__ = "team_member"
    __table_args__ = (sa.UniqueConstraint("challenge_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    joined_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TeamInvitation(SQLModel, table=True):
    __tablename__ = "team_invitation"

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)  # the invitee
    invited_by: int = Field(foreign_key="user.id")
    state: str = Field(default="pending", max_length=12)  # pending | accepted | declined
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BoardEntry(SQLModel, table=True):
    """The materialized public leaderboard: one row per (phase, team), refreshed on every score."""

    __tablename__ = "board_entry"
    __table_args__ = (
        sa.UniqueConstraint("phase_id", "team_id"),
        sa.Index("ix_board_entry_order", "phase_id", "sort_key", "submitted_at", "submission_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    phase_id: int = Field(foreign_key="phase.id")
    team_id: int = Field(foreign_key="team.id", index=True)
    submission_id: int = Field(foreign_key="submission.id")
    # Stored negated when lower is better, so one ascending index serves both directions.
    sort_key: float
    score: float
    ci_low: float | None = None
    ci_high: float | None = None
    submitted_at: dt.datetime = Field(sa_type=UTCDateTime)
    entries: int = 0


class Announcement(SQLModel, table=True):
    __tablename__ = "announcement"

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    author_id: int | None = Field(default=None, foreign_key="user.id")  # None: the scheduler
    title: str = Field(max_length=200)
    body_md: str = Field(default="", sa_type=sa.Text)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    forum_thread_id: int | None = None


class PhaseTransition(SQLModel, table=True):
    """A lifecycle step the scheduler (or an organizer) made; unique, so doing it twice is a no-op."""

    __tablename__ = "phase_transition"
    __table_args__ = (sa.UniqueConstraint("phase_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    phase_id: int = Field(foreign_key="phase.id")
    kind: str = Field(max_length=24)  # opened | data_published | closed | private_revealed
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    done_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RescoreRun(SQLModel, table=True):
    """An organizer's request to grade again one submission or a whole phase (after a metric fix).

    New results go to :class:`RescoreResult` rows; only when every one is in are they copied to the
    submissions, in one transaction (``state`` running -> applied, or failed if any errored), so
    the leaderboard never shows a half-rescored phase.
    """

    __tablename__ = "rescore_run"

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    phase_id: int | None = Field(default=None, foreign_key="phase.id")
    submission_id: int | None = Field(default=None, foreign_key="submission.id")
    requested_by: int | None = Field(default=None, foreign_key="user.id")
    state: str = Field(default="running", max_length=12, index=True)  # running|applied|failed
    total: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = ts_column()
    message: str = Field(default="", sa_type=sa.Text)


class RescoreResult(SQLModel, table=True):
    """One submission's new grade within a rescore run (pending -> grading -> scored|invalid|error)."""

    __tablename__ = "rescore_result"
    __table_args__ = (sa.UniqueConstraint("run_id", "submission_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="rescore_run.id", index=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    status: str = Field(default="pending", max_length=12)
    enqueued_at: dt.datetime | None = ts_column()
    started_at: dt.datetime | None = ts_column()
    public_score: float | None = None
    private_score: float | None = None
    public_ci_low: float | None = None
    public_ci_high: float | None = None
    private_ci_low: float | None = None
    private_ci_high: float | None = None
    error_message: str = Field(default="", sa_type=sa.Text)
    error_detail: str = Field(default="", sa_type=sa.Text)
    duration_ms: float | None = None


class EvalAIUpload(SQLModel, table=True):
    """A large upload by the EvalAI CLI: presigned part URLs first, the submission at the end.

    Only the SHA-256 of the URL key is stored; the key itself is in the URLs handed to the client,
    which send no auth header, so it is long, random and expires after ``expires_at``.
    """

    __tablename__ = "evalai_upload"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    challenge_id: int = Field(foreign_key="challenge.id", index=True)
    phase_id: int = Field(foreign_key="phase.id")
    filename: str = Field(max_length=255)
    message: str = Field(default="", max_length=500)
    key_hash: str = Field(max_length=64, unique=True)
    parts: int = 1
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    submission_id: int | None = Field(default=None, foreign_key="submission.id")


class Classroom(SQLModel, table=True):
    """A class an instructor cloned from a finished challenge: its challenge row is unlisted."""

    __tablename__ = "classroom"

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id", unique=True)
    source_challenge_id: int = Field(foreign_key="challenge.id", index=True)
    instructor_id: int = Field(foreign_key="user.id", index=True)
    invite_code: str = Field(max_length=40, unique=True)
    term: int = 1
    events: int = 0  # events the simulator generates per term
    grade_rule: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClassTerm(SQLModel, table=True):
    """One run of a class: its data seed, its phases; archived when the class is reset."""

    __tablename__ = "class_term"
    __table_args__ = (sa.UniqueConstraint("classroom_id", "term"),)

    id: int | None = Field(default=None, primary_key=True)
    classroom_id: int = Field(foreign_key="classroom.id", index=True)
    term: int
    data_seed: int
    phase_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    started_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    archived_at: dt.datetime | None = ts_column()


class ClassMember(SQLModel, table=True):
    """A student on a term's roster (joined with the invite code)."""

    __tablename__ = "class_member"
    __table_args__ = (sa.UniqueConstraint("classroom_id", "term", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    classroom_id: int = Field(foreign_key="classroom.id", index=True)
    term: int
    user_id: int = Field(foreign_key="user.id", index=True)
    joined_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


MAIL_STATES = ("pending", "sending", "sent", "skipped", "failed")


class MailOutbox(SQLModel, table=True):
    """An e-mail notice, written in the transaction of its event and sent by a worker actor.

    ``dedupe_key`` is unique, so an event noticed twice queues one message; the sender claims a
    row (pending -> sending) before it talks to SMTP and marks it sent after, so a retried or
    duplicated job never sends it twice (see challenge/mail.py).
    """

    __tablename__ = "mail_outbox"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=24)
    dedupe_key: str = Field(max_length=160, unique=True)
    to_addr: str = Field(max_length=254)
    subject: str = Field(max_length=250)
    body: str = Field(default="", sa_type=sa.Text)
    state: str = Field(default="pending", max_length=12, index=True)
    attempts: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_at: dt.datetime | None = ts_column()
    sent_at: dt.datetime | None = ts_column()
    last_error: str = Field(default="", sa_type=sa.Text)


class MailOptOut(SQLModel, table=True):
    """A kind of notice a user does not want by e-mail (absent: they get it)."""

    __tablename__ = "mail_opt_out"
    __table_args__ = (sa.UniqueConstraint("user_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=24)


class AuditEvent(SQLModel, table=True):
    """An organizer's or admin's act that cannot be undone, with who did it and why.

    Written in the transaction of the act itself (e.g. a reveal of the private leaderboard, and an
    admin's early one with its reason; an admin's override of a holdout-ledger refusal, with what
    was published and the rows of each challenge), so the record exists exactly when the act does.
    """

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int | None = Field(default=None, foreign_key="challenge.id", index=True)
    actor_id: int | None = Field(default=None, foreign_key="user.id")  # None: the scheduler
    action: str = Field(max_length=40)  # reveal | reveal_forced | ledger_override
    reason: str = Field(default="", sa_type=sa.Text)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    target: str = Field(default="", max_length=500)  # ledger_override: what was published
    details: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # ledger_override: hits
