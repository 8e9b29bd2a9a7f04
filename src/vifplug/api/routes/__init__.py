"""The endpoints of API v1, one ``APIRouter`` per OpenAPI tag.

``host_info`` (negotiation), ``vifs``, ``networks``, ``leaks`` and ``operations`` each
hold module-level handlers that receive the service and the runtime as
dependencies (``vifplug.api.dependencies``), so a handler can be named,
listed and called alone.  ``vifplug.api.app`` includes the routers in the
order of ``ROUTERS``, which is the order of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from vifplug.api.routes import host_info, leaks, networks, operations, vifs

#: Every router of API v1, in the order of the OpenAPI document.
ROUTERS: tuple[APIRouter, ...] = (
    host_info.router,
    vifs.router,
    networks.router,
    leaks.router,
    operations.router,
)
