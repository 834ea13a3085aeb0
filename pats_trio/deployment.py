"""Which broker this process uses, and a warning when several workers run without Redis."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pats_trio.broker import Broker
from pats_trio.broker.memory import MemoryBroker
from pats_trio.broker.redis import RedisBroker
from pats_trio.config import Settings
from pats_trio.redis_url import parse_redis_url
from pats_trio.upstream.source import UpstreamFactory

LOGGER = logging.getLogger(__name__)


def make_broker(settings: Settings, make_upstream: UpstreamFactory, worker_id: str) -> Broker:
    if not settings.redis_url:
        return MemoryBroker(make_upstream)
    LOGGER.info("worker %s (pid %d) joins the deployment through Redis", worker_id, os.getpid())
    return RedisBroker(
        parse_redis_url(settings.redis_url),
        make_upstream,
        worker_id=worker_id,
        prefix=settings.redis_prefix,
        lease_seconds=settings.redis_lease_seconds,
        heartbeat_seconds=settings.redis_heartbeat_seconds,
        maxlen=settings.redis_stream_maxlen,
    )


def _shape(cmdline: bytes) -> bytes:
    """A command line without its numbers: hypercorn's workers differ only in their pipe fds."""
    return cmdline.translate(None, b"0123456789")


def sibling_workers(proc: Path = Path("/proc")) -> int:
    """How many processes share our parent and our command line (hypercorn's workers), us included.

    Linux only (it reads /proc); elsewhere it answers 1 and nothing is checked.
    """
    parent = os.getppid()
    try:
        ours = _shape((proc / "self" / "cmdline").read_bytes())
        children = (proc / str(parent) / "task" / str(parent) / "children").read_text().split()
    except OSError:
        return 1
    count = 0
    for pid in children:
        try:
            if _shape((proc / pid / "cmdline").read_bytes()) == ours:
                count += 1
        except OSError:
            continue
    return max(count, 1)


def warn_if_workers_share_no_broker(settings: Settings) -> None:
    if settings.redis_url:
        return
    workers = sibling_workers()
    if workers > 1:
        LOGGER.warning(
            "this is one of %d workers and REDIS_URL is not set: each worker opens its own "
            "upstream connections, which breaks the one-connection-per-account rule and splits "
            "viewers' keywords. Set REDIS_URL so that one worker owns the upstream for all.",
            workers,
        )
