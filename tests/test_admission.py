"""Who may open a viewer socket and what each may ask: origin, client limits, message limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    open_websocket_url,
    wrap_client_stream,
)

from pats_trio.admission import (
    AdmissionError,
    ChangeRate,
    ClientCounter,
    Limits,
    client_address,
    host_allowed,
    origin_allowed,
)
from tests.support import Served, Viewer, close_code, status

TIMEOUT = 15
ALLOWED = frozenset({"https://pats.example.org"})


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        (None, "127.0.0.1:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://pats.example.org", "10.0.0.5:8000", True),
        ("https://pats.example.org/", "10.0.0.5:8000", True),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
    ],
)
def test_origin_rules(origin: str | None, host: str, ok: bool) -> None:
    assert origin_allowed(origin, host, ALLOWED) is ok


def test_proxy_header_is_used_only_when_trusted() -> None:
    headers = {"x-forwarded-for": "203.0.113.9, 198.51.100.7"}
    assert client_address("10.0.0.1", headers, None) == "10.0.0.1"
    assert client_address("10.0.0.1", headers, "X-Forwarded-For") == "198.51.100.7"
    assert client_address("10.0.0.1", {}, "X-Forwarded-For") == "10.0.0.1"


def test_client_counter_refuses_over_limits_and_frees_on_exit() -> None:
    counter = ClientCounter(Limits(max_clients=3, max_clients_per_ip=2))
    with counter.admit("a"), counter.admit("a"):
        with pytest.raises(AdmissionError) as refused, counter.admit("a"):
            pass
        assert refused.value.code == "too_many_connections"
        with counter.admit("b"):
            with pytest.raises(AdmissionError) as full, counter.admit("c"):
                pass
            assert full.value.code == "server_full"
    assert counter.total == 0
    with counter.admit("a"):
        assert counter.total == 1


def test_change_rate_is_a_sliding_minute() -> None:
    rate = ChangeRate(2)
    assert rate.allow(0.0)
    assert rate.allow(10.0)
    assert not rate.allow(20.0)
    assert rate.allow(60.5)


async def test_a_foreign_origin_is_refused_at_the_handshake(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(allowed_origins=ALLOWED)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                served.ws_url, extra_headers=[(b"Origin", b"http://evil.example")]
            ):
                pass
        assert rejected.value.status_code == 403
        for origin in (served.http_url, "https://pats.example.org"):
            async with open_websocket_url(
                served.ws_url, extra_headers=[(b"Origin", origin.encode())]
            ) as ws:
                assert (await Viewer(ws).next_of("hello"))["stream"] == "sample"


async def test_one_address_over_its_limit_is_refused_and_others_carry_on(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(max_clients_per_ip=2)
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(served.ws_url) as ws_one,
            open_websocket_url(served.ws_url) as ws_two,
        ):
            one, two = Viewer(ws_one), Viewer(ws_two)
            await one.next_of("hello")
            await two.next_of("hello")
            async with open_websocket_url(served.ws_url) as ws_three:
                three = Viewer(ws_three)
                assert (await three.next_of("error"))["code"] == "too_many_connections"
                with pytest.raises(ConnectionClosed) as closed:
                    await three.read_until_closed()
                assert close_code(closed.value) == 1013
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            tweet = status("still here", 91_001)
            served.emulator.inject(tweet)
            assert (await one.tweets(1))[0]["id_str"] == tweet["id_str"]
            assert (await two.tweets(1))[0]["id_str"] == tweet["id_str"]
        # Leaving frees the places.
        async with open_websocket_url(served.ws_url) as ws_again:
            assert (await Viewer(ws_again).next_of("hello"))["type"] == "hello"


async def test_message_and_filter_limits_answer_with_errors(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(
        max_filter_length=20, max_message_bytes=64, filter_changes_per_minute=2
    )
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url + "?filter=" + "a" * 21) as ws_long:
            long = Viewer(ws_long)
            assert (await long.next_of("error"))["code"] == "filter_too_long"
            with pytest.raises(ConnectionClosed) as closed:
                await long.read_until_closed()
            assert close_code(closed.value) == 1008
        async with open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await ws.send_message("x" * 65)
            assert (await viewer.next_of("error"))["code"] == "message_too_large"
            await ws.send_message('{"type":"filter","track":"one"}')
            assert (await viewer.next_of("hello"))["track"] == ["one"]
            await ws.send_message('{"type":"filter","track":"two"}')
            assert (await viewer.next_of("hello"))["track"] == ["two"]
            await ws.send_message('{"type":"filter","track":"three"}')
            assert (await viewer.next_of("error"))["code"] == "too_many_changes"
            union = served.app.worker.hub.union()
            assert union[0].text == "two", "the refused change was not applied"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("pats.example.org", True),
        ("PATS.example.org:8443", True),
        ("localhost:8000", True),
        ("localhost:9000", False),
        ("evil.example", False),
        (None, False),
    ],
)
def test_host_rules(host: str | None, ok: bool) -> None:
    assert host_allowed(host, frozenset({"pats.example.org", "localhost:8000"})) is ok
    assert host_allowed(host, frozenset()), "no list: every host is served"


async def test_a_dns_rebinding_page_is_refused_when_hosts_are_configured(
    make_served: Callable[..., Any],
) -> None:
    """A page on evil.example that resolves to this server is same-origin with itself."""
    served: Served = await make_served(allowed_hosts=frozenset({"127.0.0.1"}))
    port = int(served.http_url.rsplit(":", 1)[1])
    with trio.fail_after(TIMEOUT):
        refused: list[int] = []
        try:
            async with trio.open_nursery() as nursery:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await wrap_client_stream(
                    nursery,
                    stream,
                    "evil.example:8000",  # the Host header the rebound page's browser sends
                    "/ws",
                    extra_headers=[(b"Origin", b"http://evil.example:8000")],
                )
        except* ConnectionRejected as group:
            refused = [
                exc.status_code for exc in group.exceptions if isinstance(exc, ConnectionRejected)
            ]
        assert refused == [403]
        async with httpx.AsyncClient() as client:
            metrics = await client.get(
                served.http_url + "/metrics", headers={"Host": "evil.example"}
            )
            assert metrics.status_code == 421
            assert (await client.get(served.http_url + "/healthz")).status_code == 200
        async with open_websocket_url(served.ws_url) as ws:
            assert (await Viewer(ws).next_of("hello"))["stream"] == "sample"
