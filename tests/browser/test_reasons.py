"""Why nothing arrives, in plain words: the header's one line, the feed's reason line with the
next retry, and the server's own words as the detail; from a real server that cannot reach its
source, and from status frames the test plays the server for (DNS, HTTP 401, Redis)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack, Stacks
from tests.browser.test_page import BLUESKY_HELLO, serve_frames
from tests.support import free_port


def test_a_bluesky_source_that_refuses_says_so_in_words_with_the_next_retry(
    page: Page, stacks: Stacks
) -> None:
    # Nothing listens on this loopback port: every connection is refused.
    server = stacks.server_only(
        {"PATS_SOURCE": "bluesky", "PATS_BLUESKY_HOSTS": f"ws://127.0.0.1:{free_port()}"}
    )
    page.goto(server.url + "/")
    reason = page.locator("#reason")
    expect(reason).to_be_visible(timeout=20_000)
    expect(reason.locator(".reason-text")).to_have_text(
        re.compile(r"^The server knows Bluesky’s address, but .* tries again in \d+ s\.$")
    )
    expect(reason.locator(".reason-detail")).to_contain_text("network error")
    expect(page.locator("#empty")).to_be_hidden()  # the reason is the empty state now
    expect(page.locator("#connection .label")).to_have_text(
        re.compile(r"^Can’t connect to Bluesky( · retry in \d+s)?$")
    )
    # Three retries or more (after about 1 s, 2 s, 4 s), and the reason was logged once.
    page.wait_for_timeout(7_500)
    log = server.service.log()
    assert log.count("network error") == 1, log[-3000:]


@pytest.mark.parametrize(
    ("state", "raw", "short", "sentence"),
    [
        (
            "backoff",
            "network error: HandshakeError ([Errno -2] Name or service not known)",
            "Can’t find Bluesky",
            "The server cannot find Bluesky on the network",
        ),
        (
            "error",
            "HTTP 401 from wss://jetstream2.us-east.bsky.network",
            "Bluesky refused the keys",
            "Bluesky refused the server’s credentials (HTTP 401)",
        ),
        (
            "degraded",
            "The server cannot reach Redis and keeps trying",
            "Feed interrupted",
            "The server lost its connection to Redis",
        ),
    ],
)
def test_raw_reasons_read_as_plain_words(
    page: Page, stack: Stack, state: str, raw: str, short: str, sentence: str
) -> None:
    send = serve_frames(page, [BLUESKY_HELLO])
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    frame: dict[str, Any] = {"type": "status", "stream": "sample", "state": state}
    send({**frame, "reason": raw, "retry_in": 30})
    label = page.locator("#connection .label")
    expect(label).to_have_text(re.compile(rf"^{re.escape(short)} · retry in (29|30)s$"))
    text = page.locator("#reason .reason-text")
    expect(text).to_contain_text(sentence)
    expect(text).to_contain_text(re.compile(r"tries again in (29|30) s\.$"))
    expect(page.locator("#reason .reason-detail")).to_have_text(f"({raw})")
    expect(page.locator("#connection-announce")).to_contain_text(sentence)
    send({**frame, "state": "connected"})
    expect(page.locator("#reason")).to_be_hidden()
    expect(page.locator("#empty")).to_be_visible()
