"""The hub alone, without sockets: routing, demand, history on attach, eviction, closing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pats_trio import events, frames
from pats_trio.admission import AdmissionError
from pats_trio.broker import Sink
from pats_trio.events import StreamKind, TweetEvent
from pats_trio.hub import Hub, Outgoing, Subscription
from pats_trio.matching import TrackError, parse_track, tweet_terms
from pats_trio.shares import ShareLimits
from pats_trio.upstream.source import Upstream

TIMEOUT = 10


class DemandLog:
    """The hub's side of the broker contract, recorded: what it asks the upstream for."""

    upstream: Upstream | None = None
    owner = True

    def __init__(self, elsewhere: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[StreamKind, bool, str]] = []
        self.elsewhere = elsewhere

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        self.calls.append((kind, active, track))

    def last(self, kind: StreamKind) -> tuple[bool, str]:
        found = [(active, track) for k, active, track in self.calls if k == kind]
        return found[-1] if found else (False, "")

    async def run(
        self, sink: Sink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()

    def health(self) -> dict[str, Any]:
        return {"mode": "test", "ready": True}

    def phrases_elsewhere(self) -> frozenset[str]:
        return self.elsewhere

    def deployment_stats(self) -> None:
        return None


def tweet(id_: int, text: str) -> TweetEvent:
    payload = {"id_str": str(id_), "text": text, "entities": {}}
    return TweetEvent(str(id_), frames.tweet(payload), tweet_terms(payload))


def drain(sub: Subscription) -> list[Outgoing]:
    items: list[Outgoing] = []
    while True:
        try:
            items.append(sub.messages.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def tweet_ids(items: list[Outgoing]) -> list[str]:
    return [item.id_str for item in items if isinstance(item, TweetEvent)]


def types(items: list[Outgoing]) -> list[str]:
    return [
        "tweet" if isinstance(item, TweetEvent) else str(orjson.loads(item)["type"])
        for item in items
    ]


async def test_each_viewer_gets_hello_then_exactly_the_tweets_it_asked_for() -> None:
    with trio.fail_after(TIMEOUT):
        hub = Hub(DemandLog(), worker_id="w1")
        async with (
            hub.subscribe() as sample,
            hub.subscribe(parse_track("python")) as python,
            hub.subscribe(parse_track("rust,go")) as systems,
        ):
            first = drain(python)[0]
            assert isinstance(first, str)
            hello = orjson.loads(first)
            assert (hello["stream"], hello["track"], hello["worker"]) == (
                "filter",
                ["python"],
                "w1",
            )
            drain(sample), drain(systems)
            hub.route("sample", tweet(1, "anything at all"))
            hub.route("filter", tweet(2, "python news"))
            hub.route("filter", tweet(3, "go and rust"))
            hub.route("filter", tweet(4, "nothing matches"))
            assert tweet_ids(drain(sample)) == ["1"]
            assert tweet_ids(drain(python)) == ["2"]
            assert tweet_ids(drain(systems)) == ["3"]
            assert hub.delivered == {"sample": 2, "filter": 4}, "frames queued, hellos included"


async def test_demand_follows_the_viewers_and_the_union_of_their_phrases() -> None:
    with trio.fail_after(TIMEOUT):
        broker = DemandLog()
        hub = Hub(broker)
        async with hub.subscribe(parse_track("python")) as first:
            assert broker.last("filter") == (True, "python")
            async with hub.subscribe(parse_track("rust, python")):
                assert broker.last("filter") == (True, "python,rust")
            assert broker.last("filter") == (True, "python")
            hub.retrack(first, ())
            assert broker.last("filter") == (False, "")
            assert broker.last("sample") == (True, "")
            assert first.kind == "sample"
        assert broker.last("sample") == (False, "")


async def test_a_newcomer_gets_the_last_status_and_recent_matching_tweets_never_deleted_ones() -> (
    None
):
    with trio.fail_after(TIMEOUT):
        hub = Hub(DemandLog(), history_size=2)
        hub.route("filter", events.status_event("filter", "connected"))
        for id_, text in ((1, "python one"), (2, "rust two"), (3, "python three")):
            hub.route("sample", tweet(id_, text))
        hub.route("filter", tweet(4, "python four"))
        hub.route("filter", events.NoticeEvent(frames.delete("4"), deletes="4"))
        async with hub.subscribe(parse_track("python")) as late:
            items = drain(late)
        assert types(items) == ["hello", "status", "tweet", "tweet"]
        assert tweet_ids(items) == ["1", "3"], "oldest first, from both streams, 4 was deleted"


async def test_a_filter_past_the_deployments_phrase_limit_changes_nothing() -> None:
    with trio.fail_after(TIMEOUT):
        broker = DemandLog(elsewhere=frozenset(f"w{i}" for i in range(399)))
        hub = Hub(broker)
        async with hub.subscribe(parse_track("mine")) as sub:
            with pytest.raises(TrackError) as refused:
                hub.retrack(sub, parse_track("mine,another"))
            assert refused.value.code == "too_many_phrases"
            assert [phrase.text for phrase in sub.track] == ["mine"]
            assert broker.last("filter") == (True, "mine")
            with pytest.raises(TrackError):
                async with hub.subscribe(parse_track("newcomer")):
                    pass
        assert hub.viewer_count() == 0


async def test_a_viewer_that_stays_full_is_evicted_and_nobody_else_notices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):  # virtual seconds: the clock jumps over the sleeps
        hub = Hub(DemandLog(), queue_size=4, slow_client_seconds=30.0)
        evicted: list[int] = []
        async with hub.subscribe() as stuck, hub.subscribe() as reader:
            stuck.on_evicted = lambda: evicted.append(stuck.id)
            for n in range(3):  # the queue holds hello and three tweets
                hub.route("sample", tweet(n, "x"))
            drain(reader)
            hub.route("sample", tweet(10, "full now"))
            await trio.sleep(29)
            hub.route("sample", tweet(11, "still full"))
            assert (stuck.skipped, stuck.evicted) == (2, False)
            await trio.sleep(1)
            hub.route("sample", tweet(12, "too long"))
            assert (stuck.skipped, stuck.evicted) == (3, True)
            assert evicted == [stuck.id]
            assert hub.evictions == 1
            assert tweet_ids(drain(reader)) == ["10", "11", "12"]
            assert tweet_ids(drain(stuck)) == ["0", "1", "2"], "then its channel ends"


async def test_close_all_ends_every_channel_and_lets_nobody_in() -> None:
    with trio.fail_after(TIMEOUT):
        hub = Hub(DemandLog())
        async with hub.subscribe() as sample, hub.subscribe(parse_track("a")) as filtered:
            hub.close_all()
            for sub in (sample, filtered):
                drain(sub)
                assert sub.going_away
                with pytest.raises(trio.EndOfChannel):
                    await sub.messages.receive()
            with pytest.raises(AdmissionError) as refused:
                async with hub.subscribe():
                    pass
            assert refused.value.code == "shutting_down"


async def test_run_starts_the_broker_and_reports_running(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        hub = Hub(DemandLog())
        assert not hub.running
        await nursery.start(hub.run)
        assert hub.running


def pendings(items: list[Outgoing]) -> list[dict[str, Any]]:
    return [
        frame
        for item in items
        if not isinstance(item, TweetEvent) and (frame := orjson.loads(item))["type"] == "pending"
    ]


def filter_tracks(broker: DemandLog) -> list[str]:
    """Each filter union the hub handed upstream, in order, repeats dropped."""
    tracks: list[str] = []
    for kind, active, track in broker.calls:
        if kind == "filter" and active and (not tracks or tracks[-1] != track):
            tracks.append(track)
    return tracks


async def test_a_churning_viewer_cannot_spend_the_restarts_and_a_newcomer_is_not_starved(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A viewer changing its filter every 2 s used to restart the upstream each time, until
    the account's budget was spent and a newcomer waited minutes."""
    with trio.fail_after(1000):
        broker = DemandLog()
        hub = Hub(broker)
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            async with hub.subscribe(parse_track("churn"), "10.0.0.1") as hog:
                started = trio.current_time()
                for n in range(50):  # 100 s
                    hub.retrack(hog, parse_track(f"churn{n}"))
                    await trio.sleep(2.0)
                async with hub.subscribe(parse_track("newcomer"), "10.0.0.2") as newcomer:
                    assert "newcomer" in broker.last("filter")[1], "at once"
                    assert pendings(drain(newcomer)) == []
                    for n in range(50, 150):  # to 300 s
                        hub.retrack(hog, parse_track(f"churn{n}"))
                        await trio.sleep(2.0)
                assert trio.current_time() - started == pytest.approx(300.0)
                # The burst of three, one a minute after it, and the newcomer's.
                assert len(filter_tracks(broker)) <= 10, filter_tracks(broker)
                # The hog was told its change waits, and when it would go.
                told = pendings(drain(hog))
                assert any(frame["queued"] and frame["retry_in"] > 0 for frame in told)
            nursery.cancel_scope.cancel()


async def test_a_waiting_viewer_is_told_and_then_told_again_once_its_phrase_is_asked_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        broker = DemandLog()
        hub = Hub(broker)
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            async with hub.subscribe(parse_track("one"), "10.0.0.1") as sub:
                for n in range(2):  # the rest of its burst
                    hub.retrack(sub, parse_track(f"burst{n}"))
                    await trio.sleep(5.0)
                drain(sub)
                hub.retrack(sub, parse_track("late"))
                (told,) = pendings(drain(sub))
                assert told["queued"] == ["late"]
                assert 0 < told["retry_in"] <= 120  # its own bucket, refilled every two minutes
                assert broker.last("filter")[1] != "late"
                await trio.sleep(told["retry_in"] + 0.1)
                assert broker.last("filter") == (True, "late")
                (cleared,) = pendings(drain(sub))
                assert cleared == {
                    "type": "pending",
                    "queued": [],
                    "over_share": [],
                    "retry_in": None,
                }
            nursery.cancel_scope.cancel()


async def test_a_newcomer_past_the_limit_takes_room_from_the_holder_over_its_share() -> None:
    with trio.fail_after(TIMEOUT):
        broker = DemandLog()
        hub = Hub(broker)
        hogging = ",".join(f"hog{i}" for i in range(400))
        async with hub.subscribe(parse_track(hogging), "10.0.0.1") as hog:
            drain(hog)
            async with hub.subscribe(parse_track("new,other"), "10.0.0.2"):
                track = broker.last("filter")[1].split(",")
                assert len(track) == 400
                assert {"new", "other"} <= set(track)
                (told,) = pendings(drain(hog))
                assert len(told["over_share"]) == 2
                # Its own address has no share left for more.
                with pytest.raises(TrackError) as refused:
                    async with hub.subscribe(parse_track("more"), "10.0.0.1"):
                        pass
                assert refused.value.code == "too_many_phrases"
            # Once the newcomer leaves, the hog has it all again, and is told so.
            assert len(broker.last("filter")[1].split(",")) == 400
            assert "hog399" in broker.last("filter")[1]
            assert pendings(drain(hog))[-1]["over_share"] == []


async def test_the_viewer_and_address_caps_refuse_by_name() -> None:
    with trio.fail_after(TIMEOUT):
        hub = Hub(DemandLog(), shares=ShareLimits(per_viewer=2, per_address=3))
        with pytest.raises(TrackError) as refused:
            async with hub.subscribe(parse_track("a,b,c"), "x"):
                pass
        assert refused.value.code == "viewer_phrase_limit"
        async with hub.subscribe(parse_track("a,b"), "x") as first:
            with pytest.raises(TrackError) as refused:
                hub.retrack(first, parse_track("c,d,e"))
            assert refused.value.code == "viewer_phrase_limit"
            hub.retrack(first, parse_track("b,c"))
            with pytest.raises(TrackError) as refused:
                async with hub.subscribe(parse_track("d,e"), "x"):
                    pass
            assert refused.value.code == "address_phrase_limit"
            assert "at most 3 phrases" in str(refused.value.message)
            async with hub.subscribe(parse_track("c,d"), "x"):
                pass


async def test_a_source_that_changes_its_filter_in_place_gets_every_change_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Jetstream matches keywords here and never reconnects: nothing to pace."""
    with trio.fail_after(100):
        broker = DemandLog()
        hub = Hub(broker, shares=ShareLimits(paced=False))
        async with hub.subscribe(parse_track("start"), "10.0.0.1") as sub:
            for n in range(20):
                hub.retrack(sub, parse_track(f"change{n}"))
                assert broker.last("filter") == (True, f"change{n}")
                assert pendings(drain(sub)) == []
                await trio.sleep(2.0)
