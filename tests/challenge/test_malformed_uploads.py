"""Malformed files uploaded through the site end "invalid" with a message naming the problem,
and give their quota slot back (an "error" would charge it and e-mail the organizers). The
corpus is tests/scoring/fuzz_corpus.py; the whole of it runs through the grading entry point in
tests/scoring/test_fuzz.py, a handful here through the app, the queue and the sandbox."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from challenge.models import Submission
from tests.challenge.conftest import login, random_submission
from tests.challenge.test_flow import _join, _upload
from tests.scoring.fuzz_corpus import malformed, parquet_bomb

PICKED = {
    "latin1-header-Prédiction": "UTF-8",
    "utf16-bom": "UTF-16",
    "header-only": "no rows",
    "unbalanced-quote-mid": "quote",
    "header-repeats-800k": "64 KiB",
    "rank-1e308": "far out of range",
    "empty-zip": "holds nothing",
    "parquet-rank-bool": "type bool",
}


def test_malformed_uploads_are_invalid_and_keep_the_quota(
    client: Any, make_challenge: Any, make_user: Any, settings: Any, engine: Any, stub_worker: Any
) -> None:
    challenge = make_challenge(per_day=2, total=50, file_mb=1)
    make_user("mallory")
    login(client, "mallory")
    _join(client, challenge.slug)
    valid = random_submission(settings, challenge.slug).sort_values("EventId")
    cases = {c.name: c for c in malformed(valid.reset_index(drop=True), 0)}
    uploads = {name: cases[name].data for name in PICKED}
    # 2M rows in ~100 KB: decoded, far over the challenge's file_mb of 1 MiB.
    uploads["parquet-bomb"] = parquet_bomb(2_000_000)
    expected = {**PICKED, "parquet-bomb": "over the 1 MiB limit"}
    for name, body in uploads.items():
        r = _upload(client, challenge.slug, body, name="pred.parquet" if "parquet" in name
                    else "pred.csv")  # fmt: skip
        assert r.status_code == 303, (name, r.text[:300])
        stub_worker.drain()
    with Session(engine) as session:
        rows = session.exec(select(Submission).order_by(col(Submission.id))).all()
    outcome = dict(zip(uploads, rows, strict=True))
    for name, sub in outcome.items():
        assert sub.status == "invalid", (name, sub.status, sub.error_message, sub.error_detail)
        assert expected[name].lower() in (sub.error_message or "").lower(), (
            name,
            sub.error_message,
        )
    # None cost quota: both of today's slots are still there.
    assert "2 submissions left today" in client.get(f"/c/{challenge.slug}").text
