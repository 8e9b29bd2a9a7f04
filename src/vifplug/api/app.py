"""The FastAPI application of API v1 around one ``Service``.

Why it looks like this:

* **Blocking calls in a pool of our own.**  Service calls block (netlink,
  OVSDB commits, fsyncs, waiting for an ofport), so every one runs in the
  daemon's ``ThreadPoolExecutor`` sized ``[api] workers``, never in the event
  loop and never in anyio's default 40-thread limiter: the more plugs are in
  flight together, the more the OVSDB layer coalesces into one transaction.
  Every endpoint is therefore ``async def`` and hands its work to ``_call``.
* **Errors are data.**  Endpoints raise ``vifplug.exceptions``; ``errors``
  turns them, FastAPI's validation failures and the router's 404/405 into the
  one envelope.  Body size and (on TCP) the bearer token are checked by pure
  ASGI middleware before any JSON is parsed.
* **One app per listener.**  The unix socket needs no token, the TCP listener
  does: ``create_app(service, runtime=..., token=...)`` is called once per
  listener with the same ``Runtime`` (pool, metrics, readiness).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import vifplug
from vifplug import exceptions
from vifplug.api import errors, models
from vifplug.api import metrics as metrics_mod
from vifplug.negotiation import hostinfo
from vifplug.plugging import service as service_mod

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest ``timeout=`` a plug may ask for, in seconds.
MAX_PLUG_TIMEOUT = 3600.0

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": models.ErrorEnvelope, "description": description}
    for status, description in (
        (400, "the request is invalid (code says how)"),
        (413, "the body is larger than [api] max_body_bytes"),
        (415, "the body is not application/json"),
    )
}


VifId = Annotated[str, Path(description="the VIF's id (os_vif VIFBase.id)")]


@dataclasses.dataclass
class Runtime:
    """What the daemon shares with every listener's app.

    ``readiness()`` answers ``(ready, details)``; ``network_manager()``
    describes the HostInfo push for ``/readyz``.
    """

    executor: ThreadPoolExecutor
    metrics: metrics_mod.Metrics
    readiness: Callable[[], tuple[bool, dict[str, Any]]] = lambda: (True, {})
    max_body_bytes: int = 1048576


# --- pure ASGI middleware ----------------------------------------------------------


class _Guard:
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
        # The body is not read: close the connection instead of draining it.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class _AccessLog:
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
                    scope["path"],
                    status,
                    time.monotonic() - started,
                    f" (VIF {vif_id})" if vif_id else "",
                )


# --- the application -----------------------------------------------------------------


def create_app(
    service: Any,
    *,
    runtime: Runtime | None = None,
    token: str | None = None,
    listener: str = "unix",
) -> FastAPI:
    """The API v1 application around ``service`` (a ``vifplug.plugging.service.Service``).

    ``token``: when set, every request must carry ``Authorization: Bearer
    <token>`` (the TCP listener).  ``runtime`` defaults to a small private
    pool, for documentation generation and tests.
    """
    rt = runtime or Runtime(
        executor=ThreadPoolExecutor(max_workers=4), metrics=metrics_mod.Metrics()
    )
    app = FastAPI(
        title="vifplug",
        version=vifplug.__version__,
        summary="Host-side VIF plugging daemon: os-vif compatible objects, Open vSwitch "
        "through the OVSDB IDL, devices through netlink.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        redirect_slashes=False,
    )
    app.state.service = service
    app.state.runtime = rt
    errors.install(app, on_error=rt.metrics.count_error)
    app.add_middleware(
        _Guard, max_body_bytes=rt.max_body_bytes, token=token, on_error=rt.metrics.count_error
    )
    app.add_middleware(_AccessLog, metrics=rt.metrics, listener=listener)

    async def call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(rt.executor, functools.partial(fn, *args, **kwargs))

    def render(record: Any) -> models.Vif:
        return models.Vif.from_record(record, ofport=service.ofport(record))

    # -- negotiation --------------------------------------------------------------
    @app.get(
        "/v1/host-info",
        tags=["negotiation"],
        responses={
            **_ERROR_RESPONSES,
            406: {
                "model": models.ErrorEnvelope,
                "description": "that version cannot be produced; details "
                "carry max_version and min_version",
            },
        },
    )
    async def host_info(
        version: Annotated[
            str | None, Query(description="HostInfo version to backlevel to, e.g. 1.0")
        ] = None,
        manifest: Annotated[
            str | None,
            Query(
                description="oslo.versionedobjects version manifest of the peer, e.g. "
                "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"
            ),
        ] = None,
    ) -> dict[str, Any]:
        """This host's HostInfo primitive (os_vif namespace)."""

        def work() -> dict[str, Any]:
            info = service.host_info()
            result: dict[str, Any] = hostinfo.backlevel(info, version=version, manifest=manifest)
            return result

        return await call(work)

    # -- VIFs ----------------------------------------------------------------------
    @app.post(
        "/v1/vifs",
        tags=["vifs"],
        status_code=201,
        responses={
            **_ERROR_RESPONSES,
            200: {"model": models.Vif, "description": "the same request again: nothing changed"},
            409: {
                "model": models.ErrorEnvelope,
                "description": "the VIF id is plugged with other content",
            },
            504: {
                "model": models.ErrorEnvelope,
                "description": "the wait condition did not happen in time; "
                "the VIF stays plugged and listed",
            },
        },
    )
    async def plug(
        request: Request,
        response: Response,
        body: models.PlugBody,
        wait: Annotated[models.WaitMode, Query(description="what the answer waits for")] = "ofport",
        timeout: Annotated[
            float | None,
            Query(
                ge=0,
                le=MAX_PLUG_TIMEOUT,
                description="seconds to wait; default [api] default_timeout",
            ),
        ] = None,
    ) -> models.Vif:
        """Plug a VIF (idempotent): 201 the first time, 200 for the same request."""
        data = body.vif.get("versioned_object.data")
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            request.state.vif_id = data["id"]
        req = service_mod.PlugRequest(
            vif=body.vif,
            instance=body.instance,
            wait=wait,
            timeout=timeout,
            iface_status=body.iface_status,
            allow_dual_active=body.allow_dual_active,
            portgroup=body.portgroup,
        )
        started = time.monotonic()
        named = data.get("plugin") if isinstance(data, dict) else None
        plugin = named if isinstance(named, str) and named in service.plugins else "unknown"
        outcome = "error"
        try:
            result = await call(service.plug, req)
            plugin = result.record.plugin
            outcome = "created" if result.created else "unchanged"
        except exceptions.VifplugError as exc:
            outcome = exc.code
            raise
        finally:
            rt.metrics.plug_seconds.labels(plugin=plugin, outcome=outcome).observe(
                time.monotonic() - started
            )
        response.status_code = 201 if result.created else 200
        return await call(render, result.record)

    @app.get("/v1/vifs", tags=["vifs"])
    async def list_vifs() -> models.VifList:
        """Every VIF this host knows, plugged or in flight."""

        def work() -> models.VifList:
            return models.VifList(vifs=[render(r) for r in service.list()])

        return await call(work)

    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": models.ErrorEnvelope, "description": "unknown VIF id"}
    }

    @app.get("/v1/vifs/{vif_id}", tags=["vifs"], responses=not_found)
    async def show_vif(vif_id: VifId) -> models.Vif:
        """One VIF."""

        def work() -> models.Vif:
            return render(service.get(vif_id))

        return await call(work)

    @app.delete(
        "/v1/vifs/{vif_id}",
        tags=["vifs"],
        status_code=204,
        responses=not_found,
        response_class=Response,
    )
    async def unplug(vif_id: VifId) -> Response:
        """Unplug: remove the OVS port and the host devices vifplug made."""
        started = time.monotonic()
        outcome = "error"
        try:
            await call(service.unplug, vif_id)
            outcome = "removed"
        except exceptions.VifplugError as exc:
            outcome = exc.code
            raise
        finally:
            rt.metrics.unplug_seconds.labels(outcome=outcome).observe(time.monotonic() - started)
        return Response(status_code=204)

    @app.put("/v1/vifs/{vif_id}/status", tags=["vifs"], responses={**_ERROR_RESPONSES, **not_found})
    async def set_status(vif_id: VifId, body: models.StatusBody) -> models.Vif:
        """Set iface-status; activating makes the other interfaces with the same
        iface-id inactive in the same OVSDB transaction."""

        def work() -> models.Vif:
            record = service.set_status(
                vif_id, body.iface_status, allow_dual_active=body.allow_dual_active
            )
            return render(record)

        return await call(work)

    # -- networks ------------------------------------------------------------------
    @app.get("/v1/networks", tags=["networks"])
    async def networks() -> models.NetworkList:
        """The configured networks, their device pools and which VIF holds which."""

        def work() -> models.NetworkList:
            return models.NetworkList(networks=service.networks_view())

        return await call(work)

    # -- operations ----------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> models.Health:
        """Liveness: the event loop answers."""
        return models.Health(status="ok")

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=models.Readiness,
        responses={
            503: {"model": models.ErrorEnvelope, "description": "not ready; details say why"}
        },
    )
    async def readyz() -> Any:
        """Readiness: OVSDB connected and the state reconciled."""
        # Inline (cheap attribute reads): a pool saturated by plugs waiting for
        # their ports must not make the daemon look dead to its supervisor.
        ready, details = rt.readiness()
        if not ready:
            exc = exceptions.NotReady(reason=details.get("reason", "starting"))
            return errors.error_response(exc.code, exc.message, details)
        return models.Readiness(status="ready", details=details)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {
                "content": {metrics_mod.CONTENT_TYPE: {}},
                "description": "Prometheus text format",
            }
        },
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        # Not in the API pool: a scrape must work when plugs saturate it.
        body = await asyncio.to_thread(rt.metrics.render)
        return Response(body, media_type=metrics_mod.CONTENT_TYPE)

    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with its 422 "validation error" answers replaced by
    what this API really answers: 400 with the error envelope."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            answers = operation.get("responses", {})
            if answers.pop("422", None) is not None and "400" not in answers:
                answers["400"] = {
                    "description": "the request is invalid (code says how)",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorEnvelope"}
                        }
                    },
                }
    schemas = doc.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    app.openapi_schema = doc
    return doc


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, without a running service (docs/openapi.json)."""
    app = create_app(None)
    try:
        return app.openapi()
    finally:
        app.state.runtime.executor.shutdown(wait=False)
