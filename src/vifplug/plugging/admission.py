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
5. the MAC, which the kernel would refuse later (multicast, all zeros);
6. the teaming role's shape (``check_teaming``): a transient member is a
   ``VIFHostDevice`` naming another VIF as its persistent member, a persistent
   member is not a ``VIFHostDevice``.  Whether the persistent member is
   plugged here with the same MAC depends on the state, and is checked where
   the state is changed (``state.store``), atomically with recording the pair.

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
from vifplug.records import JsonObject, Teaming

WAIT_MODES = ("none", "ofport", "ovn-installed")
ACTIVE, INACTIVE = "active", "inactive"
#: The one VIF object that can be a transient member (libvirt: a hostdev).
TRANSIENT_OBJECT = "VIFHostDevice"


@dataclasses.dataclass(frozen=True)
class TeamingRequest:
    """libvirt's ``<teaming type=... persistent=...>`` as the API received it."""

    type: str
    persistent: str | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": self.type}
        if self.persistent is not None:
            out["persistent"] = self.persistent
        return out


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
    teaming: TeamingRequest | None = None

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
        if self.teaming is not None:
            # Only when given, so that the digests recorded before teaming
            # existed still match the same request again.
            content["teaming"] = self.teaming.to_json()
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
    check_teaming(request.teaming, admitted.vif)
    return admitted


def check_teaming(teaming: TeamingRequest | None, vif: vifs.VIFBase) -> None:
    """The shape of a teaming role, as libvirt and QEMU's virtio failover have
    it: the transient member is the hostdev, the persistent one the virtio
    NIC, and a transient member names its persistent member by VIF id."""
    if teaming is None:
        return
    loading.check_writable(teaming.persistent, "teaming.persistent")
    roles = tuple(t.value for t in Teaming)
    if teaming.type not in roles:
        raise exceptions.InvalidRequest(
            reason=f"teaming type must be {' or '.join(roles)}, not {teaming.type!r}"
        )
    obj_name = vif.obj_name()
    if teaming.type == Teaming.PERSISTENT:
        if teaming.persistent is not None:
            raise exceptions.InvalidRequest(
                reason="a persistent teaming member names no persistent member"
            )
        if obj_name == TRANSIENT_OBJECT:
            raise exceptions.InvalidRequest(
                reason=f"a {obj_name} can only be the transient member of a pair"
            )
        return
    if not teaming.persistent:
        raise exceptions.InvalidRequest(
            reason="a transient teaming member must name its persistent member's VIF id"
        )
    if teaming.persistent == str(vif.id):
        raise exceptions.InvalidRequest(reason=f"VIF {vif.id} cannot be its own persistent member")
    if obj_name != TRANSIENT_OBJECT:
        raise exceptions.InvalidRequest(
            reason=f"the transient member of a pair is a {TRANSIENT_OBJECT}, not a {obj_name}"
        )


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
