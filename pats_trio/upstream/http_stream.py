"""A streaming HTTP response body for the sources that read one (Twitter v1.1, X v2): chunks as
they arrive, with httpx's transport failures turned into the source's own typed error, so the
lifecycle judges them as network errors and no secret reaches a log."""

from __future__ import annotations

from collections.abc import Callable

import httpx


def describe_transport_error(exc: httpx.TransportError) -> str:
    """The class name, since httpx's own message is often empty (a reset, a read timeout)."""
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class RawChunks:
    """The response body as it arrives. `failure` turns a failure's description into the error
    to raise (and redacts it)."""

    def __init__(self, response: httpx.Response, failure: Callable[[str], Exception]) -> None:
        self._chunks = response.aiter_raw()
        self._failure = failure

    def __aiter__(self) -> RawChunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._chunks)
        except httpx.TransportError as exc:
            raise self._failure(describe_transport_error(exc)) from exc
