"""Prometheus metrics of one daemon, on a registry of its own.

A private ``CollectorRegistry`` (not prometheus_client's global one) so that
two daemons' apps in one process (tests) never see each other's counts.
What only the HTTP layer or the IDL thread sees as it happens (request
latencies, transactions, errors) lives in the usual metric objects; what
describes the current state (VIFs by lifecycle, broken interfaces,
ovs-vswitchd's lag, reconciliation totals, readiness) is read at scrape time
by ``_StateCollector`` from the objects that own it, so it can never drift
from them and costs the plug path nothing.

Names follow the Prometheus conventions: base units (``_seconds``),
``_total`` on counters, no ``_created`` series (they double the series
count and no query here needs them), and one meaning per label name across
every series: ``result`` is what a request or attempt ended as, ``kind`` a
port or a device, ``plugin`` a VIF plugin, ``code`` an error code,
``status`` an HTTP status.  ``docs/metrics.md`` lists every series, and a
functional test checks the list against a real scrape.
"""

from __future__ import annotations

import collections
import dataclasses
import platform
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

import vifplug
from vifplug.ovsdb import connection
from vifplug.plugging import engine as engine_mod
from vifplug.plugging import reconcile
from vifplug.plugins import base as plugin_base

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

#: Every ``result`` of a HostInfo push (``negotiation.push.Pusher``), shown at 0 from start.
PUSH_RESULTS = ("pushed", "error", "unreachable")
#: Every ``kind`` of host object (``records.LeftAlone.kind``, leaks).
KINDS = ("port", "device")

# The ``_created`` series are process-wide in prometheus_client; this daemon
# owns its process, so turning them off here is turning them off for it.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the scrape-time series are read from: the started engine's
    collaborators, and the daemon's readiness."""

    engine: engine_mod.Engine
    ready: Callable[[], bool]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


class _StateCollector(Collector):
    """The series that describe the daemon's current state, read at scrape."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        eng = self._sources.engine
        yield _gauge(
            "vifplug_ready",
            "1 when the daemon answers ready on /readyz (OVSDB connected, state reconciled)",
            1.0 if self._sources.ready() else 0.0,
        )
        if eng.service is not None:
            yield self._vifs(eng)
        if eng.ovsdb is not None:
            yield from _ovsdb_metrics(eng.ovsdb, eng.owner)
        if eng.reconciler is not None:
            yield from _reconcile_metrics(eng.reconciler)

    @staticmethod
    def _vifs(eng: engine_mod.Engine) -> GaugeMetricFamily:
        assert eng.service is not None
        vifs = GaugeMetricFamily(
            "vifplug_vifs",
            "VIFs in the state database, by plugin, iface-status and lifecycle state",
            labels=["plugin", "iface_status", "lifecycle"],
        )
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for record in eng.service.list():
            lifecycle = getattr(record.lifecycle, "value", record.lifecycle)
            counts[(str(record.plugin), str(record.iface_status or "none"), str(lifecycle))] += 1
        for labels, n in sorted(counts.items()):
            vifs.add_metric(list(labels), n)
        return vifs


def _ovsdb_metrics(ovsdb: connection.Connection, owner: str) -> Iterator[Metric]:
    """Connectivity, reconnects, committed work, broken interfaces and
    ovs-vswitchd's lag, all from the connection's counters and its replica
    (snapshots: a scrape never waits for the IDL thread or the server)."""
    yield _gauge(
        "vifplug_ovsdb_connected",
        "1 when the OVSDB connection is up and synchronized",
        1.0 if ovsdb.connected else 0.0,
    )
    yield CounterMetricFamily(
        "vifplug_ovsdb_reconnects",
        "Times the OVSDB connection came back after a loss and the replica was reloaded",
        value=ovsdb.reconnects,
    )
    yield CounterMetricFamily(
        "vifplug_ovsdb_transactions",
        "OVSDB transactions committed since start",
        value=ovsdb.transactions,
    )
    yield CounterMetricFamily(
        "vifplug_ovsdb_operations",
        "Write operations committed to OVSDB since start (several share one transaction)",
        value=ovsdb.ops_committed,
    )
    broken = GaugeMetricFamily(
        "vifplug_ovs_interfaces_broken",
        "OVS interfaces ovs-vswitchd failed to set up (ofport -1 or an error), by "
        "whether this daemon made them (ours: true) or not",
        labels=["ours"],
    )
    counts = {"true": 0, "false": 0}
    for view in ovsdb.interfaces():
        if view.failed:
            mine = view.external_ids.get(plugin_base.KEY_OWNER) == owner
            counts["true" if mine else "false"] += 1
    for ours, n in counts.items():
        broken.add_metric([ours], n)
    yield broken
    lag = ovsdb.vswitchd_lag()
    if lag is not None:
        yield _gauge(
            "vifplug_ovs_vswitchd_cfg_lag",
            "Configurations written to OVSDB that ovs-vswitchd has not applied yet "
            "(next_cfg - cur_cfg)",
            lag[0],
        )
        yield _gauge(
            "vifplug_ovs_vswitchd_behind_seconds",
            "Seconds since ovs-vswitchd last had applied every configuration (0 while caught up)",
            lag[1],
        )


def _reconcile_metrics(reconciler: reconcile.Reconciler) -> Iterator[Metric]:
    """Reconciliation's totals since start, and what its leak guard keeps now."""
    totals = reconciler.totals
    duration = SummaryMetricFamily(
        "vifplug_reconcile_duration_seconds",
        "Reconciliation runs (start-up, OVSDB reconnects, broken interfaces, purges) "
        "and the time they took, plugs held off meanwhile",
        count_value=totals.runs,
        sum_value=totals.seconds,
    )
    yield duration
    if totals.last_finished is not None:
        yield _gauge(
            "vifplug_reconcile_last_run_timestamp_seconds",
            "When the last reconciliation run finished (Unix time)",
            totals.last_finished,
        )
    vifs = CounterMetricFamily(
        "vifplug_reconcile_vifs",
        "VIFs reconciliation acted on, by action: rolled_back (an interrupted plug), "
        "finished_unplugs, repaired, forgotten_after_reboot",
        labels=["action"],
    )
    for action, n in totals.vifs.items():
        vifs.add_metric([action], n)
    yield vifs
    yield CounterMetricFamily(
        "vifplug_reconcile_errors",
        "VIFs reconciliation failed to act on (named in the log and /readyz)",
        value=totals.errors,
    )
    removed = CounterMetricFamily(
        "vifplug_reconcile_leaks_removed",
        "Leaked ports and devices (our marks, no VIF) reconciliation removed, by kind",
        labels=["kind"],
    )
    refused = CounterMetricFamily(
        "vifplug_reconcile_leaks_refused",
        "Leaked ports and devices the leak guard refused to remove, summed over runs, by kind",
        labels=["kind"],
    )
    for kind in KINDS:
        removed.add_metric([kind], totals.leaks_removed[kind])
        refused.add_metric([kind], totals.leaks_kept[kind])
    yield removed
    yield refused
    guard = reconciler.guard
    yield _gauge(
        "vifplug_leak_guard_held",
        "1 while reconciliation removes no leaked port or device (the state looks "
        "lost); 'vifplug purge-leaks' lists and removes them",
        1.0 if guard.held else 0.0,
    )
    kept = GaugeMetricFamily(
        "vifplug_leaks_kept",
        "Ports and devices with this daemon's marks that no VIF accounts for, kept by "
        "the leak guard at the last reconciliation",
        labels=["kind"],
    )
    kept.add_metric(["port"], guard.ports)
    kept.add_metric(["device"], guard.links)
    yield kept


class _BuildCollector(Collector):
    """``vifplug_build_info``: constant, so dashboards can join versions."""

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "vifplug_build_info",
            "Always 1; the labels say which vifplug and Python this daemon runs",
            labels=["version", "python_version"],
        )
        info.add_metric([vifplug.__version__, platform.python_version()], 1.0)
        yield info


class Metrics:
    """The daemon's metrics; the API, the daemon and OVSDB's hook feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        r.register(_BuildCollector())
        self.plug_seconds = Histogram(
            "vifplug_plug_duration_seconds",
            "Time to answer a plug request, by plugin and "
            "result (created, unchanged, or the error code)",
            ["plugin", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.unplug_seconds = Histogram(
            "vifplug_unplug_duration_seconds",
            "Time to answer an unplug request, by plugin and result (removed, or the error code)",
            ["plugin", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.unplug_left_alone = Counter(
            "vifplug_unplug_left_alone",
            "Devices and ports an unplug found under a recorded name but left in "
            "place because vifplug did not make them, by kind (device, port)",
            ["kind"],
            registry=r,
        )
        self.ovsdb_batch = Histogram(
            "vifplug_ovsdb_transaction_operations",
            "Operations coalesced per OVSDB transaction",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.ovsdb_commit_seconds = Histogram(
            "vifplug_ovsdb_transaction_duration_seconds",
            "Time from sending an OVSDB transaction to its acknowledgement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("vifplug_errors", "Error answers by error code", ["code"], registry=r)
        self.requests = Counter(
            "vifplug_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.netmgr_pushes = Counter(
            "vifplug_network_manager_pushes",
            "HostInfo pushes to the network manager, by result",
            ["result"],
            registry=r,
        )
        # Known label values start at 0, so a rate() sees the first increment.
        for kind in KINDS:
            self.unplug_left_alone.labels(kind=kind)
        for result in PUSH_RESULTS:
            self.netmgr_pushes.labels(result=result)

    def watch_engine(self, engine: engine_mod.Engine, *, ready: Callable[[], bool]) -> None:
        """Compute the state series at every scrape from the started
        ``engine`` (VIFs, OVSDB, reconciliation) and ``ready()``."""
        self.registry.register(_StateCollector(Sources(engine=engine, ready=ready)))

    # -- hooks -----------------------------------------------------------------------
    def observe_commit(self, batch_size: int, seconds: float) -> None:
        """The ``on_commit`` hook of ``ovsdb.connection.Connection`` (passed in
        through ``Engine``); runs in the IDL thread, so cheap."""
        self.ovsdb_batch.observe(batch_size)
        self.ovsdb_commit_seconds.observe(seconds)

    def count_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
