"""Who may open a viewer socket, and how much each viewer may ask of the server.

Every refusal is an `AdmissionError` with a code and a sentence a person understands; the app
turns it into an `error` frame and a close code. Nothing here does I/O, so it is easy to test.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from pats_trio.config import Settings

CHANGE_WINDOW_SECONDS = 60.0


class AdmissionError(Exception):
    """A request the server will not serve; `code` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What each viewer and each address may ask; defaults are the settings' own."""

    max_clients: int = Settings.max_clients
    max_clients_per_ip: int = Settings.max_clients_per_ip
    max_filter_length: int = Settings.max_filter_length
    max_message_bytes: int = Settings.max_message_bytes
    filter_changes_per_minute: int = Settings.filter_changes_per_minute


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Same origin (the page's host) or one listed in PATS_ALLOWED_ORIGINS.

    A request without Origin is not from a browser page (a terminal client, a test), so no other
    site can be riding on a visitor's browser: cross-site WebSocket hijacking needs a browser.
    """
    if origin is None:
        return True
    if origin.rstrip("/").lower() in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and host is not None and parts.netloc == host.lower()


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's Host is one this server answers to (PATS_ALLOWED_HOSTS).

    With the list empty every Host is served. With it set, a page on another name that resolves
    to this server (DNS rebinding) is refused: the same-origin check alone compares the page's
    origin with a Host header that page chose."""
    if not allowed:
        return True
    if host is None:
        return False
    host = host.lower()
    return host in allowed or host.rsplit(":", 1)[0] in allowed


def client_address(peer: str, headers: dict[str, str], trusted_header: str | None) -> str:
    """The viewer's address: the peer, or the nearest hop the trusted proxy reports."""
    if trusted_header:
        forwarded = headers.get(trusted_header.lower(), "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return peer


class ClientCounter:
    """Counts open viewers in all and per address, refusing those over the limits."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._per_address: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str) -> _Admission:
        """A context for one viewer's stay; raises AdmissionError when it may not come in."""
        if self.total >= self._limits.max_clients:
            raise AdmissionError(
                "server_full", "The server has as many viewers as it can take. Try again soon."
            )
        if self._per_address[address] >= self._limits.max_clients_per_ip:
            raise AdmissionError(
                "too_many_connections",
                f"At most {self._limits.max_clients_per_ip} viewers may connect from one address.",
            )
        self.total += 1
        self._per_address[address] += 1
        return _Admission(self, address)

    def _leave(self, address: str) -> None:
        self.total -= 1
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]


class _Admission:
    """A counted viewer; a class, not a generator, because one lives as long as each viewer."""

    __slots__ = ("_address", "_counter")

    def __init__(self, counter: ClientCounter, address: str) -> None:
        self._counter, self._address = counter, address

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._counter._leave(self._address)


class ChangeRate:
    """In-band filter changes one viewer may make per minute (each can restart the upstream)."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and self._times[0] <= now - CHANGE_WINDOW_SECONDS:
            self._times.popleft()
        if len(self._times) >= self._per_minute:
            return False
        self._times.append(now)
        return True
