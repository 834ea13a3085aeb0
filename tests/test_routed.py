"""Deletes reach only the viewers who could hold the tweet: the record, its codec field, the hub."""

from __future__ import annotations

from typing import Any

import trio

from pats_trio import frames
from pats_trio.broker import codec
from pats_trio.broker.memory import MemoryBroker
from pats_trio.events import NoticeEvent, TweetEvent
from pats_trio.hub import Hub, Subscription
from pats_trio.matching import parse_track
from pats_trio.routed import RoutedTweets
from pats_trio.upstream.source import Upstream

TIMEOUT = 10


def tweet(id_str: str, *terms: str, shows: tuple[str, ...] = ()) -> TweetEvent:
    return TweetEvent(id_str, frames.tweet({"id_str": id_str}), frozenset(terms), shows)


def delete(id_str: str) -> NoticeEvent:
    return NoticeEvent(frames.delete(id_str), deletes=id_str)


def test_a_routed_tweet_is_known_by_its_id_and_by_what_its_card_shows_once() -> None:
    routed = RoutedTweets()
    routed.add("filter", tweet("rt", "rust", shows=("original",)))
    routed.add("sample", tweet("rt", "rust", shows=("original",)))
    found = routed.take("original")
    assert found is not None
    assert (found.terms, found.kinds) == (frozenset({"rust"}), {"filter", "sample"})
    assert routed.take("original") is None, "one delete is sent once"
    assert routed.take("never routed") is None


def test_the_record_is_bounded_and_forgets_the_oldest_first() -> None:
    routed = RoutedTweets(window=3)
    for n in range(5):
        routed.add("sample", tweet(str(n), "w"))
    assert len(routed) == 3
    assert routed.take("1") is None
    assert routed.take("4") is not None


def test_a_taken_then_routed_again_tweet_is_not_dropped_by_its_old_place_in_the_window() -> None:
    routed = RoutedTweets(window=2)
    routed.add("sample", tweet("a", "w"))
    routed.take("a")
    routed.add("sample", tweet("a", "w"))
    routed.add("sample", tweet("b", "w"))
    assert routed.take("a") is not None


def test_what_a_card_shows_travels_through_redis() -> None:
    event = tweet("rt", "rust", "kernel", shows=("original",))
    kind, decoded = codec.decode(
        [(k.encode(), v.encode()) for k, v in codec.encode("filter", event)]
    )
    assert kind == "filter"
    assert isinstance(decoded, TweetEvent)
    assert (decoded.id_str, decoded.terms, decoded.shows) == (
        event.id_str,
        event.terms,
        ("original",),
    )
    plain = codec.decode([(k.encode(), v.encode()) for k, v in codec.encode("sample", tweet("1"))])[
        1
    ]
    assert isinstance(plain, TweetEvent)
    assert plain.shows == ()


def _no_upstream(publish: Any) -> Upstream:
    raise AssertionError("routing needs no upstream")


def drain(sub: Subscription) -> list[Any]:
    items = []
    while True:
        try:
            items.append(sub.messages.receive_nowait())
        except trio.WouldBlock:
            return items


def deletes_in(items: list[Any]) -> list[str]:
    return [item for item in items if isinstance(item, str) and '"type":"delete"' in item]


async def test_the_hub_sends_a_delete_to_the_kinds_and_phrases_the_tweet_went_to() -> None:
    with trio.fail_after(TIMEOUT):
        hub = Hub(MemoryBroker(_no_upstream), history_size=10)
        async with (
            hub.subscribe() as sample,
            hub.subscribe(parse_track("python")) as python,
            hub.subscribe(parse_track("rust")) as rust,
        ):
            hub.route("filter", tweet("f1", "python"))
            hub.route("sample", tweet("s1", "go"))
            hub.route("sample", tweet("s2", "rust", "lang"))
            for items in (drain(sample), drain(python), drain(rust)):
                assert deletes_in(items) == []
            for gone in ("unknown", "f1", "s1", "s2"):
                hub.route("filter", delete(gone))
                hub.route("sample", delete(gone))  # as Jetstream sends: to both kinds
            assert deletes_in(drain(python)) == [frames.delete("f1")]
            # s2 went out on sample, and the rust viewer's history could hold it.
            assert deletes_in(drain(rust)) == [frames.delete("s2")]
            assert deletes_in(drain(sample)) == [frames.delete("s1"), frames.delete("s2")]
