"""Writers for threads, posts, votes, flags, answers and subscriptions.

Every writer is keyword-only, takes the session and the acting user explicitly, checks permission
itself and leaves the commit to the caller. Views stay thin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, func, select

from forum.access import (
    ANNOUNCEMENTS,
    Actor,
    Conflict,
    Forbidden,
    ForumError,
    NotFound,
    RateLimited,
    TooLarge,
    approved_post_count,
    can_see_post,
    can_see_thread,
    can_write_in,
    check_can_read,
    check_can_write,
    check_category,
    is_trusted,
)
from forum.config import ForumConfig
from forum.interface import ForumUser, UserDirectory
from forum.models import (
    FLAG_KINDS,
    HIDDEN,
    MERGED,
    PENDING,
    VISIBLE,
    AuditEntry,
    Flag,
    Notification,
    Post,
    PostRevision,
    Subscription,
    Thread,
    UTCDateTime,
    Vote,
    mark_versioned,
    utcnow,
)
from forum.rendering import count_links, mentioned_names, quote_depth, render_markdown
from forum.search import index_post, unindex_post

# ---------------------------------------------------------------- fetching with permission


def access_thread(session: Session, actor: Actor, thread_id: int) -> Thread:
    """A thread the actor may see; missing and hidden look the same."""
    thread = session.get(Thread, thread_id)
    if thread is None or not can_see_thread(actor, thread):
        raise NotFound("That thread does not exist or was removed.")
    check_can_read(session, actor, thread.challenge_slug)
    return thread


def access_post(session: Session, actor: Actor, post_id: int) -> tuple[Post, Thread]:
    post = session.get(Post, post_id)
    thread = session.get(Thread, post.thread_id) if post is not None else None
    if post is None or thread is None or not can_see_post(actor, thread, post):
        raise NotFound("That post does not exist or was removed.")
    check_can_read(session, actor, thread.challenge_slug)
    return post, thread


def first_post_id(session: Session, thread_id: int) -> int | None:
    return session.exec(select(func.min(Post.id)).where(Post.thread_id == thread_id)).one()


# ---------------------------------------------------------------- checks on new text


def check_body(body_md: str, config: ForumConfig) -> str:
    body = body_md.replace("\r\n", "\n").strip()
    if not body:
        raise ForumError("Write something: the post is empty.", field="body")
    if len(body) > config.max_post_chars:
        raise TooLarge(
            f"The post has {len(body):,} characters; the limit is {config.max_post_chars:,}. "
            "Shorten it, split it into several replies, or link to a gist or notebook.",
            field="body",
        )
    depth = quote_depth(body)
    if depth > config.max_quote_depth:
        raise ForumError(
            f"Quotes are nested {depth} levels deep; at most {config.max_quote_depth} are allowed. "
            "Remove the innermost quotes (lines starting with many '>').",
            field="body",
        )
    return body


def check_title(title: str, config: ForumConfig) -> str:
    title = " ".join(title.split())
    if not title:
        raise ForumError("Give the thread a title.", field="title")
    if len(title) > config.max_title_chars:
        raise ForumError(
            f"The title has {len(title)} characters; keep it under {config.max_title_chars}.",
            field="title",
        )
    return title


@dataclass(frozen=True)
class AuthorCounts:
    """The author's recent posts (rate limits) and approved posts (trust), read in one query."""

    last_minute: int
    last_hour: int
    approved: int
    subscribed: bool = False  # to the thread given to author_counts


def author_counts(
    session: Session, user_id: int, ip: str, thread_id: int | None = None
) -> AuthorCounts:
    now = utcnow()
    minute, hour = now - dt.timedelta(minutes=1), now - dt.timedelta(hours=1)

    def count(*where: Any) -> Any:
        return select(func.count()).select_from(Post).where(*where).scalar_subquery()

    row = session.execute(
        sa.select(
            count(Post.author_id == user_id, col(Post.created_at) > minute),
            count(Post.author_id == user_id, col(Post.created_at) > hour),
            count(Post.author_id == user_id, Post.status != PENDING),
            select(Subscription.thread_id)
            .where(Subscription.user_id == user_id, Subscription.thread_id == thread_id)
            .exists()
            if thread_id is not None
            else sa.false(),
        )
    ).one()
    minute_count, hour_count, approved, subscribed = row
    return AuthorCounts(int(minute_count), int(hour_count), int(approved), bool(subscribed))


def check_rate(
    session: Session,
    actor: Actor,
    config: ForumConfig,
    ip: str,
    scope: str | None,
    counts: AuthorCounts | None = None,
) -> None:
    """Per-account limits over the last minute and hour (sliding windows), counted in the
    database so every worker process agrees. Not per address: everyone behind one address (a
    hackathon room, a campus) would share one bucket."""
    if actor.moderates(scope):
        return
    user = actor.require_user()
    counts = counts or author_counts(session, user.id, ip)
    if counts.last_minute >= config.posts_per_minute_per_user:
        raise RateLimited(
            f"You can post {config.posts_per_minute_per_user} times a minute; wait a minute and "
            "send it again (your text is kept in the form)."
        )
    if counts.last_hour >= config.posts_per_hour_per_user:
        raise RateLimited(
            f"You can post {config.posts_per_hour_per_user} times an hour; try again later."
        )


def hold_reason(
    session: Session,
    actor: Actor,
    config: ForumConfig,
    body: str,
    scope: str | None,
    counts: AuthorCounts | None = None,
) -> str:
    """Why a new post must wait for a moderator ('' when it goes straight out)."""
    if actor.moderates(scope) or actor.organizes(scope):
        return ""
    user = actor.require_user()
    approved = counts.approved if counts else approved_post_count(session, user.id)
    if approved < config.premoderated_posts:
        return f"first {config.premoderated_posts} posts of a new account"
    links = count_links(body)
    if approved < config.new_user_posts and links > config.new_user_max_links:
        return f"{links} links from a new account (more than {config.new_user_max_links})"
    return ""


def _render(
    session: Session, users: UserDirectory | None, body: str, config: ForumConfig
) -> tuple[str, frozenset[int]]:
    names = mentioned_names(body)
    known = users.user_ids_for_names(session, names) if users is not None and names else {}
    rendered = render_markdown(body, known_users=known, image_hosts=config.image_hosts)
    return rendered.html, rendered.mentions


# ---------------------------------------------------------------- threads and posts


def create_thread(
    session: Session,
    *,
    actor: Actor,
    users: UserDirectory | None,
    config: ForumConfig,
    challenge_slug: str | None,
    category: str,
    title: str,
    body_md: str,
    ip: str = "",
) -> Thread:
    """Open a thread with its first post; it waits in the queue when its author is new."""
    check_category(challenge_slug, category)
    user = check_can_write(session, actor, challenge_slug)
    if not can_write_in(actor, challenge_slug, category):
        raise Forbidden("Only the organizers and moderators post in Announcements.")
    title = check_title(title, config)
    body = check_body(body_md, config)
    counts = None if actor.moderates(challenge_slug) else author_counts(session, user.id, ip)
    check_rate(session, actor, config, ip, challenge_slug, counts)
    held = hold_reason(session, actor, config, body, challenge_slug, counts)
    status = PENDING if held else VISIBLE
    thread = Thread(
        challenge_slug=challenge_slug,
        category=category,
        title=title,
        author_id=user.id,
        status=status,
    )
    session.add(thread)
    session.flush()
    assert thread.id is not None
    html, mentions = _render(session, users, body, config)
    post = Post(
        thread_id=thread.id,
        author_id=user.id,
        body_md=body,
        body_html=html,
        status=status,
        held_reason=held,
        author_ip=ip,
    )
    session.add(post)
    session.add(Subscription(user_id=user.id, thread_id=thread.id))
    session.flush()
    if status == VISIBLE:
        _published(session, post, thread, mentions)
    return thread


def create_reply(
    session: Session,
    *,
    actor: Actor,
    users: UserDirectory | None,
    config: ForumConfig,
    thread: Thread,
    body_md: str,
    ip: str = "",
) -> Post:
    """Reply in a thread the actor can see; locked threads take replies from moderators only."""
    user = check_can_write(session, actor, thread.challenge_slug)
    if not can_see_thread(actor, thread) or thread.status == MERGED:
        raise NotFound("That thread does not exist or was removed.")
    if thread.is_locked and not actor.moderates(thread.challenge_slug):
        raise Forbidden("This thread is locked: it takes no new replies.")
    if not can_write_in(actor, thread, thread.category):
        raise Forbidden("Only the organizers and moderators post in Announcements.")
    body = check_body(body_md, config)
    assert thread.id is not None
    # Rate limits, trust and whether the author follows the thread: one query.
    counts = author_counts(session, user.id, ip, thread.id)
    moderator = actor.moderates(thread.challenge_slug)
    check_rate(session, actor, config, ip, thread.challenge_slug, None if moderator else counts)
    held = hold_reason(
        session, actor, config, body, thread.challenge_slug, None if moderator else counts
    )
    html, mentions = _render(session, users, body, config)
    post = Post(
        thread_id=thread.id,
        author_id=user.id,
        body_md=body,
        body_html=html,
        status=PENDING if held else VISIBLE,
        held_reason=held,
        author_ip=ip,
    )
    session.add(post)
    if not counts.subscribed:
        session.add(Subscription(user_id=user.id, thread_id=thread.id))
    if post.status != VISIBLE:
        session.flush()  # bumps the thread's version: the author and moderators see it held
        return post
    # The thread row is updated last (counters and version in one statement), so concurrent
    # replies to one thread wait for each other's row lock for as short a time as possible.
    mark_versioned(session, thread.id)
    session.flush()
    assert post.id is not None
    index_post(session, post_id=post.id, title="", body=post.body_md, new=True)
    _notify(session, post, thread, mentions)
    # A reply is never the thread's first post, and it is the newest: the thread's counters move
    # by one (in SQL, so concurrent replies do not lose each other's increments).
    session.execute(
        sa.update(Thread)
        .where(col(Thread.id) == thread.id)
        .values(
            reply_count=col(Thread.reply_count) + 1,
            last_post_at=post.created_at,
            version=col(Thread.version) + 1,
        )
        .execution_options(synchronize_session=False)
    )
    set_committed_value(thread, "reply_count", thread.reply_count + 1)
    set_committed_value(thread, "last_post_at", post.created_at)
    return post


def edit_post(
    session: Session,
    *,
    actor: Actor,
    users: UserDirectory | None,
    config: ForumConfig,
    post: Post,
    thread: Thread,
    body_md: str,
    title: str | None = None,
) -> Post:
    """Change a post, keeping the previous text as a revision. Authors edit their own posts."""
    user = check_can_write(session, actor, thread.challenge_slug)
    moderator = actor.moderates(thread.challenge_slug)
    if post.author_id != user.id and not moderator:
        raise Forbidden("You can edit only your own posts.")
    if not moderator and (thread.is_locked or post.status == HIDDEN):
        raise Forbidden(
            "This post can no longer be edited: the thread is locked or the post hidden."
        )
    body = check_body(body_md, config)
    is_first = first_post_id(session, thread.id or 0) == post.id
    new_title = check_title(title, config) if (title is not None and is_first) else None
    assert post.id is not None
    session.add(
        PostRevision(
            post_id=post.id,
            editor_id=user.id,
            body_md=post.body_md,
            title=thread.title if is_first else "",
        )
    )
    post.body_md = body
    post.body_html, _mentions = _render(session, users, body, config)
    post.edit_count += 1
    post.edited_at = utcnow()
    if new_title is not None:
        thread.title = new_title
        session.add(thread)
    if (
        post.status == VISIBLE
        and not moderator
        and approved_post_count(session, user.id) < config.new_user_posts
        and count_links(body) > config.new_user_max_links
    ):
        post.status = PENDING
        post.held_reason = "edited to carry many links from a new account"
        unindex_post(session, post_id=post.id)
        refresh_thread(session, thread)
    elif post.status == VISIBLE:
        index_post(session, post_id=post.id, title=thread.title if is_first else "", body=body)
    session.add(post)
    session.flush()
    return post


def refresh_thread(session: Session, thread: Thread) -> None:
    """Recount visible replies and the last activity after posts appear, vanish or move."""
    count, last = session.exec(
        select(func.count(), func.max(Post.created_at)).where(
            Post.thread_id == thread.id, Post.status == VISIBLE
        )
    ).one()
    thread.reply_count = max(0, int(count) - 1)
    if last is not None:
        thread.last_post_at = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
    session.add(thread)


def publish_post(
    session: Session,
    *,
    users: UserDirectory | None,
    config: ForumConfig,
    post: Post,
    thread: Thread,
) -> None:
    """Make a held post visible (moderator approval): counts, search, notifications."""
    post.status = VISIBLE
    post.held_reason = ""
    html, mentions = _render(session, users, post.body_md, config)
    post.body_html = html
    session.add(post)
    if thread.status == PENDING and first_post_id(session, thread.id or 0) == post.id:
        thread.status = VISIBLE
    _published(session, post, thread, mentions)


def _published(session: Session, post: Post, thread: Thread, mentions: Iterable[int]) -> None:
    assert post.id is not None
    assert thread.id is not None
    is_first = first_post_id(session, thread.id) == post.id
    index_post(session, post_id=post.id, title=thread.title if is_first else "", body=post.body_md)
    refresh_thread(session, thread)
    _notify(session, post, thread, mentions)


def _notify(session: Session, post: Post, thread: Thread, mentions: Iterable[int]) -> None:
    """Tell mentioned users and the thread's subscribers (not the author) about a new post: one
    INSERT for the mentions, one INSERT ... SELECT for the subscribers, however many there are."""
    assert post.id is not None
    assert thread.id is not None
    session.flush()  # the author's own new subscription, if any, is excluded below
    table = Notification.__table__  # type: ignore[attr-defined]
    now = utcnow()
    mentioned = sorted(set(mentions) - {post.author_id})
    common = {"thread_id": thread.id, "post_id": post.id, "actor_id": post.author_id}
    if mentioned:
        text = f"mentioned you in “{thread.title}”"[:300]
        session.execute(
            sa.insert(table).values(
                [
                    {"user_id": u, "kind": "mention", "text": text, "created_at": now, **common}
                    for u in mentioned
                ]
            )
        )
    subscribers = sa.select(
        col(Subscription.user_id),
        sa.literal("reply"),
        sa.literal(thread.id),
        sa.literal(post.id),
        sa.literal(post.author_id),
        sa.literal(f"new post in “{thread.title}”"[:300]),
        sa.literal(now, UTCDateTime()),
    ).where(
        col(Subscription.thread_id) == thread.id,
        col(Subscription.user_id).not_in([post.author_id, *mentioned]),
    )
    session.execute(
        sa.insert(table).from_select(
            ["user_id", "kind", "thread_id", "post_id", "actor_id", "text", "created_at"],
            subscribers,
        )
    )


def post_announcement(
    session: Session,
    *,
    challenge_slug: str,
    author_id: int,
    title: str,
    body_md: str,
    config: ForumConfig | None = None,
    users: UserDirectory | None = None,
) -> Thread:
    """Publish an organizer's announcement in the challenge's Announcements category.

    For the hub, which has already checked that ``author_id`` organizes the challenge. Subscribers
    of earlier announcement threads are not notified (each thread has its own subscribers).
    """
    config = config or ForumConfig()
    actor = Actor(ForumUser(author_id, ""), organized=lambda: (challenge_slug,))
    return create_thread(
        session,
        actor=actor,
        users=users,
        config=config,
        challenge_slug=challenge_slug,
        category=ANNOUNCEMENTS,
        title=title,
        body_md=body_md,
    )


# ---------------------------------------------------------------- votes, answers, flags


def toggle_vote(session: Session, *, actor: Actor, post: Post, thread: Thread) -> bool:
    """Upvote a post, or take the vote back; returns whether the vote now stands."""
    user = check_can_write(session, actor, thread.challenge_slug)
    if post.status != VISIBLE:
        raise Forbidden("Only published posts can be voted on.")
    if post.author_id == user.id:
        raise Forbidden("You cannot vote for your own post.")
    assert post.id is not None
    # In SQL, not read-then-write: two toggles at once (a double click, two tabs) would both see
    # no vote and both insert it, and the second insert failed on the primary key. The insert
    # that finds the vote there does nothing, and that toggle takes the vote back instead. The
    # score moves by what was really inserted or deleted, so it always equals the stored votes.
    votes = Vote.__table__  # type: ignore[attr-defined]
    insert = (
        sqlite_insert(votes)
        if session.get_bind().dialect.name == "sqlite"
        else postgresql_insert(votes)
    )
    added = session.execute(
        insert.values(post_id=post.id, user_id=user.id, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(votes.c.user_id)
    ).first()
    delta = 1
    if added is None:
        removed = session.execute(
            sa.delete(votes)
            .where(votes.c.post_id == post.id, votes.c.user_id == user.id)
            .returning(votes.c.user_id)
        ).first()
        delta = -1 if removed is not None else 0
    mark_versioned(session, thread.id or 0)
    session.execute(
        sa.update(Post).where(col(Post.id) == post.id).values(score=col(Post.score) + delta)
    )
    session.execute(
        sa.update(Thread).where(col(Thread.id) == thread.id).values(version=col(Thread.version) + 1)
    )
    session.refresh(post, ["score"])
    return delta > 0


def accept_answer(session: Session, *, actor: Actor, thread: Thread, post: Post | None) -> None:
    """Mark a reply as the answer (None clears it); the asker or a moderator may do so."""
    user = check_can_write(session, actor, thread.challenge_slug)
    if thread.author_id != user.id and not actor.moderates(thread.challenge_slug):
        raise Forbidden("Only the person who asked, or a moderator, can mark the answer.")
    if post is not None:
        if post.thread_id != thread.id or post.status != VISIBLE:
            raise NotFound("That reply is not a published post of this thread.")
        if first_post_id(session, thread.id or 0) == post.id:
            raise ForumError("The question itself cannot be its answer; pick a reply.")
    thread.accepted_post_id = post.id if post is not None else None
    session.add(thread)
    session.flush()


def flag_post(
    session: Session,
    *,
    actor: Actor,
    config: ForumConfig,
    post: Post,
    thread: Thread,
    kind: str,
    reason: str,
) -> Flag:
    """Report a post. Enough flags from distinct trusted users hide it until a moderator decides."""
    user = check_can_write(session, actor, thread.challenge_slug)
    if kind not in FLAG_KINDS:
        raise ForumError(f"Choose why you flag the post: {', '.join(FLAG_KINDS)}.", field="kind")
    if post.author_id == user.id:
        raise Forbidden("You cannot flag your own post; edit it instead.")
    if post.status == PENDING:
        raise Forbidden("This post is waiting for a moderator already.")
    assert post.id is not None
    if session.exec(select(Flag).where(Flag.post_id == post.id, Flag.user_id == user.id)).first():
        raise Conflict("You have flagged this post already; a moderator will look at it.")
    hour = utcnow() - dt.timedelta(hours=1)
    recent = session.exec(
        select(func.count())
        .select_from(Flag)
        .where(Flag.user_id == user.id, col(Flag.created_at) > hour)
    ).one()
    if recent >= config.flags_per_hour_per_user and not actor.moderates(thread.challenge_slug):
        raise RateLimited(
            f"You can flag {config.flags_per_hour_per_user} posts an hour; try later."
        )
    flag = Flag(post_id=post.id, user_id=user.id, kind=kind, reason=reason.strip()[:500])
    session.add(flag)
    post.flag_count += 1
    session.add(post)
    session.flush()
    if post.status == VISIBLE:
        flaggers = session.exec(
            select(Flag.user_id).where(Flag.post_id == post.id, col(Flag.resolved_at).is_(None))
        ).all()
        trusted = [u for u in set(flaggers) if is_trusted(session, u, config)]
        if len(trusted) >= config.flags_to_hide:
            post.status = HIDDEN
            post.hidden_reason = (
                f"hidden automatically after {len(trusted)} flags; waiting for a moderator"
            )
            session.add(post)
            unindex_post(session, post_id=post.id)
            refresh_thread(session, thread)
            session.add(
                AuditEntry(
                    actor_id=None,
                    action="auto_hide",
                    challenge_slug=thread.challenge_slug,
                    target_type="post",
                    target_id=post.id,
                    reason=f"{len(trusted)} flags from trusted users",
                    details={"flaggers": sorted(trusted)},
                )
            )
            session.flush()
    return flag


def set_subscription(session: Session, *, actor: Actor, thread: Thread, subscribed: bool) -> None:
    user = actor.require_user()
    assert thread.id is not None
    row = session.get(Subscription, (user.id, thread.id))
    if subscribed and row is None:
        session.add(Subscription(user_id=user.id, thread_id=thread.id))
    elif not subscribed and row is not None:
        session.delete(row)
    session.flush()


def mark_notifications_read(session: Session, *, user_id: int) -> None:
    now = utcnow()
    for row in session.exec(
        select(Notification).where(
            Notification.user_id == user_id, col(Notification.read_at).is_(None)
        )
    ):
        row.read_at = now
        session.add(row)
    session.flush()
