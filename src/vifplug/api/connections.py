"""Connections: how long a client may take, how many may be open, one log line per flood.

Why not uvicorn alone.  Its keep-alive timer starts only after a first
answer, so a connection that never sends anything, or sends its headers one
byte a second, is held forever; it gives asyncio no TLS handshake timeout
(asyncio's default is 60 s); ``limit_concurrency`` still accepts every
connection, and its file descriptor, before answering plain text; and when
the descriptors run out, asyncio logs a traceback for every failed
``accept()``.  So each listener accepts through an ``Acceptor`` of its own
(at most ``[api] max_connections`` open at once, TLS handshakes included,
with ``[api] tls_handshake_timeout``), and each connection is a ``Protocol``:
uvicorn's h11 protocol with two timers.

* **idle** (``[api] idle_timeout``): a connection that says nothing, once
  opened or after an answer, is closed (uvicorn's keep-alive timer, started
  on connect too).
* **request** (``[api] request_timeout``): from the moment a request may
  start (connect, or the previous answer) to its last body byte.  A client
  that is slower gets a 408 with the envelope, if it sent anything, and is
  disconnected.  While the application computes an answer no timer runs: a
  plug may legitimately wait for its port for minutes.

Refused and timed-out connections are logged by ``FloodLog``: the first at
once, the others counted and reported in one line per window, so that a
flood costs a few lines, not one traceback per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from vifplug.api import errors

LOG = logging.getLogger(__name__)

#: accept() errors that mean "out of descriptors or memory": wait, then retry.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESOURCE_RETRY = 0.5
#: Seconds a connection answered past h11 (408, malformed HTTP) is kept open,
#: dropping input, so its client reads the answer instead of a reset.
LINGER_SECONDS = 2.0
#: Seconds a flood of one kind is counted before its summary line.
FLOOD_WINDOW = 10.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """The ``[api]`` limits of one listener."""

    idle_timeout: float = 5.0
    request_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    max_connections: int = 512


class FloodLog:
    """One warning per kind of event, then one line per window with a count.

    The first event of a kind is logged at once; events of that kind in the
    next ``window`` seconds are only counted, and the count is logged when
    the window ends (which opens the next window if there was any).
    """

    def __init__(self, prefix: str, *, window: float = FLOOD_WINDOW) -> None:
        self.prefix = prefix
        self.window = window
        self._counts: dict[str, int] = {}

    def note(self, kind: str, message: str) -> None:
        if kind in self._counts:
            self._counts[kind] += 1
            return
        self._counts[kind] = 0
        LOG.warning("%s: %s", self.prefix, message)
        asyncio.get_running_loop().call_later(self.window, self._flush, kind, message)

    def _flush(self, kind: str, message: str) -> None:
        count = self._counts.get(kind, 0)
        if not count:
            self._counts.pop(kind, None)
            return
        LOG.warning(
            "%s: %s (%d more times in the last %g s)", self.prefix, message, count, self.window
        )
        self._counts[kind] = 0
        asyncio.get_running_loop().call_later(self.window, self._flush, kind, message)


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer with the envelope, for a connection
    h11 can no longer answer through (it is closed right after)."""
    body = json.dumps(errors.envelope(code, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with an idle and a request timer, and the error
    envelope for HTTP that h11 cannot parse."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        *,
        limits: Limits,
        flood: FloodLog,
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state)
        self.limits = limits
        self.flood = flood
        self.on_close = on_close
        self.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._heard = False  # bytes arrived since the request timer started
        self._lingering = False
        self._answered = False  # a response was completed on this connection
        self._draining = False  # shutdown began before its first request

    # -- the asyncio protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # answered and closing: what still arrives is dropped
        self._heard = True
        super().data_received(data)
        self._watch()

    def _linger_close(self) -> None:
        """Close after an answer written past h11, the way web servers do a
        lingering close: end our side, keep reading and dropping what the
        client still sends for a moment, then close.  Closing at once with
        unread input makes the kernel reset the connection, and the client
        loses the answer it had not read yet."""
        self._lingering = True
        with contextlib.suppress(Exception):
            if self.transport.can_write_eof():
                self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def on_response_complete(self) -> None:
        self._answered = True
        super().on_response_complete()
        self._watch()

    def handle_events(self) -> None:
        super().handle_events()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer it, then close

    def shutdown(self) -> None:
        """A graceful stop.  uvicorn closes every connection that has no
        request in progress; that loses the request of a client that
        connected just before (it is in flight or in our receive buffer:
        the client sees the connection reset).  A connection that was never
        answered is given its first request instead, answered with
        ``Connection: close``; the request timer bounds the wait.  An idle
        keep-alive connection is closed, as every HTTP server does."""
        if self.cycle is None and not self._answered and not self.transport.is_closing():
            self._draining = True
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        try:
            super().connection_lost(exc)
        finally:
            self.on_close()

    # -- the request timer --------------------------------------------------------------
    def _watch(self) -> None:
        """Run the request timer while a request is (or may start) arriving;
        stop it once the request is complete, while the answer is computed."""
        if self.transport.is_closing() or self.conn.their_state in (
            h11.DONE,
            h11.MUST_CLOSE,
            h11.CLOSED,
            h11.ERROR,
        ):
            self._stop_deadline()
        elif self._deadline is None:
            self._heard = bool(self.conn.trailing_data[0])
            self._deadline = self.loop.call_later(self.limits.request_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        limit = self.limits.request_timeout
        if self._heard and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(
                _raw_response(
                    408,
                    "Request Timeout",
                    errors.REQUEST_TIMEOUT,
                    f"The request was not received completely within {limit:g} seconds.",
                )
            )
        self.flood.note(
            "slow",
            f"closed a connection that sent no complete request within "
            f"[api] request_timeout ({limit:g} s)",
        )
        self._linger_close()

    # -- HTTP h11 cannot parse ------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """The envelope instead of uvicorn's plain text (``msg`` says nothing more)."""
        self.flood.note("malformed", "answered 400 to a request that is not valid HTTP/1.1")
        body = json.dumps(
            errors.envelope(
                errors.MALFORMED_HTTP,
                "The request is not valid HTTP/1.1 (request line, headers or body framing).",
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self.transport.write(
                self.conn.send(
                    h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
                )
                or b""
            )
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            pass  # an answer was already under way: only closing is left
        self._linger_close()


ProtocolFactory = Callable[[Callable[[], None]], asyncio.Protocol]


class Acceptor:
    """``accept()`` on one listening socket, at most ``max_connections`` at once.

    Stands where uvicorn keeps its ``asyncio.Server``: uvicorn's shutdown
    calls ``close()`` and ``wait_closed()``.  ``factory(on_close)`` makes the
    protocol of one connection, which calls ``on_close`` when it is lost.  A
    connection over the limit is closed at once (the client sees the
    connection closed, not a hang); so is a TLS handshake that fails or
    does not finish within ``tls_handshake_timeout``.
    """

    def __init__(
        self,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        ssl_context: ssl.SSLContext | None,
        limits: Limits,
        flood: FloodLog,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.limits = limits
        self.flood = flood
        #: Connections open now, TLS handshakes in progress included.
        self.active = 0
        self._starting: set[asyncio.Task[None]] = set()
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    def close(self) -> None:
        """Stop accepting.  Connections accepted already are handed to their
        protocol still (at most ``tls_handshake_timeout`` for a handshake),
        so that uvicorn's shutdown answers their request."""
        self._task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    async def _readable(self) -> None:
        """Until the listening socket has a connection to accept."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    async def _accept_loop(self) -> None:
        """Accept until closed.  Waiting for readability, then ``accept()``
        without an await between them (not ``loop.sock_accept``): a
        cancellation (``close()`` at shutdown) then never drops a
        connection already taken from the queue; those not taken stay queued
        for the next daemon when systemd holds the socket."""
        loop = asyncio.get_running_loop()
        while True:
            await self._readable()
            try:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                # Out of descriptors: the connections wait in the backlog
                # until some close; a client that gave up is just gone.
                self.flood.note(
                    f"accept-{exc.errno}", f"accept() failed ({exc.strerror}); retrying"
                )
                await asyncio.sleep(RESOURCE_RETRY if exc.errno in _OUT_OF_RESOURCES else 0.01)
                continue
            if self.active >= self.limits.max_connections:
                conn.close()
                self.flood.note(
                    "limit",
                    f"refused a connection: {self.active} are open, "
                    f"[api] max_connections is {self.limits.max_connections}",
                )
                continue
            self.active += 1
            task = loop.create_task(self._start(conn))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, conn: socket.socket) -> None:
        """Hand ``conn`` to a protocol, after the TLS handshake if there is one."""
        loop = asyncio.get_running_loop()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.active -= 1

        try:
            if self.ssl_context is None:
                await loop.connect_accepted_socket(lambda: self.factory(release), conn)
            else:
                await loop.connect_accepted_socket(
                    lambda: self.factory(release),
                    conn,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.limits.tls_handshake_timeout,
                    ssl_shutdown_timeout=self.limits.tls_handshake_timeout,
                )
        except (OSError, asyncio.CancelledError) as exc:
            release()
            conn.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.flood.note(
                "handshake",
                f"closed a connection whose TLS handshake failed or took longer than "
                f"[api] tls_handshake_timeout ({self.limits.tls_handshake_timeout:g} s)",
            )
