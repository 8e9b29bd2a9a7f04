"""Start-up (and reconnect) reconciliation: converge the host on the state.

Rules, applied to every VIF the store knows:

- ``plugging`` (never acknowledged): roll back whatever the interrupted plug
  made, and forget the VIF; the caller never got an answer and retries.
- ``unplugging``: finish the unplug.
- ``plugged`` (acknowledged): make sure its devices and port exist; recreate
  what is missing with the same names, from the recorded request and
  allocation, so pool devices stay with the VIF that holds them.

Each of these is a ``lifecycle.Transitions`` call, the same code the service
runs.  Then whatever carries this daemon's marks (``vifplug-owner`` in an
Interface's external_ids, our kernel link group) and belongs to no plugged VIF
is removed.  Nothing without those marks is touched.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import logging
import threading
from collections.abc import Callable

from vifplug.plugging import inventory as inventory_mod
from vifplug.plugging import lifecycle
from vifplug.records import Lifecycle, VifRecord
from vifplug.state import store as state_store

LOG = logging.getLogger(__name__)

REPAIR_WORKERS = 64


class Action(enum.Enum):
    """What reconciliation does to one VIF; the value names its Report list."""

    ROLL_BACK = "rolled_back"
    FINISH_UNPLUG = "finished_unplugs"
    REPAIR = "repaired"


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

    def __init__(
        self,
        *,
        store: state_store.Store,
        transitions: lifecycle.Transitions,
        gate: lifecycle.Gate,
        inventory: inventory_mod.Inventory,
    ) -> None:
        self.store = store
        self.transitions = transitions
        self.gate = gate
        self.inventory = inventory
        self._lock = threading.Lock()
        self.runs = 0
        self.last: Report | None = None
        self.running = False

    def run(self) -> Report:
        with self._lock, self.gate.exclusive():
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
        work = self._classify(self.inventory.take().links)
        if work:
            workers = min(REPAIR_WORKERS, len(work))
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="reconcile"
            ) as pool:
                outcomes = list(pool.map(self._act, work))
            for (action, record), error in zip(work, outcomes, strict=True):
                if error is None:
                    getattr(report, action.value).append(record.vif_id)
                else:
                    report.errors.append(f"{record.vif_id}: {error}")
        for action in Action:
            getattr(report, action.value).sort()
        self._remove_leaks(report)
        return report

    def _classify(self, links: frozenset[str]) -> list[tuple[Action, VifRecord]]:
        work: list[tuple[Action, VifRecord]] = []
        for record in self.store.all():
            if record.plugin not in self.transitions.plugins or record.allocation is None:
                if record.lifecycle != Lifecycle.PLUGGED:
                    self.transitions.forget(record)
                continue
            if record.lifecycle == Lifecycle.PLUGGING:
                work.append((Action.ROLL_BACK, record))
            elif record.lifecycle == Lifecycle.UNPLUGGING:
                work.append((Action.FINISH_UNPLUG, record))
            elif not self._present(record, links):
                work.append((Action.REPAIR, record))
        return work

    def _act(self, item: tuple[Action, VifRecord]) -> str | None:
        """Finish, undo or repair one VIF; the error as text, or None."""
        action, record = item
        step: Callable[[VifRecord], object] = (
            self.transitions.repair if action is Action.REPAIR else self.transitions.unplug
        )
        try:
            step(record)
        except Exception as exc:  # one VIF must not stop the others
            LOG.exception("reconciliation of VIF %s failed", record.vif_id)
            return str(exc)
        return None

    def _present(self, record: VifRecord, links: frozenset[str]) -> bool:
        alloc = record.allocation
        assert alloc is not None
        if not set(alloc.created_devices) <= links:
            return False
        return not (
            alloc.created_port and alloc.port and not self.inventory.port_exists(alloc.port)
        )

    def _remove_leaks(self, report: Report) -> None:
        snapshot = self.inventory.take()
        owned_ports: set[str] = set()
        owned_links: set[str] = set()
        for record in self.store.all():
            if record.allocation is None:
                continue
            if record.allocation.created_port and record.allocation.port:
                owned_ports.add(record.allocation.port)
            owned_links.update(record.allocation.created_devices)
            if record.allocation.port:
                # A shared device a VIF sits on (the linux bridge of the
                # linux_bridge plugin) is in use while any VIF names it.
                owned_links.add(record.allocation.port)
        report.leaked_ports = sorted(set(snapshot.ports) - owned_ports)
        report.leaked_links = sorted(snapshot.links - owned_links)
        self.inventory.remove_ports(report.leaked_ports)
        self.inventory.delete_links(report.leaked_links)
