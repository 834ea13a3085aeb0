"""Tests for trimming v1.1 statuses into the browser payload."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pats_trio.tweets import TweetShapeError, trim

CREATED_AT = "Wed Oct 10 20:19:24 +0000 2018"
TIMESTAMP_MS = 1539202764000


def raw_status(id_str: str = "1050118621198921728", **fields: Any) -> dict[str, Any]:
    """A v1.1 status with the noise a real one carries, so trimming has something to drop."""
    status: dict[str, Any] = {
        "created_at": CREATED_AT,
        "id": 1050118621198921728,
        "id_str": id_str,
        "text": "To make room for more expression, we will now count all emojis as equal",
        "source": '<a href="http://twitter.com" rel="nofollow">Twitter Web Client</a>',
        "truncated": False,
        "in_reply_to_status_id": None,
        "user": {
            "id": 6253282,
            "id_str": "6253282",
            "name": "Twitter API",
            "screen_name": "TwitterAPI",
            "location": "San Francisco, CA",
            "followers_count": 6133636,
            "verified": True,
            "profile_image_url_https": "https://pbs.twimg.com/profile_images/94/normal.png",
        },
        "geo": None,
        "coordinates": None,
        "place": None,
        "retweet_count": 0,
        "favorite_count": 0,
        "entities": {
            "hashtags": [{"text": "emoji", "indices": [10, 16], "extra": 1}],
            "urls": [
                {
                    "url": "https://t.co/abc",
                    "expanded_url": "https://example.com/post",
                    "display_url": "example.com/post",
                    "indices": [20, 43],
                    "unwound": {"status": 200},
                }
            ],
            "user_mentions": [
                {
                    "screen_name": "trio",
                    "name": "Trio",
                    "id": 1,
                    "id_str": "1",
                    "indices": [0, 5],
                }
            ],
            "symbols": [],
        },
        "favorited": False,
        "retweeted": False,
        "filter_level": "low",
        "lang": "en",
        "timestamp_ms": str(TIMESTAMP_MS),
    }
    status.update(fields)
    return status


def test_payload_has_only_the_documented_keys() -> None:
    payload = trim(raw_status())
    assert payload == {
        "id_str": "1050118621198921728",
        "text": "To make room for more expression, we will now count all emojis as equal",
        "created_at": CREATED_AT,
        "timestamp_ms": TIMESTAMP_MS,
        "lang": "en",
        "source": "twitter",
        "user": {
            "id_str": "6253282",
            "name": "Twitter API",
            "screen_name": "TwitterAPI",
            "profile_image_url_https": "https://pbs.twimg.com/profile_images/94/normal.png",
            "verified": True,
        },
        "entities": {
            "hashtags": [{"text": "emoji", "indices": [10, 16]}],
            "user_mentions": [
                {"screen_name": "trio", "name": "Trio", "id_str": "1", "indices": [0, 5]}
            ],
            "urls": [
                {
                    "url": "https://t.co/abc",
                    "expanded_url": "https://example.com/post",
                    "display_url": "example.com/post",
                    "indices": [20, 43],
                }
            ],
        },
    }


def test_source_can_be_named() -> None:
    assert trim(raw_status(), source="bluesky")["source"] == "bluesky"


def test_extended_tweet_wins_over_truncated_text_and_entities() -> None:
    full = "x" * 200 + " #long"
    status = raw_status(
        text="x" * 139 + "…",
        truncated=True,
        display_text_range=[0, 140],
        extended_tweet={
            "full_text": full,
            "display_text_range": [0, 206],
            "entities": {"hashtags": [{"text": "long", "indices": [201, 206]}]},
        },
    )
    payload = trim(status)
    assert payload["text"] == full
    assert payload["display_text_range"] == [0, 206]
    assert payload["entities"]["hashtags"] == [{"text": "long", "indices": [201, 206]}]
    assert payload["entities"]["urls"] == []
    assert payload["entities"]["user_mentions"] == []


def test_full_text_is_used_before_text() -> None:
    status = raw_status(full_text="the whole thing", display_text_range=[0, 15])
    payload = trim(status)
    assert payload["text"] == "the whole thing"
    assert payload["display_text_range"] == [0, 15]


def test_media_is_kept_only_when_present() -> None:
    assert "media" not in trim(raw_status())["entities"]
    status = raw_status()
    status["entities"]["media"] = [
        {
            "id_str": "9",
            "url": "https://t.co/m",
            "expanded_url": "https://twitter.com/TwitterAPI/status/1/photo/1",
            "display_url": "pic.twitter.com/m",
            "media_url_https": "https://pbs.twimg.com/media/m.jpg",
            "type": "photo",
            "sizes": {"large": {"w": 1, "h": 1}},
            "indices": [44, 67],
        }
    ]
    assert trim(status)["entities"]["media"] == [
        {
            "url": "https://t.co/m",
            "expanded_url": "https://twitter.com/TwitterAPI/status/1/photo/1",
            "display_url": "pic.twitter.com/m",
            "media_url_https": "https://pbs.twimg.com/media/m.jpg",
            "type": "photo",
            "indices": [44, 67],
        }
    ]


def test_missing_entities_give_empty_lists() -> None:
    status = raw_status()
    del status["entities"]
    assert trim(status)["entities"] == {"hashtags": [], "user_mentions": [], "urls": []}


def test_malformed_entity_items_are_dropped() -> None:
    status = raw_status(
        entities={
            "hashtags": [{"indices": [0, 1]}, "junk", {"text": "ok", "indices": "bad"}],
            "urls": [{"expanded_url": None}],
            "user_mentions": None,
        }
    )
    assert trim(status)["entities"] == {
        "hashtags": [{"text": "ok", "indices": None}],
        "user_mentions": [],
        "urls": [],
    }


@pytest.mark.parametrize(
    "created_at",
    [CREATED_AT, "Wed Oct 10 22:19:24 +0200 2018", "Wed Oct 10 14:49:24 -0530 2018"],
)
def test_timestamp_is_derived_from_created_at_when_missing(created_at: str) -> None:
    status = raw_status(created_at=created_at)
    del status["timestamp_ms"]
    payload = trim(status)
    assert payload["timestamp_ms"] == TIMESTAMP_MS
    assert payload["created_at"] == created_at


def test_created_at_is_derived_from_timestamp_when_missing() -> None:
    status = raw_status()
    del status["created_at"]
    assert trim(status)["created_at"] == CREATED_AT


@pytest.mark.parametrize(
    "created_at",
    [
        None,
        "yesterday",
        "Wed Foo 10 20:19:24 +0000 2018",
        "Wed Feb 30 20:19:24 +0000 2018",
        "Wed Feb 10 20:19:24 +2500 2018",
        "Wed Feb 10 20:19:24 +0000 " + "9" * 5000,
        "Wed Feb 10 20:19:" + "9" * 5000 + " +0000 2018",
    ],
)
def test_status_without_any_usable_time_is_refused(created_at: str | None) -> None:
    status = raw_status(created_at=created_at)
    del status["timestamp_ms"]
    with pytest.raises(TweetShapeError, match="timestamp_ms"):
        trim(status)


def test_optional_fields_may_be_missing() -> None:
    payload = trim({"id_str": "5", "text": "hi", "timestamp_ms": "5", "user": {"screen_name": "u"}})
    assert payload["lang"] is None
    assert payload["user"] == {
        "id_str": None,
        "name": "u",
        "screen_name": "u",
        "profile_image_url_https": None,
        "verified": False,
    }
    assert "display_text_range" not in payload
    assert "retweeted_status" not in payload
    assert "quoted_status" not in payload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id_str": None}, "id_str"),
        ({"id_str": ""}, "id_str"),
        ({"user": None}, "user"),
        ({"user": {"id_str": "1"}}, "screen_name"),
        ({"text": None}, "text"),
    ],
)
def test_malformed_status_is_refused(change: dict[str, Any], message: str) -> None:
    status = raw_status(**change)
    with pytest.raises(TweetShapeError, match=message):
        trim(status)
    assert issubclass(TweetShapeError, ValueError)


def test_retweet_and_its_quote_are_trimmed_recursively() -> None:
    quoted = raw_status("3", text="the quoted one", quoted_status=raw_status("4"))
    original = raw_status(
        "2",
        text="original",
        retweeted_status=raw_status("99"),
        quoted_status=quoted,
        extended_tweet={"full_text": "original, but longer"},
    )
    del original["timestamp_ms"]
    retweet = raw_status("1", text="RT @TwitterAPI: original", retweeted_status=original)

    payload = trim(retweet)
    inner = payload["retweeted_status"]
    assert inner["id_str"] == "2"
    assert inner["text"] == "original, but longer"
    assert inner["timestamp_ms"] == TIMESTAMP_MS
    assert "retweeted_status" not in inner
    assert "geo" not in inner
    assert inner["quoted_status"]["id_str"] == "3"
    assert inner["quoted_status"]["text"] == "the quoted one"
    assert "quoted_status" not in inner["quoted_status"]


def test_quote_is_trimmed_and_may_carry_one_quote() -> None:
    status = raw_status(
        "1", quoted_status=raw_status("2", quoted_status=raw_status("3", quoted_status={}))
    )
    quoted = trim(status)["quoted_status"]
    assert quoted["id_str"] == "2"
    assert set(quoted) == {*trim(raw_status("2")), "quoted_status"}
    assert quoted["quoted_status"]["id_str"] == "3"
    assert "quoted_status" not in quoted["quoted_status"]


def test_malformed_nested_status_is_refused_and_named() -> None:
    with pytest.raises(TweetShapeError, match=r"retweeted_status: .*id_str"):
        trim(raw_status(retweeted_status={"text": "no id", "user": {"screen_name": "u"}}))


def test_trim_does_not_modify_its_input() -> None:
    status = raw_status(retweeted_status=raw_status("2"))
    before = copy.deepcopy(status)
    trim(status)
    assert status == before


@pytest.mark.parametrize(
    "timestamp_ms", [2**70, str(2**60), "9" * 5000, "-5", "12e3", "", True, None]
)
def test_unusable_timestamp_falls_back_to_created_at(timestamp_ms: object) -> None:
    payload = trim(raw_status(timestamp_ms=timestamp_ms))
    assert payload["timestamp_ms"] == TIMESTAMP_MS
    orjson.dumps(payload)


def test_huge_indices_are_dropped() -> None:
    status = raw_status(entities={"hashtags": [{"text": "big", "indices": [0, 2**70]}]})
    payload = trim(status)
    assert payload["entities"]["hashtags"] == [{"text": "big", "indices": None}]
    orjson.dumps(payload)


def test_payload_round_trips_through_orjson() -> None:
    status = raw_status(quoted_status=raw_status("2", text="Привет 🔥 \u2028 \x00"))
    payload = trim(status)
    assert orjson.loads(orjson.dumps(payload)) == payload


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
entity_keys = st.sampled_from(["hashtags", "user_mentions", "urls", "media", "symbols"])
entity_fields = st.sampled_from(
    [
        "text",
        "screen_name",
        "name",
        "id_str",
        "url",
        "expanded_url",
        "display_url",
        "indices",
        "media_url_https",
        "type",
    ]
)
entities_strategy = st.dictionaries(
    entity_keys, st.lists(st.dictionaries(entity_fields, json_values, max_size=6), max_size=3)
)
status_strategy = st.fixed_dictionaries(
    {
        "id_str": st.text(min_size=1),
        "text": st.text(),
        "created_at": st.just(CREATED_AT),
        "timestamp_ms": st.integers(min_value=0, max_value=2**42).map(str) | json_values,
        "user": st.fixed_dictionaries(
            {"screen_name": st.text(min_size=1)},
            optional={"name": json_values, "verified": json_values, "id_str": json_values},
        ),
    },
    optional={
        "lang": json_values,
        "entities": entities_strategy | json_values,
        "display_text_range": json_values,
        "extended_tweet": st.fixed_dictionaries(
            {}, optional={"full_text": json_values, "entities": entities_strategy}
        ),
        "junk": json_values,
    },
)


@given(status_strategy)
def test_any_well_formed_status_trims_to_json(status: dict[str, Any]) -> None:
    payload = trim(status)
    assert orjson.loads(orjson.dumps(payload)) == payload
    assert isinstance(payload["text"], str)
    assert payload["user"]["screen_name"] == status["user"]["screen_name"]
    assert isinstance(payload["user"]["verified"], bool)
    assert set(payload["entities"]) <= {"hashtags", "user_mentions", "urls", "media"}
    assert "junk" not in payload


@given(
    st.none() | st.text() | st.just("Wed Oct 10 20:19:24 +0000 2018"),
    st.none() | st.text(alphabet="0123456789-+e ") | st.integers() | json_values,
)
def test_any_timestamp_either_trims_or_is_refused_cleanly(
    created_at: str | None, timestamp_ms: object
) -> None:
    status = raw_status(created_at=created_at, timestamp_ms=timestamp_ms)
    try:
        payload = trim(status)
    except TweetShapeError:
        assert created_at is None or created_at != CREATED_AT
        return
    assert orjson.loads(orjson.dumps(payload)) == payload
    assert isinstance(payload["created_at"], str)
    assert abs(payload["timestamp_ms"]) < 2**53


def test_html_escapes_are_undone_and_entity_indices_slide_with_them() -> None:
    text = "Fish &amp; chips &lt;3 #food https://t.co/x"
    status = {
        "id_str": "1",
        "text": text,
        "timestamp_ms": "1539202764000",
        "user": {"screen_name": "cook", "name": "Cook"},
        "display_text_range": [0, len(text)],
        "entities": {
            "hashtags": [{"text": "food", "indices": [23, 28]}],
            "urls": [
                {
                    "url": "https://t.co/x",
                    "expanded_url": "https://example.com/a",
                    "display_url": "example.com/a",
                    "indices": [29, 43],
                }
            ],
        },
    }
    trimmed = trim(status)
    assert trimmed["text"] == "Fish & chips <3 #food https://t.co/x"
    tag = trimmed["entities"]["hashtags"][0]["indices"]
    url = trimmed["entities"]["urls"][0]["indices"]
    assert trimmed["text"][tag[0] : tag[1]] == "#food"
    assert trimmed["text"][url[0] : url[1]] == "https://t.co/x"
    assert trimmed["display_text_range"] == [0, len(trimmed["text"])]
