"""The FastAPI application of API v1 around one ``Service``.

Why it looks like this:

* **Blocking calls in a pool of our own.**  Service calls block (netlink,
  OVSDB commits, fsyncs, waiting for an ofport), so every one runs in the
  daemon's ``ThreadPoolExecutor`` sized ``[api] workers``, never in the event
  loop and never in anyio's default 40-thread limiter: the more plugs are in
  flight together, the more the OVSDB layer coalesces into one transaction.
  Every endpoint is therefore ``async def`` and hands its work to
  ``Runtime.call`` (``dependencies``).
* **Named routes.**  The endpoints are module-level handlers on one
  ``APIRouter`` per tag (``routes``), given the service and the runtime as
  dependencies that read ``app.state``; this module only assembles them.
* **Errors are data.**  Endpoints raise ``vifplug.exceptions``; ``errors``
  turns them, FastAPI's validation failures and the router's 404/405 into the
  one envelope.  Body size and (on TCP) the bearer token are checked by pure
  ASGI middleware (``middleware``) before any JSON is parsed.
* **One app per listener.**  The unix socket needs no token, the TCP listener
  does: ``create_app(service, runtime=..., token=...)`` is called once per
  listener with the same ``Runtime`` (pool, metrics, readiness).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.telemetry import TelemetryConfig

import vifplug
from vifplug.api import errors, middleware, routes
from vifplug.api import metrics as metrics_mod
from vifplug.api.dependencies import Runtime
from vifplug.plugging.service import Service
from vifplug.records import JsonObject

__all__ = ["Runtime", "create_app", "openapi_document"]

#: FastAPI's own OpenTelemetry hooks (since FastAPI 0.142), off.  The daemon
#: sets no tracer or meter provider, so they would record nothing, yet every
#: request paid for asking whether one was set (an environment look-up):
#: 0.05-0.1 ms of a request's 0.3-1 ms.  Its metrics are ``/metrics``.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    service: Service | None,
    *,
    runtime: Runtime | None = None,
    token: str | None = None,
    listener: str = "unix",
) -> FastAPI:
    """The API v1 application around ``service``.

    ``token``: when set, every request must carry ``Authorization: Bearer
    <token>`` (the TCP listener).  ``runtime`` defaults to a small private
    pool, for documentation generation and tests.  ``service`` is ``None``
    only for ``openapi_document()``, which answers no request.
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
        telemetry=_NO_TELEMETRY,
    )
    app.state.service = service
    app.state.runtime = rt
    errors.install(app, on_error=rt.metrics.count_error)
    app.add_middleware(
        middleware.Guard,
        max_body_bytes=rt.max_body_bytes,
        token=token,
        on_error=rt.metrics.count_error,
    )
    app.add_middleware(middleware.AccessLog, metrics=rt.metrics, listener=listener)
    # Into the application's own router, not through ``include_router``:
    # FastAPI (0.16x) matches an included router lazily, on every request,
    # through layers of wrappers (four route matches per request, 250 of its
    # 860 Python calls).  An ``APIRouter`` gives each route its tags and
    # every other router-level setting when the route is declared, so the
    # routes need nothing from their router (``routes`` declares no more).
    for router in routes.ROUTERS:
        app.router.routes.extend(router.routes)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


#: The name of the bearer scheme in the document's ``securitySchemes``.
BEARER_SCHEME = "bearerToken"


def _envelope(description: str) -> JsonObject:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def _openapi(app: FastAPI) -> JsonObject:
    """FastAPI's document, with what it cannot know added.

    Its 422 "validation error" answers become what this API really answers,
    400 with the error envelope.  The bearer token of the TCP listener is a
    ``securitySchemes`` entry, and every operation accepts no credentials
    (the unix socket) or the token (TCP); the 401 that ``middleware.Guard``
    answers on TCP is documented on every operation, since the guard runs
    before routing.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            answers = operation.get("responses", {})
            if answers.pop("422", None) is not None and "400" not in answers:
                answers["400"] = _envelope("the request is invalid (code says how)")
            answers.setdefault("401", _envelope(errors.UNAUTHORIZED))
            operation["responses"] = dict(sorted(answers.items()))
    components = doc.setdefault("components", {})
    schemas = components.get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "the TCP listener's token ([api] token_file); the unix "
            "socket needs none (its file mode and group are the access control)",
        }
    }
    doc["security"] = [{}, {BEARER_SCHEME: []}]
    app.openapi_schema = doc
    return doc


def openapi_document() -> JsonObject:
    """The OpenAPI document, without a running service (docs/openapi.json)."""
    app = create_app(None)
    try:
        return app.openapi()
    finally:
        app.state.runtime.executor.shutdown(wait=False)
