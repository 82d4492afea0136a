"""Client addresses: what the collector spends on each call's address (its country, then the
address truncated) and the worker on truncating it again, with the remembered answers
(`privacy.truncate_ip`, `countries.country_of`) beside computing each afresh, in one run.

    python bench/addresses.py [--visitors 2000] [--calls 8] [--ipv6 0.33] [--seed 17]

Every visitor sends `--calls` calls from one address (`--ipv6` of them an IPv6 one), shuffled
together as a site's traffic arrives. Each variant runs over its own copy of the same
properties: "remembered" through the functions the collector and the worker call, "afresh"
through the computations those functions remember (`privacy._truncated`,
`countries._country_of`), each cache emptied first. Prints microseconds per call for the
collector's part and the worker's, and their ratios, and checks that both variants store the
same properties.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable
from typing import Any

from behavioral_analytics import privacy
from behavioral_analytics.enrich import countries

Properties = dict[str, Any]


def traffic(visitors: int, calls: int, ipv6: float, seed: int) -> list[Properties]:
    """`visitors` x `calls` properties as the collector makes them: the caller's address in
    `context.ip`, shuffled."""
    rng = random.Random(seed)
    events = []
    for _ in range(visitors):
        if rng.random() < ipv6:
            rest = ":".join(f"{rng.randrange(65536):x}" for _ in range(7))
            address = f"2a{rng.randrange(256):02x}:{rest}"
        else:
            address = ".".join(str(rng.randrange(1, 224)) for _ in range(4))
        events += [{"page_url": "/p", "context": {"ip": address}} for _ in range(calls)]
    rng.shuffle(events)
    return events


def collector(properties: Properties) -> None:
    """The collector's part: the country of the address, then the address truncated."""
    address = countries.client_address(properties)
    if address is not None and (country := countries.country_of(address)) is not None:
        properties["$derived"] = {"country": country}
    privacy.scrub(properties, truncate_ips=True)


def worker(properties: Properties) -> None:
    """The worker's part: the address (truncated by the collector) truncated again."""
    privacy.scrub(properties, truncate_ips=True)


def timed(events: list[Properties], step: Callable[[Properties], None]) -> float:
    """Microseconds per call of `step` over `events`, in place."""
    start = time.perf_counter()
    for properties in events:
        step(properties)
    return (time.perf_counter() - start) / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=8, help="calls per visitor")
    parser.add_argument("--ipv6", type=float, default=0.33, help="share of IPv6 visitors")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    events = traffic(args.visitors, args.calls, args.ipv6, args.seed)

    def run(remembered: bool) -> tuple[float, float, list[Properties]]:
        truncated, country = privacy._truncated_cached, countries._cached_country_of
        truncated.cache_clear()
        country.cache_clear()
        if not remembered:
            privacy._truncated_cached = privacy._truncated  # type: ignore[assignment]  # uncached
            countries._cached_country_of = countries._country_of  # type: ignore[assignment]  # uncached
        try:
            mine = copy.deepcopy(events)
            return timed(mine, collector), timed(mine, worker), mine
        finally:
            privacy._truncated_cached, countries._cached_country_of = truncated, country

    afresh_collector, afresh_worker, afresh = run(remembered=False)
    kept_collector, kept_worker, kept = run(remembered=True)
    assert kept == afresh, "the remembered answers differ from the computed ones"
    print(
        f"{len(events):,} calls from {args.visitors:,} visitors ({args.ipv6:.0%} IPv6), "
        f"seed {args.seed}; microseconds per call"
    )
    print(f"{'':12}{'afresh':>10}{'remembered':>12}{'ratio':>8}")
    for name, before, after in (
        ("collector", afresh_collector, kept_collector),
        ("worker", afresh_worker, kept_worker),
    ):
        print(f"{name:12}{before:10.1f}{after:12.1f}{before / after:7.1f}x")


if __name__ == "__main__":
    main()
