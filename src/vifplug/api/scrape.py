"""The metrics listener's application: ``GET /metrics`` and nothing else.

A listener of its own (``[metrics] address`` and ``port``), as Kube-OVN,
Antrea and ovn-kubernetes have, so that a Prometheus needs neither the
plug API's bearer token nor a path to the unix socket, and a scraper that
can reach it can do nothing but read counts.  A bare ASGI callable rather
than a FastAPI app: there are no models to validate and no routes to
document (the plug API's own ``/metrics`` stays in the OpenAPI document).
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from vifplug.api import metrics as metrics_mod


def _headers(content_type: str, length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]


class ScrapeApp:
    """Serves ``metrics.render()``; 404 for other paths, 405 for other methods."""

    def __init__(self, metrics: metrics_mod.Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"not found: only /metrics is served here\n", "text/plain"
        elif method not in ("GET", "HEAD"):
            status, body, ctype = 405, b"method not allowed: GET /metrics\n", "text/plain"
        else:
            # Rendering reads the state store: off the event loop.
            status, body = 200, await asyncio.to_thread(self.metrics.render)
            ctype = metrics_mod.CONTENT_TYPE
        headers = _headers(ctype, len(body))
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
