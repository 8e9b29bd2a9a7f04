"""The effect of each operator tunable, measured: one table of plug and unplug
rounds, each tunable varied alone around the defaults.

For every variant (``[ovs] hold_max``, ``gather_max``, ``pace_max``,
``max_batch``, ``[api] workers``; the defaults first), a fresh ``vifplugd`` with that setting is
started on the same sandbox Open vSwitch (userspace datapath, private
network namespace) and runs the same rounds as ``run.py``: N plugs
(``wait=ofport``) then N unplugs by 16 and by 128 HTTP clients, each phase
started on a quiet host. Printed per variant and client count: plug and
unplug seconds, the OVSDB transactions of the plugs, vifplugd's CPU per VIF
(plug and unplug together) and ovs-vswitchd's CPU. Each variant is compared
with the defaults of the same run (the ratio columns), never with another
run: timings on a shared 2-core machine are ranges.

Usage: python bench/tunables.py [--n 300] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))
sys.path.insert(0, str(HERE.parent / "devtools"))

import harness  # noqa: E402
import run  # noqa: E402

import nsisolate  # noqa: E402

#: (label, options): each tunable alone, away from its default both ways
#: where both ways mean something.
VARIANTS: list[tuple[str, dict[str, dict[str, str]]]] = [
    ("defaults", {}),
    ("hold_max = 0", {"ovs": {"hold_max": "0"}}),
    ("hold_max = 1", {"ovs": {"hold_max": "1"}}),
    ("gather_max = 0", {"ovs": {"gather_max": "0"}}),
    ("gather_max = 0.5", {"ovs": {"gather_max": "0.5"}}),
    ("pace_max = 0", {"ovs": {"pace_max": "0"}}),
    ("pace_max = 0.2", {"ovs": {"pace_max": "0.2"}}),
    ("max_batch = 4", {"ovs": {"max_batch": "4"}}),
    ("workers = 8", {"api": {"workers": "8"}}),
]
QUICK_VARIANTS = 3


def measure(n: int, counts: list[int], variants: list[tuple[str, dict]]) -> list[list[str]]:
    """One fresh daemon per variant, every round on the same sandbox."""
    import ovs_sandbox

    directory = Path(tempfile.mkdtemp(prefix="vptune-", dir="/tmp"))
    sb = ovs_sandbox.OvsSandbox(directory / "ovs").start()
    out: list[list[str]] = []
    base: dict[int, run.Round] = {}
    try:
        vswitchd = sb.vswitchd_pid
        assert vswitchd is not None
        harness.warm(sb.remote)
        for index, (label, options) in enumerate(variants):
            where = directory / f"d{index}"
            where.mkdir()
            daemon = harness.Daemon(where, sb.remote, f"brt{index}", options)
            daemon.start()
            try:
                for k in counts:
                    r = run.client_round(
                        daemon, f"brt{index}", f"t{index}k{k}", n, k, vswitchd, False
                    )
                    base.setdefault(k, r)
                    out.append(row(label, r, base[k]))
            finally:
                daemon.stop()
    finally:
        sb.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return out


def row(label: str, r: run.Round, base: run.Round) -> list[str]:
    cpu = (r.cpu_plug + r.cpu_unplug) * 1000 / r.n
    return [
        label,
        str(r.clients),
        f"{r.plug:.2f}",
        f"{r.plug / base.plug:.2f}",
        f"{r.unplug:.2f}",
        f"{r.unplug / base.unplug:.2f}",
        f"{r.txns:.0f}",
        f"{cpu:.2f}",
        f"{r.vswitchd:.2f}",
    ]


HEADER = [
    "variant",
    "clients",
    "plug (s)",
    "plug x defaults",
    "unplug (s)",
    "unplug x defaults",
    "OVSDB txns",
    "vifplugd CPU/VIF (ms)",
    "ovs-vswitchd CPU (s)",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(c[i]) for c in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", "-n", type=int, default=None, help="VIFs per round (default 300)")
    parser.add_argument(
        "--quick", action="store_true", help="N=10, 16 clients, the first three variants: for CI"
    )
    args = parser.parse_args()
    n = args.n if args.n is not None else (10 if args.quick else 300)
    counts = [16] if args.quick else [16, 128]
    variants = VARIANTS[:QUICK_VARIANTS] if args.quick else VARIANTS
    if not nsisolate.isolate():
        print("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a private namespace")
        return 2
    rows = measure(n, counts, variants)
    print(f"{n} VIFs per round, clients {', '.join(map(str, counts))}, {os.cpu_count()} CPUs")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
