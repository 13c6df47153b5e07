"""A lean HTTP/1.1 keep-alive server protocol on asyncio.

A general framework costs more per request than the whole RDAP answer, and the
simulator must also misbehave on purpose (hold a request forever, cut a body
short, drop a connection), which is simplest with the transport in hand.
Requests on one connection are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_HEAD_BYTES = 16384
MAX_BODY_BYTES = 1 << 20

REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
           400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    client: str
    keep_alive: bool

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay_s: float = 0.0
    truncate_to: int | None = None   # send only this many body bytes, then close
    close: bool = False
    omit_body: bool = False          # an answer to HEAD: the GET's status and headers, no body
    raw: bytes | None = None         # written as it is instead of a response (malformed HTTP), then close
    endless: bool = False            # a chunked body that never ends (until the client goes away)


#: Special answers: never answer (hold the connection), or close it without a word.
NEVER = object()
DROP = object()

Handler = Callable[[Request], "Response | object"]  # or an awaitable of a Response

_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class HttpProtocol(asyncio.Protocol):
    """One connection; ``handler`` turns a Request into a Response, NEVER or DROP."""

    def __init__(self, handler: Handler, connections: set["HttpProtocol"],
                 on_connect: Callable[[], None] | None = None) -> None:
        self._handler = handler
        self._connections = connections
        self._on_connect = on_connect
        self._buffer = bytearray()
        self._busy = False
        self._sink = False
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.client = ""

    # --- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        self._connections.add(self)
        if self._on_connect is not None:
            self._on_connect()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._sink:
            return
        self._buffer += data
        if not self._busy:
            self._serve()

    # --- internals -------------------------------------------------------------
    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _serve(self) -> None:
        while not self._busy and not self._sink and self.transport is not None:
            request = self._parse()
            if request is None:
                return
            outcome = self._handler(request)
            if asyncio.isfuture(outcome) or asyncio.iscoroutine(outcome):
                self._busy = True  # answered when the work (e.g. reopening a port) is done
                future = asyncio.ensure_future(outcome)
                future.add_done_callback(lambda done, keep=request.keep_alive: self._settle(done, keep))
                return
            if outcome is NEVER:
                self._sink = True  # hold the connection open, read and ignore everything
                self._buffer.clear()
                return
            if outcome is DROP:
                self.transport.abort()
                return
            assert isinstance(outcome, Response)
            outcome.omit_body = request.method == "HEAD"
            if not request.keep_alive:
                outcome.close = True
            if outcome.delay_s > 0:
                self._busy = True
                self._timer = asyncio.get_running_loop().call_later(outcome.delay_s, self._deliver, outcome)
                return
            self._write(outcome)

    def _settle(self, done: "asyncio.Future[Response]", keep_alive: bool) -> None:
        try:
            response = done.result()
        except Exception as exc:  # noqa: BLE001 - the client gets a 500 with the reason
            response = Response(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain")
        if not keep_alive:
            response.close = True
        self._deliver(response)

    def _deliver(self, response: Response) -> None:
        self._timer = None
        self._busy = False
        if self.transport is None:
            return
        self._write(response)
        if self._buffer:
            self._serve()

    def _write(self, response: Response) -> None:
        transport = self.transport
        if transport is None:
            return
        if response.raw is not None:
            self._sink = True
            transport.write(response.raw)
            transport.close()
            return
        if response.endless:
            self._sink = True
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + response.content_type.encode()
                            + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            self._stream_forever(response.body or b"x" * 65536)
            return
        body = response.body
        head = [b"HTTP/1.1 %d %s\r\n" % (response.status, REASONS.get(response.status, "Status").encode()),
                b"Date: " + _http_date() + b"\r\n",
                b"Content-Type: " + response.content_type.encode() + b"\r\n",
                b"Content-Length: %d\r\n" % len(body)]
        for name, value in response.headers:
            head.append(f"{name}: {value}\r\n".encode())
        close = response.close or response.truncate_to is not None
        head.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
        if response.omit_body:
            body = b""
        elif response.truncate_to is not None:
            body = body[: response.truncate_to]
        transport.write(b"".join(head) + body)
        if close:
            self._sink = True  # whatever else was pipelined is not answered
            transport.close()

    def _stream_forever(self, piece: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() < 1 << 20:  # only as fast as the client reads
            transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self._timer = asyncio.get_running_loop().call_later(0.001, self._stream_forever, piece)

    def _parse(self) -> Request | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._reject(431)
            return None
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._reject(400)
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._reject(400)
            return None
        if length > MAX_BODY_BYTES or length < 0:
            self._reject(413)
            return None
        total = end + 4 + length
        if len(buffer) < total:
            return None
        body = bytes(buffer[end + 4: total])
        del buffer[:total]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if parts[2] == "HTTP/1.1" else connection == "keep-alive"
        return Request(parts[0], parts[1], headers, body, self.client, keep_alive)

    def _reject(self, status: int) -> None:
        self._buffer.clear()
        self._write(Response(status, b"", "text/plain", close=True))
