"""Tests for the streaming client against a real HTTP server on loopback.

The small ASGI app below stands in for stream.twitter.com only, a boundary the tests cannot reach.
It records what it was sent and answers per route: a stream split mid-message, error statuses, a
connection aborted mid-body, a stream that never ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import hypercorn.config
import hypercorn.trio
import orjson
import pytest
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

import pats_trio
from pats_trio.credentials import Credentials
from pats_trio.emulator.oauth import OAuthCheck
from pats_trio.upstream.twitter import client as client_module
from pats_trio.upstream.twitter import protocol
from pats_trio.upstream.twitter.client import (
    MAX_REASON_CHARS,
    StreamHTTPError,
    StreamNetworkError,
    build_request,
    endpoint_url,
    make_http_client,
    open_stream,
)

pytestmark = pytest.mark.trio

TIMEOUT = 10.0

CREDENTIALS = Credentials(
    consumer_key="consumerKEY0123456789",
    consumer_secret="consumerSECRET0123456789abcdef",
    access_token="12345-accessTOKEN0123456789",
    access_token_secret="accessSECRET0123456789abcdef",
)
ALL_FOUR = (
    CREDENTIALS.consumer_key,
    CREDENTIALS.consumer_secret,
    CREDENTIALS.access_token,
    CREDENTIALS.access_token_secret,
)

TWEET = b'{"id_str":"1","text":"hello","user":{"id_str":"9","screen_name":"a"}}'
STREAM_CHUNKS = [
    TWEET[:20],
    TWEET[20:] + b'\r\n{"lim',
    b'it":{"track":3}}\r\n\r\n',
    b'{"delete":{"status":{"id_str":"1","user_id_str":"9"}}}\r\n',
]
STREAM_MESSAGES: list[protocol.Message] = [
    protocol.Tweet(orjson.loads(TWEET)),
    protocol.Limit(3),
    protocol.KeepAlive(),
    protocol.Delete("1", "9"),
]

ERROR_BODIES: dict[str, tuple[int, bytes]] = {
    "401": (401, b'{"errors":[{"code":32,"message":"Could not authenticate you."}]}'),
    "420": (420, b"Enhance Your Calm\r\n"),
    "500": (500, b"<html><body><h1>Internal Server Error</h1>\n<p>oops</p></body></html>"),
    "503": (503, b""),
    "big": (500, b"x" * 1_000_000),
}


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]

    def signed_uri(self) -> str:
        uri = f"http://{self.headers['host']}{self.path}"
        return f"{uri}?{self.query}" if self.query else uri


@dataclass
class FakeTwitter:
    """An ASGI app; the first path segment picks the behaviour, the rest is the API path."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    disconnected: trio.Event = field(default_factory=trio.Event)

    def base(self, route: str) -> str:
        return f"{self.url}/{route}"

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            event = await receive()
            if event["type"] != "http.request":
                break
            body += event["body"]
            if not event["more_body"]:
                break
        self.requests.append(
            Recorded(
                method=scope["method"],
                path=scope["raw_path"].decode(),
                query=scope["query_string"].decode(),
                body=bytes(body),
                headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            )
        )
        route = scope["path"].split("/")[1]
        if route in ERROR_BODIES:
            status, error_body = ERROR_BODIES[route]
            await self._answer(send, status, error_body)
        elif route == "echo":
            await self._answer(send, 401, self.requests[-1].headers["authorization"].encode())
        elif route == "redirect":
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [(b"location", self.base("ok").encode() + b"/statuses/sample.json")],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif route in ("slow-error", "aborted-error"):
            await self._start(send, 500)
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            if route == "aborted-error":
                await trio.sleep(0.01)
                raise RuntimeError("the fake server drops the connection mid-error-body")
            await self._wait_for_disconnect(receive)
        else:
            await self._start(send, 200)
            for chunk in STREAM_CHUNKS[:1] if route in ("abort", "forever") else STREAM_CHUNKS:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await trio.sleep(0.01)
            if route == "abort":
                raise RuntimeError("the fake server drops the connection mid-body")
            if route == "forever":
                await self._wait_for_disconnect(receive)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, send: ASGISendCallable, status: int) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )

    async def _answer(self, send: ASGISendCallable, status: int, body: bytes) -> None:
        await self._start(send, status)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _wait_for_disconnect(self, receive: ASGIReceiveCallable) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()


def signature_verifies(recorded: Recorded, credentials: Credentials) -> bool:
    headers = {"Authorization": recorded.headers["authorization"]}
    if "content-type" in recorded.headers:
        headers["Content-Type"] = recorded.headers["content-type"]
    return OAuthCheck(credentials).verifies(
        recorded.method, recorded.signed_uri(), recorded.body.decode() or None, headers
    )


@pytest.fixture
async def twitter(nursery: trio.Nursery) -> FakeTwitter:
    app = FakeTwitter()
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    binds: list[str] = await nursery.start(hypercorn.trio.serve, app, config)
    app.url = binds[0]
    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as client:
        yield client


async def test_sample_is_a_get_and_every_byte_arrives_until_a_clean_end(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(http, twitter.base("ok"), "sample", credentials=None) as chunks:
            received = [chunk async for chunk in chunks]
    assert b"".join(received) == b"".join(STREAM_CHUNKS)
    decoder = protocol.StreamDecoder()
    assert [m for chunk in received for m in decoder.feed(chunk)] == STREAM_MESSAGES
    [request] = twitter.requests
    assert (request.method, request.path) == ("GET", "/ok/statuses/sample.json")
    assert request.query == "stall_warnings=true"
    assert request.body == b""
    assert "authorization" not in request.headers
    assert request.headers["user-agent"] == f"pats-trio/{pats_trio.__version__}"
    assert request.headers["accept-encoding"] == "identity"


async def test_query_flags_follow_the_arguments(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(
            http,
            twitter.base("ok"),
            "sample",
            credentials=None,
            delimited=True,
            stall_warnings=False,
        ) as chunks:
            async for _ in chunks:
                pass
    assert twitter.requests[0].query == "delimited=length"


async def test_filter_is_a_signed_form_post_whose_signature_verifies(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    track = "pats,trio café,#hash tag,a+b"
    with trio.fail_after(TIMEOUT):
        async with open_stream(
            http, twitter.base("ok"), "filter", track, credentials=CREDENTIALS, delimited=True
        ) as chunks:
            async for _ in chunks:
                pass
    [request] = twitter.requests
    assert (request.method, request.path, request.query) == (
        "POST",
        "/ok/statuses/filter.json",
        "",
    )
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode(), strict_parsing=True) == {
        "track": [track],
        "delimited": ["length"],
        "stall_warnings": ["true"],
    }
    authorization = request.headers["authorization"]
    assert authorization.startswith("OAuth ")
    assert f'oauth_consumer_key="{CREDENTIALS.consumer_key}"' in authorization
    assert f'oauth_token="{CREDENTIALS.access_token}"' in authorization
    assert 'oauth_signature_method="HMAC-SHA1"' in authorization
    assert "oauth_signature=" in authorization
    assert signature_verifies(request, CREDENTIALS)


async def test_a_signature_made_with_other_secrets_does_not_verify(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(
            http, twitter.base("ok"), "filter", "x", credentials=CREDENTIALS
        ) as chunks:
            async for _ in chunks:
                pass
    [request] = twitter.requests
    other = Credentials(
        CREDENTIALS.consumer_key, "another-secret", CREDENTIALS.access_token, "and-another"
    )
    assert not signature_verifies(request, other)
    tampered = Recorded(
        request.method, request.path, "", b"track=y&stall_warnings=true", request.headers
    )
    assert not signature_verifies(tampered, CREDENTIALS)


async def test_signed_get_verifies_with_its_query(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(
            http, twitter.base("ok"), "sample", credentials=CREDENTIALS, delimited=True
        ) as chunks:
            async for _ in chunks:
                pass
    [request] = twitter.requests
    assert request.query == "delimited=length&stall_warnings=true"
    assert signature_verifies(request, CREDENTIALS)


async def test_filter_without_credentials_sends_no_authorization(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(
            http, twitter.base("ok"), "filter", "trio", credentials=None
        ) as chunks:
            received = b"".join([chunk async for chunk in chunks])
    assert received == b"".join(STREAM_CHUNKS)
    [request] = twitter.requests
    assert request.method == "POST"
    assert request.body == b"track=trio&stall_warnings=true"
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    ("route", "status", "reason"),
    [
        ("401", 401, "Could not authenticate you."),
        ("420", 420, "Enhance Your Calm"),
        ("500", 500, "Internal Server Error oops"),
        ("503", 503, "Service Unavailable"),
    ],
)
async def test_non_200_raises_with_status_and_a_short_reason(
    twitter: FakeTwitter, http: httpx.AsyncClient, route: str, status: int, reason: str
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base(route), "sample", credentials=CREDENTIALS):
            pytest.fail("the block must not run for an error status")
    assert caught.value.status_code == status
    assert caught.value.reason == reason
    assert str(caught.value) == f"HTTP {status}: {reason}"


async def test_redirects_are_not_followed(twitter: FakeTwitter, http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base("redirect"), "sample", credentials=None):
            pytest.fail("the block must not run for a redirect")
    assert caught.value.status_code == 302
    assert len(twitter.requests) == 1


async def test_a_huge_error_body_gives_a_short_reason(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base("big"), "sample", credentials=None):
            pytest.fail("the block must not run for an error status")
    assert caught.value.status_code == 500
    assert 0 < len(caught.value.reason) <= MAX_REASON_CHARS


async def test_an_error_body_that_never_ends_does_not_hang(
    twitter: FakeTwitter, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "REASON_READ_SECONDS", 0.2)
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base("slow-error"), "sample", credentials=None):
            pytest.fail("the block must not run for an error status")
    assert (caught.value.status_code, caught.value.reason) == (500, "partial")
    with trio.fail_after(TIMEOUT):
        await twitter.disconnected.wait()


async def test_an_error_body_cut_short_still_reports_the_status(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base("aborted-error"), "sample", credentials=None):
            pytest.fail("the block must not run for an error status")
    assert (caught.value.status_code, caught.value.reason) == (500, "partial")


async def test_connecting_to_a_closed_port_raises_network_error(http: httpx.AsyncClient) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with trio.fail_after(TIMEOUT), pytest.raises(StreamNetworkError) as caught:
        async with open_stream(
            http, f"http://127.0.0.1:{port}/1.1", "filter", "x", credentials=CREDENTIALS
        ):
            pytest.fail("the block must not run without a connection")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert str(caught.value).startswith("ConnectError")


async def test_server_dropping_mid_stream_raises_network_error_from_the_iterator(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    received: list[bytes] = []

    async def read_until_the_end() -> None:
        async with open_stream(http, twitter.base("abort"), "sample", credentials=None) as chunks:
            async for chunk in chunks:
                received.append(chunk)

    with trio.fail_after(TIMEOUT), pytest.raises(StreamNetworkError) as caught:
        await read_until_the_end()
    assert b"".join(received) == STREAM_CHUNKS[0]
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_leaving_the_block_early_closes_the_connection(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(http, twitter.base("forever"), "sample", credentials=None) as chunks:
            async for chunk in chunks:
                assert chunk == STREAM_CHUNKS[0]
                break
        await twitter.disconnected.wait()


async def test_cancellation_passes_through_and_closes_the_connection(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    received: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(0.5) as scope:
            async with open_stream(
                http, twitter.base("forever"), "sample", credentials=None
            ) as chunks:
                async for chunk in chunks:
                    received.append(chunk)
        assert scope.cancelled_caught
        assert received == [STREAM_CHUNKS[0]]
        await twitter.disconnected.wait()


async def test_credentials_never_appear_in_reprs_or_errors(
    twitter: FakeTwitter, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(StreamHTTPError) as caught:
        async with open_stream(http, twitter.base("echo"), "filter", "x", credentials=CREDENTIALS):
            pytest.fail("the block must not run for an error status")
    # The fake server echoed our Authorization header back as the error body.
    assert caught.value.reason.startswith("OAuth ")
    assert "***" in caught.value.reason
    request = build_request("http://h/1.1", "filter", "x", credentials=CREDENTIALS)
    shown = [
        repr(CREDENTIALS),
        str(CREDENTIALS),
        str(caught.value),
        repr(caught.value),
        caught.value.reason,
        repr(request),
    ]
    for text in shown:
        for secret in ALL_FOUR:
            assert secret not in text


async def test_endpoint_urls() -> None:
    base = "https://stream.twitter.com/1.1"
    assert endpoint_url(base, "sample") == f"{base}/statuses/sample.json"
    assert endpoint_url(base + "/", "filter") == f"{base}/statuses/filter.json"
    with pytest.raises(ValueError, match="unknown stream kind"):
        endpoint_url(base, "firehose")  # type: ignore[arg-type]


async def test_filter_needs_a_track() -> None:
    with pytest.raises(ValueError, match="track"):
        build_request("http://h/1.1", "filter", "", credentials=None)


async def test_http_client_has_no_read_timeout_and_does_not_follow_redirects() -> None:
    async with make_http_client() as client:
        assert client.timeout.read is None
        assert client.timeout.connect == client_module.CONNECT_TIMEOUT_SECONDS
        assert client.follow_redirects is False
        assert client.headers["user-agent"] == client_module.USER_AGENT
