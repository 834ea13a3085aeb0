"""Settings read once from the environment or `.env`, so every module sees one frozen view."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from decouple import AutoConfig

from pats_trio.broker.redis_url import RedisURLError, parse_redis_url
from pats_trio.upstream.client import Credentials

DEFAULT_STREAM_URL = "https://stream.twitter.com/1.1"

Source = Literal["emulator", "twitter", "bluesky"]
SOURCES: tuple[Source, ...] = ("emulator", "twitter", "bluesky")
DEFAULT_BLUESKY_HOSTS = (
    "wss://jetstream1.us-east.bsky.network",
    "wss://jetstream2.us-east.bsky.network",
    "wss://jetstream1.us-west.bsky.network",
    "wss://jetstream2.us-west.bsky.network",
)
DEFAULT_BLUESKY_APPVIEW = "https://public.api.bsky.app"
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server can be told. Secrets stay out of the repr."""

    twitter_stream_url: str = DEFAULT_STREAM_URL
    twitter_consumer_key: str = field(default="", repr=False)
    twitter_consumer_secret: str = field(default="", repr=False)
    twitter_access_token: str = field(default="", repr=False)
    twitter_access_token_secret: str = field(default="", repr=False)
    twitter_delimited: bool = False
    source_setting: str = ""
    """PATS_SOURCE as given; empty means "twitter" with credentials, else "emulator"."""
    bluesky_hosts: tuple[str, ...] = DEFAULT_BLUESKY_HOSTS
    bluesky_appview: str = DEFAULT_BLUESKY_APPVIEW
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    redis_url: str = field(default="", repr=False)
    redis_prefix: str = "pats"
    redis_lease_seconds: float = 10.0
    redis_heartbeat_seconds: float = 2.0
    redis_stream_maxlen: int = 10_000
    history_size: int = 20
    linger_seconds: float = 30.0
    filter_debounce_seconds: float = 1.0
    min_reconnect_seconds: float = 5.0
    max_connects_per_5min: int = 20
    client_queue_size: int = 256
    slow_client_seconds: float = 30.0
    shutdown_grace_seconds: float = 10.0
    allowed_origins: frozenset[str] = frozenset()
    trusted_proxy_header: str = ""
    max_clients: int = 10_000
    max_clients_per_ip: int = 50
    max_filter_length: int = 4096
    max_message_bytes: int = 4096
    filter_changes_per_minute: int = 30
    emulator_rate: float = 5.0
    emulator_seed: int | None = None

    @property
    def credentials(self) -> Credentials | None:
        """OAuth 1.0a credentials, or None when any of the four is missing."""
        parts = (
            self.twitter_consumer_key,
            self.twitter_consumer_secret,
            self.twitter_access_token,
            self.twitter_access_token_secret,
        )
        if not all(parts):
            return None
        return Credentials(*parts)

    @property
    def source(self) -> Source:
        """Without credentials there is nothing to sign Twitter requests with: the emulator."""
        if self.source_setting == "bluesky":
            return "bluesky"
        if self.source_setting == "emulator":
            return "emulator"
        return "twitter" if self.credentials is not None else "emulator"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name, spec in self.__dataclass_fields__.items()
            if spec.repr
        )
        masked = "credentials=" + ("'***'" if self.credentials else "None")
        return f"Settings({shown}, {masked})"


def _origins(value: str) -> frozenset[str]:
    origins = frozenset(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise SettingsError(f"PATS_ALLOWED_ORIGINS entries must be http(s) origins: {origin!r}")
    return origins


def _delimited(value: str) -> bool:
    if value.strip().lower() not in ("", "length"):
        raise SettingsError(f"TWITTER_DELIMITED must be empty or 'length', got {value!r}")
    return bool(value.strip())


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; keyword overrides win (tests, CLI flags)."""
    env = AutoConfig(search_path=".")
    values: dict[str, Any] = {
        "twitter_stream_url": env("TWITTER_STREAM_URL", default=DEFAULT_STREAM_URL).rstrip("/"),
        "twitter_consumer_key": env("TWITTER_CONSUMER_KEY", default=""),
        "twitter_consumer_secret": env("TWITTER_CONSUMER_SECRET", default=""),
        "twitter_access_token": env("TWITTER_ACCESS_TOKEN", default=""),
        "twitter_access_token_secret": env("TWITTER_ACCESS_TOKEN_SECRET", default=""),
        "twitter_delimited": env("TWITTER_DELIMITED", default="", cast=_delimited),
        "source_setting": env("PATS_SOURCE", default="").strip().lower(),
        "bluesky_hosts": env(
            "PATS_BLUESKY_HOSTS",
            default=",".join(DEFAULT_BLUESKY_HOSTS),
            cast=lambda v: tuple(h.strip().rstrip("/") for h in v.split(",") if h.strip()),
        ),
        "bluesky_appview": env("PATS_BLUESKY_APPVIEW", default=DEFAULT_BLUESKY_APPVIEW).rstrip("/"),
        "host": env("PATS_HOST", default="127.0.0.1"),
        "port": env("PATS_PORT", default=8000, cast=int),
        "log_level": env("LOG_LEVEL", default="INFO").upper(),
        "log_format": env("LOG_FORMAT", default="text").strip().lower(),
        "redis_url": env("REDIS_URL", default="").strip(),
        "redis_prefix": env("PATS_REDIS_PREFIX", default="pats"),
        "redis_lease_seconds": env("PATS_REDIS_LEASE_SECONDS", default=10.0, cast=float),
        "redis_heartbeat_seconds": env("PATS_REDIS_HEARTBEAT_SECONDS", default=2.0, cast=float),
        "redis_stream_maxlen": env("PATS_REDIS_STREAM_MAXLEN", default=10_000, cast=int),
        "history_size": env("PATS_HISTORY", default=20, cast=int),
        "linger_seconds": env("PATS_LINGER_SECONDS", default=30.0, cast=float),
        "filter_debounce_seconds": env("PATS_FILTER_DEBOUNCE_SECONDS", default=1.0, cast=float),
        "min_reconnect_seconds": env("PATS_MIN_RECONNECT_SECONDS", default=5.0, cast=float),
        "max_connects_per_5min": env("PATS_MAX_CONNECTS_PER_5MIN", default=20, cast=int),
        "client_queue_size": env("PATS_CLIENT_QUEUE_SIZE", default=256, cast=int),
        "allowed_origins": env("PATS_ALLOWED_ORIGINS", default="", cast=_origins),
        "trusted_proxy_header": env("PATS_TRUSTED_PROXY_HEADER", default=""),
        "max_clients": env("PATS_MAX_CLIENTS", default=10_000, cast=int),
        "max_clients_per_ip": env("PATS_MAX_CLIENTS_PER_IP", default=50, cast=int),
        "max_filter_length": env("PATS_MAX_FILTER_LENGTH", default=4096, cast=int),
        "max_message_bytes": env("PATS_MAX_MESSAGE_BYTES", default=4096, cast=int),
        "filter_changes_per_minute": env("PATS_FILTER_CHANGES_PER_MINUTE", default=30, cast=int),
        "shutdown_grace_seconds": env("PATS_SHUTDOWN_GRACE_SECONDS", default=10.0, cast=float),
        "slow_client_seconds": env("PATS_SLOW_CLIENT_SECONDS", default=30.0, cast=float),
        "emulator_rate": env("PATS_EMULATOR_RATE", default=5.0, cast=float),
        "emulator_seed": env(
            "PATS_EMULATOR_SEED", default="", cast=lambda v: int(v) if v else None
        ),
    }
    values.update(overrides)
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Fail at start-up, with the setting's name, rather than at the first viewer."""
    if settings.log_level not in logging.getLevelNamesMapping():
        raise SettingsError(f"LOG_LEVEL must be a logging level name, got {settings.log_level!r}")
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"LOG_FORMAT must be 'text' or 'json', got {settings.log_format!r}")
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"PATS_PORT must be 0..65535, got {settings.port}")
    if settings.client_queue_size < 1:
        raise SettingsError("PATS_CLIENT_QUEUE_SIZE must be at least 1")
    if settings.linger_seconds < 0:
        raise SettingsError("PATS_LINGER_SECONDS must be 0 or more")
    if settings.filter_debounce_seconds < 0:
        raise SettingsError("PATS_FILTER_DEBOUNCE_SECONDS must be 0 or more")
    if settings.min_reconnect_seconds < 0:
        raise SettingsError("PATS_MIN_RECONNECT_SECONDS must be 0 or more")
    if settings.max_connects_per_5min < 2:
        raise SettingsError("PATS_MAX_CONNECTS_PER_5MIN must be at least 2 (a restart needs two)")
    for name, limit in (
        ("PATS_MAX_CLIENTS", settings.max_clients),
        ("PATS_MAX_CLIENTS_PER_IP", settings.max_clients_per_ip),
        ("PATS_MAX_FILTER_LENGTH", settings.max_filter_length),
        ("PATS_MAX_MESSAGE_BYTES", settings.max_message_bytes),
        ("PATS_FILTER_CHANGES_PER_MINUTE", settings.filter_changes_per_minute),
    ):
        if limit < 1:
            raise SettingsError(f"{name} must be at least 1, got {limit}")
    _positive("PATS_SHUTDOWN_GRACE_SECONDS", settings.shutdown_grace_seconds)
    _positive("PATS_SLOW_CLIENT_SECONDS", settings.slow_client_seconds)
    if settings.emulator_rate < 0:
        raise SettingsError("PATS_EMULATOR_RATE must be 0 or more")
    if not settings.twitter_stream_url.startswith(("http://", "https://")):
        raise SettingsError("TWITTER_STREAM_URL must be an http(s) URL")
    if settings.source_setting not in ("", *SOURCES):
        raise SettingsError(
            f"PATS_SOURCE must be emulator, twitter or bluesky, got {settings.source_setting!r}"
        )
    if settings.source_setting == "twitter" and settings.credentials is None:
        raise SettingsError("PATS_SOURCE=twitter needs all four TWITTER_* credentials")
    if settings.source == "bluesky":
        if not settings.bluesky_hosts:
            raise SettingsError("PATS_BLUESKY_HOSTS must name at least one Jetstream host")
        for host in settings.bluesky_hosts:
            if not host.startswith(("ws://", "wss://")):
                raise SettingsError(f"PATS_BLUESKY_HOSTS entries must be ws(s) URLs: {host!r}")
        if not settings.bluesky_appview.startswith(("http://", "https://")):
            raise SettingsError("PATS_BLUESKY_APPVIEW must be an http(s) URL")
    if settings.history_size < 0:
        raise SettingsError("PATS_HISTORY must be 0 or more")
    if settings.redis_url:
        try:
            parse_redis_url(settings.redis_url)
        except RedisURLError as exc:
            raise SettingsError(f"REDIS_URL: {exc}") from None
        _positive("PATS_REDIS_LEASE_SECONDS", settings.redis_lease_seconds)
        _positive("PATS_REDIS_HEARTBEAT_SECONDS", settings.redis_heartbeat_seconds)
        if settings.redis_stream_maxlen < 100:
            raise SettingsError("PATS_REDIS_STREAM_MAXLEN must be at least 100")
        if not settings.redis_prefix or any(c.isspace() for c in settings.redis_prefix):
            raise SettingsError("PATS_REDIS_PREFIX must be a non-empty word")
