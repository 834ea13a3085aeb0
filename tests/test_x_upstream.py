"""The X upstream against the v2 emulator over loopback, on Trio's virtual clock: rules kept in
step in place, every reconnect class, the keep-alive stall, 429 with its reset, the cost cap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from pats_trio.credentials import BearerToken
from pats_trio.emulator.xapi import (
    NO_RULES,
    OPERATIONAL_DISCONNECT,
    TOO_MANY_CONNECTIONS,
    XEmulator,
    serve_xapi,
)
from pats_trio.events import Event, NoticeEvent, StatusEvent, StreamKind, TweetEvent
from pats_trio.upstream.backoff import FATAL_RETRY_SECONDS, ConnectionBudget
from pats_trio.upstream.lifecycle import RepeatedEvent
from pats_trio.upstream.x import SAMPLE_UNAVAILABLE, STALL_SECONDS, XUpstream
from pats_trio.upstream.x.client import RulesClient, make_http_client
from pats_trio.upstream.x.cost import DAY_SECONDS
from pats_trio.upstream.x.manager import RULES_AUDIT_SECONDS
from pats_trio.upstream.x.rules import TAG_PREFIX
from tests.support import status

TIMEOUT = 60
TOKEN = "test-bearer-token-0123456789"


@dataclass
class Recorder:
    events: list[tuple[StreamKind, Event]] = field(default_factory=list)
    changed: RepeatedEvent = field(default_factory=RepeatedEvent)

    def __call__(self, kind: StreamKind, event: Event) -> None:
        self.events.append((kind, event))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await self.changed.wait_until(predicate)

    def statuses(self, kind: StreamKind = "filter") -> list[StatusEvent]:
        return [e for k, e in self.events if k == kind and isinstance(e, StatusEvent)]

    def retries(self) -> list[float]:
        return [s.details["retry_in"] for s in self.statuses() if s.state in ("backoff", "error")]

    def tweet_ids(self) -> list[str]:
        return [e.id_str for _, e in self.events if isinstance(e, TweetEvent)]

    def notices(self) -> list[NoticeEvent]:
        return [e for _, e in self.events if isinstance(e, NoticeEvent)]


@dataclass
class Harness:
    emulator: XEmulator
    upstream: XUpstream
    recorder: Recorder
    api_url: str = ""

    def want(self, track: str) -> None:
        self.upstream.demand("filter", active=bool(track), track=track)

    async def in_step(self) -> None:
        while not self.upstream.rules.is_in_step():
            await self.upstream.rules.in_step.wait()

    def rule_values(self) -> set[str]:
        return {rule.value for rule in self.emulator.rules.values()}

    def posts(self) -> list[object]:
        return [r for r in self.emulator.rule_requests if r.method == "POST"]


async def start(
    nursery: trio.Nursery,
    *,
    emulator: XEmulator | None = None,
    base_url: str | None = None,
    **options: object,
) -> Harness:
    emulator = emulator or XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    url = await nursery.start(serve_xapi, emulator)
    recorder = Recorder()
    upstream = XUpstream(
        recorder,
        http=make_http_client(),
        base_url=base_url or url,
        token=BearerToken(TOKEN),
        linger=30.0,
        wall=emulator.wall,
        rng=None,
        **options,  # type: ignore[arg-type]
    )
    await nursery.start(upstream.run)
    return Harness(emulator, upstream, recorder, url)


@pytest.fixture
async def x(nursery: trio.Nursery) -> Harness:
    return await start(nursery)


async def test_viewers_joining_and_leaving_change_the_rules_on_one_connection(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await x.in_step()
        assert x.rule_values() == {"python"}
        x.emulator.inject(status("new python release", 1))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["1"])

        x.want("python,trio rust")  # a viewer joins
        await trio.sleep(2)
        await x.in_step()
        x.emulator.inject(status("rust and trio, together", 2))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["1", "2"])

        x.want("trio rust")  # the python viewer leaves
        await trio.sleep(2)
        await x.in_step()
        assert x.rule_values() == {"(trio rust)"}
        x.emulator.inject(status("python only", 3))
        x.emulator.inject(status("trio rust again", 4))
        await x.recorder.wait_for(lambda: "4" in x.recorder.tweet_ids())
    assert x.recorder.tweet_ids() == ["1", "2", "4"]
    assert len(x.emulator.connections) == 1, "rules change in place: one connection throughout"
    assert x.emulator.connections[0].closed_at is None
    assert all(rule.tag == TAG_PREFIX for rule in x.emulator.rules.values())
    # Each change: a dry run, an add, a delete at most.
    assert len(x.posts()) <= 3 * 3


async def test_a_burst_of_50_keyword_changes_costs_a_handful_of_rule_requests(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        x.want("seed")
        await x.in_step()
        before = len(x.emulator.rule_requests)
        phrases = ["seed"]
        for n in range(50):
            phrases.append(f"word{n}")
            x.want(",".join(phrases))
            await trio.sleep(0.05)
        await trio.sleep(0.1)
        await x.in_step()
    spent = x.emulator.rule_requests[before:]
    assert len(spent) <= 3, [(r.method, r.dry_run) for r in spent]
    assert {p for v in x.rule_values() for p in v.split(" OR ")} == set(phrases)
    assert len(x.emulator.rules) == 2, "the seed's rule stays; 50 new phrases pack into one"
    assert len(x.emulator.connections) == 1


async def test_reconciliation_keeps_our_rules_and_leaves_foreign_ones_alone(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    foreign = emulator.add_rule("from:someone has:images", tag="another tool")
    untagged = emulator.add_rule("cats OR dogs")
    ours_kept = emulator.add_rule("python", tag=TAG_PREFIX)
    ours_stale = emulator.add_rule("(old keyword)", tag=TAG_PREFIX)
    with trio.fail_after(TIMEOUT):
        x = await start(nursery, emulator=emulator)
        x.want("python,trio")
        await x.in_step()
    assert set(emulator.rules) >= {foreign, untagged, ours_kept}
    assert ours_stale not in emulator.rules
    assert x.rule_values() == {"from:someone has:images", "cats OR dogs", "python", "trio"}
    assert x.upstream.rules.stats.foreign == 2
    assert "2 rules pats-trio did not make" in caplog.text


async def test_a_stream_that_drops_reconnects_at_once_then_climbs_the_network_ladder(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await trio.sleep(60)
        x.emulator.drop_streams()
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    first, second = x.emulator.connections
    assert first.closed_at is not None
    assert second.opened_at - first.closed_at < 0.1


async def test_network_errors_back_off_linearly_by_250ms_to_16s(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        with trio.socket.socket() as sock:
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # X's 50 connects a window would pace the climb; the ladder alone is what is tested.
        budget = ConnectionBudget(min_interval=0.0, max_per_window=1000)
        x = await start(nursery, base_url=f"http://127.0.0.1:{port}", connect_budget=budget)
        x.want("python")
        await x.recorder.wait_for(lambda: len(x.recorder.retries()) >= 66)
    assert x.recorder.retries()[:4] == [0.25, 0.5, 0.75, 1.0]
    assert x.recorder.retries()[63:66] == [16.0, 16.0, 16.0]
    assert x.upstream.stats.disconnects["network"] >= 66


async def test_connects_are_paced_to_50_a_15_minute_window(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        with trio.socket.socket() as sock:
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        x = await start(nursery, base_url=f"http://127.0.0.1:{port}")
        x.want("python")
        await x.recorder.wait_for(lambda: x.upstream.stats.disconnects["network"] >= 51)
    assert trio.current_time() >= 900, "the 51st connect waits for the window"
    assert any(s.details.get("reason") == "pacing reconnects" for s in x.recorder.statuses())


async def test_http_errors_back_off_from_5s_doubling_to_320s(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    x.emulator.fail_next(503, count=8, body={"title": "Service Unavailable"})
    with trio.fail_after(TIMEOUT * 100):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    assert x.recorder.retries() == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0]
    assert "HTTP 503 from X: Service Unavailable" in x.recorder.statuses()[1].details["reason"]


async def test_a_429_waits_from_60s_doubling_and_never_before_the_reset(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    reset = int(x.emulator.wall()) + 600
    headers = [(b"x-rate-limit-reset", str(reset).encode()), (b"x-rate-limit-remaining", b"0")]
    x.emulator.fail_next(429, count=1, body={"title": "Too Many Requests"}, headers=headers)
    x.emulator.fail_next(429, count=2, body={"title": "Too Many Requests"})
    with trio.fail_after(TIMEOUT * 100):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    first, second, third = x.recorder.retries()
    assert 598 <= first <= 601, "the reset, not 60 s"
    assert (second, third) == (120.0, 240.0)
    assert x.emulator.connections[-1].opened_at >= x.emulator.connections[0].opened_at + 598


async def test_a_second_connection_is_told_too_many_connections_and_waits_a_minute(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    x.emulator.fail_next(429, body=TOO_MANY_CONNECTIONS)
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    assert x.recorder.retries() == [60.0]
    assert "maximum allowed connection limit" in x.recorder.statuses()[1].details["reason"]


async def test_a_bad_token_is_an_error_retried_slowly(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    x.emulator.token = "another-token"
    with trio.fail_after(TIMEOUT * 100):
        x.want("python")
        await x.recorder.wait_for(lambda: len(x.recorder.retries()) >= 2)
    assert x.recorder.retries()[:2] == [FATAL_RETRY_SECONDS, FATAL_RETRY_SECONDS]
    errors = [s for s in x.recorder.statuses() if s.state == "error"]
    assert "HTTP 401" in errors[0].details["reason"]
    assert TOKEN not in repr(x.recorder.events)


async def test_an_operational_disconnect_is_read_and_reconnected_at_once(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await trio.sleep(60)
        x.emulator.inject_error(OPERATIONAL_DISCONNECT, then_close=True)
        await x.emulator.wait_until(
            lambda e: len(e.connections) == 2 and bool(e.open_connections())
        )
    assert x.upstream.stats.disconnects["disconnect"] == 1
    backoff = [s for s in x.recorder.statuses() if s.state == "backoff"]
    assert backoff == [] or backoff[0].details["retry_in"] == 0
    assert x.upstream.stats.problems == 1


PARTIAL_ERROR = {
    "errors": [
        {
            "resource_id": "456",
            "resource_type": "tweet",
            "title": "Not Found Error",
            "detail": "Could not find tweet with id: [456].",
            "type": "https://api.x.com/2/problems/resource-not-found",
        }
    ]
}
"""X's partial error, as its response-codes page shows one, alone on a stream line."""


async def test_error_objects_that_do_not_end_the_stream_are_counted_never_shown(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """A partial error about a referenced post (and an error object of no known kind) is no
    news for a viewer: counted, logged, read past, and never published."""
    with trio.fail_after(TIMEOUT):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await x.in_step()
        x.emulator.inject_error(PARTIAL_ERROR)
        x.emulator.inject_error(
            {"errors": [{"title": "SomethingNew", "detail": "Rule 7 is misconfigured"}]}
        )
        x.emulator.inject(status("python still flows", 9))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["9"])
    assert x.recorder.notices() == []
    assert (x.upstream.stats.problems, x.upstream.stats.partial_errors) == (2, 1)
    assert len(x.emulator.connections) == 1


# X's 409: a stream without rules


async def test_a_fresh_apps_first_viewer_gets_posts_without_a_refused_connect(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """X answers 409 to a connect while the app has no rules: the stream waits for the first
    rules rather than spend a connect on a 409 and 5 s on its backoff."""
    assert x.emulator.rules == {}
    with trio.fail_after(TIMEOUT):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        connected_at = trio.current_time()
        x.emulator.inject(status("python at last", 1))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["1"])
    assert [c.status for c in x.emulator.connections] == [200]
    assert connected_at < 2.0, "the debounce (1 s) and a dry run, no 409 backoff"
    assert x.recorder.retries() == []


async def test_rules_deleted_by_another_tool_are_put_back_after_xs_409(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await x.in_step()
        await trio.sleep(60)  # a stable connection: its drop reconnects at once
        async with make_http_client() as http:  # another tool using the same app
            other = RulesClient(http, x.api_url, BearerToken(TOKEN))
            await other.delete([rule.id for rule in await other.list()])
        assert x.emulator.rules == {}
        dropped_at = trio.current_time()
        x.emulator.drop_streams()
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        back_after = trio.current_time() - dropped_at
        x.emulator.inject(status("python is back", 2))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["2"])
    assert [c.status for c in x.emulator.connections] == [200, 409, 200]
    assert x.rule_values() == {"python"}
    assert back_after < 3.0, "no HTTP-error backoff: the rules' debounce and an add"
    assert x.recorder.retries() == []
    assert x.upstream.stats.disconnects["no rules"] == 1


async def test_rules_deleted_under_an_open_stream_are_put_back_by_the_audit(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """X sends nothing, and says nothing, to a stream whose rules are gone: while viewers watch,
    the manager lists the rules every 5 minutes and puts ours back, on the same connection."""
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await x.in_step()
        async with make_http_client() as http:  # another tool using the same app
            other = RulesClient(http, x.api_url, BearerToken(TOKEN))
            await other.delete([rule.id for rule in await other.list()])
        deleted_at = trio.current_time()
        await x.emulator.wait_until(lambda e: x.rule_values() == {"python"})
        back_after = trio.current_time() - deleted_at
        x.emulator.inject(status("python is back", 3))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["3"])
    assert back_after <= RULES_AUDIT_SECONDS + 5
    assert [c.status for c in x.emulator.connections] == [200]


async def test_409s_in_a_row_wait_5s_each_never_longer(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """X listing our rules yet answering 409 is no fault waiting longer mends: the first 409
    retries once the rules are listed again, each next one after 5 s, never doubled."""
    x.emulator.fail_next(409, count=4, body=NO_RULES)
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    assert [c.status for c in x.emulator.connections] == [409, 409, 409, 409, 200]
    assert x.recorder.retries() == [5.0, 5.0, 5.0]
    assert not any(s.state == "error" for s in x.recorder.statuses())


async def test_viewers_hear_when_the_stream_waits_long_for_its_rules(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN, rule_changes_per_window=0)
    with trio.fail_after(TIMEOUT * 10):
        x = await start(nursery, emulator=emulator)
        x.want("python")
        await x.recorder.wait_for(
            lambda: any("x_rules_pending" in n.frame for n in x.recorder.notices())
        )
        told_at = trio.current_time()
    notice = next(n.frame for n in x.recorder.notices() if "x_rules_pending" in n.frame)
    assert "Waiting for X to take the rules for these keywords" in notice
    assert "HTTP 429" in notice
    assert 10.0 <= told_at < 12.0
    assert emulator.connections == [], "no connect is spent on a 409"


async def test_a_stream_silent_past_the_keepalive_is_taken_for_dead(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await trio.sleep(100)  # keep-alives every 20 s keep it alive
        assert len(x.emulator.connections) == 1
        stalled_at = trio.current_time()
        x.emulator.stall_streams()
        await x.emulator.wait_until(lambda e: len(e.connections) == 2)
    # Silence counts from the last keep-alive, at most 20 s before the stall began.
    silent_for = x.emulator.connections[1].opened_at - stalled_at
    assert STALL_SECONDS - 20 <= silent_for < STALL_SECONDS + 1
    assert x.upstream.stats.disconnects["stall"] == 1
    assert x.upstream.stats.keepalives >= 4


async def test_the_daily_cap_stops_reading_and_resumes_after_midnight_utc(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    # An hour before midnight UTC, on the emulator's clock, which the upstream reads too.
    now = emulator.wall()
    emulator._wall_offset = (now // DAY_SECONDS + 1) * DAY_SECONDS - 3600 - trio.current_time()
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator, max_posts_per_day=3, price_per_post=0.005)
        x.want("python")
        await x.in_step()
        await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        for n in range(1, 5):
            emulator.inject(status(f"python {n}", n))
        await emulator.wait_until(lambda e: not e.open_connections())
        capped_at = trio.current_time()
        assert x.recorder.tweet_ids() == ["1", "2", "3"]
        assert x.upstream.meter.today == 3
        assert x.upstream.meter.spend_today(emulator.wall()) == pytest.approx(0.015)
        told = [n for n in x.recorder.notices() if "x_daily_cap" in n.frame]
        assert len(told) == 1
        assert "resume after midnight UTC" in told[0].frame
        backoff = x.recorder.statuses()[-1]
        assert backoff.state == "backoff"
        assert "daily limit of 3 posts" in backoff.details["reason"]
        assert 3599 <= backoff.details["retry_in"] <= 3600
        await trio.sleep(1800)
        assert len(emulator.connections) == 1, "nothing is read before midnight"
        await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        assert trio.current_time() - capped_at == pytest.approx(3600, abs=2)
        emulator.inject(status("python tomorrow", 10))
        await x.recorder.wait_for(lambda: "10" in x.recorder.tweet_ids())
    assert x.upstream.meter.today == 1


async def test_the_sample_view_says_x_has_no_sampled_stream(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    x.upstream.demand("sample", active=True)
    await trio.sleep(5)
    sample = x.recorder.statuses("sample")
    assert [s.state for s in sample] == ["error"]
    assert sample[0].details["reason"] == SAMPLE_UNAVAILABLE
    assert x.emulator.connections == []


def test_the_token_never_shows_in_a_repr() -> None:
    assert TOKEN not in repr(BearerToken(TOKEN))
    assert BearerToken(TOKEN).redact(f"bad {TOKEN}!") == "bad ***!"


async def test_a_change_past_the_rule_budget_waits_and_says_so(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    budget = ConnectionBudget(min_interval=0.0, max_per_window=3, window=900.0)
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, rule_budget=budget)
        x.want("alpha")
        await x.in_step()  # a dry run and an add: two of three
        x.want("alpha,beta")
        await trio.sleep(5)
        waiting = [n for n in x.recorder.notices() if "x_rules_waiting" in n.frame]
        assert len(waiting) == 1
        assert "X allows 3 rule changes every 15 minutes" in waiting[0].frame
        assert x.upstream.rules.stats.waiting
        await x.in_step()
        assert trio.current_time() >= 890
    assert x.rule_values() == {"alpha", "beta"}


async def test_a_429_from_the_rules_endpoint_waits_for_its_reset(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN, rule_changes_per_window=2)
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator)
        x.want("alpha")
        await x.in_step()
        x.want("alpha,beta")
        await emulator.wait_until(lambda e: e.rule_requests[-1].status == 429)
        refused_at = trio.current_time()
        await x.in_step()
    assert 880 <= trio.current_time() - refused_at <= 901
    assert [r.status for r in emulator.rule_requests].count(429) == 1
    assert x.rule_values() == {"alpha", "beta"}


async def test_a_refused_phrase_is_asked_for_again_only_once_it_was_dropped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        x = await start(nursery)
        x.emulator.reject_terms = {"nope"}
        x.want("alpha,nope thing")
        await x.in_step()
        refused = [n for n in x.recorder.notices() if n.phrases is not None]
        assert [n.phrases for n in refused] == [frozenset({"nope thing"})]
        assert x.rule_values() == {"alpha"}
        requests = len(x.emulator.rule_requests)
        x.want("alpha,nope thing,gamma")
        await x.in_step()
        assert x.rule_values() == {"alpha", "gamma"}
        assert len([n for n in x.recorder.notices() if n.phrases is not None]) == 1
        x.emulator.reject_terms = set()
        x.want("alpha,gamma")
        await x.in_step()
        x.want("alpha,gamma,nope thing")
        await x.in_step()
    assert x.upstream.rules.carried == {"alpha", "gamma", "nope thing"}
    assert len(x.emulator.rule_requests) > requests


async def test_the_last_viewer_leaving_keeps_the_rules_for_the_next_one(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await x.in_step()
        spent = len(x.emulator.rule_requests)
        x.want("")
        await x.emulator.wait_until(lambda e: not e.open_connections())
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        await trio.sleep(5)
    assert len(x.emulator.rule_requests) == spent
    assert x.rule_values() == {"python"}


async def test_rules_are_listed_page_by_page(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    for n in range(1500):
        emulator.add_rule(f"theirs{n}", tag="another tool")
    with trio.fail_after(TIMEOUT):
        x = await start(nursery, emulator=emulator)
        await x.upstream.rules.listed.wait()
    assert x.upstream.rules.stats.foreign == 1500
    assert [r.method for r in emulator.rule_requests] == ["GET", "GET"]


async def test_a_duplicate_of_a_rule_of_ours_it_did_not_know_is_adopted_at_the_next_change(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        await x.upstream.rules.listed.wait()
        # An owner we took over from added this after we listed.
        late = x.emulator.add_rule("python", tag=TAG_PREFIX)
        x.want("python")
        await x.in_step()
        assert x.upstream.rules.duplicates == {"python"}
        x.want("python,trio")
        await x.in_step()
        assert late in x.upstream.rules.rules
        x.want("trio")
        await x.in_step()
    assert x.rule_values() == {"trio"}


async def test_an_error_body_that_echoes_the_token_is_redacted(
    x: Harness, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    x.emulator.fail_next(500, body={"detail": f"token {TOKEN} is odd"})
    with trio.fail_after(TIMEOUT):
        x.want("python")
        await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
    reasons = [s.details.get("reason", "") for s in x.recorder.statuses()]
    assert "HTTP 500 from X: token *** is odd" in reasons
    assert TOKEN not in repr(x.recorder.events)
    assert TOKEN not in caplog.text


async def test_a_change_x_silently_does_not_apply_is_retried_with_backoff(
    x: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    x.emulator.drop_adds = True
    with trio.fail_after(TIMEOUT * 10):
        x.want("python")
        await trio.sleep(30)
        posts = [r for r in x.emulator.rule_requests if r.method == "POST" and not r.dry_run]
        # At 1 s, then 5 and 10 s later (the next 20 s later): not one a second.
        assert len(posts) == 3
        x.emulator.drop_adds = False
        await x.in_step()
    assert x.rule_values() == {"python"}


async def test_the_rules_client_reads_each_refusal_s_problem_type(nursery: trio.Nursery) -> None:
    """X's OpenAPI spec tells problems apart by ``type``: a duplicate is
    ``.../problems/duplicate-rules``, an invalid rule ``.../problems/invalid-rules``."""
    emulator = XEmulator(rate=0, filter_rate=0, seed=1, token=TOKEN)
    url = await nursery.start(serve_xapi, emulator)
    emulator.add_rule("python", tag="theirs")
    with trio.fail_after(10):
        async with make_http_client() as http:
            client = RulesClient(http, url, BearerToken(TOKEN))
            answer = await client.add([("python", TAG_PREFIX), ("foo:bar", TAG_PREFIX)])
    kinds = {rejection.value: rejection.kind() for rejection in answer.rejected}
    assert kinds == {"python": "duplicate-rules", "foo:bar": "invalid-rules"}
