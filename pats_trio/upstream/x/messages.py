"""The filtered stream's body as messages: NDJSON lines, ``\\r\\n`` keep-alives, error objects.

Pure: `LineDecoder.feed` takes bytes and returns what they complete. A blank line is a
keep-alive. A line with ``data`` is a post (its ``errors``, if any, say which referenced posts
X could not send, and are not the stream's business). A line with only ``errors`` (or a bare
problem, as X documents ``ConnectionException``) is a problem, told by its kind
(`problems.kind_of`): a kind of `problems.STREAM_ENDING` ends the connection, anything else is
read past (what a viewer sees of each: `problems`). The shapes are the ``Problem`` schemas of X's
OpenAPI spec (https://github.com/xdevplatform/docs, ``openapi.json``): an
``OperationalDisconnectProblem`` (type ``.../problems/operational-disconnect``, title
``operational-disconnect``, a ``disconnect_type``) and a ``ConnectionExceptionProblem`` (type
``.../problems/streaming-connection``, title ``ConnectionException``, a ``connection_issue``
such as ``TooManyConnections``, which waits as a 429 does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pats_trio.upstream.x.problems import STREAM_ENDING, TOO_MANY_CONNECTIONS, kind_of

MAX_LINE_BYTES = 1024 * 1024
"""A post with its expansions is a few kilobytes; a longer line is junk and is skipped."""


@dataclass(frozen=True, slots=True)
class Post:
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """An error object on the stream: `name` is its ``connection_issue`` or ``title``, `kind`
    its kind (`problems.kind_of`)."""

    name: str
    detail: str
    disconnects: bool
    rate_limited: bool = False
    kind: str = ""


Message = Post | Problem


@dataclass
class DecoderStats:
    keepalives: int = 0
    malformed: int = 0
    oversized: int = 0


def classify(payload: Any) -> Message | None:
    """What one decoded line is; None for JSON that is neither a post nor a problem."""
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("data"), dict):
        return Post(payload)
    errors = payload.get("errors")
    bare = "type" in payload or "title" in payload
    problems = errors if isinstance(errors, list) else [payload] if bare else []
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        title = str(problem.get("title") or "")
        connection_issue = str(problem.get("connection_issue") or "")
        issue = connection_issue or str(problem.get("disconnect_type") or "")
        detail = str(problem.get("detail") or problem.get("message") or title)
        kind = kind_of(problem)
        return Problem(
            issue or title or kind or "unknown",
            detail,
            kind in STREAM_ENDING,
            rate_limited=connection_issue == TOO_MANY_CONNECTIONS,
            kind=kind,
        )
    return None


@dataclass
class LineDecoder:
    """Splits the body into lines and classifies each."""

    stats: DecoderStats = field(default_factory=DecoderStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        out: list[Message] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._buffer.clear()
                    if not self._skipping:
                        self.stats.oversized += 1
                    self._skipping = True
                return out
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if not line:
                self.stats.keepalives += 1
                continue
            try:
                message = classify(orjson.loads(line))
            except orjson.JSONDecodeError:
                message = None
            if message is None:
                self.stats.malformed += 1
            else:
                out.append(message)
