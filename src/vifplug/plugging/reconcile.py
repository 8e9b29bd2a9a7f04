"""Start-up (and reconnect) reconciliation: converge the host on the state.

Rules, applied to every VIF the store knows:

- ``plugging`` (never acknowledged): roll back whatever the interrupted plug
  made, and forget the VIF; the caller never got an answer and retries.
- ``unplugging``: finish the unplug.
- ``plugged`` (acknowledged): make sure its devices and port exist; recreate
  what is missing with the same names, from the recorded request and
  allocation, so pool devices stay with the VIF that holds them.

Then whatever carries this daemon's marks (``vifplug-owner`` in an
Interface's external_ids, our kernel link group) and belongs to no plugged VIF
is removed.  Nothing without those marks is touched.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
from typing import Any

from vifplug.objects import loading
from vifplug.plugging import inventory
from vifplug.plugins import base as plugin_base
from vifplug.records import Lifecycle

LOG = logging.getLogger(__name__)

REPAIR_WORKERS = 64


@dataclasses.dataclass
class Report:
    rolled_back: list[str] = dataclasses.field(default_factory=list)
    finished_unplugs: list[str] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)
    leaked_ports: list[str] = dataclasses.field(default_factory=list)
    leaked_links: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (
            f"rolled back {len(self.rolled_back)} interrupted plug(s), finished "
            f"{len(self.finished_unplugs)} unplug(s), repaired {len(self.repaired)} "
            f"VIF(s), removed {len(self.leaked_ports)} leaked port(s) and "
            f"{len(self.leaked_links)} leaked device(s)"
        )


class Reconciler:
    """Runs reconciliation; one run at a time, while plugs are held off."""

    def __init__(self, *, service: Any, ctx: plugin_base.PluginContext) -> None:
        self.service = service
        self.ctx = ctx
        self._lock = threading.Lock()
        self.runs = 0
        self.last: Report | None = None
        self.running = False

    def run(self) -> Report:
        with self._lock, self.service.exclusive():
            self.running = True
            try:
                report = self._run()
            finally:
                self.running = False
        self.runs += 1
        self.last = report
        LOG.info("reconciliation: %s", report.summary())
        return report

    def _run(self) -> Report:
        """Classify every VIF against one inventory of the host, then act on
        those that need it concurrently, so their OVSDB writes share
        transactions (after a lost database, a repair per VIF one after the
        other would cost one ovs-vswitchd reconfiguration each)."""
        report = Report()
        store = self.service.store
        plugins = self.service.plugins
        links = inventory.take(self.ctx).links
        work: list[tuple[str, Any, plugin_base.PluginBase]] = []
        for record in store.all():
            plugin = plugins.get(record.plugin)
            if plugin is None or record.allocation is None:
                if record.lifecycle != Lifecycle.PLUGGED:
                    store.begin_unplug(record.vif_id)
                    store.finish_unplug(record.vif_id)
                continue
            if record.lifecycle == Lifecycle.PLUGGING:
                work.append(("rolled_back", record, plugin))
            elif record.lifecycle == Lifecycle.UNPLUGGING:
                work.append(("finished_unplugs", record, plugin))
            elif not self._present(record, links):
                work.append(("repaired", record, plugin))
        if work:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(REPAIR_WORKERS, len(work)), thread_name_prefix="reconcile"
            ) as pool:
                outcomes = list(pool.map(self._act, work))
            for (kind, record, _), error in zip(work, outcomes, strict=True):
                if error is None:
                    getattr(report, kind).append(record.vif_id)
                else:
                    report.errors.append(f"{record.vif_id}: {error}")
        for name in ("rolled_back", "finished_unplugs", "repaired"):
            getattr(report, name).sort()
        self._remove_leaks(report)
        return report

    def _act(self, item: tuple[str, Any, plugin_base.PluginBase]) -> str | None:
        """Finish, undo or repair one VIF; the error as text, or None."""
        kind, record, plugin = item
        store = self.service.store
        try:
            if kind == "rolled_back":
                store.begin_unplug(record.vif_id)
                plugin.unplug(record.allocation, record.vif_id)
                store.finish_unplug(record.vif_id)
            elif kind == "finished_unplugs":
                plugin.unplug(record.allocation, record.vif_id)
                store.finish_unplug(record.vif_id)
            else:
                vif = loading.load_vif(record.request["vif"])
                instance = loading.load_instance(record.request["instance"])
                plugin.plug(
                    vif,
                    instance,
                    record.allocation,
                    iface_status=record.iface_status,
                    exclusive=False,
                )
        except Exception as exc:  # one VIF must not stop the others
            LOG.exception("reconciliation of VIF %s failed", record.vif_id)
            return str(exc)
        return None

    def _present(self, record: Any, links: frozenset[str]) -> bool:
        alloc = record.allocation
        if not set(alloc.created_devices) <= links:
            return False
        return not (
            alloc.created_port and alloc.port and not inventory.port_exists(self.ctx, alloc.port)
        )

    def _remove_leaks(self, report: Report) -> None:
        inv = inventory.take(self.ctx)
        owned_ports: set[str] = set()
        owned_links: set[str] = set()
        for record in self.service.store.all():
            if record.allocation is None:
                continue
            if record.allocation.created_port and record.allocation.port:
                owned_ports.add(record.allocation.port)
            owned_links.update(record.allocation.created_devices)
            if record.allocation.port:
                # A shared device a VIF sits on (the linux bridge of the
                # linux_bridge plugin) is in use while any VIF names it.
                owned_links.add(record.allocation.port)
        report.leaked_ports = sorted(set(inv.ports) - owned_ports)
        report.leaked_links = sorted(inv.links - owned_links)
        inventory.remove_ports(self.ctx, report.leaked_ports)
        inventory.delete_links(self.ctx, report.leaked_links)
