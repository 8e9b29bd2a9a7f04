"""``/metrics`` of a real vifplugd against a real Open vSwitch.

The scrape is parsed with prometheus_client's own parser, and compared with
the table of ``docs/metrics.md``: a series added to the code without a row,
or a row without a series, fails here.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import primitives as prim
from daemon_fixture import Daemon, unique
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

import ovs_sandbox
import vifplug

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (\w+) \| ([^|]*) \|")


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md's table: name -> (type, label names)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        found = _ROW.match(line)
        if found:
            name, kind, labels = found.groups()
            rows[name] = (kind, frozenset(re.findall(r"`([a-z_]+)`", labels)))
    assert len(rows) > 20, "the table of docs/metrics.md was not found"
    return rows


def scrape(daemon: Daemon) -> tuple[str, dict[str, Metric]]:
    """The raw text and the parsed families, keyed by their name as scraped
    (counters with their ``_total``)."""
    with daemon.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(r.text):
        name = family.name + "_total" if family.type == "counter" else family.name
        families[name] = family
    return r.text, families


def value(family: Metric, suffix: str | None = None, **labels: str) -> float:
    """The one sample of ``family`` named ``family.name + suffix`` (default:
    ``_total`` for a counter, nothing else) with these labels."""
    if suffix is None:
        suffix = "_total" if family.type == "counter" else ""
    found = [
        s.value
        for s in family.samples
        if s.name.removeprefix(family.name) == suffix
        and {k: v for k, v in s.labels.items() if k in labels} == labels
    ]
    assert len(found) == 1, (family.name, suffix, labels, family.samples)
    return found[0]


def wait_for(daemon: Daemon, check: Callable[[dict[str, Metric]], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        families = scrape(daemon)[1]
        if check(families):
            return
        assert time.monotonic() < deadline, f"{what}: not seen within 60 s"
        time.sleep(0.2)


def _labels(family: Metric) -> frozenset[str]:
    return frozenset(k for s in family.samples for k in s.labels if k not in ("le", "quantile"))


def test_every_documented_series_is_served_after_a_plug(vifplugd: Daemon) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    with vifplugd.client() as c:
        assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
        assert c.get(f"/v1/vifs/{uuid.uuid4()}").status_code == 404
    text, f = scrape(vifplugd)
    assert "_created" not in text
    assert value(f["vifplug_build_info"]) == 1.0
    assert {s.labels["version"] for s in f["vifplug_build_info"].samples} == {vifplug.__version__}
    assert value(f["vifplug_ready"]) == 1.0
    assert value(f["vifplug_ovsdb_connected"]) == 1.0
    assert value(f["process_resident_memory_bytes"]) > 1e6
    assert 0 < time.time() - value(f["process_start_time_seconds"]) < 86400
    assert value(f["process_open_fds"]) > 0
    plug = f["vifplug_plug_duration_seconds"]
    assert value(plug, "_count", plugin="ovs", result="created") == 1.0
    assert 0 < value(plug, "_sum", plugin="ovs", result="created") < 60
    assert value(f["vifplug_vifs"], plugin="ovs", iface_status="active", lifecycle="plugged") == 1
    assert value(f["vifplug_errors_total"], code="vif_not_found") == 1.0
    assert value(f["vifplug_http_requests_total"], route="/v1/vifs", status="201") == 1.0
    assert value(f["vifplug_ovsdb_transactions_total"]) >= 1
    assert value(f["vifplug_ovsdb_operations_total"]) >= value(
        f["vifplug_ovsdb_transactions_total"]
    )
    assert value(f["vifplug_ovsdb_transaction_operations"], "_count") >= 1
    assert value(f["vifplug_ovsdb_reconnects_total"]) == 0
    assert value(f["vifplug_ovs_interfaces_broken"], ours="true") == 0
    assert value(f["vifplug_ovs_vswitchd_cfg_lag"]) >= 0
    assert value(f["vifplug_ovs_vswitchd_behind_seconds"]) >= 0
    reconcile = f["vifplug_reconcile_duration_seconds"]
    assert value(reconcile, "_count") >= 1
    assert 0 <= value(reconcile, "_sum") < 60
    assert 0 < time.time() - value(f["vifplug_reconcile_last_run_timestamp_seconds"]) < 600
    assert value(f["vifplug_reconcile_vifs_total"], action="repaired") == 0
    assert value(f["vifplug_reconcile_errors_total"]) == 0
    assert value(f["vifplug_reconcile_leaks_removed_total"], kind="port") == 0
    assert value(f["vifplug_leak_guard_held"]) == 0
    assert value(f["vifplug_network_manager_pushes_total"], result="pushed") == 0

    with vifplugd.client() as c:
        assert c.delete(f"/v1/vifs/{prim.data(vif)['id']}").status_code == 204
        assert not [s for s in scrape(vifplugd)[1]["vifplug_vifs"].samples if s.value]
        vif = prim.vif_ovs(bridge=vifplugd.bridge)
        assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
    text, families = scrape(vifplugd)
    assert "_created" not in text
    unplug = families["vifplug_unplug_duration_seconds"]
    assert value(unplug, "_count", plugin="ovs", result="removed") == 1.0

    # After plugs, an error and an unplug, every series has samples.
    docs = documented()
    assert set(families) == set(docs), (
        f"served, not documented: {sorted(set(families) - set(docs))}; "
        f"documented, not served: {sorted(set(docs) - set(families))}"
    )
    for name, (kind, labels) in docs.items():
        assert families[name].samples, name
        assert families[name].type == kind, (name, families[name].type, kind)
        assert _labels(families[name]) == labels, (name, _labels(families[name]), labels)


def test_interfaces_ovs_cannot_set_up_are_counted(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """A port on a device that does not exist: ovs-vswitchd gives it ofport
    -1 and an error; it is not ours, so reconciliation leaves it alone."""
    name = unique("vpbad")
    with vifplugd.client() as c:
        assert c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=vifplugd.bridge))).is_success
    before = value(scrape(vifplugd)[1]["vifplug_ovs_interfaces_broken"], ours="false")
    ovs.vsctl("add-port", vifplugd.bridge, name)
    try:
        wait_for(
            vifplugd,
            lambda f: value(f["vifplug_ovs_interfaces_broken"], ours="false") == before + 1,
            "the broken interface",
        )
    finally:
        ovs.vsctl("--if-exists", "del-port", vifplugd.bridge, name)
    wait_for(
        vifplugd,
        lambda f: value(f["vifplug_ovs_interfaces_broken"], ours="false") == before,
        "the broken interface gone",
    )
    assert value(scrape(vifplugd)[1]["vifplug_ovs_interfaces_broken"], ours="true") == 0


def test_a_stuck_vswitchd_shows_as_lag(vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox) -> None:
    """SIGSTOP ovs-vswitchd (by its pid file): a plug's transaction still
    commits, next_cfg moves on and cur_cfg does not; the lag and the time
    behind show it, and both return to 0 once it runs again."""
    pid = ovs.vswitchd_pid
    assert pid is not None
    with vifplugd.client() as c:  # the bridge exists before the switch stops
        assert c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=vifplugd.bridge))).is_success
    wait_for(vifplugd, lambda f: value(f["vifplug_ovs_vswitchd_cfg_lag"]) == 0, "caught up")
    os.kill(pid, signal.SIGSTOP)
    try:
        with vifplugd.client() as c:
            vif = prim.vif_ovs(bridge=vifplugd.bridge)
            r = c.post("/v1/vifs", params={"wait": "none"}, json=prim.body(vif))
            assert r.status_code == 201, r.text
        wait_for(
            vifplugd,
            lambda f: (
                value(f["vifplug_ovs_vswitchd_cfg_lag"]) >= 1
                and value(f["vifplug_ovs_vswitchd_behind_seconds"]) >= 1.0
            ),
            "the lag of a stopped ovs-vswitchd",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        vifplugd,
        lambda f: (
            value(f["vifplug_ovs_vswitchd_cfg_lag"]) == 0
            and value(f["vifplug_ovs_vswitchd_behind_seconds"]) == 0
        ),
        "caught up again",
    )


def test_ovsdb_reconnects_are_counted(vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox) -> None:
    reconnects = value(scrape(vifplugd)[1]["vifplug_ovsdb_reconnects_total"])
    runs = value(scrape(vifplugd)[1]["vifplug_reconcile_duration_seconds"], "_count")
    ovs.restart_ovsdb()
    wait_for(
        vifplugd,
        lambda f: (
            value(f["vifplug_ovsdb_reconnects_total"]) == reconnects + 1
            and value(f["vifplug_ovsdb_connected"]) == 1
            and value(f["vifplug_ready"]) == 1
            and value(f["vifplug_reconcile_duration_seconds"], "_count") > runs
        ),
        "the reconnect, and the reconciliation after it",
    )
