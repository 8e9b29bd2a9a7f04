"""plug / unplug / set_status: the one place that orders the steps.

Every operation follows the same order, so that a crash at any point leaves
something start-up reconciliation can finish or undo:

1. validate and plan (pure; a caller mistake is refused before anything changes),
2. record the intent in the state store (durable),
3. change the system through the plugin (which rolls back its own partial work),
4. record the outcome (durable) and only then acknowledge.

Operations on one VIF are serialized by a striped lock; operations on
different VIFs run concurrently from the API's worker threads, which is what
lets the OVSDB layer coalesce them into shared transactions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from vifplug import exceptions
from vifplug.negotiation import hostinfo
from vifplug.objects import loading
from vifplug.plugins import base as plugin_base
from vifplug.records import Allocation, Lifecycle, VifRecord

LOG = logging.getLogger(__name__)

WAIT_MODES = ("none", "ofport", "ovn-installed")
ACTIVE, INACTIVE = "active", "inactive"
_STRIPES = 1024


@dataclasses.dataclass(frozen=True)
class PlugRequest:
    """A plug as the API received it: os_vif primitives plus how to answer."""

    vif: dict[str, Any]
    instance: dict[str, Any]
    wait: str = "ofport"
    timeout: float | None = None
    iface_status: str = ACTIVE
    allow_dual_active: bool = False
    portgroup: str | None = None

    def digest(self) -> str:
        """Identity of the request's content, for idempotency and conflicts:
        the objects and every option that changes what is plugged (not how
        the caller waits for it)."""
        canonical = json.dumps(
            {
                "vif": self.vif,
                "instance": self.instance,
                "iface_status": self.iface_status,
                "allow_dual_active": self.allow_dual_active,
                "portgroup": self.portgroup,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class PlugResult:
    record: VifRecord
    created: bool


class Service:
    """The daemon's behaviour, independent of HTTP and of how it is wired."""

    def __init__(
        self,
        *,
        store: Any,
        plugins: dict[str, plugin_base.PluginBase],
        networks: Any = None,
        default_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.networks = networks
        self.default_timeout = default_timeout
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        # iface-status of VIFs sharing an iface-id changes under this lock
        # (always taken after the VIF's own), so OVSDB and the store agree.
        self._iface_stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._pool_lock = threading.Lock()

    # -- negotiation -------------------------------------------------------------
    def host_info(self) -> Any:
        return hostinfo.build_host_info([p.describe() for p in self.plugins.values()])

    def plugin_names(self) -> frozenset[str]:
        """The installed plugins' names (what a VIF's ``plugin`` field may say)."""
        return frozenset(self.plugins)

    # -- choosing a plugin (pure) ----------------------------------------------------
    def _select_plugin(self, vif_primitive: dict[str, Any]) -> plugin_base.PluginBase:
        obj_name, version = loading.primitive_identity(vif_primitive, what="vif")
        data = vif_primitive.get("versioned_object.data")
        wanted = data.get("plugin") if isinstance(data, dict) else None
        if wanted is not None:
            plugin = self.plugins.get(str(wanted))
            if plugin is None:
                raise exceptions.NoMatchingPlugin(plugin_name=wanted)
            candidates = [plugin]
        else:
            candidates = [p for p in self.plugins.values() if p.range_for(obj_name)]
            if not candidates:
                raise exceptions.UnsupportedVIFType(plugin="(any installed)", obj_name=obj_name)
        plugin = candidates[0]
        rng = plugin.range_for(obj_name)
        if rng is None:
            raise exceptions.UnsupportedVIFType(plugin=plugin.NAME, obj_name=obj_name)
        hostinfo.check_version(
            obj_name, version, rng.min_version, rng.max_version, plugin=plugin.NAME
        )
        return plugin

    def _check_profile(self, plugin: plugin_base.PluginBase, vif_primitive: dict[str, Any]) -> None:
        """The port profile against the plugin's range, before the VIF is loaded,
        so a profile too new for us is named with the range (not just refused)."""
        data = vif_primitive.get("versioned_object.data")
        profile = data.get("port_profile") if isinstance(data, dict) else None
        if profile is None:
            return
        name, version = loading.primitive_identity(profile, what="port_profile")
        rng = plugin.range_for(str(vif_primitive.get("versioned_object.name")))
        assert rng is not None
        for pname, lo, hi in rng.port_profiles:
            if pname == name:
                hostinfo.check_version(name, version, lo, hi, plugin=plugin.NAME)
                return
        raise exceptions.UnsupportedPortProfile(
            plugin=plugin.NAME, profile=name, obj_name=vif_primitive.get("versioned_object.name")
        )

    def prepare(self, request: PlugRequest) -> tuple[plugin_base.PluginBase, Any, Any, Allocation]:
        """Validate a plug request completely without changing anything."""
        if request.wait not in WAIT_MODES:
            raise exceptions.InvalidRequest(
                reason=f"wait must be one of {', '.join(WAIT_MODES)}, not {request.wait!r}"
            )
        if request.iface_status not in (ACTIVE, INACTIVE):
            raise exceptions.InvalidRequest(
                reason=f"iface_status must be active or inactive, not {request.iface_status!r}"
            )
        plugin = self._select_plugin(request.vif)
        self._check_profile(plugin, request.vif)
        vif = loading.load_vif(request.vif)
        instance = loading.load_instance(request.instance)
        plugin.check_address(vif)
        plan = plugin.plan(vif, instance)
        if self.networks is not None:
            defined = self.networks.network_of(vif)
            wanted = {"ovs": "ovs", "direct": "direct"}.get(plugin.NAME)
            if defined is not None and wanted is not None and defined.type != wanted:
                raise exceptions.InvalidRequest(
                    reason=f"VIF {vif.id} names network {defined.name}, a {defined.type} "
                    f"network, which plugin {plugin.NAME} cannot use"
                )
            if defined is not None and wanted is not None:
                plan = self.networks.apply_portgroup(
                    defined.name, request.portgroup, plan, vif_id=str(vif.id)
                )
        if request.portgroup is not None and plan.portgroup is None:
            raise exceptions.InvalidRequest(
                reason=f"portgroup {request.portgroup} given but VIF {vif.id} names no "
                f"configured network"
            )
        return plugin, vif, instance, plan

    # -- plug ----------------------------------------------------------------------
    def _lock(self, vif_id: str) -> threading.Lock:
        return self._stripes[hash(vif_id) % _STRIPES]

    def _iface_lock(self, iface_id: str | None) -> contextlib.AbstractContextManager[Any]:
        if iface_id is None:
            return contextlib.nullcontext()
        return self._iface_stripes[hash(iface_id) % _STRIPES]

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold every VIF lock: reconciliation runs while no plug is in flight."""
        for lock in self._stripes:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(self._stripes):
                lock.release()

    def plug(self, request: PlugRequest) -> PlugResult:
        """Plug idempotently; blocks until the wait condition (or raises
        ``PlugTimeout``, leaving the VIF plugged and listed)."""
        plugin, vif, instance, plan = self.prepare(request)
        digest = request.digest()
        vif_id = str(vif.id)
        with self._lock(vif_id):
            existing = self.store.get(vif_id)
            if existing is not None and existing.request_digest != digest:
                raise exceptions.VIFConflict(vif_id=vif_id, difference="the request body differs")
            if existing is not None and existing.lifecycle == Lifecycle.UNPLUGGING:
                # An unplug was interrupted (only possible across a crash):
                # finish it, then plug afresh.
                self._finish_unplug(existing)
                existing = None
            if existing is not None and existing.lifecycle == Lifecycle.PLUGGED:
                record, created = self._replug(plugin, vif, instance, existing, request), False
            else:
                record, created = (
                    self._plug_new(plugin, vif, instance, plan, request, digest, existing),
                    True,
                )
        self._wait(plugin, record, request)
        return PlugResult(record=self.store.get(vif_id) or record, created=created)

    def _plug_new(
        self,
        plugin: plugin_base.PluginBase,
        vif: Any,
        instance: Any,
        plan: Allocation,
        request: PlugRequest,
        digest: str,
        existing: VifRecord | None,
    ) -> VifRecord:
        if existing is not None and existing.allocation is not None:
            plan = existing.allocation  # an interrupted plug: finish what was planned
        now = time.time()

        def record_for(plan: Allocation) -> VifRecord:
            return VifRecord(
                vif_id=str(vif.id),
                plugin=plugin.NAME,
                obj_name=vif.obj_name(),
                obj_version=str(request.vif.get("versioned_object.version", vif.VERSION)),
                instance_uuid=str(instance.uuid),
                instance_name=str(instance.name),
                request={"vif": request.vif, "instance": request.instance},
                request_digest=digest,
                lifecycle=Lifecycle.PLUGGING,
                iface_id=(plan.virtualport or {}).get("interface_id"),
                iface_status=None,
                mac=plugin.address(vif),
                allocation=plan,
                created_at=now,
                updated_at=now,
            )

        if existing is not None:
            record = existing
            plan = existing.allocation or plan
        elif (
            self.networks is not None
            and plan.network is not None
            and plan.pool_device is None
            and self.networks.is_direct(plan.network)
        ):
            # Choosing and recording happen under one lock, so two plugs never
            # take the same exclusive device.
            with self._pool_lock:
                holders = self.store.pool_holders(plan.network)
                device = self.networks.choose_device(
                    plan.network, holders, vif_id=str(vif.id), virtualport=plan.virtualport
                )
                plan = dataclasses.replace(plan, pool_device=device)
                record = record_for(plan)
                self.store.begin_plug(record)
        else:
            record = record_for(plan)
            self.store.begin_plug(record)
        with self._iface_lock(record.iface_id):
            try:
                outcome = plugin.plug(
                    vif,
                    instance,
                    plan,
                    iface_status=self._status(plan, request),
                    exclusive=not request.allow_dual_active,
                )
            except BaseException:
                # The plugin removed what it made; forget the intent (through
                # the same unplugging step reconciliation takes after a crash).
                self.store.begin_unplug(record.vif_id)
                self.store.finish_unplug(record.vif_id)
                raise
            final = self.store.finish_plug(
                record.vif_id, outcome.allocation, iface_status=self._status(plan, request)
            )
            self._record_demotions(final, outcome.demoted)
        LOG.info(
            "plugged VIF %s as %s on %s",
            final.vif_id,
            plan.device,
            plan.bridge or plan.pool_device or plan.port or "-",
        )
        return final  # type: ignore[no-any-return]

    def _replug(
        self,
        plugin: plugin_base.PluginBase,
        vif: Any,
        instance: Any,
        existing: VifRecord,
        request: PlugRequest,
    ) -> VifRecord:
        """The same request again: make sure the system still matches (repairs a
        deleted tap or port) without changing what the caller sees."""
        assert existing.allocation is not None
        with self._iface_lock(existing.iface_id):
            outcome = plugin.plug(
                vif,
                instance,
                existing.allocation,
                iface_status=existing.iface_status,
                exclusive=not request.allow_dual_active,
            )
            self._record_demotions(existing, outcome.demoted)
        return existing

    @staticmethod
    def _status(plan: Allocation, request: PlugRequest) -> str | None:
        return request.iface_status if plan.bridge else None

    def _record_demotions(self, record: VifRecord, demoted: Iterable[str]) -> None:
        names = set(demoted)
        if not names or record.iface_id is None:
            return
        changes: dict[str, str | None] = {}
        for other in self.store.by_iface_id(record.iface_id):
            if (
                other.vif_id != record.vif_id
                and other.allocation is not None
                and other.allocation.port in names
            ):
                changes[other.vif_id] = INACTIVE
        if changes:
            self.store.set_status(changes)
            LOG.info("VIF %s active; made %s inactive", record.vif_id, ", ".join(changes))

    def _wait(
        self, plugin: plugin_base.PluginBase, record: VifRecord, request: PlugRequest
    ) -> None:
        if request.wait == "none" or record.allocation is None:
            return
        timeout = self.default_timeout if request.timeout is None else request.timeout
        if not plugin.wait_ready(record.allocation, request.wait, timeout):
            raise exceptions.PlugTimeout(
                vif_id=record.vif_id,
                device=record.allocation.device,
                condition="ovn-controller's ovn-installed"
                if request.wait == "ovn-installed"
                else "an ofport",
                timeout=timeout,
            )

    # -- unplug ----------------------------------------------------------------------
    def unplug(self, vif_id: str) -> None:
        with self._lock(vif_id):
            record = self.store.get(vif_id)
            if record is None:
                raise exceptions.VIFNotFound(vif_id=vif_id)
            self._finish_unplug(record)
        LOG.info("unplugged VIF %s", vif_id)

    def _finish_unplug(self, record: VifRecord) -> None:
        if record.lifecycle != Lifecycle.UNPLUGGING:
            record = self.store.begin_unplug(record.vif_id)
        plugin = self.plugins.get(record.plugin)
        if plugin is not None and record.allocation is not None:
            plugin.unplug(record.allocation, record.vif_id)
        self.store.finish_unplug(record.vif_id)

    # -- iface-status ----------------------------------------------------------------
    def set_status(self, vif_id: str, status: str, *, allow_dual_active: bool = False) -> VifRecord:
        if status not in (ACTIVE, INACTIVE):
            raise exceptions.InvalidRequest(
                reason=f"iface_status must be active or inactive, not {status!r}"
            )
        with self._lock(vif_id):
            record = self.store.get(vif_id)
            if record is None:
                raise exceptions.VIFNotFound(vif_id=vif_id)
            if record.lifecycle != Lifecycle.PLUGGED:
                raise exceptions.VIFLifecycleError(
                    vif_id=vif_id,
                    lifecycle=record.lifecycle.value,
                    operation="change its iface-status",
                )
            plugin = self.plugins.get(record.plugin)
            demoted: list[str] = []
            with self._iface_lock(record.iface_id):
                if plugin is not None and record.allocation is not None:
                    demoted = plugin.set_status(
                        record.allocation, status, exclusive=not allow_dual_active
                    )
                self.store.set_status({vif_id: status})
                self._record_demotions(record, demoted)
        LOG.info("VIF %s iface-status %s", vif_id, status)
        return self.store.get(vif_id)  # type: ignore[no-any-return]

    # -- networks --------------------------------------------------------------------
    def networks_view(self) -> list[dict[str, Any]]:
        if self.networks is None:
            return []
        holders = {name: self.store.pool_holders(name) for name in self.networks.defs}
        return self.networks.describe(holders)  # type: ignore[no-any-return]

    def reload_networks(self, new: Any) -> list[str]:
        """Apply changed network definitions without touching plugged VIFs.

        A network that still has VIFs cannot be removed: its old definition is
        kept and the refusal is returned (and logged) for the operator."""
        refused: list[str] = []
        if self.networks is None:
            self.networks = new
            return refused
        in_use = {
            r.allocation.network
            for r in self.store.all()
            if r.allocation is not None and r.allocation.network
        }
        defs = dict(new.defs)
        for name in sorted(in_use):
            if name not in defs and name in self.networks.defs:
                defs[name] = self.networks.defs[name]
                refused.append(name)
                LOG.error(
                    "network %s was removed from the configuration but still has "
                    "VIFs; keeping its definition until they are unplugged",
                    name,
                )
        self.networks = type(new)(defs)
        return refused

    # -- reading ---------------------------------------------------------------------
    def get(self, vif_id: str) -> VifRecord:
        record = self.store.get(vif_id)
        if record is None:
            raise exceptions.VIFNotFound(vif_id=vif_id)
        return record  # type: ignore[no-any-return]

    def list(self) -> list[VifRecord]:
        return self.store.all()  # type: ignore[no-any-return]

    def ofport(self, record: VifRecord) -> int | None:
        plugin = self.plugins.get(record.plugin)
        if plugin is None or record.allocation is None:
            return None
        return plugin.ofport(record.allocation)
