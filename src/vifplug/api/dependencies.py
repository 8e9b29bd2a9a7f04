"""What every handler is given: the ``Service`` and the shared ``Runtime``.

Handlers take their collaborators as FastAPI dependencies instead of closing
over them, so that each is a plain module-level function a test can call
with a fake service, and so that the one place that knows where they are kept
(``app.state``, set by ``app.create_app``) is here.

Both dependencies are ``async def`` on purpose: FastAPI runs a plain ``def``
dependency in anyio's thread pool, which would put a thread hop (and anyio's
40-thread limiter) in front of every request, ``/readyz`` included.  Reading
two attributes is done in the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request

from vifplug import exceptions
from vifplug.api import metrics as metrics_mod
from vifplug.plugging import reconcile
from vifplug.plugging.service import Service
from vifplug.records import JsonObject

P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ReloadOutcome:
    """A finished reload: the networks configured now and those kept."""

    networks: list[str]
    kept: list[str]


@dataclasses.dataclass
class Runtime:
    """What the daemon shares with every listener's app.

    ``readiness()`` answers ``(ready, details)`` for ``/readyz`` (the
    daemon's details include the state of the HostInfo push to the network
    manager).  ``reconciler`` serves ``/v1/leaks`` (None: not started).
    """

    executor: ThreadPoolExecutor
    metrics: metrics_mod.Metrics
    readiness: Callable[[], tuple[bool, JsonObject]] = lambda: (True, {})
    max_body_bytes: int = 1048576
    reconciler: reconcile.Reconciler | None = None
    #: Reloads the configuration and answers when it is done (``POST /v1/reload``).
    reload: Callable[[], Awaitable[ReloadOutcome]] | None = None

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the API pool, awaited from the event loop.

        Service calls block (netlink, OVSDB commits, fsyncs, waiting for an
        ofport): they run in the daemon's executor sized ``[api] workers``,
        never in the event loop and never in anyio's default limiter, so that
        the more plugs are in flight together, the more the OVSDB layer
        coalesces into one transaction.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))


async def get_service(request: Request) -> Service:
    """The ``Service`` of the app that received ``request``."""
    service: Service | None = request.app.state.service
    if service is None:
        # Only the document-only app of ``app.openapi_document()`` has none.
        raise RuntimeError("this application serves no Service")
    return service


async def get_runtime(request: Request) -> Runtime:
    """The ``Runtime`` (pool, metrics, readiness) of the app that received ``request``."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def _one_value_per_key(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise exceptions.InvalidRequest(
                reason=f"the key {key!r} appears twice in one JSON object", key=key
            )
        seen[key] = value
    return seen


async def unique_keys(request: Request) -> None:
    """Refuse a JSON body that repeats a key in one object.

    Python's ``json`` (hence FastAPI) keeps the last value silently, so
    ``{"iface_status": "inactive", "iface_status": "active"}`` would mean
    whatever the client's serializer and ours disagree on.  FastAPI has read
    and parsed the body before dependencies run; this parses the cached
    bytes again, with a hook that sees every pair.
    """
    body = await request.body()
    if body:
        try:
            json.loads(body, object_pairs_hook=_one_value_per_key)
        except ValueError:
            pass  # not JSON: FastAPI has refused it already


#: A handler parameter that receives the service.
ServiceDep = Annotated[Service, Depends(get_service)]
#: A handler parameter that receives the runtime.
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
