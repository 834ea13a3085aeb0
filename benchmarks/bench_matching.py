"""Tweets per second through the routing path of ``pats_trio.matching``.

Routing one tweet is ``tweet_terms(trim(status))`` once, then ``TrackIndex.subscribers_for(terms)``.
The baseline, measured in the same run, checks every subscriber with ``matches_any``. Figures are
read as ratios against that baseline, because the machine is shared and noisy: see README.md.

    python benchmarks/bench_matching.py [--quick] [--repeats N] [--seed N] [--tweets N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pats_trio.emulator.corpus import TOPICS, TweetFactory
from pats_trio.matching import (
    Phrase,
    TrackError,
    TrackIndex,
    matches_any,
    parse_track,
    tweet_terms,
)
from pats_trio.tweets import trim

PHRASES = 400
TWO_TERM_SHARE = 0.4
SUBSCRIBER_COUNTS = (10, 1_000, 10_000)
PHRASES_PER_SUBSCRIBER = (1, 3)
START_MS = 1_700_000_000_000
TWEET_GAP_MS = 50
# Brute force does subscribers x tweets checks; its tweet sample is cut to keep a repeat short.
BRUTE_CHECKS = 1_000_000
BRUTE_CHECKS_QUICK = 300_000
MIN_BRUTE_TWEETS = 100
RESULTS = Path(__file__).resolve().parent / "results"


# Words too common to be anyone's keyword; everything else in the corpus is fair game.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS = _words(
    "about after again also been before being could does doing done each even ever every from "
    "have here into just like made make more most much need only over really some still such "
    "than that their them then there these they thing things this those what when where which "
    "while will with would your"
)
_SLOT = re.compile(r"\{[^}]*\}")
_NON_WORD = re.compile(r"[^\w]+")

Routine = Callable[[], object]


# --------------------------------------------------------------------------------------------
# Workload


def topic_vocabulary() -> dict[str, list[str]]:
    """Per emulator topic, the sorted words of its templates, hashtags and fills."""
    vocabulary: dict[str, list[str]] = {}
    for name in sorted(TOPICS):
        topic = TOPICS[name]
        texts = [*topic.templates, *topic.hashtags]
        for values in (topic.fills or {}).values():
            texts.extend(values)
        words: set[str] = set()
        for text in texts:
            for word in _NON_WORD.split(_SLOT.sub(" ", text).lower()):
                if len(word) > 3 and not word.isdigit() and word not in _STOPWORDS:
                    words.add(word)
        if words:
            vocabulary[name] = sorted(words)
    return vocabulary


def make_phrases(rng: random.Random, count: int) -> list[Phrase]:
    """``count`` distinct phrases: one corpus word, or two words from the same topic."""
    vocabulary = topic_vocabulary()
    topics = sorted(vocabulary)
    chosen: dict[frozenset[str], Phrase] = {}
    while len(chosen) < count:
        words = vocabulary[rng.choice(topics)]
        size = 2 if rng.random() < TWO_TERM_SHARE and len(words) > 1 else 1
        try:
            (phrase,) = parse_track(" ".join(rng.sample(words, size)))
        except TrackError:  # over 60 bytes: Twitter would refuse it
            continue
        chosen.setdefault(phrase.terms, phrase)
    return list(chosen.values())


def make_subscribers(
    rng: random.Random, phrases: Sequence[Phrase], count: int
) -> list[tuple[int, tuple[Phrase, ...]]]:
    """``count`` subscribers, each holding 1 to 3 of ``phrases``."""
    low, high = PHRASES_PER_SUBSCRIBER
    return [(key, tuple(rng.sample(phrases, rng.randint(low, high)))) for key in range(count)]


def make_statuses(seed: int, count: int) -> list[dict[str, Any]]:
    factory = TweetFactory(seed)
    return [factory.next_status(START_MS + index * TWEET_GAP_MS) for index in range(count)]


def cycle_to(items: Sequence[Any], count: int) -> list[Any]:
    """``items`` repeated (and cut) to ``count`` entries."""
    rounds = -(-count // len(items))
    return (list(items) * rounds)[:count]


# --------------------------------------------------------------------------------------------
# The routines under test. Each loops over its inputs; only the loop is timed.


def tokenise_only(statuses: Sequence[Mapping[str, Any]]) -> Routine:
    def run() -> None:
        for status in statuses:
            tweet_terms(trim(status))

    return run


def index_full(statuses: Sequence[Mapping[str, Any]], index: TrackIndex[int]) -> Routine:
    def run() -> None:
        lookup = index.subscribers_for
        for status in statuses:
            lookup(tweet_terms(trim(status)))

    return run


def index_lookup(terms_list: Sequence[frozenset[str]], index: TrackIndex[int]) -> Routine:
    def run() -> None:
        lookup = index.subscribers_for
        for terms in terms_list:
            lookup(terms)

    return run


def brute_force(
    subscribers: Sequence[tuple[int, tuple[Phrase, ...]]], terms: frozenset[str]
) -> set[int]:
    """The baseline: ask every subscriber."""
    return {key for key, phrases in subscribers if matches_any(phrases, terms)}


def brute_full(
    statuses: Sequence[Mapping[str, Any]], subscribers: Sequence[tuple[int, tuple[Phrase, ...]]]
) -> Routine:
    def run() -> None:
        for status in statuses:
            brute_force(subscribers, tweet_terms(trim(status)))

    return run


def brute_scan(
    terms_list: Sequence[frozenset[str]], subscribers: Sequence[tuple[int, tuple[Phrase, ...]]]
) -> Routine:
    def run() -> None:
        for terms in terms_list:
            brute_force(subscribers, terms)

    return run


# --------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Measurement:
    """``tweets`` tweets routed per repeat; ``seconds`` holds one wall time per repeat."""

    name: str
    tweets: int
    seconds: tuple[float, ...]

    @property
    def median_tps(self) -> float:
        return self.tweets / statistics.median(self.seconds)

    @property
    def min_tps(self) -> float:
        return self.tweets / max(self.seconds)

    @property
    def max_tps(self) -> float:
        return self.tweets / min(self.seconds)

    @property
    def median_us(self) -> float:
        """Median microseconds per tweet."""
        return statistics.median(self.seconds) / self.tweets * 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "tweets_per_repeat": self.tweets,
            "seconds": list(self.seconds),
            "tweets_per_second": {
                "median": self.median_tps,
                "min": self.min_tps,
                "max": self.max_tps,
            },
            "median_us_per_tweet": self.median_us,
        }


def measure(name: str, routine: Routine, tweets: int, repeats: int) -> Measurement:
    routine()  # warm up: caches, the tokeniser's character table, branch predictors
    seconds = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        routine()
        seconds.append(time.perf_counter() - start)
    return Measurement(name, tweets, tuple(seconds))


# --------------------------------------------------------------------------------------------
# Report


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _spread(measurement: Measurement) -> str:
    return f"{_rate(measurement.min_tps)}–{_rate(measurement.max_tps)}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{header:>{width}}" for header, width in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(f"{cell:>{width}}" for cell, width in zip(row, widths, strict=True)))
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer tweets, for a short run")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--seed", type=int, default=20240601, help="workload seed")
    parser.add_argument("--tweets", type=int, help="statuses per repeat (20,000; quick 4,000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--no-json", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    tweet_count: int = args.tweets or (4_000 if args.quick else 20_000)
    brute_checks = BRUTE_CHECKS_QUICK if args.quick else BRUTE_CHECKS
    repeats: int = args.repeats
    started = time.perf_counter()
    stamp = datetime.now(UTC)

    # ---- workload, outside every timed region
    rng = random.Random(args.seed)
    phrases = make_phrases(rng, PHRASES)
    two_term = sum(len(phrase.terms) == 2 for phrase in phrases)
    statuses = make_statuses(args.seed, tweet_count)
    all_terms = [tweet_terms(trim(status)) for status in statuses]
    print(
        f"pats-trio matching benchmark: {tweet_count:,} statuses (TweetFactory seed {args.seed}), "
        f"{len(phrases)} phrases ({len(phrases) - two_term} one-term, {two_term} two-term), "
        f"{repeats} repeats, {'quick' if args.quick else 'full'} run"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; tweets/s are medians (min–max over repeats)\n"
    )

    tokenise = measure("tokenise", tokenise_only(statuses), tweet_count, repeats)
    print("Tokenising only: tweet_terms(trim(status))")
    print_table(
        ("tweets", "tweets/s", "min–max", "µs/tweet"),
        [
            (
                f"{tweet_count:,}",
                _rate(tokenise.median_tps),
                _spread(tokenise),
                f"{tokenise.median_us:.1f}",
            )
        ],
    )

    scenarios: list[dict[str, Any]] = []
    for count in SUBSCRIBER_COUNTS:
        subscribers = make_subscribers(random.Random(f"{args.seed}:{count}"), phrases, count)
        index: TrackIndex[int] = TrackIndex()
        for key, held in subscribers:
            index.set(key, held)
        deliveries = [len(index.subscribers_for(terms)) for terms in all_terms]
        # Brute force routes a prefix of the statuses (all of them when that stays short). The
        # ratio compares it with the index routing that same prefix, cycled to enough tweets to
        # time; the index's own figures and the growth table use every status.
        sample_size = min(tweet_count, max(MIN_BRUTE_TWEETS, brute_checks // count))
        sample = statuses[:sample_size]
        sample_terms = all_terms[:sample_size]
        for terms in sample_terms:
            if index.subscribers_for(terms) != brute_force(subscribers, terms):
                raise AssertionError(f"index and brute force disagree at {count} subscribers")
        results = {
            "index_full": measure("index_full", index_full(statuses, index), tweet_count, repeats),
            "index_lookup": measure(
                "index_lookup", index_lookup(all_terms, index), tweet_count, repeats
            ),
            "brute_full": measure(
                "brute_full", brute_full(sample, subscribers), sample_size, repeats
            ),
            "brute_scan": measure(
                "brute_scan", brute_scan(sample_terms, subscribers), sample_size, repeats
            ),
        }
        if sample_size == tweet_count:
            results["index_full_sample"] = results["index_full"]
            results["index_lookup_sample"] = results["index_lookup"]
        else:
            cycled = max(sample_size, tweet_count // 4)
            results["index_full_sample"] = measure(
                "index_full_sample",
                index_full(cycle_to(sample, cycled), index),
                cycled,
                repeats,
            )
            results["index_lookup_sample"] = measure(
                "index_lookup_sample",
                index_lookup(cycle_to(sample_terms, cycled), index),
                cycled,
                repeats,
            )
        full_ratio = results["index_full_sample"].median_tps / results["brute_full"].median_tps
        lookup_ratio = results["index_lookup_sample"].median_tps / results["brute_scan"].median_tps
        scenarios.append(
            {
                "subscribers": count,
                "phrases_in_index": len(index),
                "phrases_held": sum(len(held) for _, held in subscribers),
                "brute_force_tweets": sample_size,
                "deliveries_per_tweet": statistics.fmean(deliveries),
                "tweets_with_a_delivery": sum(1 for found in deliveries if found) / tweet_count,
                "ratio_full": full_ratio,
                "ratio_lookup": lookup_ratio,
                "measurements": results,
            }
        )

    print("Workload per subscriber count (deliveries: subscribers a tweet goes to, mean)")
    print_table(
        (
            "subscribers",
            "phrases held",
            "distinct in index",
            "deliveries/tweet",
            "tweets delivered",
            "brute-force tweets",
        ),
        [
            (
                f"{s['subscribers']:,}",
                f"{s['phrases_held']:,}",
                str(s["phrases_in_index"]),
                f"{s['deliveries_per_tweet']:.2f}",
                f"{s['tweets_with_a_delivery']:.0%}",
                f"{s['brute_force_tweets']:,}",
            )
            for s in scenarios
        ],
    )
    sections = (
        ("Full routing path: tweet_terms(trim(status)) + lookup", "full", "brute_full"),
        ("Index lookup only, on precomputed terms", "lookup", "brute_scan"),
    )
    for title, kind, base in sections:
        print(title)
        rows = []
        for s in scenarios:
            ours: Measurement = s["measurements"][f"index_{kind}"]
            same: Measurement = s["measurements"][f"index_{kind}_sample"]
            brute: Measurement = s["measurements"][base]
            rows.append(
                (
                    f"{s['subscribers']:,}",
                    _rate(ours.median_tps),
                    _spread(ours),
                    _rate(same.median_tps),
                    _rate(brute.median_tps),
                    _spread(brute),
                    f"{s[f'ratio_{kind}']:,.1f}x",
                )
            )
        print_table(
            (
                "subscribers",
                "index tweets/s",
                "min–max",
                "index, brute's tweets",
                "brute tweets/s",
                "min–max",
                "index/brute",
            ),
            rows,
        )

    print("Cost growth: median µs per tweet, and its ratio to 10 subscribers (same run)")
    first = scenarios[0]["measurements"]
    growth_rows = []
    for s in scenarios:
        m = s["measurements"]
        growth_rows.append(
            (
                f"{s['subscribers']:,}",
                f"{m['index_full'].median_us:.1f}",
                f"{m['index_full'].median_us / first['index_full'].median_us:.2f}x",
                f"{m['index_lookup'].median_us:.2f}",
                f"{m['index_lookup'].median_us / first['index_lookup'].median_us:.2f}x",
                f"{m['brute_scan'].median_us:,.1f}",
                f"{m['brute_scan'].median_us / first['brute_scan'].median_us:,.0f}x",
            )
        )
    print_table(
        (
            "subscribers",
            "index full µs",
            "growth",
            "index lookup µs",
            "growth",
            "brute scan µs",
            "growth",
        ),
        growth_rows,
    )

    elapsed = time.perf_counter() - started
    report = {
        "benchmark": "matching",
        "timestamp": stamp.isoformat(timespec="seconds"),
        "quick": args.quick,
        "seed": args.seed,
        "repeats": repeats,
        "tweets": tweet_count,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "phrases": {
            "count": len(phrases),
            "two_term": two_term,
            "texts": [p.text for p in phrases],
        },
        "tokenise": tokenise.to_json(),
        "scenarios": [
            {
                **{key: value for key, value in s.items() if key != "measurements"},
                "measurements": {name: m.to_json() for name, m in s["measurements"].items()},
            }
            for s in scenarios
        ],
        "elapsed_seconds": elapsed,
    }
    print(f"Total time {elapsed:.1f} s")
    if not args.no_json:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"matching-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
