"""Prometheus metrics of one daemon, on a registry of its own.

A private ``CollectorRegistry`` (not prometheus_client's global one) so that
two daemons' apps in one process (tests) never see each other's counts.
What is counted as it happens (latencies, transactions, errors) lives in the
usual metric objects; what describes the current state (VIFs by plugin and
status, OVSDB connectivity) is computed at scrape time by a collector, so it
can never drift from the state store.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vifplug.records import VifRecord

#: What the leak gauges show: (guard held, ports kept, devices kept).
LeakGuardReading = Callable[[], tuple[bool, int, int]]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _StateCollector(Collector):
    """VIFs by plugin and iface-status, OVSDB connectivity and the connection's
    own transaction counters, read at scrape."""

    def __init__(
        self,
        records: Callable[[], Iterable[VifRecord]],
        connected: Callable[[], bool] | None,
        ovsdb_counts: Callable[[], tuple[int, int]] | None,
        leak_guard: LeakGuardReading | None = None,
    ) -> None:
        self._records = records
        self._connected = connected
        self._ovsdb_counts = ovsdb_counts
        self._leak_guard = leak_guard

    def collect(self) -> Iterator[Metric]:
        vifs = GaugeMetricFamily(
            "vifplug_vifs",
            "VIFs known to this host, by plugin, iface-status and lifecycle",
            labels=["plugin", "status", "lifecycle"],
        )
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for record in self._records():
            lifecycle = getattr(record.lifecycle, "value", record.lifecycle)
            counts[(str(record.plugin), str(record.iface_status or "none"), str(lifecycle))] += 1
        for labels, n in sorted(counts.items()):
            vifs.add_metric(list(labels), n)
        yield vifs
        if self._connected is not None:
            up = GaugeMetricFamily(
                "vifplug_ovsdb_connected", "1 when the OVSDB connection is up and synchronized"
            )
            up.add_metric([], 1.0 if self._connected() else 0.0)
            yield up
        if self._ovsdb_counts is not None:
            transactions, operations = self._ovsdb_counts()
            yield CounterMetricFamily(
                "vifplug_ovsdb_transactions",
                "OVSDB transactions committed since start",
                value=transactions,
            )
            yield CounterMetricFamily(
                "vifplug_ovsdb_operations",
                "Write operations committed to OVSDB since start (several share one transaction)",
                value=operations,
            )
        if self._leak_guard is not None:
            yield from _leak_metrics(*self._leak_guard())


def _leak_metrics(held: bool, ports: int, devices: int) -> Iterator[Metric]:
    guard = GaugeMetricFamily(
        "vifplug_leak_guard_held",
        "1 while reconciliation removes no leaked port or device (the state looks "
        "lost); 'vifplug purge-leaks' lists and removes them",
    )
    guard.add_metric([], 1.0 if held else 0.0)
    yield guard
    kept = GaugeMetricFamily(
        "vifplug_leaks_kept",
        "Ports and devices with this daemon's marks that no VIF accounts for, kept by "
        "the leak guard at the last reconciliation",
        labels=["kind"],
    )
    kept.add_metric(["port"], ports)
    kept.add_metric(["device"], devices)
    yield kept


class Metrics:
    """The daemon's metrics; the API, the daemon and OVSDB's hook feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.plug_seconds = Histogram(
            "vifplug_plug_duration_seconds",
            "Time to answer a plug request, by plugin and "
            "outcome (created, unchanged, or the error code)",
            ["plugin", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.unplug_seconds = Histogram(
            "vifplug_unplug_duration_seconds",
            "Time to answer an unplug request, by outcome",
            ["outcome"],
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

    def watch_state(
        self,
        records: Callable[[], Iterable[VifRecord]],
        connected: Callable[[], bool] | None = None,
        ovsdb_counts: Callable[[], tuple[int, int]] | None = None,
        leak_guard: LeakGuardReading | None = None,
    ) -> None:
        """Compute the state metrics at every scrape: VIFs from ``records()``,
        ``connected()``, ``ovsdb_counts()`` -> (transactions, operations)
        from the OVSDB connection's own counters (which include what was
        committed before the API started), and ``leak_guard()`` -> (held,
        ports kept, devices kept)."""
        self.registry.register(_StateCollector(records, connected, ovsdb_counts, leak_guard))

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
