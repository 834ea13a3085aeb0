"""X rules as pure values: quoting, packing under the length limit, reading our own rules
back, and the fewest adds and deletes between two phrase sets."""

from __future__ import annotations

import doctest
import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pats_trio.emulator.xposts import view_of
from pats_trio.emulator.xrules import parse_rule
from pats_trio.matching import MAX_PHRASE_BYTES, parse_track, tweet_terms
from pats_trio.tweets import trim
from pats_trio.upstream.x import rules as rules_module
from pats_trio.upstream.x.rules import (
    MAX_RULE_CHARS,
    TAG_PREFIX,
    Rule,
    RuleTooLongError,
    clause,
    pack,
    phrases_of,
    plan,
    reconcile,
    rule_value,
)
from tests.support import status


def test_the_doctests_hold() -> None:
    assert doctest.testmod(rules_module).failed == 0


words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=12,
).filter(lambda w: w.lower() == w and w.split() == [w] and "," not in w)
phrases = st.lists(words, min_size=1, max_size=4).map(" ".join)


@given(st.lists(phrases, min_size=1, max_size=30, unique=True))
def test_our_rules_read_back_as_the_phrases_they_carry(texts: list[str]) -> None:
    for value, carried in pack(texts, limit=200):
        assert len(value) <= 200
        assert phrases_of(value) == carried
    assert sorted(p for _, c in pack(texts, limit=200) for p in c) == sorted(texts)


def post_of(text: str) -> dict[str, Any]:
    """A post holding `text`, with the hashtags, mentions and cashtags X would find in it."""
    found: dict[str, list[dict[str, Any]]] = {"hashtags": [], "user_mentions": [], "urls": []}
    found["symbols"] = []
    for word in text.split():
        kind, key = {"#": ("hashtags", "text"), "@": ("user_mentions", "screen_name")}.get(
            word[0], ("symbols", "text") if word[0] == "$" else ("", "")
        )
        if kind and re.fullmatch(r"\w+", word[1:]):
            found[kind].append({key: word[1:], "indices": [0, 0]})
    return status(text, 1, entities=found)


@given(st.lists(phrases, min_size=1, max_size=10, unique=True), st.data())
def test_a_rule_delivers_whatever_the_matcher_routes_to_its_phrases(
    texts: list[str], data: st.DataObject
) -> None:
    """The rules deliver a superset: X (as the emulator reads it) parses every rule we write,
    and a post that pats-trio routes to one of its phrases matches it on X."""
    assume(all(len(text.encode()) <= MAX_PHRASE_BYTES for text in texts))
    [(value, _)] = pack(texts, limit=10_000)
    expr = parse_rule(value)
    for phrase in parse_track(",".join(texts)):
        words = data.draw(st.permutations(sorted(phrase.terms)))
        post = post_of("so " + " ".join(words) + " !")
        if phrase.terms <= tweet_terms(trim(post)):
            assert expr.matches(view_of(post)), (value, post["text"])


def test_operator_like_and_punctuated_terms_are_quoted() -> None:
    assert clause("from:elon") == '"from:elon"'
    assert clause("-spam") == '"-spam"'
    assert clause("c++ rust") == '("c++" rust)'
    assert clause("#python @trio $aapl") == "(#python @trio $aapl)"
    assert clause("or") == '"or"'
    assert rule_value(["a b", "c"]) == "(a b) OR c"


def test_phrases_pack_into_as_few_rules_as_the_limit_allows() -> None:
    many = [f"keyword{n:03d}" for n in range(400)]
    packed = pack(many)
    assert all(len(value) <= MAX_RULE_CHARS for value, _ in packed)
    # 10 characters a phrase and 4 between: 73 a rule.
    assert len(packed) == 6
    with pytest.raises(RuleTooLongError):
        pack(["x" * 30], limit=20)


def rules_for(texts: list[str]) -> dict[str, tuple[Rule, tuple[str, ...]]]:
    return {
        str(n): (Rule(str(n), value, TAG_PREFIX), carried)
        for n, (value, carried) in enumerate(pack(texts, limit=20))
    }


def test_a_new_phrase_adds_one_rule_and_touches_no_other() -> None:
    current = rules_for(["alpha", "beta"])
    change = plan(current, ["alpha", "beta", "gamma"], limit=20)
    assert change.adds == (("gamma", ("gamma",)),)
    assert change.deletes == ()


def test_a_phrase_that_goes_deletes_its_rule_and_re_adds_its_neighbours() -> None:
    current = rules_for(["alpha", "beta", "delta", "gamma"])  # two rules of two
    change = plan(current, ["alpha", "delta", "gamma"], limit=20)
    assert change.deletes == ("0",)
    assert change.adds == (("alpha", ("alpha",)),)
    assert [rule.id for rule in change.kept] == ["1"]


def test_fragmented_rules_are_packed_afresh_in_one_change() -> None:
    current = {str(n): (Rule(str(n), f"p{n}", TAG_PREFIX), (f"p{n}",)) for n in range(6)}
    change = plan(current, [f"p{n}" for n in range(6)], limit=100)
    assert len(change.adds) == 1
    assert sorted(change.deletes) == [str(n) for n in range(6)]


def test_reconcile_tells_ours_from_foreign_and_unreadable_rules() -> None:
    found = reconcile(
        [
            Rule("1", "python OR (trio rust)", TAG_PREFIX),
            Rule("2", "from:someone", "their-tool"),
            Rule("3", "cats"),
            Rule("4", "lang:en python", TAG_PREFIX),
        ]
    )
    assert found.ours["1"][1] == ("python", "trio rust")
    assert [r.id for r in found.foreign] == ["2", "3"]
    assert [r.id for r in found.unreadable] == ["4"]


def test_a_rule_delivers_what_the_matcher_routes() -> None:
    """The rules deliver a superset: what `matching` routes to a phrase, its clause matches."""
    expr = parse_rule(rule_value(["c++ rust"]))
    assert expr.matches(view_of(status("I like C++! and rust", 1)))
