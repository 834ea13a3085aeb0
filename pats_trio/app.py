"""The Quart-Trio app and its composition root: `create_app` builds every part once.

Run it with `pats-trio` or `hypercorn --worker-class trio pats_trio.app:app`.

Importing this module builds nothing: no `.env` is read, no logging set up, no app made. Each
caller builds the one app it serves: `pats-trio serve` and each of its `--workers` with the
command line's overrides, the tests with their own settings. `app` is for hypercorn: a `LazyApp`
that builds the app from the environment on hypercorn's first call, its lifespan start-up, in
the process that serves it. Why not the alternatives:

* a module `__getattr__` (PEP 562): hypercorn finds the app with `eval("app", vars(module))`,
  which never consults it, so `pats_trio.app:app` would not be found;
* hypercorn's factory form (`'pats_trio.app:create_app()'`, which works too) or an `asgi`
  module: both change the command the README and every deployment already run.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from quart import Response, send_from_directory
from quart_trio import QuartTrio

from pats_trio import viewer
from pats_trio.admission import ClientCounter, Limits, host_allowed
from pats_trio.config import DEFAULT_STREAM_URL, DEFAULT_X_API_URL, Settings, load_settings
from pats_trio.credentials import BearerToken
from pats_trio.deployment import make_broker, warn_if_workers_share_no_broker
from pats_trio.descriptors import cap_viewers
from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.emulator.xapi import XEmulator, serve_xapi
from pats_trio.events import STREAM_KINDS, StreamKind
from pats_trio.gctune import tune_gc
from pats_trio.hub import Hub
from pats_trio.hypercorn_patch import repair_hypercorn
from pats_trio.logs import configure_logging
from pats_trio.looplag import LoopLag
from pats_trio.observability import register_observability
from pats_trio.protocol_limits import limit_hypercorn_defaults
from pats_trio.shares import ShareLimits
from pats_trio.upstream.bluesky import BlueskyUpstream
from pats_trio.upstream.source import Publish, Upstream
from pats_trio.upstream.twitter.client import make_http_client, open_stream
from pats_trio.upstream.twitter.runner import ConnectFn
from pats_trio.upstream.twitter.upstream import TwitterUpstream
from pats_trio.upstream.x import XUpstream
from pats_trio.worker import WORKER_ID, Worker

LOGGER = logging.getLogger(__name__)

FRONTEND_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "frontend",  # a source checkout
    Path(__file__).resolve().parent / "frontend",  # an installed wheel
)
SHUTDOWN_TIMEOUT = 5.0

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
    """QuartTrio serving one `Worker`: `/ws` goes to the viewer handler, the rest to Quart."""

    def __init__(self, worker: Worker, static: Path) -> None:
        super().__init__(__name__, static_folder=str(static), static_url_path="/static")
        self.worker = worker

    async def until_shutdown(self) -> None:
        """A hypercorn `shutdown_trigger`: on SIGINT or SIGTERM, close every viewer with 1001.

        Returning makes hypercorn stop accepting connections and wait, up to its graceful
        timeout, for the viewers' handlers to finish their close; then the hub and the upstream
        connections are cancelled.
        """
        hub = self.worker.hub
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                LOGGER.info(
                    "%s: closing %d viewers and shutting down",
                    signal.Signals(signum).name,
                    hub.viewer_count(),
                )
                break
        hub.close_all()

    async def asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        """Viewer sockets go straight to `viewer.serve_viewer`; everything else to Quart."""
        if scope["type"] in ("http", "websocket") and not self._host_served(scope):
            await viewer.refuse_host(scope, receive, send)
            return
        if scope["type"] == "websocket" and scope.get("path") == viewer.PATH:
            await viewer.serve_viewer(self.worker, scope, receive, send)
            return
        if scope["type"] == "http":
            send = _last_body_shielded(send)
        await super().asgi_app(scope, receive, send)

    def _host_served(self, scope: Any) -> bool:
        allowed = self.worker.settings.allowed_hosts
        if not allowed:
            return True
        host = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None
        )
        if host_allowed(host, allowed):
            return True
        self.worker.outsiders.warning("host", "refused a request for host %s", host or "")
        return False


def _last_body_shielded(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """Let a response's last `send` finish even if quart-trio cancels the request meanwhile.

    hypercorn (0.18, Trio worker) starts a kept-alive connection's idle timer from inside that
    last send, after it has told the app `http.disconnect`; quart-trio cancels the request's
    tasks on that disconnect, which cancelled the timer's start. So the server never closed an
    idle HTTP connection: every open browser tab held a descriptor, and Ctrl-C waited out the
    whole grace period. hypercorn shields the socket write itself, so this adds no wait.
    """

    async def send_shielded(message: Any) -> None:
        if message.get("type") == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
            return
        await send(message)

    return send_shielded


class _Upstreams:
    """Builds the upstream for each term of office, with what the serving run opened.

    The broker that calls `make` is built with the app, but the HTTP client and the built-in
    emulator (whose URL is known once it listens) belong to one serving run: `open` starts them
    when serving starts and `aclose` closes the client after. No upstream runs outside that.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http: httpx.AsyncClient | None = None
        self._connectors: dict[StreamKind, ConnectFn] = {}
        self._x_api_url = settings.x_api_url
        self._x_token = settings.x_token

    async def open(self, nursery: trio.Nursery) -> None:
        settings = self._settings
        self._http = make_http_client()
        if settings.source == "x":
            await self._open_x(nursery)
            return
        base_url = settings.twitter_stream_url
        if settings.source == "emulator" and base_url == DEFAULT_STREAM_URL:
            emulator = Emulator(rate=settings.emulator_rate, seed=settings.emulator_seed)
            base_url = await nursery.start(serve_emulator, emulator)
        if settings.missing_credentials and settings.source == "emulator":
            LOGGER.warning(
                "%s not set, so Twitter cannot be read: serving the demo stream instead",
                " and ".join(settings.missing_credentials)
                + (" is" if len(settings.missing_credentials) == 1 else " are"),
            )
        LOGGER.info("source: %s; connects when the first viewer arrives", self._described(base_url))
        self._connectors = _connectors(
            self._http, base_url, settings.credentials, delimited=settings.twitter_delimited
        )

    async def _open_x(self, nursery: trio.Nursery) -> None:
        """X's API, or without a token (and with the default URL) the built-in v2 emulator."""
        settings = self._settings
        if self._x_token is None and settings.x_api_url == DEFAULT_X_API_URL:
            emulator = XEmulator(rate=settings.emulator_rate, seed=settings.emulator_seed)
            self._x_api_url = await nursery.start(serve_xapi, emulator)
            self._x_token = BearerToken("demo")
            LOGGER.warning("X_BEARER_TOKEN not set: serving the X API v2 emulator's posts instead")
        elif self._x_token is None:
            self._x_token = BearerToken("demo")
        LOGGER.info(
            "source: X API v2 filtered stream at %s; cap %s posts a UTC day",
            self._x_api_url,
            f"{settings.x_max_posts_per_day:,}" if settings.x_max_posts_per_day else "no",
        )

    def _described(self, base_url: str) -> str:
        settings = self._settings
        if settings.source == "bluesky":
            hosts = len(settings.bluesky_hosts)
            return f"Bluesky Jetstream, {hosts} host{'s' if hosts > 1 else ''}"
        if settings.source == "twitter":
            return f"Twitter's streaming API at {base_url}"
        return f"the demo stream (emulator) at {base_url}"

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def make(self, publish: Publish) -> Upstream:
        if self._http is None:
            raise RuntimeError("an upstream is made only while the app serves")
        settings = self._settings
        if settings.source == "x":
            assert self._x_token is not None
            return XUpstream(
                publish,
                http=self._http,
                base_url=self._x_api_url,
                token=self._x_token,
                linger=settings.linger_seconds,
                max_posts_per_day=settings.x_max_posts_per_day,
                price_per_post=settings.x_price_per_post,
                rule_debounce=settings.filter_debounce_seconds,
            )
        if settings.source == "bluesky":
            return BlueskyUpstream(
                publish,
                hosts=settings.bluesky_hosts,
                appview=settings.bluesky_appview,
                http=self._http,
                linger=settings.linger_seconds,
            )
        return TwitterUpstream(
            publish,
            self._connectors,
            source=settings.source,
            linger=settings.linger_seconds,
            debounce=settings.filter_debounce_seconds,
            min_reconnect=settings.min_reconnect_seconds,
            max_connects_per_window=settings.max_connects_per_5min,
            delimited=settings.twitter_delimited,
        )


def _mode(settings: Settings) -> str:
    """What the page says it shows: real posts, or the demo (an emulator)."""
    if settings.source == "x":
        demo = settings.x_token is None and settings.x_api_url == DEFAULT_X_API_URL
        return "demo" if demo else "live"
    return {"twitter": "twitter", "bluesky": "live"}.get(settings.source, "demo")


def create_app(settings: Settings | None = None, *, worker_id: str = WORKER_ID) -> PatsApp:
    """The composition root: build every part once and wire them; nothing connects or starts a
    task until hypercorn starts serving the app.

    `worker_id` tells this app apart from others in the deployment; one per process by default.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    repair_hypercorn()
    limits = Limits(
        max_clients=cap_viewers(settings.max_clients),
        max_clients_per_ip=settings.max_clients_per_ip,
        max_filter_length=settings.max_filter_length,
        max_message_bytes=settings.max_message_bytes,
        filter_changes_per_minute=settings.filter_changes_per_minute,
    )
    upstreams = _Upstreams(settings)
    hub = Hub(
        make_broker(settings, upstreams.make, worker_id),
        mode=_mode(settings),
        source=settings.source,
        queue_size=settings.client_queue_size,
        slow_client_seconds=settings.slow_client_seconds,
        history_size=settings.history_size,
        worker_id=worker_id,
        shares=ShareLimits.from_settings(settings),
    )
    worker = Worker(
        id=worker_id,
        settings=settings,
        limits=limits,
        clients=ClientCounter(limits),
        hub=hub,
        loop_lag=LoopLag(),
    )
    static = frontend_dir()
    app = PatsApp(worker, static)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = SHUTDOWN_TIMEOUT
    app.config["MAX_CONTENT_LENGTH"] = limits.max_message_bytes

    @app.before_serving
    async def start_hub() -> None:
        await upstreams.open(app.nursery)
        warn_if_workers_share_no_broker(settings)
        await app.nursery.start(hub.run)
        await app.nursery.start(worker.loop_lag.run)
        tune_gc()

    @app.after_serving
    async def stop_hub() -> None:
        # Viewers are gone by now; the upstream closes at once rather than at quart-trio's deadline.
        app.nursery.cancel_scope.cancel()
        await upstreams.aclose()

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

    register_observability(app, worker)
    LOGGER.info("app built: worker %s, pid %d", worker_id, os.getpid())
    return app


class LazyApp:
    """The ASGI app hypercorn serves as `pats_trio.app:app`, built on its first call.

    hypercorn's first call is the lifespan start-up, so the app is built once, in the process
    that serves it, and every later call goes to that app.

    Error handling: settings that cannot run (a `SettingsError`, say) fail that start-up with
    `lifespan.startup.failed`, so hypercorn stops with the error, as it did when the app was
    built on import. Raised instead, hypercorn would serve on without lifespan support.
    """

    def __init__(self, build: Callable[[], PatsApp]) -> None:
        self._build = build
        self._app: PatsApp | None = None

    @property
    def built(self) -> bool:
        return self._app is not None

    def get(self) -> PatsApp:
        """The app, built on the first call."""
        if self._app is None:
            self._app = self._build()
            limit_hypercorn_defaults(self._app.worker.settings)
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            app = self.get()
        except Exception as exc:
            if scope["type"] != "lifespan":
                raise
            await receive()  # lifespan.startup
            message = f"{type(exc).__name__}: {exc}"
            await send({"type": "lifespan.startup.failed", "message": message})
            return
        await app(scope, receive, send)


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


app = LazyApp(create_app)
"""For `hypercorn --worker-class trio pats_trio.app:app`; see the module docstring."""
