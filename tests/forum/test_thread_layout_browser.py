"""The thread page's layout in headless chromium: a post's action row (score, vote, edit, quote)
starts at the left edge of the post even under display math, and the reply box is a full-width
text area under its label, not a small inline box."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlmodel import Session

from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import create_thread
from tests.forum.conftest import _HASH, PASSWORD
from tests.forum.test_xss_browser import live_server  # noqa: F401 - the fixture


@pytest.mark.browser
def test_post_actions_left_and_reply_box_full_width(live_server: tuple[str, Any]) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    base, engine = live_server
    with Session(engine, expire_on_commit=False) as session:
        author = User(username="euler", email="e@example.org", password_hash=_HASH, role="admin")
        session.add(author)
        session.flush()
        assert author.id is not None
        thread = create_thread(
            session, actor=Actor(ForumUser(author.id, "euler"), site_moderator=True), users=None,
            config=ForumConfig(), challenge_slug=None, category="general", title="Integral",
            body_md="$$\\int_0^1 x^2\\,dx$$",
        )  # fmt: skip
        session.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{base}/login")
        page.fill("input[name=login]", "euler")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_load_state("load")
        page.goto(f"{base}/forum/t/{thread.id}")
        page.wait_for_selector(".post-body .katex-display")
        shot = os.environ.get("PODIUM_SCREENSHOT_DIR")
        if shot:
            page.screenshot(path=f"{shot}/forum-thread.png", full_page=True)
        post = page.locator("article.post").first
        body_box = post.locator(".post-body").bounding_box()
        actions = post.locator("footer.post-actions")
        assert actions.evaluate("el => getComputedStyle(el).textAlign") in ("left", "start")
        score_box = actions.locator(".score").bounding_box()
        assert body_box is not None
        assert score_box is not None
        assert abs(score_box["x"] - body_box["x"]) < 4  # at the left edge, not centred
        # The reply box: under its label's text, as wide as the form.
        form = page.locator("#reply form")
        area = form.locator("textarea[name=body]")
        form_box, area_box = form.bounding_box(), area.bounding_box()
        label_box = form.locator("label").first.bounding_box()
        assert form_box is not None
        assert area_box is not None
        assert label_box is not None
        assert area_box["width"] >= 0.95 * form_box["width"]
        assert area_box["width"] > 600
        assert area_box["y"] > label_box["y"] + 10  # on its own line, below the label's text
        browser.close()
