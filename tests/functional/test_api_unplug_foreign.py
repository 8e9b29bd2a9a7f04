"""Unplug removes only what vifplug made, even under a name it recorded.

A VIF's tap or port can be removed behind vifplug's back and a device or port
of the same name made by someone else.  The unplug then answers 204 (the
VIF's own things are gone and it is forgotten), leaves the newcomer in
place, and names it in ``Vifplug-Left-Alone``, a warning and a metric.  What
is left is read back from the kernel (``ip -j -d link``) and OVSDB
(``ovs-vsctl``), never through vifplug.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from typing import Any

import primitives as prim
from daemon_fixture import Daemon

import ovs_sandbox


def kernel_link(name: str) -> dict[str, Any] | None:
    """The kernel's own record of ``name`` (``ip -j -d link show dev``), or None."""
    proc = subprocess.run(
        ["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    links: list[dict[str, Any]] = json.loads(proc.stdout)
    return links[0] if links else None


def group_of(link: dict[str, Any]) -> int:
    group = link.get("group", "default")
    return 0 if group == "default" else int(group)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def replace_behind_its_back(tap: str, deadline: float = 60.0) -> int:
    """Delete vifplug's ``tap`` and put a tap made with ip(8) (group 0) under
    its name; the foreign tap's ifindex.

    The daemon may repair its tap in between (an interface error triggers
    reconciliation), so: delete, rename the waiting foreign tap onto the name,
    and start again until the rename wins."""
    spare = "vpf" + uuid.uuid4().hex[:8]
    ip("tuntap", "add", "dev", spare, "mode", "tap")
    index = int(kernel_link(spare)["ifindex"])  # type: ignore[index]
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        ip("link", "del", "dev", tap, check=False)
        if ip("link", "set", "dev", spare, "name", tap, check=False).returncode == 0:
            return index
        time.sleep(0.05)
    ip("link", "del", "dev", spare, check=False)
    raise AssertionError(f"could not put a foreign tap under {tap} within {deadline}s")


def metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def plug(d: Daemon) -> tuple[str, str]:
    vif = prim.vif_ovs(bridge=d.bridge)
    with d.client() as c:
        r = c.post("/v1/vifs", json=prim.body(vif))
        assert r.status_code == 201, r.text
    tap = prim.data(vif)["vif_name"]
    link = kernel_link(tap)
    assert link is not None and group_of(link) == d.link_group  # vifplug's mark
    return str(prim.data(vif)["id"]), str(tap)


def test_unplug_leaves_a_device_it_did_not_make_and_says_so(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif_id, tap = plug(vifplugd)
    foreign = replace_behind_its_back(tap)
    try:
        with vifplugd.client() as c:
            before = metric(
                c.get("/metrics").text, "vifplug_unplug_left_alone_total", 'kind="device"'
            )
            r = c.delete(f"/v1/vifs/{vif_id}")
            assert r.status_code == 204, r.text
            # The very device made outside vifplug is still there, untouched.
            link = kernel_link(tap)
            assert link is not None, "the foreign tap was deleted"
            assert link["ifindex"] == foreign and group_of(link) == 0
            assert r.headers.get("Vifplug-Left-Alone") == (
                f'"{tap}";kind=device;reason="not made by vifplug '
                f'(link group 0, not {vifplugd.link_group})"'
            )
            assert c.get(f"/v1/vifs/{vif_id}").status_code == 404  # forgotten all the same
            after = metric(
                c.get("/metrics").text, "vifplug_unplug_left_alone_total", 'kind="device"'
            )
        assert after == before + 1
        # vifplug's own port (it carries the VIF's marks) is gone.
        assert tap not in ovs.vsctl("list-ports", vifplugd.bridge).split()
        assert re.search(
            rf"WARNING .*VIF {vif_id} unplugged; left device {tap} in place: not made by vifplug",
            vifplugd.stderr(),
        ), vifplugd.stderr()
    finally:
        ip("link", "del", "dev", tap, check=False)


def test_unplug_leaves_a_port_it_did_not_make_and_says_so(
    vifplugd: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    vif_id, tap = plug(vifplugd)
    # Someone replaces the port with one of their own (no vifplug marks), in
    # one transaction so the daemon never sees the name free.
    ovs.vsctl(
        "del-port",
        vifplugd.bridge,
        tap,
        "--",
        "add-port",
        vifplugd.bridge,
        tap,
        "--",
        "set",
        "Interface",
        tap,
        "external_ids:made-by=operator",
    )
    try:
        with vifplugd.client() as c:
            r = c.delete(f"/v1/vifs/{vif_id}")
        assert r.status_code == 204, r.text
        assert r.headers.get("Vifplug-Left-Alone") == (
            f'"{tap}";kind=port;reason="not made by vifplug (no vifplug marks for this VIF)"'
        )
        assert tap in ovs.vsctl("list-ports", vifplugd.bridge).split()
        ids = ovs.vsctl("get", "Interface", tap, "external_ids")
        assert "made-by" in ids and "vifplug" not in ids
        assert kernel_link(tap) is None  # vifplug's own tap (in its link group) is gone
    finally:
        ovs.vsctl("--if-exists", "del-port", vifplugd.bridge, tap)


def test_an_ordinary_unplug_has_no_left_alone_header(vifplugd: Daemon) -> None:
    vif_id, tap = plug(vifplugd)
    with vifplugd.client() as c:
        r = c.delete(f"/v1/vifs/{vif_id}")
    assert r.status_code == 204 and "Vifplug-Left-Alone" not in r.headers
    assert kernel_link(tap) is None
