"""Immutable snapshots of OVSDB rows, safe to hand to any thread.

The IDL thread builds one when it is told a row changed; readers never see
IDL ``Row`` objects, which change under them and are not thread-safe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

#: Where an inactive interface keeps its iface-id on a host whose controller
#: binds ports by ``iface-id`` alone and ignores ``iface-status`` (OVN), so
#: that the controller never claims an inactive interface.
HIDDEN_IFACE_ID = "vifplug-iface-id"


@dataclasses.dataclass(frozen=True)
class InterfaceView:
    uuid: str
    name: str
    type: str
    external_ids: Mapping[str, str]
    ofport: int | None  # None: not assigned yet; -1: ovs-vswitchd failed
    error: str | None
    link_state: str | None
    options: Mapping[str, str]
    ingress_policing_rate: int
    ingress_policing_burst: int

    @property
    def iface_id(self) -> str | None:
        """The interface's iface-id, wherever vifplug keeps it (see
        ``HIDDEN_IFACE_ID``)."""
        return self.external_ids.get("iface-id") or self.external_ids.get(HIDDEN_IFACE_ID)

    @property
    def iface_id_hidden(self) -> bool:
        """True when the iface-id is kept where a controller does not look."""
        return "iface-id" not in self.external_ids and HIDDEN_IFACE_ID in self.external_ids

    @property
    def has_ofport(self) -> bool:
        return self.ofport is not None and self.ofport > 0

    @property
    def failed(self) -> bool:
        return self.ofport == -1 or bool(self.error)


@dataclasses.dataclass(frozen=True)
class BridgeView:
    uuid: str
    name: str
    datapath_type: str
    external_ids: Mapping[str, str]
    other_config: Mapping[str, str]
    port_count: int


@dataclasses.dataclass(frozen=True)
class PortView:
    uuid: str
    name: str
    bridge: str | None
    interfaces: tuple[str, ...]
    external_ids: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class HostView:
    external_ids: Mapping[str, str]
    other_config: Mapping[str, str]
    system_type: str | None
    system_version: str | None
    ovs_version: str | None
    cur_cfg: int
    next_cfg: int
