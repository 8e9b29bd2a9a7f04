"""Which network device a PCI address is, as the kernel shows it in sysfs.

os-vif's ``VIFDirect`` names its physical device by PCI address
(``dev_address``), not by name; the macvtap needs the name.  A
``VIFHostDevice`` names the PCI function given to the guest, which must exist
(and, for an SR-IOV VF, be found on its PF: ``vf.find_vf``).

Every function takes the sysfs root (``[netdev] sysfs_root``), so tests read
a tree they made in a temporary directory.  These only read.
"""

from __future__ import annotations

import os
import re

from vifplug import exceptions

_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def normalize_pci(address: str) -> str:
    """``address`` in sysfs's spelling (lower case); ``InvalidRequest`` when it
    is not ``domain:bus:slot.function``."""
    addr = address.strip().lower()
    if not _PCI.match(addr):
        raise exceptions.InvalidRequest(
            reason=f"{address!r} is not a PCI address (domain:bus:slot.function)"
        )
    return addr


def pci_device_dir(address: str, *, sysfs: str = "/sys") -> str:
    """The sysfs directory of PCI function ``address`` (which may not exist)."""
    return os.path.join(sysfs, "bus", "pci", "devices", normalize_pci(address))


def pci_device_exists(address: str, *, sysfs: str = "/sys") -> bool:
    """Whether PCI function ``address`` exists on this host."""
    return os.path.isdir(pci_device_dir(address, sysfs=sysfs))


def name_for_pci(address: str, *, sysfs: str = "/sys") -> str | None:
    """The netdev name of PCI function ``address`` (``0000:81:00.1``), or None
    when that function has no network device here."""
    directory = os.path.join(pci_device_dir(address, sysfs=sysfs), "net")
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return names[0] if names else None
