"""Authors' profiles from the emulated AppView: batched, cached, polite, never holding a post."""

from __future__ import annotations

import trio
import trio.testing

from pats_trio.emulator.jetstream import JetstreamEmulator
from pats_trio.upstream.bluesky.jetstream import Profile
from pats_trio.upstream.bluesky.profiles import MAX_ACTORS_PER_CALL, ProfileCache, rate_limit_wait
from tests.test_bluesky import TIMEOUT, connected, running

MAX_HOLD = 0.5
"""A post may never wait longer than this for its author's profile."""


def did(n: int) -> str:
    return f"did:plc:author{n:0>16}"


def with_authors(count: int) -> JetstreamEmulator:
    emulator = JetstreamEmulator(rate=0, seed=2)
    for n in range(count):
        emulator.set_profile(did(n), f"author{n}.bsky.social", f"Author Nº{n}", None)
    return emulator


async def test_profiles_are_fetched_in_batches_of_at_most_25() -> None:
    with trio.fail_after(TIMEOUT):
        async with running(emulator=with_authors(30)) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            for n in range(30):
                h.emulator.post(did(n), f"post {n}")
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 30)
    calls = h.emulator.profile_calls
    assert [len(call.actors) for call in calls] == [MAX_ACTORS_PER_CALL, 5]
    assert sorted(a for call in calls for a in call.actors) == sorted(did(n) for n in range(30))
    profile = next(
        frame["profile"]
        for frame in h.recorder.notices("filter", "profile")
        if frame["profile"]["did"] == did(7)
    )
    assert profile == {
        "did": did(7),
        "handle": "author7.bsky.social",
        "name": "Author Nº7",
        "avatar": None,
    }


async def test_a_known_author_is_not_looked_up_again() -> None:
    with trio.fail_after(TIMEOUT):
        async with running(emulator=with_authors(2)) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            h.emulator.post(did(0), "one")
            h.emulator.post(did(1), "one")
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 2)
            h.emulator.post(did(0), "two")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 3)
            await trio.sleep(0.3)
    assert len(h.emulator.profile_calls) == 1, "one call for both authors, none after"
    first, _, second = h.recorder.tweets()
    # The first post went out before its profile was known; the second carries it.
    assert first["user"]["screen_name"] == did(0)
    assert second["user"]["screen_name"] == "author0.bsky.social"
    assert second["user"]["name"] == "Author Nº0"
    assert second["url"].startswith("https://bsky.app/profile/author0.bsky.social/post/")


async def test_a_handle_change_refreshes_the_profile() -> None:
    with trio.fail_after(TIMEOUT):
        async with running(emulator=with_authors(1)) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            h.emulator.post(did(0), "before")
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 1)
            h.emulator.identity(did(0), "renamed.example.com")
            h.emulator.post(did(0), "after")
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 2)
            h.emulator.post(did(0), "later")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 3)
    handles = [frame["profile"]["handle"] for frame in h.recorder.notices("sample", "profile")]
    assert handles == ["author0.bsky.social", "renamed.example.com"]
    assert h.recorder.tweets()[2]["user"]["screen_name"] == "renamed.example.com"
    assert len(h.emulator.profile_calls) == 2


async def test_posts_are_not_held_for_a_slow_appview() -> None:
    emulator = with_authors(1)
    emulator.profile_latency = 2.0
    with trio.fail_after(TIMEOUT):
        async with running(emulator=emulator) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            posted_at = trio.current_time()
            h.emulator.post(did(0), "right away")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 1)
            shown_at = trio.current_time()
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 1)
            profile_at = trio.current_time()
    assert shown_at - posted_at < MAX_HOLD
    assert profile_at - posted_at >= 2.0


async def test_a_429_waits_for_the_reset_and_holds_no_post() -> None:
    """Real clock: ratelimit-reset is in epoch seconds, read against the wall clock."""
    with trio.fail_after(TIMEOUT):
        async with running(emulator=with_authors(3)) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            h.emulator.rate_limit_profiles(1.5)
            limited_until = trio.current_time() + 1.5
            posted_at = trio.current_time()
            h.emulator.post(did(0), "first")
            await h.emulator.wait_until(lambda e: len(e.profile_calls) == 1)
            # More posts while limited: shown at once, looked up after the reset.
            h.emulator.post(did(1), "second")
            h.emulator.post(did(2), "third")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 3)
            shown_at = trio.current_time()
            await h.recorder.wait_for(lambda r: len(r.notices("sample", "profile")) == 3)
    calls = h.emulator.profile_calls
    assert shown_at - posted_at < MAX_HOLD
    assert [call.status for call in calls] == [429, 200], "no hammering while limited"
    assert calls[1].at >= limited_until
    assert calls[1].at - limited_until < 1.5, "ratelimit-reset is rounded up to a second"
    assert calls[1].at - calls[0].at >= 1.0, "ratelimit-remaining 0: no call before the reset"
    assert sorted(calls[1].actors) == [did(0), did(1), did(2)]
    assert h.upstream.profiles.stats.rate_limited == 1


async def test_an_unknown_author_is_not_asked_for_on_every_post(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(3600):
        async with running(emulator=with_authors(0)) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            for n in range(1, 4):
                h.emulator.post(did(99), f"who am I {n}")
                await h.recorder.wait_for(lambda r: len(r.ids()) == n)  # noqa: B023
                await trio.sleep(1)
    assert len(h.emulator.profile_calls) == 1
    assert h.recorder.notices("sample", "profile") == []
    assert {tweet["user"]["screen_name"] for tweet in h.recorder.tweets()} == {did(99)}


def test_the_cache_is_bounded_and_expires() -> None:
    cache = ProfileCache(size=2, ttl=60.0, missing_ttl=5.0)
    cache.put(Profile("did:plc:a", "a.test"), now=0.0)
    cache.put(Profile("did:plc:b", "b.test"), now=0.0)
    assert cache.get("did:plc:a", now=1.0) is not None  # a is now the most recent
    cache.put(Profile("did:plc:c"), now=1.0, missing=True)
    assert cache.get("did:plc:b", now=1.0) is None, "the least recently used went"
    assert cache.get("did:plc:c", now=5.0) == Profile("did:plc:c")
    assert cache.get("did:plc:c", now=6.0) is None, "a missing author is retried sooner"
    assert cache.get("did:plc:a", now=60.0) is None
    assert len(cache) == 0
    cache.put(Profile("did:plc:a", "a.test"), now=0.0)
    assert cache.invalidate("did:plc:a")
    assert cache.get("did:plc:a", now=0.0) is None


def test_rate_limit_headers() -> None:
    assert rate_limit_wait({"ratelimit-reset": "1010", "retry-after": "20"}, 1000.0) == 20.0
    assert rate_limit_wait({"ratelimit-reset": "900"}, 1000.0) == 1.0, "a past reset still waits"
    assert rate_limit_wait({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 90.0) == 10.0
    assert rate_limit_wait({"retry-after": "99999999"}, 0.0) == 900.0
