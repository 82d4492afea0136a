"""Raw events keep what the collector said of them: `call` (alias, group) and `id_kind`
(a client's message id), so that `verify` can tell a group call from a track call named
"group" and recount group memberships from the retained group calls (docs/behavior.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from behavioral_analytics.store import Store
from behavioral_analytics.verification import verify
from tests.contract.builders import DAY_START, NOW, ev
from tests.contract.test_named_calls import alias, group

RETENTION_S = 30 * 86400.0


def test_raw_events_keep_their_call_and_id_kind(store: Store) -> None:
    look_alike = ev(4, 30, user="carol", kind="group", groupId="acme")
    store.commit(
        [
            group(1, 0, "alice", "acme", plan="b2b"),
            alias(2, 10, "bob", "v1"),
            ev(3, 20, user="carol"),
            look_alike,  # a track call named "group": no call, no membership
        ]
    )
    kept = {e.event_id: (e.call, e.id_kind) for e in store.iter_raw_events()}
    assert kept == {
        "c1": ("group", "message"),
        "c2": ("alias", "message"),
        "e3": (None, None),
        "e4": (None, None),
    }
    assert store.snapshot().group_members == {("acme", "alice"): DAY_START}
    periods = store.periods  # type: ignore[attr-defined]  # both stores have it; not the port's
    report = verify(store, periods, now=NOW, retention_s=RETENTION_S)
    assert report.ok, report.drift


def _tamper(store: Store, backend: str, tmp_path: Path) -> None:
    """alice's membership of acme moved an hour later; a membership nobody's call made."""
    if backend == "sqlite":
        db = sqlite3.connect(tmp_path / "store.db")
        with db:
            db.execute("UPDATE group_members SET joined_at = joined_at + 3600")
            db.execute("INSERT INTO group_members VALUES ('acme', 'mallory', ?, 'k')", (NOW,))
        db.close()
        return
    from behavioral_analytics.stores.firestore.groups import GROUP_MEMBERS, member_doc

    members = store.gateway.collection(GROUP_MEMBERS)  # type: ignore[attr-defined]  # Firestore's
    alice = members.document(member_doc("acme", "alice"))
    alice.update({"joined_at": DAY_START + 3600})
    members.document(member_doc("acme", "mallory")).set(
        {"group_id": "acme", "member": "mallory", "joined_at": NOW}
    )


def test_verify_reports_a_tampered_group_membership_and_repair_restores_it(
    store: Store, backend: str, tmp_path: Path
) -> None:
    store.commit([group(1, 0, "alice", "acme"), group(2, 60, "alice", "acme"), ev(3, 0, user="bo")])
    periods = store.periods  # type: ignore[attr-defined]  # both stores have it; not the port's
    assert verify(store, periods, now=NOW, retention_s=RETENTION_S).ok
    _tamper(store, backend, tmp_path)

    report = verify(store, periods, now=NOW, retention_s=RETENTION_S, repair=True)

    drift = sorted((d.what, d.key, d.stored, d.expected) for d in report.drift)
    assert drift == [
        ("group_member", "acme:alice", DAY_START + 3600, DAY_START),
        ("group_member", "acme:mallory", NOW, None),
    ]
    assert report.repaired
    assert store.snapshot().group_members == {("acme", "alice"): DAY_START}
    assert verify(store, periods, now=NOW, retention_s=RETENTION_S).ok
