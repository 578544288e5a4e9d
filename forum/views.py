"""The forum's pages. ``forum_routes(host, config)`` returns routes to mount (e.g. at ``/forum``).

POST views are ``async``: they read the form through the host (CSRF check) and run the database work
in the thread pool. GET views are plain functions run in the thread pool, except the thread page:
an ``async`` handler whose cache hits read on the event loop through the host
(``ForumHost.prefetch_on_loop``), and whose other cases run inline (docs/benchmarks.md, Forum).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from forum.access import (
    ANNOUNCEMENTS,
    MAX_ID,
    STANDING,
    Actor,
    Forbidden,
    ForumError,
    NotFound,
    NotLoggedIn,
    Page,
    Standing,
    can_see_thread,
    can_write_in,
    categories_for,
    check_can_read,
    check_category,
    forum_standing,
    page_number,
    standing_from_rows,
)
from forum.config import ForumConfig
from forum.fragments import (
    POST_COLUMNS,
    TEMPLATES_DIR,
    PageTemplate,
    PostFragments,
    PostRow,
    PostView,
    Viewer,
    fmt_time,
)
from forum.interface import ForumHost, ForumUser
from forum.models import (
    FLAG_KINDS,
    MERGED,
    PENDING,
    VISIBLE,
    AuditEntry,
    Flag,
    Notification,
    Post,
    PostRevision,
    Sanction,
    Thread,
    utcnow,
)
from forum.moderation import (
    ACTIONS,
    grant_moderator,
    moderator_grants,
    revoke_moderator,
    run_action,
)
from forum.pagecache import (
    THREAD_SCOPE,
    THREAD_WITH_VIEWER_FACTS,
    PageCache,
    ViewerClass,
    ViewerFacts,
    thread_and_viewer_facts,
    thread_from_row,
)
from forum.posting import (
    accept_answer,
    access_post,
    access_thread,
    create_reply,
    create_thread,
    edit_post,
    first_post_id,
    flag_post,
    mark_notifications_read,
    set_subscription,
    toggle_vote,
)
from forum.rendering import quote_for_reply, render_markdown
from forum.search import search_posts

Handler = Callable[[Request], Any]
STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True)
class NavView:
    """What the forum's navigation bar needs of the viewer, in a cached page body."""

    site_moderator: bool
    moderated: tuple[str, ...] = ()


class ForumViews:
    """The views, bound to one host and one policy."""

    def __init__(self, host: ForumHost, config: ForumConfig) -> None:
        self.host = host
        self.config = config
        self.fragments = PostFragments(config.fragment_cache_posts)
        self.page_cache = PageCache(config.page_cache_pages)

    # ------------------------------------------------------------ helpers

    def actor(self, request: Request) -> Actor:
        cached = getattr(request.state, "forum_actor", None)
        if isinstance(cached, Actor):
            return cached
        user = self.host.current_user(request)
        standing = forum_standing(self.host.session(request), user.id) if user else None
        return self.actor_of(request, user, standing)

    def actor_of(
        self, request: Request, user: ForumUser | None, standing: Standing | None
    ) -> Actor:
        """The request's actor, from the user and their forum standing (however they were read)."""
        if user is None or standing is None:
            actor = Actor(None)
        else:
            actor = Actor(
                user,
                site_moderator=standing.site_moderator or self.host.is_site_moderator(request),
                moderated=lambda: standing.moderated | self.host.moderated_challenges(request),
                organized=lambda: self.host.organized_challenges(request),
                sanctions=standing.sanctions,
            )
        request.state.forum_actor = actor
        return actor

    def session(self, request: Request) -> Session:
        return self.host.session(request)

    def scope_of(self, request: Request) -> tuple[str | None, str]:
        """The forum a URL names and its title; unknown and invisible challenges are 404s."""
        slug = request.path_params.get("slug")
        if slug is None:
            return None, "Site-wide forum"
        title = self.host.challenge_title(request, slug)
        if title is None:
            raise NotFound(f"No challenge '{slug}'.")
        return slug, title

    def scope_title(self, request: Request, slug: str | None) -> str:
        if slug is None:
            return "Site-wide forum"
        title = self.host.challenge_title(request, slug)
        if title is None:
            raise NotFound("That thread does not exist or was removed.")
        return title

    def thread_for(self, request: Request, actor: Actor, thread_id: int) -> Thread:
        """``access_thread``, and the thread's challenge must be one the viewer may see (asked
        first, so that the host reads the challenge and the viewer's roles together)."""
        session = self.session(request)
        row = session.get(Thread, thread_id)
        if row is None:
            raise NotFound("That thread does not exist or was removed.")
        self.scope_title(request, row.challenge_slug)
        return access_thread(session, actor, thread_id)

    def post_for(self, request: Request, actor: Actor, post_id: int) -> tuple[Post, Thread]:
        """``access_post``, and the post's challenge must be one the viewer may see."""
        session = self.session(request)
        row = session.get(Post, post_id)
        thread = session.get(Thread, row.thread_id) if row is not None else None
        if thread is None:
            raise NotFound("That post does not exist or was removed.")
        self.scope_title(request, thread.challenge_slug)
        return access_post(session, actor, post_id)

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        actor = self.actor(request)
        context.setdefault("me", actor.user)
        context.setdefault("actor", actor)
        context["forum_csrf"] = Markup(self.host.csrf_field(request))  # noqa: S704 - the host builds escaped HTML
        context["fmt_time"] = fmt_time
        context["categories_for"] = categories_for
        return self.host.render(request, template, context, status_code)

    def thread_url(self, thread: Thread) -> str:
        return f"/forum/t/{thread.id}"

    @staticmethod
    def client_ip(request: Request) -> str:
        return request.client.host if request.client else ""

    @staticmethod
    def int_param(value: Any, what: str) -> int:
        try:
            number = int(str(value))
        except ValueError:
            raise ForumError(f"{what} must be a number, not '{value}'.") from None
        if not 0 <= number <= MAX_ID:
            raise NotFound(f"{what} not found.")
        return number

    @staticmethod
    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    async def form(self, request: Request) -> FormData:
        return await self.host.read_form(request)

    def error_response(self, request: Request, exc: ForumError) -> Response:
        if self.wants_json(request):
            body = {"error": type(exc).__name__.lower(), "message": exc.message}
            return JSONResponse(body, status_code=exc.status_code)
        if isinstance(exc, NotLoggedIn):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return self.render(
            request, "forum/error.html", status_code=exc.status_code, message=exc.message
        )

    def guarded(
        self, handler: Handler, *, inline: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Turn ForumError into a page (or JSON) that says what to change; roll back on errors.

        ``inline`` runs a synchronous handler on the event loop instead of a pool thread: for the
        thread page, whose cached path is a few milliseconds of CPU and short indexed reads,
        the hop to a thread and back (and many threads contending for the GIL under load) cost
        more than the work and made the latency tail."""
        is_async = inspect.iscoroutinefunction(handler)

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                if is_async:
                    result: Response = await handler(request)
                    return result
                if inline:
                    inline_result: Response = handler(request)
                    return inline_result
                return await run_in_threadpool(handler, request)
            except ForumError as exc:
                await run_in_threadpool(self.session(request).rollback)
                return await run_in_threadpool(self.error_response, request, exc)

        return endpoint

    # ------------------------------------------------------------ listing pages

    def index(self, request: Request) -> Response:
        """The site-wide forum and the notification count."""
        return self.forum_index(request)

    def forum_index(self, request: Request) -> Response:
        slug, title = self.scope_of(request)
        session = self.session(request)
        actor = self.actor(request)
        check_can_read(session, actor, slug)
        counts = dict(
            session.exec(
                select(Thread.category, func.count())
                .where(
                    Thread.challenge_slug == slug if slug else col(Thread.challenge_slug).is_(None)
                )
                .where(Thread.status == VISIBLE)
                .group_by(col(Thread.category))
            ).all()
        )
        return self.render(
            request,
            "forum/index.html",
            slug=slug,
            title=title,
            categories=[(k, v, counts.get(k, 0)) for k, v in categories_for(slug).items()],
            unread=self.unread_count(request),
        )

    def unread_count(self, request: Request) -> int:
        actor = self.actor(request)
        if actor.user is None:
            return 0
        return (
            self.session(request)
            .exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.user_id == actor.user.id, col(Notification.read_at).is_(None))
            )
            .one()
        )

    def category(self, request: Request) -> Response:
        slug, title = self.scope_of(request)
        category = request.path_params["category"]
        check_category(slug, category)
        session = self.session(request)
        actor = self.actor(request)
        check_can_read(session, actor, slug)
        where: list[Any] = [
            Thread.challenge_slug == slug if slug else col(Thread.challenge_slug).is_(None),
            Thread.category == category,
        ]
        if not actor.moderates(slug):
            mine = (
                sa.and_(col(Thread.status) == PENDING, col(Thread.author_id) == actor.id)
                if actor.id
                else sa.false()
            )
            where.append(sa.or_(col(Thread.status) == VISIBLE, mine))
        else:
            where.append(Thread.status != MERGED)
        total = session.exec(select(func.count()).select_from(Thread).where(*where)).one()
        page = Page(
            page_number(request.query_params.get("page")), self.config.threads_per_page, total
        )
        threads = session.exec(
            select(Thread)
            .where(*where)
            .order_by(
                col(Thread.is_pinned).desc(), col(Thread.last_post_at).desc(), col(Thread.id).desc()
            )
            .offset(page.offset)
            .limit(page.size)
        ).all()
        names = self.host.display_names(session, {t.author_id for t in threads})
        return self.render(
            request,
            "forum/category.html",
            slug=slug,
            title=title,
            category=category,
            category_title=categories_for(slug)[category],
            threads=threads,
            names=names,
            page=page,
            can_post=can_write_in(actor, slug, category),
        )

    # ------------------------------------------------------------ threads

    async def new_thread(self, request: Request) -> Response:
        slug, title = await run_in_threadpool(self.scope_of, request)
        category = request.path_params["category"]
        check_category(slug, category)
        actor = await run_in_threadpool(self.actor, request)
        actor.require_user()
        if not can_write_in(actor, slug, category):
            raise Forbidden("Only the organizers and moderators post in Announcements.")
        values = {"title": "", "body": ""}
        if request.method == "POST":
            form = await self.form(request)
            values = {"title": str(form.get("title", "")), "body": str(form.get("body", ""))}
            preview = self.preview(form, values["body"])

            def _create() -> Response:
                session = self.session(request)
                if preview is not None:
                    return self.render(
                        request, "forum/new_thread.html", slug=slug, title=title,
                        category=category, values=values, preview_html=preview,
                    )  # fmt: skip
                try:
                    thread = create_thread(
                        session,
                        actor=actor,
                        users=self.host,
                        config=self.config,
                        challenge_slug=slug,
                        category=category,
                        title=values["title"],
                        body_md=values["body"],
                        ip=self.client_ip(request),
                    )
                    session.commit()
                except ForumError as exc:
                    session.rollback()
                    return self.render(
                        request,
                        "forum/new_thread.html",
                        status_code=exc.status_code,
                        slug=slug,
                        title=title,
                        category=category,
                        values=values,
                        error=exc.message,
                    )
                return RedirectResponse(self.thread_url(thread), status_code=303)

            return await run_in_threadpool(_create)
        return await run_in_threadpool(
            lambda: self.render(
                request,
                "forum/new_thread.html",
                slug=slug,
                title=title,
                category=category,
                values=values,
            )
        )

    def preview(self, form: Any, body: str) -> Markup | None:
        """The post as it would be shown (same renderer and sanitizer), when Preview was pressed."""
        if not form.get("preview"):
            return None
        html = render_markdown(body, image_hosts=self.config.image_hosts).html
        return Markup(html)  # noqa: S704 - sanitized by nh3 in render_markdown

    def visible_posts_filter(self, actor: Actor, thread: Thread) -> Any:
        if actor.moderates(thread.challenge_slug):
            return sa.true()
        if actor.id is None:
            return Post.status == VISIBLE
        return sa.or_(
            col(Post.status) == VISIBLE,
            sa.and_(col(Post.status) == PENDING, col(Post.author_id) == actor.id),
        )

    async def thread_on_loop(self, request: Request) -> Response:
        """The thread page without blocking the event loop on a cache hit: the host reads the
        viewer, their roles and the thread's challenge together with the thread row, the viewer's
        facts and forum standing, in one round trip on a connection of its own
        (``ForumHost.prefetch_on_loop``); a cached body is then served with no other read. A miss,
        or no such read (SQLite, a busy or broken connection), takes :meth:`thread` inline."""
        thread_id = self.int_param(request.path_params["thread_id"], "Thread")

        def reads(user_id: int | None) -> list[tuple[Any, dict[str, Any]]]:
            wanted: list[tuple[Any, dict[str, Any]]] = [
                (THREAD_WITH_VIEWER_FACTS, {"user_id": user_id, "thread_id": thread_id})
            ]
            if user_id is not None:
                wanted.append((STANDING, {"user_id": user_id, "now": utcnow()}))
            return wanted

        results = await self.host.prefetch_on_loop(
            request, THREAD_SCOPE, {"thread_id": thread_id}, reads
        )
        response = self.thread_from_prefetch(request, results) if results else None
        return response if response is not None else self.thread(request)

    def thread_from_prefetch(
        self, request: Request, results: list[Sequence[Sequence[Any]]]
    ) -> Response | None:
        """The page from ``prefetch_on_loop``'s rows when its body is cached, else None."""
        user = self.host.current_user(request)  # known to the host now: no query
        if not results[0] or len(results) != (2 if user else 1):
            return None  # no such thread, or the host took the user to be someone else
        thread, facts = thread_from_row(results[0][0], user is not None)
        standing = standing_from_rows(results[1], user.id) if user else None
        actor = self.actor_of(request, user, standing)
        scope_title = self.scope_title(request, thread.challenge_slug)
        if not can_see_thread(actor, thread):
            raise NotFound("That thread does not exist or was removed.")
        check_can_read(self.session(request), actor, thread.challenge_slug)  # sanctions known
        return self.thread_page(request, actor, thread, facts, scope_title, render=False)

    def thread(self, request: Request) -> Response:
        """One page of a thread: the body from the page cache (keyed by the thread's version and
        the viewer's class), the viewer's own bits filled in from one small query."""
        session = self.session(request)
        actor = self.actor(request)
        me = actor.id
        thread_id = self.int_param(request.path_params["thread_id"], "Thread")
        row, facts = thread_and_viewer_facts(session, thread_id, me)
        if row is None:
            raise NotFound("That thread does not exist or was removed.")
        # The forum's title first: the host then knows the challenge when asked about roles.
        scope_title = self.scope_title(request, row.challenge_slug)
        thread = access_thread(session, actor, thread_id)  # the row is in the session already
        page = self.thread_page(request, actor, thread, facts, scope_title, render=True)
        assert page is not None
        return page

    def thread_page(
        self,
        request: Request,
        actor: Actor,
        thread: Thread,
        facts: ViewerFacts | None,
        scope_title: str,
        *,
        render: bool,
    ) -> Response | None:
        """The page of a thread the actor may read; a body not in the cache is rendered when
        ``render``, else the answer is None."""
        me = actor.id
        if thread.status == MERGED and thread.merged_into_id:
            return RedirectResponse(f"/forum/t/{thread.merged_into_id}", status_code=301)
        assert thread.id is not None
        moderator = actor.moderates(thread.challenge_slug)
        viewer = ViewerClass(
            logged_in=me is not None,
            moderator=moderator,
            nav_moderation=me is not None and bool(actor.site_moderator or actor.moderated),
            can_reply=(
                me is not None
                and (not thread.is_locked or moderator)
                and can_write_in(actor, thread, thread.category)
            ),
            can_accept=(
                me is not None
                and (me == thread.author_id or moderator)
                and thread.category != ANNOUNCEMENTS
            ),
            scope_title=scope_title,
        )
        raw_page = request.query_params.get("page") or "1"
        if raw_page.isdigit():
            raw_page = str(int(raw_page))  # ?page=01 and ?page=1 share an entry
        key = (thread.id, thread.version, raw_page, viewer)
        # A participant's own held posts are on their pages only: render those pages for them.
        shared = moderator or facts is None or not facts.has_pending
        body = self.page_cache.get(key) if shared else None
        if body is None:
            if not render:
                return None
            session = self.session(request)
            # A shared body shows what every viewer of the class sees: for participants, published
            # posts only (even if one of theirs was held since the facts were read).
            seen_as = actor if moderator or not shared else Actor(None)
            body = self.thread_body(session, seen_as, thread, raw_page, viewer)
            if shared:
                self.page_cache.put(key, body)
        html = body.fill(
            Viewer(
                csrf_field=self.host.csrf_field(request),
                user_id=me,
                voted=facts.voted if facts else frozenset(),
                subscribed=facts.subscribed if facts else False,
                moderator=moderator,
                thread_id=thread.id,
            )
        )
        return self.render(
            request,
            "forum/thread.html",
            thread=thread,
            body=Markup(html),  # noqa: S704 - rendered by Jinja with autoescape; slots are ours
        )

    def thread_body(
        self, session: Session, actor: Actor, thread: Thread, raw_page: str, viewer: ViewerClass
    ) -> PageTemplate:
        """Render one page of a thread for a viewer class (four queries; posts from fragments)."""
        assert thread.id is not None
        shown = self.visible_posts_filter(actor, thread)
        # The count for the pager and the question's id in one round trip.
        total, first_id = session.execute(
            select(
                select(func.count())
                .select_from(Post)
                .where(Post.thread_id == thread.id, shown)
                .scalar_subquery(),
                select(func.min(Post.id)).where(Post.thread_id == thread.id).scalar_subquery(),
            )
        ).one()
        size = self.config.posts_per_page
        last = max(1, math.ceil(total / size))
        page = Page(page_number(raw_page, last=last), size, total)
        if page.number > last:
            raise NotFound(f"This thread has {last} page(s); page {page.number} does not exist.")
        page_ids = (
            select(Post.id)
            .where(Post.thread_id == thread.id, shown)
            .order_by(col(Post.id))
            .offset(page.offset)
            .limit(size)
            .scalar_subquery()
        )
        in_page = col(Post.id).in_(page_ids)
        wanted: Any = in_page
        answer_id = thread.accepted_post_id if page.number == 1 else None
        if answer_id:
            # Shown under the question on page 1 wherever it is in the thread: one query for both.
            wanted = sa.or_(
                in_page, sa.and_(col(Post.id) == answer_id, col(Post.thread_id) == thread.id, shown)
            )
        rows = session.execute(
            sa.select(*POST_COLUMNS, in_page.label("in_page")).where(wanted).order_by(col(Post.id))
        ).all()
        posts = [PostRow.of(r) for r in rows if r.in_page]
        accepted = next((PostRow.of(r) for r in rows if answer_id and r.id == answer_id), None)
        names = self.host.display_names(
            session,
            {p.author_id for p in posts}
            | ({accepted.author_id} if accepted else set())
            | {thread.author_id},
        )

        def html(row: PostRow, anchor: str) -> str:
            view = PostView(
                anchor=anchor,
                name=names.get(row.author_id, "?"),
                thread_id=thread.id or 0,
                page_number=page.number if viewer.moderator else 0,
                accepted=row.id == thread.accepted_post_id,
                logged_in=viewer.logged_in,
                can_reply=viewer.can_reply,
                can_accept=viewer.can_accept,
                is_first=row.id == first_id,
                moderator=viewer.moderator,
            )
            return self.fragments.render(row, view)

        parts = []
        for i, row in enumerate(posts):
            if accepted is not None and row.id == accepted.id and i > 0:
                continue  # already shown, highlighted, under the question: show it once
            parts.append(html(row, "post"))
            if i == 0 and accepted is not None:
                parts.append(
                    '<section class="accepted-answer" aria-label="Accepted answer">'
                    "<h2>Accepted answer</h2>\n" + html(accepted, "post") + "</section>\n"
                )
        return self.fragments.page(
            "forum/_thread_body.html",
            thread=thread,
            posts_html=Markup("".join(parts)),  # noqa: S704 - fragments are escaped by Jinja
            page=page,
            me=viewer.logged_in,
            actor=NavView(site_moderator=viewer.nav_moderation),
            subscription=self.fragments.subscription_slot,
            moderator=viewer.moderator,
            scope_title=viewer.scope_title,
            can_reply=viewer.can_reply,
            categories=categories_for(thread.challenge_slug),
        )

    async def reply(self, request: Request) -> Response:
        thread_id = self.int_param(request.path_params["thread_id"], "Thread")
        actor = await run_in_threadpool(self.actor, request)
        actor.require_user()
        if request.method == "GET":
            quote = request.query_params.get("quote")

            def _form() -> Response:
                session = self.session(request)
                thread = self.thread_for(request, actor, thread_id)
                body = ""
                if quote:
                    post, _ = self.post_for(request, actor, self.int_param(quote, "Quoted post"))
                    name = self.host.display_names(session, [post.author_id]).get(
                        post.author_id, "someone"
                    )
                    body = quote_for_reply(name, post.body_md)
                return self.render(request, "forum/reply.html", thread=thread, body=body)

            return await run_in_threadpool(_form)
        form = await self.form(request)
        body = str(form.get("body", ""))
        preview = self.preview(form, body)

        def _post() -> Response:
            session = self.session(request)
            thread = self.thread_for(request, actor, thread_id)
            if preview is not None:
                return self.render(
                    request, "forum/reply.html", thread=thread, body=body, preview_html=preview
                )
            try:
                post = create_reply(
                    session,
                    actor=actor,
                    users=self.host,
                    config=self.config,
                    thread=thread,
                    body_md=body,
                    ip=self.client_ip(request),
                )
                session.commit()
            except ForumError as exc:
                session.rollback()
                if self.wants_json(request):
                    raise
                return self.render(
                    request,
                    "forum/reply.html",
                    status_code=exc.status_code,
                    thread=thread,
                    body=body,
                    error=exc.message,
                )
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse({"id": post.id, "status": post.status}, status_code=201)
            return RedirectResponse(f"/forum/p/{post.id}", status_code=303)

        return await run_in_threadpool(_post)

    def post_link(self, request: Request) -> Response:
        """Redirect to the page of the thread that shows the post."""
        session = self.session(request)
        actor = self.actor(request)
        post, thread = self.post_for(
            request, actor, self.int_param(request.path_params["post_id"], "Post")
        )
        before = session.exec(
            select(func.count())
            .select_from(Post)
            .where(
                Post.thread_id == thread.id,
                col(Post.id) < post.id,
                self.visible_posts_filter(actor, thread),
            )
        ).one()
        page = before // self.config.posts_per_page + 1
        return RedirectResponse(f"/forum/t/{thread.id}?page={page}#post-{post.id}", status_code=303)

    async def edit(self, request: Request) -> Response:
        post_id = self.int_param(request.path_params["post_id"], "Post")
        actor = await run_in_threadpool(self.actor, request)
        actor.require_user()
        form = await self.form(request) if request.method == "POST" else None

        def _edit() -> Response:
            session = self.session(request)
            post, thread = self.post_for(request, actor, post_id)
            if post.author_id != actor.id and not actor.moderates(thread.challenge_slug):
                raise NotFound("That post does not exist or was removed.")
            is_first = first_post_id(session, thread.id or 0) == post.id
            if form is None:
                return self.render(
                    request,
                    "forum/edit.html",
                    post=post,
                    thread=thread,
                    body=post.body_md,
                    title_value=thread.title,
                    is_first=is_first,
                )
            body = str(form.get("body", ""))
            title = str(form.get("title", "")) if is_first else None
            preview = self.preview(form, body)
            if preview is not None:
                return self.render(
                    request, "forum/edit.html", post=post, thread=thread, body=body,
                    title_value=title or thread.title, is_first=is_first, preview_html=preview,
                )  # fmt: skip
            try:
                edit_post(
                    session,
                    actor=actor,
                    users=self.host,
                    config=self.config,
                    post=post,
                    thread=thread,
                    body_md=body,
                    title=title,
                )
                session.commit()
            except ForumError as exc:
                session.rollback()
                return self.render(
                    request,
                    "forum/edit.html",
                    status_code=exc.status_code,
                    post=post,
                    thread=thread,
                    body=body,
                    title_value=title or thread.title,
                    is_first=is_first,
                    error=exc.message,
                )
            return RedirectResponse(f"/forum/p/{post.id}", status_code=303)

        return await run_in_threadpool(_edit)

    def history(self, request: Request) -> Response:
        session = self.session(request)
        actor = self.actor(request)
        post, thread = self.post_for(
            request, actor, self.int_param(request.path_params["post_id"], "Post")
        )
        if post.author_id != actor.id and not actor.moderates(thread.challenge_slug):
            raise NotFound("Only the author and moderators see a post's edit history.")
        revisions = session.exec(
            select(PostRevision)
            .where(PostRevision.post_id == post.id)
            .order_by(col(PostRevision.id).desc())
        ).all()
        names = self.host.display_names(session, {r.editor_id for r in revisions})
        return self.render(
            request,
            "forum/history.html",
            post=post,
            thread=thread,
            revisions=revisions,
            names=names,
        )

    async def vote(self, request: Request) -> Response:
        return await self._post_action(request, "vote")

    async def flag(self, request: Request) -> Response:
        if request.method == "GET":

            def _form() -> Response:
                actor = self.actor(request)
                actor.require_user()
                post, thread = self.post_for(
                    request, actor, self.int_param(request.path_params["post_id"], "Post")
                )
                return self.render(
                    request, "forum/flag.html", post=post, thread=thread, flag_kinds=FLAG_KINDS
                )

            return await run_in_threadpool(_form)
        return await self._post_action(request, "flag")

    async def _post_action(self, request: Request, what: str) -> Response:
        post_id = self.int_param(request.path_params["post_id"], "Post")
        form = await self.form(request)

        def _act() -> Response:
            session = self.session(request)
            actor = self.actor(request)
            actor.require_user()
            post, thread = self.post_for(request, actor, post_id)
            result: dict[str, Any] = {"post": post_id}
            if what == "vote":
                result["voted"] = toggle_vote(session, actor=actor, post=post, thread=thread)
                result["score"] = post.score
            else:
                flag_post(
                    session,
                    actor=actor,
                    config=self.config,
                    post=post,
                    thread=thread,
                    kind=str(form.get("kind", "")),
                    reason=str(form.get("reason", "")),
                )
                result["status"] = post.status
            session.commit()
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse(result)
            return RedirectResponse(f"/forum/p/{post_id}", status_code=303)

        return await run_in_threadpool(_act)

    async def accept(self, request: Request) -> Response:
        thread_id = self.int_param(request.path_params["thread_id"], "Thread")
        form = await self.form(request)
        raw = str(form.get("post_id", ""))

        def _act() -> Response:
            session = self.session(request)
            actor = self.actor(request)
            thread = self.thread_for(request, actor, thread_id)
            post = None
            if raw:
                post, _ = self.post_for(request, actor, self.int_param(raw, "Post"))
            accept_answer(session, actor=actor, thread=thread, post=post)
            session.commit()
            return RedirectResponse(self.thread_url(thread), status_code=303)

        return await run_in_threadpool(_act)

    async def subscribe(self, request: Request) -> Response:
        thread_id = self.int_param(request.path_params["thread_id"], "Thread")
        form = await self.form(request)

        def _act() -> Response:
            session = self.session(request)
            actor = self.actor(request)
            thread = self.thread_for(request, actor, thread_id)
            set_subscription(session, actor=actor, thread=thread, subscribed=form.get("on") == "1")
            session.commit()
            return RedirectResponse(self.thread_url(thread), status_code=303)

        return await run_in_threadpool(_act)

    def feed(self, request: Request) -> Response:
        """The thread's visible posts as an Atom feed (newest first, at most 50)."""
        session = self.session(request)
        actor = self.actor(request)
        thread = self.thread_for(
            request, actor, self.int_param(request.path_params["thread_id"], "Thread")
        )
        if thread.status != VISIBLE:
            raise NotFound("That thread does not exist or was removed.")
        posts = session.exec(
            select(Post)
            .where(Post.thread_id == thread.id, Post.status == VISIBLE)
            .order_by(col(Post.id).desc())
            .limit(50)
        ).all()
        names = self.host.display_names(session, {p.author_id for p in posts})
        base = str(request.base_url).rstrip("/")
        response = self.render(
            request, "forum/feed.xml", thread=thread, posts=posts, names=names, base=base
        )
        return Response(response.body, media_type="application/atom+xml; charset=utf-8")

    # ------------------------------------------------------------ search and notifications

    def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "")[:200]
        where = request.query_params.get("in") or None
        title = self.scope_title(request, where) if where else "Site-wide forum"
        session = self.session(request)
        check_can_read(session, self.actor(request), where)
        page = page_number(request.query_params.get("page"))
        hits = search_posts(
            session, query=query, challenge_slug=where, limit=30, offset=(page - 1) * 30
        )
        return self.render(
            request,
            "forum/search.html",
            query=query,
            where=where,
            title=title,
            hits=hits,
            page=page,
        )

    async def notifications(self, request: Request) -> Response:
        actor = await run_in_threadpool(self.actor, request)
        user = actor.require_user()
        if request.method == "POST":
            await self.form(request)

            def _read() -> Response:
                mark_notifications_read(self.session(request), user_id=user.id)
                self.session(request).commit()
                return RedirectResponse("/forum/notifications", status_code=303)

            return await run_in_threadpool(_read)

        def _page() -> Response:
            session = self.session(request)
            rows = session.exec(
                select(Notification)
                .where(Notification.user_id == user.id)
                .order_by(col(Notification.id).desc())
                .limit(100)
            ).all()
            names = self.host.display_names(session, {r.actor_id for r in rows if r.actor_id})
            return self.render(request, "forum/notifications.html", rows=rows, names=names)

        return await run_in_threadpool(_page)

    # ------------------------------------------------------------ moderation

    def scope_filter(self, actor: Actor, column: Any) -> Any:
        if actor.site_moderator:
            return sa.true()
        return col(column).in_(sorted(actor.moderated)) if actor.moderated else sa.false()

    def require_moderator(self, actor: Actor) -> None:
        actor.require_user()
        if not actor.site_moderator and not actor.moderated:
            raise NotFound("That page does not exist.")

    def moderation(self, request: Request) -> Response:
        """The queue (held posts), open flags and the audit log of the forums the user moderates."""
        session = self.session(request)
        actor = self.actor(request)
        self.require_moderator(actor)
        in_scope = self.scope_filter(actor, Thread.challenge_slug)
        queue = session.exec(
            select(Post, Thread)
            .join(Thread, col(Thread.id) == Post.thread_id)
            .where(Post.status == PENDING, in_scope)
            .order_by(col(Post.id))
            .limit(100)
        ).all()
        flagged = session.exec(
            select(Post, Thread)
            .join(Thread, col(Thread.id) == Post.thread_id)
            .where(Post.flag_count > 0, in_scope)
            .order_by(col(Post.flag_count).desc(), col(Post.id))
            .limit(100)
        ).all()
        flag_rows = session.exec(
            select(Flag).where(
                col(Flag.post_id).in_([p.id for p, _ in flagged] or [0]),
                col(Flag.resolved_at).is_(None),
            )
        ).all()
        flags: dict[int, list[Flag]] = {}
        for flag in flag_rows:
            flags.setdefault(flag.post_id, []).append(flag)
        audit = session.exec(
            select(AuditEntry)
            .where(
                self.scope_filter(actor, AuditEntry.challenge_slug)
                if not actor.site_moderator
                else sa.true()
            )
            .order_by(col(AuditEntry.id).desc())
            .limit(100)
        ).all()
        ids = {p.author_id for p, _ in queue} | {p.author_id for p, _ in flagged}
        ids |= {f.user_id for f in flag_rows} | {a.actor_id for a in audit if a.actor_id}
        ids |= {a.target_id for a in audit if a.target_type == "user"}
        names = self.host.display_names(session, ids)
        return self.render(
            request,
            "forum/moderation.html",
            is_admin=self.host.is_site_moderator(request),
            queue=queue,
            flagged=flagged,
            flags=flags,
            audit=audit,
            names=names,
        )

    async def act(self, request: Request) -> Response:
        form = await self.form(request)
        name = str(form.get("action", ""))
        target = self.int_param(form.get("target_id", ""), "Target")
        params = {
            k: str(form.get(k, "")) for k in ("category", "into", "days", "kind", "challenge")
        }
        reason = str(form.get("reason", ""))
        back = str(form.get("next", "")) or "/forum/mod"
        if not back.startswith("/") or back.startswith("//"):
            back = "/forum/mod"

        def _act() -> Response:
            session = self.session(request)
            actor = self.actor(request)
            actor.require_user()
            if name not in ACTIONS:
                raise ForumError(f"Unknown moderation action '{name}'.")
            entry = run_action(
                session,
                name,
                actor=actor,
                target_id=target,
                reason=reason,
                params=params,
                config=self.config,
                users=self.host,
            )
            session.commit()
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse({"audit_id": entry.id, "action": entry.action})
            return RedirectResponse(back, status_code=303)

        return await run_in_threadpool(_act)

    def require_admin(self, request: Request) -> Actor:
        """Admins (the host's site moderators) only; forum-granted moderators are not enough."""
        actor = self.actor(request)
        actor.require_user()
        if not self.host.is_site_moderator(request):
            raise NotFound("That page does not exist.")
        return actor

    async def moderators(self, request: Request) -> Response:
        """Admins grant and revoke forum moderators, site-wide or per challenge (audited)."""
        form = await self.form(request) if request.method == "POST" else None

        def _page() -> Response:
            session = self.session(request)
            actor = self.require_admin(request)
            assert actor.id is not None
            error = ""
            status = 200
            if form is not None:
                reason = str(form.get("reason", ""))
                try:
                    if form.get("action") == "revoke":
                        revoke_moderator(
                            session,
                            admin_id=actor.id,
                            grant_id=self.int_param(form.get("grant_id", ""), "Grant"),
                            reason=reason,
                        )
                    else:
                        name = str(form.get("username", "")).strip().lstrip("@")
                        user_id = self.host.user_ids_for_names(session, [name]).get(name.lower())
                        if user_id is None:
                            raise NotFound(f"No user named '{name}'.")
                        slug = str(form.get("challenge", "")).strip() or None
                        if slug is not None and self.host.challenge_title(request, slug) is None:
                            raise NotFound(f"No challenge '{slug}'.")
                        grant_moderator(
                            session,
                            admin_id=actor.id,
                            user_id=user_id,
                            challenge_slug=slug,
                            reason=reason,
                        )
                    session.commit()
                    if self.wants_json(request):
                        return JSONResponse({"ok": True})
                    return RedirectResponse("/forum/mod/moderators", status_code=303)
                except ForumError as exc:
                    session.rollback()
                    if self.wants_json(request):
                        raise
                    error, status = exc.message, exc.status_code
            grants = moderator_grants(session)
            audit = session.exec(
                select(AuditEntry)
                .where(col(AuditEntry.action).in_(["grant_moderator", "revoke_moderator"]))
                .order_by(col(AuditEntry.id).desc())
                .limit(50)
            ).all()
            ids = {g.user_id for g in grants} | {a.target_id for a in audit}
            ids |= {a.actor_id for a in audit if a.actor_id}
            return self.render(
                request,
                "forum/moderators.html",
                status_code=status,
                grants=grants,
                audit=audit,
                names=self.host.display_names(session, ids),
                error=error,
                values={k: str(form.get(k, "")) for k in ("username", "challenge", "reason")}
                if form is not None and error
                else {},
            )

        return await run_in_threadpool(_page)

    def user_page(self, request: Request) -> Response:
        """A user's posts (all states), flags, sanctions and the actions about them; moderators only."""
        session = self.session(request)
        actor = self.actor(request)
        self.require_moderator(actor)
        user_id = self.int_param(request.path_params["user_id"], "User")
        name = self.host.display_names(session, [user_id]).get(user_id)
        if name is None:
            raise NotFound(f"No user {user_id}.")
        in_scope = self.scope_filter(actor, Thread.challenge_slug)
        posts = session.exec(
            select(Post, Thread)
            .join(Thread, col(Thread.id) == Post.thread_id)
            .where(Post.author_id == user_id, in_scope)
            .order_by(col(Post.id).desc())
            .limit(200)
        ).all()
        sanctions = session.exec(
            select(Sanction)
            .where(Sanction.user_id == user_id, self.scope_filter(actor, Sanction.challenge_slug))
            .order_by(col(Sanction.id).desc())
        ).all()
        flags_against = session.exec(
            select(Flag)
            .join(Post, col(Post.id) == Flag.post_id)
            .where(Post.author_id == user_id)
            .order_by(col(Flag.id).desc())
            .limit(100)
        ).all()
        audit = session.exec(
            select(AuditEntry)
            .where(
                AuditEntry.target_type == "user",
                AuditEntry.target_id == user_id,
                self.scope_filter(actor, AuditEntry.challenge_slug),
            )
            .order_by(col(AuditEntry.id).desc())
        ).all()
        names = self.host.display_names(session, {a.actor_id for a in audit if a.actor_id})
        return self.render(
            request,
            "forum/user.html",
            target_id=user_id,
            target_name=name,
            posts=posts,
            sanctions=sanctions,
            flags_against=flags_against,
            audit=audit,
            names=names,
            scopes=sorted(actor.moderated),
            site_moderator=actor.site_moderator,
        )

    # ------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        g = self.guarded
        return [
            Route("/", g(self.index), methods=["GET"], name="forum_index"),
            Route("/search", g(self.search), methods=["GET"], name="forum_search"),
            Route("/notifications", g(self.notifications), methods=["GET", "POST"]),
            Route("/mod", g(self.moderation), methods=["GET"], name="forum_moderation"),
            Route("/mod/act", g(self.act), methods=["POST"]),
            Route("/mod/moderators", g(self.moderators), methods=["GET", "POST"]),
            Route("/u/{user_id}", g(self.user_page), methods=["GET"]),
            Route("/c/{slug}", g(self.forum_index), methods=["GET"], name="forum_challenge"),
            Route("/c/{slug}/{category}", g(self.category), methods=["GET"]),
            Route("/c/{slug}/{category}/new", g(self.new_thread), methods=["GET", "POST"]),
            Route("/site/{category}", g(self.category), methods=["GET"]),
            Route("/site/{category}/new", g(self.new_thread), methods=["GET", "POST"]),
            Route("/t/{thread_id}", g(self.thread_on_loop), methods=["GET"], name="forum_thread"),
            Route("/t/{thread_id}/reply", g(self.reply), methods=["GET", "POST"]),
            Route("/t/{thread_id}/accept", g(self.accept), methods=["POST"]),
            Route("/t/{thread_id}/subscribe", g(self.subscribe), methods=["POST"]),
            Route("/t/{thread_id}/feed.atom", g(self.feed), methods=["GET"]),
            Route("/p/{post_id}", g(self.post_link), methods=["GET"]),
            Route("/p/{post_id}/edit", g(self.edit), methods=["GET", "POST"]),
            Route("/p/{post_id}/history", g(self.history), methods=["GET"]),
            Route("/p/{post_id}/vote", g(self.vote), methods=["POST"]),
            Route("/p/{post_id}/flag", g(self.flag), methods=["GET", "POST"]),
            # KaTeX and the script that typesets posts' math (no inline scripts anywhere).
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="forum_static"),
        ]


def forum_routes(host: ForumHost, config: ForumConfig | None = None) -> list[BaseRoute]:
    """The forum's routes, to mount under ``/forum`` (the templates link there)."""
    return ForumViews(host, config or ForumConfig()).routes()


__all__ = ["TEMPLATES_DIR", "ForumViews", "forum_routes"]
