"""Operations routes: liveness (/healthz), readiness (/readyz) and Prometheus metrics
(/metrics, read key unless reads are open).

Readiness is passive (`api.health`): the broker is ready when this process's last publish,
within `RECENT_S`, worked, and not when it failed; without a recent publish the broker is
asked (a read) and must answer within `PROBE_TIMEOUT_S`. The store must answer its
freshness read within `PROBE_TIMEOUT_S`, and while messages wait on a broker that can count
them, a worker must have committed within `COMMIT_STALL_S`. The body gives the age and
result of the last publish and the age of the last commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from behavioral_analytics.api.responses import JSONResponse
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.telemetry import log

__all__ = ["COMMIT_STALL_S", "PROBE_TIMEOUT_S", "RECENT_S", "router"]

RECENT_S = 30.0  # a publish outcome this recent decides the broker's readiness
PROBE_TIMEOUT_S = 2.0  # a port that takes longer to answer a read is not ready
COMMIT_STALL_S = 120.0  # messages waiting and no commit for this long: the workers are stuck

T = TypeVar("T")


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(tags=["ops"])

    @routes.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get(
        "/readyz",
        summary="Readiness: events can be published and are being committed",
        responses={503: {"description": "Publishing fails, or the store does not answer"}},
    )
    async def readyz() -> Response:
        checks, details = await _readiness(state)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks, **details},
            status_code=200 if ready else 503,
        )

    @routes.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics(request: Request) -> Response:
        state.policy.require_read(request)
        await run_in_threadpool(_sample, state)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes


def _sample(state: ApiState) -> None:
    """Gauges read from the ports at scrape time (through the cache: cheap under many scrapers)."""
    metrics = state.metrics
    now = state.clock()
    samples: dict[str, Any] = {}
    for name, load in (
        ("freshness", state.store.freshness),
        ("dead_letter_count", state.store.count_dead_letters),
        ("backlog", state.broker.backlog),
    ):
        try:
            samples[name] = state.cache.get((name,), load)
        except Exception as exc:
            log.warning("metrics sample failed", extra={"sample": name, "error": repr(exc)})
    fresh = samples.get("freshness")
    if fresh is not None:
        _set(metrics.worker_lag, fresh.lag_s)
        _set(
            metrics.newest_event_age,
            None if fresh.newest_event_at is None else now - fresh.newest_event_at,
        )
        _set(
            metrics.last_commit_age,
            None if fresh.last_commit_at is None else now - fresh.last_commit_at,
        )
    _set(metrics.dead_letters, samples.get("dead_letter_count"))
    _set(metrics.backlog, samples.get("backlog"))


def _set(gauge: Any, value: float | None) -> None:
    gauge.set(float("nan") if value is None else value)


async def _answer(call: Callable[[], Awaitable[T]]) -> T:
    return await asyncio.wait_for(call(), PROBE_TIMEOUT_S)


def _unavailable(exc: BaseException) -> str:
    # The class name only: error texts can hold hosts or paths.
    if isinstance(exc, TimeoutError):
        return f"unavailable (no answer within {PROBE_TIMEOUT_S:g} s)"
    return f"unavailable ({type(exc).__name__})"


async def _readiness(state: ApiState) -> tuple[dict[str, str], dict[str, Any]]:
    """The checks (name → "ok" or why not) and the details `/readyz` answers with."""
    now = state.clock()
    checks: dict[str, str] = {}
    details: dict[str, Any] = {}
    last = state.health.last_publish
    if last is not None:
        details["last_publish"] = {"age_s": round(now - last.at, 3), "ok": last.ok}
    if last is not None and now - last.at <= RECENT_S:
        checks["broker"] = "ok" if last.ok else f"unavailable (last publish failed: {last.error})"
    else:
        try:
            await _answer(lambda: run_in_threadpool(state.broker.ping))
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = _unavailable(exc)
    try:
        fresh = await _answer(lambda: state.read(("freshness",), state.store.freshness))
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = _unavailable(exc)
        fresh = None
    if fresh is not None:
        age = None if fresh.last_commit_at is None else round(now - fresh.last_commit_at, 3)
        details["last_commit_age_s"] = age
        try:
            backlog = await _answer(lambda: state.read(("backlog",), state.broker.backlog))
        except Exception:
            backlog = None  # unknown: readiness does not hang on it
        if backlog and age is not None and age > COMMIT_STALL_S:
            checks["store"] = f"stalled (no commit for {age:.0f} s while {backlog} messages wait)"
    if state.config_changed is not None:
        checks["configuration"] = state.config_changed
    for name, value in checks.items():
        if value != "ok":
            log.warning("readiness check failed", extra={"port": name, "check": value})
    return checks, details
