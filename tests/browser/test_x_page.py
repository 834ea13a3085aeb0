"""The page on ``PATS_SOURCE=x``: the built-in X API v2 emulator (no token), as a newcomer with an
X developer account would first see it."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import WAIT_MS, ServerProcess, Watchdog


def start_x_server(tmp_path: Path, watchdog: Watchdog) -> ServerProcess:
    server = ServerProcess.start(tmp_path, {"PATS_SOURCE": "x", "PATS_EMULATOR_RATE": "20"})
    watchdog.services.append(server.service)
    return server


def test_x_without_a_filter_says_the_sample_is_enterprise_only(
    page: Page, tmp_path: Path, watchdog: Watchdog
) -> None:
    server = start_x_server(tmp_path, watchdog)
    try:
        page.goto(server.url + "/")
        expect(page.locator("#showing")).to_contain_text("Enterprise")
        expect(page.locator("main")).to_contain_text("only on Enterprise plans")
        expect(page.locator("article")).to_have_count(0)
    finally:
        server.kill()


def test_x_posts_link_to_x_and_say_posts(page: Page, tmp_path: Path, watchdog: Watchdog) -> None:
    server = start_x_server(tmp_path, watchdog)
    try:
        page.goto(server.url + "/?filter=python")
        card = page.locator("article").first
        expect(card).to_be_visible(timeout=3 * WAIT_MS)
        permalinks = card.locator("a[href*='/status/']")
        expect(permalinks.first).to_have_attribute("href", re.compile(r"^https://x\.com/"))
        expect(page.locator("#rate")).to_have_text(re.compile(r"posts/s$"))
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    finally:
        server.kill()
