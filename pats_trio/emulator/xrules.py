"""X's filtered-stream rule language, as the v2 emulator parses, checks and matches it.

Grammar (X's "Build a rule" and "Operators" pages): a space is AND and binds tighter than
``OR``; parentheses group; ``-`` negates a term or a group; a term is a keyword, a
``"quoted phrase"``, an emoji, ``#hashtag``, ``@mention``, ``$cashtag`` or ``name:value``
(the value may be quoted, or bracketed for ``point_radius:[...]``).

Matching reads a post as X does (`xposts.PostView`): a keyword or a phrase is a run of X's
tokens in the text (whole) or a link; ``#``, ``@`` and ``$`` match the post's entities;
``from:``, ``to:``, ``retweets_of:``, ``url:``, ``lang:``, ``sample:``, and ``is:`` and
``has:`` with ``retweet``, ``reply``, ``quote``, ``verified``, ``links``, ``hashtags``,
``mentions``, ``cashtags``, ``media`` and ``images`` match what the post holds. Every other
operator X documents is accepted and never matches (the emulator knows no bios, places or
follower counts).

What X refuses is refused (`RuleSyntaxError`, whose message is X's ``details`` entry): an
unbalanced quote or parenthesis, a dangling ``OR``, an operator X does not have or one with
no value, a rule (or an ``OR`` branch) without a positive standalone term, as both a rule of
negations alone and one of conjunction-required operators alone (``has:links``) are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from pats_trio.emulator.xposts import PostView, x_tokens

STANDALONE_OPERATORS = frozenset(
    {
        "from", "to", "retweets_of", "from_affiliate_of", "to_affiliate_of", "url",
        "url_title", "url_description", "url_contains", "context", "entity",
        "conversation_id", "bio", "bio_name", "bio_location", "place", "place_country",
        "point_radius", "bounding_box", "embedding", "min_followers", "followers_count",
        "tweets_count", "following_count", "listed_count", "in_reply_to_tweet_id",
        "retweets_of_tweet_id", "source",
    }
)  # fmt: skip
"""Operators X lists for the filtered stream that may stand alone."""
CONJUNCTION_OPERATORS = frozenset({"is", "has", "lang", "sample", "embedding_threshold"})
"""Operators X accepts only beside a standalone term."""
IS_VALUES = frozenset({"retweet", "reply", "quote", "verified", "nullcast"})
HAS_VALUES = frozenset(
    {"hashtags", "cashtags", "links", "mentions", "media", "images", "video_link", "geo"}
)


class RuleSyntaxError(ValueError):
    """A rule X would refuse, and why (X's ``details``)."""


@dataclass(frozen=True, slots=True)
class Keyword:
    """A keyword, an emoji or a quoted phrase: X's tokens of it, next to each other."""

    text: str
    tokens: tuple[str, ...]

    def matches(self, post: PostView) -> bool:
        return post.holds(self.tokens)


@dataclass(frozen=True, slots=True)
class Entity:
    """``#hashtag``, ``@mention`` or ``$cashtag``: an exact match on the post's entities."""

    sigil: str
    name: str

    def matches(self, post: PostView) -> bool:
        found = {"#": post.hashtags, "@": post.mentions, "$": post.cashtags}[self.sigil]
        return self.name in found


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    value: str

    @property
    def standalone(self) -> bool:
        return self.name in STANDALONE_OPERATORS

    def matches(self, post: PostView) -> bool:
        name, value = self.name, self.value.lower()
        if name == "from":
            return value in post.author
        if name == "to":
            return value in post.reply_to
        if name == "retweets_of":
            return value in post.retweet_of
        if name == "url":
            tokens = x_tokens(value)
            return bool(tokens) and any(
                link[i : i + len(tokens)] == tokens
                for link in post.links
                for i in range(len(link) - len(tokens) + 1)
            )
        if name == "lang":
            return post.lang == value
        if name in ("is", "has"):
            return value in post.kinds
        if name == "sample":
            return zlib.crc32(post.id.encode()) % 100 < int(value)
        return False


@dataclass(frozen=True, slots=True)
class Not:
    part: Expr

    def matches(self, post: PostView) -> bool:
        return not self.part.matches(post)


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Expr, ...]

    def matches(self, post: PostView) -> bool:
        return all(part.matches(post) for part in self.parts)


@dataclass(frozen=True, slots=True)
class Either:
    parts: tuple[Expr, ...]

    def matches(self, post: PostView) -> bool:
        return any(part.matches(post) for part in self.parts)


Expr = Keyword | Entity | Operator | Not | All | Either


def _quoted_end(value: str, i: int) -> int:
    """The index just past the quoted string that starts at `value[i]`."""
    i += 1
    while i < len(value) and value[i] != '"':
        i += 2 if value[i] == "\\" else 1
    if i >= len(value):
        raise RuleSyntaxError("Unterminated quote")
    return i + 1


def _tokens(value: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char.isspace():
            i += 1
        elif char in "()" or (char == "-" and value[i + 1 : i + 2] == "("):
            tokens.append(char)
            i += 1
        elif char == '"' or (char == "-" and value[i + 1 : i + 2] == '"'):
            end = _quoted_end(value, i + 1 if char == "-" else i)
            tokens.append(value[i:end])
            i = end
        else:
            start = i
            while i < len(value) and not value[i].isspace() and value[i] not in '()"':
                i += 1
            if value[i - 1 : i] == ":" and value[i : i + 1] == '"':
                i = _quoted_end(value, i)
            elif value[i - 1 : i] == ":" and value[i : i + 1] == "[":
                end = value.find("]", i)
                if end < 0:
                    raise RuleSyntaxError("Unbalanced brackets")
                i = end + 1
            tokens.append(value[start:i])
    return tokens


def _unquote(token: str) -> str:
    inner = token[1:-1]
    out, i = [], 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def _term(token: str, position: int) -> Expr:
    if token.startswith('"'):
        text = _unquote(token)
        return Keyword(text, x_tokens(text))
    if token[0] in "#@$" and len(token) > 1 and ":" not in token:
        return Entity(token[0], token[1:].lower())
    name, colon, value = token.partition(":")
    if not colon:
        return Keyword(token, x_tokens(token))
    if name not in STANDALONE_OPERATORS | CONJUNCTION_OPERATORS:
        raise RuleSyntaxError(
            f"Reference to invalid operator '{name}'. Operator is not available in current "
            f"product or product packaging. (at position {position})"
        )
    if value.startswith('"') and value.endswith('"') and len(value) > 1:
        value = _unquote(value)
    if not value:
        raise RuleSyntaxError(f"Operator '{name}' needs a value (at position {position})")
    if (name == "is" and value not in IS_VALUES) or (name == "has" and value not in HAS_VALUES):
        raise RuleSyntaxError(
            f"Reference to invalid operator '{name}:{value}'. Operator is not available in "
            f"current product or product packaging. (at position {position})"
        )
    if name == "sample" and not (value.isdigit() and 1 <= int(value) <= 100):
        raise RuleSyntaxError(f"sample: takes a percentage from 1 to 100 (at position {position})")
    return Operator(name, value)


class _Parser:
    def __init__(self, value: str) -> None:
        self.tokens = _tokens(value)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def either(self) -> Expr:
        parts = [self.both()]
        while self.peek() == "OR":
            self.at += 1
            if self.peek() in (None, ")", "OR"):
                raise RuleSyntaxError("OR needs an operand on each side")
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else Either(tuple(parts))

    def both(self) -> Expr:
        parts: list[Expr] = []
        while self.peek() not in (None, ")", "OR"):
            parts.append(self.atom())
        if not parts:
            raise RuleSyntaxError("Empty group")
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def atom(self) -> Expr:
        token = self.tokens[self.at]
        self.at += 1
        if token in ("(", "-"):
            if token == "-":
                self.at += 1
            inner = self.either()
            if self.peek() != ")":
                raise RuleSyntaxError("Unbalanced parentheses")
            self.at += 1
            return Not(inner) if token == "-" else inner
        if token == ")":
            raise RuleSyntaxError("Unbalanced parentheses")
        if token.startswith("-") and len(token) > 1:
            return Not(_term(token[1:], self.at))
        return _term(token, self.at)


def _stands_alone(expr: Expr) -> bool:
    """Whether every way the rule can match holds a positive standalone term: X refuses a
    rule of negations alone, and one of conjunction-required operators alone."""
    if isinstance(expr, Keyword | Entity):
        return True
    if isinstance(expr, Operator):
        return expr.standalone
    if isinstance(expr, Not):
        return False
    if isinstance(expr, All):
        return any(_stands_alone(part) for part in expr.parts)
    return all(_stands_alone(part) for part in expr.parts)


def _negations_only(expr: Expr) -> bool:
    if isinstance(expr, Not):
        return True
    if isinstance(expr, All | Either):
        return all(_negations_only(part) for part in expr.parts)
    return False


def parse_rule(value: str) -> Expr:
    """The rule as an expression; raises `RuleSyntaxError` for what X would refuse."""
    parser = _Parser(value)
    if not parser.tokens:
        raise RuleSyntaxError("Rule is empty")
    expr = parser.either()
    if parser.peek() is not None:
        raise RuleSyntaxError("Unbalanced parentheses")
    if _negations_only(expr):
        raise RuleSyntaxError("Rules must contain a non-negation term")
    if not _stands_alone(expr):
        raise RuleSyntaxError(
            "Rules must contain at least one positive, standalone operator in each clause; "
            "is:, has:, lang: and sample: only narrow one"
        )
    return expr


def clauses(expr: Expr) -> list[list[str]]:
    """The rule's ORed groups of plain terms, to write posts that match it; operators and
    negations are left out."""
    if isinstance(expr, Either):
        return [group for part in expr.parts for group in clauses(part)]
    parts = expr.parts if isinstance(expr, All) else (expr,)
    words: list[str] = []
    for part in parts:
        if isinstance(part, Keyword):
            words.extend(part.text.split())
        elif isinstance(part, Entity):
            words.append(part.sigil + part.name)
    return [words] if words else []
