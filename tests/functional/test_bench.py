"""``bench/run.py --quick`` runs and prints a well-formed table.

Timings are the benchmark's to print, never a test's to assert (issue 11):
this checks only that the one command starts and stops its own sandbox, exits
0, and prints every row it promises (floors, vifplug over HTTP, restart,
os-vif, scaling, single plugs) with numbers that parse, ratio = value /
floor wherever a floor is printed, and each floor taken from the row it
names, so that the table cannot rot unnoticed between benchmark runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

N = 20
EXPECTED_WITH_FLOOR = [
    "plug, 16 clients, wait=ofport (s)",
    "plug, 16 clients, against 1 transaction (shown, not a target) (s)",
    "unplug, 16 clients (s)",
    "ovs-vswitchd CPU, 16 clients, plug+unplug (s)",
    "OVSDB transactions for the plugs, 16 clients",
    f"ready after restart, {N} VIFs, /readyz, against importing vifplug.daemon (s)",
    f"os-vif plug, {N} one after another, own taps, to every ofport (s)",
    f"os-vif unplug, {N} one after another (s)",
    "os-vif plug against vifplug plug, 16 clients (s; target ratio >= 10)",
    "os-vif unplug against vifplug unplug, 16 clients (s)",
    "scaling N=10: plug per VIF, 16 clients (ms)",
    "scaling N=20: plug per VIF, 16 clients (ms)",
    "single plug p50, HTTP, one after another, wait=ofport (ms)",
    "single plug p95, HTTP, one after another, wait=ofport (ms)",
    "single plug p50, against the floor measured just before them (ms)",
]
THREAD_GROUPS = [
    "API workers",
    "OVSDB thread",
    "state writer",
    "device deleter and reaper",
    "event loop (HTTP)",
    "other threads",
]
THREAD_ROWS = [
    f"vifplugd CPU per VIF, {phase}, 16 clients: {group} (ms)"
    for phase in ("plug", "unplug")
    for group in THREAD_GROUPS
]
EXPECTED_WITHOUT_FLOOR = [
    "plug floor: netlink + 1 OVSDB transaction (s)",
    "plug floor: netlink + 16 to a transaction, each awaited (s)",
    "unplug floor: 1 transaction + link-group delete (s)",
    "ovs-vswitchd CPU, floor 1 transaction, plug+unplug (s)",
    "ovs-vswitchd CPU, floor 16 to a transaction, plug+unplug (s)",
    "single plug floor p50: 1 tap + 1 IDL transaction + ofport (ms)",
    "single plug floor p95: 1 tap + 1 IDL transaction + ofport (ms)",
    "single plug floor p50, again just before them (ms)",
    "vifplugd CPU per VIF, plug, 16 clients (ms)",
    "vifplugd CPU per VIF, unplug, 16 clients (ms)",
    "vifplugd CPU per VIF, plug+unplug, 16 clients (ms)",
    *THREAD_ROWS,
    f"vifplugd RSS, {N} VIFs plugged, 16 clients (MB)",
    f"vifplugd stop (SIGTERM to exit), {N} VIFs (s)",
    "scaling N=10: vifplugd CPU per VIF, plug+unplug, 16 clients (ms)",
    "scaling N=20: vifplugd CPU per VIF, plug+unplug, 16 clients (ms)",
]
# Which row's value is which other row's floor, within the same run: a
# mislabelled floor would make every ratio of the table lie.
SAME_FLOOR = {
    "plug, 16 clients, wait=ofport (s)": (
        "plug floor: netlink + 16 to a transaction, each awaited (s)"
    ),
    "plug, 16 clients, against 1 transaction (shown, not a target) (s)": (
        "plug floor: netlink + 1 OVSDB transaction (s)"
    ),
    "unplug, 16 clients (s)": "unplug floor: 1 transaction + link-group delete (s)",
    "ovs-vswitchd CPU, 16 clients, plug+unplug (s)": (
        "ovs-vswitchd CPU, floor 16 to a transaction, plug+unplug (s)"
    ),
    "single plug p50, HTTP, one after another, wait=ofport (ms)": (
        "single plug floor p50: 1 tap + 1 IDL transaction + ofport (ms)"
    ),
    "single plug p95, HTTP, one after another, wait=ofport (ms)": (
        "single plug floor p95: 1 tap + 1 IDL transaction + ofport (ms)"
    ),
    "os-vif plug against vifplug plug, 16 clients (s; target ratio >= 10)": (
        "plug, 16 clients, wait=ofport (s)"
    ),
    "os-vif unplug against vifplug unplug, 16 clients (s)": "unplug, 16 clients (s)",
    "single plug p50, against the floor measured just before them (ms)": (
        "single plug floor p50, again just before them (ms)"
    ),
}


def assert_ratio(figure: str, value: float, floor: float, ratio: float) -> None:
    """ratio = value / floor, allowing for the printing: value and floor to
    3 decimals, the ratio to 2."""
    low = max(0.0, value - 0.0005) / (floor + 0.0005)
    high = (value + 0.0005) / max(floor - 0.0005, 1e-9)
    assert low - 0.005 <= ratio <= high + 0.005, (figure, value, floor, ratio)


def quick_table(script: str) -> tuple[str, list[str]]:
    """Run ``bench/SCRIPT --quick``; its whole output and its table's lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, [line for line in done.stdout.splitlines() if line.startswith("|")]


def test_quick_run_prints_the_whole_table() -> None:
    stdout, lines = quick_table("run.py")
    header, rule, *body = lines
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "figure",
        "value",
        "floor",
        "ratio",
    ]
    assert set(rule) <= {"|", "-"}
    rows = {}
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 4, line
        rows[cells[0]] = cells[1:]
    assert sorted(rows) == sorted(EXPECTED_WITH_FLOOR + EXPECTED_WITHOUT_FLOOR), stdout
    for figure, (value, floor, ratio) in rows.items():
        assert float(value) >= 0, figure
        if figure in EXPECTED_WITH_FLOOR:
            # A CPU floor can read 0 at a clock tick's resolution: no ratio then.
            assert float(floor) >= 0, figure
            if float(floor) == 0:
                assert ratio == "-", figure
            else:
                assert_ratio(figure, float(value), float(floor), float(ratio))
        else:
            assert floor == ratio == "-", figure
    for figure, source in SAME_FLOOR.items():
        assert rows[figure][1] == rows[source][0], (figure, source)
    plug_ms = float(rows["scaling N=20: plug per VIF, 16 clients (ms)"][0])
    assert abs(plug_ms - float(rows["plug, 16 clients, wait=ofport (s)"][0]) * 1000 / N) < 0.1
    assert float(rows["OVSDB transactions for the plugs, 16 clients"][1]) == 2  # ceil(20/16)
    assert float(rows["OVSDB transactions for the plugs, 16 clients"][0]) >= 1
    assert float(rows[f"vifplugd RSS, {N} VIFs plugged, 16 clients (MB)"][0]) > 0
    assert float(rows[f"os-vif plug, {N} one after another, own taps, to every ofport (s)"][0]) > 0
    # The daemon's threads carry their names for the kernel, or every
    # thread would be "other"; the groups add up to the plug's CPU. That
    # total is read from /proc/PID/stat, whose user and system times are
    # each cut to whole ticks (under 2 ticks lost per reading, so its
    # difference is off by under 2), and the threads' schedstat is read just
    # after it and lags a running thread by up to a tick: 4 ticks of slack.
    split = [
        float(rows[f"vifplugd CPU per VIF, plug, 16 clients: {g} (ms)"][0]) for g in THREAD_GROUPS
    ]
    assert split[0] > 0 and split[1] > 0, split
    total = float(rows["vifplugd CPU per VIF, plug, 16 clients (ms)"][0])
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK") / N
    assert abs(sum(split) - total) <= 4 * tick_ms + 0.01 * len(split), (split, total)


def test_quick_tunables_run_prints_one_row_per_variant() -> None:
    """``bench/tunables.py --quick``: each variant's row, with ratios against
    the defaults of the same run (1.00 for the defaults themselves)."""
    _, lines = quick_table("tunables.py")
    header, rule, *body = lines
    assert set(rule) <= {"|", "-"}
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = [
        dict(zip(columns, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in body
    ]
    assert [r["variant"] for r in rows] == ["defaults", "hold_max = 0", "hold_max = 1"]
    assert rows[0]["plug x defaults"] == rows[0]["unplug x defaults"] == "1.00"
    for r in rows:
        assert r["clients"] == "16"
        plug, unplug = float(r["plug (s)"]), float(r["unplug (s)"])
        assert plug > 0 and unplug > 0
        # Both seconds printed to 2 decimals, the ratio too.
        low = max(0.0, plug - 0.005) / (float(rows[0]["plug (s)"]) + 0.005)
        high = (plug + 0.005) / max(float(rows[0]["plug (s)"]) - 0.005, 1e-9)
        assert low - 0.005 <= float(r["plug x defaults"]) <= high + 0.005, r
        assert float(r["OVSDB txns"]) >= 1
        assert float(r["vifplugd CPU/VIF (ms)"]) > 0
