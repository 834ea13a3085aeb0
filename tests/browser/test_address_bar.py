"""The address bar stays honest: a filter goes into the URL (and history) only once the server has
accepted it, so a refused filter never lands in a shared link; a filter error starts with a
capital and counts characters as the person typed them, not UTF-8 bytes."""

from __future__ import annotations

import re
from typing import Any

import orjson
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Stack
from tests.browser.test_page import BLUESKY_HELLO, open_page


def test_a_filter_reaches_the_url_only_once_the_server_accepts_it(page: Page, stack: Stack) -> None:
    """The test plays the server: it refuses the first filter and holds its answer to the second."""
    sockets: list[WebSocketRoute] = []
    asked: list[dict[str, Any]] = []

    def accept(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        ws.on_message(lambda message: asked.append(orjson.loads(message)))
        ws.send(orjson.dumps({**BLUESKY_HELLO, "source": "twitter"}).decode())

    page.route_web_socket(re.compile(r"/ws(\?.*)?$"), accept)
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    depth = page.evaluate("history.length")

    page.fill("#filter", "refused")
    page.press("#filter", "Enter")
    sockets[0].send(
        orjson.dumps(
            {"type": "error", "code": "too_many_phrases", "message": "all viewers together..."}
        ).decode()
    )
    expect(page.locator("#filter-error")).to_have_text(re.compile(r"^All viewers together"))
    assert page.url == stack.url
    assert page.evaluate("history.length") == depth

    page.fill("#filter", "python")
    page.press("#filter", "Enter")
    page.wait_for_timeout(300)
    assert page.url == stack.url  # sent, not yet accepted
    hello = {**BLUESKY_HELLO, "source": "twitter", "stream": "filter", "track": ["python"]}
    sockets[0].send(orjson.dumps(hello).decode())
    expect(page).to_have_url(stack.url + "?filter=python")
    assert page.evaluate("history.length") == depth + 1
    assert [a.get("track") for a in asked] == ["refused", "python"]


def test_a_too_long_phrase_is_refused_in_characters_as_typed(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    phrase = "🐍" * 20  # 80 bytes of UTF-8: over the 60-byte limit, but 20 characters
    page.fill("#filter", phrase)
    page.press("#filter", "Enter")
    error = page.locator("#filter-error")
    expect(error).to_be_visible()
    too_long = re.compile(r"^The phrase “(?:🐍)+” is too long: it has 20 characters")
    expect(error).to_have_text(too_long)
    expect(error).to_contain_text("at most 15 of these fit")
    assert page.url == stack.url
    expect(page.locator("#showing")).to_contain_text("sample stream")
