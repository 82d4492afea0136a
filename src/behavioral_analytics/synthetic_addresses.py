"""The addresses synthetic actors send from (`loadgen`): one public IPv4 address per actor,
drawn from a hash of its id, so the generator's traffic carries what a collector adds to every
call (the caller's address), and its countries those of the address space: by iptocc's table
about 40 % US, 9 % CN, then JP, GB, DE, KR… and 7 % assigned to none. Pure."""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

__all__ = ["client_ip"]


@lru_cache(maxsize=65536)
def client_ip(actor_id: str) -> str:
    """The public IPv4 address `actor_id` sends from (dotted quad): the first global one
    (`ipaddress`'s `is_global`) among the 4-byte slices of its id's SHA-256, else of that
    digest's, and so on. Draws nothing from a seeded generator, so the rest of the traffic is
    what it was without addresses."""
    digest = hashlib.sha256(actor_id.encode()).digest()
    while True:
        for start in range(0, len(digest), 4):
            address = ipaddress.IPv4Address(digest[start : start + 4])
            if address.is_global:
                return str(address)
        digest = hashlib.sha256(digest).digest()
