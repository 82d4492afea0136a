"""The configuration recorded with the data (`stored_config`), pure: what a process runs with
given the store's record and the environment, and what `config apply` changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from behavioral_analytics.settings import load_settings
from behavioral_analytics.stored_config import StoredConfig, changed_line, plan_apply, reconcile
from behavioral_analytics.wiring import omitted_line

PURCHASE = parse_funnels(PURCHASE_FUNNEL)
SIGNUP = parse_funnels('[{"name": "signup", "steps": ["page_view", "signup"]}]')
RECORDED = StoredConfig(timezone="Europe/Paris", funnels=PURCHASE)


def test_round_trips_through_its_canonical_json() -> None:
    config = StoredConfig(
        "Asia/Tokyo",
        600.0,
        7200.0,
        3600.0,
        True,
        parse_funnels(
            '[{"name": "f", "steps": [{"event_type": "page_view", "where": {"a.b": 1}}, "x"]}]'
        ),
    )
    assert StoredConfig.from_json(config.to_json()) == config
    assert StoredConfig.from_json(config.to_json()).to_json() == config.to_json()
    with pytest.raises(ValueError, match="not a recorded configuration"):
        StoredConfig.from_dict({"timezone": "UTC"})


def test_nothing_recorded_runs_with_the_environment() -> None:
    wanted = StoredConfig(funnels=SIGNUP)
    assert reconcile(None, wanted, {"funnels"}).effective == wanted


def test_unset_settings_take_the_recorded_values() -> None:
    reconciled = reconcile(RECORDED, StoredConfig(), explicit=())
    assert reconciled.effective == RECORDED
    assert not reconciled.refused and not reconciled.added_funnels


def test_an_added_funnel_is_additive_and_an_omitted_one_kept() -> None:
    reconciled = reconcile(RECORDED, StoredConfig(funnels=SIGNUP), {"funnels"})
    assert [f.name for f in reconciled.effective.funnels] == ["purchase", "signup"]
    assert reconciled.added_funnels == ("signup",)
    assert not reconciled.refused


@pytest.mark.parametrize(
    ("wanted", "field"),
    [
        (StoredConfig(timezone="UTC", funnels=PURCHASE), "timezone"),
        (
            StoredConfig(timezone="Europe/Paris", session_gap_s=60.0, funnels=PURCHASE),
            "session_gap_s",
        ),
        (
            StoredConfig(timezone="Europe/Paris", allow_relink=True, funnels=PURCHASE),
            "allow_relink",
        ),
        (
            StoredConfig(timezone="Europe/Paris", funnels=(replace(PURCHASE[0], window_s=60.0),)),
            "funnels",
        ),
    ],
)
def test_a_set_value_that_differs_is_refused(wanted: StoredConfig, field: str) -> None:
    explicit = {"timezone", "session_gap_s", "allow_relink", "funnels"}
    reconciled = reconcile(RECORDED, wanted, explicit)
    assert [d.field for d in reconciled.refused] == [field]
    assert reconciled.effective.timezone == "Europe/Paris"
    assert reconciled.effective.funnels == PURCHASE


def test_apply_takes_the_set_values_and_says_what_each_recomputes() -> None:
    target, changes = plan_apply(RECORDED, StoredConfig(funnels=SIGNUP), {"funnels"})
    assert target == replace(RECORDED, funnels=SIGNUP)
    described = [c.describe() for c in changes]
    assert any("'purchase'" in line and "removed" in line for line in described)
    assert any("'signup'" in line for line in described)
    target, changes = plan_apply(RECORDED, StoredConfig(), {"timezone"})
    assert target == replace(RECORDED, timezone="UTC")
    assert [c.field for c in changes] == ["timezone"]
    assert plan_apply(RECORDED, RECORDED, {"timezone", "funnels"}) == (RECORDED, ())


def test_the_settings_say_which_shaping_values_the_environment_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BA_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("BA_SESSION_GAP", "10")
    settings = load_settings(_env_file=None)
    assert settings.shaping_set() == {"timezone", "session_gap_s"}
    config = settings.stored_config()
    assert (config.timezone, config.session_gap_s) == ("Europe/Paris", 600.0)
    adopted = settings.adopt(RECORDED)
    assert adopted.timezone == "Europe/Paris"
    assert parse_funnels(adopted.funnels) == PURCHASE


def test_breakdowns_round_trip_and_a_record_from_before_them_has_none() -> None:
    config = StoredConfig(breakdown_dimensions=("page", "property:plan"), breakdown_values=7)
    assert StoredConfig.from_json(config.to_json()) == config
    assert not StoredConfig.from_json(config.to_json()).breakdowns_unrecorded
    older = config.to_dict()
    del older["breakdown_dimensions"], older["breakdown_values"]
    read = StoredConfig.from_dict(older)
    assert read.breakdown_dimensions == () and read.breakdowns_unrecorded
    assert config.rules(BehaviorRules()).breakdowns == BreakdownRules(("page", "property:plan"), 7)
    assert StoredConfig.of(config.rules(BehaviorRules()), "UTC") == config


def test_an_added_dimension_is_additive_and_an_omitted_one_kept() -> None:
    recorded = StoredConfig(breakdown_dimensions=("page", "country"), breakdown_values=10)
    wanted = StoredConfig(breakdown_dimensions=("page", "browser"), breakdown_values=10)
    reconciled = reconcile(recorded, wanted, {"breakdown_dimensions", "breakdown_values"})
    assert reconciled.effective.breakdown_dimensions == ("page", "country", "browser")
    assert reconciled.added_dimensions == ("browser",)
    assert not reconciled.refused
    # Unset, the recorded dimensions stand and nothing is added.
    unset = reconcile(recorded, wanted, ())
    assert unset.effective == recorded and unset.added_dimensions == ()


def test_a_record_from_before_breakdowns_takes_the_environments_dimensions() -> None:
    older = StoredConfig.from_dict(
        {k: v for k, v in RECORDED.to_dict().items() if not k.startswith("breakdown")}
    )
    wanted = StoredConfig(breakdown_values=5)
    reconciled = reconcile(older, wanted, {"breakdown_values"})
    assert reconciled.effective.breakdown_dimensions == wanted.breakdown_dimensions
    assert reconciled.effective.breakdown_values == 5
    assert reconciled.added_dimensions == wanted.breakdown_dimensions
    assert not reconciled.refused and not reconciled.effective.breakdowns_unrecorded


def test_changing_the_values_admitted_is_refused_and_apply_removes_a_dimension() -> None:
    recorded = StoredConfig(breakdown_dimensions=("page", "country"), breakdown_values=10)
    wanted = StoredConfig(breakdown_dimensions=("page",), breakdown_values=20)
    reconciled = reconcile(recorded, wanted, {"breakdown_values"})
    assert [d.field for d in reconciled.refused] == ["breakdown_values"]
    assert reconciled.effective == recorded
    target, changes = plan_apply(recorded, wanted, {"breakdown_dimensions", "breakdown_values"})
    assert target == wanted
    described = sorted(c.describe() for c in changes)
    assert [c.field for c in changes] == ["breakdown_values", "breakdown_dimensions"]
    assert "breakdown dimension 'country': kept -> removed" in described[0]


def test_a_recorded_funnel_the_environment_omits_is_kept_and_said() -> None:
    wanted = StoredConfig(timezone="Europe/Paris", funnels=SIGNUP)
    reconciled = reconcile(RECORDED, wanted, {"funnels"})
    assert [f.name for f in reconciled.effective.funnels] == ["purchase", "signup"]
    assert reconciled.omitted_funnels == ("purchase",)
    assert reconcile(RECORDED, wanted, set()).omitted_funnels == ()  # BA_FUNNELS unset
    assert omitted_line((), reconciled.omitted_funnels) == (
        "funnel 'purchase' still kept though this environment omits it: "
        "`behavioral-analytics config apply` deletes its figures"
    )
    assert omitted_line(("os",), ("purchase",)).startswith(
        "funnel 'purchase' and breakdown dimension 'os' still kept though this environment "
        "omits them"
    )


def test_a_commit_refused_for_another_record_names_what_differs() -> None:
    held = StoredConfig(timezone="UTC", funnels=SIGNUP)
    line = changed_line(held, replace(RECORDED, breakdown_dimensions=("page",)))
    assert "(timezone, funnel 'signup' removed, funnel 'purchase' added, breakdown dimension" in (
        line
    )
    assert line.endswith("restart this process to count by the recorded one")
