"""plug / unplug / set_status: the one place that orders the steps.

A plug reads as its steps, each one call into one module below:

1. **admit** (``admission``): the raw request becomes a checked plugin, VIF
   and instance, or a caller's error; nothing has changed yet;
2. **place and plan** (``placement``, then the plugin's ``plan``): the
   network, bridge and portgroup, then every name and device, still pure;
3. **intent, system, outcome** (``lifecycle``): the record is written
   ``plugging``, the plugin changes the system, the record becomes
   ``plugged``, durably, before the caller is answered;
4. **wait** (``ports``): outside any lock, until the port has an ofport or
   OVN installed it.

Operations on one VIF are serialized by its own lock; operations on
different VIFs run concurrently from the API's worker threads, which is what
lets the OVSDB layer coalesce them into shared transactions.  Every operation
passes the ``Gate``, which reconciliation holds alone.

A failover pair's transient member is plugged holding its own lock and its
persistent member's, taken in name order (so two operations that need the
same two locks never wait on each other crosswise); the persistent member's
unplug holds its own.  So the transient member's plug and the persistent
member's unplug never overlap, and the store, which checks the pair and
records it on both rows in one transaction, sees one of them first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping

from vifplug import exceptions, keyedlocks
from vifplug.negotiation import hostinfo
from vifplug.objects import host_info as hi
from vifplug.plugging import admission, lifecycle, ports
from vifplug.plugging import placement as placement_mod
from vifplug.plugging.admission import PlugRequest as PlugRequest
from vifplug.plugging.networks import NetworkDef
from vifplug.plugins import base as plugin_base
from vifplug.records import (
    Allocation,
    JsonObject,
    LeftAlone,
    Lifecycle,
    Teaming,
    VifRecord,
    canonical_json,
)
from vifplug.state import store as state_store

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PlugResult:
    record: VifRecord
    created: bool


class Service:
    """The daemon's behaviour, independent of HTTP and of how it is wired."""

    def __init__(
        self,
        *,
        store: state_store.Store,
        plugins: Mapping[str, plugin_base.PluginBase],
        placer: placement_mod.Placer,
        transitions: lifecycle.Transitions,
        ports: ports.OvsPorts,
        gate: lifecycle.Gate,
        default_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.placer = placer
        self.transitions = transitions
        self.ports = ports
        self.gate = gate
        self.default_timeout = default_timeout
        self._locks = keyedlocks.KeyedLocks()

    # -- negotiation -------------------------------------------------------------
    def host_info(self) -> hi.HostInfo:
        return hostinfo.build_host_info([p.describe() for p in self.plugins.values()])

    def plugin_names(self) -> frozenset[str]:
        """The installed plugins' names (what a VIF's ``plugin`` field may say)."""
        return frozenset(self.plugins)

    # -- plug ----------------------------------------------------------------------
    def plug(self, request: PlugRequest) -> PlugResult:
        """Plug idempotently: 201 the first time (``created``), the same record
        for the same request again, ``VIFConflict`` for other content.  Blocks
        until the wait condition, or raises ``PlugTimeout`` leaving the VIF
        plugged and listed."""
        admitted = admission.admit(request, self.plugins)  # 1
        plan = self._plan(admitted, request.portgroup)  # 2
        peer = request.teaming.persistent if request.teaming else None
        with self._operation(admitted.vif_id, peer):  # 3
            record, created = self._plug_locked(request, admitted, plan)
        self._wait(record, request)  # 4
        return PlugResult(record=self.store.get(record.vif_id) or record, created=created)

    def _plan(self, admitted: admission.Admitted, portgroup: str | None) -> Allocation:
        """Where the VIF goes and what it needs there; pure."""
        plugin = admitted.plugin
        placement = self.placer.place(
            admitted.vif, plugin=plugin.NAME, network_type=plugin.NETWORK_TYPE
        )
        plan = plugin.plan(admitted.vif, admitted.instance, placement)
        return self.placer.with_portgroup(plan, placement, portgroup, vif_id=admitted.vif_id)

    def _plug_locked(
        self, request: PlugRequest, admitted: admission.Admitted, plan: Allocation
    ) -> tuple[VifRecord, bool]:
        digest = request.digest()
        existing = self.store.get(admitted.vif_id)
        if existing is not None and existing.request_digest != digest:
            raise exceptions.VIFConflict(
                vif_id=admitted.vif_id, difference="the request body differs"
            )
        if existing is not None and existing.lifecycle == Lifecycle.UNPLUGGING:
            # An unplug was interrupted (only possible across a crash): finish
            # it, then plug afresh.
            self.transitions.unplug(existing)
            existing = None
        exclusive = not request.allow_dual_active
        if existing is not None and existing.lifecycle == Lifecycle.PLUGGED:
            return self.transitions.replug(existing, admitted, exclusive=exclusive), False
        intent = plugin_base.DURABLE  # an interrupted plug's (finish what it planned)
        if existing is None:
            existing, intent = self._begin(request, admitted, plan, digest)
        assert existing.allocation is not None
        status = request.iface_status if existing.allocation.bridge else None
        final = self.transitions.finish_plug(
            existing, admitted, iface_status=status, exclusive=exclusive, intent=intent
        )
        done = final.allocation
        assert done is not None
        where = done.bridge or done.pool_device or done.port or "-"
        LOG.info("plugged VIF %s as %s on %s", final.vif_id, done.device, where)
        return final, True

    def _begin(
        self, request: PlugRequest, admitted: admission.Admitted, plan: Allocation, digest: str
    ) -> tuple[VifRecord, plugin_base.Intent]:
        """Record the intent, and how to wait for it to be durable.  A pool
        network's device is chosen with it, durably before the plug goes on."""
        now = time.time()
        teaming = request.teaming
        stored: JsonObject = {"vif": request.vif, "instance": request.instance}
        if teaming is not None:
            stored["teaming"] = teaming.to_json()
        record = VifRecord(
            vif_id=admitted.vif_id,
            plugin=admitted.plugin.NAME,
            obj_name=admitted.vif.obj_name(),
            obj_version=str(request.vif.get("versioned_object.version", admitted.vif.VERSION)),
            instance_uuid=str(admitted.instance.uuid),
            instance_name=str(admitted.instance.name),
            request_json=canonical_json(stored),
            request_digest=digest,
            lifecycle=Lifecycle.PLUGGING,
            iface_id=(plan.virtualport or {}).get("interface_id"),
            mac=plugin_base.address(admitted.vif),
            allocation=plan,
            teaming_type=Teaming(teaming.type) if teaming else None,
            teaming_peer=teaming.persistent if teaming else None,
            created_at=now,
            updated_at=now,
        )
        if not self.placer.needs_pool_device(plan):
            return record, self.transitions.queue_begin_plug(record)

        def choose(holders: Mapping[str, list[str]]) -> str:
            return self.placer.choose_device(plan, holders, vif_id=admitted.vif_id)

        return self.transitions.begin_plug(record, choose), plugin_base.DURABLE

    def _wait(self, record: VifRecord, request: PlugRequest) -> None:
        if request.wait == "none" or record.allocation is None:
            return
        timeout = self.default_timeout if request.timeout is None else request.timeout
        self.ports.wait_ready(
            record.allocation,
            request.wait,
            timeout,
            vif_id=record.vif_id,
            active=record.iface_status == admission.ACTIVE,
        )

    # -- unplug and iface-status -------------------------------------------------------
    def unplug(self, vif_id: str) -> tuple[LeftAlone, ...]:
        """Remove what vifplug made for the VIF, then forget it; ``VIFNotFound``
        when it is unknown.  Returns what was left in place as not ours."""
        with self._operation(vif_id):
            left = self.transitions.unplug(self.get(vif_id))
        LOG.info("unplugged VIF %s", vif_id)
        return left

    def set_status(self, vif_id: str, status: str, *, allow_dual_active: bool = False) -> VifRecord:
        """Make the VIF's interface active or inactive; activating one makes
        the others with its iface-id inactive in the same OVSDB transaction."""
        admission.check_status(status)
        with self._operation(vif_id):
            record = self.get(vif_id)
            if record.lifecycle != Lifecycle.PLUGGED:
                raise exceptions.VIFLifecycleError(
                    vif_id=vif_id,
                    lifecycle=record.lifecycle.value,
                    operation="change its iface-status",
                )
            self.transitions.set_status(record, status, exclusive=not allow_dual_active)
        LOG.info("VIF %s iface-status %s", vif_id, status)
        return self.get(vif_id)

    @contextlib.contextmanager
    def _operation(self, vif_id: str, peer: str | None = None) -> Iterator[None]:
        """Past the gate (not while reconciling), then this VIF's lock (and
        its teaming peer's)."""
        with self.gate.operation(), self._locks.held(vif_id, peer):
            yield

    # -- networks --------------------------------------------------------------------
    def networks_view(self) -> list[JsonObject]:
        networks = self.placer.networks.defs
        holders = {name: self.store.pool_holders(name) for name in networks}
        return self.placer.describe(holders)

    def reload_networks(self, defs: Mapping[str, NetworkDef]) -> list[str]:
        """Apply changed network definitions without touching plugged VIFs;
        returns the removed networks kept because they still have VIFs."""
        in_use = {
            r.allocation.network
            for r in self.store.all()
            if r.allocation is not None and r.allocation.network
        }
        return self.placer.reload(defs, in_use=in_use)

    # -- reading ---------------------------------------------------------------------
    def get(self, vif_id: str) -> VifRecord:
        record = self.store.get(vif_id)
        if record is None:
            raise exceptions.VIFNotFound(vif_id=vif_id)
        return record

    def list(self) -> list[VifRecord]:
        return self.store.all()

    def ofport(self, record: VifRecord) -> int | None:
        if record.plugin not in self.plugins or record.allocation is None:
            return None
        return self.ports.ofport(record.allocation)
