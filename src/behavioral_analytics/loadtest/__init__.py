"""The load test: publish generated traffic at a rate, wait until every event is queryable,
then report the rate, publish → queryable latency, duplicates absorbed, rejects and `verify`.

The moving parts are small and replaceable (tests pass fakes): a `Sink` sends messages (the
broker, or the HTTP collector), a `Pacer` spaces batches on a monotonic clock, `WorkerProcesses`
runs `behavioral-analytics worker`, and a `StoreProbe` reads what the store holds. `marking`
gives each run its own event type and user prefix, by which alone it judges itself.
"""

from behavioral_analytics.loadtest.run import (
    Expected,
    LoadTestOptions,
    LoadTestReport,
    Progress,
    Via,
    default_users,
    expected_outcome,
    percentiles,
    run_loadtest,
)
from behavioral_analytics.loadtest.sinks import (
    BrokerSink,
    HttpSink,
    LoadTestError,
    Pacer,
    Sink,
)
from behavioral_analytics.loadtest.workers import StoreProbe, WorkerProcesses

__all__ = [
    "BrokerSink",
    "Expected",
    "HttpSink",
    "LoadTestError",
    "LoadTestOptions",
    "LoadTestReport",
    "Pacer",
    "Progress",
    "Sink",
    "StoreProbe",
    "Via",
    "WorkerProcesses",
    "default_users",
    "expected_outcome",
    "percentiles",
    "run_loadtest",
]
