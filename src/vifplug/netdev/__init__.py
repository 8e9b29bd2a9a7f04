"""Host network devices through netlink: the only place besides ``ovsdb`` that changes the system.

Callers import the package and call through it (``netdev.ensure_tap(spec)``),
so the reader sees which layer a call goes to.  Everything here is blocking
and thread-safe (one netlink socket per thread, see ``rtnl``); call it from
worker threads, never from an asyncio loop.  Kernel errors leave this package
only as ``vifplug.exceptions``:

* ``InvalidDeviceName`` / ``InvalidRequest``: the spec is unusable; raised
  before any system call, nothing was created.
* ``DeviceInUse``: a device of that name exists and is not the one the spec
  describes (``ensure_*`` adopt matching devices and never recreate them).
* ``PhysicalDeviceNotFound``: a macvtap's parent does not exist.
* ``NetdevError``: the kernel refused (operation, device and reason say what).

No ``ip`` or ``tc`` subprocess: pyroute2 messages, and ioctls on
``/dev/net/tun`` for taps, which the kernel cannot create over netlink.
"""

from __future__ import annotations

from vifplug.netdev.bandwidth import Bandwidth, clear_bandwidth, get_bandwidth, set_bandwidth
from vifplug.netdev.bridge import BridgeSpec, ensure_bridge
from vifplug.netdev.delete import Deleter, Deletion, check_delete_group, delete_links
from vifplug.netdev.links import LinkInfo, get_link, link_exists, list_links, set_master
from vifplug.netdev.macvtap import MacvtapSpec, ensure_macvtap, normalize_mode
from vifplug.netdev.names import derive_name, validate_name
from vifplug.netdev.owned import note_listed
from vifplug.netdev.pci import name_for_pci, normalize_pci, pci_device_exists
from vifplug.netdev.rtnl import close_thread_socket
from vifplug.netdev.tap import TapSpec, ensure_tap
from vifplug.netdev.veth import VethSpec, ensure_veth
from vifplug.netdev.vf import VfRef, VfState, find_vf, get_vf, set_vf

__all__ = [
    "Bandwidth",
    "BridgeSpec",
    "Deleter",
    "Deletion",
    "LinkInfo",
    "MacvtapSpec",
    "TapSpec",
    "VethSpec",
    "VfRef",
    "VfState",
    "check_delete_group",
    "clear_bandwidth",
    "close_thread_socket",
    "delete_links",
    "derive_name",
    "ensure_bridge",
    "ensure_macvtap",
    "ensure_tap",
    "ensure_veth",
    "find_vf",
    "get_bandwidth",
    "get_link",
    "get_vf",
    "link_exists",
    "list_links",
    "name_for_pci",
    "normalize_mode",
    "normalize_pci",
    "note_listed",
    "pci_device_exists",
    "set_bandwidth",
    "set_master",
    "set_vf",
    "validate_name",
]
