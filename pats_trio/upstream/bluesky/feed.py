"""What each Jetstream event means for viewers, once the adapter has read it off the socket.

A post becomes a tweet for whichever stream kinds are watched (once: the rewind after a resume
replays a few seconds, dropped here by (did, rkey)); a delete takes a post back; an identity
change makes a cached profile stale; an account that goes inactive (taken down, suspended,
deleted, deactivated) comes with no per-post deletes, so this sends one for each of that author's
recent posts. Authors' profiles follow their posts (`profiles.ProfileFetcher`).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import httpx

from pats_trio import events, frames
from pats_trio.events import STREAM_KINDS, Event, StreamKind
from pats_trio.matching import tweet_terms
from pats_trio.upstream.bluesky.jetstream import (
    Account,
    Delete,
    Identity,
    Ignored,
    JetstreamEvent,
    Post,
    Profile,
    post_payload,
)
from pats_trio.upstream.bluesky.profiles import ProfileCache, ProfileFetcher, profile_frame
from pats_trio.upstream.bluesky.recent_posts import RecentPostsByAuthor
from pats_trio.upstream.lifecycle import DedupWindow
from pats_trio.upstream.source import Publish, SourceStats

LOGGER = logging.getLogger("pats_trio.upstream.bluesky")


@dataclass
class BlueskyStats(SourceStats):
    """`SourceStats` (so metrics read both sources alike), plus Jetstream's own events."""

    deletes: int = 0
    identities: int = 0
    accounts: int = 0
    ignored: int = 0


class JetstreamFeed:
    """Jetstream's events, as tweets and notices for the hub."""

    def __init__(
        self,
        publish: Publish,
        active: Mapping[StreamKind, bool],
        *,
        http: httpx.AsyncClient,
        appview: str,
        profile_cache: ProfileCache | None,
        dedup_window: int,
    ) -> None:
        self._publish = publish
        self._active = active
        """The adapter's: which stream kinds are watched now."""
        self._seen = DedupWindow[Hashable](dedup_window)
        self._recent_posts = RecentPostsByAuthor()
        self.profiles = ProfileFetcher(http, appview, self._on_profile, cache=profile_cache)
        self.stats = BlueskyStats()

    def handle(self, event: JetstreamEvent) -> None:
        if isinstance(event, Post):
            self._handle_post(event)
        elif isinstance(event, Delete):
            if self._seen.first_time((event.did, event.rkey, "delete")):
                self.stats.deletes += 1
                notice = events.NoticeEvent(frames.delete(event.id_str), deletes=event.id_str)
                self._to_both(notice)
        elif isinstance(event, Identity):
            self.stats.identities += 1
            self.profiles.invalidate(event.did)
        elif isinstance(event, Account):
            self.stats.accounts += 1
            if not event.active:
                self.profiles.invalidate(event.did)
                self._take_back_posts_of(event)
        elif isinstance(event, Ignored):
            self.stats.ignored += 1

    def _handle_post(self, post: Post) -> None:
        if not self._seen.first_time((post.did, post.rkey)):
            self.stats.duplicates += 1
            return
        author = self.profiles.cached(post.did)
        if author is None:
            self.profiles.want(post.did)
        payload = post_payload(post, author)
        self._recent_posts.add(post.did, payload["id_str"])
        event = events.TweetEvent(
            payload["id_str"],
            frames.tweet(payload),
            tweet_terms(payload),
        )
        self.stats.tweets += 1
        for kind in STREAM_KINDS:
            if self._active[kind]:
                self._publish(kind, event)

    def _take_back_posts_of(self, account: Account) -> None:
        """A taken down, suspended, deleted or deactivated account: Jetstream sends no delete per
        post, yet Bluesky hides them all, so viewers are sent one for each post they may hold."""
        ids = self._recent_posts.take(account.did)
        if not ids:
            return
        LOGGER.info(
            "bluesky: account %s is %s: taking back its %d recent posts",
            account.did,
            account.status or "inactive",
            len(ids),
        )
        for id_str in ids:
            self._to_both(events.NoticeEvent(frames.delete(id_str), deletes=id_str))

    def _on_profile(self, profile: Profile) -> None:
        self._to_both(events.NoticeEvent(profile_frame(profile)))

    def _to_both(self, event: Event) -> None:
        for kind in STREAM_KINDS:
            self._publish(kind, event)
