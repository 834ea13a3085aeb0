"""The streaming-API emulator over real loopback sockets, and the synthetic corpus it draws from."""

from __future__ import annotations

import calendar
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pats_trio.credentials import Credentials
from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.emulator.corpus import USERS, TweetFactory
from pats_trio.emulator.server import FALLING_BEHIND_PERCENT, STREAM_BUFFER
from pats_trio.matching import TrackError, matches_any, parse_track, tweet_terms
from pats_trio.tweets import trim
from pats_trio.upstream.twitter.client import StreamRequest, build_request

pytestmark = pytest.mark.trio

TIMEOUT = 15.0
# Under autojump_clock, fail_after counts virtual seconds.
MOCK_TIMEOUT = 3600.0
NOW_MS = 1_700_000_000_000
ACCOUNT = Credentials("consumer-key", "consumer-secret", "access-token", "access-token-secret")
# The same app (consumer key) for another account: a credential set of its own.
OTHER_ACCOUNT = Credentials("consumer-key", "consumer-secret", "other-token", "other-secret")


@asynccontextmanager
async def serving(emulator: Emulator) -> AsyncIterator[str]:
    """The emulator on a free loopback port; yields its streaming base URL."""
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(serve_emulator, emulator)
        try:
            yield base_url
        finally:
            nursery.cancel_scope.cancel()


def open_request(
    client: httpx.AsyncClient, request: StreamRequest
) -> AbstractAsyncContextManager[httpx.Response]:
    """Send a request built (and signed, given credentials) as the app's client builds it."""
    return client.stream(request.method, request.url, headers=request.headers, content=request.body)


@asynccontextmanager
async def sample_stream(emulator: Emulator, query: str = "") -> AsyncIterator[httpx.Response]:
    """The emulator served, with one sample stream open on it."""
    async with (
        serving(emulator) as base_url,
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", f"{base_url}/statuses/sample.json{query}") as response,
    ):
        yield response


class Body:
    """Reads a streaming body the way a v1.1 client does: CRLF lines or counted bytes."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    async def _fill(self) -> None:
        self._buffer += await self._chunks.__anext__()

    async def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            await self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    async def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    async def message(self) -> dict[str, Any]:
        """The next JSON message, skipping keep-alives."""
        while not (line := await self.line()):
            pass
        loaded: dict[str, Any] = orjson.loads(line)
        return loaded

    async def rest(self) -> bytes:
        """Everything left, up to the end the server gives the body."""
        async for chunk in self._chunks:
            self._buffer += chunk
        rest, self._buffer = self._buffer, b""
        return rest


def body_of(response: httpx.Response) -> Body:
    return Body(response.aiter_bytes())


def matching(track: str, status: Mapping[str, Any]) -> bool:
    return matches_any(parse_track(track), tweet_terms(trim(status)))


def statuses_in(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """A status and the statuses nested in it."""
    yield status
    for key in ("retweeted_status", "quoted_status"):
        if key in status:
            yield from statuses_in(status[key])


def entity_token(kind: str, entity: Mapping[str, Any]) -> str:
    """The text an entity of this kind covers."""
    if kind == "user_mentions":
        return "@" + str(entity["screen_name"])
    if kind == "urls":
        return str(entity["url"])
    return {"hashtags": "#", "symbols": "$"}[kind] + str(entity["text"])


def assert_entities_point_at_text(text: str, entities: Mapping[str, Any]) -> None:
    for kind in ("hashtags", "symbols", "user_mentions", "urls"):
        for entity in entities[kind]:
            start, end = entity["indices"]
            assert text[start:end] == entity_token(kind, entity), (kind, text, entity)


# ---- the sample stream


async def test_sample_stream_delivers_v1_tweets_framed_by_crlf() -> None:
    emulator = Emulator(rate=50, seed=1)
    with trio.fail_after(TIMEOUT):
        async with sample_stream(emulator) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
            body = body_of(response)
            statuses = [await body.message() for _ in range(20)]
    ids = [status["id"] for status in statuses]
    assert ids == sorted(ids)
    assert len(set(ids)) == 20
    for status in statuses:
        assert status["id_str"] == str(status["id"])
        assert status["timestamp_ms"].isdigit()
        assert time.strptime(status["created_at"], "%a %b %d %H:%M:%S +0000 %Y")
        assert trim(status)["user"]["screen_name"] == status["user"]["screen_name"]
    [record] = emulator.connections
    assert (record.kind, record.method, record.track, record.delimited) == (
        "sample",
        "GET",
        "",
        False,
    )
    assert record.sent >= 20


async def test_response_uses_chunked_transfer_encoding_on_the_wire() -> None:
    emulator = Emulator(rate=0)
    status = emulator.factory.next_status(NOW_MS)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url:
            url = httpx.URL(base_url)
            assert url.host is not None
            assert url.port is not None
            stream = await trio.open_tcp_stream(url.host, url.port)
            async with stream:
                request = b"GET /1.1/statuses/sample.json HTTP/1.1\r\nHost: localhost\r\n\r\n"
                await stream.send_all(request)
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                emulator.inject(status)
                message = orjson.dumps(status) + b"\r\n"
                chunk = f"{len(message):x}".encode() + b"\r\n" + message + b"\r\n"
                data = b""
                while not data.endswith(chunk):
                    data += await stream.receive_some()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"http/1.1 200 "
    assert b"transfer-encoding: chunked" in lines
    assert not any(line.startswith(b"content-length") for line in lines)
    assert body == chunk


async def test_client_disconnect_closes_the_record() -> None:
    emulator = Emulator(rate=20, seed=2)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            async with client.stream("GET", base_url + "/statuses/sample.json") as response:
                await body_of(response).message()
            [record] = emulator.connections
            await emulator.wait_until(lambda e: record.closed_at is not None)
            assert emulator.open_connections() == []


# ---- the filter stream


async def test_filter_post_delivers_only_matching_tweets() -> None:
    track = "python, trio rust"
    emulator = Emulator(rate=30, seed=3, filter_rate=30)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            url = base_url + "/statuses/filter.json"
            async with client.stream("POST", url, data={"track": track}) as response:
                assert response.status_code == 200
                assert response.headers["transfer-encoding"] == "chunked"
                body = body_of(response)
                statuses = [await body.message() for _ in range(30)]
                [record] = emulator.open_connections("filter")
    assert all(matching(track, status) for status in statuses)
    assert any(matching("trio rust", status) for status in statuses)
    assert any(matching("python", status) for status in statuses)
    assert (record.kind, record.method, record.track) == ("filter", "POST", track)


async def test_filter_accepts_get_with_query_and_records_authorization() -> None:
    emulator = Emulator(rate=0, filter_rate=50, seed=4)
    authorization = 'OAuth oauth_consumer_key="key", oauth_signature="c2VjcmV0"'
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            url = base_url + "/statuses/filter.json"
            params = {"track": "Football"}
            headers = {"Authorization": authorization}
            async with client.stream("GET", url, params=params, headers=headers) as response:
                assert response.status_code == 200
                status = await body_of(response).message()
    assert matching("football", status)
    [record] = emulator.connections
    assert (record.method, record.track, record.authorization) == ("GET", "Football", authorization)
    assert "c2VjcmV0" not in repr(record)


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        ({}, 406, b"track"),
        ({"track": "  "}, 406, b"track"),
        ({"track": "python,,rust"}, 406, b"empty"),
        ({"track": "x" * 61}, 406, b"60"),
        ({"track": ",".join(f"w{n}" for n in range(401))}, 413, b"400"),
    ],
)
async def test_filter_refuses_a_missing_or_bad_track(
    data: dict[str, str], status: int, says: bytes
) -> None:
    emulator = Emulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            response = await client.post(base_url + "/statuses/filter.json", data=data)
    assert response.status_code == status
    assert says in response.content
    [record] = emulator.connections
    assert record.status == status
    assert record.closed_at is not None


async def test_unknown_path_and_wrong_method() -> None:
    emulator = Emulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            missing = await client.get(base_url + "/statuses/firehose.json")
            wrong = await client.post(base_url + "/statuses/sample.json")
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert emulator.connections == []


async def test_injected_status_reaches_sample_and_matching_filter_streams_only() -> None:
    emulator = Emulator(rate=0, filter_rate=0)
    python = emulator.factory.status_matching(["python"], NOW_MS)
    football = emulator.factory.status_matching(["football"], NOW_MS)
    assert not matching("football", python)
    assert not matching("python", football)
    received: dict[str, list[str]] = {}

    async def watch(client: httpx.AsyncClient, base_url: str, track: str) -> None:
        # Each filter stream is another account's: one account has one standing stream.
        account = Credentials("app", "app-secret", f"token-{track}", "token-secret")
        request = build_request(
            base_url, "filter" if track else "sample", track, credentials=account
        )
        async with open_request(client, request) as response:
            body = body_of(response)
            count = 1 if track else 2
            received[track or "sample"] = [(await body.message())["id_str"] for _ in range(count)]

    with trio.fail_after(TIMEOUT):
        async with (
            serving(emulator) as base_url,
            httpx.AsyncClient(timeout=None) as client,
            trio.open_nursery() as nursery,
        ):
            for track in ("", "python", "football"):
                nursery.start_soon(watch, client, base_url, track)
            await emulator.wait_until(lambda e: len(e.open_connections()) == 3)
            emulator.inject(python)
            emulator.inject(football)
    assert received == {
        "sample": [python["id_str"], football["id_str"]],
        "python": [python["id_str"]],
        "football": [football["id_str"]],
    }


# ---- framing and keep-alives


async def test_delimited_length_counts_the_bytes_of_each_message() -> None:
    emulator = Emulator(rate=0)
    statuses = [emulator.factory.status_matching([word], NOW_MS) for word in ("東京", "café", "🐍")]
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            url = base_url + "/statuses/sample.json?delimited=length"
            async with client.stream("GET", url) as response:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                for status in statuses:
                    emulator.inject(status)
                body = body_of(response)
                messages = []
                for _ in statuses:
                    size = int(await body.line())
                    message = await body.exactly(size)
                    assert message.endswith(b"\r\n")
                    assert b"\r\n" not in message[:-2]
                    messages.append(orjson.loads(message))
    assert messages == statuses
    assert emulator.connections[0].delimited


async def test_keepalive_every_interval_under_a_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    emulator = Emulator(rate=0, keepalive_interval=30.0)
    with trio.fail_after(MOCK_TIMEOUT):
        async with sample_stream(emulator) as response:
            body = body_of(response)
            start = trio.current_time()
            assert [await body.line() for _ in range(3)] == [b"", b"", b""]
            elapsed = trio.current_time() - start
            emulator.inject(emulator.factory.next_status(NOW_MS))
            assert (await body.message())["id_str"]
            assert await body.line() == b""
    assert 90.0 <= elapsed < 91.0


async def test_generator_rate_under_a_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    emulator = Emulator(rate=5.0, seed=5, keepalive_interval=10.0)
    count = 0
    with trio.fail_after(MOCK_TIMEOUT):
        async with sample_stream(emulator) as response:
            body = body_of(response)
            with trio.move_on_after(60.0):
                while True:
                    if await body.line():
                        count += 1
    assert 240 <= count <= 360  # Poisson, mean 300: within about 3.5 sigma


# ---- fault injection


async def test_fail_next_answers_with_the_status_then_recovers() -> None:
    emulator = Emulator(rate=20, seed=6)
    emulator.fail_next(420, body=b"Enhance Your Calm")
    emulator.fail_next(503, count=2)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            url = base_url + "/statuses/sample.json"
            refused = await client.get(url)
            assert (refused.status_code, refused.content) == (420, b"Enhance Your Calm")
            assert (await client.get(url)).status_code == 503
            assert (await client.get(url)).status_code == 503
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                assert (await body_of(response).message())["id_str"]
    assert [record.status for record in emulator.connections] == [420, 503, 503, 200]


async def test_drop_streams_closes_the_connection_mid_body() -> None:
    emulator = Emulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with sample_stream(emulator) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(emulator.factory.next_status(NOW_MS))
            body = body_of(response)
            assert (await body.message())["id_str"]
            emulator.drop_streams("filter")  # another kind: nothing happens
            [record] = emulator.open_connections()
            emulator.drop_streams()
            assert record.closed_at is not None  # closed as of the call
            assert emulator.open_connections() == []
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                await body.message()


async def test_drop_streams_leaves_out_the_chunked_terminator() -> None:
    emulator = Emulator(rate=0, keepalive_interval=0.05)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url:
            url = httpx.URL(base_url)
            assert url.host is not None
            assert url.port is not None
            stream = await trio.open_tcp_stream(url.host, url.port)
            async with stream:
                await stream.send_all(b"GET /1.1/statuses/sample.json HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while data.count(b"\r\n\r\n") < 2:  # the head, then a keep-alive chunk
                    data += await stream.receive_some()
                emulator.drop_streams()
                while chunk := await stream.receive_some():
                    data += chunk
    assert b"transfer-encoding: chunked" in data.lower()
    assert data.endswith(b"2\r\n\r\n\r\n")  # a keep-alive chunk, then EOF: no "0\r\n\r\n"


async def test_stall_streams_sends_nothing_but_stays_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    emulator = Emulator(rate=10, seed=7, keepalive_interval=30.0)
    with trio.fail_after(MOCK_TIMEOUT):
        async with sample_stream(emulator) as response:
            body = body_of(response)
            assert (await body.message())["id_str"]
            emulator.stall_streams()
            sent = emulator.sent
            with trio.move_on_after(300.0) as waited:
                await body.line()
                await body.line()
            assert waited.cancelled_caught
            assert emulator.sent <= sent + 1  # at most a batch already being written
            [record] = emulator.open_connections()
            assert record.closed_at is None


async def test_a_slow_reader_misses_messages_and_is_warned() -> None:
    emulator = Emulator(rate=0)
    status = emulator.factory.next_status(NOW_MS)
    with trio.fail_after(TIMEOUT):
        async with sample_stream(emulator, "?stall_warnings=true") as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            for _ in range(STREAM_BUFFER * 2):  # no checkpoint: the writer cannot drain
                emulator.inject(status)
            body = body_of(response)
            warnings = []
            for _ in range(STREAM_BUFFER):
                message = await body.message()
                if "warning" in message:
                    warnings.append(message["warning"])
    [record] = emulator.connections
    assert record.skipped == emulator.skipped >= STREAM_BUFFER - 2
    assert [(w["code"], w["percent_full"]) for w in warnings] == [
        ("FALLING_BEHIND", FALLING_BEHIND_PERCENT)
    ]


async def test_inject_raw_writes_control_messages_as_given() -> None:
    emulator = Emulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with sample_stream(emulator) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject_raw(b'{"limit":{"track":5}}\r\n', kind="filter")  # not this one
            emulator.inject_raw(b'{"limit":{"track":7}}\r\n')
            emulator.inject_raw(b"{garbage\r\n", kind="sample")
            body = body_of(response)
            assert await body.message() == {"limit": {"track": 7}}
            assert await body.line() == b"{garbage"
    assert emulator.sent == 0


# ---- one standing connection per account


@pytest.mark.parametrize("account", [ACCOUNT, None], ids=["oauth", "anonymous"])
async def test_a_new_stream_with_the_same_credentials_ends_the_older_one(
    account: Credentials | None,
) -> None:
    emulator = Emulator(rate=0, filter_rate=0)
    python = emulator.factory.status_matching(["python"], NOW_MS)
    later = emulator.factory.status_matching(["python"], NOW_MS + 1)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as base_url, httpx.AsyncClient(timeout=None) as client:
            first = build_request(base_url, "filter", "python", credentials=account)
            second = build_request(base_url, "filter", "python,rust", credentials=account)
            async with open_request(client, first) as old_response:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                emulator.inject(python)
                async with open_request(client, second) as new_response:
                    assert new_response.status_code == 200
                    old_body = body_of(old_response)
                    assert (await old_body.message())["id_str"] == python["id_str"]
                    farewell = await old_body.message()
                    assert await old_body.rest() == b"", "the body ends cleanly after it"
                    emulator.inject(later)
                    assert (await body_of(new_response).message())["id_str"] == later["id_str"]
    old, new = emulator.connections
    assert farewell["disconnect"]["code"] == 2
    assert set(farewell["disconnect"]) == {"code", "stream_name", "reason"}
    assert all(farewell["disconnect"][key] for key in ("stream_name", "reason"))
    assert old.replaced_by == new.id
    assert old.closed_at is not None
    assert new.opened_at <= old.closed_at
    assert (old.sent, new.sent, new.replaced_by) == (1, 1, None)


async def test_other_credentials_and_the_other_endpoint_keep_their_streams() -> None:
    emulator = Emulator(rate=0, filter_rate=0)
    python = emulator.factory.status_matching(["python"], NOW_MS)
    with trio.fail_after(TIMEOUT):
        async with (
            serving(emulator) as base_url,
            httpx.AsyncClient(timeout=None) as client,
            open_request(
                client, build_request(base_url, "filter", "python", credentials=ACCOUNT)
            ) as mine,
            open_request(
                client, build_request(base_url, "filter", "python", credentials=OTHER_ACCOUNT)
            ) as theirs,
            # Twitter counts sample and filter together; the emulator does not (see Emulator).
            open_request(client, build_request(base_url, "sample", credentials=ACCOUNT)) as sample,
        ):
            await emulator.wait_until(lambda e: len(e.open_connections()) == 3)
            emulator.inject(python)
            for response in (mine, theirs, sample):
                assert (await body_of(response).message())["id_str"] == python["id_str"]
            assert len(emulator.open_connections()) == 3
    assert [record.replaced_by for record in emulator.connections] == [None, None, None]


# ---- the corpus


async def corpus(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """`count` sample statuses, with a checkpoint now and then so `fail_after` can fire."""
    factory = TweetFactory(seed)
    statuses = []
    for n in range(count):
        statuses.append(factory.next_status(NOW_MS + n * 173))
        if n % 100 == 0:
            await trio.lowlevel.checkpoint()
    return statuses


async def test_corpus_statuses_are_well_formed_v1() -> None:
    with trio.fail_after(TIMEOUT):
        statuses = await corpus(2000)
    ids = [status["id"] for status in statuses]
    assert ids == sorted(set(ids))
    for status in statuses:
        for inner in statuses_in(status):
            assert inner["id_str"] == str(inner["id"])
            ms = int(inner["timestamp_ms"])
            parsed = time.strptime(inner["created_at"], "%a %b %d %H:%M:%S +0000 %Y")
            assert calendar.timegm(parsed) == ms // 1000
            assert len(inner["text"]) <= 140
            assert_entities_point_at_text(inner["text"], inner["entities"])
            extended = inner.get("extended_tweet")
            if extended is not None:
                full_text = extended["full_text"]
                assert 140 < len(full_text) <= 280
                assert inner["truncated"]
                assert inner["text"].endswith("…")
                assert full_text.startswith(inner["text"][:-1])
                assert extended["display_text_range"][1] == len(full_text)
                assert_entities_point_at_text(full_text, extended["entities"])
            user = inner["user"]
            assert user["id_str"] == str(user["id"])
            assert user["profile_image_url_https"].startswith("data:image/svg+xml,")
        trimmed = trim(status)
        assert trimmed["id_str"] == status["id_str"]
        extended = status.get("extended_tweet")
        assert trimmed["text"] == (extended["full_text"] if extended else status["text"])


async def test_corpus_has_retweets_quotes_long_tweets_and_many_users() -> None:
    with trio.fail_after(TIMEOUT):
        statuses = await corpus(2000)
    retweets = [status for status in statuses if "retweeted_status" in status]
    quotes = [status for status in statuses if status["is_quote_status"]]
    assert 0.10 <= len(retweets) / len(statuses) <= 0.20
    assert 0.025 <= len(quotes) / len(statuses) <= 0.08
    assert sum("extended_tweet" in status for status in statuses) >= 60
    for retweet in retweets:
        author = retweet["retweeted_status"]["user"]["screen_name"]
        assert retweet["text"].startswith(f"RT @{author}: ")
        assert retweet["retweeted_status"]["id"] < retweet["id"]
    for quote in quotes:
        quoted = quote["quoted_status"]
        assert quote["quoted_status_id_str"] == quoted["id_str"]
        assert quoted["id_str"] in quote["quoted_status_permalink"]["expanded"]
    assert len({status["user"]["id_str"] for status in statuses}) >= 50
    assert len(USERS) >= 60


async def test_corpus_is_multilingual_with_emoji() -> None:
    with trio.fail_after(TIMEOUT):
        statuses = await corpus(2000)
    text = "".join(trim(status)["text"] for status in statuses)
    scripts = {unicodedata.name(char, "?").split()[0] for char in set(text) if not char.isascii()}
    assert {"HIRAGANA", "CJK", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI"} <= scripts
    assert sum(unicodedata.category(char) == "So" and ord(char) > 0x1F000 for char in text) > 100
    langs = Counter(status["lang"] for status in statuses)
    assert langs["en"] > 1000
    assert {"ja", "ru", "el", "ar", "hi"} <= set(langs)
    hashtags = {tag["text"] for status in statuses for tag in status["entities"]["hashtags"]}
    domains = {
        httpx.URL(url["expanded_url"]).host
        for status in statuses
        for url in trim(status)["entities"]["urls"]
    }
    assert len(hashtags) > 60
    assert {"github.com", "docs.python.org", "www.bbc.co.uk", "arxiv.org"} <= domains


async def test_avatars_are_svg_initials_on_a_colour() -> None:
    with trio.fail_after(TIMEOUT):
        statuses = await corpus(500, seed=1)
    users = {status["user"]["screen_name"]: status["user"] for status in statuses}
    colours = set()
    for user in users.values():
        svg = unquote(user["profile_image_url_https"].removeprefix("data:image/svg+xml,"))
        initials = "".join(word[0] for word in user["name"].split()[:2]).upper()
        assert svg.startswith("<svg")
        assert "<circle" in svg
        assert f">{initials}</text>" in svg
        colours.add(svg.split('fill="', 1)[1][:7])
    assert len(colours) > len(users) // 2


async def test_corpus_is_deterministic_for_a_seed() -> None:
    with trio.fail_after(TIMEOUT):
        assert await corpus(50, seed=3) == await corpus(50, seed=3)
        assert await corpus(50, seed=3) != await corpus(50, seed=4)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3),
    st.integers(0, 2**32),
)
async def test_status_matching_holds_every_term(words: list[str], seed: int) -> None:
    try:
        phrases = parse_track(" ".join(words))
    except TrackError:
        phrases = ()  # over Twitter's 60 bytes once lowered
    assume(len(phrases) == 1)
    [phrase] = phrases
    # Only phrases some text can match: "©" or ":" alone are never terms, as on Twitter.
    assume(matches_any(phrases, tweet_terms({"text": phrase.text})))
    with trio.fail_after(TIMEOUT):
        await trio.lowlevel.checkpoint()
        status = TweetFactory(seed).status_matching(phrase.text.split(), NOW_MS)
    assert matches_any(phrases, tweet_terms(trim(status))), status["text"]
    assert_entities_point_at_text(status["text"], status["entities"])


@pytest.mark.parametrize(
    "track", ["python", "trio rust", "football", "c++", "#python", "東京", "$aapl"]
)
async def test_status_matching_for_common_tracks(track: str) -> None:
    factory = TweetFactory(seed=9)
    [phrase] = parse_track(track)
    with trio.fail_after(TIMEOUT):
        for n in range(20):
            await trio.lowlevel.checkpoint()
            status = factory.status_matching(phrase.text.split(), NOW_MS + n)
            assert matches_any([phrase], tweet_terms(trim(status))), status["text"]
