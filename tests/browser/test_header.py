"""A header that stays still and copy that matches the source: the status row is one line in
every state, at desktop and phone width; no per-card Demo badge (the page-level note says it once
and can be dismissed); "posts" and "every post on Bluesky" on Bluesky; the history a new page
gets at once is not counted in the rate."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Stack
from tests.browser.test_page import (
    BLUESKY_HELLO,
    CARDS,
    bluesky_post,
    open_page,
    serve_frames,
    show,
    status,
)

LONG_REASON = (
    "network error: HandshakeError ([Errno -2] Name or service not known) while connecting to "
    "wss://jetstream1.us-east.bsky.network/subscribe?wantedCollections=app.bsky.feed.post"
)
# The visible children of the status row, and whether they all sit on one line.
ONE_LINE = """() => {
    const row = document.querySelector('.live');
    const tops = [...row.children].filter((c) => !c.hidden && c.offsetParent !== null)
        .map((c) => c.getBoundingClientRect());
    const label = document.querySelector('#connection .label').getBoundingClientRect();
    return {
        one: tops.every((r) => Math.abs(r.bottom - tops[0].bottom + r.top - tops[0].top) < 8),
        labelHeight: label.height,
        rowHeight: row.getBoundingClientRect().height,
    };
}"""


def one_line(page: Page, state: str) -> None:
    found: dict[str, Any] = page.evaluate(ONE_LINE)
    assert found["one"], (state, found)
    assert found["labelHeight"] < 26, (state, found)
    assert found["rowHeight"] < 44, (state, found)


@pytest.mark.parametrize("width", [1100, 360])
def test_the_status_row_stays_one_line_in_every_state(page: Page, stack: Stack, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    sockets: list[WebSocketRoute] = []

    def accept(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        if len(sockets) == 1:
            ws.send(orjson.dumps(BLUESKY_HELLO).decode())
        else:
            ws.close(code=1011)  # the server is gone: the page keeps backing off

    page.route_web_socket(re.compile(r"/ws(\?.*)?$"), accept)
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    one_line(page, "live")
    frame = {"type": "status", "stream": "sample"}
    for state in ("backoff", "error", "degraded", "connecting"):
        sockets[0].send(
            orjson.dumps(
                {**frame, "state": state, "reason": LONG_REASON, "retry_in": 1234}
            ).decode()
        )
        expect(page.locator("#connection")).to_have_attribute("data-state", state)
        one_line(page, state)
    page.click("#pause")
    expect(page.locator("#pause")).to_have_text("Resume")
    one_line(page, "paused")
    sockets[0].close(code=1011)
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#retry")).to_be_visible()
    one_line(page, "reconnecting")


def test_no_demo_badge_on_cards_and_the_demo_note_can_be_dismissed(
    page: Page, stack: Stack
) -> None:
    open_page(page, stack)
    show(page, stack, [status(1, "a made-up tweet")])
    expect(page.locator(f"{CARDS} .network")).to_have_count(0)
    note = page.locator("#mode-note")
    expect(note).to_be_visible()
    page.click("#mode-note-close")
    expect(note).to_be_hidden()
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#mode")).to_be_visible()  # the header still says it is a demo
    expect(note).to_be_hidden()


def test_on_bluesky_the_page_says_posts(page: Page, stack: Stack) -> None:
    send = serve_frames(page, [BLUESKY_HELLO])
    page.goto(stack.url)
    expect(page.locator("#showing")).to_have_text(
        "Showing the sample stream: every post on Bluesky."
    )
    expect(page.locator("#empty")).to_have_text("Waiting for posts…")
    expect(page.locator("label[for=filter]")).to_have_text("Filter posts by keywords")
    expect(page.locator("#rate")).to_have_text(re.compile(r"posts/s$"))
    page.click("#pause")
    send({"type": "tweet", "tweet": bluesky_post("3kaaa1", "held", "did:plc:alice2bsky")})
    expect(page.locator("#held")).to_have_text("1 new post")


def test_history_is_not_counted_in_the_rate(page: Page, start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(history=5)
    open_page(page, stack)
    show(page, stack, [status(i, f"tweet number {i}") for i in range(1, 9)])
    page.wait_for_timeout(3_500)  # the recent tweets are now a few seconds old

    newcomer = page.context.new_page()
    newcomer.goto(stack.url)
    expect(newcomer.locator(CARDS)).to_have_count(5)
    newcomer.wait_for_timeout(2_500)  # two ticks of the rate, within its 5-second window
    assert newcomer.locator("#rate").text_content() == "0.0 tweets/s"
