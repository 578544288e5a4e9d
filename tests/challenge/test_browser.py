"""A participant's whole visit in headless Debian chromium, against a live server, real Redis queue."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import uvicorn

from challenge.broker import make_broker, use_broker
from tests.challenge.conftest import random_submission

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app: Any, redis_url: str) -> Iterator[str]:
    """uvicorn in a thread plus a dramatiq worker consuming from the real Redis."""
    broker = make_broker(redis_url)
    old = use_broker(broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop()
        use_broker(old)
        broker.close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True)
        yield context.new_page()
        browser.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_participant_visit(live_server, browser_page, make_challenge, settings, tmp_path):  # type: ignore[no-untyped-def]
    challenge = make_challenge(per_day=3)
    page = browser_page
    page.goto(f"{live_server}/")
    page.click(f"text={challenge.title}")
    page.click("main >> text=register")
    page.fill("input[name=username]", "zoe")
    page.fill("input[name=email]", "zoe@example.org")
    page.fill("input[name=password]", "a long password")
    page.click("button:has-text('Create account')")
    assert "Check your e-mail" in page.inner_text("main")
    # The link of the confirmation mail finishes the registration and leads back.
    import re

    from sqlmodel import Session, create_engine, select

    from challenge.models import MailOutbox

    engine = create_engine(settings.database_url)
    with Session(engine) as session:
        body = session.exec(select(MailOutbox.body)).one()
    engine.dispose()
    link = re.search(r"\{base_url\}(/register/confirm/\S+)", body).group(1)  # type: ignore[union-attr]
    page.goto(f"{live_server}{link}")
    page.click("button:has-text('Confirm my e-mail address')")
    assert page.url.endswith(f"/c/{challenge.slug}")
    # Log out and in again, as a returning participant would.
    page.click("button:has-text('Log out')")
    page.click("header >> text=Log in")
    page.fill("input[name=login]", "zoe")
    page.fill("input[name=password]", "a long password")
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server}/c/{challenge.slug}")
    page.check("form[action$='/join'] input[name=accept]")
    page.click("button:has-text('Join the challenge')")
    page.wait_for_selector("#data")

    for stem in ("train", "test"):
        with page.expect_download() as info:
            page.click(f"[data-testid=download-{stem}-csv]")
        saved = tmp_path / f"{stem}.csv"
        info.value.save_as(saved)
        header = saved.read_text().splitlines()[0]
        assert ("Label" in header) == (stem == "train")

    bad = tmp_path / "bad.csv"
    random_submission(settings, challenge.slug).drop(columns=["Class"]).to_csv(bad, index=False)
    page.set_input_files("input[name=file]", str(bad))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("tr[data-status=invalid]", timeout=10_000)
    assert "Class" in page.inner_text("tr[data-status=invalid] .error")
    page.reload()
    assert "3 submissions left today" in page.inner_text("[data-testid=quota]")

    good = tmp_path / "good.csv"
    random_submission(settings, challenge.slug, seed=3).to_csv(good, index=False)
    page.set_input_files("input[name=file]", str(good))
    started = time.monotonic()
    page.click("button:has-text('Upload')")
    page.wait_for_selector("tr[data-status=scored]", timeout=10_000)
    elapsed = time.monotonic() - started
    score = page.inner_text("tr[data-status=scored] td.score")
    assert float(score) >= 0
    assert elapsed < 10
    page.click("text=Leaderboard")
    assert "zoe" in page.inner_text("table.leaderboard")
    assert score in page.inner_text("table.leaderboard")
