"""Twitter's ``track`` semantics: parse phrases, tokenise tweets, and route tweets to subscribers.

A track value is a comma-separated list of phrases (OR). A phrase is space-separated terms (AND, any
order). Matching ignores case: phrases and tweets are both lowered with ``str.lower()``, never
``str.casefold()``, because casefold maps "ß" to "ss" and Twitter matches other UTF-8 characters
exactly ("touché" does not match "touche").

How a tweet becomes a set of terms (one pass over each text, no regular expressions):

* Sources: the text, each hashtag's text, each mention's screen_name, each URL's and media's
  ``expanded_url`` and ``display_url`` (and X's ``unwound_url``, where a shortened link leads),
  and the same fields of a nested retweet or quote.
* Text is lowered and split on whitespace into tokens. A token that is all letters and digits is a
  term as it is. Otherwise each emoji or other symbol character (Unicode category ``So``) is a term
  of its own (and, when followed by U+FE0F, so is the pair) and splits the token. Word characters
  are letters, digits, ``_`` and combining marks other than variation selectors; everything else
  (skin tones and joiners included) is punctuation.
* Edge punctuation is ignored: ``"Twitter".`` yields ``twitter``. Two more forms are terms too,
  so that a term that carries punctuation matches where it is written that way: the token exactly
  as written (``hello.`` matches "say hello.") and the token without the quotes, brackets and
  sentence punctuation around it (``c++`` matches "I like C++!", ``$aapl`` matches "($AAPL)").
* Inner punctuation is kept and the parts are terms too: ``python's`` yields ``python's``,
  ``python`` and ``s``; ``trio/rust`` yields ``trio/rust``, ``trio`` and ``rust``;
  ``example.com`` yields ``example.com``, ``example`` and ``com`` (so the phrase "example com"
  matches any mention of the domain, as Twitter documents).
* URLs are words: a token starting with ``http://``, ``https://`` or ``www.`` loses its scheme
  and a leading ``www.``, and only that canonical form and its parts are terms. So
  ``example.com/foobarbaz`` matches ``http://www.example.com/foobarbaz`` while ``example.com``
  does not, and a term written with ``www.`` or a scheme never matches.
* ``#name`` and ``@name`` (also inside quotes or brackets) yield ``name`` and ``#name`` /
  ``@name``, plus the word parts of what follows. Punctuation is not part of a hashtag or mention,
  so ``twitter's`` does not match "@Twitter's". The ``#python`` form is our choice, not Twitter's
  documented rule: a viewer who types ``#python`` gets hashtag uses only, ``python`` gets both.
* Scripts without spaces (CJK) are not segmented, as on Twitter.
"""

from __future__ import annotations

import builtins
import unicodedata
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

MAX_PHRASE_BYTES = 60
MAX_PHRASES = 400

_SIGILS = "#@＃＠"
_OPENERS = "\"'([{“‘«¿¡"
_CLOSERS = "\"')]}.,!?;:…”’»"
_SCHEMES = ("https://", "http://")
_WWW = "www."
_EMOJI_PRESENTATION = "\ufe0f"
_SYMBOL = "\x00"
_MAX_CACHED_CHARS = 1 << 16
_NESTED_KEYS = ("retweeted_status", "quoted_status")
_MAX_NESTING = 2
_ERROR_ECHO_CHARS = 80


class TrackError(ValueError):
    """A track value Twitter would refuse.

    ``code`` is ``empty_phrase``, ``phrase_too_long`` or ``too_many_phrases``, for clients to act
    on; ``message`` is for people and names the offending phrase.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Phrase:
    """One normalised phrase: it matches a tweet that holds every one of its terms."""

    text: str
    terms: frozenset[str]

    def __post_init__(self) -> None:
        if not self.terms:
            raise TrackError("empty_phrase", "a phrase needs at least one term")


def _echo(text: str) -> str:
    """Quote user input for an error message without echoing megabytes back."""
    if len(text) > _ERROR_ECHO_CHARS:
        text = text[:_ERROR_ECHO_CHARS] + "…"
    return repr(text)


def parse_track(raw: str) -> tuple[Phrase, ...]:
    """Parse a comma-separated track value into distinct phrases, in first-seen order.

    Blank input means no filter (the sample view) and gives ``()``.
    """
    if not raw.strip():
        return ()
    seen: dict[str, Phrase] = {}
    for position, chunk in enumerate(raw.split(","), start=1):
        words = chunk.lower().split()
        if not words:
            raise TrackError(
                "empty_phrase",
                f"phrase {position} in {_echo(raw)} is empty; remove the extra comma",
            )
        text = " ".join(words)
        size = len(text.encode("utf-8"))
        if size > MAX_PHRASE_BYTES:
            raise TrackError(
                "phrase_too_long",
                f"phrase {_echo(text)} is {size} bytes; the limit is {MAX_PHRASE_BYTES}",
            )
        if text not in seen:
            if len(seen) == MAX_PHRASES:
                raise TrackError(
                    "too_many_phrases",
                    f"phrase {_echo(text)} is one more than the limit of {MAX_PHRASES} phrases",
                )
            seen[text] = Phrase(text, frozenset(words))
    return tuple(seen.values())


def format_track(phrases: Iterable[Phrase]) -> str:
    """Render phrases as the ``track=`` value sent upstream."""
    return ",".join(phrase.text for phrase in phrases)


def phrase_matches(phrase: Phrase, terms: frozenset[str]) -> bool:
    """Whether a tweet with these terms holds every term of the phrase."""
    return phrase.terms <= terms


def matches_any(phrases: Iterable[Phrase], terms: frozenset[str]) -> bool:
    """Whether any phrase matches; no phrases means no match (the sample view is not a filter)."""
    return any(phrase.terms <= terms for phrase in phrases)


class _CharClasses(dict[int, str]):
    """A ``str.translate`` table, filled on first sight of each character, that maps word
    characters to themselves, symbols to ``_SYMBOL`` and everything else to a space.

    Translating a token gives its shape at C speed; the Unicode database is asked once per
    character, not once per character per tweet.
    """

    def __missing__(self, code: int) -> str:
        char = chr(code)
        category = unicodedata.category(char)
        if char.isalnum() or char == "_" or (category[0] == "M" and not 0xFE00 <= code <= 0xFE0F):
            shape = char
        elif category == "So":
            shape = _SYMBOL
        else:
            shape = " "
        if len(self) < _MAX_CACHED_CHARS:
            self[code] = shape
        return shape


_CHAR_CLASSES = _CharClasses()


def _add_word_terms(token: str, shape: str, terms: set[str]) -> None:
    """Add the terms of one lowered token that holds no whitespace and no symbols.

    ``shape`` is the token translated by ``_CHAR_CLASSES``: punctuation there is a space.
    """
    core_shape = shape.strip(" ")
    if not core_shape:
        return
    start = len(shape) - len(shape.lstrip(" "))
    end = start + len(core_shape)
    core = token[start:end]
    if start and token[start - 1] in _SIGILS:
        parts = core_shape.split()
        terms.add(token[start - 1] + parts[0])
        terms.update(parts)
        return
    if core.startswith(_SCHEMES) or core.startswith(_WWW):
        if core.startswith(_SCHEMES):
            core = core.partition("://")[2]
        core = core.removeprefix(_WWW)
        core_shape = core_shape[len(core_shape) - len(core) :]
    elif start or end < len(token):
        terms.add(token)
        terms.add(token.lstrip(_OPENERS).rstrip(_CLOSERS))
    terms.add(core)
    if " " in core_shape:
        terms.update(core_shape.split())


def _add_token_terms(token: str, terms: set[str]) -> None:
    """Add the terms of one lowered whitespace-free token, splitting off emoji and symbols."""
    shape = token.translate(_CHAR_CLASSES)
    start = 0
    symbol = shape.find(_SYMBOL)
    while symbol >= 0:
        if start < symbol:
            _add_word_terms(token[start:symbol], shape[start:symbol], terms)
        char = token[symbol]
        terms.add(char)
        start = symbol + 1
        if token.startswith(_EMOJI_PRESENTATION, start):
            terms.add(char + _EMOJI_PRESENTATION)
            start += 1
        symbol = shape.find(_SYMBOL, start)
    if start < len(token):
        _add_word_terms(token[start:], shape[start:], terms)


def _add_text_terms(text: str, terms: set[str]) -> None:
    for token in text.lower().split():
        if token.isalnum():
            terms.add(token)
        else:
            _add_token_terms(token, terms)


def _add_entity_terms(entities: Mapping[str, Any], terms: set[str]) -> None:
    for hashtag in entities.get("hashtags") or ():
        text = hashtag.get("text") if isinstance(hashtag, Mapping) else None
        if isinstance(text, str) and text:
            name = text.lower()
            terms.add(name)
            terms.add("#" + name)
    for mention in entities.get("user_mentions") or ():
        screen_name = mention.get("screen_name") if isinstance(mention, Mapping) else None
        if isinstance(screen_name, str) and screen_name:
            name = screen_name.lower()
            terms.add(name)
            terms.add("@" + name)
    for kind in ("urls", "media"):
        for link in entities.get(kind) or ():
            if not isinstance(link, Mapping):
                continue
            for field in ("expanded_url", "display_url", "unwound_url"):
                url = link.get(field)
                if isinstance(url, str):
                    _add_text_terms(url, terms)


def _add_status_terms(status: Mapping[str, Any], terms: set[str], depth: int) -> None:
    text = status.get("text")
    if isinstance(text, str):
        _add_text_terms(text, terms)
    entities = status.get("entities")
    if isinstance(entities, Mapping):
        _add_entity_terms(entities, terms)
    if depth < _MAX_NESTING:
        for key in _NESTED_KEYS:
            nested = status.get(key)
            if isinstance(nested, Mapping):
                _add_status_terms(nested, terms, depth + 1)


def tweet_terms(tweet: Mapping[str, Any]) -> frozenset[str]:
    """Every term a trimmed tweet (``tweets.trim`` output) can match, with its retweet and quote."""
    terms: set[str] = set()
    _add_status_terms(tweet, terms, 0)
    return frozenset(terms)


def _anchor(phrase: Phrase) -> str:
    """The term a phrase is filed under: the longest, since long words are rarely in a tweet."""
    return min(phrase.terms, key=lambda term: (-len(term), term))


K = TypeVar("K", bound=Hashable)


class TrackIndex(Generic[K]):
    """Index from terms to phrases to subscribers, so cost per tweet grows with tweet length, not
    number of subscribers.

    Each phrase is filed under one anchor term. A tweet looks up only its own terms, then checks
    the other terms of the phrases found. A phrase shared by several subscribers is stored once,
    with the set of its subscribers; it leaves the index when the last one goes.
    """

    __slots__ = ("_by_anchor", "_keys_by_phrase", "_phrases_by_key")

    def __init__(self) -> None:
        self._by_anchor: dict[str, dict[Phrase, set[K]]] = {}
        self._keys_by_phrase: dict[Phrase, set[K]] = {}
        self._phrases_by_key: dict[K, tuple[Phrase, ...]] = {}

    def set(self, key: K, phrases: Iterable[Phrase]) -> None:
        """Add or replace a subscriber's phrases; no phrases removes the subscriber."""
        wanted = tuple(dict.fromkeys(phrases))
        if not wanted:
            self.discard(key)
            return
        old = self._phrases_by_key.get(key, ())
        self._phrases_by_key[key] = wanted
        for phrase in set(old).difference(wanted):
            self._unlink(key, phrase)
        for phrase in set(wanted).difference(old):
            self._link(key, phrase)

    def discard(self, key: K) -> None:
        """Remove a subscriber, if present."""
        for phrase in self._phrases_by_key.pop(key, ()):
            self._unlink(key, phrase)

    def subscribers_for(self, terms: frozenset[str]) -> builtins.set[K]:
        """Every key with at least one phrase all of whose terms are in ``terms``."""
        found: set[K] = set()
        by_anchor = self._by_anchor
        # A C-level intersection walks the smaller side: most of a tweet's terms anchor nothing.
        for term in by_anchor.keys() & terms:
            for phrase, keys in by_anchor[term].items():
                if phrase.terms <= terms:
                    found |= keys
        return found

    def holders(self, texts: Iterable[str]) -> builtins.set[K]:
        """Every key that follows one of the phrases written `texts`."""
        found: set[K] = set()
        for phrase, keys in self._keys_by_phrase.items():
            if phrase.text in texts:
                found |= keys
        return found

    def union(self) -> tuple[Phrase, ...]:
        """Distinct phrases across all subscribers, sorted by text (the upstream ``track``)."""
        return tuple(sorted(self._keys_by_phrase, key=lambda phrase: phrase.text))

    def union_with(self, key: K, phrases: Iterable[Phrase]) -> builtins.set[Phrase]:
        """The distinct phrases there would be if ``key`` had these phrases instead."""
        wanted = set(phrases)
        union = set(self._keys_by_phrase)
        for phrase in self._phrases_by_key.get(key, ()):
            if phrase not in wanted and len(self._keys_by_phrase[phrase]) == 1:
                union.discard(phrase)
        return union | wanted

    def __len__(self) -> int:
        return len(self._keys_by_phrase)

    def __contains__(self, key: object) -> bool:
        return key in self._phrases_by_key

    def _link(self, key: K, phrase: Phrase) -> None:
        keys = self._keys_by_phrase.get(phrase)
        if keys is None:
            keys = self._keys_by_phrase[phrase] = set()
            self._by_anchor.setdefault(_anchor(phrase), {})[phrase] = keys
        keys.add(key)

    def _unlink(self, key: K, phrase: Phrase) -> None:
        keys = self._keys_by_phrase[phrase]
        keys.discard(key)
        if keys:
            return
        del self._keys_by_phrase[phrase]
        anchor = _anchor(phrase)
        bucket = self._by_anchor[anchor]
        del bucket[phrase]
        if not bucket:
            del self._by_anchor[anchor]
