"""What the reader reads never moves or goes: scrolled down, or with a card focused, new posts
wait behind the "N new posts" pill, and the card cap never takes a card in or above the viewport.
A real emulator streams fast (60 tweets/s, the 200-card cap passed in under four seconds)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack
from tests.browser.test_page import CARDS, card_ids, open_page, show, status, wait_for_cards

# The id and the viewport top of the card under the middle of the viewport.
CARD_UNDER_MIDDLE = """() => {
    const under = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
    const article = under?.closest('article.tweet');
    return article ? [article.dataset.id, article.getBoundingClientRect().top] : null;
}"""


def card_under_middle(page: Page) -> tuple[str, float]:
    found: Any = page.evaluate(CARD_UNDER_MIDDLE)
    assert found is not None, "no card under the middle of the viewport"
    return str(found[0]), float(found[1])


def test_scrolled_down_during_a_fast_stream_the_card_being_read_stays(
    page: Page, start_stack: Callable[..., Stack]
) -> None:
    stack = start_stack(rate=60.0, seed=7)
    open_page(page, stack)
    wait_for_cards(page, 40)
    page.mouse.move(550, 450)
    page.mouse.wheel(0, 1600)
    page.wait_for_timeout(300)
    reading, top = card_under_middle(page)

    page.wait_for_timeout(5_000)  # 300 more tweets: more than the whole cap
    expect(page.locator(f'{CARDS}[data-id="{reading}"]')).to_have_count(1)
    still, still_top = card_under_middle(page)
    assert (still, round(still_top)) == (reading, round(top))
    held = page.locator("#held")
    expect(held).to_be_visible()
    expect(held).to_have_text(re.compile(r"^\d+\+? new tweets$"))
    assert page.locator("#pause").text_content() == "Pause"  # not paused: just reading

    newest_before = card_ids(page)[0]
    held.click()
    expect(held).to_be_hidden()
    assert page.evaluate("scrollY") == 0
    page.wait_for_function(
        "([s, id]) => document.querySelector(s)?.dataset.id !== id", arg=[CARDS, str(newest_before)]
    )


def test_a_focused_card_holds_new_posts_until_focus_leaves(
    page: Page, start_stack: Callable[..., Stack]
) -> None:
    stack = start_stack(rate=30.0, seed=8)
    open_page(page, stack)
    wait_for_cards(page, 5)
    page.locator(CARDS).first.locator("a.permalink").first.focus()
    reading = page.evaluate("document.activeElement.closest('article').dataset.id")
    shown = card_ids(page)
    page.wait_for_timeout(1_500)
    assert card_ids(page) == shown  # nothing came in above it, nothing went
    assert int(reading) in shown
    expect(page.locator("#held")).to_have_text(re.compile(r"^\d+\+? new tweets$"))

    page.locator("#filter").focus()  # focus leaves the list, at the top: the posts come in
    expect(page.locator("#held")).to_be_hidden()
    expect(page.locator(CARDS).first).not_to_have_attribute("data-id", str(shown[0]))


# Before the page's modules run (they are deferred): a cap of 5 cards, so that the viewport holds
# more cards than the cap.
SMALL_CAP = """document.addEventListener('readystatechange', () => {
    const list = document.getElementById('column-template')?.content.querySelector('ol');
    if (list) list.dataset.maxCards = '5';
});"""


def test_the_cap_never_removes_a_card_in_the_viewport(page: Page, stack: Stack) -> None:
    page.add_init_script(SMALL_CAP)
    page.set_viewport_size({"width": 1100, "height": 1400})
    open_page(page, stack)
    pushed: list[int] = []
    for first in range(1, 31, 3):  # three at a time: each batch is drawn before the next
        pushed += show(
            page, stack, [status(i, f"short tweet {i}") for i in range(first, first + 3)]
        )
        ids = card_ids(page)
        assert ids == pushed[::-1][: len(ids)]  # the newest, in order: none taken from between
        tops = page.locator("#tweets > li").evaluate_all(
            "items => items.map((li) => li.getBoundingClientRect().top)"
        )
        # Over the cap of 5 while cards reach into the viewport; below it, they go.
        assert all(top < 1400 for top in tops[:-1]), tops
    assert 5 < len(ids) < len(pushed), ids
