"""Tests for Twitter track semantics: phrase parsing, tweet terms, and the subscriber index."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pats_trio.matching import (
    MAX_PHRASE_BYTES,
    MAX_PHRASES,
    Phrase,
    TrackError,
    TrackIndex,
    format_track,
    matches_any,
    parse_track,
    phrase_matches,
    tweet_terms,
)
from pats_trio.tweets import trim


def status(
    text: str,
    *,
    hashtags: Iterable[str] = (),
    mentions: Iterable[str] = (),
    urls: Iterable[tuple[str, str]] = (),
    media: Iterable[tuple[str, str]] = (),
    **nested: dict[str, Any],
) -> dict[str, Any]:
    """A trimmed tweet with just the fields matching reads; urls are (expanded, display) pairs."""
    entities: dict[str, Any] = {
        "hashtags": [{"text": tag, "indices": [0, 1]} for tag in hashtags],
        "user_mentions": [{"screen_name": name, "indices": [0, 1]} for name in mentions],
        "urls": [
            {"url": "https://t.co/x", "expanded_url": expanded, "display_url": display}
            for expanded, display in urls
        ],
    }
    media_items = [
        {"url": "https://t.co/m", "expanded_url": expanded, "display_url": display}
        for expanded, display in media
    ]
    if media_items:
        entities["media"] = media_items
    return {
        "id_str": "1",
        "text": text,
        "user": {"screen_name": "a"},
        "entities": entities,
        **nested,
    }


def track_matches(track: str, tweet: dict[str, Any]) -> bool:
    return matches_any(parse_track(track), tweet_terms(tweet))


# Twitter's own table of track examples: value, tweets it matches, tweets it does not.
TWITTER_EXAMPLES = [
    (
        "Twitter",
        [
            "TWITTER",
            "twitter",
            "“Twitter”",
            '"Twitter"',
            "twitter.",
            "#twitter",
            "@twitter",
            "http://twitter.com",
        ],
        ["TwitterTracker", "#newtwitter"],
    ),
    ("Twitter's", ["I like Twitter's new design"], ["Someday I'd like to visit @Twitter's office"]),
    (
        "twitter api,twitter streaming",
        [
            "The Twitter API is awesome",
            "The twitter streaming service is fast",
            "Twitter has a streaming API",
        ],
        ["I'm new to Twitter"],
    ),
    ("example.com", ["Someday I will visit example.com"], ["There is no example.com/foobarbaz"]),
    (
        "example.com/foobarbaz",
        ["example.com/foobarbaz", "www.example.com/foobarbaz", "http://www.example.com/foobarbaz"],
        ["example.com"],
    ),
    ("www.example.com/foobarbaz", [], ["www.example.com/foobarbaz"]),
    (
        "example com",
        [
            "example.com",
            "www.example.com",
            "foo.example.com",
            "foo.example.com/bar",
            "I hope my startup isn't merely another example of a dot com boom!",
        ],
        [],
    ),
    ("hello", ["hello world", "my brother says hello.", "hello.world"], ["helloworld", "othello"]),
    ("touché", ["touché!"], ["touche"]),
]


@pytest.mark.parametrize(
    ("track", "text", "expected"),
    [
        (track, text, expected)
        for track, hits, misses in TWITTER_EXAMPLES
        for texts, expected in ((hits, True), (misses, False))
        for text in texts
    ],
)
def test_twitter_documented_examples(track: str, text: str, expected: bool) -> None:
    assert track_matches(track, status(text)) is expected


def test_comma_is_or_and_space_is_and_in_any_order() -> None:
    track = "python, trio rust"
    assert track_matches(track, status("I write Python"))
    assert track_matches(track, status("rust and trio, together"))
    assert track_matches(track, status("trio then rust"))
    assert not track_matches(track, status("trio alone"))
    assert not track_matches(track, status("rust alone"))


def test_matching_ignores_case_on_both_sides() -> None:
    assert track_matches("PyThOn", status("PYTHON rocks"))
    assert track_matches("ΣΟΦΙΑ", status("σοφια"))


def test_punctuated_term_is_its_own_term() -> None:
    assert track_matches("hello.", status("they said hello."))
    assert not track_matches("hello.", status("they said hello"))
    assert not track_matches("hello.", status("#hello."))
    assert track_matches("c++", status("I like C++!"))
    assert not track_matches("c++", status("I like C"))
    assert track_matches("$aapl", status("buying ($AAPL), again"))
    assert track_matches("c#", status("c#."))


def test_inner_punctuation_keeps_the_whole_token_and_its_parts() -> None:
    terms = tweet_terms(status("python's trio/rust example.com self-driving"))
    assert {"python's", "python", "s", "trio/rust", "trio", "rust"} <= terms
    assert {"example.com", "example", "com", "self-driving", "self", "driving"} <= terms
    assert not track_matches("trio/rust", status("trio and rust"))
    assert track_matches("trio rust", status("trio/rust"))


def test_url_in_text_loses_scheme_and_www_only() -> None:
    terms = tweet_terms(status("see https://www.Example.com/Path/To?q=1"))
    assert "example.com/path/to?q=1" in terms
    assert "www.example.com/path/to?q=1" not in terms
    assert "https" not in terms
    assert "www" not in terms


def test_hashtags_mentions_and_urls_from_entities_match() -> None:
    tweet = status(
        "look https://t.co/x",
        hashtags=["TrioLang"],
        mentions=["Guido_van"],
        urls=[("https://www.example.org/blog/post", "example.org/blog/post")],
    )
    assert track_matches("triolang", tweet)
    assert track_matches("#triolang", tweet)
    assert track_matches("guido_van", tweet)
    assert track_matches("@guido_van", tweet)
    assert track_matches("example.org/blog/post", tweet)
    assert track_matches("example org", tweet)
    assert not track_matches("example.org", tweet)
    assert not track_matches("guido", tweet)


def test_media_urls_match() -> None:
    tweet = status("pic", media=[("https://twitter.com/u/status/9/photo/1", "pic.twitter.com/AbC")])
    assert track_matches("pic.twitter.com/abc", tweet)
    assert track_matches("photo", tweet)


def test_display_url_ellipsis_is_ignored() -> None:
    tweet = status("x", urls=[("https://example.net/a/very/long/path", "example.net/a/very/lo…")])
    assert track_matches("example.net/a/very/lo", tweet)
    assert track_matches("example.net/a/very/long/path", tweet)


def test_punctuated_term_does_not_match_hashtag_or_mention() -> None:
    assert not track_matches("twitter's", status("@Twitter's office", mentions=["Twitter"]))
    assert not track_matches("python.", status("#python.", hashtags=["python"]))


def test_hashtag_term_matches_only_hashtags() -> None:
    assert track_matches("#python", status("#Python is fun"))
    assert track_matches("#python", status('"#Python"'))
    assert not track_matches("#python", status("Python is fun"))
    assert track_matches("python", status("#Python is fun"))


def test_hashtag_is_one_word() -> None:
    assert not track_matches("twitter", status("#newtwitter", hashtags=["newtwitter"]))
    assert not track_matches("foo", status("foo_bar"))


def test_retweet_and_quote_text_and_entities_match() -> None:
    inner = status("The full text about rust", hashtags=["rustlang"])
    retweet = status("RT @a: The full text about…", retweeted_status=inner)
    assert track_matches("rust", retweet)
    assert track_matches("rustlang", retweet)
    quote = status("so true", quoted_status=status("trio is calm"))
    assert track_matches("trio calm", quote)
    assert track_matches("true trio", quote)
    deep = status("RT", retweeted_status=status("x", quoted_status=status("hidden gem")))
    assert track_matches("gem", deep)


def test_extended_full_text_beyond_140_characters_matches() -> None:
    full = "word " * 40 + "needle at the end"
    raw = {
        "id_str": "7",
        "text": full[:139] + "…",
        "truncated": True,
        "timestamp_ms": "1539202764000",
        "user": {"screen_name": "a"},
        "entities": {"hashtags": []},
        "extended_tweet": {"full_text": full, "entities": {"hashtags": [{"text": "Haystack"}]}},
    }
    tweet = trim(raw)
    assert track_matches("needle", tweet)
    assert track_matches("haystack", tweet)


def test_emoji_and_non_latin_text() -> None:
    tweet = status("Привет, мир! Καλημέρα κόσμε 🔥🔥 love❤️ 東京タワー 👍🏽 ☺\ufe0efriends")
    assert track_matches("мир", tweet)
    assert track_matches("Привет", tweet)
    assert track_matches("καλημέρα", tweet)
    assert not track_matches("καλημερα", tweet)
    assert track_matches("🔥", tweet)
    assert track_matches("❤️", tweet)
    assert track_matches("love", tweet)
    assert track_matches("👍", tweet)
    assert track_matches("friends ☺", tweet)
    assert track_matches("東京タワー", tweet)
    assert not track_matches("東京", tweet)


def test_decomposed_accent_stays_part_of_the_word() -> None:
    tweet = status("touche\u0301")
    assert not track_matches("touche", tweet)
    assert track_matches("touche\u0301", tweet)


def test_tweet_without_text_or_entities_has_no_terms() -> None:
    assert tweet_terms({}) == frozenset()
    assert tweet_terms({"text": " ... !!! "}) == frozenset()


def test_parse_track_normalises_and_dedupes() -> None:
    phrases = parse_track("  Python ,trio   RUST,python,\tTrio\u00a0rust ")
    assert phrases == (
        Phrase("python", frozenset({"python"})),
        Phrase("trio rust", frozenset({"trio", "rust"})),
    )
    assert format_track(phrases) == "python,trio rust"


@pytest.mark.parametrize("raw", ["", "   ", "\n\t"])
def test_blank_track_is_the_sample_view(raw: str) -> None:
    assert parse_track(raw) == ()


@pytest.mark.parametrize("raw", ["a,,b", "a, ,b", "a,", ",a", ","])
def test_empty_phrase_is_rejected(raw: str) -> None:
    with pytest.raises(TrackError) as caught:
        parse_track(raw)
    assert caught.value.code == "empty_phrase"
    assert "empty" in caught.value.message


def test_phrase_limit_is_sixty_utf8_bytes() -> None:
    assert parse_track("é" * 30)[0].text == "é" * 30
    with pytest.raises(TrackError) as caught:
        parse_track("ok," + "é" * 30 + "x")
    assert caught.value.code == "phrase_too_long"
    assert "éééé" in caught.value.message
    assert str(MAX_PHRASE_BYTES) in caught.value.message


def test_phrase_length_counts_after_whitespace_folding() -> None:
    assert parse_track("a" + " " * 100 + "b")[0].text == "a b"


def test_too_many_phrases_is_rejected_and_names_the_phrase() -> None:
    assert len(parse_track(",".join(f"w{n}" for n in range(MAX_PHRASES)))) == MAX_PHRASES
    duplicated = ",".join(f"w{n}" for n in range(MAX_PHRASES)) + ",w0,W1"
    assert len(parse_track(duplicated)) == MAX_PHRASES
    with pytest.raises(TrackError) as caught:
        parse_track(",".join(f"w{n}" for n in range(MAX_PHRASES + 1)))
    assert caught.value.code == "too_many_phrases"
    assert f"'w{MAX_PHRASES}'" in caught.value.message


def test_track_error_is_a_value_error_with_code_and_message() -> None:
    error = TrackError("empty_phrase", "nothing there")
    assert isinstance(error, ValueError)
    assert (error.code, error.message, str(error)) == (
        "empty_phrase",
        "nothing there",
        "nothing there",
    )


def test_phrase_without_terms_is_refused() -> None:
    with pytest.raises(TrackError) as caught:
        Phrase("", frozenset())
    assert caught.value.code == "empty_phrase"


def test_phrase_matches_and_matches_any() -> None:
    trio_rust = parse_track("trio rust")[0]
    assert phrase_matches(trio_rust, frozenset({"rust", "trio", "x"}))
    assert not phrase_matches(trio_rust, frozenset({"rust"}))
    assert not matches_any((), frozenset({"rust"}))


def test_index_routes_shared_and_separate_phrases() -> None:
    index: TrackIndex[str] = TrackIndex()
    index.set("ann", parse_track("python,trio rust"))
    index.set("bob", parse_track("trio rust"))
    index.set("cy", parse_track("go"))
    assert len(index) == 3
    assert index.subscribers_for(tweet_terms(status("Rust + Trio"))) == {"ann", "bob"}
    assert index.subscribers_for(tweet_terms(status("python"))) == {"ann"}
    assert index.subscribers_for(tweet_terms(status("trio"))) == set()
    index.discard("ann")
    assert len(index) == 2
    assert index.subscribers_for(tweet_terms(status("rust trio python"))) == {"bob"}
    assert format_track(index.union()) == "go,trio rust"


def test_index_does_not_store_empty_subscribers() -> None:
    index: TrackIndex[int] = TrackIndex()
    index.set(1, ())
    assert 1 not in index
    index.set(1, parse_track("a"))
    assert 1 in index
    index.set(1, ())
    assert 1 not in index
    assert len(index) == 0
    assert index.union() == ()
    index.discard(99)
    assert len(index) == 0


def test_union_with_previews_replacement() -> None:
    index: TrackIndex[str] = TrackIndex()
    index.set("ann", parse_track("a,b"))
    index.set("bob", parse_track("b"))
    assert len(index.union_with("ann", parse_track("c"))) == 2
    assert len(index.union_with("bob", parse_track("c"))) == 3
    assert len(index.union_with("new", parse_track("a,d,d"))) == 3
    assert len(index.union_with("ann", ())) == 1
    assert len(index) == 2


VOCABULARY = ["trio", "rust", "python", "go", "a", "b", "ab", "#go"]
phrases_strategy = st.frozensets(st.sampled_from(VOCABULARY), min_size=1, max_size=3).map(
    lambda terms: Phrase(" ".join(sorted(terms)), terms)
)
operations_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),
        st.none() | st.lists(phrases_strategy, max_size=4),
    ),
    max_size=25,
)
term_sets_strategy = st.lists(
    st.frozensets(st.sampled_from([*VOCABULARY, "other"]), max_size=6), min_size=1, max_size=6
)


@given(operations_strategy, term_sets_strategy)
def test_index_agrees_with_brute_force(
    operations: list[tuple[int, list[Phrase] | None]], term_sets: list[frozenset[str]]
) -> None:
    index: TrackIndex[int] = TrackIndex()
    assignment: dict[int, list[Phrase]] = {}
    for key, phrases in operations:
        if phrases is None:
            index.discard(key)
            assignment.pop(key, None)
        else:
            expected = {p for k, ps in assignment.items() if k != key for p in ps} | {*phrases}
            assert index.union_with(key, phrases) == expected
            index.set(key, phrases)
            assignment[key] = phrases
        for terms in term_sets:
            brute = {k for k, ps in assignment.items() if matches_any(ps, terms)}
            assert index.subscribers_for(terms) == brute
        distinct = {p for ps in assignment.values() for p in ps}
        assert set(index.union()) == distinct
        assert len(index.union()) == len(index) == len(distinct)
        assert [p.text for p in index.union()] == sorted(p.text for p in distinct)
        for key in range(6):
            assert (key in index) == bool(assignment.get(key))


track_strategy = st.one_of(
    st.text(),
    st.lists(st.text(alphabet=st.sampled_from("aZé ,\t.#@🔥Σ"), max_size=12), max_size=8).map(
        ",".join
    ),
)


@given(track_strategy)
def test_parse_track_is_idempotent(raw: str) -> None:
    try:
        phrases = parse_track(raw)
    except TrackError:
        assume(False)
        raise
    assert parse_track(format_track(phrases)) == phrases
    for phrase in phrases:
        assert 1 <= len(phrase.text.encode()) <= MAX_PHRASE_BYTES
        assert "," not in phrase.text
        assert phrase.terms == frozenset(phrase.text.split(" "))
        assert phrase.text == phrase.text.lower()
    assert len({phrase.text for phrase in phrases}) == len(phrases)


word_strategy = st.text(
    alphabet=st.characters(categories=["Lu", "Ll", "Lo", "Nd"]), min_size=1, max_size=10
)
wrapping_strategy = st.sampled_from(["{}", "{}.", '"{}"', "#{}", "@{}", "({})!", "¿{}?", "{}…"])


@given(st.lists(st.tuples(word_strategy, wrapping_strategy), min_size=1, max_size=8), st.data())
def test_punctuation_around_words_in_a_tweet_is_ignored(
    words: list[tuple[str, str]], data: st.DataObject
) -> None:
    text = " ".join(wrapping.format(word) for word, wrapping in words)
    chosen = data.draw(st.lists(st.sampled_from([word for word, _ in words]), min_size=1))
    phrase_text = " ".join(word.lower() for word in chosen)
    assume(len(phrase_text.encode()) <= MAX_PHRASE_BYTES)
    assert track_matches(phrase_text, status(text))


@given(st.text())
def test_any_text_is_tokenised_and_its_plain_words_match(text: str) -> None:
    tweet = status(text, urls=[(text, text)])
    assert all(term and not any(char.isspace() for char in term) for term in tweet_terms(tweet))
    for word in text.split():
        if word.isalnum() and len(word.lower().encode()) <= MAX_PHRASE_BYTES:
            assert track_matches(word, tweet)
