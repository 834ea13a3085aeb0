"""Columns side by side, each with its own filter, socket, connection state and "N new" pill; the
URL holds them all (`?filter=a&filter=b`, shareable, Back works); on a phone they are swipeable
tabs. The upstream still carries one stream: the union of every column's phrases."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Stack
from tests.browser.test_page import status


def column(page: Page, index: int) -> Locator:
    return page.locator("#columns > .column").nth(index)


def ids_in(col: Locator) -> list[int]:
    ids: list[str] = col.locator("article.tweet[data-id]").evaluate_all(
        "cards => cards.map(c => c.dataset.id)"
    )
    return [int(id_) for id_ in ids]


def expect_live(page: Page, count: int) -> None:
    expect(page.locator("#columns > .column")).to_have_count(count)
    for index in range(count):
        expect(column(page, index).locator(".connection")).to_have_attribute("data-state", "live")


def test_three_columns_are_live_at_once_on_one_upstream_stream(page: Page, stack: Stack) -> None:
    page.goto(stack.url + "?filter=python&filter=rust&filter=trio")
    expect_live(page, 3)
    stream = stack.emulator.wait_for_stream("filter", "python,rust,trio")  # the union
    stack.emulator.inject(
        status(1, "python here"),
        status(2, "rust here"),
        status(3, "trio here"),
        status(4, "python and rust"),
        status(5, "nothing"),
    )
    expect(column(page, 2).locator('article[data-id="3"]')).to_have_count(1)
    expect(column(page, 1).locator('article[data-id="4"]')).to_have_count(1)
    assert ids_in(column(page, 0)) == [4, 1]
    assert ids_in(column(page, 1)) == [4, 2]
    assert ids_in(column(page, 2)) == [3]
    open_filters = [c for c in stack.emulator.connections() if c["open"] and c["kind"] == "filter"]
    assert [c["id"] for c in open_filters] == [stream["id"]]

    # Each column its own pill: the first one scrolled down holds; the second shows at once.
    first = column(page, 0)
    stack.emulator.inject(*[status(10 + i, f"python filler {i}") for i in range(30)])
    expect(first.locator('article[data-id="39"]')).to_have_count(1)
    first.evaluate("c => c.scrollBy(0, 600)")
    page.wait_for_timeout(200)
    stack.emulator.inject(status(50, "python later"), status(51, "rust later"))
    expect(first.locator(".held")).to_have_text("1 new tweet")
    expect(column(page, 1).locator('article[data-id="51"]')).to_have_count(1)
    expect(column(page, 1).locator(".held")).to_be_hidden()
    expect(page).to_have_title(re.compile(r"^\(1\) "))


def test_columns_are_added_moved_and_removed_and_the_url_and_back_follow(
    page: Page, stack: Stack
) -> None:
    page.goto(stack.url + "?filter=python")
    expect_live(page, 1)
    expect(page.locator(".column-tools")).to_be_hidden()  # one column: the page as it always was

    page.click("#add-column")
    expect_live(page, 2)
    second = column(page, 1)
    expect(second.locator("input[type=search]")).to_be_focused()
    expect(page).to_have_url(stack.url + "?filter=python&filter=")  # a sample column
    second.locator("input[type=search]").fill("rust")
    second.locator("input[type=search]").press("Enter")
    expect(page).to_have_url(stack.url + "?filter=python&filter=rust")
    expect(second.locator(".showing .phrase")).to_have_text(["rust"])

    second.locator('[data-part="left"]').click()
    expect(page).to_have_url(stack.url + "?filter=rust&filter=python")
    expect(column(page, 0).locator(".showing .phrase")).to_have_text(["rust"])
    expect(column(page, 0).locator("#filter")).to_have_value("rust")  # ids follow the position

    page.go_back()
    expect(page).to_have_url(stack.url + "?filter=python&filter=rust")
    expect(column(page, 0).locator(".showing .phrase")).to_have_text(["python"])
    expect(column(page, 1).locator(".showing .phrase")).to_have_text(["rust"])

    column(page, 0).locator('[data-part="remove"]').click()
    expect(page.locator("#columns > .column")).to_have_count(1)
    expect(page).to_have_url(stack.url + "?filter=rust")
    page.go_back()
    expect_live(page, 2)
    expect(column(page, 0).locator(".showing .phrase")).to_have_text(["python"])


def test_on_a_phone_columns_are_swipeable_tabs(page: Page, stack: Stack) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(stack.url + "?filter=python&filter=rust,trio")
    expect_live(page, 2)
    tabs = page.locator("#column-tabs .column-tab")
    expect(tabs).to_have_text(["python", "rust, trio"])
    expect(tabs.nth(0)).to_have_attribute("aria-current", "true")
    width = page.evaluate("document.getElementById('columns').clientWidth")
    boxes = [column(page, i).bounding_box() for i in range(2)]
    assert all(box is not None and abs(box["width"] - width) < 2 for box in boxes), boxes

    stack.emulator.wait_for_stream("filter", "python,rust,trio")
    stack.emulator.inject(status(1, "python on a phone"), status(2, "trio and rust"))
    expect(column(page, 1).locator('article[data-id="2"]')).to_have_count(1)
    tabs.nth(1).click()
    expect(tabs.nth(1)).to_have_attribute("aria-current", "true")
    second = column(page, 1).bounding_box()
    assert second is not None
    assert abs(second["x"]) < 2
    # A swipe back: the columns scroll sideways and snap to one.
    page.evaluate("document.getElementById('columns').scrollBy({ left: -200 })")
    expect(tabs.nth(0)).to_have_attribute("aria-current", "true")
    assert page.evaluate("scrollY") == 0  # sideways only: the page itself did not move
