"""The query parameters a read route takes, held to its declaration.

A parameter a route does not declare is refused (`400 unknown_parameter`), so that a typo
(`granularty=day`) is not answered as if it were absent. The known names are the route's own
query parameters as FastAPI reads them from its signature and dependencies (their aliases:
`from`, `filter`, `max`), the very list the OpenAPI document gives; nothing is kept by hand.

An empty value of a bound (`from=`, `to=`, `period=`) is `400 invalid_period` and an empty
`cursor=` is `400 invalid_cursor`, as an empty `type=` is `400 invalid_event_type`: an empty
value never stands for the default (leave the parameter out for that).

The check is a dependency of the read routers, after the read key's, so that it answers
before FastAPI's own validation of the values (`422`).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from behavioral_analytics.api.responses import ApiError

__all__ = ["BOUNDS", "check_parameters", "known_parameters"]

# The parameters that take a period label or a time.
BOUNDS = ("from", "to", "period")


def known_parameters(route: APIRoute) -> tuple[str, ...]:
    """The names (aliases) of the query parameters `route` declares, its dependencies'
    included, sorted."""
    names: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return tuple(sorted(names))


def check_parameters(request: Request) -> None:
    """A read router's dependency. Raises ApiError 400 `unknown_parameter` (the body's
    `unknown` and `known` list the names) for a query parameter the matched route does not
    declare, `invalid_period` for an empty or blank bound, `invalid_cursor` for an empty
    cursor."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = known_parameters(route)
    query = request.query_params
    unknown = sorted({name for name in query if name not in known})
    if unknown:
        listed = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {listed} for "
            f"{route.path_format}: it takes {', '.join(known) if known else 'none'}",
            extra={"unknown": [name[:100] for name in unknown[:20]], "known": list(known)},
        )
    for name in BOUNDS:
        if name in query and not all(value.strip() for value in query.getlist(name)):
            raise ApiError(
                400,
                "invalid_period",
                f"{name} is empty: give a period label or a time, or leave {name} out for "
                "its default",
            )
    if "cursor" in query and not query["cursor"]:
        raise ApiError(
            400,
            "invalid_cursor",
            "cursor is empty: give a next_cursor this API returned, or leave cursor out for "
            "the first page",
        )
