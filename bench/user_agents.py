"""User-agent parsing: ua-parser's Rust resolver (ua-parser-rs, the `regex` extra this
project depends on) beside its pure-Python resolver, over the same rules, in one run.

    python bench/user_agents.py [--agents 4000] [--seed 17]

Each resolver parses the same distinct agents once (no cache: what a parse of an agent not
seen before costs the collector's event loop), after a warm-up parse that loads its rules.
Prints microseconds per parse and their ratio, and checks that both give the same browser,
OS and device for every agent.
"""

from __future__ import annotations

import argparse
import random
import time

from ua_parser import BasicResolver, Domain, RegexResolver, load_builtins, load_lazy_builtins


def agents(count: int, seed: int) -> list[str]:
    """`count` distinct, realistic agents: Android Chrome, Windows Edge, iPhone Safari."""
    rng = random.Random(seed)
    shapes = [
        "Mozilla/5.0 (Linux; Android {a}; SM-G{b}) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{c}.0.{d}.{e} Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{c}.0.{d}.0 Safari/537.36 Edg/{c}.0.{e}.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS {a}_{e} like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/{a}.0 Mobile/15E{d} Safari/604.1",
    ]
    found: set[str] = set()
    while len(found) < count:
        found.add(
            rng.choice(shapes).format(
                a=rng.randint(9, 17),
                b=rng.randint(100, 999),
                c=rng.randint(90, 131),
                d=rng.randint(1000, 9999),
                e=rng.randint(1, 200),
            )
        )
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    if RegexResolver is None:
        raise SystemExit("ua-parser-rs is not installed: pip install 'ua-parser[regex]'")
    sample = agents(args.agents, args.seed)
    resolvers = {
        "Rust (ua-parser-rs)": RegexResolver(load_lazy_builtins()),
        "pure Python": BasicResolver(load_builtins()),
    }
    results = {}
    per_parse = {}
    for name, resolve in resolvers.items():
        resolve("warm-up", Domain.ALL)
        started = time.perf_counter()
        results[name] = [resolve(agent, Domain.ALL) for agent in sample]
        per_parse[name] = (time.perf_counter() - started) / len(sample)
    first, second = results.values()
    same = sum(
        (a.user_agent, a.os, a.device) == (b.user_agent, b.os, b.device)
        for a, b in zip(first, second, strict=True)
    )
    print(f"{len(sample):,} distinct agents, each parsed once per resolver, seed {args.seed}")
    for name, seconds in per_parse.items():
        print(f"  {name:<20} {seconds * 1e6:8.1f} µs per parse")
    rust, python = per_parse.values()
    print(f"pure Python / Rust: {python / rust:.1f}x; same results for {same:,} of {len(sample):,}")


if __name__ == "__main__":
    main()
