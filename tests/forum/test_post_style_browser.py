"""Code blocks and quotes in posts are styled, in headless chromium (podium.css)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import create_thread
from tests.forum.test_xss_browser import live_server  # noqa: F401 - the fixture


@pytest.mark.browser
def test_code_blocks_and_quotes_are_styled(live_server: tuple[str, Any]) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    base, engine = live_server
    with Session(engine, expire_on_commit=False) as session:
        author = User(username="knuth", email="k@example.org", password_hash="x", role="admin")
        session.add(author)
        session.flush()
        assert author.id is not None
        thread = create_thread(
            session, actor=Actor(ForumUser(author.id, "knuth"), site_moderator=True), users=None,
            config=ForumConfig(), challenge_slug=None, category="general", title="Styles",
            body_md="> quoted\n\n```python\nx = 1\n```\n\nand `inline`",
        )  # fmt: skip
        session.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"{base}/forum/t/{thread.id}")
        page.wait_for_load_state("load")
        style = "(el, p) => getComputedStyle(el).getPropertyValue(p)"
        quote = page.query_selector(".post-body blockquote")
        pre = page.query_selector(".post-body pre")
        code = page.query_selector(".post-body p code")
        assert quote is not None and pre is not None and code is not None  # noqa: PT018
        assert quote.evaluate(style, "border-left-style") == "solid"
        assert pre.evaluate(style, "background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
        assert pre.evaluate(style, "padding-left") != "0px"
        assert "monospace" in code.evaluate(style, "font-family")
        assert code.evaluate(style, "background-color") != "rgba(0, 0, 0, 0)"
        browser.close()
