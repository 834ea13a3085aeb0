"""A WebSocket over HTTP/2 (RFC 8441's extended CONNECT) for tests, on the `h2` library: the
stream's DATA as a `trio.abc.Stream`, which a wsproto `Connection` reads WebSocket frames from
(tests/test_prepared_frames.py's `WsprotoViewer`), as hypercorn does on the server side.

Over TLS (`wss://`, ALPN h2) or in cleartext with prior knowledge (`ws://`, h2c), one WebSocket
per HTTP/2 connection. Error handling: a server that does not advertise
SETTINGS_ENABLE_CONNECT_PROTOCOL, or answers the CONNECT with anything but 200, raises
`AssertionError`; the stream's end, a reset or the connection's end reads as end of file.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio

READ_SIZE = 65536


class H2WebSocketStream(trio.abc.Stream):
    """The DATA of one extended CONNECT stream: what `receive_some` returns and `send_all`
    sends, with flow control acknowledged as it is read."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        connection: h2.connection.H2Connection,
        stream_id: int,
        response: dict[bytes, bytes],
    ) -> None:
        self.transport = transport
        self.connection = connection
        self.stream_id = stream_id
        self.response = response
        """The CONNECT's response headers (`sec-websocket-extensions`, `:status`...)."""
        self._received = bytearray()
        self._ended = False

    @classmethod
    async def connect(
        cls,
        ws_url: str,
        *,
        headers: list[tuple[bytes, bytes]],
        ssl_context: ssl.SSLContext | None = None,
    ) -> H2WebSocketStream:
        """Open the connection, wait for the server's settings, send the extended CONNECT for
        the URL's path with `headers` (the WebSocket ones: version, extensions, subprotocols)
        and return once it is answered with 200."""
        url = urlsplit(ws_url)
        assert url.hostname is not None
        assert url.port is not None
        transport: trio.abc.Stream = await trio.open_tcp_stream(url.hostname, url.port)
        if url.scheme == "wss":
            assert ssl_context is not None, "a wss:// URL needs an ssl_context"
            ssl_context.set_alpn_protocols(["h2"])
            tls = trio.SSLStream(transport, ssl_context, server_hostname=url.hostname)
            await tls.do_handshake()
            assert tls.selected_alpn_protocol() == "h2", "the server did not pick h2"
            transport = tls
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        connection.initiate_connection()
        await transport.send_all(connection.data_to_send())
        connect_enabled = False
        while not connect_enabled:
            for event in await _events(transport, connection):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    setting = event.changed_settings.get(
                        h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
                    )
                    assert setting is not None, "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
                    assert setting.new_value == 1
                    connect_enabled = True
        stream_id = connection.get_next_available_stream_id()
        request = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https" if url.scheme == "wss" else b"http"),
            (
                b":path",
                (url.path or "/").encode() + (b"?" + url.query.encode() if url.query else b""),
            ),
            (b":authority", url.netloc.encode()),
            *headers,
        ]
        connection.send_headers(stream_id, request)
        await transport.send_all(connection.data_to_send())
        while True:
            for event in await _events(transport, connection):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    response = {bytes(k): bytes(v) for k, v in event.headers}
                    assert response[b":status"] == b"200", response
                    return cls(transport, connection, stream_id, response)
                assert not isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._received and not self._ended:
            events = await _events(self.transport, self.connection)
            if not events:
                self._ended = True
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                    self._received += event.data
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, self.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    self._ended = self._ended or event.stream_id == self.stream_id
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self._ended = True
            await self._flush()
        size = len(self._received) if max_bytes is None else max_bytes
        data = bytes(self._received[:size])
        del self._received[:size]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.connection.send_data(self.stream_id, bytes(data))
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            await self.transport.send_all(data)


async def _events(
    transport: trio.abc.Stream, connection: h2.connection.H2Connection
) -> list[h2.events.Event]:
    """The events of the next bytes read, after sending what they call for (settings acks,
    ping answers); an empty list at end of file."""
    data = await transport.receive_some(READ_SIZE)
    if not data:
        return []
    events = connection.receive_data(data)
    pending = connection.data_to_send()
    if pending:
        await transport.send_all(pending)
    return list(events)
