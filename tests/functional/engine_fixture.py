"""Building the engine in-process against a real OVS, and VIF primitives.

Tests build VIFs with vifplug's own objects (never os_vif in this process:
oslo.versionedobjects has one registry per process) and pass primitives, as
the API does.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import random
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vifplug import conf, objects
from vifplug.plugging import engine, networks, service

objects.register_all()

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def settings_for(
    remote: str, state_dir: Path, *, bridge: str, link_group: int | None = None, **ovs: Any
) -> conf.Settings:
    group = link_group or random.randint(0x10000, 0x7FFF0000)
    return conf.Settings(
        host=conf.HostSettings(state_dir=str(state_dir), system_id_file="/nonexistent"),
        ovs=conf.OvsSettings(
            connection=remote,
            datapath_type="netdev",
            integration_bridge=bridge,
            timeout=ovs.pop("timeout", 20.0),
            **ovs,
        ),
        netdev=conf.NetdevSettings(link_group=group, delete_group=group + 1),
        api=conf.ApiSettings(default_timeout=20.0),
    )


@contextmanager
def running_engine(
    settings: conf.Settings,
    *,
    owner: str | None = None,
    network_defs: dict[str, networks.NetworkDef] | None = None,
) -> Iterator[engine.Engine]:
    eng = engine.Engine(
        settings, owner=owner or f"test-{uuid.uuid4().hex[:8]}", network_defs=network_defs
    )
    eng.start()
    try:
        yield eng
    finally:
        # Leave nothing behind: unplug what is still plugged, then stop.
        assert eng.service is not None
        for record in eng.service.list():
            try:
                eng.service.unplug(record.vif_id)
            except Exception:
                pass
        eng.stop()


def mac() -> str:
    return "fa:16:3e:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(3))


def ovs_vif(
    *,
    bridge: str,
    vif_id: str | None = None,
    name: str | None = None,
    address: str | None = None,
    interface_id: str | None = None,
    mtu: int | None = 1400,
    obj: str = "VIFOpenVSwitch",
    plugin: str = "ovs",
    profile: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    vif_id = vif_id or str(uuid.uuid4())
    net_kwargs: dict[str, Any] = {"id": str(uuid.uuid4()), "bridge": bridge}
    if mtu is not None:
        net_kwargs["mtu"] = mtu
    pp_kwargs: dict[str, Any] = {"interface_id": interface_id or vif_id}
    pp_kwargs.update(profile or {})
    cls = getattr(objects.vif, obj)
    kwargs: dict[str, Any] = {
        "id": vif_id,
        "address": address or mac(),
        "plugin": plugin,
        "network": objects.network.Network(**net_kwargs),
        "port_profile": objects.vif.VIFPortProfileOpenVSwitch(**pp_kwargs),
    }
    if name is not None:
        kwargs["vif_name"] = name
    kwargs.update(extra)
    primitive: dict[str, Any] = cls(**kwargs).obj_to_primitive()
    return primitive


def instance(name: str = "vm1", vm_uuid: str | None = None) -> dict[str, Any]:
    primitive: dict[str, Any] = objects.instance_info.InstanceInfo(
        uuid=vm_uuid or str(uuid.uuid4()), name=name
    ).obj_to_primitive()
    return primitive


def plug_request(
    vif: dict[str, Any], inst: dict[str, Any] | None = None, **kwargs: Any
) -> service.PlugRequest:
    return service.PlugRequest(vif=vif, instance=inst or instance(), **kwargs)


def vif_id_of(primitive: dict[str, Any]) -> str:
    return str(primitive["versioned_object.data"]["id"])


def with_data(primitive: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(primitive)
    out["versioned_object.data"] = {**primitive["versioned_object.data"], **changes}
    return out


def open_tap(name: str) -> int:
    """Attach to an existing (persistent) tap through /dev/net/tun, as QEMU does."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


@dataclasses.dataclass
class Frame:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes

    def pack(self) -> bytes:
        return self.dst + self.src + struct.pack("!H", self.ethertype) + self.payload


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))
