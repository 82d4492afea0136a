"""With relinking allowed, a second person's sign-in never takes an event a first person's own
identify already claimed (issue #16, case 7; docs/behavior.md, "Identity"): the first active
link covers the window before it and everything after; a later link covers from its own time.
Whatever order the events arrive in."""

from __future__ import annotations

import pytest

from tests.contract.builders import HOUR, MakeStore, assert_recounts, ev

ANON = "dev-A"


def _visit() -> dict[str, object]:
    return {
        "a1": ev(1, 0, anon=ANON),
        "a2": ev(2, 60, anon=ANON),
        "bob_identify": ev(3, 120, user="bob", anon=ANON, kind="identify"),
        "bob_purchase": ev(4, 150, user="bob", kind="purchase"),
        "a3": ev(5, 180, anon=ANON),
        "carol_identify": ev(6, 240, user="carol", anon=ANON, kind="identify"),
        "a4": ev(7, 300, anon=ANON),
    }


def _keys(store: object, who: str) -> set[str]:
    return {item.event.key for item in store.timeline(who, limit=100).items}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "order",
    [
        ["a1", "a2", "bob_identify", "bob_purchase", "a3", "carol_identify", "a4"],
        ["carol_identify", "a4", "a3", "a1", "a2", "bob_purchase", "bob_identify"],
        ["a1", "a2", "a3", "a4", "carol_identify", "bob_identify", "bob_purchase"],
    ],
)
def test_a_second_sign_in_does_not_take_the_first_persons_visit(
    make_store: MakeStore, order: list[str]
) -> None:
    store = make_store(identity_window_s=HOUR, allow_relink=True)
    events = _visit()
    for name in order:
        store.commit([events[name]])  # type: ignore[list-item]
    key = {name: e.key for name, e in events.items()}  # type: ignore[attr-defined]
    assert _keys(store, "bob") == {
        key[n] for n in ("a1", "a2", "bob_identify", "bob_purchase", "a3")
    }
    assert _keys(store, "carol") == {key["carol_identify"], key["a4"]}
    assert store.profile("bob").total_events == 5  # type: ignore[union-attr]
    assert store.profile("carol").total_events == 2  # type: ignore[union-attr]
    assert_recounts(store)


def test_without_relinking_the_second_sign_in_is_refused_and_takes_nothing(
    make_store: MakeStore,
) -> None:
    store = make_store(identity_window_s=HOUR)
    events = _visit()
    store.commit(list(events.values()))  # type: ignore[arg-type]
    assert store.profile("bob").total_events == 6  # type: ignore[union-attr]
    assert store.profile("carol").total_events == 1  # type: ignore[union-attr]
    assert_recounts(store)


@pytest.mark.parametrize("allow_relink", [True, False])
def test_a_changed_relink_rule_re_resolves_the_links_on_rebuild(
    make_store: MakeStore, allow_relink: bool
) -> None:
    """`config apply` of BA_IDENTITY_ALLOW_RELINK recorded the rule but kept every link's
    status, and verify said "no drift": carol's sign-in stayed refused (or active) and who the
    anonymous events counted for stayed as before (helper trial, store A against store B)."""
    from behavioral_analytics.verification import verify
    from tests.contract.builders import NOW

    before = make_store(identity_window_s=HOUR, allow_relink=not allow_relink)
    events = _visit()
    before.commit(list(events.values()))  # type: ignore[arg-type]
    after = make_store(identity_window_s=HOUR, allow_relink=allow_relink)
    after.record_config(replace=True)
    report = verify(after, after.periods, now=NOW, retention_s=None)  # type: ignore[attr-defined]
    carol = f"{ANON}:{events['carol_identify'].key}"  # type: ignore[attr-defined]
    want = "active" if allow_relink else "refused"
    assert [(d.what, d.key, d.expected) for d in report.drift if d.what == "link"] == [
        ("link", carol, want)
    ]
    after.rebuild(after.iter_raw_events())
    assert {(k.user_id, k.status) for k in after.links(f"anonymous:{ANON}")} == {
        ("bob", "active"),
        ("carol", want),
    }
    assert after.profile("carol").total_events == (2 if allow_relink else 1)  # type: ignore[union-attr]
    assert_recounts(after)
    # A new anonymous event counts for whom the rule now says.
    after.commit([ev(8, 400, anon=ANON)])  # type: ignore[list-item]
    assert after.profile("carol").total_events == (3 if allow_relink else 1)  # type: ignore[union-attr]
    assert_recounts(after)
