"""The page tells a viewer when its keywords are not followed upstream yet (fair shares)."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack

# Long enough that the change below always lands inside it, however slow the machine.
MIN_RECONNECT_SECONDS = 12


def test_a_keyword_waiting_for_the_upstream_is_shown_until_it_is_asked_for(
    page: Page, start_stack: Callable[..., Stack]
) -> None:
    """A filter change within PATS_MIN_RECONNECT_SECONDS of the last restart waits for the
    next one: the page used to show "Live" meanwhile, with nothing arriving."""
    stack = start_stack(env={"PATS_MIN_RECONNECT_SECONDS": str(MIN_RECONNECT_SECONDS)})
    page.goto(stack.url + "?filter=first")
    indicator = page.locator("#connection")
    expect(indicator).to_have_attribute("data-state", "live")
    stack.emulator.wait_for_stream("filter", "first")
    page.fill("#filter", "second")
    page.click("#filter-form button[type=submit]")
    expect(indicator.locator(".label")).to_have_text(re.compile(r"1 keyword starting"))
    assert "second" in (indicator.get_attribute("title") or "")
    expect(indicator).to_have_attribute(
        "data-state", "live", timeout=(MIN_RECONNECT_SECONDS + 10) * 1000
    )
    stack.emulator.wait_for_stream("filter", "second")
