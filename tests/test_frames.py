"""Batches of tweets are joined from pre-encoded bytes; the browser must read what was encoded."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from pats_trio import frames
from pats_trio.events import TweetEvent

# Text as people write it: any character a JSON string can carry, emoji and CJK included.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
tweet_objects = st.fixed_dictionaries(
    {"id_str": st.from_regex(r"[0-9]{1,19}", fullmatch=True), "text": texts, "user": texts}
)


@given(st.lists(tweet_objects, min_size=1, max_size=12))
def test_a_batch_carries_every_tweet_unchanged_and_in_order(tweets: list[dict[str, Any]]) -> None:
    events = [TweetEvent(t["id_str"], frames.tweet(t), frozenset()) for t in tweets]
    payloads = [event.payload for event in events]
    # As text for most clients, as UTF-8 bytes for those that asked for binary frames.
    assert orjson.loads(frames.tweets(payloads)) == {"type": "tweets", "tweets": tweets}
    assert orjson.loads(frames.tweets_utf8(payloads)) == {"type": "tweets", "tweets": tweets}
    for event, tweet in zip(events, tweets, strict=True):
        assert orjson.loads(event.frame) == {"type": "tweet", "tweet": tweet}
        assert event.frame_utf8 == event.frame.encode()
        assert orjson.loads(event.payload) == tweet
