"""Keeps the app's X rules in step with the viewers' phrases, in place, within X's rate limit.

Run by whoever runs the upstream (the Redis lease holder in a deployment). At start it lists the
app's rules: ours (tagged with our prefix) are what it carries; foreign ones are reported and left
alone. Then, each time the wanted phrases change and stay put for `debounce` seconds, it packs
the difference into rules (`rules.plan`), checks the new ones with ``dry_run``, adds them, and
only then deletes what they replace, so no phrase that stays wanted is ever uncovered.

X refuses a stream connect with 409 while the app has no rules, so the stream waits for
`ready_for_stream`: listed, some rule in place, and ours carrying the wanted phrases (or at least
one of them, the rest on their way). A 409 after all (someone deleted every rule) is told to
`rules_gone`: the manager lists and puts ours back. While viewers watch, the rules are listed
again every `audit` seconds (`RULES_AUDIT_SECONDS`): ours deleted by another tool under an open
stream are put back too, since X then sends nothing and says nothing until the next connect.

A rule X refuses is narrowed down to its phrases (a second dry run, one phrase a rule), and each
refused phrase becomes an error for the viewers who follow it, and nobody else; it is not asked
for again until it stops being wanted. Rule changes are paced by a `ConnectionBudget` (X allows
100 a 15-minute window on pay-per-use): a change that waits for the budget says so to the
viewers, and a 429 waits for ``x-rate-limit-reset``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from pats_trio import frames
from pats_trio.events import NoticeEvent
from pats_trio.upstream.backoff import ConnectionBudget, doubling
from pats_trio.upstream.lifecycle import DEBOUNCE_MAX_FACTOR, RepeatedEvent
from pats_trio.upstream.source import Publish
from pats_trio.upstream.x.client import RuleRejection, RulesClient, XError, XHTTPError
from pats_trio.upstream.x.problems import DUPLICATE_RULES, RULE_CAP
from pats_trio.upstream.x.rules import (
    MAX_RULE_CHARS,
    TAG_PREFIX,
    Plan,
    Rule,
    RuleTooLongError,
    pack,
    plan,
    reconcile,
)

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

RULE_CHANGES_PER_WINDOW = 100
RULE_WINDOW_SECONDS = 900.0
DEBOUNCE_SECONDS = 1.0
RULES_AUDIT_SECONDS = 300.0
"""Three of the 450 rule listings X allows an app in 15 minutes."""
RETRY_FIRST_SECONDS = 5.0
RETRY_CAP_SECONDS = 320.0
RATE_LIMITED_SECONDS = 60.0


@dataclass
class RuleStats:
    """What the manager did, for /metrics."""

    applied: int = 0
    """Changes applied (each a dry run, an add and a delete at most)."""
    rejected: int = 0
    """Phrases X refused."""
    waiting: bool = False
    """A change is held for the rate limit now."""
    failures: int = 0
    foreign: int = 0
    rules: int = 0
    rejected_phrases: dict[str, str] = field(default_factory=dict)


class RuleManager:
    """The app's rules for the union of viewers' phrases; `want` says what is wanted."""

    def __init__(
        self,
        client: RulesClient,
        publish: Publish,
        *,
        prefix: str = TAG_PREFIX,
        limit: int = MAX_RULE_CHARS,
        debounce: float = DEBOUNCE_SECONDS,
        budget: ConnectionBudget | None = None,
        wall: Callable[[], float] = time.time,
        audit: float = RULES_AUDIT_SECONDS,
    ) -> None:
        self.client = client
        self._publish = publish
        self.prefix = prefix
        self._limit = limit
        self._debounce = debounce
        self._budget = budget or ConnectionBudget(
            min_interval=0.0, max_per_window=RULE_CHANGES_PER_WINDOW, window=RULE_WINDOW_SECONDS
        )
        self._wall = wall
        self._audit_every = audit
        self.watched = False
        """Whether viewers watch now (`watch`): the rules are audited only then."""
        self._wanted: frozenset[str] = frozenset()
        self._changed = RepeatedEvent()
        self.rules: dict[str, tuple[Rule, tuple[str, ...]]] = {}
        self.foreign: tuple[Rule, ...] = ()
        self.rejected: dict[str, str] = {}
        """Phrases X refused, with why; forgotten once nobody wants them."""
        self._listing_stale = False
        self._version = 0
        """Counts changes of the wanted phrases, to tell a change that failed from one that
        was overtaken by another."""
        self.duplicates: set[str] = set()
        """Phrases whose rule X has already (a foreign rule of the same value): covered."""
        self.stats = RuleStats()
        self.listed = trio.Event()
        """Set once the app's rules were listed at start."""
        self.in_step = RepeatedEvent()
        """Set each time the rules carry what is wanted (for tests and the log)."""
        self.updated = RepeatedEvent()
        """Set at every change of what is wanted or carried: `ready_for_stream` may differ."""
        self.last_error: str | None = None
        """Why the last request failed, while the manager retries it; else None."""
        self.list_failed = False
        """The last listing failed: what rules X has is not known."""

    @property
    def carried(self) -> frozenset[str]:
        """The phrases our rules carry now."""
        return frozenset(p for _, phrases in self.rules.values() for p in phrases)

    def want(self, phrases: Iterable[str]) -> None:
        """The phrases viewers follow now (the union); the rules follow after `debounce`."""
        wanted = frozenset(phrases)
        if wanted != self._wanted:
            self._wanted = wanted
            self._version += 1
            for phrase in set(self.rejected) - wanted:
                del self.rejected[phrase]
            self.duplicates &= wanted
            self._changed.set()
            self.updated.set()

    def watch(self, active: bool) -> None:
        """Say whether viewers watch now: while they do, the rules are audited."""
        self.watched = active

    def _target(self) -> frozenset[str]:
        return self._wanted - set(self.rejected) - self.duplicates

    def is_in_step(self) -> bool:
        return self.listed.is_set() and self.carried == self._target()

    def ready_for_stream(self) -> bool:
        """Whether to try a stream connect now: the rules are listed, some rule exists (else X
        answers 409), and ours carry the wanted phrases (all, or some while the rest are on
        their way). Also when listing failed: then the stream's own failure (and its backoff)
        tells viewers what is wrong with X."""
        if self.list_failed:
            return True
        return (
            self.listed.is_set()
            and bool(self.rules or self.foreign)
            and (self.is_in_step() or bool(self.carried & self._wanted))
        )

    def waits_for_nothing(self) -> bool:
        """Whether no rule of ours is on its way: every wanted phrase is refused or covered."""
        return not self._target()

    def rules_gone(self) -> None:
        """X refused the stream for having no rules (409): someone deleted them all. Forget
        what we thought X had, list again, and put ours back."""
        LOGGER.warning("x rules: X says the app has no rules; listing them again")
        self.rules = {}
        self.foreign = ()
        self.duplicates = set()
        self._listing_stale = True
        self._version += 1  # a change under way is overtaken, not failed
        self.stats.rules = self.stats.foreign = 0
        self._changed.set()
        self.updated.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List the rules, then keep them in step with `want` until cancelled."""
        task_status.started()
        await self._retrying(self._list)
        self.listed.set()
        while True:
            if self.is_in_step():
                self.in_step.set()
                with trio.move_on_after(self._audit_every):
                    await self._changed.wait_until(lambda: not self.is_in_step())
                if self.is_in_step():
                    if self.watched:
                        await self._audit()
                    continue
            await self._quiet_period()
            await self._retrying(self._apply)

    async def _audit(self) -> None:
        """List the rules again, once: a failure waits for the next audit rather than hold up
        the changes viewers ask for meanwhile."""
        try:
            await self._list()
        except XError as exc:
            self.stats.failures += 1
            LOGGER.warning(
                "x rules: could not list the rules (%s); next look in %.0fs", exc, self._audit_every
            )

    async def _quiet_period(self) -> None:
        """Until the wanted phrases stay put for `debounce` seconds (bounded), so that a burst
        of viewers' changes costs one change of rules."""
        cap = trio.current_time() + self._debounce * DEBOUNCE_MAX_FACTOR
        while True:
            with trio.move_on_at(min(trio.current_time() + self._debounce, cap)) as quiet:
                await self._changed.wait()
            if quiet.cancelled_caught or trio.current_time() >= cap:
                return

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` until it succeeds: a 429 waits for the window's reset, other failures
        back off from 5 s doubling to 320 s."""
        failures = 0
        while True:
            try:
                await step()
                self.last_error = None
                return
            except XError as exc:
                failures += 1
                self.stats.failures += 1
                self.last_error = str(exc)
                delay = doubling(RETRY_FIRST_SECONDS, RETRY_CAP_SECONDS, failures - 1)
                if isinstance(exc, XHTTPError) and exc.status_code == 429:
                    delay = RATE_LIMITED_SECONDS
                    if exc.reset_at is not None:
                        delay = max(exc.reset_at - self._wall(), 1.0)
                LOGGER.warning("x rules: %s; trying again in %.0fs", exc, delay)
                await trio.sleep(delay)

    async def _list(self) -> None:
        try:
            found = reconcile(await self.client.list(), self.prefix)
        except XError:
            self.list_failed = True
            self.updated.set()
            raise
        self.list_failed = False
        self._listing_stale = False
        first = not self.listed.is_set()
        gone = set(self.rules) - set(found.ours)
        news = first or bool(gone) or found.foreign != self.foreign or bool(found.unreadable)
        self.rules = dict(found.ours)
        self.duplicates -= self.carried
        self.foreign = found.foreign
        self.stats.foreign = len(found.foreign)
        self.stats.rules = len(self.rules)
        self.updated.set()
        if gone:
            LOGGER.warning(
                "x rules: %d of ours are gone from X (deleted by another tool?); putting back "
                "what is wanted",
                len(gone),
            )
        if not news:
            return
        if found.foreign:
            LOGGER.warning(
                "x rules: the app has %d rules pats-trio did not make (tag not %r*); left alone, "
                "and their posts are read (and billed) too: %s",
                len(found.foreign),
                self.prefix,
                ", ".join(repr(rule.value[:60]) for rule in found.foreign[:5]),
            )
        LOGGER.info(
            "x rules: %d of ours carry %d phrases; %d to delete as unreadable",
            len(self.rules),
            len(self.carried),
            len(found.unreadable),
        )
        if found.unreadable:
            await self._post(lambda: self.client.delete(r.id for r in found.unreadable))

    def _plan(self) -> Plan:
        target = set(self._target())
        for phrase in list(target):
            try:
                pack([phrase], self._limit)
            except RuleTooLongError as exc:
                self._reject({phrase: str(exc)})
                target.discard(phrase)
        return plan(self.rules, target, limit=self._limit)

    async def _apply(self) -> None:
        version = self._version
        if self._listing_stale:
            await self._list()
        change = self._plan()
        if change.adds:
            await self._check(change)
            change = self._plan()
        if change.adds:
            answer = await self._post(
                lambda: self.client.add([(value, self.prefix) for value, _ in change.adds])
            )
            carried = dict(change.adds)
            for rule in answer.created:
                phrases = carried.get(rule.value)
                if phrases is not None:
                    self.rules[rule.id] = (rule, phrases)
            self._refused(answer.rejected, carried)
        if change.deletes:
            await self._post(lambda: self.client.delete(change.deletes))
            for rule_id in change.deletes:
                self.rules.pop(rule_id, None)
        self.stats.applied += 1
        self.stats.rules = len(self.rules)
        self.updated.set()
        if version == self._version and not self.is_in_step():
            # X answered without doing all it was asked, and without saying why: back off
            # rather than ask again at once.
            raise XError("X did not apply the whole change")
        LOGGER.info(
            "x rules: %d added, %d deleted; %d rules carry %d phrases",
            len(change.adds),
            len(change.deletes),
            len(self.rules),
            len(self.carried),
        )

    async def _check(self, change: Plan) -> None:
        """Dry-run the new rules. A refused rule of one phrase refuses that phrase; one of
        several is tried again phrase by phrase, so that only the phrases X refuses are."""
        carried = dict(change.adds)
        answer = await self._post(
            lambda: self.client.add([(v, self.prefix) for v in carried], dry_run=True)
        )
        suspects = self._refused(answer.rejected, carried)
        if not suspects:
            return
        alone = dict(rule for phrase in suspects for rule in pack([phrase], self._limit))
        answer = await self._post(
            lambda: self.client.add([(v, self.prefix) for v in alone], dry_run=True)
        )
        self._refused(answer.rejected, alone)

    def _refused(
        self, rejections: Iterable[RuleRejection], carried: dict[str, tuple[str, ...]]
    ) -> list[str]:
        """Take in what X refused, by kind: a duplicate of a rule the app already has is
        covered by it; a rule past the app's cap of rules refuses its phrases (more, smaller
        rules would not fit either); a refused rule of one phrase refuses the phrase. Returns
        the phrases of other refused rules of several phrases, not known to be at fault yet."""
        suspects: list[str] = []
        refused: dict[str, str] = {}
        for rejection in rejections:
            phrases = carried.get(rejection.value, ())
            kind = rejection.kind()
            if kind == DUPLICATE_RULES:
                # Another rule has this value: foreign, or ours made by an owner we took over
                # from after we listed. The next change lists again to tell which.
                self.duplicates.update(phrases)
                self._listing_stale = True
            elif kind == RULE_CAP or len(phrases) == 1:
                for phrase in phrases:
                    refused[phrase] = rejection.detail or rejection.title
            else:
                suspects.extend(phrases)
        self._reject(refused)
        return suspects

    def _reject(self, refused: dict[str, str]) -> None:
        """Tell the viewers of each refused phrase, and only them."""
        for phrase, why in refused.items():
            if phrase in self.rejected:
                continue
            self.rejected[phrase] = why
            self.stats.rejected += 1
            LOGGER.warning("x rules: X refused the phrase %r: %s", phrase, why)
            message = (
                f"X refused the keywords {phrase!r} ({why or 'no reason given'}), so posts "
                "matching them cannot be shown. Try other words."
            )
            self._publish(
                "filter",
                NoticeEvent(frames.error("x_rule_rejected", message), phrases=frozenset({phrase})),
            )
        self.stats.rejected_phrases = dict(self.rejected)

    async def _post(self, request: Callable[[], Awaitable[T]]) -> T:
        """One rule-changing request, within the budget; viewers hear when it has to wait."""
        wait = self._budget.delay(trio.current_time())
        if wait > 0:
            self.stats.waiting = True
            LOGGER.warning(
                "x rules: the change waits %.0fs for X's limit of %d rule changes per %d minutes",
                wait,
                self._budget.max_per_window,
                self._budget.window // 60,
            )
            self._publish(
                "filter",
                NoticeEvent(
                    frames.error(
                        "x_rules_waiting",
                        f"New keywords take effect in about {wait:.0f} s: X allows "
                        f"{self._budget.max_per_window} rule changes every "
                        f"{self._budget.window / 60:.0f} minutes.",
                    )
                ),
            )
            await trio.sleep(wait)
            self.stats.waiting = False
        self._budget.record(trio.current_time())
        return await request()
