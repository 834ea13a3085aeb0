"""Author profiles from the public Bluesky AppView: batched, cached, and polite about rate limits.

Jetstream events carry only the author's DID. `ProfileFetcher` looks handles, display names and
avatars up with ``GET {appview}/xrpc/app.bsky.actor.getProfiles?actors=...`` (no auth, at most
`MAX_ACTORS_PER_CALL` actors a call). Nothing waits for it: the source shows a post at once with
what the cache holds (or the DID) and the fetcher reports each profile as it arrives through
`on_profile`, which the source turns into a `profile` frame (`profile_frame`).

Resource handling: one long-lived task (`run`, started with `nursery.start`) owns the HTTP calls;
`want` only queues a DID on a bounded channel and never blocks. A full queue drops the DID (it is
asked for again with the author's next post). Error handling: HTTP and network failures are
`ProfileError` subclasses, caught inside `run`; a batch that keeps failing is dropped. HTTP 429
and an exhausted ``ratelimit-remaining`` pause every call until ``ratelimit-reset`` (epoch
seconds) or ``retry-after``.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import orjson
import trio

from pats_trio import __version__, frames
from pats_trio.upstream.backoff import doubling, jittered
from pats_trio.upstream.bluesky.jetstream import JetstreamShapeError, Profile, profile_from_appview

LOGGER = logging.getLogger(__name__)

USER_AGENT = f"pats-trio/{__version__} (realtime Bluesky posts in the browser)"
GET_PROFILES = "/xrpc/app.bsky.actor.getProfiles"
MAX_ACTORS_PER_CALL = 25
"""The AppView refuses more actors than this in one call."""
BATCH_WINDOW_SECONDS = 0.05
"""How long the first DID of a batch waits for others; far under the 500 ms a post may wait."""
QUEUE_SIZE = 1024
CACHE_SIZE = 20_000
TTL_SECONDS = 3600.0
MISSING_TTL_SECONDS = 300.0
"""A DID the AppView does not know is not asked for again this long."""
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 3
RETRY_FIRST_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
RATE_LIMIT_DEFAULT_SECONDS = 60.0
"""A 429 that says nothing about when to come back waits this long."""
RATE_LIMIT_MIN_SECONDS = 1.0
"""Even a reset that looks past (clock skew) waits this long, so we never hammer."""
RATE_LIMIT_CAP_SECONDS = 900.0


class ProfileError(Exception):
    """A getProfiles call failed."""


class ProfileNetworkError(ProfileError):
    """The call failed below HTTP, or timed out."""


class ProfileHTTPError(ProfileError):
    """The AppView answered with an error status, or a body we cannot read."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code


class ProfileRateLimitedError(ProfileError):
    """HTTP 429: come back in `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited for {wait:.1f}s")
        self.wait = wait


def profile_frame(profile: Profile) -> frames.Frame:
    """The page fills in the author's posts already shown."""
    return frames.profile(
        did=profile.did, handle=profile.handle, name=profile.name, avatar=profile.avatar
    )


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float:
    """Seconds to pause from the rate-limit headers of a response, `now` being epoch seconds.

    >>> rate_limit_wait({"ratelimit-reset": "1000"}, 990.5)
    9.5
    >>> rate_limit_wait({"retry-after": "3"}, 0.0)
    3.0
    >>> rate_limit_wait({}, 0.0)
    60.0
    """
    waits: list[float] = []
    reset = headers.get("ratelimit-reset", "").strip()
    if reset.isascii() and reset.isdigit() and len(reset) <= 12:
        waits.append(int(reset) - now)
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isascii() and retry_after.isdigit() and len(retry_after) <= 12:
        waits.append(float(retry_after))
    elif retry_after:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            waits.append(email.utils.parsedate_to_datetime(retry_after).timestamp() - now)
    wait = max(waits) if waits else RATE_LIMIT_DEFAULT_SECONDS
    return min(max(wait, RATE_LIMIT_MIN_SECONDS), RATE_LIMIT_CAP_SECONDS)


class ProfileCache:
    """A bounded LRU of profiles with a time to live. Pure: callers pass the time.

    A DID the AppView did not return is kept as a bare `Profile(did)` for `missing_ttl`.

    >>> cache = ProfileCache(size=1, ttl=10.0)
    >>> cache.put(Profile("did:plc:a", "a.test"), now=0.0)
    >>> cache.get("did:plc:a", now=5.0)
    Profile(did='did:plc:a', handle='a.test', name=None, avatar=None)
    >>> cache.get("did:plc:a", now=10.0) is None
    True
    """

    def __init__(
        self,
        *,
        size: int = CACHE_SIZE,
        ttl: float = TTL_SECONDS,
        missing_ttl: float = MISSING_TTL_SECONDS,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.ttl = ttl
        self.missing_ttl = missing_ttl
        self._entries: OrderedDict[str, tuple[Profile, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, did: str, now: float) -> Profile | None:
        entry = self._entries.get(did)
        if entry is None:
            return None
        profile, expires_at = entry
        if now >= expires_at:
            del self._entries[did]
            return None
        self._entries.move_to_end(did)
        return profile

    def put(self, profile: Profile, now: float, *, missing: bool = False) -> None:
        self._entries[profile.did] = (profile, now + (self.missing_ttl if missing else self.ttl))
        self._entries.move_to_end(profile.did)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def invalidate(self, did: str) -> bool:
        """Forget `did` (its handle changed); True if it was cached."""
        return self._entries.pop(did, None) is not None


@dataclass
class ProfileStats:
    calls: int = 0
    profiles: int = 0
    missing: int = 0
    rate_limited: int = 0
    errors: int = 0
    dropped: int = 0
    """DIDs not queued because the queue was full, or given up after `MAX_ATTEMPTS`."""
    invalidated: int = 0


class ProfileFetcher:
    """Looks up authors in batches, one call at a time, and reports each profile it gets."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        appview: str,
        on_profile: Callable[[Profile], None],
        *,
        window: float = BATCH_WINDOW_SECONDS,
        cache: ProfileCache | None = None,
        queue_size: int = QUEUE_SIZE,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._url = appview.rstrip("/") + GET_PROFILES
        self._on_profile = on_profile
        self._window = window
        self.cache = cache or ProfileCache()
        self._send, self._receive = trio.open_memory_channel[str](queue_size)
        self._pending: set[str] = set()
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self.paused_until = 0.0
        """trio time before which no call is made (a rate limit); 0 when none was met."""
        self.stats = ProfileStats()

    def cached(self, did: str) -> Profile | None:
        """The profile if it is cached and fresh; never blocks, never calls out."""
        return self.cache.get(did, trio.current_time())

    def want(self, did: str) -> None:
        """Ask for `did` unless it is cached or already asked for. Never blocks."""
        if did in self._pending or self.cached(did) is not None:
            return
        try:
            self._send.send_nowait(did)
        except trio.WouldBlock:
            self.stats.dropped += 1
            return
        self._pending.add(did)

    def invalidate(self, did: str) -> None:
        """The author's identity changed: the next post looks the profile up again."""
        if self.cache.invalidate(did):
            self.stats.invalidated += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch queued DIDs in batches until cancelled.

        Resource handling: holds no connection between calls (the shared `httpx.AsyncClient`
        pools them). Error handling: every `ProfileError` is logged and counted here.
        """
        task_status.started()
        while True:
            received = await self._next_batch()
            try:
                await self._fetch(received)
            finally:
                self._pending.difference_update(received)

    async def _next_batch(self) -> list[str]:
        """The first queued DID, and those that follow within `window`, up to the call limit."""
        batch = [await self._receive.receive()]
        with trio.move_on_after(self._window):
            while len(batch) < MAX_ACTORS_PER_CALL:
                batch.append(await self._receive.receive())
        return batch

    def _top_up(self, received: list[str]) -> list[str]:
        """The DIDs of `received` still to fetch, plus any queued meanwhile (a pause), up to the
        call limit; those taken from the queue are appended to `received`."""
        # A DID queued during a pause may have been fetched by a call since.
        batch = [did for did in dict.fromkeys(received) if self.cached(did) is None]
        while len(batch) < MAX_ACTORS_PER_CALL:
            try:
                did = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            received.append(did)
            if did not in batch and self.cached(did) is None:
                batch.append(did)
        return batch

    async def _fetch(self, received: list[str]) -> None:
        attempts = 0
        while True:
            await trio.sleep_until(self.paused_until)
            batch = self._top_up(received)
            if not batch:
                return
            try:
                views = await self._call(batch)
            except ProfileRateLimitedError as exc:
                self.stats.rate_limited += 1
                self._pause(exc.wait)
                LOGGER.warning("profiles: rate limited, pausing %.1fs", exc.wait)
                continue
            except ProfileError as exc:
                self.stats.errors += 1
                attempts += 1
                client_error = isinstance(exc, ProfileHTTPError) and 400 <= exc.status_code < 500
                if client_error or attempts >= MAX_ATTEMPTS:
                    self.stats.dropped += len(batch)
                    LOGGER.warning("profiles: %s; dropping %d actors", exc, len(batch))
                    return
                delay = jittered(
                    doubling(RETRY_FIRST_SECONDS, RETRY_CAP_SECONDS, attempts - 1), self._rng
                )
                LOGGER.info("profiles: %s; retrying in %.1fs", exc, delay)
                await trio.sleep(delay)
                continue
            break
        self._store(batch, views)

    def _pause(self, wait: float) -> None:
        self.paused_until = max(self.paused_until, trio.current_time() + wait)

    def _store(self, batch: list[str], views: list[object]) -> None:
        now = trio.current_time()
        found: dict[str, Profile] = {}
        for view in views:
            try:
                profile = profile_from_appview(view)
            except JetstreamShapeError as exc:
                LOGGER.debug("profiles: skipping a malformed profile: %s", exc)
                continue
            found[profile.did] = profile
        for did in batch:
            fetched = found.get(did)
            if fetched is None:
                self.stats.missing += 1
                self.cache.put(Profile(did), now, missing=True)
                continue
            self.stats.profiles += 1
            self.cache.put(fetched, now)
            self._on_profile(fetched)

    async def _call(self, batch: list[str]) -> list[object]:
        self.stats.calls += 1
        try:
            with trio.fail_after(REQUEST_TIMEOUT_SECONDS):
                response = await self._http.get(
                    self._url,
                    params=[("actors", did) for did in batch],
                    headers={"user-agent": USER_AGENT, "accept": "application/json"},
                    timeout=REQUEST_TIMEOUT_SECONDS,
                )
        except trio.TooSlowError as exc:
            raise ProfileNetworkError(f"no answer in {REQUEST_TIMEOUT_SECONDS:.0f}s") from exc
        except httpx.HTTPError as exc:
            raise ProfileNetworkError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429:
            raise ProfileRateLimitedError(rate_limit_wait(response.headers, self._wall_clock()))
        if response.status_code != 200:
            raise ProfileHTTPError(response.status_code, response.reason_phrase)
        if response.headers.get("ratelimit-remaining", "").strip() == "0":
            # The next call would be refused: wait for the window to reset first.
            self._pause(rate_limit_wait(response.headers, self._wall_clock()))
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProfileHTTPError(response.status_code, "body is not JSON") from exc
        views = body.get("profiles") if isinstance(body, dict) else None
        if not isinstance(views, list):
            raise ProfileHTTPError(response.status_code, "body has no profiles")
        return views
