"""Move the test process into private network and mount namespaces.

Called once from the top-level conftest before any thread exists, so that every
thread and child process (ovsdb-server, ovs-vswitchd, vifplugd) shares one
network namespace of its own: nothing a test creates is visible on the host,
and no name can collide with the host's devices.  /sys is remounted so it
shows this namespace's devices, as ``ip netns exec`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_done = False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def isolate() -> bool:
    """Enter fresh namespaces; return False when not permitted (then tests skip)."""
    global _done
    if _done:
        return True
    if os.environ.get("VIFPLUG_TEST_NO_UNSHARE") == "1":
        _done = True
        return True
    libc = _libc()
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        return False
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    libc.umount2(b"/sys", 2)  # MNT_DETACH
    libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ["VIFPLUG_TEST_NETNS"] = str(os.getpid())
    _done = True
    return True
