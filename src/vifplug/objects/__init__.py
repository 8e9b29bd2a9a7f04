"""vifplug's wire model: os-vif's objects, in os-vif's namespace, without os-vif.

Importing this package registers every object (``register_all`` exists for
callers that follow os-vif's habit of calling it explicitly; it is idempotent).
The package knows nothing of OVS, netlink, plugins or HTTP, and imports
nothing else of vifplug but ``vifplug.exceptions`` (``loading`` raises
``InvalidObject``), which imports nothing: a test and an import-linter contract
keep it so.
"""

from __future__ import annotations

from vifplug.objects import base, fields, host_info, instance_info, network, vif


def register_all() -> None:
    """Make sure every os_vif object vifplug defines is registered with oslo.

    Importing the modules registers them; this is here so callers need not
    know that, and so it reads like os-vif's ``objects.register_all()``.
    """
    for module in ("fields", "network", "vif", "instance_info", "host_info"):
        __import__(f"vifplug.objects.{module}")


__all__ = ["base", "fields", "host_info", "instance_info", "network", "register_all", "vif"]
