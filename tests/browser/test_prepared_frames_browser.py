"""Prepared frames in a real browser: Chromium offers permessage-deflate as every browser does,
gets it without context takeover, and reads the tweets' shared compressed frames."""

from __future__ import annotations

import time

from playwright.sync_api import Page

from tests.browser.conftest import Stack
from tests.browser.test_page import open_page, status

PROBE = """([url, wanted]) => {
  window.probe = {ids: [], extensions: null, types: []};
  const ws = new WebSocket(url, ['pats.binary']);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { window.probe.extensions = ws.extensions; };
  ws.onmessage = (event) => {
    window.probe.types.push(typeof event.data);
    const text = typeof event.data === 'string' ? event.data : new TextDecoder().decode(event.data);
    const frame = JSON.parse(text);
    if (frame.type === 'tweet') window.probe.ids.push(frame.tweet.id_str);
    if (frame.type === 'tweets') frame.tweets.forEach((t) => window.probe.ids.push(t.id_str));
    if (window.probe.ids.length >= wanted) ws.close();
  };
}"""


def test_chromium_negotiates_no_context_takeover_and_reads_the_shared_frames(
    page: Page, stack: Stack
) -> None:
    open_page(page, stack)
    ws_url = stack.url.replace("http://", "ws://") + "ws"
    page.evaluate(PROBE, [ws_url, 3])
    page.wait_for_function("() => window.probe.extensions !== null")
    base = int(time.time() * 1000)
    sent = [status(base + n, f"prepared once for every viewer {n} " * 8) for n in range(3)]
    stack.emulator.inject(*sent)
    page.wait_for_function("() => window.probe.ids.length >= 3")
    probe = page.evaluate("() => window.probe")
    assert probe["extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "client_max_window_bits=9"
    )
    assert probe["ids"] == [str(s["id"]) for s in sent]
    assert set(probe["types"]) == {"object"}, "binary frames (ArrayBuffer), as asked"
