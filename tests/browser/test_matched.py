"""Why a card matched: a phrase found only in a link's address, a mention's handle or a hashtag
is said on the card ("Matched “python” via a link"), and the entity it came through is marked.
The server and the emulator match entities as Twitter does; the page used to mark nothing then."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack
from tests.browser.test_page import card, open_page, show, status


def test_a_phrase_matched_only_through_an_entity_is_explained(page: Page, stack: Stack) -> None:
    open_page(page, stack, "?filter=python,pydev")
    stack.emulator.wait_for_stream("filter", "python,pydev")

    linked = status(1, "great tips here https://t.co/abc123")
    linked["entities"]["urls"] = [
        {
            "url": "https://t.co/abc123",
            "expanded_url": "https://example.com/python-tips",
            "display_url": "example.com/python-ti…",
            "indices": [16, 35],
        }
    ]
    reply = status(2, "@PyDev thanks, that helped")
    reply["display_text_range"] = [7, 26]
    reply["entities"]["user_mentions"] = [
        {"screen_name": "PyDev", "name": "Py Dev", "id": 9, "id_str": "9", "indices": [0, 6]}
    ]
    plain = status(3, "I write Python every day")
    show(page, stack, [linked, reply, plain])

    expect(card(page, 1).locator(".matched-via")).to_have_text("Matched “python” via a link")
    expect(card(page, 1).locator("a.url.matched")).to_have_count(1)
    expect(card(page, 2).locator(".matched-via")).to_have_text("Matched “pydev” via a mention")
    expect(card(page, 2).locator(".reply-to a.mention.matched")).to_have_text("@PyDev")
    # Matched in its own words: the words are marked, and no hint is needed.
    expect(card(page, 3).locator("mark")).to_have_text(["Python"])
    expect(card(page, 3).locator(".matched-via")).to_have_count(0)
