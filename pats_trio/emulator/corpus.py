"""Synthetic, plausible Twitter v1.1 statuses: varied users, topics, languages and entities.

`TweetFactory` writes raw statuses in the shape the v1.1 streaming API delivered them: snowflake
ids, `created_at` and `timestamp_ms`, hashtags, mentions, cashtags and t.co links with code-point
indices into the text, compatibility-mode `extended_tweet` for texts over 140 characters, retweets
("RT @user: ...") and quotes. Everything is drawn from one `random.Random`, so a seed gives the same
stream every time.

    >>> factory = TweetFactory(seed=7)
    >>> status = factory.next_status(1_700_000_000_000)
    >>> status["id"] > 0 and status["timestamp_ms"] == "1700000000000"
    True
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pats_trio.matching import tweet_terms
from pats_trio.tweets import TweetShapeError, trim

TWITTER_EPOCH_MS = 1_288_834_974_657
TEXT_LIMIT = 140
EXTENDED_LIMIT = 280
TCO_CODE_CHARS = 10
DISPLAY_URL_CHARS = 25
ELLIPSIS = "…"

RETWEET_SHARE = 0.15
QUOTE_SHARE = 0.05
REPLY_SHARE = 0.07
LONG_SHARE = 0.10
EXTRA_HASHTAG_SHARE = 0.30
EXTRA_EMOJI_SHARE = 0.25
MATCH_ATTEMPTS = 6

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SLOT = re.compile(r"\{([a-z_]+[0-9]?|[#@$])\}")
_LINK_PART = re.compile(r"\{([da])([0-9]+)\}")
_SOURCES = (
    '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
    '<a href="http://twitter.com/download/android" rel="nofollow">Twitter for Android</a>',
    '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
    '<a href="https://about.twitter.com/products/tweetdeck" rel="nofollow">TweetDeck</a>',
)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split("|") if part)


# --------------------------------------------------------------------------------------------
# Users


@dataclass(frozen=True)
class User:
    """A synthetic account. Its id and avatar derive from the screen name, so they are stable."""

    name: str
    screen_name: str
    location: str
    lang: str
    topics: tuple[str, ...]
    verified: bool = False
    followers: int = 0

    @property
    def id(self) -> int:
        return 10_000_000 + _stable_int(self.screen_name) % 1_500_000_000

    def to_json(self) -> dict[str, Any]:
        digest = _stable_int("created:" + self.screen_name)
        created_ms = 1_230_768_000_000 + digest % 380_000_000_000  # 2009 .. 2021
        followers = self.followers or 40 + digest % 9_000
        return {
            "id": self.id,
            "id_str": str(self.id),
            "name": self.name,
            "screen_name": self.screen_name,
            "location": self.location,
            "url": None,
            "description": None,
            "protected": False,
            "verified": self.verified,
            "followers_count": followers,
            "friends_count": 50 + digest % 1_400,
            "listed_count": followers // 60,
            "favourites_count": digest % 30_000,
            "statuses_count": 300 + digest % 60_000,
            "created_at": created_at(created_ms),
            "lang": self.lang,
            "default_profile_image": False,
            "profile_image_url_https": avatar_uri(self.name, self.screen_name),
        }


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _initials(name: str) -> str:
    words = [word for word in name.replace("-", " ").split() if word[:1].isalnum()]
    return "".join(word[0] for word in words[:2]).upper() or "?"


def avatar_uri(name: str, screen_name: str) -> str:
    """A `data:image/svg+xml` avatar: the initials of `name` on a circle of a per-user colour."""
    hue = _stable_int("hue:" + screen_name) % 360 / 360
    red, green, blue = colorsys.hls_to_rgb(hue, 0.42, 0.55)
    colour = f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48">'
        f'<circle cx="24" cy="24" r="24" fill="{colour}"/>'
        '<text x="24" y="24" dy=".35em" text-anchor="middle" fill="#fff" '
        'font-family="system-ui,sans-serif" font-size="18" font-weight="600">'
        f"{_initials(name)}</text></svg>"
    )
    return "data:image/svg+xml," + quote(svg, safe="")


def _user(spec: str) -> User:
    name, screen_name, location, lang, topics, *flags = spec.split("|")
    followers = int(flags[0]) if flags else 0
    return User(
        name, screen_name, location, lang, tuple(topics.split()), bool(flags), followers=followers
    )


# name | screen_name | location | lang | topics [| followers: verified]
USERS: tuple[User, ...] = tuple(
    _user(spec)
    for spec in (
        "Maya Lindqvist|mayacodes|Stockholm|en|python trio opensource coffee",
        "Tomás Ferreira|tferreira_dev|Lisbon|en|rust opensource cycling",
        "Priya Raman|priyaraman|Bengaluru|en|python science hi_food",
        "Jonas Becker|jbecker|Berlin|de|rust de_daily webdev",
        "田中 愛子|aiko_t|大阪|ja|ja_tech ja_food python",
        "Sam Okafor|samokafor|Lagos|en|football webdev music",
        "Елена Петрова|elena_astro|Москва|ru|ru_science space science",
        "Νίκος Παπαδάκης|npapadakis|Θεσσαλονίκη|el|el_travel el_food football",
        "ليلى حداد|laylahaddad|عمّان|ar|ar_daily ar_football travel",
        "अर्जुन मेहता|arjun_m|Mumbai|hi|hi_cricket hi_food markets",
        "Grace Whitfield|gracereads|Bath, England|en|books gardening weather",
        "Diego Álvarez|diegoalv|Buenos Aires|es|es_football es_daily music",
        "Chloé Martin|chloe_cuisine|Lyon|fr|fr_cooking cooking travel",
        "Ben Carter|bencarter_wx|Leeds|en|weather football climate",
        "Hannah Goldberg|hgoldberg|Brooklyn, NY|en|books film coffee",
        "Kwame Mensah|kwamemensah|Accra|en|markets football",
        "Sofia Russo|sofiarusso|Bologna|en|cooking travel music",
        "佐藤 由紀|yukisato_jp|東京|ja|ja_travel ja_tech space",
        "Oliver Hughes|ollyhughes|Manchester|en|football music",
        "Fatima Zahra|fzahra_sci|Casablanca|en|science climate ar_daily",
        "Lucas Moreau|lucasmoreau|Montréal|en|film books cycling",
        "Ingrid Solberg|ingridsolberg|Bergen|en|weather travel cycling",
        "Raj Patel|rajpatel_ml|London|en|python science markets",
        "Mei Chen|meichen|Vancouver|en|rust webdev pets",
        "أحمد كريم|ahmedkarim|القاهرة|ar|ar_football ar_daily space",
        "Zoe Adams|zoeadams|Melbourne|en|cycling coffee pets",
        "Pablo Navarro|pnavarro|Madrid|es|es_football es_daily markets",
        "Anna Kowalska|annakowalska|Kraków|en|books travel science",
        "山本 浩|hiroshi_y|札幌|ja|ja_food ja_travel",
        "Emily Clarke|emilyclarke_|Edinburgh|en|space science books",
        "Marcus Johnson|marcusj|Atlanta|en|music film football",
        "Leila Nasser|leilanasser|Beirut|en|cooking travel ar_daily",
        "Дмитрий Волков|dvolkov|Санкт-Петербург|ru|ru_football ru_weather",
        "Alice Dubois|alicedubois|Paris|fr|fr_cooking film books",
        "Tom Brennan|tombrennan|Dublin|en|football weather coffee",
        "Sarah Kim|sarahkim_dev|Seoul|en|webdev python coffee",
        "Mateo Rossi|mateorossi|Turin|en|football cycling",
        "Надя Иванова|nadia_iv|Новосибирск|ru|ru_science ru_weather books",
        "Kofi Boateng|kofiboateng|Kumasi|en|football music",
        "Isabel Torres|isabeltorres|Ciudad de México|es|es_daily music cooking",
        "Ελένη Γεωργίου|eleni_g|Αθήνα|el|el_travel el_food books",
        "विक्रम सिंह|vikramsingh|Delhi|hi|hi_cricket hi_music",
        "Lena Fischer|lenafischer|Hamburg|de|de_daily climate cycling",
        "Noah Williams|noahwilliams|Austin, TX|en|webdev music markets",
        "Amara Nwosu|amaranwosu|Nairobi|en|science climate gardening",
        "Jack Thompson|jackt_rust|Auckland|en|rust trio opensource",
        "Ольга Смирнова|olgasmirnova|Казань|ru|ru_science books",
        "Ravi Kumar|ravikumar|Chennai|en|python hi_cricket markets",
        "Charlotte Evans|charlotte_bakes|Cardiff|en|cooking gardening pets",
        "Gabriel Silva|gabrielsilva|São Paulo|pt|pt_football music",
        "Hana Novák|hananovak|Prague|en|travel books coffee",
        "عمر فاروق|omarfarouk|دبي|ar|ar_daily markets",
        "Julia Schmidt|juliaschmidt|Vienna|en|music science",
        "Ethan Brooks|ethanbrooks|Seattle|en|coffee webdev weather",
        "Ayşe Yılmaz|ayseyilmaz|Istanbul|en|cooking travel football",
        "渡辺 健二|kenji_w|福岡|ja|ja_tech rust",
        "Lucy Parker|lucyparker|Bristol|en|pets gardening film",
        "Daniel Cohen|danielcohen|Tel Aviv|en|markets python",
        "सुनीता राव|sunitarao|Hyderabad|hi|hi_food hi_music science",
        "Matt O'Neill|mattoneill|Boston|en|space science film",
        "Freya Larsen|freyalarsen|Copenhagen|en|cycling climate coffee",
        "Camille Laurent|camillelaurent|Bordeaux|fr|fr_cooking travel",
        "Tariq Hassan|tariqhassan|Karachi|en|hi_cricket markets python",
        "PyWeekly Digest|pyweekly|The Internet|en|python opensource trio|48210",
        "Orbit Daily|orbitdaily|Low Earth Orbit|en|space science|221400",
        "Matchday Live|matchdaylive|Everywhere|en|football|530900",
        "Weather Desk|weatherdesk|Exeter, UK|en|weather climate|318700",
        "Market Pulse|marketpulse|London|en|markets|402300",
        "The Rust Digest|rustdigest|Crates everywhere|en|rust opensource|35120",
        "Night Sky Notes|nightskynotes|Under dark skies|en|space|87650",
        "Kitchen Table|kitchentable|Your kitchen|en|cooking|126400",
    )
)


# --------------------------------------------------------------------------------------------
# Topics


@dataclass(frozen=True)
class Topic:
    """Templates with `{slot}`s, and what fills them. `{#}` `{@}` `{$}` `{link}` are entities."""

    lang: str
    templates: tuple[str, ...]
    hashtags: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    emoji: tuple[str, ...] = ()
    fills: Mapping[str, tuple[str, ...]] | None = None


def _topic(
    templates: Sequence[str],
    *,
    lang: str = "en",
    hashtags: str = "",
    links: str = "",
    emoji: str = "",
    **fills: str,
) -> Topic:
    return Topic(
        lang,
        tuple(templates),
        _split(hashtags),
        _split(links),
        tuple(emoji.split()),
        {name: _split(values) for name, values in fills.items()},
    )


GLOBAL_FILLS: dict[str, tuple[str, ...]] = {
    "day": _split("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"),
    "month": _split("January|February|March|April|May|June|July|August|September|October"),
    "clock": _split("05:42|07:15|12:30|18:45|19:57|20:30|21:14|22:03"),
    "pct": _split("0.1|0.3|0.4|0.8|1.2|1.6|2.4|3.1"),
    "pyver": _split("3.11|3.12|3.13"),
    "ver": _split("0.9|0.12|0.28|1.0|1.4|1.10|2.0|2.3|3.1|4.0|5.2"),
    "daypart": _split("morning|afternoon|evening"),
}
FALLBACK_EMOJI = ("🙂", "✨", "👍", "😄", "🙌", "👀")

TOPICS: dict[str, Topic] = {
    "python": _topic(
        (
            "Just upgraded our services to Python {pyver} and startup time dropped noticeably. "
            "{link}",
            "TIL: {pytil}",
            "{pylib} {ver} is out! {pyfeature}. {link}",
            "Hot take: {pyopinion}.",
            "Spent the afternoon replacing a tangle of threads with structured concurrency. "
            "Fewer lines, fewer bugs. {#}",
            "Reviewing PRs for {pylib} this weekend. If you've been waiting on one, it's your "
            "lucky day {emoji}",
            "Pro tip: run `python -X importtime` to see why your CLI takes a second to start. {#}",
            "Giving a talk on {pytalk} at {conf} next month. Slides will be up here: {link}",
            "My favourite Python feature nobody talks about: {pyfeature2}.",
            "Type hints caught a real bug for me today. mypy --strict is worth the pain. {#}",
            "Thanks {@} for the great write-up on {pytalk}! {link}",
            "Things I wish I'd known when I started with Python: use virtual environments from "
            "day one, read the standard library docs (they are great), learn pytest early, and "
            "don't be afraid of the REPL. What would you add? {#}",
            "New post: {pytalk}, with benchmarks and a few surprises along the way. {link} {#}",
            "Our test suite went from 9 minutes to 70 seconds with pytest-xdist and a bit of "
            "fixture hygiene. {emoji}",
        ),
        hashtags="Python|PyCon|pytest|100DaysOfCode|DevCommunity|Python3",
        links="https://docs.python.org/3/whatsnew/3.13.html|https://www.python.org/downloads/"
        "|https://pypi.org/project/httpx/|https://peps.python.org/pep-0{d3}/"
        "|https://github.com/pytest-dev/pytest/releases|https://realpython.com/"
        "|https://discuss.python.org/t/{d5}",
        emoji="🐍 ✨ 🚀 🎉 👩‍💻 🧪",
        pylib="httpx|pytest|hypothesis|mypy|ruff|attrs|orjson|Django|FastAPI|Quart|hypercorn"
        "|numpy|polars|trio-websocket",
        pyfeature="Faster imports, better error messages and full type hints"
        "|A new streaming API and a pile of bug fixes|Python 3.13 support and much smaller wheels"
        "|Async support finally landed|Half the memory use on large inputs",
        pytil="`itertools.batched` exists since 3.12 and it's exactly what I wanted"
        "|you can call `breakpoint()` anywhere and set PYTHONBREAKPOINT=0 to disable them all"
        "|`functools.cache` on a method keeps the instance alive. Careful!"
        "|`python -m http.server` still saves my day once a month"
        "|dict ordering is guaranteed since 3.7, no need for OrderedDict just for that"
        "|`str.removeprefix` reads so much better than slicing",
        pyopinion="dataclasses cover most of what people reach for a framework for"
        "|f-strings are the best thing that happened to the language in a decade"
        "|the standard library is underrated; check it before adding a dependency"
        "|a good test suite matters more than a clever architecture"
        "|the walrus operator is fine, actually",
        pytalk="structured concurrency in Python|writing fast JSON APIs"
        "|property-based testing with Hypothesis|profiling async code"
        "|packaging Python apps without tears|type hints for a gradual migration",
        conf="PyCon US|EuroPython|PyCon JP|PyData London|PyCon India|our local meetup",
        pyfeature2="`contextlib.ExitStack`|`pathlib`|the `__set_name__` hook"
        "|`enumerate(start=1)`|`collections.Counter`|`dataclasses.replace`",
    ),
    "trio": _topic(
        (
            "Trio's nurseries make it impossible to forget a background task. Once you see it, "
            "you can't unsee it. {#}",
            "Cancel scopes are the best timeout API I've used in any language. "
            "`with trio.move_on_after(5):` and done.",
            "Ported a websocket service from asyncio to {asynclib} this week. The code got "
            "shorter and the shutdown bugs vanished. {link}",
            "If your async code has a `while True` with a bare `except`, it's probably eating "
            "Cancelled. Ask me how I know {emoji}",
            "Structured concurrency: every task has a parent, every error has somewhere to go. "
            "That's the whole idea. {#}",
            "trio.testing.MockClock with autojump made our 30-minute retry tests run in 40ms. "
            "Magic. {#}",
            "Memory channels with a small buffer beat unbounded queues. Backpressure is a "
            "feature. {#}",
            "Reading {@}'s notes on {asynctopic} again. Still the best explanation out there. "
            "{link}",
            "Async Python tip: {asynctip}. {#}",
            "Wrote up how we handle {asynctopic} with trio and hypercorn. {link} {#}",
            "Three years of running trio in production: no orphaned tasks, timeouts that "
            "compose, and tests that use a fake clock instead of sleeping. The learning curve "
            "is a weekend, and the payoff is every incident you don't have. {#}",
        ),
        hashtags="trio|Python|async|asyncio|StructuredConcurrency",
        links="https://github.com/python-trio/trio|https://trio.readthedocs.io/en/stable/"
        "|https://trio.readthedocs.io/en/stable/reference-core.html"
        "|https://vorpus.org/blog/notes-on-structured-concurrency-or-go-statement-considered-harmful/"
        "|https://github.com/python-trio/trio-websocket|https://anyio.readthedocs.io/en/stable/",
        emoji="🧵 ⏱️ ✅ 🙌 🐍",
        asynclib="trio|AnyIO",
        asynctopic="cancellation|backpressure|graceful shutdown|timeouts and deadlines"
        "|streaming HTTP responses|reconnecting with exponential backoff",
        asynctip="use `nursery.start()` when the parent needs to know the child is ready"
        "|`trio.fail_after` in every test keeps CI from hanging forever"
        "|shield only the cleanup, never the work"
        "|give every queue a size; unbounded ones just hide the problem"
        "|`task_status.started()` is the cleanest readiness signal I know",
    ),
    "rust": _topic(
        (
            "The borrow checker rejected my code three times and was right three times. {#}",
            "Rewrote a hot loop in Rust via PyO3 and it went from {n} seconds to {n2} "
            "milliseconds. {link}",
            "cargo clippy is the code reviewer who never gets tired. {#}",
            "Rust {rustver} is out: {rustfeature}. {link}",
            "Finally understand lifetimes after reading {@}'s explainer. Took me long enough "
            "{emoji}",
            "Hot take: Rust's error messages are the best onboarding doc the language has. {#}",
            "async Rust with tokio vs trio in Python: same ideas about cancellation, very "
            "different ergonomics. Writing a comparison. {#}",
            "Our Rust service has been up for {n} days without a restart. I almost miss the pager.",
            "Reminder that `cargo tree -d` shows duplicate dependencies in your build. "
            "Saved us {n} MB. {#}",
            "Learning Rust with Advent of Code again. Day {n3} and my iterator chains are "
            "getting out of hand 🦀",
            "What I like about Rust after a year: the compiler catches whole classes of bugs "
            "before review, refactoring is fearless, and cargo makes dependencies boring in the "
            "best way. What I don't: compile times on a laptop. Still worth it. {#}",
        ),
        hashtags="rustlang|Rust|RustConf|OpenSource",
        links="https://blog.rust-lang.org/|https://doc.rust-lang.org/book/"
        "|https://crates.io/crates/tokio|https://github.com/PyO3/pyo3"
        "|https://this-week-in-rust.org/",
        emoji="🦀 ⚙️ 🔥 🚀",
        rustver="1.79|1.80|1.81|1.82|1.83",
        rustfeature="async closures|faster incremental builds|new lints and a friendlier cargo"
        "|let chains at last|smaller debug binaries",
        n3="3|7|12|18|21",
    ),
    "opensource": _topic(
        (
            "Merged my first PR to {osproject} today! The maintainers were incredibly kind {emoji}",
            "Maintainers are people. Say thanks in an issue today, it costs nothing. {#}",
            "Closed {n} stale issues this morning. Inbox zero is a myth, but issue tracker "
            "fifty is achievable.",
            "Releasing {osproject} {ver} with {n} contributors this cycle, many of them "
            "first-timers. {link} {#}",
            "Good first issues labelled and ready for the sprint tomorrow. {link}",
            "Reminder: a good bug report has the version, the steps and what you expected. "
            "It saves everyone a day. {#}",
            "The CI is green, the changelog is written, the tag is pushed. Time for a coffee ☕",
            "Our contributor guide got a rewrite thanks to {@}. So much clearer now. {link}",
            "git tip: `git switch -` takes you back to the previous branch, like `cd -` for "
            "branches. {#}",
            "Sprint season: please read the contributing guide before opening a PR {emoji}",
        ),
        hashtags="OpenSource|FOSS|GitHub|Hacktoberfest",
        links="https://github.com/python-trio/trio/pulls|https://github.com/encode/httpx/releases"
        "|https://github.com/pgjones/hypercorn|https://github.com/astral-sh/ruff"
        "|https://opensource.guide/|https://news.ycombinator.com/item?id=4{d7}"
        "|https://lobste.rs/",
        emoji="💚 🎉 🙏 🛠️",
        osproject="trio|httpx|pytest|hypercorn|ruff|our docs site|the tokio console"
        "|a tiny CLI I love",
    ),
    "webdev": _topic(
        (
            "WebSockets plus a tiny bit of vanilla JS and you get a live dashboard without a "
            "build step. {#}",
            "Deleted {n}KB of JavaScript from our landing page and nobody noticed except "
            "Lighthouse. {#}",
            "CSS grid still feels like cheating in the best way. {#}",
            "Today I learned `structuredClone()` is available everywhere now. {link}",
            "Server-sent events or WebSockets? For one-way feeds I keep coming back to "
            "{webchoice}.",
            "ES modules in the browser with no bundler. We can just do this now. {#}",
            "Accessibility audit done: {n} issues found, all fixed. Screen reader users deserve "
            "better than an afterthought. {#}",
            "The MDN docs remain one of the best resources on the web. {link}",
            "Dark mode via `prefers-color-scheme` took fifteen minutes. Why did I put it off "
            "for a year? {emoji}",
        ),
        hashtags="WebDev|JavaScript|CSS|a11y|Frontend",
        links="https://developer.mozilla.org/en-US/docs/Web/API/WebSocket"
        "|https://developer.mozilla.org/en-US/docs/Web/API/structuredClone"
        "|https://web.dev/articles/vitals|https://caniuse.com/css-grid"
        "|https://github.com/whatwg/html",
        emoji="💻 🎨 ⚡ 🌐",
        webchoice="SSE|WebSockets|plain long polling, honestly",
    ),
    "science": _topic(
        (
            "New preprint from our lab on {scitopic}. Comments welcome! {link}",
            "Fascinating paper on {scitopic}. The effect size is small but the method is really "
            "clever. {link} {#}",
            "Peer review turnaround: {n} days. Honestly not bad for this field.",
            "PhD life: the experiment worked on the first try and now I trust nothing. {#}",
            "Explained {scitopic} to my niece today and she asked better questions than "
            "reviewer 2. {emoji}",
            "Our dataset is now open access: {n} thousand samples, documented and versioned. "
            "{link} {#}",
            "Friendly reminder that a p-value is not the probability your hypothesis is true. {#}",
            "Great seminar by {@} on {scitopic} this afternoon. Lots to think about.",
            "Lab meeting moved to Friday because the {instrument} is finally fixed 🎉",
            "A thread on why replication matters: single studies are noisy, journals favour "
            "surprising results, and small samples exaggerate effects. None of this means "
            "science is broken. It means the process is slow, and we should report "
            "uncertainty honestly. {#}",
        ),
        hashtags="Science|AcademicTwitter|OpenScience|PhDLife|SciComm",
        links="https://arxiv.org/abs/2405.{d5}|https://www.nature.com/articles/s41586-024-0{d4}-1"
        "|https://www.biorxiv.org/content/10.1101/2024.05.{d2}.{d6}"
        "|https://www.bbc.co.uk/news/science-environment-6{d7}"
        "|https://www.science.org/doi/10.1126/science.adk{d4}",
        emoji="🔬 🧬 📊 🧪 🤓",
        scitopic="protein folding|soil microbiomes|coral reef recovery|sleep and memory"
        "|gut bacteria and mood|sodium-ion batteries|bird migration|CRISPR off-target effects"
        "|dark matter detectors|ocean heat content",
        instrument="mass spectrometer|confocal microscope|sequencer|cold room|compute cluster",
    ),
    "space": _topic(
        (
            "Tonight's ISS pass is at {clock}, visible for about {n4} minutes if the clouds "
            "behave. {#}",
            "{mission} update: {spaceupdate}. {link}",
            "The new images of {object} are absolutely unreal. {link} {#}",
            "Saturn's rings are slowly raining onto the planet. In a few hundred million years "
            "they may be gone. Enjoy them while they last 🪐",
            "Launch scrubbed for weather. Next window {day} at {clock} UTC. {#}",
            "Caught {object} through my backyard telescope last night. Tiny, fuzzy, perfect. "
            "{emoji}",
            "Perseids peak this week: find a dark spot, let your eyes adjust for 20 minutes, "
            "and look up. {#}",
            "Spent my lunch break reading {@}'s thread on {mission}. Worth it.",
        ),
        hashtags="Space|Astronomy|JWST|NASA|ESA|Astrophotography",
        links="https://www.nasa.gov/missions/|https://www.esa.int/Science_Exploration/Space_Science"
        "|https://webbtelescope.org/contents/news-releases|https://spotthestation.nasa.gov/"
        "|https://www.heavens-above.com/",
        emoji="🚀 🔭 🌌 🪐 ✨ 🌕",
        mission="Artemis|JWST|Europa Clipper|Juice|Hubble|BepiColombo|Perseverance",
        spaceupdate="all systems nominal after the latest burn|new science data is flowing"
        "|the team has confirmed a successful flyby|instrument calibration is complete"
        "|the rover has reached the crater rim",
        object="the Orion Nebula|the Andromeda galaxy|the Pillars of Creation"
        "|Jupiter's Great Red Spot|the Crab Nebula|the Ring Nebula",
        n4="3|4|5|6",
    ),
    "football": _topic(
        (
            "{team} {score} {team2}. What a finish! {#}",
            "Full time at {stadium}: {team} {score} {team2}. {link}",
            "That {minute}' equaliser from {player} will be replayed for years. {emoji}",
            "VAR took four minutes to decide that. Four. {#}",
            "Transfer rumour of the day: {player} to {team}. I'll believe it when I see the "
            "medical. {#}",
            "Matchday! {team} vs {team2}, kick-off {clock}. Predictions? ⚽",
            "Our keeper made {n3} saves tonight. Player of the season, no debate. {#}",
            "Women's football attendances keep breaking records and it's brilliant to see. "
            "{link} {#}",
            "Groundhopping weekend: two cities, three matches, one very tired back. {emoji}",
            "Not saying the ref had a bad game, but {@} is already writing the thread. {#}",
        ),
        hashtags="football|PremierLeague|UCL|MatchDay|WSL|LaLiga",
        links="https://www.bbc.co.uk/sport/football|https://www.theguardian.com/football"
        "|https://www.espn.com/soccer/|https://www.uefa.com/uefachampionsleague/"
        "|https://www.bbc.co.uk/sport/football/articles/c{a9}o",
        emoji="⚽ 🔥 😱 🏆 👏",
        team="Arsenal|Liverpool|Everton|Leeds United|Celtic|Barcelona|Real Betis|Bayern Munich"
        "|Borussia Dortmund|Napoli|Ajax|Benfica|Boca Juniors|Al Ahly|Galatasaray|Olympiacos",
        score="1-0|2-1|2-2|3-2|0-0|4-1|1-1|3-0",
        stadium="Anfield|Celtic Park|Signal Iduna Park|the Bernabéu|La Bombonera|Elland Road"
        "|the Estádio da Luz",
        minute="89|90+3|67|12|45+1|78",
        player="Okonkwo|Martínez|Lindholm|Silva|Kovač|Haddad|Ferreira|Yamada|Osei",
        n3="7|8|9|11",
    ),
    "cooking": _topic(
        (
            "Tonight's dinner: {dish}. {cookverdict} {emoji}",
            "Recipe for {dish} that actually works on a weeknight: {link}",
            "Baking tip: weigh your flour. Cups are chaos. {#}",
            "My sourdough starter is {n} days old and more reliable than my train. {#}",
            "Unpopular opinion: {foodopinion}.",
            "Made {dish} from {@}'s recipe and the whole family went back for seconds. {#}",
            "Farmers market haul: {produce}, {produce2} and far too many {produce3}. {emoji}",
            "The secret to {dish} is patience and more butter than you think. {#}",
            "Slow-cooked {dish} for six hours today. The house smells incredible, the "
            "neighbours are asking questions, and I regret nothing. Recipe and notes in the "
            "link, including the one step I got wrong the first time. {link} {#}",
        ),
        hashtags="cooking|baking|sourdough|homecooking|recipe|foodie",
        links="https://www.bbcgoodfood.com/recipes/|https://www.seriouseats.com/"
        "|https://cooking.nytimes.com/recipes/10{d5}|https://www.kingarthurbaking.com/recipes",
        emoji="🍝 🥘 🍞 🧄 😋 🍜 🔥",
        dish="mushroom risotto|chana masala|shakshuka|ramen from scratch|lemon drizzle cake"
        "|miso-glazed aubergine|paella|spanakopita|a big pot of chilli|focaccia|pad kra pao"
        "|jollof rice|pierogi",
        cookverdict="Ten out of ten, would make again.|Needed more salt, but the texture was "
        "perfect.|Slightly burnt, still delicious.|The kids approved, which is the real "
        "benchmark.",
        foodopinion="pineapple on pizza is fine|brown butter improves almost everything"
        "|a good knife matters more than any gadget"
        "|rice cookers are the best kitchen appliance ever made",
        produce="tomatoes|courgettes|strawberries|leeks|figs|plums|chillies|asparagus|squash",
    ),
    "music": _topic(
        (
            "Can't stop listening to the new {artist} album. Track {n3} especially. {link}",
            "Saw {artist} live at {venue} last night. My ears are still ringing, worth it. {emoji}",
            "Vinyl haul from the record shop: {genre}, more {genre2}, and one mystery LP for "
            "three quid. {#}",
            "Practising {instrument} every day this month. Day {n}: my neighbours are very "
            "patient. {#}",
            "That bassline in the new {artist} single is doing things to my brain. {#}",
            "Festival lineup just dropped and it's stacked. {link} {#}",
            "Playlist for a rainy {day}: slow {genre}, a kettle, and nowhere to be. {emoji}",
            "Music theory question for {@}: why does a minor sixth sound so sad? {#}",
        ),
        hashtags="NowPlaying|music|vinyl|livemusic|NewMusicFriday",
        links="https://open.spotify.com/album/{a22}|https://bandcamp.com/"
        "|https://www.youtube.com/watch?v={a11}|https://music.apple.com/",
        emoji="🎶 🎸 🎧 🎹 🥁 🎺",
        artist="Glass Harbour|The Velvet Orchards|Nova Lanes|Kairo Sun|Midnight Tram|Ayo Bloom"
        "|Static Gardens|Luna Ferro|Northern Quiet",
        venue="the Roundhouse|a tiny basement bar|the Barrowland|Paradiso|the Union Chapel",
        genre="jazz|soul|ambient|Afrobeat|bossa nova|post-rock|synth-pop|highlife",
        instrument="guitar|piano|cello|drums|the trumpet",
        n3="2|3|4|5|7|9",
    ),
    "travel": _topic(
        (
            "Landed in {city}. First stop: {travelfirst}. {emoji}",
            "The train from {city} to {city2} might be the most beautiful {n4} hours of rail "
            "I've done. {#}",
            "Travel tip: {traveltip}. {#}",
            "Sunrise over {place} this morning. No filter needed. {#}",
            "Night train booked for {city2}. Couchette, snacks, a good book. Perfect. {#}",
            "Finally made it to {place} after years of saying 'next year'. {link}",
            "Got lost in the old town of {city} and found the best {food} of the trip. {emoji}",
            "Two weeks, five countries, one backpack, and only trains and ferries. Slower than "
            "flying, obviously, but I met more people, saw more landscapes and arrived "
            "everywhere actually rested. Full itinerary and costs here: {link} {#}",
        ),
        hashtags="travel|wanderlust|slowtravel|interrail|TravelTuesday",
        links="https://www.lonelyplanet.com/|https://www.seat61.com/"
        "|https://www.theguardian.com/travel|https://www.interrail.eu/en",
        emoji="✈️ 🚆 🗺️ 🏔️ 🌅 🧳 ⛴️",
        city="Lisbon|Kyoto|Tbilisi|Porto|Oaxaca|Ljubljana|Hanoi|Marrakech|Valparaíso|Tallinn"
        "|Bergen|Naples",
        travelfirst="coffee|a street-food market|the old harbour|the nearest bakery"
        "|a long walk with no map",
        traveltip="pack half the clothes and twice the socks|download offline maps before you "
        "land|learn please and thank you in the local language|book night trains early, "
        "they sell out|carry a refillable bottle",
        place="the Douro valley|Lake Bled|the Atlas Mountains|Halong Bay|the Lofoten islands"
        "|Cappadocia|the Faroe Islands|Santorini",
        food="pastel de nata|dumplings|tacos|gelato|börek|khachapuri",
        n4="3|4|5|6",
    ),
    "weather": _topic(
        (
            "Forecast for {region}: {forecast}. {#}",
            "{weatherfeel} {emoji}",
            "Yellow warning for {warning} across {region} from {clock} tomorrow. Check before "
            "you travel. {link}",
            "Temperature today: {temp}°C. {weathercomment} {#}",
            "The radar looks like modern art right now. {link}",
            "Rain on the window, tea in hand, nowhere to be. Perfect {day}. {#}",
            "Four seasons in one day here: sun, hail, sun again, and a rainbow. {emoji}",
            "Thanks to {@} for the lightning photos last night, absolutely stunning. {#}",
        ),
        hashtags="weather|UKweather|StormWatch|rain|heatwave",
        links="https://www.metoffice.gov.uk/weather/forecast/|https://www.bbc.co.uk/weather"
        "|https://www.windy.com/|https://www.weather.gov/",
        emoji="🌧️ ☀️ ⛈️ 🌈 ❄️ 🌬️ ☔",
        region="northern England|the Highlands|Wales|Cornwall|the Pacific Northwest|Ontario"
        "|the Alps|southern Norway",
        forecast="heavy showers clearing by evening, breezy|dry and bright, frost overnight"
        "|strong winds with gusts up to 70 mph on the coast"
        "|warm and humid with the odd thunderstorm|low cloud and drizzle most of the day",
        weatherfeel="The first frost of the season, and the garden looks like sugar."
        "|Thunder rolling in from the west. The dog has already gone under the bed."
        "|Blue skies after a week of grey. Everyone in the park looks so happy."
        "|Fog so thick this morning I couldn't see the end of the street.",
        warning="wind|rain|snow and ice|thunderstorms|fog",
        temp="-3|4|12|18|27|31|35",
        weathercomment="Shorts weather? Absolutely not.|Time to dig out the big coat."
        "|Drink water and find some shade.|Perfect for a long walk.",
    ),
    "books": _topic(
        (
            "Just finished {classic}. {bookverdict} {#}",
            "Reading list for {month}: {book}, {book2} and finally tackling {book3}. {#}",
            "Library haul! {n3} books, zero regrets. {emoji}",
            "Book club picked {book} and the discussion got heated in the best way. {#}",
            "My to-read pile is now taller than my cat. {#}",
            "Currently reading {book} on the train and missed my stop. Twice. {emoji}",
            "Any recommendations like {book}? {@} says I should try {book2}. {#}",
        ),
        hashtags="amreading|books|BookTwitter|bookclub|reading",
        links="https://www.goodreads.com/book/show/{d6}|https://www.gutenberg.org/ebooks/{d5}"
        "|https://bookshop.org/|https://www.theguardian.com/books",
        emoji="📚 📖 ☕ 🐈",
        classic="Middlemarch by George Eliot|The Left Hand of Darkness by Ursula K. Le Guin"
        "|Beloved by Toni Morrison|Things Fall Apart by Chinua Achebe"
        "|The Remains of the Day by Kazuo Ishiguro|The Master and Margarita by Mikhail Bulgakov"
        "|Piranesi by Susanna Clarke|Kindred by Octavia E. Butler",
        book="Middlemarch|Piranesi|The Dispossessed|Kindred|Beloved|Dune|Persuasion"
        "|The Master and Margarita|A Wizard of Earthsea|The Overstory|Braiding Sweetgrass|Stoner",
        bookverdict="Still thinking about the ending.|Slow start, but the last hundred pages "
        "flew.|Instantly one of my favourites.|I cried on a bus. Highly recommend.",
        n3="4|6|7|9|12",
    ),
    "markets": _topic(
        (
            "{index} closes {updown} {pct}% as {marketreason}. {#}",
            "{$} up {pct}% pre-market after earnings beat expectations. {link}",
            "Central bank holds rates at {rate}%. Markets had priced it in. {#}",
            "Oil {updown} {pct}% on {oilreason}. {#}",
            "Not financial advice, but diversified index funds remain boring and effective. "
            "{emoji}",
            "Bond yields are doing something interesting this week. Chart: {link}",
            "{$} and {$} leading the tech rally today. {#}",
            "Inflation came in at {rate}% year on year, slightly below forecast. {#}",
        ),
        hashtags="markets|stocks|investing|economy|FTSE",
        links="https://www.ft.com/markets|https://www.reuters.com/markets/"
        "|https://www.bloomberg.com/markets|https://www.economist.com/finance-and-economics",
        emoji="📈 📉 💷 💹",
        index="The Nasdaq|The DAX|The Nikkei 225|The FTSE 100|The CAC 40|The Sensex|The Hang Seng",
        updown="higher|lower",
        marketreason="chip stocks rally|bank shares slide|investors weigh the jobs report"
        "|energy stocks lead gains|traders await the central bank decision",
        rate="2.9|3.25|4.5|5.0",
        oilreason="supply worries|a surprise inventory build|weaker demand forecasts",
        ticker="AAPL|MSFT|NVDA|TSLA|AMZN|ASML|SAP|TSM|GOOGL",
    ),
    "coffee": _topic(
        (
            "First coffee of the day and suddenly everything is possible. {emoji}",
            "Trying a new {coffee} at the café round the corner. Verdict: {coffeeverdict}.",
            "Monday mood: {mondaymood}. {#}",
            "Hand-ground beans, pour-over, no phone for ten minutes. Best part of my morning. {#}",
            "The barista remembered my order and I feel like a regular in a sitcom. {emoji}",
            "Hot take: the second coffee is always better than the first. {#}",
            "Working from the library today. Quiet, bright, and the wifi actually works. {emoji}",
        ),
        hashtags="coffee|MondayMotivation|coffeetime|WFH",
        links="https://www.perfectdailygrind.com/",
        emoji="☕ 🥐 😌 ✨",
        coffee="Ethiopian single origin|oat flat white|cortado|cold brew|cardamom latte",
        coffeeverdict="fruity and excellent|too sweet for me|dangerously good"
        "|I'll be back tomorrow",
        mondaymood="two coffees and a to-do list I refuse to look at"
        "|optimistic until the first meeting|calm, organised, and lying about both",
    ),
    "cycling": _topic(
        (
            "{n} km before breakfast. Legs are toast, head is clear. {#}",
            "New personal best on the {climb} climb! {emoji}",
            "Commuting by bike for a year: saved money, lost a bit of weight, gained opinions "
            "about potholes. {#}",
            "Parkrun this morning in the rain. Still the best free thing in the world. {#}",
            "Marathon training week {n3}: long run done, knees negotiating. {#}",
            "The bike lane on {street} finally opened and it's already full of kids on bikes. "
            "This is what it's for. {link}",
            "Puncture number {n3} this month. Tubeless, here I come. {emoji}",
        ),
        hashtags="cycling|running|parkrun|bikecommute|marathontraining",
        links="https://www.strava.com/activities/1{d9}|https://www.cyclingweekly.com/"
        "|https://www.parkrun.org.uk/",
        emoji="🚴 🏃 💪 🚲 🏔️",
        climb="Box Hill|Alpe d'Huez|Col du Tourmalet|Holme Moss|Mont Ventoux",
        street="the high street|Market Road|the river path",
        n3="3|4|6|9|11",
    ),
    "gardening": _topic(
        (
            "First {produce} of the season from the allotment. Small, wonky, delicious. {#}",
            "Planted {n} bulbs this weekend. Future me is going to be so pleased in April. {emoji}",
            "The slugs have declared war on my lettuces. {#}",
            "Compost heap is steaming on a cold morning, which means it's working. {#}",
            "Garden tip: {gardentip}. {#}",
            "Bees all over the lavender today. Best decision I made this year. {emoji}",
            "Saved seeds from last year's tomatoes and they germinated! {#}",
        ),
        hashtags="gardening|allotment|GardeningTwitter|growyourown",
        links="https://www.rhs.org.uk/advice|https://www.gardenersworld.com/",
        emoji="🌱 🌷 🐝 🍅 🌻 🥕",
        produce="tomatoes|courgettes|strawberries|broad beans|radishes|raspberries",
        gardentip="water in the morning, not the evening|leave some leaves for the hedgehogs"
        "|mulch, mulch and mulch again|plant for pollinators and the rest follows",
    ),
    "film": _topic(
        (
            "Watched {film} again last night. Still holds up. {#}",
            "The cinematography in {film} deserves every award going. {emoji}",
            "Cinema trip tonight: small screen, old seats, perfect. {#}",
            "Unpopular opinion: {filmopinion}. {#}",
            "Trailer for the new {director} film just dropped. {link}",
            "Film club this week is {film}. Bringing snacks and strong opinions. {emoji}",
        ),
        hashtags="film|movies|FilmTwitter|cinema",
        links="https://www.bfi.org.uk/|https://letterboxd.com/|https://www.imdb.com/title/tt{d7}/",
        emoji="🎬 🍿 🎥",
        film="Spirited Away|Casablanca|Parasite|Paddington 2|In the Mood for Love|Arrival"
        "|Seven Samurai|Portrait of a Lady on Fire|Mad Max: Fury Road",
        director="Villeneuve|Gerwig|Kore-eda|Céline Sciamma|Bong Joon-ho",
        filmopinion="most films would be better at 100 minutes"
        "|subtitles are not a barrier, they're a door|the book is not always better",
    ),
    "pets": _topic(
        (
            "My cat has decided the keyboard is her bed now. Meetings will be interesting. {emoji}",
            "Adopted a {n4}-year-old rescue dog today. Meet {petname}! {#}",
            "{petname} learned to open the treat cupboard. We are no longer in charge. {#}",
            "The dog heard the word 'walk' in a sentence that wasn't about him. Chaos. {emoji}",
            "The vet says {petname} is perfectly healthy and 'a little dramatic'. Accurate. {#}",
        ),
        hashtags="CatsOfTwitter|DogsOfTwitter|AdoptDontShop|caturday",
        emoji="🐈 🐕 🐾 😹 🐶",
        petname="Biscuit|Miso|Luna|Pepper|Otto|Mochi|Ziggy|Hazel",
        n4="2|3|5|7",
    ),
    "climate": _topic(
        (
            "{country} ran on {share}% renewables for the whole of {when}. {link} {#}",
            "Heat pump installed, first bill in: {n}% cheaper than the old boiler. {#}",
            "The latest ocean temperature data is sobering. {link} {#}",
            "Community solar project just switched on: {n} homes powered by the roof of the "
            "town hall. {emoji}",
            "Reminder that the cheapest energy is the energy you don't use. Insulate those "
            "lofts. {#}",
        ),
        hashtags="climate|ClimateAction|renewables|energy|NetZero",
        links="https://www.carbonbrief.org/|https://www.iea.org/reports"
        "|https://climate.copernicus.eu/",
        emoji="🌍 ☀️ 🌬️ 🔋 🌊",
        country="Scotland|Portugal|Denmark|South Australia|Uruguay|Kenya",
        share="64|78|91|100",
        when="yesterday|last weekend|Tuesday",
    ),
    "ja_tech": _topic(
        (
            "Python {pyver} にアップデートしたら、起動がかなり速くなった。{#}",
            "trio の nursery、慣れるとタスク管理がすごく楽になる。{link}",
            "Rust の借用チェッカーに三回怒られて、三回とも正しかった。{#}",
            "今日は非同期処理のテストを書いていました。MockClock 便利すぎる。{emoji}",
            "勉強会の資料を公開しました。{link} {#}",
        ),
        lang="ja",
        hashtags="Python|プログラミング|勉強会|rustlang",
        links="https://github.com/python-trio/trio|https://connpass.com/|https://qiita.com/",
        emoji="💻 🐍 🦀 ✨",
    ),
    "ja_food": _topic(
        (
            "今日のお昼は{jafood}。最高でした。{emoji}",
            "家で{jafood}を作ってみた。思ったより簡単! {#}",
            "近所に新しいラーメン屋ができた。スープが濃厚で美味しい。{#}",
        ),
        lang="ja",
        hashtags="ラーメン|おうちごはん|グルメ",
        emoji="🍜 🍛 😋 🍣",
        jafood="ラーメン|カレーライス|お好み焼き|親子丼|天ぷら蕎麦|たこ焼き",
    ),
    "ja_travel": _topic(
        (
            "{jacity}に到着。{jaweather}。{emoji}",
            "桜が満開でした。{jacity}の公園は人がいっぱい。{#}",
            "新幹線で{jacity}へ。富士山がきれいに見えた! {#}",
        ),
        lang="ja",
        hashtags="旅行|桜|新幹線",
        emoji="🌸 🗻 🚄 ⛩️",
        jacity="京都|札幌|福岡|金沢|那覇|奈良",
        jaweather="今日はとても暑い|雨が降っている|空気が澄んでいて気持ちいい",
    ),
    "ru_science": _topic(
        (
            "Сегодня в лаборатории наконец-то получилось повторить эксперимент. {emoji}",
            "Отличная лекция о {ruscience} в университете. Запись здесь: {link}",
            "Наш новый препринт уже на arXiv! {link} {#}",
            "Вечером видно МКС, если небо будет ясным. {#}",
        ),
        lang="ru",
        hashtags="наука|космос|физика",
        links="https://arxiv.org/abs/2406.{d5}|https://elementy.ru/",
        emoji="🔬 🚀 🌌",
        ruscience="тёмной материи|квантовых компьютерах|истории космонавтики|генетике растений",
    ),
    "ru_football": _topic(
        (
            "Какой матч! {ruteam} вырывает победу на последних минутах. {#}",
            "Судья сегодня явно не в форме. {emoji}",
            "Завтра дерби, билеты уже раскуплены. {#}",
        ),
        lang="ru",
        hashtags="футбол|РПЛ",
        emoji="⚽ 😤 🔥",
        ruteam="Зенит|Спартак|ЦСКА|Локомотив",
    ),
    "ru_weather": _topic(
        (
            "В {rucity} сегодня {rutemp} и снег. Зима пришла. ❄️",
            "Наконец-то солнце! Весь город вышел гулять. {#}",
        ),
        lang="ru",
        hashtags="погода|зима",
        emoji="☀️ ❄️ 🌨️",
        rucity="Москве|Петербурге|Казани|Новосибирске",
        rutemp="минус пятнадцать|минус двадцать|ноль",
    ),
    "el_travel": _topic(
        (
            "Καλημέρα από {elplace}! Η θάλασσα σήμερα είναι υπέροχη. {emoji}",
            "Το ηλιοβασίλεμα στη {elisland}... δεν υπάρχουν λόγια. {#}",
            "Ταξίδι με το πλοίο για {elplace} σήμερα. {#}",
        ),
        lang="el",
        hashtags="Ελλάδα|ταξίδι|καλοκαίρι",
        emoji="🌊 ☀️ ⛵ 🇬🇷",
        elplace="την Κρήτη|τη Νάξο|τη Θεσσαλονίκη|την Πάρο|τη Σίφνο",
        elisland="Σαντορίνη|Μήλο|Νάξο|Κέρκυρα",
    ),
    "el_food": _topic(
        (
            "Σήμερα έφτιαξα {elfood} όπως η γιαγιά μου. {emoji}",
            "Τίποτα δεν συγκρίνεται με ένα φρέσκο {elfood2} στην ταβέρνα. {#}",
        ),
        lang="el",
        hashtags="ΕλληνικήΚουζίνα|φαγητό",
        emoji="🥗 🫒 😋",
        elfood="μουσακά|σπανακόπιτα|γεμιστά|φασολάδα",
        elfood2="σουβλάκι|χταπόδι|ψάρι",
    ),
    "ar_football": _topic(
        (
            "مباراة رائعة الليلة! {arteam} يفوز في الدقائق الأخيرة. {#}",
            "هدف خرافي من {arplayer}! ⚽ {#}",
            "الديربي غداً، من سيفوز برأيكم؟ {emoji}",
        ),
        lang="ar",
        hashtags="كرة_القدم|الدوري",
        emoji="⚽ 🔥 👏",
        arteam="الأهلي|الزمالك|الهلال|الوداد|الترجي",
        arplayer="محمد|يوسف|عمر|كريم",
    ),
    "ar_daily": _topic(
        (
            "صباح الخير! قهوة عربية وبداية يوم جميل. ☕",
            "الجو اليوم حار جداً في {arcity}، لا تنسوا شرب الماء. {#}",
            "أجمل شيء في المساء: نسمة هواء وكتاب جيد. {emoji}",
            "زرت اليوم معرض الكتاب في {arcity}. {link} {#}",
        ),
        lang="ar",
        hashtags="صباح_الخير|قهوة|الطقس",
        links="https://www.aljazeera.net/",
        emoji="☕ 🌙 📚 ☀️",
        arcity="عمّان|القاهرة|الرباط|دبي|بيروت",
    ),
    "hi_cricket": _topic(
        (
            "क्या शानदार मैच था! आखिरी ओवर में जीत। {#}",
            "{hiplayer} का शतक, पूरा स्टेडियम खड़ा हो गया! 🏏 {#}",
            "आज बारिश की वजह से मैच रुका हुआ है। {emoji}",
        ),
        lang="hi",
        hashtags="क्रिकेट|cricket|INDvAUS",
        emoji="🏏 🇮🇳 🔥 🙌",
        hiplayer="राहुल|अर्जुन|विराज|समीर",
    ),
    "hi_food": _topic(
        (
            "आज घर पर {hifood} बनाया, सबको बहुत पसंद आया। {emoji}",
            "बारिश का मौसम और गरम चाय के साथ पकौड़े। इससे अच्छा क्या हो सकता है? {#}",
        ),
        lang="hi",
        hashtags="खाना|chai",
        emoji="🍛 ☕ 😋",
        hifood="राजमा चावल|पनीर टिक्का|आलू पराठा|बिरयानी|मसाला डोसा",
    ),
    "hi_music": _topic(
        (
            "सुबह की शुरुआत राग भैरव से। मन शांत हो गया। 🎶",
            "कल रात का संगीत कार्यक्रम अद्भुत था। {#}",
        ),
        lang="hi",
        hashtags="संगीत|music",
        emoji="🎶 🎵 🪕",
    ),
    "es_football": _topic(
        (
            "¡Qué partido! {esteam} gana en el último minuto. {#}",
            "Golazo de {player} desde fuera del área. {emoji}",
            "Mañana es el clásico y ya no duermo. {#}",
        ),
        lang="es",
        hashtags="fútbol|LaLiga",
        emoji="⚽ 🔥 😱",
        esteam="Boca|River|El Betis|La Real Sociedad|El Atleti",
        player="Martínez|Silva|Fernández|Romero",
    ),
    "es_daily": _topic(
        (
            "Hoy toca {esfood} en casa de mi abuela. {emoji}",
            "El mejor plan de domingo: vermut, sol y amigos. {#}",
            "Llueve en {escity} y yo con un libro y un café. Perfecto. {emoji}",
        ),
        lang="es",
        hashtags="domingo|buenosdías|café",
        emoji="☀️ 🍷 ☕ 😊",
        esfood="paella|tortilla de patatas|empanadas|mole|arepas",
        escity="Madrid|Buenos Aires|Bogotá|Sevilla|Ciudad de México",
    ),
    "fr_cooking": _topic(
        (
            "Ce soir : {frdish} maison. Simple et délicieux. {emoji}",
            "Le marché du samedi matin, c'est sacré. {#}",
            "Ma baguette de ce matin était encore tiède. Bonheur absolu. 🥖",
        ),
        lang="fr",
        hashtags="cuisine|recette|faitmaison",
        emoji="🥖 🧀 🍷 😋",
        frdish="ratatouille|quiche lorraine|bœuf bourguignon|tarte tatin|soupe à l'oignon",
    ),
    "de_daily": _topic(
        (
            "{n} Kilometer mit dem Rad zur Arbeit, trotz Regen. {#}",
            "Endlich Feierabend. Jetzt ein Spaziergang an der Elbe. {emoji}",
            "Die Bahn war heute pünktlich. Ich mache ein Foto für die Geschichtsbücher. {#}",
            "Heute Nachmittag: Kaffee und Kuchen mit der Familie. ☕",
        ),
        lang="de",
        hashtags="Radfahren|Hamburg|Sonntag",
        emoji="🚲 ☕ 🌧️ 😄",
    ),
    "pt_football": _topic(
        (
            "Que jogo! {ptteam} virou no segundo tempo. {#}",
            "Golaço! O estádio veio abaixo. ⚽",
            "Domingo de clássico, a cidade está parada. {emoji}",
        ),
        lang="pt",
        hashtags="futebol|Brasileirão",
        emoji="⚽ 🔥 🇧🇷",
        ptteam="Flamengo|Palmeiras|Corinthians|O Grêmio",
    ),
}

# Templates for `status_matching`: a plausible tweet around any keywords, `{kw}` is the keywords.
MATCH_TEMPLATES_EN: tuple[str, ...] = (
    "Can't stop thinking about {kw} today.",
    "Anyone else following the {kw} news this {daypart}?",
    "Reading up on {kw} over lunch. Send me your best links!",
    "New post: what I learned about {kw} this month {link}",
    "Big day for {kw} fans 👀",
    "Unpopular opinion: {kw} deserves more attention.",
    "A quick thread on {kw} 🧵",
    "Why is everyone talking about {kw} right now?",
    "Finally tried {kw} and honestly, I get the hype.",
    "Just saw the latest on {kw}. Wild times.",
    "Three things I didn't know about {kw} until today {link}",
    "Our team spent the whole of {day} on {kw}. Worth it.",
    "Bookmarking this excellent explainer on {kw} {link}",
    "Listening to a great podcast episode about {kw} on my commute 🎧",
    "If you only read one thing about {kw} this week, make it this: {link}",
    "Not me staying up past midnight reading about {kw} again {emoji}",
)
# The last resort: every keyword a token of its own, with whitespace on both sides.
MATCH_TEMPLATES_PLAIN: tuple[str, ...] = (
    "Thinking about {kw} today",
    "Everyone is talking about {kw} right now",
    "Big news: {kw} 👀",
)
MATCH_TEMPLATES_OTHER: tuple[tuple[str, str], ...] = (
    ("ja", "{kw} についての記事、とても面白かった。"),
    ("es", "Hoy todo el mundo habla de {kw}. {emoji}"),
    ("fr", "Tout le monde parle de {kw} aujourd'hui."),
    ("de", "Heute dreht sich alles um {kw}. {emoji}"),
    ("ru", "Все сегодня обсуждают {kw}."),
)
MATCH_LINKS = _split(
    "https://www.bbc.co.uk/news|https://www.theguardian.com/international"
    "|https://news.ycombinator.com/item?id=4{d7}|https://medium.com/@notes/{a12}"
)
_KEYWORD_TOPIC = Topic("en", (), links=MATCH_LINKS, emoji=FALLBACK_EMOJI)


# --------------------------------------------------------------------------------------------
# Text with entities


class _Draft:
    """A tweet text built piece by piece, recording entity indices as code-point offsets."""

    __slots__ = ("hashtags", "length", "mentions", "parts", "symbols", "urls")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.hashtags: list[dict[str, Any]] = []
        self.mentions: list[dict[str, Any]] = []
        self.urls: list[dict[str, Any]] = []
        self.symbols: list[dict[str, Any]] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> None:
        # The v1.1 API HTML-escapes &, < and > and counts indices in the escaped text.
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.parts.append(text)
        self.length += len(text)

    def _entity(self, found: list[dict[str, Any]], token: str, entity: dict[str, Any]) -> None:
        start = self.length
        self.add(token)
        entity["indices"] = [start, self.length]
        found.append(entity)

    def hashtag(self, tag: str) -> None:
        self._entity(self.hashtags, "#" + tag, {"text": tag})

    def symbol(self, ticker: str) -> None:
        self._entity(self.symbols, "$" + ticker, {"text": ticker})

    def mention(self, user: User) -> None:
        entity = {"screen_name": user.screen_name, "name": user.name, "id": user.id}
        entity["id_str"] = str(user.id)
        self._entity(self.mentions, "@" + user.screen_name, entity)

    def url(self, tco: str, expanded: str) -> None:
        entity = {"url": tco, "expanded_url": expanded, "display_url": display_url(expanded)}
        self._entity(self.urls, tco, entity)

    def mark(self) -> tuple[int, ...]:
        return (
            len(self.parts),
            self.length,
            len(self.hashtags),
            len(self.mentions),
            len(self.urls),
            len(self.symbols),
        )

    def rollback(self, mark: tuple[int, ...]) -> None:
        parts, self.length, hashtags, mentions, urls, symbols = mark
        del self.parts[parts:]
        del self.hashtags[hashtags:]
        del self.mentions[mentions:]
        del self.urls[urls:]
        del self.symbols[symbols:]

    def entities(self, limit: int | None = None, shift: int = 0) -> dict[str, Any]:
        """The entities that end at or before `limit`, with indices moved right by `shift`."""

        def keep(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
            kept = []
            for entity in found:
                start, end = entity["indices"]
                if limit is None or end + shift <= limit:
                    kept.append({**entity, "indices": [start + shift, end + shift]})
            return kept

        return {
            "hashtags": keep(self.hashtags),
            "urls": keep(self.urls),
            "user_mentions": keep(self.mentions),
            "symbols": keep(self.symbols),
        }


def display_url(expanded: str) -> str:
    """Twitter's display form: no scheme, no `www.`, long ones cut with an ellipsis."""
    shown = expanded.partition("://")[2] or expanded
    shown = shown.removeprefix("www.")
    if len(shown) > DISPLAY_URL_CHARS:
        shown = shown[: DISPLAY_URL_CHARS - 1] + ELLIPSIS
    return shown


def truncated_length(text: str, limit: int = TEXT_LIMIT) -> int:
    """Where compatibility mode cuts `text` so that it plus an ellipsis fits in `limit`."""
    cut = limit - 1
    space = text.rfind(" ", 0, cut + 1)
    if space >= limit * 2 // 3:
        cut = space
    return len(text[:cut].rstrip())


def created_at(ms: int) -> str:
    """v1.1's `created_at`, e.g. "Wed Oct 10 20:19:24 +0000 2018", independent of the locale."""
    moment = time.gmtime(ms // 1000)
    return (
        f"{_WEEKDAYS[moment.tm_wday]} {_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:02d} "
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000 {moment.tm_year}"
    )


def snowflake(ms: int, worker: int, sequence: int) -> int:
    return ((ms - TWITTER_EPOCH_MS) << 22) | ((worker & 0x3FF) << 12) | (sequence & 0xFFF)


# --------------------------------------------------------------------------------------------
# The factory


class TweetFactory:
    """Writes raw v1.1 statuses. Deterministic for a given seed and sequence of calls.

    `next_status(now_ms)` is a sample-stream tweet: an original, a reply, a retweet (about 15 %)
    or a quote (about 5 %). `status_matching(terms, now_ms)` is a tweet holding every term, for
    the filter stream. Ids are snowflakes from `now_ms` and increase strictly from call to call.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._worker = self._rng.randrange(1024)
        self._last_id = 0
        self._users_by_topic: dict[str, list[User]] = {}
        for user in USERS:
            for topic in user.topics:
                self._users_by_topic.setdefault(topic, []).append(user)
        self._users_by_lang: dict[str, list[User]] = {}
        for user in USERS:
            self._users_by_lang.setdefault(user.lang, []).append(user)
        self._user_json = {user.screen_name: user.to_json() for user in USERS}
        self._topic_words: dict[str, frozenset[str]] | None = None

    # ---- public

    def next_status(self, now_ms: int) -> dict[str, Any]:
        """A raw status as the sample stream would deliver it at `now_ms`."""
        roll = self._rng.random()
        if roll < RETWEET_SHARE:
            return self._retweet(now_ms)
        if roll < RETWEET_SHARE + QUOTE_SHARE:
            return self._quote(now_ms)
        user = self._rng.choice(USERS)
        topic = self._rng.choice(user.topics)
        reply = roll < RETWEET_SHARE + QUOTE_SHARE + REPLY_SHARE
        return self._original(user, topic, now_ms, reply=reply)

    def status_matching(self, phrase_terms: Sequence[str], now_ms: int) -> dict[str, Any]:
        """A plausible status that holds every one of `phrase_terms` (the AND of one phrase).

        Topic tweets are tried first (a tweet from the python topic for "python"), then
        keyword templates. The result is checked with the server's own tokeniser.
        """
        terms = [term for term in phrase_terms if term]
        wanted = frozenset(term.lower() for term in terms)
        topics = self._topics_for(wanted)
        for _ in range(MATCH_ATTEMPTS if topics else 0):
            topic = self._rng.choice(topics)
            users = self._users_by_topic.get(topic) or list(USERS)
            status = self._original(self._rng.choice(users), topic, now_ms, long_ok=False)
            if wanted <= _terms_of(status):
                return status
        status = self._keyword_status(terms, now_ms)
        if not wanted <= _terms_of(status):
            status = self._keyword_status(terms, now_ms, plain=True)
        return status

    # ---- building blocks

    def _next_id(self, ms: int) -> int:
        candidate = snowflake(ms, self._worker, self._rng.randrange(4096))
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def _past_id(self, ms: int) -> int:
        return snowflake(ms, self._rng.randrange(1024), self._rng.randrange(4096))

    def _tco(self) -> str:
        return "https://t.co/" + "".join(self._rng.choices(_ALNUM, k=TCO_CODE_CHARS))

    def _link(self, pattern: str) -> str:
        def part(match: re.Match[str]) -> str:
            alphabet = "0123456789" if match.group(1) == "d" else _ALNUM
            return "".join(self._rng.choices(alphabet, k=int(match.group(2))))

        return _LINK_PART.sub(part, pattern)

    def _other_user(self, topic: str, author: User) -> User:
        pool = [user for user in self._users_by_topic.get(topic, ()) if user is not author]
        if not pool or self._rng.random() < 0.3:
            pool = [user for user in USERS if user is not author]
        return self._rng.choice(pool)

    def _render(self, draft: _Draft, template: str, topic_name: str, author: User, ms: int) -> None:
        """Append `template` to `draft`, filling slots; entities get their indices."""
        topic = TOPICS.get(topic_name, _KEYWORD_TOPIC)
        fills = topic.fills or {}
        used: dict[str, set[str]] = {}
        position = 0
        for match in _SLOT.finditer(template):
            draft.add(template[position : match.start()])
            position = match.end()
            slot = match.group(1)
            if slot == "#":
                tag = self._pick(topic.hashtags or ("news",), used.setdefault("#", set()))
                draft.hashtag(tag)
            elif slot == "$":
                tickers = fills.get("ticker") or ("AAPL",)
                draft.symbol(self._pick(tickers, used.setdefault("$", set())))
            elif slot == "@":
                draft.mention(self._other_user(topic_name, author))
            elif slot == "link":
                links = topic.links or MATCH_LINKS
                draft.url(self._tco(), self._link(self._rng.choice(links)))
            elif slot == "emoji":
                draft.add(self._rng.choice(topic.emoji or FALLBACK_EMOJI))
            elif slot == "year":
                draft.add(str(time.gmtime(ms // 1000).tm_year))
            else:
                name = slot.rstrip("0123456789") or slot
                values = fills.get(slot) or fills.get(name) or GLOBAL_FILLS.get(name)
                if values is None:
                    draft.add(str(self._rng.randint(2, 60)))  # {n}, {n2}, ...
                else:
                    draft.add(self._pick(values, used.setdefault(name, set())))
        draft.add(template[position:])

    def _pick(self, values: Sequence[str], used: set[str]) -> str:
        fresh = [value for value in values if value not in used] or list(values)
        value = self._rng.choice(fresh)
        used.add(value)
        return value

    def _compose(self, user: User, topic_name: str, ms: int, *, long_ok: bool = True) -> _Draft:
        topic = TOPICS[topic_name]
        draft = _Draft()
        first = self._rng.randrange(len(topic.templates))
        self._render(draft, topic.templates[first], topic_name, user, ms)
        if long_ok and self._rng.random() < LONG_SHARE and len(topic.templates) > 1:
            mark = draft.mark()
            second = self._rng.choice(topic.templates[:first] + topic.templates[first + 1 :])
            draft.add("" if topic.lang == "ja" else " ")
            self._render(draft, second, topic_name, user, ms)
            if draft.length > EXTENDED_LIMIT - 20:
                draft.rollback(mark)
        if self._rng.random() < EXTRA_HASHTAG_SHARE and topic.hashtags:
            used = {entity["text"] for entity in draft.hashtags}
            unused = [tag for tag in topic.hashtags if tag not in used]
            if unused and draft.length + len(unused[0]) + 2 <= EXTENDED_LIMIT:
                draft.add(" ")
                draft.hashtag(self._rng.choice(unused))
        if self._rng.random() < EXTRA_EMOJI_SHARE and draft.length + 3 <= EXTENDED_LIMIT:
            last = draft.parts[-1] if draft.parts else ""
            if not any(emoji in last for emoji in topic.emoji or FALLBACK_EMOJI):
                draft.add(" " + self._rng.choice(topic.emoji or FALLBACK_EMOJI))
        return draft

    def _status(
        self,
        user: User,
        draft: _Draft,
        ms: int,
        lang: str,
        *,
        status_id: int | None = None,
        display_start: int = 0,
    ) -> dict[str, Any]:
        """A complete status around `draft`, in compatibility mode when it is over 140 chars."""
        full_text = draft.text
        status_id = self._next_id(ms) if status_id is None else status_id
        status: dict[str, Any] = {
            "created_at": created_at(ms),
            "id": status_id,
            "id_str": str(status_id),
            "text": full_text,
            "source": self._rng.choice(_SOURCES),
            "truncated": False,
            "in_reply_to_status_id": None,
            "in_reply_to_status_id_str": None,
            "in_reply_to_user_id": None,
            "in_reply_to_user_id_str": None,
            "in_reply_to_screen_name": None,
            "user": dict(self._user_json[user.screen_name]),
            "geo": None,
            "coordinates": None,
            "place": None,
            "contributors": None,
            "is_quote_status": False,
            "quote_count": 0,
            "reply_count": 0,
            "retweet_count": 0,
            "favorite_count": 0,
            "entities": draft.entities(),
            "favorited": False,
            "retweeted": False,
            "filter_level": "low",
            "lang": lang,
            "timestamp_ms": str(ms),
        }
        if draft.urls:
            status["possibly_sensitive"] = False
        if len(full_text) > TEXT_LIMIT:
            cut = truncated_length(full_text)
            status["text"] = full_text[:cut] + ELLIPSIS
            status["truncated"] = True
            status["entities"] = draft.entities(limit=cut)
            status["extended_tweet"] = {
                "full_text": full_text,
                "display_text_range": [display_start, len(full_text)],
                "entities": draft.entities(),
            }
        elif display_start:
            status["display_text_range"] = [display_start, len(full_text)]
        return status

    def _original(
        self,
        user: User,
        topic: str,
        ms: int,
        *,
        reply: bool = False,
        long_ok: bool = True,
        past: bool = False,
    ) -> dict[str, Any]:
        draft = _Draft()
        target: User | None = None
        if reply:
            target = self._other_user(topic, user)
            draft.mention(target)
            draft.add(" ")
        body = self._compose(user, topic, ms, long_ok=long_ok)
        shift = draft.length
        draft.add(body.text)
        for mine, theirs in (
            (draft.hashtags, body.hashtags),
            (draft.mentions, body.mentions),
            (draft.urls, body.urls),
            (draft.symbols, body.symbols),
        ):
            for entity in theirs:
                start, end = entity["indices"]
                mine.append({**entity, "indices": [start + shift, end + shift]})
        status_id = self._past_id(ms) if past else None
        status = self._status(
            user, draft, ms, TOPICS[topic].lang, status_id=status_id, display_start=shift
        )
        if target is not None:
            status["in_reply_to_status_id"] = self._past_id(ms - self._rng.randint(60, 7200) * 1000)
            status["in_reply_to_status_id_str"] = str(status["in_reply_to_status_id"])
            status["in_reply_to_user_id"] = target.id
            status["in_reply_to_user_id_str"] = str(target.id)
            status["in_reply_to_screen_name"] = target.screen_name
        return status

    def _earlier(self, now_ms: int, author: User | None = None) -> tuple[User, dict[str, Any]]:
        """A status someone else wrote a while ago, to be retweeted or quoted."""
        pool = [user for user in USERS if user is not author]
        user = self._rng.choice(pool)
        ms = now_ms - self._rng.randint(30, 36 * 3600) * 1000
        status = self._original(user, self._rng.choice(user.topics), ms, past=True)
        return user, status

    def _retweet(self, now_ms: int) -> dict[str, Any]:
        retweeter = self._rng.choice(USERS)
        author, original = self._earlier(now_ms, retweeter)
        extended = original.get("extended_tweet") or {}
        full_text = extended.get("full_text", original["text"])
        entities = extended.get("entities", original["entities"])
        prefix = f"RT @{author.screen_name}: "
        draft = _Draft()
        draft.add("RT ")
        draft.mention(author)
        draft.add(": ")
        shift = len(prefix)
        draft.add(full_text)
        for key, found in (
            ("hashtags", draft.hashtags),
            ("user_mentions", draft.mentions),
            ("urls", draft.urls),
            ("symbols", draft.symbols),
        ):
            for entity in entities[key]:
                start, end = entity["indices"]
                found.append({**entity, "indices": [start + shift, end + shift]})
        status = self._status(retweeter, draft, now_ms, original["lang"])
        # A retweet is never in compatibility mode itself: its text is cut, the original is whole.
        status.pop("extended_tweet", None)
        status["truncated"] = False
        status["retweeted_status"] = original
        status["is_quote_status"] = original["is_quote_status"]
        return status

    def _quote(self, now_ms: int) -> dict[str, Any]:
        quoter = self._rng.choice(USERS)
        author, original = self._earlier(now_ms, quoter)
        topic = self._rng.choice(quoter.topics)
        draft = self._compose(quoter, topic, now_ms, long_ok=False)
        permalink = f"https://twitter.com/{author.screen_name}/status/{original['id_str']}"
        tco = self._tco()
        draft.add(" ")
        draft.url(tco, permalink)
        status = self._status(quoter, draft, now_ms, TOPICS[topic].lang)
        status["is_quote_status"] = True
        status["quoted_status_id"] = original["id"]
        status["quoted_status_id_str"] = original["id_str"]
        status["quoted_status"] = original
        status["quoted_status_permalink"] = {
            "url": tco,
            "expanded": permalink,
            "display": display_url(permalink),
        }
        return status

    # ---- filter support

    def _topics_for(self, wanted: frozenset[str]) -> list[str]:
        if self._topic_words is None:
            self._topic_words = {name: _topic_vocabulary(topic) for name, topic in TOPICS.items()}
        return sorted(name for name, words in self._topic_words.items() if wanted & words)

    def _keyword_status(
        self, terms: Sequence[str], now_ms: int, *, plain: bool = False
    ) -> dict[str, Any]:
        """A keyword template around `terms`; `plain` keeps each term a bare, spaced token."""
        if plain:
            lang, template = "en", self._rng.choice(MATCH_TEMPLATES_PLAIN)
        elif len(terms) == 1 and self._rng.random() < 0.2:
            lang, template = self._rng.choice(MATCH_TEMPLATES_OTHER)
        else:
            lang, template = "en", self._rng.choice(MATCH_TEMPLATES_EN)
        users = self._users_by_lang.get(lang) or list(USERS)
        user = self._rng.choice(users)
        draft = _Draft()
        before, _, after = template.partition("{kw}")
        self._render(draft, before, "", user, now_ms)
        as_tag = not plain and len(terms) == 1 and self._rng.random() < 0.3
        for index, term in enumerate(terms):
            if plain:
                draft.add(" " if index else "")
            elif index:
                draft.add(" and " if index == len(terms) - 1 else ", ")
            tag = term[1:] if term.startswith("#") else term if as_tag else ""
            if tag and all(char.isalnum() or char == "_" for char in tag):
                draft.hashtag(tag)
            else:
                draft.add(term)
        self._render(draft, after, "", user, now_ms)
        return self._status(user, draft, now_ms, lang)


def _topic_vocabulary(topic: Topic) -> frozenset[str]:
    words: set[str] = set()
    texts = [*topic.templates, *topic.hashtags]
    for values in (topic.fills or {}).values():
        texts.extend(values)
    for text in texts:
        for word in re.split(r"[^\w]+", _SLOT.sub(" ", text).lower()):
            if len(word) > 2:
                words.add(word)
    return frozenset(words)


def _terms_of(status: Mapping[str, Any]) -> frozenset[str]:
    try:
        return tweet_terms(trim(status))
    except TweetShapeError:
        return frozenset()
