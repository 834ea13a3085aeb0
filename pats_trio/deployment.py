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


def _sockets(proc: Path, pid: str) -> set[str]:
    """The sockets a process holds open ("socket:[inode]"); empty when we may not look."""
    found: set[str] = set()
    try:
        fds = list((proc / pid / "fd").iterdir())
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def sibling_workers(proc: Path = Path("/proc")) -> int:
    """How many workers of one server we are among, us included: processes that share our
    parent, our command line (hypercorn's workers differ only in numbers) and a socket (the
    listening socket the server hands each worker).

    Two separate servers started from one shell, or under `setsid`, `nohup` or systemd, share a
    parent and a command line but no socket: they are not siblings. Linux only (it reads /proc);
    elsewhere it answers 1 and nothing is checked.
    """
    parent = os.getppid()
    try:
        ours = _shape((proc / "self" / "cmdline").read_bytes())
        children = (proc / str(parent) / "task" / str(parent) / "children").read_text().split()
    except OSError:
        return 1
    own_sockets = _sockets(proc, "self")
    me = str(os.getpid())
    count = 1
    for pid in children:
        if pid == me:
            continue
        try:
            same_command = _shape((proc / pid / "cmdline").read_bytes()) == ours
        except OSError:
            continue
        if same_command and own_sockets & _sockets(proc, pid):
            count += 1
    return count


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
