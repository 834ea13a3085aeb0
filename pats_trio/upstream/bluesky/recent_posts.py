"""The posts published lately, by author: an account that goes away takes its posts with it.

Jetstream reports a takedown, suspension, deletion or deactivation as one `account` event with
`active: false`, and no delete for each post; Bluesky hides those posts at once. So the upstream
keeps the ids it published in a bounded window, by author, and turns such an event into a delete
for each of that author's posts that a viewer may still hold. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque

WINDOW = 20_000
"""Posts remembered, as many as the hub's record of routed tweets (`routed.WINDOW`): a post
older than that can be on no viewer's page, as far as the hub is concerned."""


class RecentPostsByAuthor:
    """A bounded window of (author, post id), looked up by author.

    >>> recent = RecentPostsByAuthor(window=2)
    >>> recent.add("did:plc:a", "1"); recent.add("did:plc:b", "2"); recent.add("did:plc:a", "3")
    >>> recent.take("did:plc:a")
    ['3']
    >>> recent.take("did:plc:a")
    []
    """

    def __init__(self, *, window: int = WINDOW) -> None:
        self._window = window
        self._by_author: dict[str, list[str]] = {}
        self._order: deque[tuple[str, str]] = deque()

    def add(self, author: str, id_str: str) -> None:
        self._by_author.setdefault(author, []).append(id_str)
        self._order.append((author, id_str))
        while len(self._order) > self._window:
            self._drop(*self._order.popleft())

    def take(self, author: str) -> list[str]:
        """The author's posts in the window, oldest first, forgotten at once."""
        return self._by_author.pop(author, [])

    def _drop(self, author: str, id_str: str) -> None:
        ids = self._by_author.get(author)
        if ids and ids[0] == id_str:
            ids.pop(0)
            if not ids:
                del self._by_author[author]
