"""The behavioral commands end to end: generate → worker → sessions, funnel, links, forget."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from behavioral_analytics.funnels import PURCHASE_FUNNEL
from tests.conftest import cli, processed


@pytest.mark.slow
def test_sessions_funnel_links_and_forget_from_the_command_line(tmp_path: Path) -> None:
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "BA_FUNNELS": PURCHASE_FUNNEL}
    cli("init", env=env)
    cli("generate", "--events", "3000", "--seed", "5", "--via", "broker", env=env)
    cli("worker", "--until-idle", env=env)

    sessions = json.loads(cli("query", "sessions", "--json", env=env).stdout)
    assert sum(p["sessions"] for p in sessions["points"]) > 100
    assert all(p["final"] is False for p in sessions["points"])  # within the lateness bound
    funnel = json.loads(cli("query", "funnel", "purchase", "--json", env=env).stdout)
    assert [s["event_type"] for s in funnel["funnel"]["steps"]][-1] == "purchase"
    # Summed over the days: the generated traffic may straddle midnight.
    users = [sum(step) for step in zip(*(d["users"] for d in funnel["days"]), strict=True)]
    assert users[0] >= users[1] >= users[2] >= users[3] > 0
    unknown = cli("query", "funnel", "nope", env=env, check=False)
    assert unknown.returncode == 2 and "the store counts: purchase" in unknown.stderr.decode()
    human = cli("query", "sessions", env={**env, "COLUMNS": "200"}).stdout.decode()
    assert "provisional" in human

    cli(
        "publish",
        env=env,
        input=b'{"user_id": "user_1", "anonymous_id": "a-1", "event_type": "identify"}\n',
    )
    cli("worker", "--until-idle", env=env)
    links = json.loads(cli("query", "links", "user_1", "--json", env=env).stdout)
    assert [(link["anonymous_id"], link["status"]) for link in links] == [("a-1", "active")]
    shown = cli("query", "links", "user_1", env={**env, "COLUMNS": "200"}).stdout.decode()
    linked_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(links[0]["linked_at"])) + "Z"
    assert linked_at in shown  # a time, not epoch seconds

    refused = cli("forget", "user_1", env=env, input=b"n\n", check=False)
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr.decode()
    # The question goes to stderr, so `--json` keeps stdout for its document; with no answer
    # (input closed) it says what goes ahead without asking.
    unanswered = cli("forget", "user_1", "--json", env=env, input=b"", check=False)
    assert unanswered.returncode == 1 and unanswered.stdout == b"", unanswered.stdout
    assert "Forget 'user_1' everywhere? This cannot be undone [y/N]: " in unanswered.stderr.decode()
    assert unanswered.stderr.decode().splitlines()[-1] == (
        "error: nothing was changed: no answer was given (--yes goes ahead without asking)"
    ), unanswered.stderr
    report = json.loads(cli("forget", "user_1", "--yes", "--json", env=env).stdout)
    assert report["raw_events_deleted"] > 0 and report["links_deleted"] == 1
    assert cli("query", "profile", "user_1", env=env, check=False).returncode == 1
    assert json.loads(cli("verify", "--json", env=env).stdout)["ok"] is True


@pytest.mark.slow
def test_forget_names_a_linked_anonymous_id_that_has_events_as_a_user_id_too(
    tmp_path: Path,
) -> None:
    """An alias links an old login as an anonymous id; what it sent as a user id counts for
    that user, whom forgetting the new one does not reach: the command says so."""
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"}
    processed(
        b'{"user_id": "old-login", "event_type": "purchase"}\n'
        b'{"user_id": "new-login", "event_type": "alias", "call": "alias", '
        b'"properties": {"previousId": "old-login"}}\n'
        b'{"user_id": "new-login", "anonymous_id": "a-2", "event_type": "identify"}\n',
        env,
    )

    report = json.loads(cli("forget", "new-login", "--yes", "--json", env=env).stdout)
    assert report["user_ids_left"] == ["old-login"]
    cli("forget", "old-login", "--yes", env=env)
    assert cli("query", "profile", "old-login", env=env, check=False).returncode == 1

    cli("publish", env=env, input=b'{"user_id": "old-2", "event_type": "purchase"}\n')
    cli(
        "publish",
        env=env,
        input=b'{"user_id": "new-2", "anonymous_id": "old-2", "event_type": "identify"}\n',
    )
    cli("worker", "--until-idle", env=env)
    human = cli("forget", "new-2", "--yes", env=env).stdout.decode()
    assert "note: old-2 is linked to new-2 as an anonymous id" in human
    assert "`forget old-2` forgets those" in human


@pytest.mark.slow
def test_forget_names_the_same_id_in_its_other_unicode_form(tmp_path: Path) -> None:
    """`café` typed (NFC) while a client sent `cafe` + U+0301 (NFD): ids are compared exactly,
    so the forget reaches one; the command names the other, in both forms of output."""
    env = {"BA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"}
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    processed(
        json.dumps({"user_id": decomposed, "event_type": "purchase"}).encode() + b"\n"
        + json.dumps({"user_id": composed, "event_type": "page_view"}).encode() + b"\n",
        env,
    )  # fmt: skip

    report = json.loads(cli("forget", composed, "--yes", "--json", env=env).stdout)
    assert report["raw_events_deleted"] == 1
    assert report["other_spellings"] == [decomposed]
    again = cli("forget", composed, "--yes", env=env).stdout.decode()
    assert "nothing found for café" in again
    assert "note: 'cafe\\u0301' has events too: the same id in another Unicode form" in again
    assert f"`forget {decomposed}` forgets those" in again
    report = json.loads(cli("forget", decomposed, "--yes", "--json", env=env).stdout)
    assert report["raw_events_deleted"] == 1 and report["other_spellings"] == []
