"""A raw HTTP/2 client (the `h2` library on a plain socket) for hostile-client tests.

gRPC clients always finish what they start; an attacker does not. `RawConnection` opens gRPC
calls that never send their request message, or send a length prefix that lies, and reads what
the server answers (status trailers, resets, GOAWAY).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def grpc_frame(message: bytes, claimed: int | None = None) -> bytes:
    """A gRPC length-prefixed message; `claimed` lies about its length."""
    length = len(message) if claimed is None else claimed
    return struct.pack(">?I", False, length) + message


@dataclass
class StreamState:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: int | None = None  # the error code of a RST_STREAM from the server
    ended: bool = False

    @property
    def status(self) -> str | None:
        return self.headers.get("grpc-status")


class RawConnection:
    """One HTTP/2 connection to a gRPC server, driven by hand."""

    def __init__(self, host: str, port: int, window: int | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = f"{host}:{port}"
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        if window is not None:  # a tiny window: the server blocks on flow control at once
            self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.streams: dict[int, StreamState] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def open_call(self, path: str, *, end_stream: bool = False, timeout_s: float = 0) -> int:
        """Send a call's HEADERS (and nothing else); returns its stream id."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if timeout_s:
            headers.append(("grpc-timeout", f"{int(timeout_s * 1000)}m"))
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.streams[stream_id] = StreamState()
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.h2.send_data(stream_id, data, end_stream=end_stream)

    def reset(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id)

    def pump(self, seconds: float) -> None:
        """Read and handle what the server sends for `seconds` (acknowledging its SETTINGS and
        PINGs, never opening flow control beyond what h2 does by itself)."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            except OSError:
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            if self.goaway is not None:  # h2 takes nothing after GOAWAY; wait for the close
                continue
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                # A frame after the server's GOAWAY in the same read: h2 closed on the GOAWAY.
                if self.h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                    raise
                self.goaway = self.goaway or h2.events.ConnectionTerminated()
                continue
            for event in events:
                self._handle(event)
            self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        state = self.streams.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            if state is not None:
                state.headers.update(dict(event.headers))  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived):
            if state is not None:
                state.data += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if state is not None:
                state.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if state is not None:
                state.reset = int(event.error_code)
                state.ended = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def answered(self) -> int:
        """Calls the server has finished (status sent or stream reset)."""
        return sum(1 for state in self.streams.values() if state.ended)

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self.flush()
        except Exception:  # the connection may be gone already
            pass
        self.sock.close()
        self.closed = True

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
