"""The deployment's per-day counts in Redis (`SharedTally`), for whoever owns the upstream.

One key per figure and UTC day, `<prefix>:tally:<name>:<YYYY-MM-DD>`, expiring a little after
its day ends. An owner adds its increments in batches; one script adds them and raises the
figure to what the owner knows from elsewhere (X's own usage figure), so that the next owner
starts from the larger of the two, in one round trip.
"""

from __future__ import annotations

import time

from glide import GlideClient, GlideError, Script

from pats_trio.upstream.tally import TallyUnavailableError

_ADD = Script(  # type: ignore[no-untyped-call]
    # KEYS: the figure. ARGV: the increment, the floor, the TTL in seconds. Returns the figure.
    "local v = (tonumber(redis.call('get', KEYS[1])) or 0) + tonumber(ARGV[1]) "
    "local floor = tonumber(ARGV[2]) "
    "if v < floor then v = floor end "
    "redis.call('set', KEYS[1], v, 'EX', ARGV[3]) "
    "return v"
)
MIN_TTL_SECONDS = 60


def tally_key(prefix: str, name: str, day: int) -> str:
    """The key of figure `name` on UTC `day` (days since the epoch).

    >>> tally_key("pats", "x-posts", 1)
    'pats:tally:x-posts:1970-01-02'
    """
    return f"{prefix}:tally:{name}:{time.strftime('%Y-%m-%d', time.gmtime(day * 86_400))}"


class DeploymentTally:
    """`SharedTally` through the owner's Redis client."""

    def __init__(self, client: GlideClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, name: str, day: int) -> str:
        return tally_key(self._prefix, name, day)

    async def add(self, name: str, day: int, count: int, *, floor: int, ttl: float) -> int:
        args = [str(count), str(floor), str(max(int(ttl), MIN_TTL_SECONDS))]
        try:
            reply = await self._client.invoke_script(_ADD, keys=[self.key(name, day)], args=args)
        except GlideError as exc:
            raise TallyUnavailableError(str(exc)) from exc
        if not isinstance(reply, int):
            raise TallyUnavailableError(f"unexpected reply {reply!r}")
        return reply
