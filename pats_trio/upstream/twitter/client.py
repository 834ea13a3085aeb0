"""Opens one streaming HTTP request to the v1.1 streaming API, or the emulator, with httpx.

`open_stream` signs the request with OAuth 1.0a when it has credentials, checks the answer, and
yields the raw body chunks; framing them into messages is `protocol.py`'s job.

Error handling: a non-200 answer raises `StreamHTTPError`; any transport failure, at connect time
or while reading, raises `StreamNetworkError`. When the server ends the response body cleanly the
chunk iterator simply stops: the caller treats that as "stream ended", not as an error. No message
of these exceptions contains a credential.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlencode

import httpx
import oauthlib.oauth1
import orjson
import trio

from pats_trio import __version__
from pats_trio.credentials import Credentials
from pats_trio.events import StreamKind
from pats_trio.upstream.http_stream import RawChunks, describe_transport_error

LOGGER = logging.getLogger(__name__)

USER_AGENT = f"pats-trio/{__version__}"
CONNECT_TIMEOUT_SECONDS = 10.0
WRITE_TIMEOUT_SECONDS = 10.0
POOL_TIMEOUT_SECONDS = 10.0
STREAM_TIMEOUT = httpx.Timeout(
    connect=CONNECT_TIMEOUT_SECONDS,
    read=None,
    write=WRITE_TIMEOUT_SECONDS,
    pool=POOL_TIMEOUT_SECONDS,
)
"""No read timeout: the runner's stall watch decides when a quiet stream is dead."""

MAX_CONNECTIONS = 4
"""Two long-lived streams, plus the overlap while one of them is restarted on a new track."""
MAX_KEEPALIVE_CONNECTIONS = 0
"""Never reuse a pooled connection: a reconnect after a backoff would meet one the server closed
while we waited, and fail with a spurious network error. Streams gain nothing from pooling."""

MAX_REASON_BYTES = 4096
MAX_REASON_CHARS = 200
REASON_READ_SECONDS = 5.0
"""An error body is read only this long: with no read timeout, a silent server would hang us."""

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_PATHS: dict[str, str] = {
    "sample": "/statuses/sample.json",
    "filter": "/statuses/filter.json",
}
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class StreamError(Exception):
    """The stream could not be opened or read."""


class StreamHTTPError(StreamError):
    """The server answered with something other than 200."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


class StreamNetworkError(StreamError):
    """Connecting, sending or reading failed below HTTP (wraps httpx.TransportError)."""


def endpoint_url(base_url: str, kind: StreamKind) -> str:
    """The URL of a stream kind under a base such as `https://stream.twitter.com/1.1`."""
    try:
        path = _PATHS[kind]
    except KeyError:
        raise ValueError(f"unknown stream kind {kind!r}") from None
    return base_url.rstrip("/") + path


def make_http_client() -> httpx.AsyncClient:
    """An HTTP/1.1 client suited to a few long-lived streams; the caller closes it."""
    return httpx.AsyncClient(
        http1=True,
        http2=False,
        timeout=STREAM_TIMEOUT,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
        ),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Everything sent for one stream request, signed if credentials were given.

    The headers stay out of the repr: the Authorization header names the consumer key and token.
    """

    method: Literal["GET", "POST"]
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes | None


def build_request(
    base_url: str,
    kind: StreamKind,
    track: str = "",
    *,
    credentials: Credentials | None,
    delimited: bool = False,
    stall_warnings: bool = True,
) -> StreamRequest:
    """The request `open_stream` sends: GET with a query for sample, a form POST for filter."""
    url = endpoint_url(base_url, kind)
    params: list[tuple[str, str]] = []
    if kind == "filter":
        if not track:
            raise ValueError("a filter stream needs a non-empty track")
        params.append(("track", track))
    if delimited:
        params.append(("delimited", "length"))
    if stall_warnings:
        params.append(("stall_warnings", "true"))
    # %20 rather than + for spaces: unambiguous for every decoder, and so for the signature.
    encoded = urlencode(params, quote_via=quote)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    method: Literal["GET", "POST"]
    body: str | None
    if kind == "filter":
        method, body = "POST", encoded
        headers["Content-Type"] = FORM_CONTENT_TYPE
    else:
        method, body = "GET", None
        if encoded:
            url = f"{url}?{encoded}"
    if credentials is not None:
        url, headers, body = _sign(credentials, method, url, headers, body)
    return StreamRequest(method, url, headers, body.encode() if body is not None else None)


def _sign(
    credentials: Credentials,
    method: str,
    url: str,
    headers: dict[str, str],
    body: str | None,
) -> tuple[str, dict[str, str], str | None]:
    client = oauthlib.oauth1.Client(
        credentials.consumer_key,
        client_secret=credentials.consumer_secret,
        resource_owner_key=credentials.access_token,
        resource_owner_secret=credentials.access_token_secret,
        signature_type=oauthlib.oauth1.SIGNATURE_TYPE_AUTH_HEADER,
    )
    signed_url, signed_headers, signed_body = client.sign(
        url, http_method=method, body=body, headers=headers
    )
    return str(signed_url), dict(signed_headers), signed_body


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    base_url: str,
    kind: StreamKind,
    track: str = "",
    *,
    credentials: Credentials | None,
    delimited: bool = False,
    stall_warnings: bool = True,
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Open one stream and yield its raw body chunks once the server has answered 200.

    Resource handling: the response, and with it the connection, is closed when the block exits,
    however it exits. Error handling: `StreamHTTPError` for a non-200 answer, `StreamNetworkError`
    for a transport failure at open time or from the iterator; the iterator stops cleanly when the
    server ends the body. Cancellation passes through untouched.
    """
    request = build_request(
        base_url,
        kind,
        track,
        credentials=credentials,
        delimited=delimited,
        stall_warnings=stall_warnings,
    )
    redact = credentials.redact if credentials is not None else _no_redaction
    LOGGER.debug("opening %s stream: %s %s", kind, request.method, request.url)
    async with AsyncExitStack() as stack:
        try:
            response = await stack.enter_async_context(
                http.stream(
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=request.body,
                    timeout=STREAM_TIMEOUT,
                )
            )
            if response.status_code != 200:
                reason = redact(await _read_reason(response))
                LOGGER.debug("%s stream: HTTP %d %s", kind, response.status_code, reason)
                raise StreamHTTPError(response.status_code, reason)
        except httpx.TransportError as exc:
            raise StreamNetworkError(redact(describe_transport_error(exc))) from exc
        yield RawChunks(response, lambda text: StreamNetworkError(redact(text)))


def _no_redaction(text: str) -> str:
    return text


async def _read_reason(response: httpx.Response) -> str:
    """A short reason from the start of an error body, or the status line's phrase."""
    data = bytearray()
    # Raw bytes: a bogus Content-Encoding on an error body must not turn into a decoding error.
    with trio.move_on_after(REASON_READ_SECONDS):
        try:
            async for piece in response.aiter_raw():
                data += piece
                if len(data) >= MAX_REASON_BYTES:
                    break
        except httpx.TransportError:
            LOGGER.debug("error body cut short after %d bytes", len(data))
    text = bytes(data[:MAX_REASON_BYTES]).decode("utf-8", errors="replace")
    reason = (
        _reason_from_body(text)
        or response.reason_phrase
        or httpx.codes.get_reason_phrase(response.status_code)
        or "no reason given"
    )
    return reason[:MAX_REASON_CHARS]


def _reason_from_body(text: str) -> str:
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    messages: list[str] = []
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list):
            messages = [
                str(error["message"])
                for error in errors
                if isinstance(error, dict) and "message" in error
            ]
        for key in ("detail", "message", "error", "title"):
            if not messages and isinstance(payload.get(key), str):
                messages = [payload[key]]
    return "; ".join(messages) if messages else _SPACE.sub(" ", text).strip()
