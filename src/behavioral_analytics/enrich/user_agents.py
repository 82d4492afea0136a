"""Browser, operating system and device type from a user agent, by ua-parser (the Python
port of the uap-core rules, Apache-2.0) with the rules of `ua-parser-builtins`.

Browser and OS are ua-parser's families (`Chrome Mobile`, `Mobile Safari`, `Firefox`;
`Android`, `iOS`, `Windows`, `Mac OS X`); its `Other` (no rule matched) is unknown. ua-parser
names the device (`iPhone`, `Pixel 8`) but not its type, so the type is read from the same
parse (docs/breakdowns.md): `bot` for ua-parser's `Spider` device; `tablet` for an iPad, a
Kindle, a device whose family or brand says tablet, or Android without `Mobile` in the agent
(Android tablets' browsers leave it out, as Google's guidance for Chrome's user agent says);
`mobile` for a mobile OS or `Mobi` in the agent (MDN's advice for detecting a mobile browser);
`desktop` for a desktop OS; otherwise unknown. An iPad whose Safari asks for desktop sites sends
a Mac's agent and is a desktop here.

Parses are cached per agent string (cut to `MAX_AGENT_CHARS`), and traffic repeats few
distinct agents. ua-parser's `regex` extra installs its Rust resolver (ua-parser-rs), which
ua-parser then uses over the same rules: an uncached parse costs about 15 µs, against about
750 µs with the pure-Python resolver it falls back to (`bench/user_agents.py`, 2026-12-01, the
2-core development machine), which the collector's event loop would wait on for every new
agent.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version

import ua_parser

__all__ = ["MAX_AGENT_CHARS", "PARSER", "agent_facts"]

# The versions that made the values, recorded in `$derived.parsers.user_agent` on every raw
# event: ua-parser's, then the rules' (ua-parser-builtins), joined by "/". Versions only, no
# package names, to keep each stored event short (docs/breakdowns.md).
PARSER = f"{version('ua-parser')}/{version('ua-parser-builtins')}"
MAX_AGENT_CHARS = 1024

_UNKNOWN = "Other"
_MOBILE_OS = frozenset(
    {
        "Android",
        "iOS",
        "Windows Phone",
        "BlackBerry OS",
        "KaiOS",
        "Firefox OS",
        "Symbian OS",
        "Tizen",
        "HarmonyOS",
        "Sailfish",
        "webOS",
    }
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Chrome OS",
        "Fedora",
        "Debian",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
        "Red Hat",
        "SUSE",
        "Mint",
        "Kubuntu",
        "Arch Linux",
    }
)


def agent_facts(agent: str) -> tuple[tuple[str, str], ...]:
    """(key, value) pairs of `browser`, `os` and `device` (mobile, tablet, desktop or bot) that
    are known for a user agent, from its first `MAX_AGENT_CHARS` characters. Never raises for a
    string."""
    return _facts(agent[:MAX_AGENT_CHARS])


@lru_cache(maxsize=20_000)
def _facts(agent: str) -> tuple[tuple[str, str], ...]:
    result = ua_parser.parse(agent)
    facts: list[tuple[str, str]] = []
    if result.user_agent is not None and result.user_agent.family != _UNKNOWN:
        facts.append(("browser", result.user_agent.family))
    os_family = result.os.family if result.os is not None else None
    if os_family == _UNKNOWN:
        os_family = None
    if os_family is not None:
        facts.append(("os", os_family))
    device = _device_type(agent, os_family, result.device)
    if device is not None:
        facts.append(("device", device))
    return tuple(facts)


def _device_type(agent: str, os_family: str | None, device: ua_parser.Device | None) -> str | None:
    family = device.family if device is not None else ""
    brand = (device.brand or "") if device is not None else ""
    if family == "Spider":
        return "bot"
    if family == "iPad" or "Kindle" in family or "tablet" in f"{family} {brand}".lower():
        return "tablet"
    if os_family == "Android" and "Mobile" not in agent:
        return "tablet"
    if os_family in _MOBILE_OS or "Mobi" in agent:
        return "mobile"
    if os_family in _DESKTOP_OS:
        return "desktop"
    return None
