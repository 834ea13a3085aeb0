"""A Twitter v1.1 streaming-API emulator: synthetic tweets over real HTTP, with fault injection."""

from pats_trio.emulator.server import ConnectionRecord, Emulator, serve_emulator

__all__ = ["ConnectionRecord", "Emulator", "serve_emulator"]
