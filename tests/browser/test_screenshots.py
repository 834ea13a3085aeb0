"""The README's pictures of the page in each state, taken from real stacks: live, paused with new
posts held, reconnecting with the reason, Bluesky out of reach, three columns on a desktop and
columns on a phone. With PATS_UPDATE_SCREENSHOT=1 they are written to docs/; otherwise to the
test's tmp_path, so that the states themselves are still checked."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import RECONNECT_MS, Stack, Stacks
from tests.browser.test_page import (
    CARDS,
    SCREENSHOT_FILTER,
    UPDATE_SCREENSHOT,
    open_page,
    png_size,
    wait_for_cards,
)
from tests.support import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs"


def save(page: Page, tmp_path: Path, name: str, size: tuple[int, int]) -> None:
    page.mouse.move(0, 0)
    path = tmp_path / name
    page.screenshot(path=path, animations="disabled", caret="hide")
    data = path.read_bytes()
    assert png_size(data) == size
    assert len(data) < 400_000  # modest: the README loads them all
    if UPDATE_SCREENSHOT:
        shutil.copyfile(path, DOCS / name)


def filtered_page(page: Page, start_stack: Callable[..., Stack]) -> Stack:
    stack = start_stack(rate=4.0, seed=2024)
    open_page(page, stack, "?filter=python,trio%20rust")
    expect(page.locator("#showing .phrase")).to_have_text(["python", "trio rust"])
    return stack


def test_screenshot_paused_with_new_posts_held(
    page: Page, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    filtered_page(page, start_stack)
    wait_for_cards(page, 6, timeout=20_000)
    page.click("#pause")
    expect(page.locator("#held")).to_have_text(re.compile(r"^[3-9]\d* new tweets$"), timeout=20_000)
    save(page, tmp_path, "screenshot-paused.png", (1100, 900))


def test_screenshot_reconnecting_with_the_reason(
    page: Page, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = filtered_page(page, start_stack)
    wait_for_cards(page, 4, timeout=20_000)
    stack.server.kill()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#reason")).to_contain_text("lost its connection to the server")
    expect(page.locator("#connection .label")).to_have_text(
        re.compile(r"^Reconnecting in \d+s$"), timeout=RECONNECT_MS
    )
    save(page, tmp_path, "screenshot-reconnecting.png", (1100, 900))


def test_screenshot_bluesky_offline(page: Page, stacks: Stacks, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1100, "height": 600})
    server = stacks.server_only(
        {"PATS_SOURCE": "bluesky", "PATS_BLUESKY_HOSTS": f"ws://127.0.0.1:{free_port()}"}
    )
    page.goto(server.url + "/")
    expect(page.locator("#reason .reason-text")).to_contain_text("tries again in", timeout=20_000)
    expect(page.locator("#showing")).to_contain_text("every post on Bluesky")
    expect(page.locator("#rate")).to_have_text(re.compile(r"posts/s$"))
    save(page, tmp_path, "screenshot-bluesky-offline.png", (1100, 600))


def test_screenshot_three_columns(
    page: Page, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 1400, "height": 900})
    stack = start_stack(rate=6.0, seed=2024)
    page.goto(stack.url + "?filter=python&filter=rust,trio&filter=")
    for index in range(3):
        column = page.locator("#columns > .column").nth(index)
        expect(column.locator(".connection")).to_have_attribute("data-state", "live")
    page.click("#mode-note-close")
    for index in range(3):
        cards = (
            page.locator("#columns > .column").nth(index).locator(CARDS.removeprefix("#tweets "))
        )
        expect(cards.nth(3)).to_be_attached(timeout=30_000)
    save(page, tmp_path, "screenshot-columns.png", (1400, 900))


def test_screenshot_columns_on_a_phone(
    page: Page, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    stack = start_stack(rate=6.0, seed=2024)
    page.goto(stack.url + f"?filter={SCREENSHOT_FILTER.replace(' ', '%20')}&filter=rust")
    page.click("#mode-note-close")
    expect(page.locator("#column-tabs .column-tab")).to_have_count(2)
    wait_for_cards(page, 4, timeout=30_000)
    save(page, tmp_path, "screenshot-phone.png", (390, 844))
