"""Admission: a raw plug request becomes a checked plugin, VIF and instance.

One pass, in the order that gives the caller the most useful refusal:

1. the request's own options (``wait``, ``iface_status``), then every
   string and number the request carries (``loading.check_writable``): a NUL,
   an unpaired surrogate, a control character or a line separator anywhere
   is refused before any other check can echo it back, and before OVSDB (whose
   server drops the connection, and with it the whole batch, on a NUL), the
   kernel or the state database sees it;
2. the VIF primitive's shape, then the plugin its ``plugin`` field names and
   the object's version against that plugin's range, *before* loading it, so
   that a version newer than this host knows is refused as
   ``UnsupportedVersion`` naming the range (seed 004: the manager backlevels
   and retries), not merely as an object that does not load;
3. the port profile's version against the plugin's range, likewise;
4. loading the VIF and the instance into vifplug's objects;
5. the MAC, which the kernel would refuse later (multicast, all zeros).

Nothing here touches the system or the state: a request refused here
changed nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

from vifplug import exceptions
from vifplug.negotiation import hostinfo
from vifplug.objects import base as obj_base
from vifplug.objects import instance_info as ii
from vifplug.objects import loading
from vifplug.objects import vif as vifs
from vifplug.plugins import base as plugin_base
from vifplug.records import JsonObject

WAIT_MODES = ("none", "ofport", "ovn-installed")
ACTIVE, INACTIVE = "active", "inactive"


@dataclasses.dataclass(frozen=True)
class PlugRequest:
    """A plug as the API received it: os_vif primitives plus how to answer."""

    vif: JsonObject
    instance: JsonObject
    wait: str = "ofport"
    timeout: float | None = None
    iface_status: str = ACTIVE
    allow_dual_active: bool = False
    portgroup: str | None = None

    def digest(self) -> str:
        """Identity of the request's content, for idempotency and conflicts:
        the objects and every option that changes what is plugged (not how
        the caller waits for it)."""
        content = {
            "vif": self.vif,
            "instance": self.instance,
            "iface_status": self.iface_status,
            "allow_dual_active": self.allow_dual_active,
            "portgroup": self.portgroup,
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Admitted:
    """A request that passed admission: what to plug, and with which plugin."""

    plugin: plugin_base.PluginBase
    vif: vifs.VIFBase
    instance: ii.InstanceInfo

    @property
    def vif_id(self) -> str:
        return str(self.vif.id)


def check_status(status: str) -> None:
    """``iface_status`` must be ``active`` or ``inactive``."""
    if status not in (ACTIVE, INACTIVE):
        raise exceptions.InvalidRequest(
            reason=f"iface_status must be active or inactive, not {status!r}"
        )


def admit(request: PlugRequest, plugins: Mapping[str, plugin_base.PluginBase]) -> Admitted:
    """Check ``request`` completely (see the module); raises the caller's error."""
    if request.wait not in WAIT_MODES:
        raise exceptions.InvalidRequest(
            reason=f"wait must be one of {', '.join(WAIT_MODES)}, not {request.wait!r}"
        )
    check_status(request.iface_status)
    loading.check_writable(request.vif, "vif")
    loading.check_writable(request.instance, "instance")
    loading.check_writable(request.portgroup, "portgroup")
    plugin = _plugin_for(request.vif, plugins)
    _check_profile(plugin, request.vif)
    admitted = Admitted(
        plugin=plugin,
        vif=loading.load_vif(request.vif),
        instance=loading.load_instance(request.instance),
    )
    _check_address(admitted.vif)
    return admitted


def reload(record_request: JsonObject, plugin: plugin_base.PluginBase) -> Admitted:
    """A recorded request loaded again (it was admitted when it was recorded)."""
    return Admitted(
        plugin=plugin,
        vif=loading.load_vif(record_request["vif"]),
        instance=loading.load_instance(record_request["instance"]),
    )


def _plugin_for(
    vif_primitive: JsonObject, plugins: Mapping[str, plugin_base.PluginBase]
) -> plugin_base.PluginBase:
    """The plugin the VIF names, with the VIF's version in its range."""
    obj_name, version = loading.primitive_identity(vif_primitive, what="vif")
    wanted = _data(vif_primitive).get("plugin")
    if wanted is not None:
        plugin = plugins.get(str(wanted))
        if plugin is None:
            raise exceptions.NoMatchingPlugin(plugin_name=wanted)
    else:
        # Loading refuses a VIF without a plugin; a version check first still
        # names the range of a plugin that would have taken it.
        candidates = [p for p in plugins.values() if p.range_for(obj_name)]
        if not candidates:
            raise exceptions.UnsupportedVIFType(plugin="(any installed)", obj_name=obj_name)
        plugin = candidates[0]
    rng = plugin.range_for(obj_name)
    if rng is None:
        raise exceptions.UnsupportedVIFType(plugin=plugin.NAME, obj_name=obj_name)
    hostinfo.check_version(obj_name, version, rng.min_version, rng.max_version, plugin=plugin.NAME)
    return plugin


def _check_profile(plugin: plugin_base.PluginBase, vif_primitive: JsonObject) -> None:
    """The port profile against the plugin's range, before the VIF is loaded,
    so a profile too new for us is named with the range (not just refused)."""
    profile = _data(vif_primitive).get("port_profile")
    if profile is None:
        return
    name, version = loading.primitive_identity(profile, what="port_profile")
    obj_name = str(vif_primitive.get(obj_base.KEY_NAME))
    rng = plugin.range_for(obj_name)
    assert rng is not None  # _plugin_for checked it
    for pname, lo, hi in rng.port_profiles:
        if pname == name:
            hostinfo.check_version(name, version, lo, hi, plugin=plugin.NAME)
            return
    raise exceptions.UnsupportedPortProfile(plugin=plugin.NAME, profile=name, obj_name=obj_name)


def _data(primitive: JsonObject) -> JsonObject:
    data = primitive.get(obj_base.KEY_DATA)
    return data if isinstance(data, dict) else {}


def _check_address(vif: vifs.VIFBase) -> None:
    """A MAC the kernel would refuse (multicast, all zeros) is the caller's
    mistake: refuse it before anything is changed."""
    mac = plugin_base.address(vif)
    if mac is None:
        return
    first = int(mac.split(":")[0], 16)
    if first & 1 or mac.replace(":", "").strip("0") == "":
        raise exceptions.InvalidRequest(
            reason=f"VIF {vif.id} has MAC {mac}, which is not a unicast address"
        )
