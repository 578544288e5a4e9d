"""Moderation actions: each one validates, executes and writes an audit entry (who, what, when, why).

Nothing is deleted: hiding keeps the content for moderators, merging keeps the old thread as a
pointer, sanctions end or are lifted. Run an action with ``run_action(session, name, ...)`` or build
the class directly; both check that the actor moderates the target's forum.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from sqlmodel import Session, col, select

from forum.access import (
    Actor,
    Conflict,
    Forbidden,
    ForumError,
    NotFound,
    active_sanction,
    categories_for,
)
from forum.config import ForumConfig
from forum.interface import UserDirectory
from forum.models import (
    HIDDEN,
    MERGED,
    PENDING,
    SANCTION_KINDS,
    VISIBLE,
    AuditEntry,
    Flag,
    Moderator,
    Notification,
    Post,
    Sanction,
    Subscription,
    Thread,
    utcnow,
)
from forum.posting import first_post_id, publish_post, refresh_thread
from forum.search import index_post, unindex_post

MAX_SANCTION_DAYS = 3650


class ModerationAction(ABC):
    """One moderator decision. Subclasses set ``name`` and ``target_type``."""

    name: ClassVar[str]
    target_type: ClassVar[str]  # post | thread | user
    needs_reason: ClassVar[bool] = False

    def __init__(
        self,
        *,
        actor: Actor,
        target_id: int,
        reason: str = "",
        params: dict[str, str] | None = None,
        config: ForumConfig | None = None,
        users: UserDirectory | None = None,
    ) -> None:
        self.actor = actor
        self.target_id = target_id
        self.reason = reason.strip()[:500]
        self.params = params or {}
        self.config = config or ForumConfig()
        self.users = users
        self.scope: str | None = None

    def run(self, session: Session) -> AuditEntry:
        """Validate, execute and log, in the caller's transaction."""
        user = self.actor.require_user()
        self.scope = self.load(session)
        if not self.actor.moderates(self.scope):
            # The same answer as for a missing target: moderation rights are not advertised.
            raise NotFound(f"No {self.target_type} {self.target_id} that you moderate.")
        if self.needs_reason and not self.reason:
            raise ForumError(
                f"Say why ({self.name.replace('_', ' ')}): the reason goes in the audit log.",
                field="reason",
            )
        self.validate(session)
        details = self.execute(session) or {}
        entry = AuditEntry(
            actor_id=user.id,
            action=self.name,
            challenge_slug=self.scope,
            target_type=self.target_type,
            target_id=self.target_id,
            reason=self.reason,
            details=details,
        )
        session.add(entry)
        session.flush()
        return entry

    @abstractmethod
    def load(self, session: Session) -> str | None:
        """Fetch the target and return the forum scope it belongs to (challenge slug or None)."""

    def validate(self, session: Session) -> None:
        """Refuse actions that make no sense for the target's current state."""
        return  # most actions have nothing to check beyond the moderator's reach

    @abstractmethod
    def execute(self, session: Session) -> dict[str, Any] | None:
        """Change the state; return details worth keeping in the audit log."""


# ---------------------------------------------------------------- posts


class _PostAction(ModerationAction):
    target_type = "post"
    post: Post
    thread: Thread

    def load(self, session: Session) -> str | None:
        post = session.get(Post, self.target_id)
        thread = session.get(Thread, post.thread_id) if post else None
        if post is None or thread is None:
            raise NotFound(f"No post {self.target_id}.")
        self.post, self.thread = post, thread
        return thread.challenge_slug

    def _resolve_flags(self, session: Session, resolution: str) -> int:
        flags = session.exec(
            select(Flag).where(Flag.post_id == self.target_id, col(Flag.resolved_at).is_(None))
        ).all()
        for flag in flags:
            flag.resolved_at = utcnow()
            flag.resolved_by = self.actor.id
            flag.resolution = resolution
            session.add(flag)
        self.post.flag_count = 0
        return len(flags)

    def _is_first(self, session: Session) -> bool:
        return first_post_id(session, self.thread.id or 0) == self.post.id


class ApprovePost(_PostAction):
    """Let a held post out of the queue."""

    name = "approve_post"

    def validate(self, session: Session) -> None:
        if self.post.status != PENDING:
            raise ForumError("This post is not waiting for approval.")

    def execute(self, session: Session) -> dict[str, Any]:
        publish_post(
            session, users=self.users, config=self.config, post=self.post, thread=self.thread
        )
        return {"held_reason": self.post.held_reason}


class HidePost(_PostAction):
    """Hide a post (also rejects a held one); its flags are resolved as upheld."""

    name = "hide_post"
    needs_reason = True

    def validate(self, session: Session) -> None:
        if self.post.status == HIDDEN and not self.post.flag_count:
            raise ForumError("This post is hidden already.")

    def execute(self, session: Session) -> dict[str, Any]:
        was = self.post.status
        self.post.status = HIDDEN
        self.post.hidden_reason = self.reason
        upheld = self._resolve_flags(session, "upheld")
        session.add(self.post)
        unindex_post(session, post_id=self.target_id)
        if self._is_first(session):
            self.thread.status = HIDDEN
            self.thread.hidden_reason = self.reason
        refresh_thread(session, self.thread)
        session.add(
            Notification(
                user_id=self.post.author_id,
                kind="moderation",
                thread_id=self.thread.id or 0,
                post_id=self.post.id,
                actor_id=self.actor.id,
                text=f"a moderator hid your post: {self.reason}"[:300],
            )
        )
        return {"was": was, "flags_upheld": upheld}


class RestorePost(_PostAction):
    """Show a hidden post again; open flags on it are dismissed."""

    name = "restore_post"

    def validate(self, session: Session) -> None:
        if self.post.status != HIDDEN and not self.post.flag_count:
            raise ForumError("This post is not hidden and has no open flags.")

    def execute(self, session: Session) -> dict[str, Any]:
        dismissed = self._resolve_flags(session, "dismissed")
        was = self.post.status
        if was == HIDDEN:
            self.post.status = VISIBLE
            self.post.hidden_reason = ""
            first = self._is_first(session)
            if first and self.thread.status == HIDDEN:
                self.thread.status = VISIBLE
                self.thread.hidden_reason = ""
            index_post(
                session,
                post_id=self.target_id,
                title=self.thread.title if first else "",
                body=self.post.body_md,
            )
            refresh_thread(session, self.thread)
        session.add(self.post)
        return {"was": was, "flags_dismissed": dismissed}


# ---------------------------------------------------------------- threads


class _ThreadAction(ModerationAction):
    target_type = "thread"
    thread: Thread

    def load(self, session: Session) -> str | None:
        thread = session.get(Thread, self.target_id)
        if thread is None or thread.status == MERGED:
            raise NotFound(f"No thread {self.target_id}.")
        self.thread = thread
        return thread.challenge_slug


class _FlagToggle(_ThreadAction):
    attribute: ClassVar[str]
    value: ClassVar[bool]

    def validate(self, session: Session) -> None:
        if getattr(self.thread, self.attribute) == self.value:
            raise ForumError(
                f"The thread is {'already' if self.value else 'not'} {self.attribute[3:]}."
            )

    def execute(self, session: Session) -> None:
        setattr(self.thread, self.attribute, self.value)
        session.add(self.thread)


class LockThread(_FlagToggle):
    name, attribute, value = "lock_thread", "is_locked", True


class UnlockThread(_FlagToggle):
    name, attribute, value = "unlock_thread", "is_locked", False


class PinThread(_FlagToggle):
    name, attribute, value = "pin_thread", "is_pinned", True


class UnpinThread(_FlagToggle):
    name, attribute, value = "unpin_thread", "is_pinned", False


class HideThread(_ThreadAction):
    name = "hide_thread"
    needs_reason = True

    def validate(self, session: Session) -> None:
        if self.thread.status == HIDDEN:
            raise ForumError("The thread is hidden already.")

    def execute(self, session: Session) -> dict[str, Any]:
        was = self.thread.status
        self.thread.status = HIDDEN
        self.thread.hidden_reason = self.reason
        session.add(self.thread)
        # Search results join on the thread's status, so its posts drop out without reindexing.
        return {"was": was}


class RestoreThread(_ThreadAction):
    name = "restore_thread"

    def validate(self, session: Session) -> None:
        if self.thread.status != HIDDEN:
            raise ForumError("The thread is not hidden.")

    def execute(self, session: Session) -> None:
        self.thread.status = VISIBLE
        self.thread.hidden_reason = ""
        first = first_post_id(session, self.target_id)
        post = session.get(Post, first) if first else None
        if post is not None and post.status == HIDDEN:
            post.status = VISIBLE
            post.hidden_reason = ""
            session.add(post)
            index_post(session, post_id=post.id or 0, title=self.thread.title, body=post.body_md)
        refresh_thread(session, self.thread)


class MoveThread(_ThreadAction):
    """Move to another category of the same forum (``params['category']``)."""

    name = "move_thread"

    def validate(self, session: Session) -> None:
        category = self.params.get("category", "")
        if category not in categories_for(self.scope):
            names = ", ".join(categories_for(self.scope))
            raise ForumError(f"Choose the category to move to: one of {names}.", field="category")
        if category == self.thread.category:
            raise ForumError(f"The thread is in '{category}' already.", field="category")

    def execute(self, session: Session) -> dict[str, Any]:
        old = self.thread.category
        self.thread.category = self.params["category"]
        session.add(self.thread)
        return {"from": old, "to": self.thread.category}


class MergeThread(_ThreadAction):
    """Move every post of this thread into another one (``params['into']``) of the same forum."""

    name = "merge_thread"
    target: Thread

    def validate(self, session: Session) -> None:
        raw = self.params.get("into", "")
        target = session.get(Thread, int(raw)) if raw.isdigit() else None
        if target is None or target.status == MERGED or target.challenge_slug != self.scope:
            raise ForumError(
                "Give the number of a thread of the same forum to merge into.", field="into"
            )
        if target.id == self.thread.id:
            raise ForumError("A thread cannot be merged into itself.", field="into")
        self.target = target

    def execute(self, session: Session) -> dict[str, Any]:
        posts = session.exec(select(Post).where(Post.thread_id == self.target_id)).all()
        target_first = first_post_id(session, self.target.id or 0)
        for post in posts:
            post.thread_id = self.target.id or 0
            session.add(post)
            if post.status == VISIBLE and post.id != target_first:
                index_post(session, post_id=post.id or 0, title="", body=post.body_md)
        for sub in session.exec(
            select(Subscription).where(Subscription.thread_id == self.target_id)
        ):
            if session.get(Subscription, (sub.user_id, self.target.id)) is None:
                session.add(Subscription(user_id=sub.user_id, thread_id=self.target.id or 0))
            session.delete(sub)
        self.thread.status = MERGED
        self.thread.merged_into_id = self.target.id
        self.thread.reply_count = 0
        session.add(self.thread)
        session.flush()
        refresh_thread(session, self.target)
        return {"into": self.target.id, "posts": len(posts)}


# ---------------------------------------------------------------- users


class _UserAction(ModerationAction):
    target_type = "user"

    def load(self, session: Session) -> str | None:
        # A sanction applies to one challenge's forum (params['challenge']) or, empty, site-wide.
        scope = self.params.get("challenge") or None
        if self.target_id == self.actor.id:
            raise Forbidden("You cannot sanction yourself.")
        return scope


class SanctionUser(_UserAction):
    """Suspend (read-only) or ban (no access) for ``params['days']`` days; empty days: indefinitely."""

    name = "sanction_user"
    needs_reason = True

    def validate(self, session: Session) -> None:
        self.kind = self.params.get("kind", "suspend")
        if self.kind not in SANCTION_KINDS:
            raise ForumError(f"Choose the sanction: {', '.join(SANCTION_KINDS)}.", field="kind")
        raw = self.params.get("days", "").strip()
        self.days: int | None = None
        if raw:
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_SANCTION_DAYS:
                raise ForumError(
                    f"Days must be a whole number from 1 to {MAX_SANCTION_DAYS}, or empty for "
                    "'until lifted'.",
                    field="days",
                )
            self.days = int(raw)

    def execute(self, session: Session) -> dict[str, Any]:
        ends = utcnow() + dt.timedelta(days=self.days) if self.days else None
        row = Sanction(
            user_id=self.target_id,
            kind=self.kind,
            challenge_slug=self.scope,
            reason=self.reason,
            created_by=self.actor.id or 0,
            ends_at=ends,
        )
        session.add(row)
        session.flush()
        self.name = f"{self.kind}_user"  # type: ignore[misc]  # the audit log names the kind
        return {
            "sanction_id": row.id,
            "days": self.days,
            "ends_at": ends.isoformat() if ends else None,
        }


class LiftSanction(_UserAction):
    name = "lift_sanction"

    def validate(self, session: Session) -> None:
        self.sanction = active_sanction(session, self.target_id, self.scope)
        if self.sanction is None or self.sanction.challenge_slug != self.scope:
            raise ForumError("This user has no active sanction in this forum.")

    def execute(self, session: Session) -> dict[str, Any]:
        sanction = self.sanction
        assert sanction is not None  # checked by validate
        sanction.lifted_at = utcnow()
        session.add(sanction)
        return {"sanction_id": sanction.id, "kind": sanction.kind}


ACTIONS: dict[str, type[ModerationAction]] = {
    cls.name: cls
    for cls in (
        ApprovePost, HidePost, RestorePost, LockThread, UnlockThread, PinThread, UnpinThread,
        HideThread, RestoreThread, MoveThread, MergeThread, SanctionUser, LiftSanction,
    )
}  # fmt: skip


def run_action(
    session: Session,
    name: str,
    *,
    actor: Actor,
    target_id: int,
    reason: str = "",
    params: dict[str, str] | None = None,
    config: ForumConfig | None = None,
    users: UserDirectory | None = None,
) -> AuditEntry:
    """Run the named moderation action (one of ``ACTIONS``) and return its audit entry."""
    cls = ACTIONS.get(name)
    if cls is None:
        raise ForumError(f"Unknown moderation action '{name}'; one of {', '.join(ACTIONS)}.")
    action = cls(
        actor=actor, target_id=target_id, reason=reason, params=params, config=config, users=users
    )
    return action.run(session)


# ---------------------------------------------------------------- moderator grants (admins only)


def moderator_grants(session: Session) -> list[Moderator]:
    """Every forum moderator grant, site-wide ones first."""
    rows = session.exec(select(Moderator)).all()
    return sorted(rows, key=lambda m: (m.challenge_slug is not None, m.challenge_slug or "", m.id))


def grant_moderator(
    session: Session, *, admin_id: int, user_id: int, challenge_slug: str | None, reason: str = ""
) -> AuditEntry:
    """Make a user a moderator of one challenge's forum (or of every forum when None); audited.

    The caller has checked that the acting user is an admin and that the challenge exists.
    """
    existing = session.exec(
        select(Moderator).where(
            Moderator.user_id == user_id,
            col(Moderator.challenge_slug).is_(None)
            if challenge_slug is None
            else Moderator.challenge_slug == challenge_slug,
        )
    ).first()
    if existing is not None:
        raise Conflict("That user moderates this forum already.")
    row = Moderator(user_id=user_id, challenge_slug=challenge_slug)
    session.add(row)
    session.flush()
    return _audit_grant(session, "grant_moderator", admin_id, row, reason)


def revoke_moderator(
    session: Session, *, admin_id: int, grant_id: int, reason: str = ""
) -> AuditEntry:
    """Take a moderator grant back; audited."""
    row = session.get(Moderator, grant_id)
    if row is None:
        raise NotFound(f"No moderator grant {grant_id}.")
    entry = _audit_grant(session, "revoke_moderator", admin_id, row, reason)
    session.delete(row)
    session.flush()
    return entry


def _audit_grant(
    session: Session, action: str, admin_id: int, row: Moderator, reason: str
) -> AuditEntry:
    entry = AuditEntry(
        actor_id=admin_id,
        action=action,
        challenge_slug=row.challenge_slug,
        target_type="user",
        target_id=row.user_id,
        reason=reason.strip()[:500],
        details={"scope": row.challenge_slug or "site"},
    )
    session.add(entry)
    session.flush()
    return entry
