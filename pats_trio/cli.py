"""The `pats-trio` command: serve the app, run the streaming-API emulator, or tail the stream."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from pats_trio import __version__
from pats_trio.logs import configure_logging

LOGGER = logging.getLogger("pats_trio")


async def _until_signalled() -> None:
    """Return on the first SIGINT or SIGTERM, so hypercorn can shut down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            LOGGER.info("received %s, shutting down", signal.Signals(signum).name)
            return


def serve_command(args: argparse.Namespace) -> None:
    from pats_trio.app import create_app
    from pats_trio.config import load_settings
    from pats_trio.supervisor import Supervisor, bind, hypercorn_config, serve_on

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    if args.workers > 1:
        raise SystemExit(Supervisor(settings, args.workers, overrides).run())
    config = hypercorn_config(settings)
    sockets = bind(config, settings)
    LOGGER.info("serving on http://%s:%d/", settings.host, settings.port)
    app = create_app(settings)
    serve_on(app, config, sockets, app.until_shutdown)


def emulate_command(args: argparse.Namespace) -> None:
    from pats_trio.emulator import Emulator, serve_emulator

    configure_logging(args.log_level)
    if args.jetstream:
        jetstream_command(args)
        return
    if args.x:
        x_command(args)
        return
    emulator = Emulator(rate=args.rate, seed=args.seed, control=args.control)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(
                lambda task_status: serve_emulator(
                    emulator, host=args.host, port=args.port, task_status=task_status
                )
            )
            print(f"emulating the Twitter streaming API at {base_url}", flush=True)
            print(f"point pats-trio at it with TWITTER_STREAM_URL={base_url}", flush=True)
            await _until_signalled()
            nursery.cancel_scope.cancel()

    trio.run(main)


def jetstream_command(args: argparse.Namespace) -> None:
    """Bluesky's Jetstream and AppView on one port, as its own process (tests, demos)."""
    from pats_trio.emulator.jetstream import JetstreamEmulator, serve_jetstream

    emulator = JetstreamEmulator(rate=args.rate, seed=args.seed, control=args.control)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: serve_jetstream(
                    emulator, host=args.host, port=args.port, task_status=task_status
                )
            )
            # One line with both URLs: the browser tests read it to find the emulator.
            banner = f"emulating Bluesky's Jetstream at {urls.jetstream}"
            print(f"{banner} and the AppView at {urls.appview}", flush=True)
            print(
                "point pats-trio at it with PATS_SOURCE=bluesky "
                f"PATS_BLUESKY_HOSTS={urls.jetstream} PATS_BLUESKY_APPVIEW={urls.appview}",
                flush=True,
            )
            await _until_signalled()
            nursery.cancel_scope.cancel()

    trio.run(main)


def x_command(args: argparse.Namespace) -> None:
    """X API v2's filtered stream and rules endpoints, as its own process (tests, demos)."""
    from pats_trio.emulator.xapi import XEmulator, serve_xapi

    emulator = XEmulator(rate=args.rate, seed=args.seed)
    emulator.control = args.control

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(
                lambda task_status: serve_xapi(
                    emulator, host=args.host, port=args.port, task_status=task_status
                )
            )
            print(f"emulating the X API v2 filtered stream at {base_url}", flush=True)
            print(
                f"point pats-trio at it with PATS_SOURCE=x X_API_URL={base_url} "
                "X_BEARER_TOKEN=anything",
                flush=True,
            )
            await _until_signalled()
            nursery.cancel_scope.cancel()

    trio.run(main)


def tail_command(args: argparse.Namespace) -> None:
    from pats_trio.tail import local_server_url, run

    url = args.url or local_server_url()
    raise SystemExit(run(url, track=args.filter, json_lines=args.json))


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pats-trio",
        description="Realtime tweets in the browser, on Trio.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"pats-trio {__version__}")
    parser.set_defaults(handler=serve_command, host=None, port=None, workers=1)
    commands = parser.add_subparsers(title="commands")
    helpful = _Help
    run = commands.add_parser("serve", help="serve the app (the default)", formatter_class=helpful)
    run.add_argument("--host", help="address to bind (PATS_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to bind (PATS_PORT, default 8000)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on one port, each replaced if it dies (more than 1: set REDIS_URL)",
    )
    run.set_defaults(handler=serve_command)
    emulate = commands.add_parser(
        "emulate",
        formatter_class=helpful,
        help="run the streaming-API emulator (or, with --jetstream, Bluesky's) on its own",
    )
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8001)
    emulate.add_argument(
        "--jetstream",
        action="store_true",
        help="emulate Bluesky's Jetstream and AppView (for PATS_SOURCE=bluesky) instead of Twitter",
    )
    emulate.add_argument(
        "--x",
        action="store_true",
        help="emulate the X API v2 filtered stream and its rules (for PATS_SOURCE=x) instead",
    )
    emulate.add_argument(
        "--rate", type=float, default=5.0, help="sample tweets (or Jetstream events) per second"
    )
    emulate.add_argument("--seed", type=int, default=None, help="make the stream repeatable")
    emulate.add_argument(
        "--control",
        action="store_true",
        help="serve the test control API under /_control (inject tweets or posts, list "
        "connections; with --x, set and fail X's usage figures)",
    )
    emulate.add_argument("--log-level", default="INFO")
    emulate.set_defaults(handler=emulate_command)
    tail = commands.add_parser(
        "tail", help="follow the stream in a terminal, reconnecting", formatter_class=helpful
    )
    tail.add_argument("--filter", help='keywords, as in the page: "python, trio rust"')
    tail.add_argument(
        "--url",
        help="the server's /ws URL, or the page's http(s):// address (default: "
        "ws://PATS_HOST:PATS_PORT/ws, from the environment or .env, else ws://127.0.0.1:8000/ws)",
    )
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per tweet, for piping (jq, ...)"
    )
    tail.set_defaults(handler=tail_command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Settings that cannot run are one line and exit status 2, never a traceback; so is a
    second Ctrl-C, which ends the process at once."""
    from pats_trio.config import SettingsError

    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except SettingsError as exc:
        print(f"pats-trio: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
