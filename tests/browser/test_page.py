"""The page in a real browser: tweets, the filter form and history, reconnecting, pause, the card
cap, safe rendering, deletes, recent tweets for a new page, the indicator's states, Bluesky posts
end to end, and the README's screenshot.

Each test starts its own emulator and server processes (`stack`, or `bluesky_stack` for the
Jetstream emulator and a server on ``PATS_SOURCE=bluesky``) and opens the page in a fresh browser
context. Tweets and posts are injected through the emulator's control API once the server's
upstream connection is open, so what reaches the page is known. A few tests play the server on
the page's WebSocket instead (`serve_frames`), for frames a real stack sends only on a fault.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from pats_trio.matching import matches_any, parse_track, tweet_terms
from pats_trio.tweets import trim
from tests.browser.conftest import RECONNECT_MS, BlueskyStack, Stack

CARDS = "#tweets article.tweet[data-id]"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
SCREENSHOT_FILTER = "python, trio rust"
# PATS_UPDATE_SCREENSHOT=1 writes docs/screenshot.png; otherwise it goes to the test's tmp_path.
UPDATE_SCREENSHOT = os.environ.get("PATS_UPDATE_SCREENSHOT", "") not in ("", "0")


def status(
    id_: int, text: str, *, screen_name: str = "pats_tester", name: str = "PATS Tester"
) -> dict[str, Any]:
    """A v1.1 status with hashtag entities for every ``#word`` in `text`, and no avatar URL
    (the page draws initials)."""
    hashtags = [
        {"text": m.group(1), "indices": [m.start(), m.end()]} for m in re.finditer(r"#(\w+)", text)
    ]
    now_ms = int(time.time() * 1000)
    return {
        "id": id_,
        "id_str": str(id_),
        "created_at": time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(now_ms / 1000)),
        "timestamp_ms": str(now_ms),
        "text": text,
        "lang": "en",
        "user": {"id": 42, "id_str": "42", "name": name, "screen_name": screen_name},
        "entities": {"hashtags": hashtags, "user_mentions": [], "urls": []},
    }


def card(page: Page, id_: int) -> Locator:
    return page.locator(f'{CARDS}[data-id="{id_}"]')


def card_ids(page: Page) -> list[int]:
    ids: list[str] = page.locator(CARDS).evaluate_all("cards => cards.map(c => c.dataset.id)")
    return [int(id_) for id_ in ids]


def wait_for_cards(page: Page, count: int, timeout: float | None = None) -> None:
    """Wait until at least `count` cards are on the page."""
    # A function, not a string: the page's CSP (script-src 'self') forbids eval.
    script = "([selector, n]) => document.querySelectorAll(selector).length >= n"
    page.wait_for_function(script, arg=[CARDS, count], timeout=timeout)


def open_page(page: Page, stack: Stack, query: str = "") -> None:
    """Load the page and wait until it is live and the server's sample stream is open."""
    page.goto(stack.url + query)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    if not query:
        stack.emulator.wait_for_stream("sample")


def show(page: Page, stack: Stack, statuses: Iterable[dict[str, Any]]) -> list[int]:
    """Inject `statuses` and wait until the newest one's card is on the page; returns the ids."""
    statuses = list(statuses)
    stack.emulator.inject(*statuses)
    expect(card(page, statuses[-1]["id"])).to_have_count(1)
    return [s["id"] for s in statuses]


def test_tweets_appear(page: Page, start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(rate=20.0, seed=3)
    open_page(page, stack)
    expect(page.locator("#mode")).to_be_visible()  # the demo badge: no credentials
    wait_for_cards(page, 5)
    first = page.locator(CARDS).first
    expect(first.locator(".text")).not_to_be_empty()
    expect(first.locator(".handle")).to_have_text(re.compile(r"^@\w+"))
    expect(page.locator("#empty")).to_be_hidden()


def test_filter_shows_only_matching_tweets_and_back_restores_the_sample_view(
    page: Page, stack: Stack
) -> None:
    open_page(page, stack)
    show(page, stack, [status(1, "a sample tweet about lunch"), status(2, "another one")])

    page.fill("#filter", "python,  trio rust")
    page.click("#filter-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/\?filter=python,trio%20rust$"))
    stack.emulator.wait_for_stream("filter", "python,trio rust")
    expect(page.locator("#showing .phrase")).to_have_text(["python", "trio rust"])

    candidates = [
        status(10, "I love Python and its typing"),
        status(11, "trio is a nice library"),
        status(12, "rust is fast"),
        status(13, "Rust; and TRIO! together"),
        status(14, "pythonic is not the same word"),
        status(15, "structured concurrency with #trio in #rust"),
        status(16, "nothing to see here"),
        status(17, "#Python 3.13 is out"),
        status(18, "python and trio, nothing else"),
    ]
    track = parse_track("python,trio rust")
    expected = [s["id"] for s in candidates if matches_any(track, tweet_terms(trim(s)))]
    assert expected == [10, 13, 15, 17, 18]  # the project's own matcher agrees with the test
    stack.emulator.inject(*candidates)
    # Tweets reach the page in order, so once the last matching one shows, all of them have.
    expect(card(page, expected[-1])).to_have_count(1)
    assert sorted(card_ids(page)) == expected
    for text in page.locator(f"{CARDS} .text").all_inner_texts():
        assert re.search(r"python|trio.*rust|rust.*trio", text, re.IGNORECASE | re.DOTALL), text
    expect(page.locator(f"{CARDS} mark").first).to_be_visible()  # matches are highlighted
    # Only the words of a phrase the tweet holds in full: 18 matched "python", not "trio rust".
    assert card(page, 18).locator("mark").all_inner_texts() == ["python"]
    assert card(page, 13).locator("mark").all_inner_texts() == ["Rust", "TRIO"]

    page.go_back()
    expect(page).to_have_url(stack.url)
    expect(page.locator("#filter")).to_have_value("")
    expect(page.locator("#showing")).to_contain_text("sample stream")
    expect(page.locator(CARDS)).to_have_count(0)  # the filter's cards are gone
    stack.emulator.wait_for_stream("sample")
    show(page, stack, [status(20, "back to lunch"), status(21, "python again")])
    assert card_ids(page) == [21, 20]

    page.go_forward()
    expect(page).to_have_url(re.compile(r"/\?filter=python,trio%20rust$"))
    expect(page.locator("#filter")).to_have_value("python, trio rust")


def test_page_reconnects_without_reloading_when_the_server_restarts(
    page: Page, stack: Stack
) -> None:
    open_page(page, stack)
    show(page, stack, [status(1, "before the restart")])
    page.evaluate("window.__marker = 1")
    seen = stack.emulator.last_connection_id()

    stack.server.kill()
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_contain_text("Reconnecting")
    stack.server.restart()
    expect(connection).to_have_attribute("data-state", "live", timeout=RECONNECT_MS)

    assert page.evaluate("window.__marker") == 1
    expect(card(page, 1)).to_have_count(1)  # the same document: nothing was reloaded
    stack.emulator.wait_for_stream("sample", after=seen)
    show(page, stack, [status(2, "after the restart")])
    assert card_ids(page) == [2, 1]


def test_pause_holds_tweets_and_resume_shows_them(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    show(page, stack, [status(1, "shown before the pause")])
    held = page.locator("#held")
    expect(held).to_be_hidden()

    page.click("#pause")
    expect(page.locator("#pause")).to_have_text("Resume")
    stack.emulator.inject(status(2, "held one"), status(3, "held two"), status(4, "held three"))
    expect(held).to_be_visible()
    expect(held).to_have_text("3 new tweets")
    expect(page).to_have_title(re.compile(r"^\(3\) "))
    assert card_ids(page) == [1]

    page.click("#pause")
    expect(page.locator("#pause")).to_have_text("Pause")
    expect(held).to_be_hidden()
    expect(card(page, 4)).to_have_count(1)
    assert card_ids(page) == [4, 3, 2, 1]


def test_cards_stay_at_the_cap(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    cap = int(page.locator("ol#tweets").get_attribute("data-max-cards") or "0")
    assert cap == 200
    pushed = show(page, stack, [status(i, f"tweet number {i}") for i in range(1, cap + 31)])
    expect(page.locator(CARDS)).to_have_count(cap)
    assert card_ids(page) == pushed[::-1][:cap]  # the newest, newest first
    expect(page.locator("#notices li")).to_have_count(0)  # nothing was skipped


# The page's CSP would block an inline handler anyway; without it, this tests the renderer alone.
@pytest.mark.parametrize("page", [{"bypass_csp": True}], indirect=True)
def test_markup_in_a_tweet_is_shown_as_text(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    payload = "<img src=x onerror=window.__xss=1>"
    show(page, stack, [status(1, payload, name="<b>bold</b>", screen_name="xss")])
    expect(card(page, 1).locator(".text")).to_have_text(payload)
    expect(card(page, 1).locator(".name")).to_have_text("<b>bold</b>")
    expect(page.locator('#tweets img[src="x"], #tweets b')).to_have_count(0)
    # The same markup parsed as HTML does run here, and its image fails no later than this:
    page.evaluate("""document.body.insertAdjacentHTML(
        'beforeend', '<img hidden src=x onerror="window.__probe = 1">')""")
    page.wait_for_function("() => window.__probe === 1")
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_a_delete_frame_removes_its_card(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    show(page, stack, [status(1, "one"), status(2, "two, soon deleted"), status(3, "three")])
    delete = b'{"delete":{"status":{"id":2,"id_str":"2","user_id":1,"user_id_str":"1"}}}\r\n'
    assert stack.emulator.inject_raw(delete, "sample") == 1
    expect(card(page, 2)).to_have_count(0)
    assert card_ids(page) == [3, 1]


def test_a_card_links_to_its_network_and_says_which_it_is(page: Page, stack: Stack) -> None:
    open_page(page, stack)
    show(page, stack, [status(5, "structured #concurrency", screen_name="ada", name="Ada")])
    tweet = card(page, 5)
    expect(tweet).to_have_attribute("data-source", "emulator")
    expect(tweet).to_have_attribute("data-user-id", "42")
    expect(tweet.locator(".network")).to_have_count(0)  # a demo: the page says so once
    expect(tweet.locator("a.permalink")).to_have_attribute(
        "href", "https://twitter.com/ada/status/5"
    )
    expect(tweet.locator("a.author")).to_have_attribute("href", "https://twitter.com/ada")
    expect(tweet.locator("a.hashtag")).to_have_attribute(
        "href", "https://twitter.com/hashtag/concurrency"
    )


# --- Bluesky frames, from a WebSocket the test plays the server on ------------------------------
# Playwright answers the page's /ws itself: the page, its modules and its CSP are the real ones,
# the frames are the shape the Bluesky source sends, so the rendering is checked frame by frame.
# The same posts through the real server and the Jetstream emulator are tested further down.

ALICE = "did:plc:alice2bsky"
BOB = "did:plc:bob3bsky"
# A 1x1 PNG: the test context may not load images from the network.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
    "DwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
BLUESKY_HELLO = {"type": "hello", "mode": "live", "source": "bluesky", "stream": "sample"}


def entity_spans(text: str, prefix: str) -> list[tuple[str, list[int]]]:
    """Each `#word` or `@handle` in `text`, without its prefix, and its code point indices."""
    pattern = re.escape(prefix) + r"([\w.]+\w)"
    return [(m.group(1), [m.start(), m.end()]) for m in re.finditer(pattern, text)]


def bluesky_post(rkey: str, text: str, did: str, **extra: Any) -> dict[str, Any]:
    """A post as the Bluesky source sends it before its author's profile: the DID stands in for
    the handle and the name, and there is no avatar."""
    return {
        "id_str": rkey,
        "text": text,
        "created_at": time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime()),
        "timestamp_ms": int(time.time() * 1000),
        "lang": "en",
        "source": "bluesky",
        "url": f"https://bsky.app/profile/{did}/post/{rkey}",
        "user": {
            "id_str": did,
            "name": did,
            "screen_name": did,
            "profile_image_url_https": None,
            "verified": False,
        },
        "entities": {
            "hashtags": [{"text": t, "indices": i} for t, i in entity_spans(text, "#")],
            "user_mentions": [
                {"screen_name": h, "name": None, "id_str": None, "indices": i}
                for h, i in entity_spans(text, "@")
            ],
            "urls": [],
        },
        **extra,
    }


def serve_frames(page: Page, first: list[dict[str, Any]]) -> Callable[..., None]:
    """Answer the page's WebSocket with `first`; returns a function that sends more frames."""
    sockets: list[WebSocketRoute] = []

    def accept(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        for frame in first:
            ws.send(orjson.dumps(frame).decode())

    page.route_web_socket(re.compile(r"/ws(\?.*)?$"), accept)

    def send(*frames: dict[str, Any]) -> None:
        assert len(sockets) == 1, "the page opened more than one socket"
        for frame in frames:
            sockets[0].send(orjson.dumps(frame).decode())

    return send


def test_bluesky_posts_link_to_bluesky_and_profiles_fill_in_their_authors(
    page: Page, stack: Stack
) -> None:
    first = bluesky_post("3kaaa1", "hello #trio from @bob.bsky.social", ALICE)
    quote = bluesky_post("3kbbb2", "look at this", BOB, quoted_status=first)
    send = serve_frames(
        page, [BLUESKY_HELLO, {"type": "tweet", "tweet": first}, {"type": "tweet", "tweet": quote}]
    )
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    alice = page.locator(f'{CARDS}[data-id="3kaaa1"]')
    bob = page.locator(f'{CARDS}[data-id="3kbbb2"]')
    expect(bob).to_have_count(1)

    expect(alice).to_have_attribute("data-source", "bluesky")
    expect(alice).to_have_attribute("data-user-id", ALICE)
    expect(alice.locator(".network")).to_have_text("Bluesky")
    expect(alice.locator("a.permalink")).to_have_attribute("href", first["url"])
    expect(alice.locator("a.permalink")).to_have_attribute("title", "Open on Bluesky")
    expect(alice.locator("a.hashtag")).to_have_attribute("href", "https://bsky.app/hashtag/trio")
    expect(alice.locator("a.mention")).to_have_attribute(
        "href", "https://bsky.app/profile/bob.bsky.social"
    )
    # Until the profile comes, the DID is all there is, and bsky.app takes it as a profile.
    expect(alice.locator("a.author")).to_have_attribute("href", f"https://bsky.app/profile/{ALICE}")
    expect(alice.locator(".handle")).to_have_text(f"@{ALICE}")
    expect(alice.locator(".avatar-initials")).to_have_count(1)
    expect(bob.locator(".quote .name")).to_have_text(ALICE)

    profile = {"did": ALICE, "handle": "alice.bsky.social", "name": "Alice", "avatar": PIXEL}
    send({"type": "profile", "profile": profile})
    expect(alice.locator(".byline .name")).to_have_text("Alice")
    expect(alice.locator(".byline .handle")).to_have_text("@alice.bsky.social")
    for link in (alice.locator("a.author"), alice.locator("a.avatar-link")):
        expect(link).to_have_attribute("href", "https://bsky.app/profile/alice.bsky.social")
    expect(alice.locator("img.avatar")).to_have_attribute("src", PIXEL)
    expect(alice.locator(".avatar-initials")).to_have_count(0)
    expect(bob.locator(".quote .name")).to_have_text("Alice")  # quotes of her posts too
    expect(bob.locator(".quote img.avatar")).to_have_attribute("src", PIXEL)
    expect(bob.locator(".byline .name").first).to_have_text(BOB)  # and nobody else
    expect(alice.locator("a.permalink")).to_have_attribute("href", first["url"])

    # A later post still names her by DID: the page remembers whom the DID belongs to.
    send({"type": "tweet", "tweet": bluesky_post("3kccc3", "again", ALICE)})
    later = page.locator(f'{CARDS}[data-id="3kccc3"]')
    expect(later.locator(".byline .name")).to_have_text("Alice")
    expect(later.locator(".byline .handle")).to_have_text("@alice.bsky.social")
    expect(later.locator("img.avatar")).to_have_attribute("src", PIXEL)

    send({"type": "delete", "id_str": "3kaaa1"})
    expect(alice).to_have_count(0)
    assert page.locator(CARDS).evaluate_all("cards => cards.map(c => c.dataset.id)") == [
        "3kccc3",
        "3kbbb2",
    ]


def test_each_card_says_which_network_it_came_from(page: Page, stack: Stack) -> None:
    twitter = {**bluesky_post("1001", "from twitter #python", "7"), "source": "twitter"}
    del twitter["url"]
    twitter["user"] = {"id_str": "7", "name": "Ada", "screen_name": "ada"}
    frames: list[dict[str, Any]] = [
        {**BLUESKY_HELLO, "source": "twitter"},
        {"type": "tweets", "tweets": [twitter, bluesky_post("3kddd4", "from bluesky", BOB)]},
    ]
    serve_frames(page, frames)
    page.goto(stack.url)
    expect(page.locator(f"{CARDS} .network")).to_have_text(["Bluesky", "Twitter"])
    tweet = page.locator(f'{CARDS}[data-id="1001"]')
    expect(tweet.locator("a.permalink")).to_have_attribute(
        "href", "https://twitter.com/ada/status/1001"
    )
    expect(tweet.locator("a.hashtag")).to_have_attribute(
        "href", "https://twitter.com/hashtag/python"
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_of_a_filtered_page(
    page: Page, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = start_stack(rate=4.0, seed=2024)
    open_page(page, stack)
    page.fill("#filter", SCREENSHOT_FILTER)
    page.press("#filter", "Enter")
    expect(page).to_have_url(re.compile(r"\?filter=python,trio%20rust$"))
    wait_for_cards(page, 12, timeout=20_000)
    expect(page.locator("#rate")).to_have_text(re.compile(r"^\d"))
    page.locator("#filter").blur()
    page.mouse.move(0, 0)

    path = tmp_path / "screenshot.png"
    page.screenshot(path=path, animations="disabled", caret="hide")
    data = path.read_bytes()
    assert png_size(data) == (1100, 900)
    assert len(data) > 50_000  # a page full of cards, not a blank one
    if UPDATE_SCREENSHOT:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)


# --- History: a new page starts with the most recent tweets -------------------------------------


def test_a_new_page_starts_with_the_most_recent_tweets(
    page: Page, start_stack: Callable[..., Stack]
) -> None:
    stack = start_stack(history=5)
    open_page(page, stack)
    pushed = show(page, stack, [status(i, f"tweet number {i}") for i in range(1, 9)])
    assert card_ids(page) == pushed[::-1]

    newcomer = page.context.new_page()
    newcomer.goto(stack.url)
    expect(newcomer.locator("#connection")).to_have_attribute("data-state", "live")
    # Nothing more was injected: these five came with the page's first frames.
    expect(newcomer.locator(CARDS)).to_have_count(5)
    assert card_ids(newcomer) == [8, 7, 6, 5, 4]
    expect(newcomer.locator("#empty")).to_be_hidden()


# --- The Redis broker's degraded state, from a WebSocket the test plays the server on -----------


def test_the_indicator_shows_a_degraded_feed_and_counts_down(page: Page, stack: Stack) -> None:
    reason = "The server cannot reach Redis and keeps trying"
    send = serve_frames(page, [{**BLUESKY_HELLO, "source": "twitter"}])
    page.goto(stack.url)
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "live")

    send(
        {"type": "status", "stream": "sample", "state": "degraded", "reason": reason, "retry_in": 4}
    )
    expect(connection).to_have_attribute("data-state", "degraded")
    expect(connection).to_have_attribute("title", reason)
    expect(connection).to_have_text(re.compile(r"^Feed interrupted · retry in [1-4]s$"))
    expect(page.locator("#connection-announce")).to_contain_text("lost its connection to Redis")
    # The countdown runs out, and the indicator keeps saying what is going on.
    expect(connection).to_have_text("Feed interrupted", timeout=RECONNECT_MS)
    expect(connection).to_have_attribute("data-state", "degraded")
    # The page's own socket never closed: no "Retry now", and the feed resumes in place.
    expect(page.locator("#retry")).to_be_hidden()

    # A status for the other stream kind is not about this page.
    send({"type": "status", "stream": "filter", "state": "connected"})
    send({"type": "status", "stream": "sample", "state": "connected"})
    expect(connection).to_have_attribute("data-state", "live")
    expect(connection).to_have_text("Live")


# --- Bluesky through the whole stack: the Jetstream emulator, the server, the page --------------

NEWCOMER = "did:plc:newcomerbbbbbbbbbbbbbbbb"
# Records [handle, has initials] of every card as it is added to the list.
FIRST_BYLINES = """() => {
    window.__firstBylines = [];
    new MutationObserver((records) => {
        for (const node of records.flatMap((record) => [...record.addedNodes])) {
            const handle = node.querySelector?.('.byline .handle');
            if (handle) {
                const initials = node.querySelector('.avatar-initials') !== null;
                window.__firstBylines.push([handle.textContent, initials]);
            }
        }
    }).observe(document.getElementById('tweets'), { childList: true });
}"""


def open_bluesky_page(page: Page, stack: BlueskyStack) -> dict[str, Any]:
    """Load the page and wait until it is live and the server's Jetstream stream is open;
    returns the emulator's record of that stream."""
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#showing")).to_contain_text("sample stream")
    return stack.jetstream.wait_for_stream()


def post_card(page: Page, did: str, rkey: str) -> Locator:
    """The card of a post: the server names a post by its AT URI."""
    return page.locator(f'{CARDS}[data-id="at://{did}/app.bsky.feed.post/{rkey}"]')


def post_and_show(page: Page, stack: BlueskyStack, did: str, *texts: str) -> list[str]:
    """Post `texts` by `did` and wait until the last one's card is on the page; returns rkeys."""
    rkeys = [stack.jetstream.post(did, text)["commit"]["rkey"] for text in texts]
    expect(post_card(page, did, rkeys[-1])).to_have_count(1)
    return rkeys


def bluesky_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator(CARDS).evaluate_all("cards => cards.map(c => c.dataset.id)")
    return [id_.rsplit("/", 1)[-1] for id_ in ids]


def test_a_bluesky_post_reaches_the_page_labelled_and_linked(
    page: Page, bluesky_stack: BlueskyStack
) -> None:
    open_bluesky_page(page, bluesky_stack)
    expect(page.locator("#mode")).to_be_hidden()  # real posts' shape: no demo badge
    posted = bluesky_stack.jetstream.post(ALICE, "hello #trio from the firehose", rkey="3kpost1")
    post = post_card(page, ALICE, "3kpost1")
    expect(post).to_have_count(1)
    expect(post).to_have_attribute("data-source", "bluesky")
    expect(post).to_have_attribute("data-user-id", ALICE)
    expect(post.locator(".network")).to_have_text("Bluesky")
    expect(post.locator(".text")).to_have_text(posted["commit"]["record"]["text"])
    # No profile for this DID: the post's url names the author by DID.
    expect(post.locator("a.permalink")).to_have_attribute(
        "href", f"https://bsky.app/profile/{ALICE}/post/3kpost1"
    )
    expect(post.locator("a.permalink")).to_have_attribute("title", "Open on Bluesky")


def test_a_jetstream_delete_removes_the_card(page: Page, bluesky_stack: BlueskyStack) -> None:
    open_bluesky_page(page, bluesky_stack)
    rkeys = post_and_show(page, bluesky_stack, BOB, "one", "two, soon deleted", "three")
    assert bluesky_ids(page) == rkeys[::-1]
    bluesky_stack.jetstream.delete(BOB, rkeys[1])
    expect(post_card(page, BOB, rkeys[1])).to_have_count(0)
    assert bluesky_ids(page) == [rkeys[2], rkeys[0]]


def test_a_gallery_post_shows_four_images_with_their_alt_text_and_how_many_more(
    page: Page, bluesky_stack: BlueskyStack
) -> None:
    # Bluesky's image CDN is out of reach here, and the page drops photos that fail to load.
    pixel = base64.b64decode(PIXEL.split(",", 1)[1])
    page.route(
        "https://cdn.bsky.app/**", lambda route: route.fulfill(body=pixel, content_type="image/png")
    )
    open_bluesky_page(page, bluesky_stack)
    items = [
        {
            "$type": "app.bsky.embed.gallery#image",
            "alt": f"beach {n}",
            "image": {"$type": "blob", "ref": {"$link": f"bafkreibeach{n:04d}"}, "size": 1},
            "aspectRatio": {"width": 4, "height": 3},
        }
        for n in range(7)
    ]
    embed = {"$type": "app.bsky.embed.gallery", "items": items}
    bluesky_stack.jetstream.post(BOB, "holiday photos", rkey="3kgallery", embed=embed)
    post = post_card(page, BOB, "3kgallery")
    expect(post.locator("img.photo")).to_have_count(4)
    alts = post.locator("img.photo").evaluate_all("imgs => imgs.map(i => i.alt)")
    assert alts == ["beach 0", "beach 1", "beach 2", "beach 3"]
    expect(post.locator(".more-count")).to_have_text("+3")


def test_a_late_profile_fills_in_its_authors_card(page: Page, bluesky_stack: BlueskyStack) -> None:
    jetstream = bluesky_stack.jetstream
    jetstream.set_profile(NEWCOMER, "newcomer.bsky.social", "New Comer", PIXEL)
    # The AppView answers this long after the server asks, so the card is drawn before the
    # profile comes (the page draws new cards on the next animation frame).
    jetstream.set_profile_latency(3.0)
    open_bluesky_page(page, bluesky_stack)
    # Each card's byline as it was first drawn, however late the test gets to look.
    page.evaluate(FIRST_BYLINES)
    [rkey] = post_and_show(page, bluesky_stack, NEWCOMER, "my first post")
    post = post_card(page, NEWCOMER, rkey)
    assert page.evaluate("window.__firstBylines") == [[f"@{NEWCOMER}", True]]

    expect(post.locator(".byline .name")).to_have_text("New Comer")
    expect(post.locator(".byline .handle")).to_have_text("@newcomer.bsky.social")
    expect(post.locator("img.avatar")).to_have_attribute("src", PIXEL)
    expect(post.locator(".avatar-initials")).to_have_count(0)
    expect(post.locator("a.author")).to_have_attribute(
        "href", "https://bsky.app/profile/newcomer.bsky.social"
    )


def test_a_filter_on_bluesky_shows_only_matching_posts_on_the_same_upstream_stream(
    page: Page, bluesky_stack: BlueskyStack
) -> None:
    jetstream = bluesky_stack.jetstream
    stream = open_bluesky_page(page, bluesky_stack)
    post_and_show(page, bluesky_stack, ALICE, "a sample post about lunch")

    page.fill("#filter", "python,  trio rust")
    page.click("#filter-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/\?filter=python,trio%20rust$"))
    # The server says hello for the new filter only once it routes matching posts to the page.
    expect(page.locator("#showing .phrase")).to_have_text(["python", "trio rust"])
    expect(page.locator(CARDS)).to_have_count(0)

    candidates = [
        ("I love Python and its typing", True),
        ("trio is a nice library", False),
        ("Rust; and TRIO! together", True),
        ("nothing to see here", False),
        ("structured concurrency with #trio in #rust", True),
    ]
    rkeys = [jetstream.post(ALICE, text)["commit"]["rkey"] for text, _ in candidates]
    expected = [rkey for rkey, (_, matches) in zip(rkeys, candidates, strict=True) if matches]
    # Posts reach the page in order, so once the last matching one shows, all of them have.
    expect(post_card(page, ALICE, expected[-1])).to_have_count(1)
    assert bluesky_ids(page) == expected[::-1]
    expect(page.locator(f"{CARDS} .network")).to_have_text(["Bluesky"] * len(expected))

    # Filters are matched in the server: the one Jetstream stream served both views.
    connections = jetstream.connections()
    assert [(c["id"], c["open"]) for c in connections] == [(stream["id"], True)]
