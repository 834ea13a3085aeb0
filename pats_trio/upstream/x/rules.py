"""X filtered-stream rules as pure values: phrases packed into rules, and the diff to apply.

A viewer's phrase is Twitter's track phrase: its terms, all of them, in any order. In X's rule
syntax a space is AND, so the phrase ``trio rust`` becomes the clause ``(trio rust)``, and
phrases are joined with ``OR``. A term that X could read as an operator or as syntax (a leading
``-``, a ``:``, quotes, parentheses, punctuation) is quoted, which X reads as that exact token.
The rules only need to deliver a superset: pats-trio routes every post with its own matcher.

Phrases are packed into as few rules as the length limit allows, and a change keeps every rule
whose phrases are all still wanted: a viewer joining costs one added rule, a viewer leaving one
deleted rule and, if the rule held other phrases, one added rule that holds them.

Only rules whose tag starts with our prefix are ours; the others are the app's own business
(another tool, a person) and are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_RULE_CHARS = 1024
"""Pay-per-use's rule length (Enterprise allows 2,048)."""
MAX_RULES = 1000
"""Pay-per-use's rules per project."""
TAG_PREFIX = "pats-trio"
SEPARATOR = " OR "
_BARE = re.compile(r"[#@$]?\w+")
_RESERVED = frozenset({"or", "and"})
"""X's boolean words; lower-case they are keywords, but quoting costs two characters and
removes any doubt."""


class RuleTooLongError(ValueError):
    """One phrase alone is over the rule length limit."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as X lists it."""

    id: str
    value: str
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask of X to go from the rules we have to the phrases wanted.

    `adds` are rule values, each with the phrases it carries; `deletes` are rule ids.
    """

    adds: tuple[tuple[str, tuple[str, ...]], ...] = ()
    deletes: tuple[str, ...] = ()
    kept: tuple[Rule, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.adds and not self.deletes


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The app's rules, split into ours (with the phrases each carries) and foreign ones."""

    ours: dict[str, tuple[Rule, tuple[str, ...]]] = field(default_factory=dict)
    foreign: tuple[Rule, ...] = ()
    unreadable: tuple[Rule, ...] = ()
    """Rules with our tag whose value we did not write: deleted, and their phrases re-added."""


def term(text: str) -> str:
    """One term of a phrase as X reads it: bare when it is a word, a hashtag, a mention or a
    cashtag; else quoted, with quotes and backslashes escaped.

    >>> term("trio"), term("#python"), term("c++"), term("-x"), term("or"), term('say "hi"')
    ('trio', '#python', '"c++"', '"-x"', '"or"', '"say \\\\"hi\\\\""')
    """
    if _BARE.fullmatch(text) and text not in _RESERVED:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def clause(phrase: str) -> str:
    """A phrase as a clause: its terms ANDed, in parentheses when there are several.

    >>> clause("trio"), clause("trio rust")
    ('trio', '(trio rust)')
    """
    terms = [term(word) for word in phrase.split()]
    return terms[0] if len(terms) == 1 else "(" + " ".join(terms) + ")"


def rule_value(phrases: Sequence[str]) -> str:
    """Phrases ORed into one rule value."""
    return SEPARATOR.join(clause(phrase) for phrase in phrases)


def pack(phrases: Iterable[str], limit: int = MAX_RULE_CHARS) -> list[tuple[str, tuple[str, ...]]]:
    """Phrases packed into as few rule values as `limit` allows, in sorted order (so that the
    same phrases always give the same rules). Raises `RuleTooLongError` for a phrase that does
    not fit in a rule of its own.

    >>> pack(["b", "a c"], limit=13)
    [('(a c) OR b', ('a c', 'b'))]
    >>> [value for value, _ in pack(["b", "a c"], limit=8)]
    ['(a c)', 'b']
    """
    rules: list[tuple[str, tuple[str, ...]]] = []
    current: list[str] = []
    length = 0
    for phrase in sorted(set(phrases)):
        size = len(clause(phrase))
        if size > limit:
            raise RuleTooLongError(f"phrase {phrase!r} needs {size} characters; a rule has {limit}")
        if current and length + len(SEPARATOR) + size > limit:
            rules.append((rule_value(current), tuple(current)))
            current, length = [], 0
        length += size + (len(SEPARATOR) if current else 0)
        current.append(phrase)
    if current:
        rules.append((rule_value(current), tuple(current)))
    return rules


def phrases_of(value: str) -> tuple[str, ...] | None:
    """The phrases in a rule value `rule_value` wrote; None for any other value.

    >>> phrases_of('(a "c++") OR b')
    ('a c++', 'b')
    >>> phrases_of("from:someone") is None
    True
    """
    phrases = []
    for part in _split_top(value):
        inner = part[1:-1] if part.startswith("(") and part.endswith(")") else part
        words = _words(inner)
        if not words or (len(words) > 1) != (inner is not part):
            return None
        phrase = " ".join(words)
        if clause(phrase) != part:
            return None
        phrases.append(phrase)
    return tuple(phrases) if phrases else None


def _split_top(value: str) -> list[str]:
    """`value` split on the OR between top-level clauses (never inside quotes)."""
    parts, start, i, quoted = [], 0, 0, False
    while i < len(value):
        char = value[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and value.startswith(SEPARATOR, i):
            parts.append(value[start:i])
            i += len(SEPARATOR)
            start = i
            continue
        i += 1
    parts.append(value[start:])
    return parts


def _words(text: str) -> list[str] | None:
    """The terms of one clause's inside, unquoted; None if it is not our syntax."""
    words: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        if text[i] == '"':
            out, i = [], i + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out.append(text[i])
                i += 1
            if i >= len(text):
                return None
            words.append("".join(out))
            i += 1
        else:
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
            words.append(text[i:end])
            i = end
    return words


def vouched_phrase(phrases: Sequence[str]) -> str | None:
    """The phrase X's word alone shows a post to, when X says it matched a rule carrying
    `phrases` but the post as delivered matches no phrase: the rule's only phrase, if all its
    terms are written bare (words, hashtags, mentions, cashtags). Else None: in a rule of
    several phrases any one of them may be the one X matched, and a quoted term (``"c++"``)
    is a looser match on X, which drops the punctuation, than in pats-trio.

    >>> vouched_phrase(["trio rust"]), vouched_phrase(["c++"]), vouched_phrase(["a", "b"])
    ('trio rust', None, None)
    """
    if len(phrases) != 1:
        return None
    phrase = phrases[0]
    return phrase if all(term(word) == word for word in phrase.split()) else None


def ours(tag: str | None, prefix: str = TAG_PREFIX) -> bool:
    return tag is not None and (tag == prefix or tag.startswith(prefix + ":"))


def reconcile(rules: Iterable[Rule], prefix: str = TAG_PREFIX) -> Reconciled:
    """Sort the app's rules into ours and foreign ones."""
    mine: dict[str, tuple[Rule, tuple[str, ...]]] = {}
    foreign: list[Rule] = []
    unreadable: list[Rule] = []
    for rule in rules:
        if not ours(rule.tag, prefix):
            foreign.append(rule)
            continue
        phrases = phrases_of(rule.value)
        if phrases is None:
            unreadable.append(rule)
        else:
            mine[rule.id] = (rule, phrases)
    return Reconciled(mine, tuple(foreign), tuple(unreadable))


def plan(
    current: Mapping[str, tuple[Rule, tuple[str, ...]]],
    wanted: Iterable[str],
    *,
    limit: int = MAX_RULE_CHARS,
    stale: Iterable[str] = (),
) -> Plan:
    """The fewest adds and deletes that make our rules carry exactly `wanted`.

    A rule stays if every phrase it carries is still wanted and no earlier rule carries the
    same phrase; the others are deleted, and what they carried that is still wanted is packed
    with the new phrases. `stale` rule ids are deleted whatever they carry. Once that would
    leave more than twice the rules the phrases need, everything is packed afresh.
    """
    want = set(wanted)
    covered: set[str] = set()
    kept: list[Rule] = []
    deletes: list[str] = list(stale)
    for rule_id in sorted(current):
        rule, phrases = current[rule_id]
        if rule_id in deletes:
            continue
        if set(phrases) <= want and not covered & set(phrases):
            kept.append(rule)
            covered |= set(phrases)
        else:
            deletes.append(rule_id)
    adds = pack(want - covered, limit) if want - covered else []
    fewest = pack(want, limit) if want else []
    if len(kept) + len(adds) > 2 * len(fewest):
        # Changes one at a time leave many half-empty rules: pack them all again, in one change.
        everything = [rule_id for rule_id in sorted(current) if rule_id not in stale]
        return Plan(tuple(fewest), (*stale, *everything), ())
    return Plan(tuple(adds), tuple(deletes), tuple(kept))
