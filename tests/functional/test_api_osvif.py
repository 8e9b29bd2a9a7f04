"""os-vif interop through HTTP: what the real os-vif makes plugs, and what the
daemon answers loads in the real os-vif.

os-vif only ever runs in ``osvif_client.py``, in a subprocess: importing it
here would replace vifplug's classes in oslo's registry (or the reverse).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_fixture import Daemon, links

import ovs_sandbox

CLIENT = Path(__file__).resolve().parent / "osvif_client.py"

pytestmark = pytest.mark.skipif(
    subprocess.run(
        [sys.executable, "-c", "import os_vif"], capture_output=True, check=False
    ).returncode
    != 0,
    reason="the os-vif package is not installed",
)


def osvif(request: dict[str, Any]) -> Any:
    proc = subprocess.run(
        [sys.executable, str(CLIENT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_vifs_made_by_os_vif_plug_and_unplug(vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox) -> None:
    made = osvif({"op": "make_vifs", "bridge": vifplugd.bridge})
    kinds = {m["kind"] for m in made}
    assert {"ovs", "ovs-profile-1.0", "ovs-hybrid", "linux-bridge", "vhostuser"} <= kinds
    with vifplugd.client() as c:
        for item in made:
            body = item["body"]
            data = body["vif"]["versioned_object.data"]
            r = c.post("/v1/vifs", json=body)
            assert r.status_code == 201, (item["kind"], r.text)
            shown = r.json()
            assert shown["vif_id"] == data["id"]
            if item["kind"] in ("ovs", "ovs-profile-1.0"):
                assert data["vif_name"] in ovs.vsctl("list-ports", vifplugd.bridge).split()
                ids = ovs.vsctl("get", "Interface", data["vif_name"], "external_ids")
                assert data["port_profile"]["versioned_object.data"]["interface_id"] in ids
                assert data["vif_name"] in links()
                assert shown["ofport"] and shown["ofport"] > 0
            elif item["kind"] == "ovs-hybrid":
                assert shown["port"] in ovs.vsctl("list-ports", vifplugd.bridge).split()
                assert {data["vif_name"], data["bridge_name"], shown["port"]} <= links()
            elif item["kind"] == "linux-bridge":
                assert {data["vif_name"], data["bridge_name"]} <= links()
            else:
                assert shown["plugin"] == "noop"
            # The same os-vif body again is idempotent.
            assert c.post("/v1/vifs", json=body).status_code == 200
        for item in made:
            vif_id = item["body"]["vif"]["versioned_object.data"]["id"]
            assert c.delete(f"/v1/vifs/{vif_id}").status_code == 204
        assert c.get("/v1/vifs").json() == {"vifs": []}
    for item in made:
        if item["kind"] != "vhostuser":
            assert item["body"]["vif"]["versioned_object.data"]["vif_name"] not in links()


MANIFESTS = {
    "latest": {},
    "version-1.0": {"version": "1.0"},
    "manifest-hostinfo-1.0": {"manifest": "HostInfo:1.0"},
    "manifest-vifinfo-1.1": {
        "manifest": "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.1,HostPortProfileInfo:1.0"
    },
    "manifest-all-1.0": {"manifest": "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"},
}


def test_host_info_loads_in_os_vif_at_every_version(vifplugd: Daemon) -> None:
    answers = {}
    with vifplugd.client() as c:
        for name, params in MANIFESTS.items():
            r = c.get("/v1/host-info", params=params)
            assert r.status_code == 200, (name, r.text)
            answers[name] = r.json()
    loaded = osvif({"op": "load_host_info", "primitives": list(answers.values())})
    for name, result in zip(answers, loaded, strict=True):
        assert "error" not in result, (name, result)
        assert result["version"] == "1.0"
        ovs_vifs = result["plugins"]["ovs"]
        assert ovs_vifs["VIFOpenVSwitch"]["min"] == "1.0"
        if name == "manifest-all-1.0":
            assert ovs_vifs["VIFOpenVSwitch"]["profiles"] is None
        else:
            assert "VIFPortProfileOpenVSwitch" in ovs_vifs["VIFOpenVSwitch"]["profiles"]
        # os-vif agrees on the version it would send for each VIF object.
        assert ovs_vifs["VIFOpenVSwitch"]["common"] == "1.0"
    # An os-vif from before HostVIFInfo 1.1 reads the fully backlevelled answer.
    old = osvif({"op": "load_host_info", "old": True, "primitives": [answers["manifest-all-1.0"]]})
    assert "error" not in old[0], old[0]
    assert set(old[0]["plugins"]) >= {"ovs", "noop", "linux_bridge"}
    # ... and not the newest one: that is why the manifest exists.
    newest = osvif({"op": "load_host_info", "old": True, "primitives": [answers["latest"]]})
    assert "error" in newest[0]
