"""``bench/run.py --quick`` runs and prints a well-formed table.

Timings are the benchmark's to print, never a test's to assert (issue 11):
this checks only that the one command starts and stops its own sandbox, exits
0, and prints every row it promises with numbers that parse and positive
ratios, so that the table cannot rot unnoticed between benchmark runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    "plug floor: netlink + 1 OVSDB transaction (s)",
    "unplug floor: 1 transaction + link-group delete (s)",
    "ovs-vswitchd CPU, floor (s)",
    "plug, 16 clients, wait=ofport (s)",
    "unplug, 16 clients (s)",
    "vifplugd CPU per VIF, plug+unplug, 16 clients (ms)",
    "ovs-vswitchd CPU, 16 clients (s)",
    "OVSDB transactions for the plugs, 16 clients",
    "vifplugd RSS, 20 VIFs plugged, 16 clients (MB)",
]
WITH_FLOOR = {
    "plug, 16 clients, wait=ofport (s)",
    "unplug, 16 clients (s)",
    "ovs-vswitchd CPU, 16 clients (s)",
    "OVSDB transactions for the plugs, 16 clients",
}


def test_quick_run_prints_the_whole_table() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
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
    assert sorted(rows) == sorted(EXPECTED), done.stdout
    for figure, (value, floor, ratio) in rows.items():
        assert float(value) >= 0, figure
        if figure in WITH_FLOOR:
            # A CPU floor can read 0 at a clock tick's resolution: no ratio then.
            assert float(floor) >= 0, figure
            if float(floor) == 0:
                assert ratio == "-", figure
            else:
                assert float(ratio) > 0 or float(value) == 0, figure
        else:
            assert floor == ratio == "-", figure
    assert float(rows["OVSDB transactions for the plugs, 16 clients"][0]) >= 1
    assert float(rows["vifplugd RSS, 20 VIFs plugged, 16 clients (MB)"][0]) > 0
