"""Tests for the streaming wire protocol: framing at any chunking, every message type, bad input."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pats_trio.upstream.twitter import protocol
from pats_trio.upstream.twitter.protocol import (
    KeepAlive,
    Message,
    StreamDecoder,
    disconnect_is_fatal,
)

TWEET: dict[str, Any] = {
    "created_at": "Wed Oct 10 20:19:24 +0000 2018",
    "id": 1050118621198921728,
    "id_str": "1050118621198921728",
    "text": "To make room for more expression, we will now count all emojis as equal \U0001f44b",
    "user": {"id_str": "6253282", "screen_name": "TwitterAPI"},
    "timestamp_ms": "1539202764000",
}
EXTENDED_TWEET: dict[str, Any] = {
    "id_str": "2",
    "truncated": True,
    "extended_tweet": {"full_text": "a long one " * 30},
    "user": {"id_str": "7", "screen_name": "long"},
}

# Each line as Twitter would send it, with the message it must decode to.
SAMPLES: list[tuple[dict[str, Any], Message]] = [
    (TWEET, protocol.Tweet(TWEET)),
    (EXTENDED_TWEET, protocol.Tweet(EXTENDED_TWEET)),
    (
        {"delete": {"status": {"id": 1234, "id_str": "1234", "user_id": 3, "user_id_str": "3"}}},
        protocol.Delete("1234", "3"),
    ),
    (
        {
            "scrub_geo": {
                "user_id": 14090452,
                "user_id_str": "14090452",
                "up_to_status_id": 23260136625,
                "up_to_status_id_str": "23260136625",
            }
        },
        protocol.ScrubGeo("14090452", "23260136625"),
    ),
    ({"limit": {"track": 1234, "timestamp_ms": "1539202764000"}}, protocol.Limit(1234)),
    (
        {
            "warning": {
                "code": "FALLING_BEHIND",
                "message": "Your connection is falling behind and messages are being queued",
                "percent_full": 60,
            }
        },
        protocol.StallWarning(
            "FALLING_BEHIND",
            "Your connection is falling behind and messages are being queued",
            60,
        ),
    ),
    (
        {"disconnect": {"code": 4, "stream_name": "< A stream identifier >", "reason": "Stall"}},
        protocol.Disconnect(4, "< A stream identifier >", "Stall"),
    ),
    (
        {
            "status_withheld": {
                "id": 1234567890,
                "user_id": 123456,
                "withheld_in_countries": ["DE", "AR"],
            }
        },
        protocol.StatusWithheld("1234567890", "123456", ("DE", "AR")),
    ),
    (
        {"user_withheld": {"id": 123456, "withheld_in_countries": ["DE", "AR"]}},
        protocol.UserWithheld("123456", ("DE", "AR")),
    ),
    ({"friends": [1, 2, 3]}, protocol.Unknown(("friends",))),
]


def crlf_stream() -> tuple[bytes, list[Message]]:
    """Every sample, with keep-alives in between and one line ended by a bare LF."""
    data = bytearray(b"\r\n")
    expected: list[Message] = [KeepAlive()]
    for index, (payload, message) in enumerate(SAMPLES):
        data += orjson.dumps(payload) + (b"\n" if index == 3 else b"\r\n")
        expected.append(message)
        if index % 3 == 0:
            data += b"\r\n"
            expected.append(KeepAlive())
    return bytes(data), expected


def length_stream() -> tuple[bytes, list[Message]]:
    """The same samples framed as `delimited=length`: the count includes the message's CRLF."""
    data = bytearray()
    expected: list[Message] = []
    for index, (payload, message) in enumerate(SAMPLES):
        if index % 3 == 0:
            data += b"\r\n"
            expected.append(KeepAlive())
        body = orjson.dumps(payload) + b"\r\n"
        data += str(len(body)).encode() + b"\r\n" + body
        expected.append(message)
    return bytes(data), expected


def feed_all(decoder: StreamDecoder, chunks: list[bytes]) -> list[Message]:
    messages: list[Message] = []
    for chunk in chunks:
        messages.extend(decoder.feed(chunk))
    return messages


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in pairwise(bounds)]


def test_every_message_type_is_parsed() -> None:
    data, expected = crlf_stream()
    decoder = StreamDecoder()
    assert decoder.feed(data) == expected
    assert decoder.stats == protocol.DecoderStats(
        messages=len(SAMPLES), keepalives=5, oversized=0, malformed=0, unknown=1
    )


@pytest.mark.parametrize("delimited", [False, True])
def test_split_at_every_offset_gives_the_same_messages(delimited: bool) -> None:
    data, expected = length_stream() if delimited else crlf_stream()
    for offset in range(len(data) + 1):
        decoder = StreamDecoder(delimited=delimited)
        assert feed_all(decoder, split_at(data, [offset])) == expected, offset


@pytest.mark.parametrize("delimited", [False, True])
def test_one_byte_at_a_time(delimited: bool) -> None:
    data, expected = length_stream() if delimited else crlf_stream()
    decoder = StreamDecoder(delimited=delimited)
    assert feed_all(decoder, [data[i : i + 1] for i in range(len(data))]) == expected
    assert decoder.buffered_bytes == 0


@settings(max_examples=300, deadline=None)
@given(st.data(), st.booleans())
def test_any_chunking_gives_the_same_messages(data: st.DataObject, delimited: bool) -> None:
    stream, expected = length_stream() if delimited else crlf_stream()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    assert feed_all(StreamDecoder(delimited=delimited), split_at(stream, cuts)) == expected


def test_keepalives_are_returned_and_counted() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(b"\r\n\r\n\n") == [KeepAlive(), KeepAlive(), KeepAlive()]
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\n") == [KeepAlive()]
    assert decoder.stats.keepalives == 4
    assert decoder.stats.messages == 0


def test_length_count_without_the_crlf_does_not_invent_keepalives() -> None:
    body = b'{"limit":{"track":7}}'
    data = b"\r\n" + (str(len(body)).encode() + b"\r\n" + body + b"\r\n") * 2
    decoder = StreamDecoder(delimited=True)
    assert feed_all(decoder, [data[i : i + 1] for i in range(len(data))]) == [
        KeepAlive(),
        protocol.Limit(7),
        protocol.Limit(7),
    ]


def test_oversized_line_is_dropped_without_buffering_it_and_the_stream_continues() -> None:
    decoder = StreamDecoder(max_message_bytes=100)
    huge = b'{"text":"' + b"x" * 5000 + b'"}\r\n'
    peak = 0
    for start in range(0, len(huge), 37):
        assert decoder.feed(huge[start : start + 37]) == []
        peak = max(peak, decoder.buffered_bytes)
    assert peak <= 101
    assert decoder.feed(b'{"limit":{"track":1}}\r\n') == [protocol.Limit(1)]
    assert decoder.stats.oversized == 1
    assert decoder.stats.messages == 1


def test_line_of_exactly_the_limit_is_accepted_and_one_more_byte_is_not() -> None:
    line = b'{"limit":{"track":1}}'
    decoder = StreamDecoder(max_message_bytes=len(line))
    assert decoder.feed(line + b"\r\n") == [protocol.Limit(1)]
    assert decoder.feed(line + b" \r\n") == []
    assert decoder.feed(line + b"\n") == [protocol.Limit(1)]
    assert decoder.stats.oversized == 1


def test_oversized_length_is_skipped_byte_for_byte() -> None:
    big = b'{"text":"' + b"y" * 1000 + b'"}\r\n'
    small = b'{"limit":{"track":2}}\r\n'
    data = str(len(big)).encode() + b"\r\n" + big + str(len(small)).encode() + b"\r\n" + small
    decoder = StreamDecoder(delimited=True, max_message_bytes=100)
    peak = 0
    messages: list[Message] = []
    for start in range(0, len(data), 50):
        messages.extend(decoder.feed(data[start : start + 50]))
        peak = max(peak, decoder.buffered_bytes)
    assert messages == [protocol.Limit(2)]
    assert peak <= 100
    assert decoder.stats.oversized == 1


def test_malformed_json_is_counted_and_the_stream_continues() -> None:
    decoder = StreamDecoder()
    data = b'{"limit":{"track":1}\r\n[1,2]\r\n"text"\r\n\xff\xfe\r\n{"limit":{"track":2}}\r\n'
    assert decoder.feed(data) == [protocol.Limit(2)]
    assert decoder.stats.malformed == 4


@pytest.mark.parametrize(
    "payload",
    [
        {"delete": {"status": {"user_id_str": "3"}}},
        {"delete": "1234"},
        {"limit": {"track": "many"}},
        {"limit": {"track": True}},
        {"disconnect": {"reason": "no code"}},
        {"status_withheld": {"id_str": "1", "user_id_str": "2", "withheld_in_countries": "DE"}},
        {"scrub_geo": {"user_id_str": "1"}},
    ],
)
def test_known_type_with_a_broken_shape_is_counted_malformed(payload: dict[str, Any]) -> None:
    decoder = StreamDecoder()
    assert decoder.feed(orjson.dumps(payload) + b"\r\n") == []
    assert decoder.stats.malformed == 1


def test_unknown_types_are_returned_and_counted() -> None:
    decoder = StreamDecoder()
    tweet_without_user = {"id_str": "1", "text": "no user"}
    messages = decoder.feed(
        b'{"event":"follow","source":{}}\r\n' + orjson.dumps(tweet_without_user) + b"\r\n"
    )
    assert messages == [protocol.Unknown(("event", "source")), protocol.Unknown(("id_str", "text"))]
    assert decoder.stats.unknown == 2


def test_garbage_length_line_is_counted_and_framing_recovers() -> None:
    body = b'{"limit":{"track":3}}\r\n'
    framed = str(len(body)).encode() + b"\r\n" + body
    decoder = StreamDecoder(delimited=True)
    assert decoder.feed(b"abc\r\n" + b"9" * 200 + b"\r\n" + framed) == [protocol.Limit(3)]
    assert decoder.stats.malformed == 2


def test_warning_without_percent_and_numeric_ids_only() -> None:
    decoder = StreamDecoder()
    data = (
        b'{"warning":{"code":"FALLING_BEHIND","message":"m"}}\r\n'
        b'{"delete":{"status":{"id":5,"user_id":6}}}\r\n'
    )
    assert decoder.feed(data) == [
        protocol.StallWarning("FALLING_BEHIND", "m", None),
        protocol.Delete("5", "6"),
    ]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.booleans())
def test_random_bytes_never_raise(chunks: list[bytes], delimited: bool) -> None:
    decoder = StreamDecoder(delimited=delimited, max_message_bytes=256)
    messages = feed_all(decoder, chunks)
    assert len(messages) == decoder.stats.messages + decoder.stats.keepalives
    assert decoder.buffered_bytes <= 257


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["delete", "limit", "warning", "disconnect", "user", "id_str", "x"]),
            json_values,
            max_size=3,
        ),
        max_size=10,
    )
)
def test_random_json_objects_never_raise_and_each_line_is_accounted_for(
    objects: list[dict[str, Any]],
) -> None:
    decoder = StreamDecoder()
    data = b"".join(orjson.dumps(obj) + b"\r\n" for obj in objects)
    feed_all(decoder, split_at(data, [len(data) // 3]))
    assert decoder.stats.messages + decoder.stats.malformed == len(objects)


def test_disconnect_codes_that_need_a_person() -> None:
    needs_person = {code for code in range(0, 20) if disconnect_is_fatal(code)}
    assert needs_person == {2, 6, 7}
    assert protocol.Disconnect(12, "", "").name == "Shed load"
    assert not protocol.Disconnect(12, "", "").fatal
    assert protocol.Disconnect(6, "", "").fatal
    assert protocol.disconnect_name(99) == "Unknown code 99"
