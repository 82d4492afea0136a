"""`GET /v1/groups/{group_id}` and `query group`: a group kept from Segment's group calls,
through the collector and the worker (read key required), and alias calls linking."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from api_helpers import READ, WRITE
from fastapi.testclient import TestClient

from behavioral_analytics.settings import Settings
from behavioral_analytics.store import Store
from tests.conftest import cli


def iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + ".000Z"


def test_a_group_is_served_with_its_members_traits_and_days(
    client: TestClient, store: Store, process: Callable[[], None], settings: Settings
) -> None:
    stamp = time.time() - 600
    calls = [
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "Signed Up",
         "timestamp": iso(stamp)},
        {"type": "group", "messageId": "g1", "userId": "u1", "groupId": "acme/eu",
         "traits": {"name": "Acme", "plan": "pro"}, "timestamp": iso(stamp + 1)},
        {"type": "group", "messageId": "g2", "userId": "u2", "groupId": "acme/eu",
         "traits": {"name": "Acme", "plan": "enterprise"}, "timestamp": iso(stamp + 2)},
        {"type": "alias", "messageId": "a1", "userId": "u2", "previousId": "anon-7",
         "timestamp": iso(stamp + 3)},
        {"type": "alias", "messageId": "a2", "userId": "u3", "anonymousId": "anon-8",
         "previousId": "u2", "timestamp": iso(stamp + 4)},
    ]  # fmt: skip
    response = client.post("/v1/batch", json={"batch": calls}, headers=WRITE)
    assert response.status_code == 200, response.text
    process()
    process()  # a second pass finds nothing new

    assert client.get("/v1/groups/acme/eu").status_code == 401
    body = client.get("/v1/groups/acme/eu", headers=READ).json()
    assert body["group_id"] == "acme/eu"
    assert body["members"] == ["u1", "u2"]
    assert body["traits"] == {"name": "Acme", "plan": "enterprise"}
    [day] = body["days"]
    assert (day["events"], day["unique_users"]) == (4, 2)  # u1: track, group; u2: group, alias
    missing = client.get("/v1/groups/globex", headers=READ)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    [link] = store.links("anonymous:anon-7")
    assert (link.user_id, link.status) == ("u2", "active")
    [letter] = store.dead_letters(10).items
    assert letter.reason == "alias_of_user_unsupported"

    env = {"BA_DATA_DIR": str(settings.data_dir)}
    shown = cli("query", "group", "acme/eu", "--json", env=env)
    assert json.loads(shown.stdout)["members"] == ["u1", "u2"]
    table = cli("query", "group", "acme/eu", env={**env, "COLUMNS": "200"})
    assert "enterprise" in table.stdout.decode()
    unknown = cli("query", "group", "globex", env=env, check=False)
    assert unknown.returncode == 1 and "no group" in unknown.stderr.decode()
