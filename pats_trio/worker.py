"""Who this process is in the deployment: its worker id, and later the parts it serves with."""

from __future__ import annotations

import secrets

WORKER_ID = secrets.token_hex(4)
"""Opaque and per process: it tells workers apart in logs, /readyz and the hello frame."""
