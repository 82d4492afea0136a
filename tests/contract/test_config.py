"""The configuration recorded with the data (`stored_config`): the first commit records the
store's own, a store built with another refuses to commit, an added funnel is recorded with its
figures (or refused, recording nothing), and `replace` records a changed one."""

from __future__ import annotations

import pytest

from behavioral_analytics.funnels import parse_funnels
from behavioral_analytics.store import ConfigChanged, NotSupported, Store
from behavioral_analytics.stored_config import StoredConfig
from tests.contract.builders import PURCHASE, MakeStore, assert_recounts, ev

SIGNUP = parse_funnels('[{"name": "signup", "steps": ["page_view", "signup"]}]')


def _visits() -> list:
    return [
        ev(1, 0, user="ann"),
        ev(2, 60, user="ann", kind="signup"),
        ev(3, 120, user="bob"),
        ev(4, 180, user="bob", kind="search"),
    ]


def test_the_first_commit_records_the_stores_configuration(store: Store) -> None:
    assert store.recorded_config() is None
    store.commit(_visits())
    recorded = store.recorded_config()
    assert recorded == StoredConfig.of(store.rules, "UTC")  # type: ignore[arg-type]
    assert recorded is not None and [f.name for f in recorded.funnels] == ["purchase"]


def test_a_store_with_other_rules_refuses_to_commit(make_store: MakeStore) -> None:
    first = make_store()
    first.commit(_visits()[:2])
    other = make_store(funnels=SIGNUP)
    with pytest.raises(ConfigChanged, match="recorded with the data changed") as refused:
        other.commit(_visits()[2:])
    # What differs, seen from the refused store: its own funnel is not recorded, the other is.
    assert "funnel 'signup' removed, funnel 'purchase' added" in str(refused.value)
    assert len(list(first.iter_raw_events())) == 2
    assert first.recorded_config() == StoredConfig.of(first.rules, "UTC")  # type: ignore[arg-type]


def test_replace_records_a_changed_configuration(make_store: MakeStore) -> None:
    make_store().commit(_visits()[:2])
    other = make_store(funnels=SIGNUP)
    other.record_config(replace=True)
    assert other.recorded_config() == StoredConfig.of(other.rules, "UTC")  # type: ignore[arg-type]
    assert other.commit(_visits()[2:]).created == 2


def test_a_funnel_added_to_an_empty_store_is_recorded(make_store: MakeStore) -> None:
    make_store().record_config()
    wider = make_store(funnels=PURCHASE + SIGNUP)
    wider.record_config(["signup"])
    recorded = wider.recorded_config()
    assert recorded is not None and [f.name for f in recorded.funnels] == ["purchase", "signup"]


def test_a_funnel_added_to_a_store_with_events_is_counted_from_them_or_refused(
    make_store: MakeStore,
) -> None:
    make_store().commit(_visits())
    wider = make_store(funnels=PURCHASE + SIGNUP)
    try:
        wider.record_config(["signup"])
    except NotSupported:
        recorded = wider.recorded_config()
        assert recorded is not None and recorded.funnel("signup") is None
        return
    assert wider.funnel("signup")[0].users_by_step == [2, 1]
    assert_recounts(wider)
    assert wider.commit([ev(5, 240, user="cid"), ev(6, 250, user="cid", kind="signup")]).created
    assert wider.funnel("signup")[0].users_by_step == [3, 2]
