"""REDIS_URL, read into what the Redis client needs; the password never reaches a repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 6379


class RedisURLError(ValueError):
    """REDIS_URL cannot be used; the message names the part that is wrong, never the password."""


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int = DEFAULT_PORT
    database: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RedisURLError("it is not a URL of the form redis://host:port/db") from None
    if parts.scheme not in ("redis", "rediss"):
        raise RedisURLError("the scheme must be redis:// or rediss://")
    if not parts.hostname:
        raise RedisURLError("it names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise RedisURLError("the path must be a database number, as in redis://host:6379/0")
    return RedisTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        database=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
