"""API v1 against a real vifplugd subprocess and a real Open vSwitch.

Every behaviour is checked where it matters: in OVSDB (``ovs-vsctl``) and in
the kernel (``ip link``), not only in the HTTP answer.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import re
import signal
import time
import uuid
from typing import Any

import primitives as prim
from daemon_fixture import Daemon, DaemonFactory, link_details, links

import ovs_sandbox


def iface_external_ids(ovs: ovs_sandbox.OvsSandbox, name: str) -> dict[str, str]:
    out = ovs.vsctl("--format=json", "--columns=external_ids", "list", "Interface", name)
    table = json.loads(out)
    pairs = table["data"][0][0][1]
    return {k: v for k, v in pairs}


def ports(ovs: ovs_sandbox.OvsSandbox, bridge: str) -> list[str]:
    try:
        return ovs.vsctl("list-ports", bridge).split()
    except ovs_sandbox.SandboxError:
        return []


def ofport(ovs: ovs_sandbox.OvsSandbox, name: str) -> int:
    return int(ovs.vsctl("get", "Interface", name, "ofport").strip().strip('"') or -1)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


# --- plug, list, show, unplug -----------------------------------------------------------


def test_plug_list_show_unplug_reach_ovsdb_and_kernel(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    vif_id = prim.data(vif)["id"]
    tap = prim.data(vif)["vif_name"]
    mac = prim.data(vif)["address"]
    inst = prim.instance(name="vm-plug")
    with vifplugd.client() as c:
        r = c.post("/v1/vifs", json=prim.body(vif, inst))
        assert r.status_code == 201, r.text
        shown = r.json()
        assert shown["vif_id"] == vif_id
        assert shown["device"] == tap and shown["port"] == tap
        assert shown["bridge"] == vifplugd.bridge
        assert shown["plugin"] == "ovs"
        assert shown["vif_object"] == {"name": "VIFOpenVSwitch", "version": "1.0"}
        assert shown["instance"]["uuid"] == prim.data(inst)["uuid"]
        assert shown["instance"]["name"] == "vm-plug"
        assert shown["iface_id"] == vif_id and shown["iface_status"] == "active"
        assert shown["lifecycle"] == "plugged"
        assert shown["mac"] == mac
        assert isinstance(shown["ofport"], int) and shown["ofport"] > 0

        # OVSDB: the port on the bridge, the IntegrationGuide's keys.
        assert tap in ports(ovs, vifplugd.bridge)
        ids = iface_external_ids(ovs, tap)
        assert ids["iface-id"] == vif_id
        assert ids["attached-mac"] == mac
        assert ids["vm-id"] == ids["vm-uuid"] == prim.data(inst)["uuid"]
        assert ids["iface-status"] == "active"
        assert ids["vifplug-owner"] == vifplugd.config["DEFAULT"]["owner"]
        assert ofport(ovs, tap) == shown["ofport"]
        # Kernel: a tap with the VIF's MAC.
        assert tap in links()
        assert mac in link_details(tap) and "tun" in link_details(tap)

        listed = c.get("/v1/vifs").json()["vifs"]
        assert [v["vif_id"] for v in listed] == [vif_id]
        assert c.get(f"/v1/vifs/{vif_id}").json() == listed[0]

        r = c.delete(f"/v1/vifs/{vif_id}")
        assert r.status_code == 204 and r.content == b""
        assert tap not in ports(ovs, vifplugd.bridge)
        assert tap not in links()
        assert c.get("/v1/vifs").json() == {"vifs": []}
        assert_error(c.get(f"/v1/vifs/{vif_id}"), 404, "vif_not_found")
        assert_error(c.delete(f"/v1/vifs/{vif_id}"), 404, "vif_not_found")
    assert f"VIF {vif_id}" in vifplugd.stderr()


def test_second_plug_with_same_body_is_idempotent(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    payload = prim.body(prim.vif_ovs(bridge=vifplugd.bridge))
    tap = prim.data(payload["vif"])["vif_name"]
    with vifplugd.client() as c:
        first = c.post("/v1/vifs", json=payload)
        assert first.status_code == 201, first.text
        uuid_before = ovs.vsctl("get", "Interface", tap, "_uuid").strip()
        second = c.post("/v1/vifs", json=payload)
        assert second.status_code == 200, second.text
        assert second.json()["vif_id"] == first.json()["vif_id"]
        assert second.json()["ofport"] == first.json()["ofport"]
        assert ovs.vsctl("get", "Interface", tap, "_uuid").strip() == uuid_before
        assert ports(ovs, vifplugd.bridge).count(tap) == 1
        assert len(c.get("/v1/vifs").json()["vifs"]) == 1


def test_same_vif_id_with_other_content_is_a_conflict(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    with vifplugd.client() as c:
        assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
        before = iface_external_ids(ovs, prim.data(vif)["vif_name"])
        other = prim.mutate(vif, address="fa:16:3e:aa:bb:cc")
        error = assert_error(c.post("/v1/vifs", json=prim.body(other)), 409, "vif_conflict")
        assert error["details"]["vif_id"] == prim.data(vif)["id"]
        assert iface_external_ids(ovs, prim.data(vif)["vif_name"]) == before
        assert len(c.get("/v1/vifs").json()["vifs"]) == 1


def test_unknown_vif_ids_are_404(vifplugd: Daemon) -> None:
    unknown = str(uuid.uuid4())
    with vifplugd.client() as c:
        assert_error(c.get(f"/v1/vifs/{unknown}"), 404, "vif_not_found")
        assert_error(c.delete(f"/v1/vifs/{unknown}"), 404, "vif_not_found")
        assert_error(
            c.put(f"/v1/vifs/{unknown}/status", json={"iface_status": "active"}),
            404,
            "vif_not_found",
        )


# --- iface-status -------------------------------------------------------------------------


def test_activating_one_interface_makes_the_other_with_its_iface_id_inactive(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    iface_id = str(uuid.uuid4())
    a = prim.vif_ovs(bridge=vifplugd.bridge, iface_id=iface_id)
    b = prim.vif_ovs(bridge=vifplugd.bridge, iface_id=iface_id)
    tap_a, tap_b = prim.data(a)["vif_name"], prim.data(b)["vif_name"]
    id_a, id_b = prim.data(a)["id"], prim.data(b)["id"]

    def statuses() -> tuple[str, str]:
        return (
            iface_external_ids(ovs, tap_a)["iface-status"],
            iface_external_ids(ovs, tap_b)["iface-status"],
        )

    with vifplugd.client() as c:
        assert c.post("/v1/vifs", json=prim.body(a)).status_code == 201
        r = c.post("/v1/vifs", json=prim.body(b, iface_status="inactive"))
        assert r.status_code == 201 and r.json()["iface_status"] == "inactive"
        assert statuses() == ("active", "inactive")

        r = c.put(f"/v1/vifs/{id_b}/status", json={"iface_status": "active"})
        assert r.status_code == 200, r.text
        assert r.json()["iface_status"] == "active"
        assert statuses() == ("inactive", "active")
        assert c.get(f"/v1/vifs/{id_a}").json()["iface_status"] == "inactive"

        r = c.put(f"/v1/vifs/{id_a}/status", json={"iface_status": "active"})
        assert r.status_code == 200
        assert statuses() == ("active", "inactive")
        assert c.get(f"/v1/vifs/{id_b}").json()["iface_status"] == "inactive"

        # The self-migration exception, asked for explicitly.
        r = c.put(
            f"/v1/vifs/{id_b}/status", json={"iface_status": "active", "allow_dual_active": True}
        )
        assert r.status_code == 200
        assert statuses() == ("active", "active")

        r = c.put(f"/v1/vifs/{id_a}/status", json={"iface_status": "inactive"})
        assert r.status_code == 200
        assert statuses() == ("inactive", "active")


# --- waiting -------------------------------------------------------------------------------


def test_wait_ofport_answers_with_the_ofport_assigned(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    with vifplugd.client() as c:
        r = c.post("/v1/vifs", params={"wait": "ofport", "timeout": "20"}, json=prim.body(vif))
        assert r.status_code == 201, r.text
        assert r.json()["ofport"] == ofport(ovs, prim.data(vif)["vif_name"]) > 0


def test_wait_none_answers_without_waiting(vifplugd: Daemon) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    with vifplugd.client() as c:
        r = c.post("/v1/vifs", params={"wait": "none"}, json=prim.body(vif))
        assert r.status_code == 201, r.text
        assert r.json()["lifecycle"] == "plugged"


def test_wait_ovn_installed_times_out_with_504_and_the_vif_stays(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """No ovn-controller runs here, so ovn-installed never comes."""
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    vif_id, tap = prim.data(vif)["id"], prim.data(vif)["vif_name"]
    with vifplugd.client() as c:
        started = time.monotonic()
        r = c.post(
            "/v1/vifs", params={"wait": "ovn-installed", "timeout": "1.5"}, json=prim.body(vif)
        )
        elapsed = time.monotonic() - started
        error = assert_error(r, 504, "plug_timeout")
        assert error["details"]["vif_id"] == vif_id
        assert 1.4 <= elapsed < 15, elapsed
        assert c.get(f"/v1/vifs/{vif_id}").json()["lifecycle"] == "plugged"
        assert tap in ports(ovs, vifplugd.bridge)
        assert tap in links()
        assert iface_external_ids(ovs, tap)["iface-id"] == vif_id


def test_wait_ovn_installed_succeeds_once_ovn_marks_the_interface(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    payload = prim.body(vif)
    tap = prim.data(vif)["vif_name"]
    with vifplugd.client() as c:
        assert_error(
            c.post("/v1/vifs", params={"wait": "ovn-installed", "timeout": "0.5"}, json=payload),
            504,
            "plug_timeout",
        )
        ovs.vsctl("set", "Interface", tap, "external_ids:ovn-installed=true")
        r = c.post("/v1/vifs", params={"wait": "ovn-installed", "timeout": "10"}, json=payload)
        assert r.status_code == 200, r.text


# --- host-info -----------------------------------------------------------------------------


def _walk(primitive: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(primitive, dict):
        if "versioned_object.name" in primitive:
            found.append(primitive)
        for value in primitive.values():
            found.extend(_walk(value))
    elif isinstance(primitive, list):
        for value in primitive:
            found.extend(_walk(value))
    return found


def test_host_info_describes_every_plugin(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        r = c.get("/v1/host-info")
    assert r.status_code == 200
    info = r.json()
    assert info["versioned_object.name"] == "HostInfo"
    assert info["versioned_object.namespace"] == "os_vif"
    plugins = {
        p["versioned_object.data"]["plugin_name"]: p
        for p in info["versioned_object.data"]["plugin_info"]
    }
    assert {"ovs", "linux_bridge", "noop"} <= set(plugins)
    ovs_vifs = {
        v["versioned_object.data"]["vif_object_name"]: v["versioned_object.data"]
        for v in plugins["ovs"]["versioned_object.data"]["vif_info"]
    }
    assert "VIFOpenVSwitch" in ovs_vifs
    assert ovs_vifs["VIFOpenVSwitch"]["min_version"] == "1.0"
    names = {
        p["profile_object_name"]
        if "profile_object_name" in p
        else p["versioned_object.data"]["profile_object_name"]
        for p in ovs_vifs["VIFOpenVSwitch"]["supported_port_profiles"]
    }
    assert "VIFPortProfileOpenVSwitch" in names


def test_host_info_version_and_manifest_backlevel(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        r = c.get("/v1/host-info", params={"version": "1.0"})
        assert r.status_code == 200
        assert r.json()["versioned_object.version"] == "1.0"
        r = c.get(
            "/v1/host-info", params={"manifest": "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"}
        )
        assert r.status_code == 200, r.text
        objects = _walk(r.json())
        vif_infos = [o for o in objects if o["versioned_object.name"] == "HostVIFInfo"]
        assert vif_infos
        for o in vif_infos:
            assert o["versioned_object.version"] == "1.0"
            assert "supported_port_profiles" not in o["versioned_object.data"]
        assert not [o for o in objects if o["versioned_object.name"] == "HostPortProfileInfo"]
        # Unnamed objects keep their versions.
        r = c.get("/v1/host-info", params={"manifest": "HostPluginInfo:1.0"})
        versions = {
            o["versioned_object.version"]
            for o in _walk(r.json())
            if o["versioned_object.name"] == "HostVIFInfo"
        }
        assert versions == {"1.1"}


def test_host_info_version_it_cannot_produce_is_406_with_the_range(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        for version in ("2.0", "0.9", "1.7"):
            error = assert_error(
                c.get("/v1/host-info", params={"version": version}), 406, "version_not_available"
            )
            assert error["details"]["max_version"] == "1.0"
            assert error["details"]["min_version"] == "1.0"


# --- networks, health, metrics ------------------------------------------------------------


def test_networks_lists_configured_networks(daemon_factory: DaemonFactory) -> None:
    bridge = f"vpnb{uuid.uuid4().hex[:8]}"
    d = daemon_factory({f"network:physnet-{bridge}": {"type": "ovs", "bridge": bridge}})
    with d.client() as c:
        r = c.get("/v1/networks")
    assert r.status_code == 200, r.text
    nets = r.json()["networks"]
    assert [n["name"] for n in nets] == [f"physnet-{bridge}"]
    assert nets[0]["bridge"] == bridge


def test_health_and_readiness(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        details = ready.json()["details"]
        assert details["ovsdb"]["connected"] is True
        assert details["reconciliation"]["runs"] >= 1
        assert details["network_manager"]["state"] == "disabled"


def test_metrics_expose_latencies_vifs_transactions_and_errors(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        vif = prim.vif_ovs(bridge=vifplugd.bridge)
        assert c.post("/v1/vifs", json=prim.body(vif)).status_code == 201
        assert c.get(f"/v1/vifs/{uuid.uuid4()}").status_code == 404
        assert c.delete(f"/v1/vifs/{prim.data(vif)['id']}").status_code == 204
        assert (
            c.post("/v1/vifs", json=prim.body(prim.vif_ovs(bridge=vifplugd.bridge))).status_code
            == 201
        )
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'vifplug_plug_duration_seconds_count{plugin="ovs",result="created"} 2.0' in text
    assert 'vifplug_unplug_duration_seconds_count{plugin="ovs",result="removed"} 1.0' in text
    assert 'vifplug_vifs{iface_status="active",lifecycle="plugged",plugin="ovs"} 1.0' in text
    assert "vifplug_ovsdb_transactions_total" in text
    assert "vifplug_ovsdb_transaction_operations_bucket" in text
    assert 'vifplug_errors_total{code="vif_not_found"} 1.0' in text
    assert "vifplug_ovsdb_connected 1.0" in text


def test_openapi_document_is_served(vifplugd: Daemon) -> None:
    with vifplugd.client() as c:
        doc = c.get("/openapi.json").json()
    assert {
        "/v1/host-info",
        "/v1/vifs",
        "/v1/vifs/{vif_id}",
        "/v1/vifs/{vif_id}/status",
        "/v1/networks",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(doc["paths"])


def test_times_are_rfc_3339_utc(vifplugd: Daemon) -> None:
    """created_at/updated_at are RFC 3339 strings in UTC (the state keeps floats)."""
    vif = prim.vif_ovs(bridge=vifplugd.bridge)
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    with vifplugd.client() as c:
        plugged = c.post("/v1/vifs", json=prim.body(vif)).json()
        listed = c.get("/v1/vifs").json()["vifs"]
        assert c.delete(f"/v1/vifs/{prim.data(vif)['id']}").status_code == 204
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    for field in ("created_at", "updated_at"):
        text = plugged[field]
        assert isinstance(text, str) and text.endswith("Z"), text
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", text), text
        assert before <= datetime.datetime.fromisoformat(text) <= after
    assert plugged["created_at"] <= plugged["updated_at"]
    assert [v["created_at"] for v in listed if v["vif_id"] == plugged["vif_id"]] == [
        plugged["created_at"]
    ]


def test_vhostuser_vif_plugs_through_noop(vifplugd: Daemon) -> None:
    vif = prim.vif_vhostuser()
    with vifplugd.client() as c:
        r = c.post("/v1/vifs", json=prim.body(vif))
        assert r.status_code == 201, r.text
        assert r.json()["plugin"] == "noop"
        assert r.json()["ofport"] is None
        assert c.delete(f"/v1/vifs/{prim.data(vif)['id']}").status_code == 204


def _counter(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_concurrent_plugs_share_ovsdb_transactions(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """The API runs plugs concurrently, so the OVSDB layer coalesces them.

    Overlap is made certain, not hoped for: ovs-vswitchd is paused, so after
    one transaction the daemon holds the next batch for it (``hold_max``
    set far above any machine's slowness) while the other plugs, all in
    flight at once, make their taps and queue their port writes.  Every one
    of them does, since no plug waits for an unrelated VIF's lock.  How many
    plugs the first transaction carries depends on the machine's speed, so
    the pause is checked by what was committed during it, not by how many
    clients were answered."""
    d = daemon_factory({"ovs": {"hold_max": 120}})
    vifs = [prim.vif_ovs(bridge=d.bridge) for _ in range(40)]
    taps = [prim.data(v)["vif_name"] for v in vifs[1:]]
    with d.client() as c:
        # The bridge exists before the measurement.
        assert c.post("/v1/vifs", json=prim.body(vifs[0])).status_code == 201
        before = c.get("/metrics").text

    def plug(vif: dict[str, Any]) -> int:
        with d.client(timeout=180) as c:
            return c.post("/v1/vifs", params={"wait": "none"}, json=prim.body(vif)).status_code

    vswitchd = ovs.vswitchd_pid
    assert vswitchd is not None
    os.kill(vswitchd, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(len(vifs) - 1) as pool:
            futures = [pool.submit(plug, v) for v in vifs[1:]]
            deadline = time.monotonic() + 60
            while not set(taps) <= links():
                assert time.monotonic() < deadline, "a plug waited for another one"
                time.sleep(0.05)
            # Every plug made its tap; at most one batch was let through.
            with d.client() as c:
                paused = c.get("/metrics").text
            during = _counter(paused, "vifplug_ovsdb_transactions_total") - _counter(
                before, "vifplug_ovsdb_transactions_total"
            )
            assert during <= 1, f"{during} transactions while ovs-vswitchd was paused"
            os.kill(vswitchd, signal.SIGCONT)
            assert [f.result(timeout=120) for f in futures] == [201] * len(taps)
    finally:
        os.kill(vswitchd, signal.SIGCONT)
    with d.client() as c:
        after = c.get("/metrics").text
        assert len(c.get("/v1/vifs").json()["vifs"]) == len(vifs)
    transactions = _counter(after, "vifplug_ovsdb_transactions_total") - _counter(
        before, "vifplug_ovsdb_transactions_total"
    )
    operations = _counter(after, "vifplug_ovsdb_operations_total") - _counter(
        before, "vifplug_ovsdb_operations_total"
    )
    print(f"{len(taps)} concurrent plugs: {transactions} transactions, {operations} operations")
    assert operations >= len(taps)
    assert transactions <= operations // 2, (transactions, operations)
    assert set(taps) <= set(ports(ovs, d.bridge))
