"""Events as Redis stream entries: the frame travels as encoded once, never re-encoded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from pats_trio.events import STREAM_KINDS, Event, NoticeEvent, StatusEvent, StreamKind, TweetEvent

TERMS_SEPARATOR = "\x1f"
"""Terms are words and symbols; the unit separator never occurs in one."""


class EntryError(ValueError):
    """An entry this version cannot read (another version wrote it, or it is damaged)."""


def encode(kind: StreamKind, event: Event) -> list[tuple[str, str]]:
    if isinstance(event, TweetEvent):
        return [
            ("k", kind),
            ("t", "tweet"),
            ("f", event.frame),
            ("i", event.id_str),
            ("m", TERMS_SEPARATOR.join(event.terms)),
            *([("o", TERMS_SEPARATOR.join(event.shows))] if event.shows else []),
        ]
    if isinstance(event, NoticeEvent):
        fields = [("k", kind), ("t", "notice"), ("f", event.frame)]
        if event.deletes is not None:
            fields.append(("d", event.deletes))
        if event.phrases is not None:
            fields.append(("p", TERMS_SEPARATOR.join(sorted(event.phrases))))
        return fields
    return [
        ("k", kind),
        ("t", "status"),
        ("f", event.frame),
        ("s", event.state),
        ("x", orjson.dumps(event.details).decode()),
    ]


def decode(pairs: Sequence[Sequence[bytes]]) -> tuple[StreamKind, Event]:
    """Read one entry as XREAD / XRANGE return it: a list of [field, value] pairs."""
    try:
        fields: Mapping[str, str] = {k.decode(): v.decode() for k, v in pairs}
        kind = fields["k"]
        if kind not in STREAM_KINDS:
            raise EntryError(f"unknown stream kind {kind!r}")
        stream: StreamKind = "sample" if kind == "sample" else "filter"
        frame, type_ = fields["f"], fields["t"]
        if type_ == "tweet":
            terms = fields["m"]
            return stream, TweetEvent(
                fields["i"],
                frame,
                frozenset(terms.split(TERMS_SEPARATOR)) if terms else frozenset(),
                tuple(fields["o"].split(TERMS_SEPARATOR)) if "o" in fields else (),
            )
        if type_ == "notice":
            phrases = fields.get("p")
            return stream, NoticeEvent(
                frame,
                deletes=fields.get("d"),
                phrases=frozenset(phrases.split(TERMS_SEPARATOR)) if phrases is not None else None,
            )
        if type_ == "status":
            details = orjson.loads(fields["x"])
            if not isinstance(details, dict):
                raise EntryError("status details are not an object")
            return stream, StatusEvent(fields["s"], frame, details)
        raise EntryError(f"unknown entry type {type_!r}")
    except (KeyError, ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        if isinstance(exc, EntryError):
            raise
        raise EntryError(f"unreadable entry: {exc!r}") from None
