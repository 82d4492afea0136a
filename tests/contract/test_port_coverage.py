"""The contract suite calls every public method of the Store port: a method added to the port
without a contract test fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from behavioral_analytics.store import Store


def test_every_port_method_is_called_by_a_contract_test() -> None:
    methods = {
        name
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }
    assert {"commit", "forget", "snapshot", "close"} <= methods
    text = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    called = set(re.findall(r"\.(\w+)\(", text))
    assert sorted(methods - called) == []
