"""WebSockets over HTTP/2 (RFC 8441) in a real browser: the app under the `hypercorn` command
over TLS, which offers h2 by ALPN and advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, so Chromium
opens the page's WebSocket as an extended CONNECT stream on the page's own HTTP/2 connection.
Prepared frames then go through hypercorn's send path (inside DATA frames), never straight to
the socket; the access log says which HTTP version each WebSocket used."""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    STARTUP_TIMEOUT,
    WAIT_MS,
    EmulatorProcess,
    Service,
    Stacks,
    clean_env,
    wait_for,
)
from tests.browser.test_page import CARDS, card, card_ids, status
from tests.browser.test_prepared_frames_browser import PROBE
from tests.support import free_port, hypercorn_argv
from tests.tls import TestCertificate

ACCESS_FORMAT = "access %(S)s HTTP/%(H)s %(s)s %(U)s"
"""Scheme, HTTP version, status and path of each request, and of each WebSocket once accepted
(101 on HTTP/1.1, the CONNECT's 200 on HTTP/2)."""
WEBSOCKET_ACCESS = re.compile(r"^.*access (wss?) HTTP/(\S+) (\d+) /ws$", re.MULTILINE)
HISTORY = 3


@dataclass
class TLSServer:
    """The `hypercorn --worker-class trio` command serving the app over TLS, as the README
    runs it plus a certificate, and the emulator it reads."""

    service: Service
    emulator: EmulatorProcess
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def websocket_versions(self) -> list[tuple[str, str, str]]:
        """(scheme, HTTP version, status) of every WebSocket accepted so far, from the access
        log."""
        return WEBSOCKET_ACCESS.findall(self.service.log())


@pytest.fixture
def tls_server(stacks: Stacks, tmp_path: Path) -> Iterator[TLSServer]:
    certificate = TestCertificate.make(tmp_path)
    emulator = EmulatorProcess.start(tmp_path, rate=0.0, seed=1)
    stacks.emulators.append(emulator)
    stacks.watchdog.services.append(emulator.service)
    port = free_port()
    argv = hypercorn_argv(
        port,
        *("--certfile", str(certificate.pem), "--keyfile", str(certificate.pem)),
        *("--access-logfile", "-", "--access-logformat", ACCESS_FORMAT),
    )
    env = clean_env(
        **emulator.server_env,
        PATS_HISTORY=str(HISTORY),
        PATS_FILTER_DEBOUNCE_SECONDS="0.1",
    )
    service = Service("hypercorn-tls", argv, env, tmp_path / "hypercorn.log")
    stacks.watchdog.services.append(service)
    server = TLSServer(service, emulator, port)
    service.start()
    context = certificate.client_context()

    def healthy() -> bool:
        if not service.check_running():
            return False
        try:
            answer = httpx.get(server.url + "healthz", verify=context, timeout=1.0)
        except (httpx.TransportError, ssl.SSLError):
            return False
        return answer.status_code == 200

    try:
        wait_for(healthy, STARTUP_TIMEOUT, "hypercorn over TLS")
        yield server
    finally:
        service.stop()


@pytest.mark.parametrize("page", [{"ignore_https_errors": True}], indirect=True)
def test_chromium_reads_prepared_frames_and_a_backlog_over_http2_websockets(
    tls_server: TLSServer, page: Page
) -> None:
    """The page's context accepts the throwaway certificate (`page`'s indirect options)."""
    page.goto(tls_server.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    navigation = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"
    assert page.evaluate(navigation) == "h2", "the page itself came over HTTP/2"
    tls_server.emulator.wait_for_stream("sample")
    base = int(time.time() * 1000)
    first = [status(base + n, f"over http/2, prepared once {n} " * 6) for n in range(4)]
    tls_server.emulator.inject(*first)
    expect(card(page, first[-1]["id"])).to_have_count(1)
    assert card_ids(page) == [s["id"] for s in first][::-1]

    # A second page: the last HISTORY tweets arrive as a backlog, one write of prepared frames.
    newcomer = page.context.new_page()
    newcomer.goto(tls_server.url)
    expect(newcomer.locator("#connection")).to_have_attribute("data-state", "live")
    expect(newcomer.locator(CARDS)).to_have_count(HISTORY)
    assert card_ids(newcomer) == [s["id"] for s in first[-HISTORY:]][::-1]

    # A socket of the test's own reads the frames as they came, binary and deflated.
    ws_url = tls_server.url.replace("https://", "wss://") + "ws"
    later = [status(base + 10 + n, f"and again, shared bytes {n} " * 6) for n in range(2)]
    page.evaluate(PROBE, [ws_url, HISTORY + len(later)])
    page.wait_for_function("() => window.probe.extensions !== null")
    page.wait_for_function(f"() => window.probe.ids.length >= {HISTORY}")
    tls_server.emulator.inject(*later)
    page.wait_for_function(f"() => window.probe.ids.length >= {HISTORY + len(later)}")
    probe = page.evaluate("() => window.probe")
    assert probe["ids"] == [str(s["id"]) for s in (*first[-HISTORY:], *later)]
    assert "server_no_context_takeover" in probe["extensions"]
    for viewer in (page, newcomer):
        expect(card(viewer, later[-1]["id"])).to_have_count(1)
    assert card_ids(newcomer) == [s["id"] for s in (*first[-HISTORY:], *later)][::-1]

    def three_websockets_logged() -> bool:
        tls_server.service.check_running()
        return len(tls_server.websocket_versions()) >= 3

    wait_for(three_websockets_logged, WAIT_MS / 1000, "three WebSockets in the access log")
    assert tls_server.websocket_versions() == [("wss", "2", "200")] * 3, tls_server.service.log()
