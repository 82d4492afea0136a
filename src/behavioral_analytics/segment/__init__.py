"""Segment's tracking API, as its libraries speak it, turned into canonical events.

Pure: no I/O, no clock, no settings. The time of receipt, the caller's address and the id
factory are passed in, so the normalization is tested without a server.

Two paths give the same outcome. `from_segment` + `prepare` work on any decoded JSON and name
every reason a call is rejected. `prepare_calls` is the fast path for calls decoded into
`SegmentCall` structs: one pass, no intermediate dicts or `Event`s, the same event ids and the
same canonical JSON byte for byte; it gives up (None) as soon as a call is not obviously valid.

Rules taken from Segment's spec (segment.com/docs/connections/spec/):

- Time: `timestamp`, else `originalTimestamp`, is the client's time. With a `sentAt` (the
  call's, else the batch's) the event time is corrected for the device's clock skew:
  `timestamp = receivedAt - (sentAt - client time)`, clamped to the time of receipt. A missing
  or unreadable `sentAt` means no correction, never a rejection. The accepted-time window
  applies to the corrected time; the key of the event uses the client's time as sent
  (`client_timestamp`), because every retry carries a new `sentAt`. The raw times are kept in
  `properties.client_time` (`$client_time` beside a property of that name: `call_context`,
  which says where the call's context goes too). As in Segment, a retry delayed long after the
  call shifts toward its receipt (the client's clock is then read over a longer interval).
- `context.ip`: filled from the connection only for client-side calls (the request had an
  `Origin` header, or `context.library.name` is a browser or mobile library); a server library
  would give the app server's address.
- alias and group are accepted and published with `call` naming them; what the worker and the
  store make of them is `named_calls`'s (docs/behavior.md).
"""

from behavioral_analytics.segment.calls import (
    CLIENT_LIBRARIES,
    SEGMENT_CALLS,
    SHORT_PATHS,
    Receipt,
    corrected_time,
    dead_letter_fingerprint,
    encode_original,
    epoch_seconds,
    event_properties,
    from_segment,
    replace_lone_surrogates,
    view_properties,
    with_ip,
    without_write_key,
)
from behavioral_analytics.segment.fast import (
    SegmentBatch,
    SegmentCall,
    decode_batch,
    decode_call,
    prepare_calls,
)
from behavioral_analytics.segment.prepared import (
    KEPT_AS,
    KEPT_EVENT,
    TIME_WINDOW_REASONS,
    Outcome,
    Prepared,
    prepare,
)

__all__ = [
    "CLIENT_LIBRARIES",
    "KEPT_AS",
    "KEPT_EVENT",
    "SEGMENT_CALLS",
    "SHORT_PATHS",
    "TIME_WINDOW_REASONS",
    "Outcome",
    "Prepared",
    "Receipt",
    "SegmentBatch",
    "SegmentCall",
    "corrected_time",
    "dead_letter_fingerprint",
    "decode_batch",
    "decode_call",
    "encode_original",
    "epoch_seconds",
    "event_properties",
    "from_segment",
    "prepare",
    "prepare_calls",
    "replace_lone_surrogates",
    "view_properties",
    "with_ip",
    "without_write_key",
]
