"""VIFs, their port profiles and datapath offloads, as os-vif defines them.

A VIF object says *how* the guest's interface meets the host (a tap on an OVS
bridge, a macvtap on a physical device, a vhost-user socket ...); its port
profile says what the switch needs to know about it (the OVS ``iface-id``,
the 802.1Qbh profile ...).  The network manager builds them; vifplug receives
them as primitives and hands them to the plugin named in ``plugin``.

Version history lives in two places per class: the ``VERSION`` comment
ladder (for people) and ``fields_added_in`` (for backlevelling).
"""

from __future__ import annotations

from oslo_versionedobjects import fields

from vifplug.objects import base
from vifplug.objects import fields as vp_fields
from vifplug.objects import network as net

# --- datapath offloads --------------------------------------------------------


@base.register
class DatapathOffloadBase(base.VersionedObject, base.Comparable):
    """Base of the ways a port's datapath can be offloaded to hardware."""

    # 1.0: initial version
    VERSION = "1.0"


@base.register
class DatapathOffloadRepresentor(DatapathOffloadBase):
    """Offload through a switchdev VF representor.

    A ``representor_name`` asks for the representor to be renamed when the
    VIF is plugged.
    """

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "representor_name": fields.StringField(nullable=True),
        # The VF's PCI address, as a plain string (unlike the older
        # VIFPortProfileOVSRepresentor, which used a PCI address field).
        "representor_address": fields.StringField(nullable=True),
    }

    representor_name: str | None
    representor_address: str | None


# --- port profiles ------------------------------------------------------------


@base.register
class VIFPortProfileBase(base.VersionedObject, base.Comparable):
    """Base of all port profiles; not meant to be sent on its own."""

    # 1.0: initial version
    # 1.1: added datapath_offload
    VERSION = "1.1"

    fields = {
        "datapath_offload": fields.ObjectField(
            "DatapathOffloadBase", nullable=True, subclasses=True
        ),
    }

    fields_added_in = {"datapath_offload": "1.1"}
    obj_relationships = {"datapath_offload": [("1.1", "1.0")]}

    datapath_offload: DatapathOffloadBase | None


@base.register
class VIFPortProfileOpenVSwitch(VIFPortProfileBase):
    """What OVS needs to know of a port: its ``iface-id`` and how to create it."""

    # 1.0: initial version
    # 1.1: added datapath_type
    # 1.2: VIFPortProfileBase 1.0 -> 1.1 (datapath_offload)
    # 1.3: added create_port
    # 1.4: added create_tap and multiqueue
    VERSION = "1.4"

    fields = {
        # The Interface's external_ids:iface-id; generated when omitted.
        "interface_id": fields.UUIDField(),
        # The OVS port profile of the interface.
        "profile_id": fields.StringField(),
        # The datapath type of the bridge (system or netdev).
        "datapath_type": fields.StringField(nullable=True),
        # Whether the plugin adds the port to the bridge.
        "create_port": fields.BooleanField(default=False),
        # Whether the plugin creates the tap device.
        "create_tap": fields.BooleanField(default=False),
        # Whether the tap device gets multiple queues.
        "multiqueue": fields.BooleanField(default=False),
    }

    # In this class's own numbering: datapath_offload came with 1.2.
    fields_added_in = {
        "datapath_type": "1.1",
        "datapath_offload": "1.2",
        "create_port": "1.3",
        "create_tap": "1.4",
        "multiqueue": "1.4",
    }
    obj_relationships = {"datapath_offload": [("1.2", "1.0")]}

    interface_id: str
    profile_id: str
    datapath_type: str | None
    create_port: bool
    create_tap: bool
    multiqueue: bool


@base.register
class VIFPortProfileFPOpenVSwitch(VIFPortProfileOpenVSwitch):
    """An OVS port whose bridge is managed by a fast path.

    Its versions move in lockstep with VIFPortProfileOpenVSwitch's (1.N here
    is 1.N there), so it inherits the backlevelling table unchanged.
    """

    # 1.0: initial version
    # 1.1 to 1.4: VIFPortProfileOpenVSwitch 1.1 to 1.4
    VERSION = "1.4"

    fields = {
        # The fast-path bridge to connect to.
        "bridge_name": fields.StringField(),
        # Whether the network uses hybrid plugging.
        "hybrid_plug": fields.BooleanField(default=False),
    }

    bridge_name: str
    hybrid_plug: bool


@base.register
class VIFPortProfileOVSRepresentor(VIFPortProfileOpenVSwitch):
    """An OVS port on a VF representor.

    Kept for peers that still send it; os-vif deprecates it in favour of a
    ``DatapathOffloadRepresentor`` in ``datapath_offload``.  Versions move in
    lockstep with VIFPortProfileOpenVSwitch's.
    """

    # 1.0: initial version
    # 1.1 to 1.4: VIFPortProfileOpenVSwitch 1.1 to 1.4
    VERSION = "1.4"

    fields = {
        "representor_name": fields.StringField(nullable=True),
        "representor_address": fields.PCIAddressField(nullable=True),
    }

    representor_name: str | None
    representor_address: str | None


@base.register
class VIFPortProfileFPBridge(VIFPortProfileBase):
    """A Linux bridge port whose bridge is managed by a fast path."""

    # 1.0: initial version
    # 1.1: VIFPortProfileBase 1.0 -> 1.1
    VERSION = "1.1"

    fields = {
        "bridge_name": fields.StringField(),
    }

    bridge_name: str


@base.register
class VIFPortProfileFPTap(VIFPortProfileBase):
    """A Calico-style tap whose datapath is a fast path."""

    # 1.0: initial version
    # 1.1: VIFPortProfileBase 1.0 -> 1.1
    VERSION = "1.1"

    fields = {
        # MAC address of the host side of the port.
        "mac_address": fields.MACAddressField(nullable=True),
    }

    mac_address: str | None


@base.register
class VIFPortProfile8021Qbg(VIFPortProfileBase):
    """VEPA 802.1Qbg: the VSI the switch applies to the port."""

    # 1.0: initial version
    # 1.1: VIFPortProfileBase 1.0 -> 1.1
    VERSION = "1.1"

    fields = {
        "manager_id": fields.IntegerField(),
        "type_id": fields.IntegerField(),
        "type_id_version": fields.IntegerField(),
        "instance_id": fields.UUIDField(),
    }

    manager_id: int
    type_id: int
    type_id_version: int
    instance_id: str


@base.register
class VIFPortProfile8021Qbh(VIFPortProfileBase):
    """VEPA 802.1Qbh: the switch's port profile, by name."""

    # 1.0: initial version
    # 1.1: VIFPortProfileBase 1.0 -> 1.1
    VERSION = "1.1"

    fields = {
        "profile_id": fields.StringField(),
    }

    profile_id: str


@base.register
class VIFPortProfileK8sDPDK(VIFPortProfileBase):
    """A nested DPDK port of a Kubernetes pod (Kuryr)."""

    # 1.0: initial version
    # 1.1: VIFPortProfileBase 1.0 -> 1.1
    VERSION = "1.1"

    fields = {
        "l3_setup": fields.BooleanField(),
        "selflink": fields.StringField(),
        "resourceversion": fields.StringField(),
    }

    l3_setup: bool
    selflink: str
    resourceversion: str


# --- VIFs ---------------------------------------------------------------------


@base.register
class VIFBase(base.VersionedObject, base.Comparable):
    """What every VIF has; a VIF on the wire is always one of the subclasses."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        # The port's UUID (Neutron's port id; OVS's iface-id by default).
        "id": fields.UUIDField(),
        # The guest's MAC address.
        "address": fields.MACAddressField(nullable=True),
        "network": fields.ObjectField("Network", nullable=True),
        # The os-vif (and vifplug) plugin that plugs it.
        "plugin": fields.StringField(),
        # Whether the VIF is initially up.
        "active": fields.BooleanField(default=True),
        # Whether unplug keeps the host device.
        "preserve_on_delete": fields.BooleanField(default=False),
        # Whether the network already filters the port's traffic.
        "has_traffic_filtering": fields.BooleanField(default=False),
        "port_profile": fields.ObjectField("VIFPortProfileBase", subclasses=True),
    }

    id: str
    address: str | None
    network: net.Network | None
    plugin: str
    active: bool
    preserve_on_delete: bool
    has_traffic_filtering: bool
    port_profile: VIFPortProfileBase


@base.register
class VIFGeneric(VIFBase):
    """A bare tap device the plugin sets up (libvirt type=ethernet)."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "vif_name": fields.StringField(),
    }

    vif_name: str


@base.register
class VIFBridge(VIFBase):
    """A tap device on a Linux bridge (libvirt type=bridge)."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "vif_name": fields.StringField(),
        "bridge_name": fields.StringField(),
    }

    vif_name: str
    bridge_name: str


@base.register
class VIFOpenVSwitch(VIFBase):
    """A tap device on an Open vSwitch bridge (libvirt type=bridge)."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "vif_name": fields.StringField(),
        "bridge_name": fields.StringField(),
    }

    vif_name: str
    bridge_name: str


@base.register
class VIFDirect(VIFBase):
    """A macvtap device on a physical device or VF (libvirt type=direct)."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "vif_name": fields.StringField(),
        # PCI address of the host device.
        "dev_address": fields.PCIAddressField(),
        "mode": vp_fields.VIFDirectModeField(),
        "vlan_name": fields.StringField(),
    }

    vif_name: str
    dev_address: str
    mode: str
    vlan_name: str


@base.register
class VIFVHostUser(VIFBase):
    """A vhost-user socket shared with a userspace switch (libvirt type=vhostuser)."""

    # 1.0: initial version
    # 1.1: added vif_name
    VERSION = "1.1"

    fields = {
        "vif_name": fields.StringField(),
        "path": fields.StringField(),
        "mode": vp_fields.VIFVHostUserModeField(),
    }

    fields_added_in = {"vif_name": "1.1"}

    vif_name: str
    path: str
    mode: str


@base.register
class VIFHostDevice(VIFBase):
    """A VF or PF passed to the guest (libvirt type=hostdev)."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "dev_type": vp_fields.VIFHostDeviceDevTypeField(),
        "dev_address": fields.PCIAddressField(),
    }

    dev_type: str
    dev_address: str


@base.register
class VIFNestedDPDK(VIFBase):
    """A port of a VM consumed by a nested DPDK pod (Kuryr); no libvirt mapping."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        "pci_address": fields.StringField(),
        "dev_driver": fields.StringField(),
    }

    pci_address: str
    dev_driver: str


def port_profile_classes() -> dict[str, type[VIFPortProfileBase]]:
    """The port profile classes, by object name."""
    return {
        name: cls for name, cls in base.classes().items() if issubclass(cls, VIFPortProfileBase)
    }


def vif_classes() -> dict[str, type[VIFBase]]:
    """The VIF classes, by object name (VIFBase included: it is on the wire too)."""
    return {name: cls for name, cls in base.classes().items() if issubclass(cls, VIFBase)}


__all__: list[str] = [
    "DatapathOffloadBase",
    "DatapathOffloadRepresentor",
    "VIFBase",
    "VIFBridge",
    "VIFDirect",
    "VIFGeneric",
    "VIFHostDevice",
    "VIFNestedDPDK",
    "VIFOpenVSwitch",
    "VIFPortProfile8021Qbg",
    "VIFPortProfile8021Qbh",
    "VIFPortProfileBase",
    "VIFPortProfileFPBridge",
    "VIFPortProfileFPOpenVSwitch",
    "VIFPortProfileFPTap",
    "VIFPortProfileK8sDPDK",
    "VIFPortProfileOVSRepresentor",
    "VIFPortProfileOpenVSwitch",
    "VIFVHostUser",
    "port_profile_classes",
    "vif_classes",
]
