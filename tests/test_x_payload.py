"""X API v2 posts become the browser's tweet payload, the same shape as v1.1's."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from pats_trio.emulator.corpus import TweetFactory
from pats_trio.emulator.xposts import to_v2
from pats_trio.events import tweet_event
from pats_trio.tweets import trim
from pats_trio.upstream.x import cost as cost_module
from pats_trio.upstream.x import payload as payload_module
from pats_trio.upstream.x import problems
from pats_trio.upstream.x.cost import DAY_SECONDS, DailyMeter, until_midnight
from pats_trio.upstream.x.messages import LineDecoder, Post, Problem
from pats_trio.upstream.x.payload import PayloadError, matching_rules, to_status

V2_RETWEET_OF_A_QUOTE: dict[str, Any] = {
    "data": {
        "id": "30",
        "text": "RT @ada: trio is neat &amp; so is #python https://t.co/x",
        "author_id": "2",
        "created_at": "2024-05-01T12:00:00.000Z",
        "lang": "en",
        "referenced_tweets": [{"type": "retweeted", "id": "20"}],
        "entities": {"mentions": [{"start": 3, "end": 7, "username": "ada", "id": "1"}]},
    },
    "includes": {
        "users": [
            {
                "id": "1",
                "name": "Ada",
                "username": "ada",
                "profile_image_url": "https://pbs.example/ada.jpg",
                "verified": True,
            },
            {"id": "2", "name": "Bob", "username": "bob"},
            {"id": "3", "name": "Cy", "username": "cy"},
        ],
        "tweets": [
            {
                "id": "20",
                "text": "trio is neat & so is #python https://t.co/x",
                "author_id": "1",
                "created_at": "2024-05-01T11:00:00.000Z",
                "referenced_tweets": [{"type": "quoted", "id": "10"}],
                "entities": {
                    "hashtags": [{"start": 21, "end": 28, "tag": "python"}],
                    "urls": [
                        {
                            "start": 29,
                            "end": 43,
                            "url": "https://t.co/x",
                            "expanded_url": "https://example.com/trio",
                            "display_url": "example.com/trio",
                        }
                    ],
                },
            },
            {"id": "10", "text": "the original", "author_id": "3"},
        ],
    },
    "matching_rules": [{"id": "99", "tag": "pats-trio"}, {"id": "98", "tag": "theirs"}],
}


def test_the_doctests_hold() -> None:
    assert doctest.testmod(payload_module).failed == 0
    assert doctest.testmod(cost_module).failed == 0


def test_a_retweet_of_a_quote_maps_to_the_v1_card_with_author_links_and_tags() -> None:
    trimmed = trim(to_status(V2_RETWEET_OF_A_QUOTE), source="x")
    assert trimmed["id_str"] == "30"
    assert trimmed["source"] == "x"
    assert trimmed["timestamp_ms"] == 1714564800000
    assert trimmed["user"]["screen_name"] == "bob"
    original = trimmed["retweeted_status"]
    assert original["user"] == {
        "id_str": "1",
        "name": "Ada",
        "screen_name": "ada",
        "profile_image_url_https": "https://pbs.example/ada.jpg",
        "verified": True,
    }
    assert original["entities"]["hashtags"] == [{"text": "python", "indices": [21, 28]}]
    assert original["entities"]["urls"][0]["expanded_url"] == "https://example.com/trio"
    assert original["quoted_status"]["user"]["screen_name"] == "cy"
    assert "retweeted_status" not in original
    assert trimmed["entities"]["user_mentions"][0]["screen_name"] == "ada"
    assert "&amp;" not in trimmed["text"]
    assert matching_rules(V2_RETWEET_OF_A_QUOTE) == (("99", "pats-trio"), ("98", "theirs"))


def test_an_author_that_was_not_expanded_still_shows_the_post() -> None:
    message = {
        "data": {"id": "5", "text": "hi", "author_id": "77", "created_at": "2024-05-01T12:00:00Z"}
    }
    assert trim(to_status(message))["user"]["screen_name"] == "77"
    with pytest.raises(PayloadError):
        to_status({"errors": []})


@pytest.mark.parametrize("seed", range(5))
def test_the_emulators_posts_render_as_the_v1_statuses_they_were_written_from(seed: int) -> None:
    factory = TweetFactory(seed)
    for _ in range(40):
        status = factory.next_status(1_700_000_000_000)
        via_v2 = trim(to_status(to_v2(status)), source="x")
        direct = trim(status, source="x")
        for key in ("id_str", "text", "user", "timestamp_ms"):
            assert via_v2[key] == direct[key]
        for key in ("hashtags", "user_mentions", "urls"):
            assert [e["indices"] for e in via_v2["entities"][key]] == [
                e["indices"] for e in direct["entities"][key]
            ]
        assert tweet_event(to_status(to_v2(status)), source="x") is not None
        for nested in ("retweeted_status", "quoted_status"):
            assert (nested in via_v2) == (nested in direct)


def test_problem_kinds_are_told_by_type_then_title_as_the_docstring_shows() -> None:
    result = doctest.testmod(problems)
    assert result.attempted > 0
    assert result.failed == 0


def test_lines_keepalives_and_problems_are_told_apart() -> None:
    decoder = LineDecoder()
    out = decoder.feed(b'\r\n{"data":{"id":"1","text":"a"}}\r\n{"errors":[{"title":"operational-')
    assert [type(m) for m in out] == [Post]
    out = decoder.feed(
        b'disconnect","detail":"bye","type":"https://api.x.com/2/problems/operational-disconnect"}]}'
        b'\r\nnot json\r\n{"title":"ConnectionException","connection_issue":"TooManyConnections",'
        b'"detail":"too many"}\r\n'
    )
    assert out == [
        Problem("operational-disconnect", "bye", disconnects=True, kind="operational-disconnect"),
        Problem(
            "TooManyConnections",
            "too many",
            disconnects=True,
            rate_limited=True,
            kind="streaming-connection",
        ),
    ]
    assert (decoder.stats.keepalives, decoder.stats.malformed) == (1, 1)


def test_the_meter_counts_per_utc_day_and_stops_at_the_cap() -> None:
    meter = DailyMeter(cap=3, price=0.005)
    late = 20 * DAY_SECONDS - 60.0
    assert [meter.record(late + n) for n in range(3)] == [True, True, False]
    assert meter.capped(late + 10)
    assert meter.spend_today(late) == pytest.approx(0.015)
    assert until_midnight(late) == 60.0
    assert not meter.capped(20 * DAY_SECONDS)
    assert (meter.today, meter.total) == (0, 3)
    assert not DailyMeter(cap=0, price=0.005).capped(0.0)
    assert "3 posts" in meter.reason()
    assert "midnight UTC" in meter.reason()


def test_a_long_post_shows_its_whole_note_tweet() -> None:
    factory = TweetFactory(1)
    status = factory.status_matching(["python"], 1_700_000_000_000)
    status["text"] = "python " + "word " * 80 + "end"
    status["entities"] = {
        "hashtags": [{"text": "tail", "indices": [len(status["text"]) - 3, len(status["text"])]}]
    }
    message = to_v2(status)
    assert len(message["data"]["text"]) == 280
    assert message["data"]["entities"] == {"hashtags": []}
    trimmed = trim(to_status(message), source="x")
    assert trimmed["text"] == status["text"]
    assert trimmed["entities"]["hashtags"][0]["text"] == "tail"
