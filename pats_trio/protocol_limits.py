"""What hypercorn must enforce itself, before the app sees it: a WebSocket message's size, the
time a message may take (`hypercorn_patch` closes one unfinished then with 1008), and pings, so
that a peer that went silent is dropped (`hypercorn_patch` closes it).

hypercorn buffers a whole message (16 MiB by default) before handing it to the app, so the
app's own limit (`PATS_MAX_MESSAGE_BYTES`, 4 KiB) was checked after up to 16 MiB per socket had
been read: 20 sockets sending 15.9 MB frames took a worker from 67 MB to 702 MB. The limit set
here is a few times the app's, so a message a little too long still gets the app's clear
`message_too_large` error frame and the socket stays open; anything larger is refused by
hypercorn with close 1009 once that much has arrived.
"""

from __future__ import annotations

from hypercorn.config import Config

from pats_trio.config import Settings
from pats_trio.hypercorn_patch import MESSAGE_SECONDS_SETTING

HEADROOM = 4
"""The app counts a message's UTF-8 bytes; this leaves room for its own friendlier refusal."""


def websocket_message_limit(settings: Settings) -> int:
    return settings.max_message_bytes * HEADROOM


def ping_interval(settings: Settings) -> float | None:
    """None (hypercorn's "never") when `PATS_WS_PING_SECONDS` is 0."""
    return settings.ws_ping_seconds or None


def limit_config(config: Config, settings: Settings) -> None:
    """For `pats-trio serve`, which builds hypercorn's config itself."""
    config.websocket_max_message_size = websocket_message_limit(settings)
    config.websocket_ping_interval = ping_interval(settings)
    setattr(config, MESSAGE_SECONDS_SETTING, settings.ws_message_seconds)


def limit_hypercorn_defaults(settings: Settings) -> None:
    """For the plain `hypercorn ... pats_trio.app:app` command, whose config exists before the
    app: hypercorn reads these settings per connection, from the class default unless a config
    file or flag set it, so the app's first call (lifespan start-up) can still lower it."""
    Config.websocket_max_message_size = websocket_message_limit(settings)
    Config.websocket_ping_interval = ping_interval(settings)
    setattr(Config, MESSAGE_SECONDS_SETTING, settings.ws_message_seconds)
