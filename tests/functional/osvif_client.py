"""The compute side of the HTTP interop tests: the real os-vif, in its own process.

Run with this interpreter; one JSON request on stdin, one JSON answer on
stdout.  It imports os-vif and never vifplug (oslo.versionedobjects keeps one
registry per process, keyed by object name).

``{"op": "make_vifs", "bridge": B, "suffix": S}``
    plug request bodies (``{"vif", "instance"}``) for what Nova and Neutron
    make with os-vif: VIFOpenVSwitch (profile 1.4 and backlevelled to 1.0),
    VIFBridge for the ovs hybrid plug and for linux_bridge, VIFVHostUser.
``{"op": "load_host_info", "primitives": [...], "old": bool}``
    load each HostInfo primitive with ``obj_from_primitive`` and describe what
    os-vif sees.  ``old`` first turns the registry into that of an os-vif
    before HostPortProfileInfo existed (HostVIFInfo 1.0).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import uuid
import warnings
from typing import Any

warnings.simplefilter("ignore")

import os_vif.objects  # noqa: E402
from os_vif.objects import base as osv_base  # noqa: E402
from os_vif.objects import host_info as osv_host_info  # noqa: E402
from os_vif.objects import instance_info, network, subnet, vif  # noqa: E402

os_vif.objects.register_all()

# The same "older os-vif" registry as the interop tests use.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from osvif_helper import _become_old  # noqa: E402


def _mac() -> str:
    return "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3])


def _network(bridge: str) -> network.Network:
    return network.Network(
        id=str(uuid.uuid4()),
        bridge=bridge,
        label="net-osvif",
        mtu=1450,
        subnets=subnet.SubnetList(objects=[]),
    )


def _instance() -> instance_info.InstanceInfo:
    return instance_info.InstanceInfo(
        uuid=str(uuid.uuid4()), name="vm-osvif", project_id="project-osvif"
    )


def make_vifs(bridge: str) -> list[dict[str, Any]]:
    bodies = []

    def add(kind: str, obj: Any, primitive: dict[str, Any] | None = None) -> None:
        bodies.append(
            {
                "kind": kind,
                "body": {
                    "vif": primitive or obj.obj_to_primitive(),
                    "instance": _instance().obj_to_primitive(),
                },
            }
        )

    def ovs_vif() -> vif.VIFOpenVSwitch:
        vif_id = str(uuid.uuid4())
        return vif.VIFOpenVSwitch(
            id=vif_id,
            address=_mac(),
            network=_network(bridge),
            plugin="ovs",
            vif_name=("tap" + vif_id)[:14],
            bridge_name=bridge,
            active=False,
            preserve_on_delete=False,
            has_traffic_filtering=False,
            port_profile=vif.VIFPortProfileOpenVSwitch(
                interface_id=vif_id, profile_id="", datapath_type="netdev"
            ),
        )

    add("ovs", ovs_vif())
    old = ovs_vif()
    add(
        "ovs-profile-1.0",
        old,
        old.obj_to_primitive(
            version_manifest={
                "VIFPortProfileOpenVSwitch": "1.0",
                "VIFOpenVSwitch": "1.0",
                "Network": "1.1",
                "SubnetList": "1.0",
                "Subnet": "1.0",
                "FixedIPList": "1.0",
                "FixedIP": "1.0",
                "RouteList": "1.0",
                "Route": "1.0",
            }
        ),
    )
    hybrid_id = str(uuid.uuid4())
    add(
        "ovs-hybrid",
        vif.VIFBridge(
            id=hybrid_id,
            address=_mac(),
            network=_network(bridge),
            plugin="ovs",
            vif_name=("tap" + hybrid_id)[:14],
            bridge_name=("qbr" + hybrid_id)[:14],
            has_traffic_filtering=True,
            preserve_on_delete=False,
            active=False,
            port_profile=vif.VIFPortProfileOpenVSwitch(
                interface_id=hybrid_id, datapath_type="netdev"
            ),
        ),
    )
    lb_id = str(uuid.uuid4())
    add(
        "linux-bridge",
        vif.VIFBridge(
            id=lb_id,
            address=_mac(),
            network=_network("brq" + lb_id[:11]),
            plugin="linux_bridge",
            vif_name=("tap" + lb_id)[:14],
            bridge_name=("brq" + lb_id)[:14],
            has_traffic_filtering=False,
            preserve_on_delete=False,
            active=False,
        ),
    )
    vhu_id = str(uuid.uuid4())
    add(
        "vhostuser",
        vif.VIFVHostUser(
            id=vhu_id,
            address=_mac(),
            plugin="noop",
            vif_name=("vhu" + vhu_id)[:14],
            path=f"/var/run/openvswitch/vhu{vhu_id[:8]}",
            mode="client",
            network=_network(bridge),
            active=False,
            preserve_on_delete=False,
            has_traffic_filtering=False,
        ),
    )
    return bodies


def load_host_info(primitives: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for primitive in primitives:
        try:
            info = osv_base.VersionedObject.obj_from_primitive(primitive)
            assert isinstance(info, osv_host_info.HostInfo), type(info)
            plugins = {}
            for plugin in info.plugin_info:
                vifs = {}
                for vi in plugin.vif_info:
                    profiles = (
                        [p.profile_object_name for p in vi.supported_port_profiles]
                        if "supported_port_profiles" in vi.fields
                        and vi.obj_attr_is_set("supported_port_profiles")
                        else None
                    )
                    vifs[vi.vif_object_name] = {
                        "min": vi.min_version,
                        "max": vi.max_version,
                        "version": vi.VERSION,
                        "profiles": profiles,
                        "common": vi.get_common_version()
                        if hasattr(vi, "get_common_version")
                        else None,
                    }
                plugins[plugin.plugin_name] = vifs
            out.append({"version": info.VERSION, "plugins": plugins})
        except Exception as exc:
            out.append(
                {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)}
            )
    return out


def main() -> int:
    request = json.load(sys.stdin)
    if request.get("old"):
        _become_old()
    if request["op"] == "make_vifs":
        answer: Any = make_vifs(request["bridge"])
    elif request["op"] == "load_host_info":
        answer = load_host_info(request["primitives"])
    else:
        raise SystemExit(f"unknown op {request['op']!r}")
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
