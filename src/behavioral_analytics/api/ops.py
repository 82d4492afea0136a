"""Operations routes: liveness (/healthz), readiness (/readyz: broker and store reachable) and
Prometheus metrics (/metrics, read key unless reads are open)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from behavioral_analytics.api.responses import JSONResponse
from behavioral_analytics.api.state import ApiState
from behavioral_analytics.telemetry import log

__all__ = ["router"]


def router(state: ApiState) -> APIRouter:
    routes = APIRouter(tags=["ops"])

    @routes.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get(
        "/readyz",
        summary="Readiness: the broker and the store answer",
        responses={503: {"description": "The broker or the store is unreachable"}},
    )
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        for name, port in (("broker", state.broker), ("store", state.store)):
            try:
                await run_in_threadpool(port.ping)
                checks[name] = "ok"
            except Exception as exc:
                # The class name only: error texts can hold hosts or paths.
                checks[name] = f"unavailable ({type(exc).__name__})"
                log.warning("readiness check failed", extra={"port": name, "error": repr(exc)})
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
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
