"""Jetstream events mapped to the tweet payload the page renders and the matcher reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pats_trio import frames
from pats_trio.emulator.jetstream import RichText
from pats_trio.matching import matches_any, parse_track, tweet_terms
from pats_trio.tweets import trim
from pats_trio.upstream.bluesky.jetstream import (
    Account,
    Delete,
    Identity,
    Ignored,
    JetstreamShapeError,
    Post,
    Profile,
    parse_event,
    post_payload,
    profile_from_appview,
)

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
BOB = "did:plc:z72i7hdynmk6r22z27h6tvur"
TIME_US = 1_725_911_162_329_308


def commit(record: dict[str, Any], *, rkey: str = "3l3qo2vuowo2b", **extra: Any) -> dict[str, Any]:
    body = {"rev": "3l3qo2vutsw2b", "operation": "create", "collection": "app.bsky.feed.post"}
    return {
        "did": DID,
        "time_us": TIME_US,
        "kind": "commit",
        "commit": {**body, "rkey": rkey, "record": record, **extra},
    }


def rich_post() -> dict[str, Any]:
    """Emoji and accented characters before every facet, so byte and character offsets differ."""
    text = (
        RichText()
        .add("Café ☕ über 🦋 naïve: ")
        .link("example.com/trio…", "https://example.com/trio-guide")
        .add(" — merci ")
        .mention("bob.bsky.social", BOB)
        .add(" 🎉 ")
        .tag("Python")
    )
    return commit(
        {
            "$type": "app.bsky.feed.post",
            "text": text.text,
            "createdAt": "2024-09-09T19:46:02.102Z",
            "langs": ["fr", "en"],
            "facets": text.facets,
            "embed": {
                "$type": "app.bsky.embed.external",
                "external": {
                    "uri": "https://trio.readthedocs.io/",
                    "title": "Trio",
                    "description": "",
                },
            },
            "tags": ["asyncio", "python"],
        }
    )


def spans(payload: dict[str, Any], kind: str) -> list[str]:
    text = payload["text"]
    return [
        text[item["indices"][0] : item["indices"][1]]
        for item in payload["entities"][kind]
        if item["indices"] is not None
    ]


def test_a_rich_post_maps_to_the_tweet_payload() -> None:
    post = parse_event(rich_post())
    assert isinstance(post, Post)
    payload = post_payload(post)

    # Entity indices are code points, as the page's Array.from(text) counts them.
    assert spans(payload, "urls") == ["example.com/trio…"]
    assert spans(payload, "user_mentions") == ["@bob.bsky.social"]
    assert spans(payload, "hashtags") == ["#Python"]
    link = payload["entities"]["urls"][0]
    assert link["expanded_url"] == "https://example.com/trio-guide"
    mention = payload["entities"]["user_mentions"][0]
    assert (mention["screen_name"], mention["id_str"]) == ("bob.bsky.social", BOB)
    # The outline tag not in the text is a hashtag without a place; "python" is not repeated.
    assert [(h["text"], h["indices"]) for h in payload["entities"]["hashtags"]][1:] == [
        ("asyncio", None)
    ]
    # The link card is a url the matcher reads, not placed in the text.
    card = payload["entities"]["urls"][1]
    assert (card["expanded_url"], card["indices"], card["title"]) == (
        "https://trio.readthedocs.io/",
        None,
        "Trio",
    )

    assert payload["id_str"] == f"at://{DID}/app.bsky.feed.post/3l3qo2vuowo2b"
    assert payload["created_at"] == "Mon Sep 09 19:46:02 +0000 2024"
    assert payload["timestamp_ms"] == TIME_US // 1000
    assert payload["lang"] == "fr"
    assert payload["source"] == "bluesky"
    # No profile yet: the DID stands in, and the permalink uses it.
    assert payload["user"]["screen_name"] == DID
    assert payload["user"]["name"] == DID
    assert payload["user"]["profile_image_url_https"] is None
    assert payload["url"] == f"https://bsky.app/profile/{DID}/post/3l3qo2vuowo2b"


def test_the_payload_has_the_keys_of_a_trimmed_tweet() -> None:
    payload = post_payload(parse_event(rich_post()))  # type: ignore[arg-type]
    tweet = trim(
        {
            "id_str": "1",
            "text": "hi",
            "timestamp_ms": "1",
            "user": {"screen_name": "a"},
            "entities": {},
        }
    )
    assert set(tweet) <= set(payload)
    assert set(tweet["user"]) == set(payload["user"])
    assert set(tweet["entities"]) == set(payload["entities"])
    # And it survives the frame encoding the page reads.
    decoded = orjson.loads(frames.tweet(payload))
    assert decoded["tweet"]["text"] == payload["text"]


def test_filter_viewers_match_bluesky_posts_locally() -> None:
    payload = post_payload(parse_event(rich_post()))  # type: ignore[arg-type]
    terms = tweet_terms(payload)
    for track in ("python", "#python", "café", "merci", "asyncio", "example.com/trio-guide"):
        assert matches_any(parse_track(track), terms), track
    assert "bob.bsky.social" in terms
    assert not matches_any(parse_track("rust"), terms)


def test_a_known_profile_names_the_author() -> None:
    post = parse_event(rich_post())
    assert isinstance(post, Post)
    profile = Profile(DID, "alice.bsky.social", "Alice 🌸", "https://cdn.example/a.jpg")
    payload = post_payload(post, profile)
    assert payload["user"] == {
        "id_str": DID,
        "name": "Alice 🌸",
        "screen_name": "alice.bsky.social",
        "profile_image_url_https": "https://cdn.example/a.jpg",
        "verified": False,
    }
    assert payload["url"] == "https://bsky.app/profile/alice.bsky.social/post/3l3qo2vuowo2b"


def test_images_and_quotes_map_to_media_and_links() -> None:
    cid = "bafkreibme22gw2h7y2eexbhtqlbylnqrfgb63eqyllv5gzutgkzmsc6yee"
    quoted = f"at://{BOB}/app.bsky.feed.post/3kquoted"
    event = commit(
        {
            "text": "look",
            "createdAt": "2024-09-09T19:46:02Z",
            "embed": {
                "$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": {"uri": quoted, "cid": "bafyrei"}},
                "media": {
                    "$type": "app.bsky.embed.images",
                    "images": [
                        {
                            "alt": "a cat",
                            "image": {"$type": "blob", "ref": {"$link": cid}, "size": 1},
                        }
                    ],
                },
            },
        }
    )
    payload = post_payload(parse_event(event))  # type: ignore[arg-type]
    media = payload["entities"]["media"]
    assert [(m["media_url_https"], m["type"], m["ext_alt_text"]) for m in media] == [
        (f"https://cdn.bsky.app/img/feed_thumbnail/plain/{DID}/{cid}@jpeg", "photo", "a cat")
    ]
    assert [u["expanded_url"] for u in payload["entities"]["urls"]] == [
        f"https://bsky.app/profile/{BOB}/post/3kquoted"
    ]


def gallery(count: int) -> dict[str, Any]:
    """`app.bsky.embed.gallery` as the post lexicon writes it: `#image` items, alt required."""
    return {
        "$type": "app.bsky.embed.gallery",
        "items": [
            {
                "$type": "app.bsky.embed.gallery#image",
                "alt": f"photo {n}",
                "image": {"$type": "blob", "ref": {"$link": f"bafkreigallery{n:04d}"}, "size": 1},
                "aspectRatio": {"width": 4, "height": 3},
            }
            for n in range(count)
        ],
    }


def test_a_gallery_shows_like_images_with_alt_text_and_counts_the_rest() -> None:
    event = commit({"text": "trip", "createdAt": "2026-09-09T19:46:02Z", "embed": gallery(6)})
    payload = post_payload(parse_event(event))  # type: ignore[arg-type]
    media = payload["entities"]["media"]
    assert [(m["media_url_https"], m["type"], m["ext_alt_text"]) for m in media] == [
        (
            f"https://cdn.bsky.app/img/feed_thumbnail/plain/{DID}/bafkreigallery{n:04d}@jpeg",
            "photo",
            f"photo {n}",
        )
        for n in range(4)
    ]
    assert payload["more_media"] == 2


def test_a_gallery_beside_a_quote_shows_too_and_a_small_one_counts_nothing_more() -> None:
    quoted = f"at://{BOB}/app.bsky.feed.post/3kquoted"
    embed = {
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"record": {"uri": quoted, "cid": "bafyrei"}},
        "media": gallery(2),
    }
    event = commit({"text": "look", "createdAt": "2026-09-09T19:46:02Z", "embed": embed})
    payload = post_payload(parse_event(event))  # type: ignore[arg-type]
    assert [m["ext_alt_text"] for m in payload["entities"]["media"]] == ["photo 0", "photo 1"]
    assert "more_media" not in payload
    assert [u["expanded_url"] for u in payload["entities"]["urls"]] == [
        f"https://bsky.app/profile/{BOB}/post/3kquoted"
    ]


def test_a_delete_names_the_post_it_removes() -> None:
    event = {
        "did": DID,
        "time_us": TIME_US,
        "kind": "commit",
        "commit": {
            "rev": "x",
            "operation": "delete",
            "collection": "app.bsky.feed.post",
            "rkey": "3l3qo2vuowo2b",
        },
    }
    deleted = parse_event(event)
    assert isinstance(deleted, Delete)
    posted = parse_event(rich_post())
    assert isinstance(posted, Post)
    assert deleted.id_str == posted.id_str


def test_identity_account_and_other_events() -> None:
    identity = parse_event(
        {
            "did": DID,
            "time_us": TIME_US,
            "kind": "identity",
            "identity": {"did": DID, "handle": "new.bsky.social", "seq": 1, "time": "x"},
        }
    )
    assert identity == Identity(DID, "new.bsky.social", TIME_US)
    account = parse_event(
        {
            "did": DID,
            "time_us": TIME_US,
            "kind": "account",
            "account": {"active": False, "did": DID, "status": "deactivated", "seq": 2},
        }
    )
    assert account == Account(DID, False, "deactivated", TIME_US)
    like = commit({"subject": {}}, collection="app.bsky.feed.like")
    assert isinstance(parse_event(like), Ignored)
    update = commit({"text": "edited"}, operation="update")
    assert isinstance(parse_event(update), Ignored)
    assert isinstance(parse_event({"time_us": TIME_US, "kind": "future"}), Ignored)


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"kind": "commit"},
        {**rich_post(), "time_us": "soon"},
        {**rich_post(), "did": "alice"},
        commit({"text": 5}),
        commit({"createdAt": "2024-09-09T19:46:02Z"}),
        commit({"text": "hi"}, rkey="a/b"),
        {"did": DID, "time_us": TIME_US, "kind": "commit", "commit": "nope"},
        {"did": DID, "time_us": TIME_US, "kind": "account", "account": {"did": DID}},
    ],
)
def test_malformed_events_raise_a_typed_error(event: Any) -> None:
    with pytest.raises(JetstreamShapeError):
        parse_event(event)


def test_bad_facets_and_dates_degrade_instead_of_failing() -> None:
    event = commit(
        {
            "text": "é #tag",
            "createdAt": "yesterday",
            "facets": [
                # byteStart 1 is inside "é": not a character boundary.
                {"index": {"byteStart": 1, "byteEnd": 7}, "features": [{"$type": "x"}]},
                {"index": {"byteStart": [], "byteEnd": 7}, "features": []},
                {
                    "index": {"byteStart": 3, "byteEnd": 99},
                    "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "tag"}],
                },
                {
                    "index": {"byteStart": 3, "byteEnd": 7},
                    "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "tag"}],
                },
            ],
        }
    )
    payload = post_payload(parse_event(event))  # type: ignore[arg-type]
    assert spans(payload, "hashtags") == ["#tag"]
    # An unreadable createdAt falls back to the event time.
    assert payload["created_at"] == "Mon Sep 09 19:46:02 +0000 2024"


def test_profiles_from_the_appview() -> None:
    view = {
        "did": DID,
        "handle": "alice.bsky.social",
        "displayName": " Alice ",
        "avatar": "javascript:alert(1)",
    }
    assert profile_from_appview(view) == Profile(DID, "alice.bsky.social", "Alice", None)
    invalid = profile_from_appview({"did": DID, "handle": "handle.invalid"})
    assert invalid.handle is None
    with pytest.raises(JetstreamShapeError):
        profile_from_appview({"handle": "x"})
