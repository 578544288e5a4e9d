"""The first hour in chromium: choosing the phase, the notice that follows the score, small screens.

Screenshots go to $PODIUM_SCREENSHOT_DIR when it is set (1280 px and 390 px wide).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from challenge.db import session_scope
from challenge.models import Phase, utcnow
from tests.challenge.conftest import PASSWORD, random_submission
from tests.challenge.test_browser import CHROMIUM, CHROMIUM_ARGS, live_server  # noqa: F401
from tests.challenge.test_teams import joined

pytestmark = pytest.mark.browser


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("PODIUM_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=f"{folder}/{name}.png", full_page=True)


def _login(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=login]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state("load")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_phase_choice_live_notice_and_small_screens(
    live_server: str,  # noqa: F811
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    challenge = make_challenge(per_day=10, total=50)
    slug = challenge.slug
    now = utcnow()
    with session_scope(engine) as s:
        s.add(
            Phase(
                challenge_id=challenge.id,
                name="hackathon",
                position=1,
                opens_at=now - dt.timedelta(hours=2),
                closes_at=now + dt.timedelta(hours=6),
            )
        )
    users = [make_user(n) for n in ("ann", "a-participant-with-a-rather-long-name")]
    joined(engine, challenge, *users)
    pred = tmp_path / "pred.csv"
    random_submission(settings, slug, seed=5).to_csv(pred, index=False)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _login(page, live_server, "ann")
        page.goto(f"{live_server}/c/{slug}")
        choice = page.locator("[data-testid=phase-select]")
        assert choice.input_value() == "hackathon"  # the default, named and changeable
        choice.select_option("competition")
        page.set_input_files("input[name=file]", str(pred))
        page.fill("input[name=message]", "for the long run")
        page.click("button:has-text('Upload')")
        notice = page.locator(".flash[data-status-url]")
        assert "received for phase competition" in notice.inner_text()
        # The notice rewrites itself once the worker has scored it: no reload, no stale text.
        page.wait_for_selector(".flash[data-status=scored]", timeout=15_000)
        text = notice.inner_text()
        assert "is scored: public score" in text
        assert "being scored" not in text
        assert page.locator(".flash .flash-refresh").count() == 0
        row = page.locator("tr[data-status=scored]")
        assert row.locator("td.phase").inner_text() == "competition"
        _shot(page, "first-hour-overview-1280")

        page.goto(f"{live_server}/c/{slug}/leaderboard?phase=competition")
        assert "phase competition" in page.title()
        current = page.locator(".phase-tabs a.current")
        assert current.inner_text() == "competition"
        assert current.evaluate("el => getComputedStyle(el).fontWeight") == "700"
        assert "ann" in page.inner_text("table.leaderboard")
        _shot(page, "first-hour-leaderboard-1280")

        # 390 px: the page itself does not overflow; the board scrolls inside its box.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{live_server}/c/{slug}/leaderboard?phase=competition")
        _shot(page, "first-hour-leaderboard-390")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 392 && !e.closest('.table-scroll'))"
            ".map(e => e.tagName + '.' + e.className).slice(0, 8)"
        )
        assert width <= 390, (width, wide)
        box = page.locator(".table-scroll:has(table.leaderboard)")
        assert box.evaluate("el => getComputedStyle(el).overflowX") == "auto"
        assert box.evaluate("el => el.scrollWidth > el.clientWidth")  # all columns, reachable
        _shot(page, "first-hour-leaderboard-390")
        page.goto(f"{live_server}/c/{slug}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        _shot(page, "first-hour-overview-390")
        page.goto(f"{live_server}/c/{slug}/leaderboard?board=private")
        assert "Not revealed yet" in page.inner_text("[data-testid=private-pending]")
        _shot(page, "first-hour-private-pending-390")

        # Without JavaScript the notice keeps its link, which shows the row with the result.
        plain = browser.new_context(
            java_script_enabled=False, viewport={"width": 1280, "height": 900}
        )
        page = plain.new_page()
        _login(page, live_server, "ann")
        page.goto(f"{live_server}/c/{slug}")
        page.set_input_files("input[name=file]", str(pred))
        page.click("button:has-text('Upload')")
        assert "being scored" in page.inner_text(".flash[data-status-url]")
        link = page.locator(".flash .flash-refresh")
        for _ in range(60):
            link.click()
            page.wait_for_load_state("load")
            if page.locator("tr[data-status=scored]").count() == 2:
                break
            page.go_back()
        assert page.locator("tr[data-status=scored] td.phase").all_inner_texts() == [
            "hackathon",
            "competition",
        ]
        browser.close()
