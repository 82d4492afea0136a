"""The error answers of the read routes, as the OpenAPI document declares them.

Every error is `responses.error_body`'s shape: `error` (a stable code) and `detail` (for
people), the same again as `code` and `message`, and some errors' own fields. `ErrorBody`
declares it, and `read_errors` the statuses a read router answers with it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["NOT_FOUND", "ErrorBody", "read_errors"]


class ErrorBody(BaseModel):
    """An error answer (any status the API gives with a JSON body)."""

    error: str = Field(description="A stable code, e.g. `invalid_period`")
    detail: str = Field(description="One line for people")
    code: str = Field(description="The same as `error`")
    message: str = Field(description="The same as `detail`")
    errors: list[dict[str, Any]] | None = Field(
        None, description="`invalid_request` (422) only: FastAPI's list of the problems"
    )
    unknown: list[str] | None = Field(
        None, description="`unknown_parameter` only: the parameters the route does not take"
    )
    known: list[str] | None = Field(
        None, description="`unknown_parameter` only: the parameters the route takes"
    )


_WHEN: dict[int, str] = {
    400: "A parameter's value names nothing this route answers (`invalid_period`, "
    "`invalid_range`, `unknown_parameter`, `invalid_filter`, `invalid_cursor`, …)",
    401: "No read key, or an unknown one (`unauthorized`)",
    403: "Open mode only: a `Host` that does not name this server (`forbidden_host`)",
    404: "Nothing of that name (`not_found`)",
    422: "A parameter of the wrong type (`invalid_request`, FastAPI's problems in `errors`)",
    500: "An error no rule expected (`internal_error`; the cause is in the server's log)",
    501: "The store does not keep this (`not_supported`)",
    503: "The store does not answer (`store_unavailable`); retry",
}


def read_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A router's `responses=`: each of `statuses` (keys of the table above) with ErrorBody;
    400 (`unknown_parameter` at least), 401, 403, 422, 500 and 503, which every read route can
    give, always."""
    wanted = sorted({400, 401, 403, 422, 500, 503, *statuses})
    return {status: {"model": ErrorBody, "description": _WHEN[status]} for status in wanted}


# A route's own `responses=` where it answers 404 (a profile, a funnel, a group by name).
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": _WHEN[404]}}
