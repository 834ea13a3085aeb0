"""Which recent tweets could be on a viewer's page, so a delete goes only to who could hold it.

On the real firehose most deletes are of posts no viewer was ever shown; sending each of them to
every viewer is a steady stream of useless frames. The hub records every tweet it routes (and
every one in history) with the stream kinds it went out on and its matching terms; a delete is
then sent to the viewers of those kinds whose phrases match, and to nobody for a tweet it never
routed. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pats_trio.events import StreamKind, TweetEvent

WINDOW = 20_000
"""Tweets remembered. A page holds at most a few hundred cards, but a rare filter's card can stay
on screen while thousands of other tweets pass; this many cost a few MB (the terms are shared
with the events, not copied)."""


@dataclass(slots=True)
class Routed:
    """Where one tweet went: the kinds it was routed on, and the terms that matched it."""

    terms: frozenset[str]
    kinds: set[StreamKind] = field(default_factory=set)


class RoutedTweets:
    """A bounded record of the tweets routed lately, by id and by the ids their cards show.

    >>> from pats_trio import frames
    >>> routed = RoutedTweets(window=2)
    >>> routed.add("sample", TweetEvent("1", frames.tweet({"id_str": "1"}), frozenset({"a"})))
    >>> routed.take("1")
    Routed(terms=frozenset({'a'}), kinds={'sample'})
    >>> routed.take("1") is None
    True
    """

    def __init__(self, *, window: int = WINDOW) -> None:
        self._window = window
        self._by_id: dict[str, Routed] = {}
        self._order: deque[tuple[str, Routed]] = deque()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, kind: StreamKind, event: TweetEvent) -> None:
        """`event` went out on `kind` (or into history for it)."""
        routed = self._by_id.get(event.id_str)
        if routed is None:
            routed = Routed(event.terms)
            for id_str in (event.id_str, *event.shows):
                if id_str not in self._by_id:
                    self._by_id[id_str] = routed
                    self._order.append((id_str, routed))
            while len(self._order) > self._window:
                old_id, old = self._order.popleft()
                if self._by_id.get(old_id) is old:
                    del self._by_id[old_id]
        routed.kinds.add(kind)

    def kinds_of(self, id_str: str) -> frozenset[StreamKind]:
        """The kinds the tweet went out on so far (none if it is not remembered)."""
        routed = self._by_id.get(id_str)
        return frozenset(routed.kinds) if routed is not None else frozenset()

    def take(self, id_str: str) -> Routed | None:
        """Where the tweet went, forgotten at once: one delete is sent once, whichever kinds it
        arrives on. None for a tweet no viewer could hold."""
        return self._by_id.pop(id_str, None)
