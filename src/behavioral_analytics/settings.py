"""The settings model: configuration from the environment (and an optional `.env`).

It imports only the core. Which adapters the settings select, and how they are built, is
`wiring`'s business: adapters take plain values and never see this model.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from behavioral_analytics.behavior import BehaviorRules, behavior_reach_s
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.dimensions import DIMENSIONS, PROPERTY_PREFIX
from behavioral_analytics.events import Limits
from behavioral_analytics.firestore_ids import database_id_problem
from behavioral_analytics.funnels import DEFAULT_FUNNELS, parse_funnels
from behavioral_analytics.raw_queries import DEFAULT_SCAN_MAX_EVENTS
from behavioral_analytics.sessions import SessionRules
from behavioral_analytics.stored_config import StoredConfig
from behavioral_analytics.time_zones import timezone_problem

__all__ = [
    "MAX_BREAKDOWN_PROPERTIES",
    "ConfigError",
    "Settings",
    "load_settings",
    "shaping_env_name",
    "unknown_names",
]

DAY = 86400.0
MAX_BREAKDOWN_PROPERTIES = 5
NO_DIMENSIONS = "none"  # BA_BREAKDOWN_DIMENSIONS's value that keeps no fixed dimension
# Property names refused as breakdown dimensions, that identify someone or hold a secret,
# compared with `_`, `-`, `.`, spaces and case aside: these exact names, and any name
# containing one of the words.
_IDENTIFYING = frozenset(
    {
        "userid",
        "anonymousid",
        "ip",
        "ipaddress",
        "clientip",
        "contextip",
        "remoteip",
        "phone",
        "phonenumber",
        "mobilenumber",
        "telephone",
        "ssn",
        "creditcard",
    }
)
_IDENTIFYING_WORDS = (
    "email",
    "password",
    "passwd",
    "token",
    "secret",
    "apikey",
    "cardnumber",
    "socialsecurity",
)
_HOST_ENTRY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?")
# A topic's or subscription's id (Pub/Sub's resource names: a letter, then 2 to 254 letters,
# digits, `-_.~+%`; never starting with `goog`), alone or at the end of its full path.
_PUBSUB_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")


class ConfigError(Exception):
    """A setting is missing or wrong. The message is one line, fit to show a user."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    backend: Literal["local", "gcp"] = Field("local", validation_alias=_env("BA_BACKEND"))
    data_dir: Path = Field(Path(".behavioral-analytics"), validation_alias=_env("BA_DATA_DIR"))
    timezone: str = Field("UTC", validation_alias=_env("BA_TIMEZONE"))

    project: str | None = Field(None, validation_alias=_env("GOOGLE_CLOUD_PROJECT", "PROJECT_ID"))
    pubsub_topic: str = Field("user-events", validation_alias=_env("PUBSUB_TOPIC"))
    pubsub_subscription: str = Field(
        "analytics-processor", validation_alias=_env("PUBSUB_SUBSCRIPTION")
    )
    pubsub_dead_letter_topic: str | None = Field(
        None, validation_alias=_env("PUBSUB_DEAD_LETTER_TOPIC")
    )
    pubsub_dead_letter_subscription: str | None = Field(
        None, validation_alias=_env("PUBSUB_DEAD_LETTER_SUBSCRIPTION")
    )
    firestore_database: str = Field(
        "behavioral-analytics", validation_alias=_env("FIRESTORE_DATABASE")
    )
    # 0: one document per bucket (the recipe's); N: each write goes to one of N shard documents.
    # Bots, sessions, funnels, identity links and forget on Firestore (off: counts only).
    firestore_behavior: bool = Field(True, validation_alias=_env("BA_FIRESTORE_BEHAVIOR"))
    firestore_counter_shards: int = Field(
        0, ge=0, le=100, validation_alias=_env("BA_FIRESTORE_COUNTER_SHARDS")
    )

    ack_deadline_s: int = Field(60, ge=10, le=600, validation_alias=_env("BA_ACK_DEADLINE"))
    max_delivery_attempts: int = Field(
        5, ge=5, le=100, validation_alias=_env("BA_MAX_DELIVERY_ATTEMPTS")
    )
    ordering: bool = Field(False, validation_alias=_env("BA_ORDERING"))
    pubsub_pull: Literal["streaming", "sync"] = Field(
        "streaming", validation_alias=_env("BA_PUBSUB_PULL")
    )
    retry_min_backoff_s: float = Field(
        10, ge=0, le=600, validation_alias=_env("BA_RETRY_MIN_BACKOFF")
    )
    retry_max_backoff_s: float = Field(
        600, ge=0, le=600, validation_alias=_env("BA_RETRY_MAX_BACKOFF")
    )
    message_retention_days: float = Field(
        7, gt=0, le=31, validation_alias=_env("BA_MESSAGE_RETENTION_DAYS")
    )
    replay_window_days: float = Field(7, ge=0, validation_alias=_env("BA_REPLAY_WINDOW_DAYS"))
    raw_retention_days: float = Field(30, gt=0, validation_alias=_env("BA_RAW_RETENTION_DAYS"))
    # The most raw events one filtered answer reads (docs/breakdowns.md "Filters").
    raw_scan_max_events: int = Field(
        DEFAULT_SCAN_MAX_EVENTS,
        ge=1,
        le=10_000_000,
        validation_alias=_env("BA_RAW_SCAN_MAX_EVENTS"),
    )
    # Dead letters hold original bytes (IPs, ids): kept this long, then purged (SQLite: the
    # worker and `dlq purge`; Firestore: the TTL policy on dead_letters.expire_at).
    dead_letter_retention_days: float = Field(
        30, gt=0, le=3650, validation_alias=_env("BA_DEAD_LETTER_RETENTION_DAYS")
    )

    flush_interval_s: float = Field(1.0, gt=0, le=60, validation_alias=_env("BA_FLUSH_INTERVAL"))
    flush_max_events: int = Field(
        5000, ge=1, le=20000, validation_alias=_env("BA_FLUSH_MAX_EVENTS")
    )
    max_future_skew_s: float = Field(3600, ge=0, validation_alias=_env("BA_MAX_FUTURE_SKEW"))
    max_event_age_days: float = Field(7, gt=0, validation_alias=_env("BA_MAX_EVENT_AGE_DAYS"))

    metrics_exporter: Literal["auto", "cloud-monitoring", "none"] = Field(
        "auto", validation_alias=_env("BA_METRICS_EXPORTER")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("BA_LOG_LEVEL")
    )

    api_host: str = Field("127.0.0.1", validation_alias=_env("BA_API_HOST"))
    api_port: int = Field(8080, ge=1, le=65535, validation_alias=_env("PORT", "BA_API_PORT"))
    write_keys: str = Field("", validation_alias=_env("BA_WRITE_KEYS"))
    read_keys: str = Field("", validation_alias=_env("BA_READ_KEYS"))
    cors_origins: str = Field("", validation_alias=_env("BA_CORS_ORIGINS"))
    # Host names besides loopback ones that an API without keys answers to (`name` or
    # `name:port`): DNS rebinding defence, see api/loopback_guard.py.
    allowed_hosts: str = Field("", validation_alias=_env("BA_ALLOWED_HOSTS"))
    # Proxies in front of the API that append the caller's address to X-Forwarded-For (Cloud
    # Run's front end: 1). 0: the header is ignored and the connection's address is the caller's.
    trusted_proxy_hops: int = Field(0, ge=0, le=10, validation_alias=_env("BA_TRUSTED_PROXY_HOPS"))
    rate_limit: float = Field(1000, gt=0, validation_alias=_env("BA_RATE_LIMIT"))

    session_gap_minutes: float = Field(
        30, gt=0, le=24 * 60, validation_alias=_env("BA_SESSION_GAP")
    )
    session_max_hours: float = Field(24, gt=0, le=24 * 7, validation_alias=_env("BA_SESSION_MAX"))
    funnels: str = Field(DEFAULT_FUNNELS, validation_alias=_env("BA_FUNNELS"))
    identity_window_hours: float = Field(
        24, ge=0, le=24 * 30, validation_alias=_env("BA_IDENTITY_WINDOW")
    )
    identity_allow_relink: bool = Field(False, validation_alias=_env("BA_IDENTITY_ALLOW_RELINK"))
    flag_bots: bool = Field(True, validation_alias=_env("BA_FLAG_BOTS"))
    truncate_ips: bool = Field(True, validation_alias=_env("BA_TRUNCATE_IPS"))
    hashed_fields: str = Field("", validation_alias=_env("BA_HASHED_FIELDS"))
    hash_salt: SecretStr = Field(SecretStr(""), validation_alias=_env("BA_HASH_SALT"))
    # Breakdowns (docs/breakdowns.md): the fixed dimensions kept (names of DIMENSIONS, or
    # `none`), top-level property names broken down besides them (at most
    # MAX_BREAKDOWN_PROPERTIES); values admitted per period and dimension.
    breakdown_fixed: str = Field(
        ",".join(DIMENSIONS), validation_alias=_env("BA_BREAKDOWN_DIMENSIONS")
    )
    breakdown_properties: str = Field("", validation_alias=_env("BA_BREAKDOWN_PROPERTIES"))
    breakdown_values: int = Field(100, ge=1, le=1000, validation_alias=_env("BA_BREAKDOWN_VALUES"))
    # Browser, OS, device type and country derived at ingestion (`$derived`); off: none.
    derive: bool = Field(True, validation_alias=_env("BA_DERIVE"))

    @field_validator("data_dir", mode="before")
    @classmethod
    def _named_folder(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip() and info.data.get("backend") != "gcp":
            raise ValueError(
                "empty: name a folder, or unset it for the default (.behavioral-analytics)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("funnels")
    @classmethod
    def _valid_funnels(cls, value: str) -> str:
        try:
            parse_funnels(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not JSON ({exc.msg} at character {exc.pos + 1}); expected a list such as "
                '[{"name": "purchase", "steps": ["page_view", "purchase"]}]'
            ) from None
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("breakdown_fixed")
    @classmethod
    def _breakdown_fixed(cls, value: str) -> str:
        names = _names(value)
        if names == (NO_DIMENSIONS,):
            return value
        if not names:
            raise ValueError(
                f"empty: name the fixed dimensions to keep (page,referrer,device), or "
                f"{NO_DIMENSIONS!r} for none; unset, all ten are kept"
            )
        if NO_DIMENSIONS in names:
            raise ValueError(f"{NO_DIMENSIONS!r} keeps no dimension: it takes no other name")
        unknown = [name for name in names if name not in DIMENSIONS]
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not a fixed dimension: BA_BREAKDOWN_DIMENSIONS is "
                f"comma-separated names among {', '.join(DIMENSIONS)}, or {NO_DIMENSIONS!r} "
                "(property dimensions go in BA_BREAKDOWN_PROPERTIES)"
            )
        return value

    @field_validator("breakdown_properties")
    @classmethod
    def _breakdown_properties(cls, value: str, info: ValidationInfo) -> str:
        names = _names(value)
        if len(names) > MAX_BREAKDOWN_PROPERTIES:
            raise ValueError(
                f"{len(names)} property names > {MAX_BREAKDOWN_PROPERTIES}, the most broken down"
            )
        hashed = cls.keys(str(info.data.get("hashed_fields", "")))
        for name in names:
            if any(mark in name for mark in '[]{}"'):
                raise ValueError(
                    f"{name!r}: BA_BREAKDOWN_PROPERTIES is comma-separated top-level property "
                    "names (plan,tier), not JSON"
                )
            if name in hashed:
                raise ValueError(f"{name!r} is hashed (BA_HASHED_FIELDS): no breakdown by it")
            if _identifying(name):
                raise ValueError(f"{name!r} names a person or a secret: no breakdown by it")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: str) -> str:
        for entry in cls.keys(value):
            if not _HOST_ENTRY.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a host name, [IPv6] or either with :port")
        return value

    @field_validator("pubsub_topic", "pubsub_subscription", "firestore_database")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator(
        "pubsub_topic",
        "pubsub_subscription",
        "pubsub_dead_letter_topic",
        "pubsub_dead_letter_subscription",
    )
    @classmethod
    def _pubsub_name(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return value
        name = _short(value)
        if not _PUBSUB_ID.fullmatch(name) or name.startswith("goog"):
            raise ValueError(
                f"{name!r} is not a Pub/Sub name: a letter, then 2 to 254 letters, digits or "
                "- _ . ~ + %, not starting with goog"
            )
        return value

    @field_validator("firestore_database")
    @classmethod
    def _firestore_database(cls, value: str) -> str:
        problem = database_id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        needed = self.message_retention_days + self.replay_window_days
        if self.raw_retention_days < needed:
            raise ValueError(
                f"BA_RAW_RETENTION_DAYS={self.raw_retention_days:g} is shorter than the message "
                f"retention ({self.message_retention_days:g} d) plus the replay window "
                f"({self.replay_window_days:g} d): a redelivered event could be counted twice"
            )
        reach_back_days = self._behavior_reach_s() / DAY
        needed_days = self.max_event_age_days + reach_back_days
        if self.raw_retention_days < needed_days:
            raise ValueError(
                f"BA_RAW_RETENTION_DAYS={self.raw_retention_days:g} is shorter than the "
                f"{round(needed_days, 4):g} d it needs: the oldest accepted event "
                f"(BA_MAX_EVENT_AGE_DAYS={self.max_event_age_days:g}) plus how far sessions, "
                f"funnels and identity links reach back ({round(reach_back_days, 4):g} d); "
                "shorter, their recomputation would miss expired raw events"
            )
        if self.hashed_fields.strip() and len(self.hash_salt.get_secret_value()) < 16:
            raise ValueError(
                "BA_HASHED_FIELDS needs BA_HASH_SALT, a secret of at least 16 characters"
            )
        if self.backend == "gcp" and not self.project:
            raise ValueError("BA_BACKEND=gcp needs GOOGLE_CLOUD_PROJECT (or PROJECT_ID)")
        return self

    @property
    def dead_letter_topic(self) -> str:
        return self.pubsub_dead_letter_topic or f"{_short(self.pubsub_topic)}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        return (
            self.pubsub_dead_letter_subscription
            or f"{_short(self.pubsub_subscription)}-dead-letter"
        )

    @property
    def breakdown_dimensions(self) -> tuple[str, ...]:
        """The fixed dimensions BA_BREAKDOWN_DIMENSIONS keeps (in the order of `DIMENSIONS`),
        then `property:<name>` for each of BA_BREAKDOWN_PROPERTIES."""
        fixed = set(_names(self.breakdown_fixed))
        names = _names(self.breakdown_properties)
        return tuple(d for d in DIMENSIONS if d in fixed) + tuple(
            PROPERTY_PREFIX + name for name in names
        )

    @property
    def limits(self) -> Limits:
        return Limits(
            max_future_skew_s=self.max_future_skew_s, max_age_s=self.max_event_age_days * DAY
        )

    def _behavior_reach_s(self) -> float:
        """How far before a new event the behavioral rules read raw events."""
        sessions = SessionRules(self.session_gap_minutes * 60, self.session_max_hours * 3600)
        return behavior_reach_s(
            sessions, parse_funnels(self.funnels), self.identity_window_hours * 3600
        )

    def behavior_rules(self) -> BehaviorRules:
        return BehaviorRules(
            sessions=SessionRules(self.session_gap_minutes * 60, self.session_max_hours * 3600),
            funnels=parse_funnels(self.funnels),
            identity_window_s=self.identity_window_hours * 3600,
            allow_relink=self.identity_allow_relink,
            flag_bots=self.flag_bots,
            truncate_ips=self.truncate_ips,
            hashed_fields=tuple(sorted(self.keys(self.hashed_fields))),
            hash_salt=self.hash_salt.get_secret_value().encode(),
            lateness_s=self.max_event_age_days * DAY,
            breakdowns=BreakdownRules(self.breakdown_dimensions, self.breakdown_values),
        )

    def stored_config(self) -> StoredConfig:
        """The environment's values of what shapes stored numbers (`stored_config`)."""
        return StoredConfig.of(self.behavior_rules(), self.timezone)

    def shaping_set(self) -> frozenset[str]:
        """The fields of `StoredConfig` this environment sets; the others take the values the
        store recorded."""
        return frozenset(
            shaping for name, shaping in _SHAPING.items() if name in self.model_fields_set
        )

    def adopt(self, config: StoredConfig) -> Settings:
        """These settings with the recorded time zone and funnels (what commands show)."""
        funnels = json.dumps([f.to_dict() for f in config.funnels])
        return self.model_copy(update={"timezone": config.timezone, "funnels": funnels})

    @property
    def exports_to_cloud_monitoring(self) -> bool:
        if self.metrics_exporter == "auto":
            return self.backend == "gcp"
        return self.metrics_exporter == "cloud-monitoring"

    @staticmethod
    def keys(value: str) -> frozenset[str]:
        return frozenset(key.strip() for key in value.split(",") if key.strip())


_ENV_NAMES = {
    name: (
        # every aliased field here uses AliasChoices (`_env`)
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        if field.validation_alias is not None
        else name
    )
    for name, field in Settings.model_fields.items()
}


# Setting → the `StoredConfig` field it gives.
_SHAPING = {
    "timezone": "timezone",
    "session_gap_minutes": "session_gap_s",
    "session_max_hours": "session_max_s",
    "identity_window_hours": "identity_window_s",
    "identity_allow_relink": "allow_relink",
    "funnels": "funnels",
    "breakdown_fixed": "breakdown_dimensions",
    "breakdown_properties": "breakdown_dimensions",
    "breakdown_values": "breakdown_values",
}


def shaping_env_name(field: str) -> str:
    """The environment variable that sets the `StoredConfig` field `field` (e.g. BA_TIMEZONE)."""
    name = next(name for name, shaping in _SHAPING.items() if shaping == field)
    return str(_ENV_NAMES[name])


def _names(value: str) -> tuple[str, ...]:
    """Comma-separated names, stripped, without empty ones and repeats, in order."""
    return tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))


def _identifying(name: str) -> bool:
    """Whether a property name is id-like or secret (`_IDENTIFYING`): broken down, it would
    list people, and its values outlive `forget`."""
    compact = re.sub(r"[\s_.\-]", "", name.lower())
    return compact in _IDENTIFYING or any(word in compact for word in _IDENTIFYING_WORDS)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# `BA_` names read outside `Settings`: the write key `generate` and `loadtest` send, the dev
# script's virtualenv, and the test suite's switches.
_OTHER_NAMES = frozenset({"BA_WRITE_KEY", "BA_VENV", "BA_RPC_RECORD", "BA_GCP_FAULT_MESSAGES"})


def unknown_names(environ: Mapping[str, str], env_file: Path = Path(".env")) -> list[str]:
    """The `BA_` names set in `environ` or in `env_file` (read as `Settings` reads it) that
    nothing reads, sorted, each followed by the closest known name when one is close, as
    `BA_SESION_GAP (did you mean BA_SESSION_GAP?)`: a misspelt setting is otherwise ignored
    without a word."""
    known = {
        choice
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for choice in field.validation_alias.choices
        if isinstance(choice, str)
    } | _OTHER_NAMES
    from_file = dotenv_values(env_file) if env_file.is_file() else {}
    unknown = sorted({n for n in (*environ, *from_file) if n.startswith("BA_")} - known)
    said = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        said.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return said


def unreadable_env_lines(env_file: Path = Path(".env")) -> list[int]:
    """The line numbers (1-based) of `env_file` that are no `NAME=value` python-dotenv can
    read: it skips them, with a warning of its own that names no file."""
    try:
        with env_file.open(encoding="utf-8") as stream:
            return [binding.original.line for binding in parse_stream(stream) if binding.error]
    except (OSError, UnicodeDecodeError):  # no file, or none to read: nothing to say of lines
        return []


def _set_name(location: str, env_file: Path = Path(".env")) -> str:
    """The variable a refused value came from, given the error's location (a field's name, or
    its first variable's): of that field's variables (`PORT` or `BA_API_PORT`), the first set
    in the environment, else the first set in `env_file`, case aside, as `Settings` looks them
    up; else the field's first variable."""
    for field, info in Settings.model_fields.items():
        names = [n for n in getattr(info.validation_alias, "choices", ()) if isinstance(n, str)]
        if location == field or location in names:
            from_file = dotenv_values(env_file) if env_file.is_file() else {}
            for source in (os.environ, from_file):
                present = {name.upper() for name in source}
                set_here = [name for name in names if name.upper() in present]
                if set_here:
                    return set_here[0]
            return str(_ENV_NAMES[field])
    return location


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise ConfigError with one readable line when a value is wrong (or
    `.env` is no UTF-8 text)."""
    try:
        # pydantic-settings takes field names as keyword overrides
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{Path('.env').resolve()} is not UTF-8 text (byte {exc.start}): fix or remove it"
        ) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        location = error["loc"][0] if error["loc"] else ""
        name = _set_name(str(location))
        message = error["msg"].removeprefix("Value error, ")
        if name:
            raise ConfigError(f"invalid {name}: {message}") from None
        raise ConfigError(f"invalid configuration: {message}") from None
