"""The streaming API's wire protocol: incremental framing and typed messages, with no I/O.

Bytes arrive in arbitrary chunks. `StreamDecoder.feed` turns them into `Message` objects, whatever
the chunk boundaries, and never raises on bad input: damaged or unexpected data is counted in
`StreamDecoder.stats` and skipped, so one bad line cannot take a stream down.

Framing follows Twitter's v1.1 streaming API: one JSON object per CRLF-terminated line (a bare LF is
accepted too), blank lines as keep-alives, and with `delimited=length` a decimal byte count on its
own line followed by exactly that many bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
"""A v1.1 tweet with a quoted retweet is tens of KB; anything near this is not a tweet."""

MAX_LENGTH_LINE_BYTES = 32
"""With `delimited=length`, a longer count line is garbage, not a byte count."""

MAX_UNKNOWN_KEYS = 16
"""How many keys of an unrecognised message are kept for the log."""


class MessageShapeError(ValueError):
    """A recognised message type whose fields are missing or of the wrong type."""


@dataclass(frozen=True, slots=True)
class Tweet:
    """A status, as parsed JSON; trimming it for the browser is `tweets.py`'s job."""

    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    """The author deleted a tweet: viewers must drop it."""

    id_str: str
    user_id_str: str


@dataclass(frozen=True, slots=True)
class ScrubGeo:
    """Location data of the user's tweets up to a status id must be removed."""

    user_id_str: str
    up_to_status_id_str: str


@dataclass(frozen=True, slots=True)
class Limit:
    """Matching tweets held back since the connection opened (a running total, not a delta)."""

    track: int


@dataclass(frozen=True, slots=True)
class StallWarning:
    """The server's queue for this client is filling (sent with `stall_warnings=true`)."""

    code: str
    message: str
    percent_full: int | None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The server says why it is about to close the stream."""

    code: int
    stream_name: str
    reason: str

    @property
    def name(self) -> str:
        return disconnect_name(self.code)

    @property
    def fatal(self) -> bool:
        return disconnect_is_fatal(self.code)

    @property
    def replaced(self) -> bool:
        """Whether it says a newer connection with the same credentials took this one's place."""
        return self.code in DISCONNECT_REPLACED


@dataclass(frozen=True, slots=True)
class StatusWithheld:
    """A tweet is withheld in some countries."""

    id_str: str
    user_id_str: str
    withheld_in_countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserWithheld:
    """All of a user's tweets are withheld in some countries."""

    user_id_str: str
    withheld_in_countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unknown:
    """Valid JSON of a type we do not know; Twitter warns that new types may appear."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A blank line: the connection is alive but has nothing to say."""


Message: TypeAlias = (
    Tweet
    | Delete
    | ScrubGeo
    | Limit
    | StallWarning
    | Disconnect
    | StatusWithheld
    | UserWithheld
    | Unknown
    | KeepAlive
)

KEEPALIVE = KeepAlive()

DISCONNECT_NAMES: Mapping[int, str] = {
    1: "Shutdown",
    2: "Duplicate stream",
    3: "Control request",
    4: "Stall",
    5: "Normal",
    6: "Token revoked",
    7: "Admin logout",
    9: "Max message limit",
    10: "Stream exception",
    11: "Broker stall",
    12: "Shed load",
}

DISCONNECT_REPLACED = frozenset({2, 7})
"""Codes that end the older of two connections made with the same credentials.

Twitter allows one standing connection per account and disconnects the older one with code 2
("Duplicate stream"). Its documentation gives 7 ("Admin logout") the words "the same credentials
were used to connect a new stream and the oldest was disconnected", so 7 is read the same way.
"""

DISCONNECT_NEEDS_PERSON = frozenset({2, 6, 7})
"""Codes where reconnecting as usual cannot help.

2 and 7 mean the same credentials are connected elsewhere: reconnecting would only fight that other
client for the slot (unless that newer connection is our own replacement; the runner tells the two
apart). 6 means the access token was revoked. Every other code, including codes Twitter adds
later, means "reconnect with the usual backoff"; a real credential problem then shows up as HTTP
401 on the next attempt and is classified there.
"""


def disconnect_name(code: int) -> str:
    """Twitter's name for a disconnect code, for logs."""
    return DISCONNECT_NAMES.get(code, f"Unknown code {code}")


def disconnect_is_fatal(code: int) -> bool:
    """Whether a disconnect needs a person rather than a reconnect."""
    return code in DISCONNECT_NEEDS_PERSON


@dataclass(slots=True)
class DecoderStats:
    """What a decoder has seen; `messages` counts everything returned except keep-alives."""

    messages: int = 0
    keepalives: int = 0
    oversized: int = 0
    malformed: int = 0
    unknown: int = 0


def _require_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageShapeError(f"{what} is not an object")
    return value


def _id_str(obj: Mapping[str, Any], key: str) -> str:
    """`<key>_str`, or the numeric `<key>` as text (older messages send only the number)."""
    text = obj.get(f"{key}_str")
    if isinstance(text, str):
        return text
    number = obj.get(key)
    if isinstance(number, int) and not isinstance(number, bool):
        return str(number)
    raise MessageShapeError(f"missing {key}_str")


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MessageShapeError(f"{key} is not an integer")


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    return value if isinstance(value, str) else str(value)


def _countries(obj: Mapping[str, Any]) -> tuple[str, ...]:
    value = obj.get("withheld_in_countries")
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise MessageShapeError("withheld_in_countries is not a list of strings")
    return tuple(value)


def _delete(body: dict[str, Any]) -> Message:
    status = _require_dict(body.get("status"), "delete.status")
    return Delete(_id_str(status, "id"), _id_str(status, "user_id"))


def _scrub_geo(body: dict[str, Any]) -> Message:
    return ScrubGeo(_id_str(body, "user_id"), _id_str(body, "up_to_status_id"))


def _limit(body: dict[str, Any]) -> Message:
    return Limit(_int(body, "track"))


def _warning(body: dict[str, Any]) -> Message:
    percent = body.get("percent_full")
    if not isinstance(percent, int) or isinstance(percent, bool):
        percent = None
    return StallWarning(_text(body, "code"), _text(body, "message"), percent)


def _disconnect(body: dict[str, Any]) -> Message:
    return Disconnect(_int(body, "code"), _text(body, "stream_name"), _text(body, "reason"))


def _status_withheld(body: dict[str, Any]) -> Message:
    return StatusWithheld(_id_str(body, "id"), _id_str(body, "user_id"), _countries(body))


def _user_withheld(body: dict[str, Any]) -> Message:
    return UserWithheld(_id_str(body, "id"), _countries(body))


_CONTROL_PARSERS = {
    "delete": _delete,
    "scrub_geo": _scrub_geo,
    "limit": _limit,
    "warning": _warning,
    "disconnect": _disconnect,
    "status_withheld": _status_withheld,
    "user_withheld": _user_withheld,
}

_TWEET_TEXT_KEYS = ("text", "full_text", "extended_tweet")


def _looks_like_tweet(obj: Mapping[str, Any]) -> bool:
    return (
        isinstance(obj.get("id_str"), str)
        and isinstance(obj.get("user"), dict)
        and any(key in obj for key in _TWEET_TEXT_KEYS)
    )


def parse_message(obj: dict[str, Any]) -> Message:
    """Classify one decoded JSON object.

    Raises MessageShapeError when a known control message lacks its fields; anything neither a
    control message nor a tweet is `Unknown`, never an error.
    """
    for key, parse in _CONTROL_PARSERS.items():
        if key in obj:
            return parse(_require_dict(obj[key], key))
    if _looks_like_tweet(obj):
        return Tweet(obj)
    return Unknown(tuple(obj)[:MAX_UNKNOWN_KEYS])


class StreamDecoder:
    """Incremental framing for one connection; make a new decoder for every connection.

    No input makes `feed` raise. An over-long line is dropped as soon as it passes the limit, and
    the rest of it is skipped up to the next newline, so it is never held in memory whole; with
    `delimited=True` an over-long declared length is skipped byte-for-byte the same way.
    """

    def __init__(
        self, *, delimited: bool = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        self.delimited = delimited
        self.max_message_bytes = max_message_bytes
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._skipping_line = False
        self._in_body = False
        self._skipping_body = False
        self._body_remaining = 0
        self._body_last_byte = 0
        self._expect_terminator = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Message]:
        """Decode what `chunk` completes; a partial message waits for the next chunk."""
        messages: list[Message] = []
        position = 0
        while position < len(chunk):
            if self._in_body:
                position = self._take_body(chunk, position, messages)
            else:
                position = self._take_line(chunk, position, messages)
        return messages

    def _line_limit(self) -> int:
        # One extra byte lets a line of exactly the limit keep its CR.
        return MAX_LENGTH_LINE_BYTES if self.delimited else self.max_message_bytes + 1

    def _take_line(self, chunk: bytes, position: int, messages: list[Message]) -> int:
        newline = chunk.find(b"\n", position)
        stop = len(chunk) if newline < 0 else newline
        if not self._skipping_line:
            if len(self._buffer) + (stop - position) > self._line_limit():
                self._buffer.clear()
                self._skipping_line = True
                self._expect_terminator = False
                if self.delimited:
                    self.stats.malformed += 1
                else:
                    self.stats.oversized += 1
            else:
                self._buffer += memoryview(chunk)[position:stop]
        if newline < 0:
            return len(chunk)
        if self._skipping_line:
            self._skipping_line = False
        else:
            line = bytes(self._buffer)
            self._buffer.clear()
            self._complete_line(line, messages)
        return newline + 1

    def _complete_line(self, line: bytes, messages: list[Message]) -> None:
        text = line.strip()
        if not text:
            if self._expect_terminator:
                self._expect_terminator = False
            else:
                self._keepalive(messages)
            return
        self._expect_terminator = False
        if not self.delimited:
            if len(line) - line.endswith(b"\r") > self.max_message_bytes:
                self.stats.oversized += 1
            else:
                self._decode(text, messages)
            return
        if not text.isdigit():
            self.stats.malformed += 1
            return
        size = int(text)
        if size == 0:
            return
        self._in_body = True
        self._body_remaining = size
        self._skipping_body = size > self.max_message_bytes
        if self._skipping_body:
            self.stats.oversized += 1

    def _take_body(self, chunk: bytes, position: int, messages: list[Message]) -> int:
        take = min(self._body_remaining, len(chunk) - position)
        end = position + take
        if not self._skipping_body:
            self._buffer += memoryview(chunk)[position:end]
        self._body_remaining -= take
        self._body_last_byte = chunk[end - 1]
        if self._body_remaining == 0:
            self._in_body = False
            # Twitter counts the message's own CRLF in the length; a sender that does not leaves
            # that CRLF to follow, and it must not be mistaken for a keep-alive.
            self._expect_terminator = self._body_last_byte != ord("\n")
            if not self._skipping_body:
                body = bytes(self._buffer)
                self._buffer.clear()
                text = body.strip()
                if text:
                    self._decode(text, messages)
                else:
                    self._keepalive(messages)
            self._skipping_body = False
        return end

    def _keepalive(self, messages: list[Message]) -> None:
        self.stats.keepalives += 1
        messages.append(KEEPALIVE)

    def _decode(self, payload: bytes, messages: list[Message]) -> None:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.stats.malformed += 1
            return
        if not isinstance(obj, dict):
            self.stats.malformed += 1
            return
        try:
            message = parse_message(obj)
        except MessageShapeError:
            self.stats.malformed += 1
            return
        if isinstance(message, Unknown):
            self.stats.unknown += 1
        self.stats.messages += 1
        messages.append(message)
