"""Recent tweets for newcomers, and the events they are made of."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from pats_trio import events, frames
from pats_trio.events import TweetEvent
from pats_trio.history import History
from pats_trio.matching import parse_track, tweet_terms
from pats_trio.upstream.twitter import protocol
from pats_trio.upstream.twitter.runner import notice_for


def tweet(id_: int, text: str) -> TweetEvent:
    payload = {"id_str": str(id_), "text": text, "entities": {}}
    return TweetEvent(str(id_), frames.tweet(payload), tweet_terms(payload))


def ids(found: list[TweetEvent]) -> list[str]:
    return [event.id_str for event in found]


def test_a_sample_viewer_gets_the_latest_sample_tweets_oldest_first() -> None:
    history = History(2)
    for n in range(4):
        history.add("sample", tweet(n, f"tweet {n}"))
    history.add("filter", tweet(9, "filter only"))
    assert ids(history.recent_for(())) == ["2", "3"]


def test_a_filter_viewer_gets_matches_from_both_streams_each_once() -> None:
    history = History(3)
    history.add("sample", tweet(1, "python one"))
    history.add("filter", tweet(1, "python one"))  # the same tweet on both streams
    history.add("sample", tweet(2, "rust two"))
    history.add("filter", tweet(3, "python three"))
    history.add("sample", tweet(4, "go four"))
    assert ids(history.recent_for(parse_track("python"))) == ["1", "3"]
    assert ids(history.recent_for(parse_track("python,go"))) == ["1", "3", "4"]


def test_a_deleted_tweet_never_comes_back_and_no_history_means_none() -> None:
    history = History(5)
    history.add("sample", tweet(1, "a"))
    history.add("filter", tweet(1, "a"))
    history.add("sample", tweet(2, "b"))
    history.forget("1")
    assert ids(history.recent_for(())) == ["2"]
    assert ids(history.recent_for(parse_track("a"))) == []
    off = History(0)
    off.add("sample", tweet(1, "a"))
    assert off.recent_for(()) == []


def test_only_the_scan_window_is_kept() -> None:
    history = History(1, scan=3)
    for n in range(5):
        history.add("sample", tweet(n, "python" if n == 0 else "other"))
    assert history.recent_for(parse_track("python")) == [], "tweet 0 fell out of the window"


def status(**extra: Any) -> dict[str, Any]:
    return {
        "id_str": "5",
        "text": "Structured concurrency",
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "user": {"id_str": "7", "name": "Ada", "screen_name": "ada"},
        "entities": {"hashtags": [], "user_mentions": [], "urls": []},
        **extra,
    }


def test_a_tweet_event_is_trimmed_and_encoded_once_for_text_and_binary_viewers() -> None:
    original = status(id_str="4", text="the original")
    event = events.tweet_event(status(retweeted_status=original, place={"full_name": "Oslo"}))
    assert event is not None
    frame = orjson.loads(event.frame)
    assert frame["type"] == "tweet"
    assert frame["tweet"]["id_str"] == "5"
    assert "place" not in frame["tweet"]
    assert event.frame_utf8 == event.frame.encode()
    assert orjson.loads(bytes(event.payload)) == frame["tweet"]
    assert event.shows == ("4",), "a delete of the original reaches this retweet's viewers"
    assert "concurrency" in event.terms


def test_a_tweet_the_page_could_not_show_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert events.tweet_event({"text": "no id"}) is None
    assert "skipping malformed tweet" in caplog.text


def test_deletes_and_withheld_tweets_become_notices_that_take_the_tweet_back() -> None:
    delete = notice_for(protocol.Delete("5", "7"))
    withheld = notice_for(protocol.StatusWithheld("6", "7", ("DE",)))
    assert delete is not None
    assert withheld is not None
    assert (delete.deletes, orjson.loads(delete.frame)) == ("5", {"type": "delete", "id_str": "5"})
    assert withheld.deletes == "6"
    assert notice_for(protocol.Limit(3)) is None
