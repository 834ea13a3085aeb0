"""Who this process is in the deployment, and the parts it serves viewers with.

The viewer handler and the metrics take a `Worker` rather than the app, so they depend on the
parts they read and not on the Quart app around them (which imports them).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from pats_trio.admission import ClientCounter, Limits
from pats_trio.config import Settings
from pats_trio.hub import Hub
from pats_trio.looplag import LoopLag
from pats_trio.outsider_log import OutsiderLog

WORKER_ID = secrets.token_hex(4)
"""Opaque and per process: it tells workers apart in logs, /readyz and the hello frame."""


@dataclass(frozen=True, slots=True, eq=False)
class Worker:
    """One process's serving parts, built together by `create_app`.

    Every part exists from the moment the app is built, so nothing has to ask whether it is
    there yet; the hub and the loop-lag task *run* only while the app serves (`Hub.started`).
    """

    id: str
    settings: Settings
    limits: Limits
    clients: ClientCounter
    """Viewers admitted now, in all and per address."""
    hub: Hub
    loop_lag: LoopLag
    outsiders: OutsiderLog = field(
        default_factory=lambda: OutsiderLog(logging.getLogger("pats_trio.viewer"))
    )
    """What a request can make the viewer handler log (a refused Origin), limited."""
