"""Workers publish their sandbox walls to Redis; the admin page shows a missing wall loudly."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from challenge.health import publish_worker_status, worker_statuses
from tests.challenge.conftest import login


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_sees_unisolated_worker(client: Any, app: Any, make_user: Any, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    publish_worker_status(r, {"network": True, "filesystem": "chroot"})
    publish_worker_status(r, {"network": False, "network_error": "unshare refused"})
    assert [w["network_isolated"] for w in worker_statuses(r)].count(False) == 1
    app.state.ratelimiter.client = r
    make_user("root", role="admin")
    login(client, "root")
    page = client.get("/organize").text
    assert "NOT isolated: grading code can reach the network (unshare refused)" in page
    make_user("olga", role="organizer")
    client.cookies.clear()
    login(client, "olga")
    assert "Scoring workers" not in client.get("/organize").text
