"""A misspelt key in a funnel or a step is refused, naming the funnel, the key and the keys
allowed, instead of being ignored for its default."""

from __future__ import annotations

import json

import pytest

from behavioral_analytics.funnels import PURCHASE_FUNNEL, parse_funnels
from tests.conftest import cli


@pytest.mark.parametrize(
    ("funnel", "message"),
    [
        (
            {"name": "q", "steps": ["page_view", "purchase"], "windw_s": 60},
            "funnel 'q': unknown key 'windw_s' (allowed: name, steps, window_s)",
        ),
        (
            {"name": "q", "steps": ["page_view", "purchase"], "window": "1h"},
            "funnel 'q': unknown key 'window' (allowed: name, steps, window_s)",
        ),
        (
            {"name": "q", "steps": [{"event_type": "page_view", "wehre": {"x": 1}}, "purchase"]},
            "funnel 'q': step 1: unknown key 'wehre' (allowed: event_type, where)",
        ),
        (
            {"name": "q", "steps": ["page_view", {"evnt_type": "purchase"}]},
            "funnel 'q': step 2: unknown key 'evnt_type' (allowed: event_type, where)",
        ),
        (
            {"nmae": "q", "steps": ["page_view", "purchase"]},
            "funnel 1: unknown key 'nmae' (allowed: name, steps, window_s)",
        ),
    ],
)
def test_an_unknown_key_is_refused_with_the_funnel_and_the_keys_allowed(
    funnel: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        parse_funnels(json.dumps([funnel]))
    assert str(refused.value) == message


def test_the_known_keys_and_the_recorded_form_still_parse() -> None:
    (funnel,) = parse_funnels(
        '[{"name": "q", "steps": [{"event_type": "a", "where": {"x": 1}}, "b"], "window_s": 60}]'
    )
    assert funnel.window_s == 60.0 and funnel.steps[0].where == (("x", 1),)
    (default,) = parse_funnels('[{"name": "q", "steps": ["a", "b"]}]')
    assert default.window_s == 86400.0
    purchase = parse_funnels(PURCHASE_FUNNEL)
    assert parse_funnels([f.to_dict() for f in purchase]) == purchase


def test_a_misspelt_funnel_key_is_one_line_and_exit_2() -> None:
    cli("init")
    funnels = (
        '[{"name":"q","steps":[{"event_type":"page_view","wehre":{"x":1}},"purchase"],'
        '"windw_s":60}]'
    )
    result = cli(
        "config", "show", "--json", env={"BA_FUNNELS": funnels, "COLUMNS": "300"}, check=False
    )
    err = result.stderr.decode().strip()
    assert result.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "invalid BA_FUNNELS: funnel 'q': unknown key 'windw_s'" in err
    assert result.stdout == b""
