"""The X API v2 filtered stream as an upstream: one connection, rules changed in place.

`XUpstream` is the adapter on the shared lifecycle (`upstream/lifecycle.py`) for
``GET /2/tweets/search/stream``: it connects while filter viewers watch and lingers after the
last one leaves. A keyword change never touches the connection: the `RuleManager` (`manager`)
changes the app's rules in place, and pats-trio routes each post with its own matcher, so the
rules need only deliver a superset of what viewers asked for.

What X matched, pats-trio must see: the stream asks for a long post's ``note_tweet``, the
retweeted and quoted posts, and the links' expanded and unwound URLs, all of which X matches
keywords against. A post X still says matched one of our rules (``matching_rules``) while no
viewer's phrase matches it as delivered (a quoted post X could not send, say) is shown on X's
word only when that rule carries one phrase of plain words (`rules.vouched_phrase`); otherwise
no phrase can be named, and the post is dropped and counted (`XStats.unattributable`).

Reconnects follow X's documented policy (`upstream/backoff.Backoff`): a dropped stream at once,
then network errors 250 ms linear to 16 s, HTTP errors 5 s doubling to 320 s, 429 (and an
in-stream ``TooManyConnections``) from 60 s doubling, never sooner than ``x-rate-limit-reset``.
X sends a ``\\r\\n`` keep-alive every 20 s; `STALL_SECONDS` of silence is a dead stream.

X answers a connect with 409 while the app has no rules, so the stream is opened only once the
rule manager has ours in place (`RuleManager.ready_for_stream`): a fresh app's first viewer
waits for the first rules (the debounce and a dry run), not for a 409's backoff. A 409 all the
same (every rule deleted by another tool) is no HTTP error: the manager lists and puts ours
back, and the stream reconnects once they are in, at once the first time and every
`NO_RULES_RETRY_SECONDS` after, never more slowly. Viewers hear if the rules take longer than
`RULES_NOTICE_SECONDS`.

X's problems are told apart by kind (`problems`), never by title: ``usage-capped`` is the
project's cap, ``streaming-connection`` and ``operational-disconnect`` end the stream; an error
object about a referenced post or user is counted (`XStats.partial_errors`) and logged, and no
other error object on the stream is shown to viewers either.

The cost guard (`cost.DailyMeter`) counts the posts read per UTC day; at the cap the stream is
closed and viewers are told, in plain words, that posts resume after midnight UTC. The count
outlives the process (`ledger.PostLedger`): it is seeded from X's usage endpoint and from the
deployment's count in Redis, so neither a restart nor a takeover reads a second cap. A project
whose monthly cap X reports reached is not read either, and its viewers are told so.

X's sampled stream is Enterprise-only, so the sample view is never connected: its viewers are
told so (`SAMPLE_UNAVAILABLE`).

Beside the adapter: the HTTP (`client`), the stream's lines (`messages`), the v2 payload as a
v1.1 status (`payload`), the rules as values (`rules`), their manager (`manager`), the meter
(`cost`), X's usage figures (`usage`) and the meter's memory (`ledger`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import httpx
import trio

from pats_trio import events, frames
from pats_trio.config import Settings
from pats_trio.credentials import BearerToken
from pats_trio.events import NoticeEvent, StreamKind, status_event
from pats_trio.matching import Phrase, TrackError, matches_any, parse_track
from pats_trio.upstream.backoff import ConnectionBudget, classify
from pats_trio.upstream.lifecycle import (
    DedupWindow,
    HandedOver,
    Lifecycle,
    Link,
    Retry,
    StreamStalledError,
)
from pats_trio.upstream.source import Publish, SourceStats
from pats_trio.upstream.x import messages
from pats_trio.upstream.x.client import (
    RulesClient,
    XHTTPError,
    XNetworkError,
    get_usage,
    open_stream,
)
from pats_trio.upstream.x.cost import DailyMeter, until_midnight
from pats_trio.upstream.x.ledger import USAGE_INTERVAL, PostLedger
from pats_trio.upstream.x.manager import DEBOUNCE_SECONDS, RuleManager
from pats_trio.upstream.x.payload import PayloadError, matching_rules, to_status
from pats_trio.upstream.x.problems import REFERENCE_KINDS, USAGE_CAPPED
from pats_trio.upstream.x.rules import TAG_PREFIX, ours, vouched_phrase
from pats_trio.upstream.x.usage import USAGE_DAYS, USAGE_FIELDS

LOGGER = logging.getLogger(__name__)

STALL_SECONDS = 30.0
"""X sends a keep-alive every 20 s and says to reconnect after 20 s of silence; a margin of ten
seconds keeps a keep-alive that is a little late from costing a reconnect (and a connect from
the 50 a 15-minute window allows)."""
CONNECTS_PER_WINDOW = 50
CONNECT_WINDOW_SECONDS = 900.0
DEDUP_WINDOW = 10_000
NO_RULES_STATUS = 409
"""X's answer to a stream connect while the app has no rules."""
NO_RULES_RETRY_SECONDS = 5.0
"""The wait after a second 409 in a row (the first reconnects once the rules are back): X's
first HTTP-error step, never doubled, since X listing rules yet refusing the stream for having
none is no fault of ours that waiting longer would mend."""
RULES_NOTICE_SECONDS = 10.0
"""How long the stream waits for the first rules before viewers are told why nothing comes."""
SAMPLE_UNAVAILABLE = (
    "X offers its sampled stream only on Enterprise plans, so there is no unfiltered view on X. "
    "Type keywords to watch the posts that match them."
)


class StreamProblemError(Exception):
    """X sent an error object that ends the stream (``operational-disconnect``, ...)."""

    def __init__(self, problem: messages.Problem) -> None:
        super().__init__(f"{problem.name}: {problem.detail}")
        self.problem = problem


class DailyCapReachedError(Exception):
    """The posts read today reached PATS_X_MAX_POSTS_PER_DAY."""


class ProjectCapReachedError(Exception):
    """X says the project's monthly cap of posts is reached: it delivers none until it resets."""


@dataclass
class XStats(SourceStats):
    """`SourceStats`, and what X's posts cost and which rules they matched."""

    keepalives: int = 0
    matched_ours: int = 0
    """Posts that matched one of our rules (``matching_rules``)."""
    matched_foreign_only: int = 0
    """Posts that matched only rules pats-trio did not make: read, billed, and shown to nobody
    unless a viewer's phrase matches them too."""
    unrouted: int = 0
    """Posts shown to nobody: no viewer's phrase matches them (the rules' superset)."""
    routed_on_x_match: int = 0
    """Posts no viewer's phrase matches as delivered, shown on X's word to the viewers of the
    one plain-word phrase of a rule X said they matched (`rules.vouched_phrase`)."""
    unattributable: int = 0
    """Posts X said matched one of our rules that no viewer's phrase matches as delivered, and
    whose rules name no one phrase (packed, or a phrase with punctuation): dropped."""
    problems: int = 0
    """Error objects read on the stream, alone on their line."""
    partial_errors: int = 0
    """Of those, the ones about a post or user a post refers to (`problems.REFERENCE_KINDS`):
    logged, never shown."""


class XUpstream:
    """The filter stream from X, with its rules and its cost guard. The hub says what is
    wanted with `demand`."""

    def __init__(
        self,
        publish: Publish,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        token: BearerToken,
        linger: float = Settings.linger_seconds,
        stall: float = STALL_SECONDS,
        max_posts_per_day: int = Settings.x_max_posts_per_day,
        price_per_post: float = Settings.x_price_per_post,
        rule_debounce: float = DEBOUNCE_SECONDS,
        rule_budget: ConnectionBudget | None = None,
        connect_budget: ConnectionBudget | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._publish = publish
        self.wall = wall
        """The wall clock the cost guard's UTC days (and X's rate-limit resets) are on."""
        self._http, self._base_url, self._token = http, base_url, token
        self.stats = XStats()
        self.meter = DailyMeter(cap=max_posts_per_day, price=price_per_post)
        usage_params = {"days": str(USAGE_DAYS), "usage.fields": USAGE_FIELDS}
        self.ledger = PostLedger(
            self.meter,
            partial(get_usage, http, base_url, token, usage_params),
            wall=wall,
            on_change=self._count_changed,
        )
        self._reading: trio.CancelScope | None = None
        self._project_capped_told = False
        self.rules = RuleManager(
            RulesClient(http, base_url, token),
            publish,
            debounce=rule_debounce,
            budget=rule_budget,
            wall=wall,
        )
        self._phrases: tuple[Phrase, ...] = ()
        self._seen = DedupWindow[str](DEDUP_WINDOW)
        self._capped_told = False
        self._no_rules_in_a_row = 0
        self._lifecycle = Lifecycle[None, AsyncIterator[bytes]](
            "x",
            self,
            publish=publish,
            kinds=("filter",),
            stats=self.stats,
            target=None,
            linger=linger,
            stall=stall,
            budget=connect_budget
            or ConnectionBudget(
                min_interval=0.0,
                max_per_window=CONNECTS_PER_WINDOW,
                window=CONNECT_WINDOW_SECONDS,
            ),
            rng=rng,
            log=LOGGER,
        )

    # the Upstream protocol

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        """Filter viewers connect the stream and set the rules; the sample view has no stream
        on X (`SAMPLE_UNAVAILABLE`)."""
        if kind != "filter":
            return
        try:
            self._phrases = parse_track(track)
        except TrackError:
            LOGGER.warning("x: ignoring a track the hub should not have let through")
            return
        if self._phrases:
            # When the last viewer leaves, the rules stay as they are: X bills posts, not rules,
            # and a reload or the next viewer with the same keywords then costs no rule change.
            self.rules.want(phrase.text for phrase in self._phrases)
        self.rules.watch(active and bool(self._phrases))
        self._lifecycle.demand(active=active and bool(self._phrases), target=None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand forever: the rules and the stream, in one nursery."""
        self._publish("sample", status_event("sample", "error", reason=SAMPLE_UNAVAILABLE))
        async with trio.open_nursery() as nursery:
            await nursery.start(self.ledger.run)
            await nursery.start(self.rules.run)
            await nursery.start(self._lifecycle.run)
            task_status.started()

    def state_of(self, kind: StreamKind) -> str:
        return self._lifecycle.state if kind == "filter" else "error"

    def retry_in_of(self, kind: StreamKind) -> float:
        return self._lifecycle.retry_in if kind == "filter" else 0.0

    def stats_of(self, kind: StreamKind) -> SourceStats:
        return self.stats if kind == "filter" else SourceStats()

    def resume_point(self) -> int | None:
        """Recovery (backfill) is Enterprise-only: a new connection starts at the live edge."""
        return None

    def resume_from(self, point: int) -> None:
        pass

    # the adapter

    def details(self) -> dict[str, Any]:
        """Today's count and its estimated spend, with every status viewers are told."""
        spend = self.meter.spend_today(self.wall())
        return {"posts_today": self.meter.today, "spend_today": round(spend, 4)}

    def open(self, target: None) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[AsyncIterator[bytes]]:
        """The stream, once our rules are in place (`_rules_in_place`), the day's count is
        known (`PostLedger.ready`), and within both caps."""
        await self._rules_in_place()
        await self.ledger.ready()
        if self.ledger.project_capped:
            await self.ledger.recheck()
        else:
            self.ledger.refresh()
        self._stop_if_capped()
        self._capped_told = self._project_capped_told = False
        async with open_stream(self._http, self._base_url, self._token) as chunks:
            yield chunks

    async def _rules_in_place(self) -> None:
        """Until the rules are such that X takes a connect (not 409) for posts viewers want;
        viewers hear it if that takes longer than `RULES_NOTICE_SECONDS`."""
        rules = self.rules
        with trio.move_on_after(RULES_NOTICE_SECONDS):
            await rules.updated.wait_until(rules.ready_for_stream)
            return
        if not rules.waits_for_nothing():
            why = f" (X answered: {rules.last_error})" if rules.last_error else ""
            LOGGER.warning("x: the stream waits for the rules to be in place%s", why)
            self._publish(
                "filter",
                NoticeEvent(
                    frames.error(
                        "x_rules_pending",
                        "Waiting for X to take the rules for these keywords: X opens no stream "
                        f"without rules{why}. Posts start as soon as it has.",
                    )
                ),
            )
        await rules.updated.wait_until(rules.ready_for_stream)

    async def read(self, chunks: AsyncIterator[bytes], link: Link[None]) -> None:
        self._no_rules_in_a_row = 0
        LOGGER.info(
            "x: connected; %d rules carry %d phrases",
            len(self.rules.rules),
            len(self.rules.carried),
        )
        decoder = messages.LineDecoder()
        try:
            with trio.CancelScope() as self._reading:
                async for chunk in self._lifecycle.arrivals(chunks.__anext__):
                    for message in decoder.feed(chunk):
                        if isinstance(message, messages.Post):
                            self._post(message.message)
                        else:
                            self._problem(message)
        finally:
            self._reading = None
            self.stats.malformed += decoder.stats.malformed
            self.stats.oversized += decoder.stats.oversized
            self.stats.keepalives += decoder.stats.keepalives
        self._stop_if_capped()

    def _count_changed(self) -> None:
        """A witness raised the count or X's report changed: stop reading at once if a cap is
        reached now (the read loop then ends and `read` says which)."""
        if self._reading is not None and self._capped():
            self._reading.cancel()

    def _capped(self) -> bool:
        """Whether a cap forbids reading now: the project's monthly one or today's."""
        return self.ledger.project_capped or self.meter.capped(self.wall())

    def _stop_if_capped(self) -> None:
        if self.ledger.project_capped:
            raise ProjectCapReachedError(self._project_cap_reason())
        if self.meter.capped(self.wall()):
            raise DailyCapReachedError(self.meter.reason())

    def failure(self, exc: Exception, link: Link[None]) -> Retry | HandedOver | None:
        backoff = link.backoff
        if isinstance(exc, DailyCapReachedError):
            self._tell_capped()
            return Retry(str(exc), "disconnect", until_midnight(self.wall()))
        if isinstance(exc, ProjectCapReachedError):
            self._tell_project_capped(str(exc))
            return Retry(str(exc), "disconnect", USAGE_INTERVAL)
        if isinstance(exc, XHTTPError) and exc.status_code == NO_RULES_STATUS:
            # Someone deleted every rule: the manager lists and puts ours back, and the next
            # connect waits for that (`_rules_in_place`). No HTTP error: the ladder stays put.
            self.rules.rules_gone()
            self._no_rules_in_a_row += 1
            delay = 0.0 if self._no_rules_in_a_row == 1 else NO_RULES_RETRY_SECONDS
            return Retry(f"X says the app has no rules ({exc.reason})", "no rules", delay)
        if isinstance(exc, XHTTPError) and exc.kind == USAGE_CAPPED:
            reason = self._project_cap_reason()
            self._tell_project_capped(reason)
            return Retry(reason, "http", max(USAGE_INTERVAL, backoff.after_http_error(429)))
        if isinstance(exc, StreamStalledError):
            return Retry(str(exc), "stall", link.after_drop())
        if isinstance(exc, StreamProblemError) and exc.problem.kind == USAGE_CAPPED:
            reason = self._project_cap_reason()
            self._tell_project_capped(reason)
            return Retry(reason, "disconnect", USAGE_INTERVAL)
        if isinstance(exc, StreamProblemError):
            reason = f"X ended the stream: {exc.problem.detail} ({exc.problem.name})"
            if exc.problem.rate_limited:
                return Retry(reason, "http", backoff.after_http_error(429))
            return Retry(reason, "disconnect", link.after_drop())
        if isinstance(exc, XNetworkError):
            dropped = link.connected_at is not None
            delay = link.after_drop() if dropped else backoff.after_network_error()
            return Retry(f"network error: {exc}", "network", delay)
        if isinstance(exc, XHTTPError):
            reason = f"HTTP {exc.status_code} from X: {exc.reason}"
            if classify(exc.status_code) == "fatal":
                return Retry(reason, "fatal", backoff.after_fatal(exc.status_code))
            delay = backoff.after_http_error(exc.status_code)
            if exc.reset_at is not None:
                delay = max(delay, exc.reset_at - self.wall())
            return Retry(reason, "http", delay)
        return None

    # messages

    def _post(self, message: dict[str, Any]) -> None:
        within_cap = self.ledger.record(self.wall())
        matched = matching_rules(message)
        mine = tuple(rule_id for rule_id, tag in matched if ours(tag, TAG_PREFIX))
        if mine:
            self.stats.matched_ours += 1
        elif matched:
            self.stats.matched_foreign_only += 1
        try:
            status = to_status(message)
        except PayloadError as exc:
            self.stats.malformed += 1
            LOGGER.debug("x: skipping a post: %s", exc)
        else:
            self._handle(status, mine)
        if not within_cap:
            raise DailyCapReachedError(self.meter.reason())

    def _handle(self, status: dict[str, Any], rule_ids: tuple[str, ...]) -> None:
        if not self._seen.first_time(status["id_str"]):
            self.stats.duplicates += 1
            return
        event = events.tweet_event(status, source="x")
        if event is None:
            self.stats.malformed += 1
            return
        if not matches_any(self._phrases, event.terms):
            vouched = self._vouched(rule_ids)
            if vouched:
                # The hub routes by terms: adding the phrase's reaches its viewers, and through
                # every worker's hub alike.
                event = replace(event, terms=event.terms | vouched)
                self.stats.routed_on_x_match += 1
            else:
                self.stats.unrouted += 1
                self.stats.unattributable += bool(rule_ids)
        self.stats.tweets += 1
        self._publish("filter", event)

    def _vouched(self, rule_ids: tuple[str, ...]) -> frozenset[str]:
        """The terms of the wanted phrases X's match of these rules of ours vouches for."""
        wanted = {phrase.text: phrase for phrase in self._phrases}
        terms: set[str] = set()
        for rule_id in rule_ids:
            carried = self.rules.rules.get(rule_id)
            phrase = vouched_phrase(carried[1]) if carried is not None else None
            if phrase in wanted:
                terms |= wanted[phrase].terms
        return frozenset(terms)

    def _problem(self, problem: messages.Problem) -> None:
        """An error object alone on its line: one that ends the stream ends it (viewers see the
        reconnect); any other is counted and logged, never shown (see `problems`)."""
        self.stats.problems += 1
        if problem.disconnects:
            raise StreamProblemError(problem)
        if problem.kind in REFERENCE_KINDS:
            self.stats.partial_errors += 1
            LOGGER.debug("x: X could not send a referenced item: %s", problem.detail)
            return
        LOGGER.warning(
            "x: the stream reported %s (%s): %s",
            problem.name,
            problem.kind or "no type",
            problem.detail,
        )

    def _tell_capped(self) -> None:
        if self._capped_told:
            return
        self._capped_told = True
        LOGGER.warning(
            "x: %d posts read today, the cap (PATS_X_MAX_POSTS_PER_DAY); reading resumes in %.0fs",
            self.meter.today,
            until_midnight(self.wall()),
        )
        self._publish(
            "filter",
            NoticeEvent(
                frames.error("x_daily_cap", f"No more posts today: {self.meter.reason()}.")
            ),
        )

    def _project_cap_reason(self) -> str:
        report = self.ledger.report
        cap = f"of {report.project_cap:,} posts " if report.project_cap else ""
        when = (
            f" (X says it resets in {report.cap_reset_day} days)"
            if report.cap_reset_day is not None
            else ""
        )
        return (
            f"the X project's monthly limit {cap}is used up, so X sends no more posts until it "
            f"resets{when}"
        )

    def _tell_project_capped(self, reason: str) -> None:
        if self._project_capped_told:
            return
        self._project_capped_told = True
        LOGGER.warning("x: %s; checking again every %.0fs", reason, USAGE_INTERVAL)
        self._publish(
            "filter", NoticeEvent(frames.error("x_project_cap", f"No more posts: {reason}."))
        )
