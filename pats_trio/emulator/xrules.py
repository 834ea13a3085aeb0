"""The part of X's rule language the v2 emulator speaks, and v1.1 statuses written as v2 posts.

Rules: terms (a word, ``#tag``, ``@name``, ``$tag``, or a ``"quoted"`` string), a space for AND,
``OR``, parentheses, ``-`` for NOT, and ``name:value`` operators. A term matches a post when
pats-trio's own tokeniser finds it in the post (`matching.tweet_terms`); an operator never
matches (the emulator knows no authors' followers or languages), which is all a foreign rule in
a test needs. What X would refuse is refused: unbalanced quotes or parentheses, a dangling
``OR``, an operator with no value, a rule of negations alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class RuleSyntaxError(ValueError):
    """A rule X would refuse, and why (X's ``details``)."""


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    negated: bool = False
    operator: bool = False

    def matches(self, terms: frozenset[str]) -> bool:
        if self.operator:
            found = False
        else:
            words = self.text.lower().split()
            found = bool(words) and all(word in terms for word in words)
        return found != self.negated


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Expr, ...]

    def matches(self, terms: frozenset[str]) -> bool:
        return all(part.matches(terms) for part in self.parts)


@dataclass(frozen=True, slots=True)
class Either:
    parts: tuple[Expr, ...]

    def matches(self, terms: frozenset[str]) -> bool:
        return any(part.matches(terms) for part in self.parts)


Expr = Term | All | Either


def _tokens(value: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(char)
            i += 1
        elif char == '"' or (char == "-" and value[i + 1 : i + 2] == '"'):
            start = i
            i += 2 if char == "-" else 1
            while i < len(value) and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            if i >= len(value):
                raise RuleSyntaxError("Unterminated quote")
            i += 1
            tokens.append(value[start:i])
        else:
            start = i
            while i < len(value) and not value[i].isspace() and value[i] not in '()"':
                i += 1
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


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
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
        if token == "(":
            inner = self.either()
            if self.peek() != ")":
                raise RuleSyntaxError("Unbalanced parentheses")
            self.at += 1
            return inner
        negated = token.startswith("-") and len(token) > 1
        body = token[1:] if negated else token
        if body.startswith('"'):
            return Term(_unquote(body), negated)
        if ":" in body:
            name, _, value = body.partition(":")
            if not name or not value:
                raise RuleSyntaxError(f"Operator {body!r} needs a value")
            return Term(body, negated, operator=True)
        return Term(body, negated)


def _positive(expr: Expr) -> bool:
    """Whether a rule can match anything but negations (X refuses negations alone)."""
    if isinstance(expr, Term):
        return not expr.negated
    if isinstance(expr, All):
        return any(_positive(part) for part in expr.parts)
    return all(_positive(part) for part in expr.parts)


def parse_rule(value: str) -> Expr:
    """The rule as an expression; raises `RuleSyntaxError` for what X would refuse."""
    tokens = _tokens(value)
    if not tokens:
        raise RuleSyntaxError("Rule is empty")
    parser = _Parser(tokens)
    expr = parser.either()
    if parser.peek() is not None:
        raise RuleSyntaxError("Unbalanced parentheses")
    if not _positive(expr):
        raise RuleSyntaxError("Rules must contain a non-negation term")
    return expr


def clauses(expr: Expr) -> list[list[str]]:
    """The rule's ORed groups of plain terms, to write posts that match it; operators and
    negations are left out."""
    if isinstance(expr, Either):
        return [group for part in expr.parts for group in clauses(part)]
    parts = expr.parts if isinstance(expr, All) else (expr,)
    words = [
        word
        for part in parts
        if isinstance(part, Term) and not part.negated and not part.operator
        for word in part.text.split()
    ]
    return [words] if words else []


# ---- v1.1 statuses as v2 posts


NOTE_AFTER = 280
"""X's post length: a longer one's whole text is its ``note_tweet``."""


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _span(item: Mapping[str, Any]) -> dict[str, int]:
    start, end = item.get("indices") or (0, 0)
    return {"start": start, "end": end}


def _v2_entities(entities: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hashtags = [{**_span(h), "tag": h["text"]} for h in entities.get("hashtags", ())]
    cashtags = [{**_span(c), "tag": c["text"]} for c in entities.get("symbols", ())]
    mentions = [
        {**_span(m), "username": m["screen_name"], "id": m.get("id_str")}
        for m in entities.get("user_mentions", ())
    ]
    urls = [
        {
            **_span(u),
            "url": u["url"],
            "expanded_url": u.get("expanded_url"),
            "display_url": u.get("display_url"),
        }
        for u in entities.get("urls", ())
    ]
    for key, items in (
        ("hashtags", hashtags),
        ("cashtags", cashtags),
        ("mentions", mentions),
        ("urls", urls),
    ):
        if items:
            out[key] = items
    return out


def _v2_post(
    status: Mapping[str, Any], users: dict[str, Any], posts: dict[str, Any]
) -> dict[str, Any]:
    extended = status.get("extended_tweet") or {}
    user = status["user"]
    users[user["id_str"]] = {
        "id": user["id_str"],
        "name": user.get("name"),
        "username": user["screen_name"],
        "profile_image_url": user.get("profile_image_url_https"),
        "verified": bool(user.get("verified")),
    }
    full_text = extended.get("full_text") or status["text"]
    post: dict[str, Any] = {
        "id": status["id_str"],
        "text": full_text,
        "author_id": user["id_str"],
        "created_at": _iso(int(status["timestamp_ms"])),
        "lang": status.get("lang"),
        "edit_history_tweet_ids": [status["id_str"]],
    }
    entities = _v2_entities(extended.get("entities") or status.get("entities") or {})
    if entities:
        post["entities"] = entities
    if len(full_text) > NOTE_AFTER:
        # As X sends a long post: cut short in `text`, whole (with its entities) in `note_tweet`.
        post["note_tweet"] = {"text": full_text, "entities": entities}
        post["text"] = full_text[: NOTE_AFTER - 1] + "…"
        post["entities"] = {
            kind: [e for e in items if e["end"] < NOTE_AFTER] for kind, items in entities.items()
        }
    references = []
    for key, kind in (("retweeted_status", "retweeted"), ("quoted_status", "quoted")):
        inner = status.get(key)
        if isinstance(inner, Mapping):
            inner = {**inner, "timestamp_ms": inner.get("timestamp_ms") or status["timestamp_ms"]}
            posts[inner["id_str"]] = _v2_post(inner, users, posts)
            references.append({"type": kind, "id": inner["id_str"]})
    if references:
        post["referenced_tweets"] = references
    return post


def to_v2(status: Mapping[str, Any]) -> dict[str, Any]:
    """A v1.1 status as the filtered stream sends a post: ``data`` and ``includes``."""
    users: dict[str, Any] = {}
    posts: dict[str, Any] = {}
    data = _v2_post(status, users, posts)
    includes: dict[str, Any] = {"users": list(users.values())}
    if posts:
        includes["tweets"] = list(posts.values())
    return {"data": data, "includes": includes}
