"""The Content-Security-Policy does not break the pages (headless chromium): countdowns tick, the
leaderboard's SVG plots load, KaTeX typesets forum math with its fonts, an upload is polled until
scored, all without a single CSP violation; the leaderboard embed can be framed by another site and
the other pages cannot."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import create_reply, create_thread
from tests.challenge.conftest import PASSWORD, random_submission
from tests.challenge.live_server import free_port
from tests.challenge.test_browser import browser_page, live_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

# Every CSP violation the page reports, whatever blocked (script, style, font, image, fetch).
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile + ":" +
                    e.lineNumber);
});
"""


class Watched:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(WATCH)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def goto(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def violations(self) -> list[str]:
        reported: list[str] = self.page.evaluate("window.__csp || []")
        logged = [m for m in self.console if "Content Security Policy" in m]
        return reported + logged


def _forum_thread(engine: Any) -> int:
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
            session, actor=actor, users=None, config=config, thread=thread,
            body_md="Display:\n\n$$\\int_0^1 \\sqrt{x}\\,dx = \\frac{2}{3}$$",
        )  # fmt: skip
        session.commit()
        assert thread.id is not None
        return int(thread.id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pages_work_under_the_policy_without_violations(
    live_server: str,  # noqa: F811
    browser_page: Any,  # noqa: F811
    make_challenge: Any,
    make_user: Any,
    engine: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    challenge = make_challenge()
    make_user("zoe")
    thread_id = _forum_thread(engine)
    base, slug = live_server, challenge.slug
    w = Watched(browser_page)
    page = browser_page

    # The challenge page: podium.js (countdown) and KaTeX come from the site and run.
    w.goto(f"{base}/c/{slug}")
    page.wait_for_function(
        "document.querySelector('.status .countdown').textContent.match(/\\d+h \\d+m \\d+s/)"
    )
    assert page.evaluate("typeof window.katex") == "object"

    # The upload page (the challenge page of a participant), polled until the file is scored.
    w.goto(f"{base}/login")
    page.fill("input[name=login]", "zoe")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    w.goto(f"{base}/c/{slug}")
    page.check("form[action$='/join'] input[name=accept]")
    page.click("button:has-text('Join the challenge')")
    page.wait_for_selector("input[name=file]")
    good = tmp_path / "good.csv"
    random_submission(settings, slug, seed=3).to_csv(good, index=False)
    page.set_input_files("input[name=file]", str(good))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("tr[data-status=scored]", timeout=20_000)  # fetch() polling works

    # The leaderboard: its SVG plots load as images.
    w.goto(f"{base}/c/{slug}/leaderboard")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('img[src*=\".svg\"]'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("img[src*='.svg']").count() >= 2  # best score, and the team's history

    # A forum thread: KaTeX typesets the math with its inline styles and vendored fonts.
    w.goto(f"{base}/forum/t/{thread_id}")
    page.wait_for_selector(".post-body div.math.block .katex-display")
    page.evaluate("document.fonts.ready")
    fonts = page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/katex/fonts/'))"
    )
    assert fonts, "KaTeX loaded no font"
    time.sleep(0.3)
    assert w.violations() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_the_embed_can_be_framed_by_another_site(
    live_server: str,  # noqa: F811
    browser_page: Any,  # noqa: F811
    make_challenge: Any,
) -> None:
    challenge = make_challenge()
    base, slug = live_server, challenge.slug
    page = browser_page
    # Another site: another origin (another port), with a page framing two of ours.
    framing = (
        f'<iframe id="embed" src="{base}/c/{slug}/leaderboard/embed"></iframe>'
        f'<iframe id="board" src="{base}/c/{slug}/leaderboard"></iframe>'
    ).encode()

    class Blog(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(framing)

        def log_message(self, *args: Any) -> None:
            pass

    blog = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Blog)
    threading.Thread(target=blog.serve_forever, daemon=True).start()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    try:
        page.goto(f"http://127.0.0.1:{blog.server_address[1]}/post.html")
        page.wait_for_load_state("load")
    finally:
        blog.shutdown()
    embed = page.frame_locator("#embed")
    assert "public leaderboard" in embed.locator("caption").inner_text()
    urls = [f.url for f in page.frames]
    assert f"{base}/c/{slug}/leaderboard/embed" in urls
    assert f"{base}/c/{slug}/leaderboard" not in urls  # refused: an error page instead
    deadline = time.monotonic() + 5
    while not any("frame-ancestors" in m for m in console) and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = [m for m in console if "frame-ancestors" in m]
    assert refused, console
    assert all("/leaderboard/embed" not in m for m in refused), console
