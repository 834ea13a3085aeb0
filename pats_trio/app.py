"""The Quart-Trio app: the page, the WebSocket endpoint, and the hub started beside them.

Run it with `hypercorn --worker-class trio pats_trio.app:app` or `pats-trio`.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from quart import Response, send_from_directory, websocket
from quart_trio import QuartTrio

from pats_trio import frames
from pats_trio.admission import (
    AdmissionError,
    ChangeRate,
    ClientCounter,
    Limits,
    client_address,
    origin_allowed,
)
from pats_trio.broker.factory import WORKER_ID, make_broker, warn_if_workers_share_no_broker
from pats_trio.config import DEFAULT_STREAM_URL, Settings, load_settings
from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.events import STREAM_KINDS, StreamKind
from pats_trio.hub import Hub, Subscription
from pats_trio.logs import configure_logging
from pats_trio.matching import TrackError, parse_track
from pats_trio.observability import register_observability
from pats_trio.upstream.bluesky import BlueskyUpstream
from pats_trio.upstream.client import make_http_client, open_stream
from pats_trio.upstream.runner import ConnectFn
from pats_trio.upstream.source import Publish, Upstream
from pats_trio.upstream.twitter import TwitterUpstream

LOGGER = logging.getLogger(__name__)

FRONTEND_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "frontend",  # a source checkout
    Path(__file__).resolve().parent / "frontend",  # an installed wheel
)
MAX_BATCH = 64
SHUTDOWN_TIMEOUT = 5.0
EVICTION_GRACE_SECONDS = 10.0

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def frontend_dir() -> Path:
    for candidate in FRONTEND_CANDIDATES:
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("frontend/index.html is missing from this installation")


class PatsApp(QuartTrio):
    """QuartTrio with the hub it serves, created when serving starts."""

    async def until_shutdown(self) -> None:
        """A hypercorn `shutdown_trigger`: on SIGINT or SIGTERM, close every viewer with 1001.

        Returning makes hypercorn stop accepting connections and wait, up to its graceful
        timeout, for the viewers' handlers to finish their close; then the hub and the upstream
        connections are cancelled.
        """
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                LOGGER.info(
                    "%s: closing %d viewers and shutting down",
                    signal.Signals(signum).name,
                    self.hub.viewer_count(),
                )
                break
        self.hub.close_all()

    settings: Settings
    hub: Hub
    http: httpx.AsyncClient
    emulator: Emulator | None = None
    limits: Limits
    clients: ClientCounter


def create_app(settings: Settings | None = None, *, worker_id: str = WORKER_ID) -> PatsApp:
    """Build the app; nothing connects until hypercorn starts serving it.

    `worker_id` tells this app apart from others in the deployment; one per process by default.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    static = frontend_dir()
    app = PatsApp(__name__, static_folder=str(static), static_url_path="/static")
    app.settings = settings
    app.limits = Limits(
        max_clients=settings.max_clients,
        max_clients_per_ip=settings.max_clients_per_ip,
        max_filter_length=settings.max_filter_length,
        max_message_bytes=settings.max_message_bytes,
        filter_changes_per_minute=settings.filter_changes_per_minute,
    )
    app.clients = ClientCounter(app.limits)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = SHUTDOWN_TIMEOUT
    app.config["MAX_CONTENT_LENGTH"] = app.limits.max_message_bytes

    @app.before_serving
    async def start_hub() -> None:
        app.http = make_http_client()
        base_url, credentials = settings.twitter_stream_url, settings.credentials
        source = settings.source
        if source == "emulator" and base_url == DEFAULT_STREAM_URL:
            app.emulator = Emulator(rate=settings.emulator_rate, seed=settings.emulator_seed)
            base_url = await app.nursery.start(serve_emulator, app.emulator)
            LOGGER.info("no Twitter credentials: serving the built-in emulator at %s", base_url)
        connectors = _connectors(
            app.http, base_url, credentials, delimited=settings.twitter_delimited
        )

        def make_upstream(publish: Publish) -> Upstream:
            if source == "bluesky":
                return BlueskyUpstream(
                    publish,
                    hosts=settings.bluesky_hosts,
                    appview=settings.bluesky_appview,
                    http=app.http,
                    linger=settings.linger_seconds,
                )
            return TwitterUpstream(
                publish,
                connectors,
                source=source,
                linger=settings.linger_seconds,
                debounce=settings.filter_debounce_seconds,
                min_reconnect=settings.min_reconnect_seconds,
                max_connects_per_window=settings.max_connects_per_5min,
                delimited=settings.twitter_delimited,
            )

        app.hub = Hub(
            make_broker(settings, make_upstream, worker_id),
            mode={"twitter": "twitter", "bluesky": "live"}.get(source, "demo"),
            source=source,
            queue_size=settings.client_queue_size,
            slow_client_seconds=settings.slow_client_seconds,
            history_size=settings.history_size,
            worker_id=worker_id,
        )
        warn_if_workers_share_no_broker(settings)
        await app.nursery.start(app.hub.run)

    @app.after_serving
    async def stop_hub() -> None:
        # Viewers are gone by now; the upstream closes at once rather than at quart-trio's deadline.
        app.nursery.cancel_scope.cancel()
        await app.http.aclose()

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/")
    async def index() -> Any:
        return await send_from_directory(static, "index.html")

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"ok": True}

    @app.websocket("/ws")
    async def ws() -> Response | None:
        return await serve_websocket(app)

    register_observability(app)
    return app


def _connectors(
    http: httpx.AsyncClient, base_url: str, credentials: Any, *, delimited: bool
) -> dict[StreamKind, ConnectFn]:
    def connector(kind: StreamKind) -> ConnectFn:
        def connect(track: str) -> Any:
            return open_stream(
                http, base_url, kind, track, credentials=credentials, delimited=delimited
            )

        return connect

    return {kind: connector(kind) for kind in STREAM_KINDS}


async def serve_websocket(app: PatsApp) -> Response | None:
    """One viewer, from the handshake to the close.

    Error handling: a page from a foreign origin gets HTTP 403 at the handshake. Past it, every
    refusal is an `error` frame and a close: 1008 for a bad filter, 1013 when the server or the
    viewer's address has too many viewers, 4001 for a viewer that stays too slow. None of them
    touches any other viewer.
    """
    settings, limits = app.settings, app.limits
    origin = websocket.headers.get("Origin")
    if not origin_allowed(origin, websocket.headers.get("Host"), settings.allowed_origins):
        LOGGER.warning("refused a WebSocket from foreign origin %s", origin)
        return Response("This origin may not open the stream.", status=403)
    address = client_address(
        websocket.remote_addr or "", dict(websocket.headers), settings.trusted_proxy_header
    )
    await websocket.accept()
    try:
        raw_filter = websocket.args.get("filter", "")
        if len(raw_filter) > limits.max_filter_length:
            raise TrackError(
                "filter_too_long", f"Filters are limited to {limits.max_filter_length} characters."
            )
        with app.clients.admit(address):
            track = parse_track(raw_filter)
            async with app.hub.subscribe(track) as sub:
                abandoned = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_read_commands, app.hub, sub, limits)
                    nursery.start_soon(
                        _abandon_after_eviction, sub, nursery.cancel_scope, abandoned
                    )
                    await _send_frames(sub)
                    nursery.cancel_scope.cancel()
                if sub.going_away:
                    with trio.move_on_after(SHUTDOWN_TIMEOUT):
                        await websocket.close(frames.CLOSE_GOING_AWAY, "server shutting down")
                elif sub.evicted.is_set() and not abandoned.is_set():
                    await _close_with_error(
                        frames.CLOSE_TOO_SLOW,
                        "too_slow",
                        "Your connection could not keep up with the stream, so it was closed.",
                    )
    except TrackError as exc:
        await _close_with_error(frames.CLOSE_POLICY_VIOLATION, exc.code, exc.message)
    except AdmissionError as exc:
        going = exc.code == "shutting_down"
        code = frames.CLOSE_GOING_AWAY if going else frames.CLOSE_TRY_AGAIN_LATER
        await _close_with_error(code, exc.code, exc.message)
    return None


async def _abandon_after_eviction(
    sub: Subscription, scope: trio.CancelScope, abandoned: trio.Event
) -> None:
    """An evicted viewer stuck in a send gets a grace period, then its socket is dropped."""
    await sub.evicted.wait()
    await trio.sleep(EVICTION_GRACE_SECONDS)
    abandoned.set()
    scope.cancel()


async def _close_with_error(code: int, error_code: str, message: str) -> None:
    with trio.move_on_after(SHUTDOWN_TIMEOUT):
        await websocket.send(frames.error(error_code, message))
        await websocket.close(code, error_code)


async def _send_frames(sub: Subscription) -> None:
    """The only task that writes to this socket, so frames never interleave."""
    async for first in sub.messages:
        if sub.evicted.is_set():
            return
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(sub.messages.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for frame in _coalesce(batch):
            await websocket.send(frame)
        skipped = sub.take_skipped()
        if skipped:
            await websocket.send(frames.skipped(skipped))


_TWEET_PREFIX = '{"type":"tweet",'


def _coalesce(batch: list[frames.Frame]) -> list[frames.Frame]:
    """Join runs of consecutive tweet frames into one `tweets` frame; keep everything in order."""
    out: list[frames.Frame] = []
    run: list[frames.Frame] = []
    for frame in batch:
        if frame.startswith(_TWEET_PREFIX):
            run.append(frame)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else frames.tweets(run))
            run = []
        out.append(frame)
    if run:
        out.append(run[0] if len(run) == 1 else frames.tweets(run))
    return out


async def _read_commands(hub: Hub, sub: Subscription, limits: Limits) -> None:
    """In-band filter changes. A bad command gets an `error` frame; the socket stays open."""
    changes = ChangeRate(limits.filter_changes_per_minute)
    while True:
        data = await websocket.receive()
        if not data:  # an empty frame arrives as None or ""
            hub.notify(sub, frames.error("bad_message", "Messages must be JSON objects."))
            continue
        size = len(data.encode() if isinstance(data, str) else data)
        if size > limits.max_message_bytes:
            message = f"Messages are limited to {limits.max_message_bytes} bytes."
            hub.notify(sub, frames.error("message_too_large", message))
            continue
        try:
            command = orjson.loads(data)
        except orjson.JSONDecodeError:
            hub.notify(sub, frames.error("bad_message", "Messages must be JSON objects."))
            continue
        if not isinstance(command, dict) or command.get("type") != "filter":
            hub.notify(
                sub,
                frames.error("bad_message", 'Only {"type":"filter","track":"..."} is understood.'),
            )
            continue
        raw = command.get("track", "")
        if not isinstance(raw, str):
            hub.notify(sub, frames.error("bad_message", "track must be a string."))
            continue
        if len(raw) > limits.max_filter_length:
            message = f"Filters are limited to {limits.max_filter_length} characters."
            hub.notify(sub, frames.error("filter_too_long", message))
            continue
        if not changes.allow(trio.current_time()):
            message = (
                f"At most {limits.filter_changes_per_minute} filter changes a minute; "
                "this one was not applied."
            )
            hub.notify(sub, frames.error("too_many_changes", message))
            continue
        try:
            hub.retrack(sub, parse_track(raw))
        except TrackError as exc:
            hub.notify(sub, frames.error(exc.code, exc.message))


app = create_app()
