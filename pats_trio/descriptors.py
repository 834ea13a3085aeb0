"""How many viewers this process can hold open: each one is a socket, a file descriptor.

At the descriptor limit `accept` fails with EMFILE: new viewers hung with no answer, `/healthz`
timed out and hypercorn logged a traceback ten times a second. So the process first raises its
soft limit to the hard one (the usual 1,024 soft limit is far below what a server may use), then
caps its viewers below what is left after a reserve for everything else it opens (listening
sockets, upstream and Redis connections, HTTP probes and page loads, log files). A viewer past
the cap is refused with close 1013 like any other while the server stays responsive.
"""

from __future__ import annotations

import logging
import resource

LOGGER = logging.getLogger(__name__)

RESERVE_MIN = 64
RESERVE_SHARE = 0.1
"""Descriptors kept back from viewers: the larger of 64 and a tenth of the limit."""


def raise_soft_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def viewer_capacity(descriptors: int) -> int:
    """Viewers that fit in `descriptors`, the reserve kept back (at least one viewer)."""
    reserve = max(RESERVE_MIN, int(descriptors * RESERVE_SHARE))
    return max(descriptors - reserve, 1)


def cap_viewers(wanted: int) -> int:
    """`wanted` (PATS_MAX_CLIENTS), or fewer if the descriptor limit cannot hold that many."""
    limit = raise_soft_limit()
    if limit == resource.RLIM_INFINITY:
        return wanted
    capacity = viewer_capacity(limit)
    if capacity < wanted:
        LOGGER.warning(
            "viewers capped at %d, below PATS_MAX_CLIENTS=%d: this process may open %d files "
            "(raise it with `ulimit -n` or systemd's LimitNOFILE)",
            capacity,
            wanted,
            limit,
        )
        return capacity
    return wanted
