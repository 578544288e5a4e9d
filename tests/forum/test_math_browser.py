"""Math in posts is typeset by the vendored KaTeX (forum/static), in headless chromium, with no
request leaving the site."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import create_reply, create_thread
from tests.forum.test_xss_browser import live_server  # noqa: F401 - the fixture


@pytest.mark.browser
def test_tex_in_posts_is_typeset_with_katex(live_server: tuple[str, Any]) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    base, engine = live_server
    with Session(engine, expire_on_commit=False) as session:
        author = User(username="gauss", email="g@example.org", password_hash="x", role="admin")
        session.add(author)
        session.flush()
        assert author.id is not None
        actor = Actor(ForumUser(author.id, "gauss"), site_moderator=True)
        config = ForumConfig()
        thread = create_thread(
            session, actor=actor, users=None, config=config, challenge_slug=None,
            category="general", title="Squares", body_md="Inline $x^2$ and text.",
        )  # fmt: skip
        create_reply(
            session,
            actor=actor,
            users=None,
            config=config,
            thread=thread,
            body_md=(
                "Display:\n\n$$\\int_0^1 \\sqrt{x}\\,dx = \\frac{2}{3}$$\n\n"
                "Bad: $\\href{javascript:alert(1)}{x}$"
            ),
        )
        session.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        outside: list[str] = []
        failed: list[str] = []

        def route(r: Any) -> None:
            if r.request.url.startswith(base):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.on("response", lambda resp: failed.append(resp.url) if resp.status >= 400 else None)
        page.goto(f"{base}/forum/t/{thread.id}")
        page.wait_for_load_state("load")
        page.wait_for_selector(".post-body .katex")
        inline = page.query_selector_all(".post-body span.math.inline .katex")
        display = page.query_selector_all(".post-body div.math.block .katex-display")
        assert len(inline) == 2  # x^2 and the \href one
        assert len(display) == 1
        # KaTeX keeps the TeX in the MathML annotation.
        annotation = page.eval_on_selector(
            ".post-body span.math.inline annotation", "el => el.textContent"
        )
        assert annotation.strip() == "x^2"
        assert page.query_selector(".post-body .katex sup, .post-body .katex .msupsub") is not None
        # trust is off: \href makes no link.
        assert page.query_selector(".post-body .katex a") is None
        # The fonts came from the site (vendored), nothing was fetched elsewhere or missing.
        fonts = page.evaluate(
            "() => performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => n.includes('/fonts/'))"
        )
        assert fonts
        assert all(f.startswith(f"{base}/forum/static/katex/fonts/") for f in fonts)
        assert outside == []
        assert failed == []
        browser.close()


@pytest.mark.browser
def test_held_posts_are_typeset_in_the_moderation_queue(
    live_server: tuple[str, Any],  # noqa: F811
) -> None:
    from playwright.sync_api import sync_playwright

    from forum.models import PENDING, Post
    from forum.rendering import render_markdown
    from tests.forum.conftest import _HASH, PASSWORD

    base, engine = live_server
    with Session(engine, expire_on_commit=False) as session:
        admin = User(username="noether", email="n@example.org", password_hash=_HASH, role="admin")
        session.add(admin)
        session.flush()
        assert admin.id is not None
        actor = Actor(ForumUser(admin.id, "noether"), site_moderator=True)
        thread = create_thread(
            session, actor=actor, users=None, config=ForumConfig(), challenge_slug=None,
            category="general", title="Held", body_md="First",
        )  # fmt: skip
        body = "The AMS is $$x^2$$ with $b_r = 10$, for $5 and $10."
        session.add(
            Post(
                thread_id=thread.id or 0, author_id=admin.id, body_md=body,
                body_html=render_markdown(body).html, status=PENDING, held_reason="new user",
            )
        )  # fmt: skip
        session.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=login]", "noether")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button, form[action='/login'] input[type=submit]")
        page.wait_for_load_state("load")
        page.goto(f"{base}/forum/mod")
        page.wait_for_selector("#queue .post-body .katex")
        assert len(page.query_selector_all("#queue .post-body .math.block .katex-display")) == 1
        assert len(page.query_selector_all("#queue .post-body .math.inline .katex")) == 1
        text = page.inner_text("#queue .post-body")
        assert "for $5 and $10." in text
        browser.close()
