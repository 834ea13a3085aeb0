"""Settings read once from the environment or `.env`, so every module sees one frozen view."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from decouple import AutoConfig

from pats_trio.credentials import BearerToken, Credentials
from pats_trio.redis_url import RedisURLError, parse_redis_url

DEFAULT_STREAM_URL = "https://stream.twitter.com/1.1"

DEFAULT_X_API_URL = "https://api.x.com"

Source = Literal["emulator", "twitter", "bluesky", "x"]
SOURCES: tuple[Source, ...] = ("emulator", "twitter", "bluesky", "x")
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


def _strip_slash(value: str) -> str:
    return value.rstrip("/")


def _word(value: str) -> str:
    return value.strip().lower()


def _entries(value: str) -> list[str]:
    """A comma-separated list, each entry stripped, empty ones dropped."""
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _hosts(value: str) -> tuple[str, ...]:
    return tuple(host.rstrip("/") for host in _entries(value))


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _origins(value: str) -> frozenset[str]:
    origins = frozenset(origin.rstrip("/").lower() for origin in _entries(value))
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise SettingsError(f"PATS_ALLOWED_ORIGINS entries must be http(s) origins: {origin!r}")
    return origins


def _hosts_allowed(value: str) -> frozenset[str]:
    hosts = frozenset(host.lower() for host in _entries(value))
    for host in hosts:
        if "/" in host or any(c.isspace() for c in host):
            raise SettingsError(f"PATS_ALLOWED_HOSTS entries are host or host:port: {host!r}")
    return hosts


def _delimited(value: str) -> bool:
    if value.strip().lower() not in ("", "length"):
        raise SettingsError(f"TWITTER_DELIMITED must be empty or 'length', got {value!r}")
    return bool(value.strip())


def _setting(
    env: str, default: Any, parse: Callable[[str], Any] = str, *, secret: bool = False
) -> Any:
    """One row of the settings table: its variable, its default and how its text is read."""
    return field(default=default, repr=not secret, metadata={"env": env, "parse": parse})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server can be told, each setting written once: its field, the environment
    variable that sets it, its default and how its text is read. Secrets stay out of the repr.

    Constructors elsewhere take their values from here (see `app.create_app`), so a default has
    this one home; `load_settings` leaves a field whose variable is unset at this default.
    """

    twitter_stream_url: str = _setting("TWITTER_STREAM_URL", DEFAULT_STREAM_URL, _strip_slash)
    twitter_consumer_key: str = _setting("TWITTER_CONSUMER_KEY", "", secret=True)
    twitter_consumer_secret: str = _setting("TWITTER_CONSUMER_SECRET", "", secret=True)
    twitter_access_token: str = _setting("TWITTER_ACCESS_TOKEN", "", secret=True)
    twitter_access_token_secret: str = _setting("TWITTER_ACCESS_TOKEN_SECRET", "", secret=True)
    twitter_delimited: bool = _setting("TWITTER_DELIMITED", False, _delimited)
    source_setting: str = _setting("PATS_SOURCE", "", _word)
    """PATS_SOURCE as given; empty means "twitter" with credentials, else "emulator"."""
    bluesky_hosts: tuple[str, ...] = _setting("PATS_BLUESKY_HOSTS", DEFAULT_BLUESKY_HOSTS, _hosts)
    bluesky_appview: str = _setting("PATS_BLUESKY_APPVIEW", DEFAULT_BLUESKY_APPVIEW, _strip_slash)
    x_bearer_token: str = _setting("X_BEARER_TOKEN", "", str.strip, secret=True)
    x_api_url: str = _setting("X_API_URL", DEFAULT_X_API_URL, _strip_slash)
    x_max_posts_per_day: int = _setting("PATS_X_MAX_POSTS_PER_DAY", 2_000, int)
    """X bills each post read; the stream stops for the rest of the UTC day at this many
    (0: no cap)."""
    x_price_per_post: float = _setting("PATS_X_PRICE_PER_POST", 0.005, float)
    """What X charges per post read, for the estimated spend in /metrics and the log."""
    host: str = _setting("PATS_HOST", "127.0.0.1")
    port: int = _setting("PATS_PORT", 8000, int)
    log_level: str = _setting("LOG_LEVEL", "INFO", str.upper)
    log_format: LogFormat = _setting("LOG_FORMAT", "text", _word)
    redis_url: str = _setting("REDIS_URL", "", str.strip, secret=True)
    redis_prefix: str = _setting("PATS_REDIS_PREFIX", "pats")
    redis_lease_seconds: float = _setting("PATS_REDIS_LEASE_SECONDS", 10.0, float)
    redis_heartbeat_seconds: float = _setting("PATS_REDIS_HEARTBEAT_SECONDS", 2.0, float)
    redis_stream_maxlen: int = _setting("PATS_REDIS_STREAM_MAXLEN", 10_000, int)
    history_size: int = _setting("PATS_HISTORY", 20, int)
    linger_seconds: float = _setting("PATS_LINGER_SECONDS", 30.0, float)
    filter_debounce_seconds: float = _setting("PATS_FILTER_DEBOUNCE_SECONDS", 1.0, float)
    min_reconnect_seconds: float = _setting("PATS_MIN_RECONNECT_SECONDS", 5.0, float)
    max_connects_per_5min: int = _setting("PATS_MAX_CONNECTS_PER_5MIN", 20, int)
    client_queue_size: int = _setting("PATS_CLIENT_QUEUE_SIZE", 256, int)
    slow_client_seconds: float = _setting("PATS_SLOW_CLIENT_SECONDS", 30.0, float)
    shutdown_grace_seconds: float = _setting("PATS_SHUTDOWN_GRACE_SECONDS", 10.0, float)
    allowed_origins: frozenset[str] = _setting("PATS_ALLOWED_ORIGINS", frozenset(), _origins)
    allowed_hosts: frozenset[str] = _setting("PATS_ALLOWED_HOSTS", frozenset(), _hosts_allowed)
    """Host headers served (`name` for any port, or `name:port`); empty serves any, which a
    DNS-rebinding page can use to reach a server bound to a private address."""
    trusted_proxy_header: str = _setting("PATS_TRUSTED_PROXY_HEADER", "")
    max_clients: int = _setting("PATS_MAX_CLIENTS", 10_000, int)
    max_clients_per_ip: int = _setting("PATS_MAX_CLIENTS_PER_IP", 50, int)
    max_filter_length: int = _setting("PATS_MAX_FILTER_LENGTH", 4096, int)
    max_message_bytes: int = _setting("PATS_MAX_MESSAGE_BYTES", 4096, int)
    filter_changes_per_minute: int = _setting("PATS_FILTER_CHANGES_PER_MINUTE", 30, int)
    max_phrases_per_viewer: int = _setting("PATS_MAX_PHRASES_PER_VIEWER", 400, int)
    max_phrases_per_address: int = _setting("PATS_MAX_PHRASES_PER_ADDRESS", 400, int)
    """Hard caps, the whole union by default: the fair share (`shares.py`) is what keeps room
    for newcomers; these bound what one viewer or address may ask at all."""
    max_restarts_per_address_5min: int = _setting("PATS_MAX_RESTARTS_PER_ADDRESS_5MIN", 5, int)
    """Filter restarts one address's viewers may cause in five minutes, after a burst (see
    `shares.UpstreamPacer`); one viewer gets half of them."""
    ws_ping_seconds: float = _setting("PATS_WS_PING_SECONDS", 20.0, float)
    """hypercorn pings every viewer this often; one silent for two intervals is dropped."""
    ws_message_seconds: float = _setting("PATS_WS_MESSAGE_SECONDS", 10.0, float)
    """A WebSocket message must arrive whole this long after its first byte, or close 1008."""
    emulator_rate: float = _setting("PATS_EMULATOR_RATE", 5.0, float)
    emulator_seed: int | None = _setting("PATS_EMULATOR_SEED", None, _optional_int)

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
    def x_token(self) -> BearerToken | None:
        """X's app-only Bearer token, or None when X_BEARER_TOKEN is not set."""
        return BearerToken(self.x_bearer_token) if self.x_bearer_token else None

    @property
    def missing_credentials(self) -> tuple[str, ...]:
        """The Twitter variables not set when some are: a half-done set-up, which serves the
        demo rather than Twitter, and should say why."""
        given = {
            "TWITTER_CONSUMER_KEY": self.twitter_consumer_key,
            "TWITTER_CONSUMER_SECRET": self.twitter_consumer_secret,
            "TWITTER_ACCESS_TOKEN": self.twitter_access_token,
            "TWITTER_ACCESS_TOKEN_SECRET": self.twitter_access_token_secret,
        }
        if not any(given.values()):
            return ()
        return tuple(name for name, value in given.items() if not value)

    @property
    def source(self) -> Source:
        """Without credentials there is nothing to sign Twitter requests with: the emulator."""
        if self.source_setting == "bluesky":
            return "bluesky"
        if self.source_setting == "emulator":
            return "emulator"
        if self.source_setting == "x":
            return "x"
        return "twitter" if self.credentials is not None else "emulator"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name, spec in self.__dataclass_fields__.items()
            if spec.repr
        )
        masked = "credentials=" + ("'***'" if self.credentials else "None")
        masked += ", x_token=" + ("'***'" if self.x_bearer_token else "None")
        return f"Settings({shown}, {masked})"


_KINDS: dict[Callable[[str], Any], str] = {int: "a whole number", float: "a number"}


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; keyword overrides win (tests, CLI flags).

    A variable that is not set leaves its setting at the default in `Settings`, the only place
    a default is written. A value that cannot be read is a `SettingsError` naming the variable.
    """
    env = AutoConfig(search_path=".")
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        name = spec.metadata["env"]
        raw = env(name, default=None)
        if raw is None:
            continue
        try:
            values[spec.name] = spec.metadata["parse"](raw)
        except SettingsError:
            raise
        except ValueError as exc:
            kind = _KINDS.get(spec.metadata["parse"])
            detail = f"must be {kind}" if kind else f"cannot be read ({exc})"
            raise SettingsError(f"{name} {detail}, got {raw!r}") from None
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
        ("PATS_MAX_PHRASES_PER_VIEWER", settings.max_phrases_per_viewer),
        ("PATS_MAX_PHRASES_PER_ADDRESS", settings.max_phrases_per_address),
        ("PATS_MAX_RESTARTS_PER_ADDRESS_5MIN", settings.max_restarts_per_address_5min),
    ):
        if limit < 1:
            raise SettingsError(f"{name} must be at least 1, got {limit}")
    _positive("PATS_SHUTDOWN_GRACE_SECONDS", settings.shutdown_grace_seconds)
    if settings.ws_ping_seconds < 0:
        raise SettingsError("PATS_WS_PING_SECONDS must be 0 (no pings) or more")
    _positive("PATS_SLOW_CLIENT_SECONDS", settings.slow_client_seconds)
    _positive("PATS_WS_MESSAGE_SECONDS", settings.ws_message_seconds)
    if settings.emulator_rate < 0:
        raise SettingsError("PATS_EMULATOR_RATE must be 0 or more")
    if not settings.twitter_stream_url.startswith(("http://", "https://")):
        raise SettingsError("TWITTER_STREAM_URL must be an http(s) URL")
    if settings.source_setting not in ("", *SOURCES):
        raise SettingsError(
            f"PATS_SOURCE must be emulator, twitter, bluesky or x, got {settings.source_setting!r}"
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
    if settings.source == "x":
        if not settings.x_api_url.startswith(("http://", "https://")):
            raise SettingsError("X_API_URL must be an http(s) URL")
        if settings.x_max_posts_per_day < 0:
            raise SettingsError("PATS_X_MAX_POSTS_PER_DAY must be 0 (no cap) or more")
        if settings.x_price_per_post < 0:
            raise SettingsError("PATS_X_PRICE_PER_POST must be 0 or more")
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
