"""The OpenAPI description of the ingest routes: the bodies they take (the recipe's event, a
Segment call, a batch) and the answers they give, as JSON Schema. The routes read their raw
body (no FastAPI validation), so these schemas are what the documentation and schemathesis see."""

from __future__ import annotations

from typing import Any

from behavioral_analytics.segment import SEGMENT_CALLS

__all__ = [
    "BATCH_SCHEMA",
    "ERROR_SCHEMA",
    "EVENT_SCHEMA",
    "NONE_ACCEPTED",
    "SEGMENT_SCHEMA",
    "ingest_openapi",
]

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The recipe's event: event_id, user_id or anonymous_id, event_type, "
    "timestamp (epoch s/ms or RFC 3339), session_id, properties.",
    "properties": {
        "event_id": {"type": "string"},
        "user_id": {"type": "string"},
        "anonymous_id": {"type": "string"},
        "event_type": {"type": "string"},
        "timestamp": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "session_id": {"type": "string"},
        "properties": {"type": "object"},
    },
}
SEGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Segment-spec call: messageId, userId, anonymousId, event (track), name "
    "and category (page/screen), traits (identify, group), previousId (alias), groupId "
    "(group), ISO-8601 timestamp or originalTimestamp, sentAt, properties, context, writeKey.",
    "properties": {
        "type": {"type": "string", "enum": list(SEGMENT_CALLS)},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "category": {"type": "string"},
        "previousId": {"type": "string"},
        "groupId": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "originalTimestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "writeKey": {"type": "string"},
    },
}
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": SEGMENT_SCHEMA},
        "context": {"type": "object"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "rejected"],
    "properties": {
        "accepted": {"type": "array", "items": {"type": "string"}},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "event_id": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail", "code", "message"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "the same as `error`"},
        "message": {"type": "string", "description": "the same as `detail`"},
    },
}
REJECTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "rejected", "error", "detail", "code", "message"],
    "properties": {**RESULT_SCHEMA["properties"], **ERROR_SCHEMA["properties"]},
}
NONE_ACCEPTED = "no event of the request was accepted; the reasons are in `rejected`"


def ingest_openapi(body_schema: dict[str, Any], *, segment: bool) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
    if segment:
        answers: dict[str, Any] = {
            "200": {
                "description": "The request was taken: accepted events and the rejected ones "
                "with reasons (also recorded as dead letters)",
                "content": {"application/json": {"schema": RESULT_SCHEMA}},
            },
            "400": {"description": "A malformed body", **error},
        }
    else:
        answers = {
            "202": {
                "description": "At least one event accepted; the rest listed with reasons",
                "content": {"application/json": {"schema": RESULT_SCHEMA}},
            },
            "400": {
                "description": "No event accepted (per-event reasons), or a malformed body",
                "content": {
                    "application/json": {"schema": {"anyOf": [REJECTED_SCHEMA, ERROR_SCHEMA]}}
                },
            },
        }
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
        "responses": {
            **answers,
            "401": {"description": "Missing or unknown write key", **error},
            "413": {"description": "Event over 32 KB, request over 500 KB", **error},
            "415": {"description": "Content-Encoding other than gzip", **error},
            "429": {"description": "Rate limit of the write key; see Retry-After", **error},
            "503": {"description": "The broker did not confirm the publish; retry", **error},
        },
    }
