"""How each library counts an answer, read from its source (the versions in pyproject.toml and
node/package-lock.json):

- segment-analytics-python: 2xx is delivered; 408, 410, 429, 460 and 5xx but 501/505 are
  retried (`consumer.py`), other 4xx given up.
- rudder-sdk-python: only `200` is delivered (`request.py`); any other 4xx but 429 given up,
  and an error body without `code` raises KeyError, which is retried like a network error.
- @segment/analytics-node: below 400 is delivered; 400 and the 4xx not in 408/410/429/460
  given up, as 501/505/511 (`publisher.js`).
- @segment/analytics-next: below 400 is delivered; the same statuses given up
  (`shared-dispatcher.js`).
"""

from __future__ import annotations

from tests.conformance.checks import Profile

__all__ = ["BROWSER", "NODE", "RUDDER", "SEGMENT_PYTHON"]

_RETRIED_4XX = (408, 410, 429, 460)


def _segment_final(status: int) -> bool:
    return (400 <= status < 500 and status not in _RETRIED_4XX) or status in (501, 505, 511)


SEGMENT_PYTHON = Profile(
    library="analytics-python",
    success=lambda status: 200 <= status < 300,
    final=_segment_final,
)
RUDDER = Profile(
    library="analytics-python",
    success=lambda status: status == 200,
    final=lambda status: 400 <= status < 500 and status != 429,
)
NODE = Profile(
    library="@segment/analytics-node",
    success=lambda status: status < 400,
    final=_segment_final,
)
BROWSER = Profile(
    library="analytics.js",
    success=lambda status: status < 400,
    final=_segment_final,
    client_side=True,
)
