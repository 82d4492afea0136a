"""The breakdown and derivation settings (BA_BREAKDOWN_DIMENSIONS, BA_BREAKDOWN_PROPERTIES,
BA_BREAKDOWN_VALUES, BA_DERIVE) and what wiring builds from them: a one-line refusal for each
wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.dimensions import DERIVED, DIMENSIONS
from behavioral_analytics.enrich import Deriver
from behavioral_analytics.events import Event, validate_event
from behavioral_analytics.settings import MAX_BREAKDOWN_PROPERTIES, ConfigError, load_settings
from behavioral_analytics.stored_config import plan_apply
from behavioral_analytics.wiring import (
    behavior_rules,
    build_deriver,
    build_store,
    build_worker,
    open_configured,
    worker_options,
)
from tests.contract.builders import ev


def test_the_defaults() -> None:
    settings = load_settings()
    assert settings.breakdown_dimensions == DIMENSIONS
    assert settings.breakdown_values == 100
    assert settings.derive is True


def test_property_dimensions_follow_the_fixed_ones_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", " plan, currency,,plan ")
    settings = load_settings()
    assert settings.breakdown_dimensions == (*DIMENSIONS, "property:plan", "property:currency")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("device, page,,page", ("page", "device")),  # in the order of DIMENSIONS
        ("none", ()),
        (" none ", ()),
        (",".join(DIMENSIONS), DIMENSIONS),
    ],
)
def test_the_fixed_dimensions_kept(
    monkeypatch: pytest.MonkeyPatch, value: str, kept: tuple[str, ...]
) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_DIMENSIONS", value)
    assert load_settings().breakdown_dimensions == kept
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", "plan")
    assert load_settings().breakdown_dimensions == (*kept, "property:plan")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("page,pages", "'pages' is not a fixed dimension"),
        ("property:plan", "property dimensions go in BA_BREAKDOWN_PROPERTIES"),
        ("entry_page", "'entry_page' is not a fixed dimension"),
        ("none,page", "'none' keeps no dimension: it takes no other name"),
        ("", "empty: name the fixed dimensions to keep"),
        (" , ", "empty: name the fixed dimensions to keep"),
    ],
)
def test_a_value_that_names_no_fixed_dimensions_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_DIMENSIONS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid BA_BREAKDOWN_DIMENSIONS: ") and "\n" not in message
    assert says in message


def test_a_store_keeps_the_dimensions_set_and_config_apply_narrows_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A new store records the dimensions BA_BREAKDOWN_DIMENSIONS keeps and counts only those;
    narrowing them on a store that keeps more is `config apply`'s (it deletes the others)."""
    monkeypatch.setenv("BA_BREAKDOWN_DIMENSIONS", "page,device")
    _, store = open_configured(load_settings(_env_file=None, data_dir=tmp_path))
    try:
        assert store.rules is not None
        assert store.rules.breakdowns.dimensions == ("page", "device")
        store.commit([ev(1, 10, user="u1", page_url="https://shop.example/a")])
        assert store.breakdown("page", "day")[0].events == {"/a": 1}
        assert store.breakdown("referrer", "day") == []
        recorded = store.recorded_config()
        assert recorded is not None and recorded.breakdown_dimensions == ("page", "device")
        monkeypatch.setenv("BA_BREAKDOWN_DIMENSIONS", "page")
        settings = load_settings(_env_file=None, data_dir=tmp_path)
        target, changes = plan_apply(recorded, settings.stored_config(), settings.shaping_set())
        assert target.breakdown_dimensions == ("page",)
        assert [(c.funnel, c.wanted) for c in changes] == [
            ("device", "removed (deletes its breakdowns)")
        ]
    finally:
        store.close()


def test_at_most_five_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"p{n}" for n in range(MAX_BREAKDOWN_PROPERTIES)]
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", ",".join(names))
    assert len(load_settings().breakdown_dimensions) == len(DIMENSIONS) + 5
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", ",".join([*names, "one_more"]))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert (
        str(caught.value)
        == "invalid BA_BREAKDOWN_PROPERTIES: 6 property names > 5, the most broken down"
    )


@pytest.mark.parametrize(
    "name",
    [
        "user_id",
        "userId",
        "anonymous_id",
        "anonymousId",
        "email",
        "ip",
        "phone",
        "work_email",
        "EmailAddress",
        "password_hint",
        "access_token",
        "secret",
        "passwd",
        "api_key",
        "apiKey",
        "phone_number",
        "ssn",
        "credit_card",
        "card_number",
        "e_mail",
        "context.ip",
        "Client-IP",
    ],
)
def test_id_like_and_secret_names_are_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", f"plan,{name}")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid BA_BREAKDOWN_PROPERTIES: ")
    assert f"{name!r} names a person or a secret" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name", ["plan", "tier", "class_name", "zip", "tooltip", "iphone_model", "mobile", "card_type"]
)
def test_ordinary_names_are_taken(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", name)
    assert load_settings().breakdown_properties == name


def test_hashed_fields_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BA_HASHED_FIELDS", "customer_ref,context.traits.name")
    monkeypatch.setenv("BA_HASH_SALT", "s" * 16)
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", "plan,customer_ref")
    with pytest.raises(ConfigError, match="'customer_ref' is hashed"):
        load_settings()
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", "plan")
    assert load_settings().breakdown_dimensions[-1] == "property:plan"


@pytest.mark.parametrize("value", ['["plan"]', '{"plan": 1}', '"plan"'])
def test_a_json_list_is_refused_not_taken_for_a_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_PROPERTIES", value)
    with pytest.raises(ConfigError, match="comma-separated top-level property names"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "ok"), [("1", True), ("1000", True), ("0", False), ("1001", False)]
)
def test_breakdown_values_range(monkeypatch: pytest.MonkeyPatch, value: str, ok: bool) -> None:
    monkeypatch.setenv("BA_BREAKDOWN_VALUES", value)
    if ok:
        assert load_settings().breakdown_values == int(value)
    else:
        with pytest.raises(ConfigError, match="invalid BA_BREAKDOWN_VALUES"):
            load_settings()


def _event() -> Event:
    payload = {
        "user_id": "u",
        "event_type": "x",
        "timestamp": 1_800_000_000.0,
        "properties": {"user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/125.0"},
    }
    event = validate_event(payload, message_id="m", received_at=1_800_000_000.0)
    assert isinstance(event, Event)
    return event


def test_derive_on_reaches_the_worker_and_the_store(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert isinstance(build_deriver(settings), Deriver)
    assert isinstance(worker_options(settings).rules.derive, Deriver)
    assert behavior_rules(settings) == behavior_rules(settings)  # rules stay values
    store = build_store(settings)
    try:
        assert store.rules is not None and isinstance(store.rules.derive, Deriver)
        event = _event()
        behavior_rules(settings).enrich(event)
        assert event.properties[DERIVED]["browser"] == "Firefox"
    finally:
        store.close()


def test_derive_off_derives_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BA_DERIVE", "false")
    settings = load_settings(data_dir=tmp_path)
    assert build_deriver(settings) is None
    assert behavior_rules(settings).derive is None
    store = build_store(settings)
    try:
        broker = LocalBroker(tmp_path / "broker.db")
        try:
            assert build_worker(settings, broker, store).options.rules.derive is None
        finally:
            broker.close()
        event = _event()
        behavior_rules(settings).enrich(event)
        assert DERIVED not in event.properties
    finally:
        store.close()
