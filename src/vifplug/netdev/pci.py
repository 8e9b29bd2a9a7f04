"""Which network device a PCI address is, as the kernel shows it in sysfs.

os-vif's ``VIFDirect`` names its physical device by PCI address
(``dev_address``), not by name; the macvtap needs the name.
"""

from __future__ import annotations

import os
import re

from vifplug import exceptions

_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def name_for_pci(address: str, *, sysfs: str = "/sys") -> str | None:
    """The netdev name of PCI function ``address`` (``0000:81:00.1``), or None
    when that function has no network device here."""
    addr = address.strip().lower()
    if not _PCI.match(addr):
        raise exceptions.InvalidRequest(
            reason=f"{address!r} is not a PCI address (domain:bus:slot.function)"
        )
    directory = os.path.join(sysfs, "bus", "pci", "devices", addr, "net")
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return names[0] if names else None
