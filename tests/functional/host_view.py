"""What the host holds for a VIF, read from OVSDB and the kernel alone.

Tests that must not take the daemon's word for it (a daemon that lied about
its names, link group or owner marks would fool a check made through them)
find a VIF's port and devices by what the VM's interface is: its MAC and its
``iface-id``, whatever the daemon called them.

* ``interfaces(ovs)``: every OVS Interface row (``ovs-vsctl list Interface``),
  with its ``external_ids`` and ``mac_in_use``;
* ``links()``: every kernel link of this namespace (``ip -j -d link``), with
  its kind and parent; ``sysfs_addresses()`` the same MACs from
  ``/sys/class/net/*/address``, a second readout;
* ``find(...)``: the interfaces and links that carry one VIF's MAC or iface-id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from typing import Any

import ovs_sandbox


@dataclasses.dataclass(frozen=True)
class Interface:
    name: str
    ofport: int
    external_ids: dict[str, str]
    mac_in_use: str


@dataclasses.dataclass(frozen=True)
class Link:
    name: str
    address: str
    kind: str
    parent: str | None


def _cell(value: Any) -> Any:
    """A value of ovs-vsctl's JSON output: ``["set", []]`` is empty."""
    if isinstance(value, list) and value and value[0] == "set":
        return value[1][0] if value[1] else None
    return value


def interfaces(ovs: ovs_sandbox.OvsSandbox) -> list[Interface]:
    out = json.loads(
        ovs.vsctl(
            "--format=json", "--columns=name,ofport,external_ids,mac_in_use", "list", "Interface"
        )
    )
    rows = []
    for name, ofport, ids, mac_in_use in out["data"]:
        port = _cell(ofport)
        mac = _cell(mac_in_use)
        rows.append(
            Interface(
                name=name,
                ofport=port if isinstance(port, int) else -2,
                external_ids=dict(ids[1]),
                mac_in_use=(mac or "").lower(),
            )
        )
    return rows


def bridges(ovs: ovs_sandbox.OvsSandbox) -> set[str]:
    return set(ovs.vsctl("list-br").split())


def links() -> list[Link]:
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for entry in json.loads(out):
        found.append(
            Link(
                name=entry["ifname"],
                address=str(entry.get("address", "")).lower(),
                kind=str(entry.get("linkinfo", {}).get("info_kind", "")),
                parent=entry.get("link"),
            )
        )
    return found


def sysfs_addresses() -> dict[str, str]:
    """Every link's MAC, as /sys/class/net says (independent of netlink dumps)."""
    found = {}
    for name in os.listdir("/sys/class/net"):
        try:
            with open(f"/sys/class/net/{name}/address") as f:
                found[name] = f.read().strip().lower()
        except OSError:
            continue  # went away meanwhile
    return found


@dataclasses.dataclass
class Found:
    interfaces: list[Interface]
    links: list[Link]

    @property
    def empty(self) -> bool:
        return not self.interfaces and not self.links


def find(
    mac: str,
    iface_id: str,
    all_interfaces: list[Interface],
    all_links: list[Link],
    *,
    ignore_links: frozenset[str] = frozenset(),
) -> Found:
    """The Interfaces whose iface-id, attached-mac or mac_in_use is the VIF's, and
    the links with its MAC (except ``ignore_links``: a passthrough pool device
    takes its macvtap's MAC and keeps it)."""
    mac = mac.lower()
    ifaces = [
        i
        for i in all_interfaces
        if i.external_ids.get("iface-id") == iface_id
        or i.external_ids.get("attached-mac", "").lower() == mac
        or i.mac_in_use == mac
    ]
    found_links = [lk for lk in all_links if lk.address == mac and lk.name not in ignore_links]
    return Found(interfaces=ifaces, links=found_links)
