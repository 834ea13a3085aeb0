"""The upstream lifecycle against the real emulator over loopback, on Trio's virtual clock."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from pats_trio.credentials import Credentials
from pats_trio.emulator import ConnectionRecord, Emulator, serve_emulator
from pats_trio.events import Event, StatusEvent, StreamKind, TweetEvent
from pats_trio.upstream.backoff import FATAL_RETRY_SECONDS, ConnectionBudget
from pats_trio.upstream.lifecycle import RepeatedEvent
from pats_trio.upstream.twitter.client import make_http_client, open_stream
from pats_trio.upstream.twitter.runner import StreamRunner
from tests.support import status

TIMEOUT = 30  # seconds of virtual time are free; this bounds a hang


@dataclass
class Recorder:
    """The runner's publish callback: keeps every event and wakes whoever waits on them."""

    events: list[Event] = field(default_factory=list)
    _changed: RepeatedEvent = field(default_factory=RepeatedEvent)

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> None:
        await self._changed.wait_until(lambda: predicate(self.events))


@dataclass
class Gate:
    """Holds every connection attempt for `track` until `opened`: before its request goes out,
    or, with `after_answer`, once the answer is in but before the runner gets to read it."""

    track: str
    after_answer: bool = False
    waiting: trio.Event = field(default_factory=trio.Event)
    opened: trio.Event = field(default_factory=trio.Event)

    async def passage(self, track: str) -> None:
        if track == self.track:
            self.waiting.set()
            await self.opened.wait()


@dataclass
class Harness:
    emulator: Emulator
    runner: StreamRunner
    recorder: Recorder

    @property
    def events(self) -> list[Event]:
        return self.recorder.events

    def statuses(self) -> list[StatusEvent]:
        return [e for e in self.events if isinstance(e, StatusEvent)]

    def backoffs(self) -> list[float]:
        return [s.details["retry_in"] for s in self.statuses() if s.state == "backoff"]

    def tweet_ids(self) -> list[str]:
        return [e.id_str for e in self.events if isinstance(e, TweetEvent)]


async def start(
    nursery: trio.Nursery,
    kind: StreamKind,
    *,
    base_url: str | None = None,
    linger: float = 30.0,
    debounce: float = 1.0,
    budget: ConnectionBudget | None = None,
    credentials: Credentials | None = None,
    emulator_credentials: Credentials | None = None,
    gate: Gate | None = None,
) -> Harness:
    emulator = Emulator(rate=0, filter_rate=0, seed=3, credentials=emulator_credentials)
    emulator_url = await nursery.start(serve_emulator, emulator)
    http = make_http_client()
    url = base_url or emulator_url
    recorder = Recorder()

    @asynccontextmanager
    async def connect(track: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if gate is not None and not gate.after_answer:
            await gate.passage(track)
        async with open_stream(http, url, kind, track, credentials=credentials) as chunks:
            if gate is not None and gate.after_answer:
                await gate.passage(track)
            yield chunks

    runner = StreamRunner(kind, connect, recorder, linger=linger, debounce=debounce, budget=budget)
    await nursery.start(runner.run)
    return Harness(emulator, runner, recorder)


async def first_connection(harness: Harness, track: str = "") -> ConnectionRecord:
    """Ask for `track` and return the connection that serves it once it is open."""
    harness.runner.demand(active=True, track=track)
    await harness.emulator.wait_until(lambda emu: len(emu.open_connections()) == 1)
    return harness.emulator.connections[0]


@pytest.fixture
async def sample(nursery: trio.Nursery) -> Harness:
    return await start(nursery, "sample")


async def test_connects_only_when_someone_watches(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        await trio.sleep(600)
        assert sample.emulator.connections == []
        sample.runner.demand(active=True)
        await sample.emulator.wait_until(lambda emu: len(emu.open_connections("sample")) == 1)
        sample.emulator.inject(status("hello", 1))
        await sample.emulator.wait_until(lambda _: sample.tweet_ids() == ["1"])
    assert [s.state for s in sample.statuses()] == ["connecting", "connected"]


async def test_lingers_then_disconnects(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        await first_connection(sample)
        connection = sample.emulator.connections[0]
        left_at = trio.current_time()
        sample.runner.demand(active=False)
        await trio.sleep(29)
        assert connection.closed_at is None, "still lingering"
        # A viewer coming back within the linger reuses the connection.
        sample.runner.demand(active=True)
        await trio.sleep(60)
        assert connection.closed_at is None
        left_at = trio.current_time()
        sample.runner.demand(active=False)
        await sample.emulator.wait_until(lambda _: connection.closed_at is not None)
    closed_at: float | None = connection.closed_at
    assert closed_at is not None
    assert 30 <= closed_at - left_at < 31
    assert len(sample.emulator.connections) == 1
    assert sample.runner.state == "idle"


async def test_reconnects_at_once_after_a_drop(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        await first_connection(sample)
        await trio.sleep(60)
        dropped_at = trio.current_time()
        sample.emulator.drop_streams()
        await sample.emulator.wait_until(lambda emu: len(emu.connections) == 2)
        assert trio.current_time() - dropped_at < 0.1
        await sample.emulator.wait_until(lambda emu: len(emu.open_connections()) == 1)


async def test_http_errors_back_off_exponentially_then_reset(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        await first_connection(sample)
        await trio.sleep(60)
        sample.emulator.fail_next(503, count=3)
        sample.emulator.drop_streams()
        await sample.recorder.wait_for(
            lambda _: sample.runner.state == "connected" and len(sample.statuses()) >= 4
        )
    waits = [s.details["retry_in"] for s in sample.statuses() if s.state == "backoff"]
    assert waits == [5, 10, 20]
    assert sample.statuses()[-1].state == "connected"


async def test_network_errors_back_off_linearly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    harness = await start(nursery, "sample", base_url=f"http://127.0.0.1:{closed_port}/1.1")
    with trio.fail_after(TIMEOUT * 10):
        harness.runner.demand(active=True)
        await harness.recorder.wait_for(
            lambda _: sum(s.state == "backoff" for s in harness.statuses()) >= 6
        )
    waits = [s.details["retry_in"] for s in harness.statuses() if s.state == "backoff"]
    assert waits[:6] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


async def test_a_stream_that_keeps_closing_at_once_is_not_hammered(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        sample.runner.demand(active=True)
        for drops in range(1, 5):
            await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
            sample.emulator.drop_streams()
            await sample.recorder.wait_for(
                lambda _, drops=drops: len(sample.backoffs()) == drops  # type: ignore[misc]
            )
    assert sample.backoffs() == [0.25, 0.5, 0.75, 1.0]


async def test_a_stalled_stream_is_replaced_after_90_seconds(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        await first_connection(sample)
        stalled_at = trio.current_time()
        sample.emulator.stall_streams()
        await sample.emulator.wait_until(lambda emu: len(emu.connections) == 2)
    assert 90 <= trio.current_time() - stalled_at < 91


async def test_a_burst_of_filter_changes_costs_one_restart(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    harness = await start(nursery, "filter")
    with trio.fail_after(TIMEOUT * 10):
        harness.runner.demand(active=True, track="python")
        await harness.emulator.wait_until(lambda emu: len(emu.open_connections()) == 1)
        for i in range(50):
            harness.runner.demand(active=True, track=f"python,w{i}")
            await trio.sleep(0.02)
        await trio.sleep(10)
    tracks = [c.track for c in harness.emulator.connections]
    assert tracks == ["python", "python,w49"]
    assert len(harness.emulator.open_connections()) == 1


async def test_restart_keeps_the_old_connection_until_the_new_one_answers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    harness = await start(nursery, "filter", debounce=0.5)
    emulator = harness.emulator
    with trio.fail_after(TIMEOUT * 100):
        old = await first_connection(harness, "python")
        emulator.fail_next(503)
        harness.runner.demand(active=True, track="python,rust")
        # The new connection is refused once; viewers keep the old one meanwhile.
        await trio.sleep(3)
        assert old.closed_at is None
        emulator.inject(status("python during the retry", 5))
        await emulator.wait_until(lambda _: harness.tweet_ids() == ["5"])
        # The upstream closes the old connection as the new one opens, before the runner switches.
        await harness.recorder.wait_for(lambda _: harness.runner.serving_track == "python,rust")
    new = emulator.connections[-1]
    assert new.track == "python,rust"
    assert new.opened_at <= old.closed_at  # type: ignore[operator]


async def test_rate_limiting_backs_off_from_a_minute(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        sample.emulator.fail_next(420, count=2)
        sample.runner.demand(active=True)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
    assert sample.backoffs() == [60, 120]


async def test_errors_that_need_a_person_are_reported_and_retried_slowly(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        sample.emulator.fail_next(401, count=2, body=b'{"errors":[{"message":"Unauthorized"}]}')
        started = trio.current_time()
        sample.runner.demand(active=True)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
    errors = [s for s in sample.statuses() if s.state == "error"]
    assert len(errors) == 2
    assert "401" in errors[0].details["reason"]
    assert errors[0].details["retry_in"] == 300
    assert trio.current_time() - started >= 600, "no hot loop"
    assert len(sample.emulator.connections) == 3


async def test_a_disconnect_that_needs_a_person_is_reported(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        sample.runner.demand(active=True)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
        revoked = (
            b'{"disconnect":{"code":6,"stream_name":"me-sample","reason":"token revoked"}}\r\n'
        )
        sample.emulator.inject_raw(revoked)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "error")
        failed_at = trio.current_time()
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
    error = next(s for s in sample.statuses() if s.state == "error")
    assert "disconnect" in error.details["reason"]
    assert trio.current_time() - failed_at >= 300


async def test_stray_upstream_lines_are_counted_and_the_stream_lives_on(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        sample.runner.demand(active=True)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
        sample.emulator.inject_raw(b"{not json\r\n")
        sample.emulator.inject_raw(b'{"brand_new_message":{}}\r\n')
        warning = b'{"warning":{"code":"FALLING_BEHIND","message":"behind","percent_full":60}}'
        sample.emulator.inject_raw(warning + b"\r\n")
        sample.emulator.inject(status("still alive", 77))
        await sample.recorder.wait_for(lambda _: sample.tweet_ids() == ["77"])
        sample.emulator.drop_streams()
        await sample.recorder.wait_for(lambda _: sample.runner.stats.malformed == 1)
    assert (sample.runner.stats.unknown, sample.runner.stats.stall_warnings) == (1, 1)


async def test_reconnects_keep_a_minimum_interval_and_a_five_minute_cap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    budget = ConnectionBudget(min_interval=10, max_per_window=3)
    harness = await start(nursery, "filter", debounce=0.5, budget=budget)
    with trio.fail_after(TIMEOUT * 100):
        for n in range(4):
            harness.runner.demand(active=True, track=f"python,w{n}")
            await harness.emulator.wait_until(
                lambda emu, n=n: any(  # type: ignore[misc]
                    c.track == f"python,w{n}" for c in emu.open_connections()
                )
            )
    opened = [c.opened_at for c in harness.emulator.connections]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert all(gap >= 10 for gap in gaps)
    assert opened[3] - opened[0] >= 300, "a fourth attempt waits for the five-minute window"


async def test_a_union_change_during_a_backoff_connects_with_the_newest_union(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    harness = await start(nursery, "filter", debounce=0.5)
    emulator = harness.emulator
    with trio.fail_after(TIMEOUT * 100):
        old = await first_connection(harness, "python")
        emulator.fail_next(503, count=2)
        harness.runner.demand(active=True, track="python,rust")
        await emulator.wait_until(lambda emu: emu.connections[-1].status == 503)
        harness.runner.demand(active=True, track="go,python,rust")
        await emulator.wait_until(
            lambda emu: any(c.track == "go,python,rust" for c in emu.open_connections())
        )
        await harness.recorder.wait_for(lambda _: harness.runner.serving_track == "go,python,rust")
    assert old.closed_at is not None
    assert [c.track for c in emulator.connections if c.status == 200] == [
        "python",
        "go,python,rust",
    ]


ACCOUNT = Credentials("consumer-key", "consumer-secret", "access-token", "access-token-secret")


@pytest.mark.parametrize(("kind", "track"), [("sample", ""), ("filter", "python,trio rust")])
async def test_both_endpoints_accept_our_oauth_signature(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    kind: StreamKind,
    track: str,
) -> None:
    harness = await start(nursery, kind, credentials=ACCOUNT, emulator_credentials=ACCOUNT)
    with trio.fail_after(TIMEOUT):
        harness.runner.demand(active=True, track=track)
        await harness.recorder.wait_for(lambda _: harness.runner.state == "connected")
    record = harness.emulator.connections[0]
    assert (record.status, record.method) == (200, "GET" if kind == "sample" else "POST")
    assert record.authorization is not None
    assert record.authorization.startswith("OAuth ")


async def test_a_wrong_secret_is_refused_and_reported(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    wrong = Credentials("consumer-key", "not-the-secret", "access-token", "access-token-secret")
    harness = await start(nursery, "filter", credentials=wrong, emulator_credentials=ACCOUNT)
    with trio.fail_after(TIMEOUT):
        harness.runner.demand(active=True, track="python")
        await harness.recorder.wait_for(lambda _: harness.runner.state == "error")
    error = harness.statuses()[-1]
    assert "401" in error.details["reason"]
    assert "not-the-secret" not in error.details["reason"]
    assert harness.emulator.connections[0].status == 401


async def test_withheld_tweets_are_not_shown(
    sample: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        sample.runner.demand(active=True)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
        sample.emulator.inject(status("withheld here", 31, withheld_in_countries=["DE"]))
        withheld_user = status("from a withheld user", 32)
        withheld_user["user"]["withheld_in_countries"] = ["FR"]
        sample.emulator.inject(withheld_user)
        notice = b'{"user_withheld":{"id":7,"withheld_in_countries":["DE"]}}\r\n'
        sample.emulator.inject_raw(notice)
        sample.emulator.inject(status("fine", 33))
        await sample.recorder.wait_for(lambda _: bool(sample.tweet_ids()))
    assert sample.tweet_ids() == ["33"]
    assert sample.runner.stats.withheld == 3


def replaced(name: str, code: int = 2) -> bytes:
    """What Twitter sends the older of two connections with the same credentials."""
    return b'{"disconnect":{"code":%d,"stream_name":"%s","reason":"replaced"}}\r\n' % (
        code,
        name.encode(),
    )


async def replace_and_hand_over(harness: Harness, gate: Gate, code: int = 2) -> ConnectionRecord:
    """Serve "python", start a restart on `gate.track` and, while the new connection has not
    answered yet, have the old one closed with `code` as Twitter does. Returns the old record."""
    emulator = harness.emulator
    old = await first_connection(harness, "python")
    await harness.recorder.wait_for(lambda _: harness.runner.state == "connected")
    harness.runner.demand(active=True, track=gate.track)
    await gate.waiting.wait()
    emulator.inject(status("python before the switch", 41))
    emulator.inject_raw(replaced("me-filter", code), kind="filter")
    await emulator.wait_until(lambda _: old.closed_at is not None)
    await trio.sleep(1)
    return old


@pytest.mark.parametrize("code", [2, 7], ids=["duplicate stream", "admin logout"])
async def test_a_duplicate_stream_on_the_connection_being_replaced_is_a_quiet_handover(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, code: int
) -> None:
    gate = Gate("python,rust")
    harness = await start(nursery, "filter", debounce=0.5, gate=gate)
    emulator = harness.emulator
    with trio.fail_after(TIMEOUT * 100):
        old = await replace_and_hand_over(harness, gate, code)
        assert harness.runner.stats.disconnects == {"handover": 1}
        assert [s.state for s in harness.statuses()] == ["connecting", "connected"]
        told = len(harness.statuses())
        await trio.sleep(FATAL_RETRY_SECONDS + 100)
        assert len(emulator.connections) == 1, "the old slot does not reconnect"
        gate.opened.set()
        await emulator.wait_until(lambda emu: len(emu.open_connections()) == 1)
        await harness.recorder.wait_for(lambda _: harness.runner.serving_track == "python,rust")
        emulator.inject(status("python after the switch", 42))
        await harness.recorder.wait_for(lambda _: "42" in harness.tweet_ids())
        await trio.sleep(600)
    assert [s.state for s in harness.statuses()[told:]] == ["connected"]
    assert not [s for s in harness.statuses() if s.state in ("error", "backoff")]
    assert harness.runner.state == "connected"
    assert harness.runner.stats.disconnects == {"handover": 1}
    assert [c.track for c in emulator.connections] == ["python", "python,rust"]
    assert old.closed_at is not None
    assert harness.tweet_ids() == ["41", "42"]


async def test_after_a_handover_the_replacement_failing_is_shown(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    gate = Gate("python,rust")
    harness = await start(nursery, "filter", debounce=0.5, gate=gate)
    emulator = harness.emulator
    with trio.fail_after(TIMEOUT * 10):
        await replace_and_hand_over(harness, gate)
        told = len(harness.statuses())
        assert harness.runner.state == "connected", "nothing alarming while the switch is under way"
        emulator.fail_next(503)
        gate.opened.set()
        await harness.recorder.wait_for(lambda _: harness.runner.state == "backoff")
        assert harness.runner.retry_in == 5
        await harness.recorder.wait_for(lambda _: harness.runner.state == "connected")
    after = harness.statuses()[told:]
    assert [s.state for s in after] == ["backoff", "connecting", "connected"]
    assert "503" in after[0].details["reason"]
    assert harness.runner.stats.disconnects == {"handover": 1, "http": 1}


async def test_a_duplicate_stream_on_the_only_connection_says_who_took_it(
    sample: Harness, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        await first_connection(sample)
        await sample.recorder.wait_for(lambda _: sample.runner.state == "connected")
        sample.emulator.inject_raw(replaced("me-sample"))
        await sample.recorder.wait_for(lambda _: sample.runner.state == "error")
    error = sample.statuses()[-1]
    assert "another client connected with these credentials" in error.details["reason"]
    assert "one stream per account" in error.details["reason"]
    assert error.details["retry_in"] == 300
    assert sample.runner.stats.disconnects == {"fatal": 1}
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "another client connected with these credentials" in logged.getMessage()


async def test_the_emulator_closing_the_old_connection_before_we_read_the_new_answer_is_a_handover(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    gate = Gate("python,rust", after_answer=True)
    harness = await start(nursery, "filter", debounce=0.5, gate=gate)
    emulator = harness.emulator
    with trio.fail_after(TIMEOUT * 10):
        old = await first_connection(harness, "python")
        await harness.recorder.wait_for(lambda _: harness.runner.state == "connected")
        emulator.inject(status("python before the switch", 51))
        harness.runner.demand(active=True, track="python,rust")
        await gate.waiting.wait()
        await emulator.wait_until(lambda _: old.closed_at is not None)
        await trio.sleep(1)
        assert harness.runner.stats.disconnects == {"handover": 1}
        assert [s.state for s in harness.statuses()] == ["connecting", "connected"]
        gate.opened.set()
        await harness.recorder.wait_for(lambda _: harness.runner.serving_track == "python,rust")
        emulator.inject(status("python after the switch", 52))
        await harness.recorder.wait_for(lambda _: "52" in harness.tweet_ids())
    new = emulator.connections[-1]
    assert old.replaced_by == new.id
    assert [s.state for s in harness.statuses()] == ["connecting", "connected", "connected"]
    assert harness.tweet_ids() == ["51", "52"]
