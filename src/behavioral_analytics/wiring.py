"""Wiring: the one module that turns settings into adapters.

`settings` is a model that imports only the core; the adapters (`brokers/`, `stores/`,
`exporters/`) take plain values and never import it. Here the backend is chosen
(`BA_BACKEND=local|gcp`, never a code edit) and each adapter is built from the values it
needs, so a reader sees in one place which setting reaches which adapter. The optional
adapters are imported inside the functions that build them: the Google clients and the API
framework are extras, and a missing one is a one-line `ConfigError` naming the extra.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from behavioral_analytics.settings import DAY, ConfigError, Settings, shaping_env_name
from behavioral_analytics.sqlite_util import make_folder, not_writable_here, reads_apart
from behavioral_analytics.store import NotSupported, StoreError
from behavioral_analytics.stored_config import (
    Difference,
    Reconciled,
    StoredConfig,
    before_record,
    reconcile,
    without_additions,
)
from behavioral_analytics.telemetry import log
from behavioral_analytics.time_zones import as_recorded_zone
from behavioral_analytics.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from behavioral_analytics.behavior import BehaviorRules
    from behavioral_analytics.broker import Broker
    from behavioral_analytics.dimensions import Derive
    from behavioral_analytics.store import Store
    from behavioral_analytics.telemetry import MetricsExporter, WorkerMetrics

__all__ = [
    "behavior_rules",
    "build_api",
    "build_broker",
    "build_broker_and_store",
    "build_deriver",
    "build_exporter",
    "build_server",
    "build_store",
    "build_store_with",
    "build_worker",
    "check_file_apart",
    "check_local_store",
    "local_broker_path",
    "local_store_path",
    "local_store_written",
    "open_configured",
    "refusal",
    "worker_options",
]


def _gcp_missing(exc: ImportError, what: str = "BA_BACKEND=gcp") -> ConfigError:
    return ConfigError(
        f"{what} needs the Google Cloud clients ({exc.name}): pip install "
        "'behavioral-analytics[gcp]' (in a checkout: .venv/bin/pip install -e '.[gcp]')"
    )


# The Pub/Sub broker keeps its failure log in Firestore: both clients need credentials.
_BOTH_EMULATORS = "PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST"


def _firestore_client(
    settings: Settings, what: str, emulators: str = "FIRESTORE_EMULATOR_HOST"
) -> Any:
    """A Firestore client for `what`; ConfigError when no Google credentials are found (the
    client library's `DefaultCredentialsError` would otherwise end the command in a traceback)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import firestore

    try:
        return firestore.Client(project=settings.project, database=settings.firestore_database)
    except DefaultCredentialsError as exc:
        raise _no_credentials(what, exc, emulators) from exc


def _no_credentials(what: str, exc: Exception, emulators: str) -> ConfigError:
    """The one line for a Google client that found no credentials: the library's reason, then
    the ways to give it some (a missing GOOGLE_APPLICATION_CREDENTIALS file is named by it)."""
    reason = " ".join(str(exc).split()).rstrip(".")
    return ConfigError(
        f"{what} found no Google credentials ({reason}): run `gcloud auth "
        "application-default login` or point GOOGLE_APPLICATION_CREDENTIALS at a key file, or "
        f"set {emulators} for the emulators"
    )


def build_broker(settings: Settings) -> Broker:
    """The configured broker: the local SQLite file under `data_dir`, or Pub/Sub.

    Raises ConfigError when the gcp extra is missing or no project is set for Pub/Sub;
    StoreError, before a local broker's file is created, when the folder's `store.db` is not
    a store this program would open (another program's, damaged), as opening it would say;
    BrokerError (one line) for a local broker file this process may not write.
    """
    if settings.backend == "gcp":
        return _pubsub_broker(settings)
    from behavioral_analytics.broker import BrokerError
    from behavioral_analytics.brokers.local import LocalBroker

    path = local_broker_path(settings)
    if not path.exists():
        # No broker file is left in a folder whose store a command then refuses.
        check_local_store(settings)
    elif problem := not_writable_here(path):  # opened, it would get this user's -wal, -shm
        raise BrokerError(problem)
    make_folder(settings.data_dir)
    return LocalBroker(
        path,
        topic=settings.pubsub_topic.rsplit("/", 1)[-1],
        subscription=settings.pubsub_subscription.rsplit("/", 1)[-1],
        ack_deadline_s=settings.ack_deadline_s,
        max_delivery_attempts=settings.max_delivery_attempts,
        ordering=settings.ordering,
        retention_s=settings.message_retention_days * DAY,
        min_backoff_s=settings.retry_min_backoff_s,
        max_backoff_s=settings.retry_max_backoff_s,
    )


def _pubsub_broker(settings: Settings) -> Broker:
    try:
        from google.auth.exceptions import DefaultCredentialsError

        from behavioral_analytics.brokers.failure_log import FirestoreFailureLog
        from behavioral_analytics.brokers.pubsub import PubSubBroker
    except ImportError as exc:
        raise _gcp_missing(exc) from None
    if not settings.project:
        raise ConfigError("Pub/Sub needs GOOGLE_CLOUD_PROJECT (or PROJECT_ID)")
    # The failure log keeps each message's last failure reason where the dead-letter
    # subscription's reader can find it: Pub/Sub's dead-letter policy attaches none.
    failure_log = FirestoreFailureLog(
        _firestore_client(settings, "Pub/Sub", _BOTH_EMULATORS),
        retention_s=(settings.message_retention_days + 1) * DAY,
    )
    try:
        return PubSubBroker(
            settings.project,
            topic=settings.pubsub_topic,
            subscription=settings.pubsub_subscription,
            dead_letter_topic=settings.dead_letter_topic,
            dead_letter_subscription=settings.dead_letter_subscription,
            ack_deadline_s=settings.ack_deadline_s,
            max_delivery_attempts=settings.max_delivery_attempts,
            ordering=settings.ordering,
            retention_days=settings.message_retention_days,
            min_backoff_s=settings.retry_min_backoff_s,
            max_backoff_s=settings.retry_max_backoff_s,
            max_outstanding=2 * settings.flush_max_events,
            streaming=settings.pubsub_pull == "streaming",
            failure_log=failure_log,
        )
    except DefaultCredentialsError as exc:
        raise _no_credentials("Pub/Sub", exc, _BOTH_EMULATORS) from exc


def build_store(settings: Settings) -> Store:
    """The configured store (SQLite at `data_dir/store.db`, or Firestore), counting by the
    configuration recorded with its data (`open_configured`).

    Raises ConfigError when the gcp extra is missing, or the environment changes what the store
    recorded.
    """
    return open_configured(settings)[1]


def build_broker_and_store(settings: Settings) -> tuple[Broker, Store]:
    """The configured broker and store, for a command that writes the store (`init`, a
    worker, `up`): the broker first, then the local store's file checked as one this process
    may write (`check_local_store`), which SQLite would otherwise open read-only and fail at
    the first commit. Raises what `build_broker`, `check_local_store` and `build_store` raise.
    """
    broker = build_broker(settings)
    check_local_store(settings, for_writing=True)
    return broker, build_store(settings)


def open_configured(
    settings: Settings, *, record: bool = True, only_reads: bool = False
) -> tuple[Settings, Store]:
    """The store, and `settings` with the time zone and funnels it counts by.

    What shapes stored numbers (`stored_config`) comes from the store's record where the
    environment leaves it unset; funnels and breakdown dimensions the environment adds are
    recorded and backfilled from the retained raw events, announced in one line; any other
    difference is refused until `behavioral-analytics config apply`. With `record` False (a
    command that only reads) the additions are not recorded: it reads as recorded, and a line
    says so. Recording them would fail every commit of the workers already running
    (`store.ConfigChanged`) until they restart.

    `only_reads` (a command that writes nothing, with `record` False): a local store this process
    may not write or does not own (`sqlite_util.reads_apart`: another user's files, a read-only
    mount) is opened for reading only, creating nothing beside it (`SQLiteStore`'s `reading`);
    one read as the file stands, with no worker holding it open, is announced in one line.

    Raises ConfigError (one line) for a refused difference or a missing extra; StoreError.
    """
    wanted = settings.stored_config()
    store = _open_store(settings, wanted, only_reads=only_reads)
    try:
        recorded = store.recorded_config()
        # Events but no record: written before configurations were recorded (and breakdowns).
        unrecorded = recorded is None and store.count_events() > 0
        reconciled = _reconciled(settings, recorded)
        effective = reconciled.effective if record else without_additions(reconciled)
        if unrecorded:
            effective = _unrecorded(store, effective, record)
        if effective != wanted:
            store.close()
            store = _open_store(settings, effective, only_reads=only_reads, quiet=True)
        added = []
        if reconciled.added_funnels:
            added.append(f"funnel {', '.join(map(repr, reconciled.added_funnels))}")
        if reconciled.added_dimensions:
            added.append(_dimensions(reconciled.added_dimensions))
        if added and record:
            try:
                store.record_config(reconciled.added_funnels)
            except NotSupported as exc:
                raise ConfigError(str(exc)) from None
            for what in added:
                _announce(f"{what} added: recorded in the store, counted from its raw events")
        elif added:
            _announce(
                f"{' and '.join(added)} not recorded in the store: this command only reads, as "
                "recorded (a worker records and counts what the environment adds when it "
                "starts, or run `behavioral-analytics config apply`)"
            )
        if reconciled.omitted_dimensions or reconciled.omitted_funnels:
            _announce(omitted_line(reconciled.omitted_dimensions, reconciled.omitted_funnels))
    except BaseException:
        store.close()
        raise
    return settings.adopt(effective), store


def _unrecorded(store: Store, effective: StoredConfig, record: bool) -> StoredConfig:
    """The configuration a process counts a store that holds events but no record by: a
    writer records `effective` and counts its breakdowns from the raw events; a reader, as
    the store stands (no breakdowns)."""
    held = "the store holds events from before it recorded the configuration it counts by"
    if record:
        store.record_config()
        _announce(f"{held}: this environment's is recorded; breakdowns counted from its raw events")
        return effective
    _announce(
        f"{held}: this command only reads, without breakdowns (a worker records the "
        "environment's and counts them when it starts, or run `behavioral-analytics config apply`)"
    )
    return before_record(effective)


def refusal(difference: Difference) -> str:
    """The one line that refuses an environment whose `difference` from the store's record
    needs `config apply`."""
    name = shaping_env_name(difference.field)
    recorded = difference.recorded
    if difference.funnel:
        what = f"{name} changes funnel {difference.funnel!r}"
    elif difference.field.endswith("_s"):  # set in minutes or hours: both sides in seconds
        what, recorded = f"{name} ({difference.wanted} s) differs", f"{recorded} s"
    else:
        what = f"{name}={difference.wanted} differs"
    return (
        f"{what} from what the store recorded ({recorded}): unset it to count as "
        f"recorded, or run `behavioral-analytics config apply` to recompute "
        f"{difference.recomputes}"
    )


def _dimensions(names: Sequence[str]) -> str:
    return f"breakdown dimension{'s' * (len(names) > 1)} {', '.join(repr(n) for n in names)}"


def omitted_line(dimensions: Sequence[str], funnels: Sequence[str] = ()) -> str:
    """The one line that says recorded breakdown dimensions and funnels the environment omits
    are kept (until `config apply` deletes them)."""
    named = [_dimensions(dimensions)] if dimensions else []
    if funnels:
        named.insert(0, f"funnel{'s' * (len(funnels) > 1)} {', '.join(map(repr, funnels))}")
    them, their = ("them", "their") if len(dimensions) + len(funnels) > 1 else ("it", "its")
    figures = "breakdowns" if not funnels else "figures"
    return (
        f"{' and '.join(named)} still kept though this environment omits {them}: "
        f"`behavioral-analytics config apply` deletes {their} {figures}"
    )


def _announce(line: str) -> None:
    if log.handlers or logging.getLogger().handlers:
        log.info(line)
    else:
        sys.stderr.write(line + "\n")


def build_store_with(
    settings: Settings, config: StoredConfig, *, only_reads: bool = False
) -> Store:
    """The configured store counting by `config`, whatever it recorded (for `config apply`,
    which records `config` and recomputes; `only_reads` for `config show`: `open_configured`).

    Raises ConfigError when the gcp extra is missing.
    """
    return _open_store(settings, config, only_reads=only_reads)


def local_broker_path(settings: Settings) -> Path:
    """The file of the local broker (`BA_BACKEND=local`): `broker.db` in `BA_DATA_DIR`."""
    return settings.data_dir / "broker.db"


def local_store_path(settings: Settings) -> Path:
    """The file of the local store (`BA_BACKEND=local`): `store.db` in `BA_DATA_DIR`."""
    return settings.data_dir / "store.db"


def earlier_local_store(settings: Settings) -> tuple[int, int] | None:
    """For a check (`doctor`): when the local store's file (`BA_BACKEND=local`) has an earlier
    release's layout, every page of it read without opening it as a store (which upgrades it,
    one way), and (its layout number, this release's); None otherwise, and on Google Cloud
    (open it as usual). Raises StoreError (one line) for a damaged file; ConfigError (one
    line) where `settings` differ from the configuration the file recorded in a way the first
    command after the upgrade refuses (`open_configured`)."""
    if settings.backend != "local":
        return None
    from behavioral_analytics.stores.sqlite.layout import LAYOUT, check_earlier
    from behavioral_analytics.stores.sqlite.metadata import recorded_in_file

    path = local_store_path(settings)
    found = check_earlier(path)
    if found is None:
        return None
    _reconciled(settings, recorded_in_file(path))
    return found, LAYOUT


def _reconciled(settings: Settings, recorded: StoredConfig | None) -> Reconciled:
    """`settings`' stored configuration against `recorded` (`stored_config.reconcile`).
    Raises ConfigError (one line, `refusal`) for a difference only `config apply` may make."""
    wanted = settings.stored_config()
    reconciled = reconcile(recorded, as_recorded_zone(wanted, recorded), settings.shaping_set())
    if reconciled.refused:
        raise ConfigError(refusal(reconciled.refused[0]))
    return reconciled


def check_local_store(settings: Settings, *, for_writing: bool = False) -> None:
    """On the local backend, the checks opening the store's file makes first, without opening
    it: its header and its tables, not every page; with `for_writing`, that this process may
    write it. For a command that starts processes which each open the store, so that it
    refuses once, and for one that writes. Raises StoreError (one line) for a file this
    program would refuse: a folder, another program's SQLite file, a damaged header, a file
    missing or empty where a store existed, a file it may not write."""
    from behavioral_analytics.stores.sqlite.files import check_before_open

    if settings.backend != "local":
        return
    path = local_store_path(settings)
    check_before_open(path)
    if for_writing and (problem := not_writable_here(path)):
        raise StoreError(problem)


def check_file_apart(path: Path) -> None:
    """`doctor`'s check of a local file it reads apart (`stores.sqlite.files.check_apart`)."""
    from behavioral_analytics.stores.sqlite.files import check_apart

    check_apart(path)


def local_store_written(settings: Settings) -> bool:
    """Whether a local store was ever created in `BA_DATA_DIR`: its file holds something, or
    its marker says one existed (then opening it explains what became of the file)."""
    from behavioral_analytics.stores.sqlite.files import marker_path

    path = local_store_path(settings)
    return (path.is_file() and path.stat().st_size > 0) or marker_path(path).exists()


def _open_store(
    settings: Settings, config: StoredConfig, *, only_reads: bool = False, quiet: bool = False
) -> Store:
    """The store; with `only_reads`, a local one this process may not write opened for reading
    only, announced (unless `quiet`) when it is read as the file stands."""
    if settings.backend == "gcp":
        return _firestore_store(settings, config)
    from behavioral_analytics.stores.sqlite import SQLiteStore

    path = local_store_path(settings)
    store = SQLiteStore(
        path,
        timezone=config.timezone,
        raw_retention_s=settings.raw_retention_days * DAY,
        dead_letter_retention_s=settings.dead_letter_retention_days * DAY,
        rules=config.rules(behavior_rules(settings)),
        reading=only_reads and reads_apart(path),
    )
    if store.reads_as_it_stands and not quiet:
        _announce(
            f"{path} read as the file stands (no worker has it open): a worker starting "
            "meanwhile can make this read fail or mix two moments; run it again then"
        )
    return store


def _firestore_store(settings: Settings, config: StoredConfig) -> Store:
    try:
        from behavioral_analytics.stores.firestore import FirestoreStore
    except ImportError as exc:
        raise _gcp_missing(exc) from None
    # The newest event a redelivery can still bring: its unique-user markers must outlive it.
    latest_count_days = (
        settings.max_event_age_days + settings.message_retention_days + settings.replay_window_days
    )
    return FirestoreStore(
        _firestore_client(settings, "Firestore"),
        timezone=config.timezone,
        raw_retention_s=settings.raw_retention_days * DAY,
        marker_retention_s=(latest_count_days + 2) * DAY,
        counter_shards=settings.firestore_counter_shards,
        database=settings.firestore_database,
        rules=config.rules(behavior_rules(settings)),
        behavior=settings.firestore_behavior,
        dead_letter_retention_s=settings.dead_letter_retention_days * DAY,
    )


def build_exporter(settings: Settings) -> MetricsExporter | None:
    """The exporter of worker metrics to Cloud Monitoring, or None when not configured.

    `BA_METRICS_EXPORTER=auto` exports only where a real project and Google credentials exist
    (not against the emulators), and says in one log line why not otherwise.
    Raises ConfigError when google-cloud-monitoring is missing or no project is set.
    """
    if not settings.exports_to_cloud_monitoring:
        return None
    if settings.metrics_exporter == "auto":
        reason = _no_cloud_monitoring(settings)
        if reason:
            log.info(f"metrics export off: {reason} (BA_METRICS_EXPORTER=auto)")
            return None
    try:
        from behavioral_analytics.exporters.cloud_monitoring import (
            CloudMonitoringExporter,
            instance_id,
            job_from_env,
            location_from_env,
            metadata_value,
            on_cloud_run,
        )
    except ImportError as exc:
        raise _gcp_missing(exc, "BA_METRICS_EXPORTER=cloud-monitoring") from None
    if not settings.project:
        raise ConfigError("Cloud Monitoring needs GOOGLE_CLOUD_PROJECT (or PROJECT_ID)")
    env = os.environ
    cloud_run = on_cloud_run(env)
    region = metadata_value("instance/region") if cloud_run else None
    return CloudMonitoringExporter(
        settings.project,
        location=location_from_env(env, region),
        job=job_from_env(env),
        instance=instance_id(metadata_value("instance/id") if cloud_run else None),
    )


def _no_cloud_monitoring(settings: Settings) -> str:
    """Why `auto` does not export here ('' when it does): emulators, no project, or no
    Google credentials."""
    if os.environ.get("PUBSUB_EMULATOR_HOST") or os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return "the Google emulators are in use"
    if not settings.project:
        return "no project"
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return "no Google auth library"
    try:
        google.auth.default()
    except DefaultCredentialsError:
        return "no Google credentials"
    return ""


def build_deriver(settings: Settings) -> Derive | None:
    """What sets `$derived` at ingestion (browser, OS, device type, country: the `enrich`
    adapter over its parsers), or None with BA_DERIVE off."""
    if not settings.derive:
        return None
    from behavioral_analytics.enrich import build_deriver as deriver

    return deriver()


def behavior_rules(settings: Settings) -> BehaviorRules:
    """The settings' behavioral rules with the deriver (`build_deriver`) the worker applies to
    an event published without the collector."""
    rules = settings.behavior_rules()
    derive = build_deriver(settings)
    return rules if derive is None else replace(rules, derive=derive)


def worker_options(settings: Settings, **overrides: Any) -> WorkerOptions:
    """The worker's options from the settings; `overrides` replace single fields."""
    values: dict[str, Any] = {
        "flush_interval_s": settings.flush_interval_s,
        "flush_max_events": settings.flush_max_events,
        "ack_deadline_s": settings.ack_deadline_s,
        "limits": settings.limits,
        "rules": behavior_rules(settings),
    }
    values.update(overrides)
    return WorkerOptions(**values)


def build_worker(
    settings: Settings,
    broker: Broker,
    store: Store,
    *,
    metrics: WorkerMetrics | None = None,
    **overrides: Any,
) -> Worker:
    """A worker between the given ports, with the options from the settings and the rules the
    store counts by (the configuration recorded with its data)."""
    if store.rules is not None:
        overrides.setdefault("rules", store.rules)
    return Worker(broker, store, options=worker_options(settings, **overrides), metrics=metrics)


def build_api(settings: Settings, **options: Any) -> FastAPI:
    """The API application on the configured ports, which it owns: the local backend's are
    initialized here and all are closed at shutdown. `options` go to `create_app`.

    Raises ConfigError (no fastapi, no keys off loopback); StoreError (`check_local_store`).
    """
    try:
        from behavioral_analytics.api.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"the API needs its extra ({exc.name}): pip install 'behavioral-analytics[api]'"
        ) from None
    broker = build_broker(settings)
    check_local_store(settings, for_writing=True)  # it records the collector's dead letters
    settings, store = open_configured(settings)
    if settings.backend == "local":
        broker.init()
        store.init()
    options.setdefault("derive", build_deriver(settings))
    # What the store counts by: the record where the environment leaves a value unset. The
    # environment's own values (`settings.stored_config()`) would differ from the record at the
    # first check of the watch, which would stop the API.
    rules = store.rules  # both stores always have them
    held = settings.stored_config() if rules is None else StoredConfig.of(rules, settings.timezone)
    options.setdefault("held_config", held)
    return create_app(settings, broker, store, owns_ports=True, **options)


def build_server(
    settings: Settings, host: str | None = None, port: int | None = None
) -> uvicorn.Server:
    """A uvicorn server (not started) for `build_api(settings)`, bound to `host:port` (default
    the settings' `api_host` and `api_port`). Serve it with `api.server.serve`.

    Raises ConfigError as `build_api` does.
    """
    settings = settings.model_copy(
        update={
            "api_host": host or settings.api_host,
            "api_port": port if port is not None else settings.api_port,
        }
    )
    app = build_api(settings)
    from behavioral_analytics.api.server import make_server

    server = make_server(app, settings)

    def stop() -> None:  # the recorded configuration changed (`api.config_watch`)
        server.should_exit = True

    app.state.api.stop = stop
    return server
