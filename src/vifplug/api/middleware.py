"""Pure ASGI middleware: what is checked and recorded around every request.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) because both must act
before FastAPI touches the request: the bearer token, the media type and
the body size are checked before any JSON is parsed, and the access log sees
the status of every answer, the router's 404/405 and the guard's own
refusals included.

A refusal that comes before the body was read reads it first (and throws it
away, up to ``DRAIN_LIMIT`` bytes): closing a socket with unread data makes
the kernel send a reset, and a client still sending its body would lose the
answer with it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vifplug import exceptions
from vifplug.api import errors
from vifplug.api import metrics as metrics_mod

# The access log keeps the logger name it had when it lived in ``app``: the
# documented log line (docs/operations.md) names ``vifplug.api.app``, and a
# filter on it must keep working.
LOG = logging.getLogger("vifplug.api.app")

#: Most bytes of a refused body read and thrown away before the answer; past
#: it the answer is sent and the connection closed (the request timeout of
#: ``connections`` bounds how long a slow body is waited for).
DRAIN_LIMIT = 64 * 1024 * 1024


async def drain(receive: Receive) -> bool:
    """Read the request body to its end and throw it away; False when it was
    larger than ``DRAIN_LIMIT`` or the client went away."""
    seen = 0
    while seen <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


class Guard:
    """Bearer token, media type and body size, checked before anything is parsed.

    A body announced larger than ``max_body_bytes`` is refused without
    reading it; a chunked body is counted as it arrives and refused when it
    crosses the limit (the route's body parsing sees an HTTP 413).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        token: str | None,
        on_error: Callable[[str], None],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.token = token.encode() if token is not None else None
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token is not None and not self._authorized(headers.get(b"authorization")):
            exc = exceptions.Unauthorized()
            self.on_error(exc.code)
            await errors.from_exception(exc)(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and b"transfer-encoding" in headers:
            await self._ambiguous(scope, receive, send)
            return
        if self._has_body(headers) and not self._is_json(headers.get(b"content-type")):
            self.on_error(errors.UNSUPPORTED_MEDIA_TYPE)
            await errors.error_response(
                errors.UNSUPPORTED_MEDIA_TYPE,
                "The request body must be JSON (Content-Type: application/json).",
                {"content_type": (headers.get(b"content-type") or b"").decode("latin-1")},
            )(scope, receive, send)
            return
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                too_big = False  # h11 refuses a malformed Content-Length itself
            if too_big:
                await self._too_large(scope, receive, send)
                return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise StarletteHTTPException(status_code=413)
            return message

        await self.app(scope, counted_receive, send)

    @staticmethod
    def _has_body(headers: dict[bytes, bytes]) -> bool:
        if b"transfer-encoding" in headers:
            return True
        try:
            return int(headers.get(b"content-length", b"0")) > 0
        except ValueError:
            return True

    @staticmethod
    def _is_json(content_type: bytes | None) -> bool:
        if content_type is None:
            return False
        media = content_type.split(b";", 1)[0].strip().lower()
        return media == b"application/json" or (
            media.startswith(b"application/") and media.endswith(b"+json")
        )

    def _authorized(self, header: bytes | None) -> bool:
        assert self.token is not None
        if header is None:
            return False
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.on_error(errors.REQUEST_TOO_LARGE)
        response = errors.error_response(
            errors.REQUEST_TOO_LARGE,
            f"The request body is larger than the {self.max_body_bytes} bytes accepted.",
            {"max_body_bytes": self.max_body_bytes},
        )
        if not await drain(receive):
            response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def _ambiguous(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Both Transfer-Encoding and Content-Length: how request smuggling
        starts (RFC 9112 6.3).  Refused, and the connection is closed after
        the answer, whatever the body turned out to be."""
        self.on_error(exceptions.InvalidRequest.code)
        exc = exceptions.InvalidRequest(
            reason="it has both Transfer-Encoding and Content-Length; send one of them"
        )
        response = errors.from_exception(exc)
        await drain(receive)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class AccessLog:
    """One log line per request, with the VIF id when there is one, and the
    request counter for /metrics."""

    def __init__(self, app: ASGIApp, *, metrics: metrics_mod.Metrics, listener: str) -> None:
        self.app = app
        self.metrics = metrics
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(
                method=scope["method"], route=template, status=str(status)
            ).inc()
            if template not in ("/healthz", "/readyz", "/metrics"):
                state = scope.get("state") or {}
                vif_id = state.get("vif_id") or (scope.get("path_params") or {}).get("vif_id")
                LOG.info(
                    "%s %s %s -> %d in %.3fs%s",
                    self.listener,
                    scope["method"],
                    errors.printable(scope["path"]),
                    status,
                    time.monotonic() - started,
                    f" (VIF {errors.printable(str(vif_id))})" if vif_id else "",
                )
