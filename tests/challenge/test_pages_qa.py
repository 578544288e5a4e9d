"""Challenge pages as a visitor reads them: announcements in Markdown with math, countdowns that
say what they count to (found by the end-to-end QA walk of the demo)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from challenge.models import Announcement
from tests.challenge.conftest import csrf_of, login
from tests.challenge.test_browser import browser_page, live_server  # noqa: F401 - fixtures

BODY = "We **rescored** every submission; the metric is $\\sqrt{2}$ times smaller."


def _announce(client: Any, challenge: Any) -> None:
    token = csrf_of(client, f"/organize/{challenge.slug}/lifecycle")
    r = client.post(
        f"/organize/{challenge.slug}/announce",
        data={"csrf_token": token, "title": "Rescored", "body": BODY},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_announcement_body_is_rendered_markdown_linking_its_thread(
    client: Any, make_challenge: Any, make_user: Any, engine: Any
) -> None:
    org = make_user("org", role="organizer")
    challenge = make_challenge(owner=org)
    login(client, "org")
    _announce(client, challenge)
    with Session(engine) as s:
        thread_id = s.exec(select(Announcement)).one().forum_thread_id
    page = client.get(f"/c/{challenge.slug}/announcements").text
    assert "<strong>rescored</strong>" in page
    assert "**rescored**" not in page
    assert '<span class="math inline">' in page
    assert f'href="/forum/t/{thread_id}"' in page
    assert "/forum/static/katex/katex.min.js" in page


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_countdowns_keep_their_label_and_math_is_typeset(
    live_server: str,  # noqa: F811
    browser_page: Any,  # noqa: F811
    client: Any,
    make_challenge: Any,
    make_user: Any,
) -> None:
    org = make_user("org", role="organizer")
    running = make_challenge(owner=org)
    make_challenge(slug="soon", opens_days=3, closes_days=20)
    login(client, "org")
    _announce(client, running)
    page = browser_page
    errors: list[str] = []  # the browser's own /favicon.ico request shows only here
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server}/")
    page.wait_for_function("document.querySelector('.countdown').textContent.match(/\\d+h \\d+m/)")
    cards = page.locator(".card").all_inner_texts()
    assert any("next deadline in " in c and "d " in c for c in cards), cards
    assert any("opens in 2d " in c for c in cards), cards
    page.goto(f"{live_server}/c/{running.slug}")
    assert "next change in " in page.locator(".status").inner_text()
    page.goto(f"{live_server}/c/{running.slug}/announcements")
    page.wait_for_selector(".md .katex")
    assert page.locator(".md .katex").count() == 1
    assert "rescored" in page.locator(".md strong").inner_text()
    page.wait_for_timeout(500)
    assert errors == []  # no "404 (Not Found)" for /favicon.ico on every page, nor other errors


def test_the_rules_a_visitor_accepts_are_on_the_page(
    client: Any, make_challenge: Any, make_user: Any
) -> None:
    challenge = make_challenge(per_day=3, total=40, team_size=2)
    make_user("val")
    login(client, "val")
    page = client.get(f"/c/{challenge.slug}").text
    assert "I accept the challenge rules" in page
    rules = page.split('<section id="rules">', 1)[1].split("</section>", 1)[0]
    assert "up to 3 a day" in rules
    assert "40 in all" in rules
    assert "Teams of up to 2" in rules
    assert "up to 2 submissions you pick as final" in rules
    assert "MB" in rules
