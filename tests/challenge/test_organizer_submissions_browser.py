"""The organizer's submissions page in headless chromium, at desktop and phone widths: the filter
form works without JavaScript and the table scrolls inside its box instead of widening the page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.challenge.conftest import PASSWORD
from tests.challenge.test_browser import browser_page, live_server  # noqa: F401 - fixtures
from tests.challenge.test_teams import joined, score, upload

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submissions_page_at_1280_and_390(
    live_server: str,  # noqa: F811
    browser_page: Any,  # noqa: F811
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    tmp_path: Path,
) -> None:
    orga = make_user("orga", role="organizer")
    ann, ben = make_user("ann"), make_user("ben")
    challenge = make_challenge(owner=orga, per_day=10, total=50)
    joined(engine, challenge, ann, ben)
    for i, who in enumerate([ann, ben, ann, ben]):
        score(engine, upload(engine, challenge, who), 0.1 * (i + 1))
    page = browser_page
    page.goto(f"{live_server}/login")
    page.fill("input[name=login]", "orga")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.goto(f"{live_server}/organize")
    page.click(f"[data-testid=subs-{challenge.slug}]")
    assert page.url.endswith(f"/organize/{challenge.slug}/submissions")
    assert page.locator("[data-testid=all-submissions] tbody tr").count() == 4
    page.select_option("select[name=team]", label="ben")
    page.click("[data-testid=filters] button")
    assert "team=" in page.url
    assert page.locator("[data-testid=all-submissions] tbody tr").count() == 2
    shots = Path(os.environ.get("PODIUM_SCREENSHOTS", tmp_path))
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{live_server}/organize/{challenge.slug}/submissions")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(shots / f"org-subs-{width}.png"), full_page=True)
