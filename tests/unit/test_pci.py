"""PCI address -> network device name, against a sysfs tree made in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from vifplug import exceptions, netdev


def test_pci_function_with_a_netdev_is_found(tmp_path: Path) -> None:
    (tmp_path / "bus/pci/devices/0000:81:00.1/net/ens1f1").mkdir(parents=True)
    assert netdev.name_for_pci("0000:81:00.1", sysfs=str(tmp_path)) == "ens1f1"
    assert netdev.name_for_pci("0000:81:00.1".upper(), sysfs=str(tmp_path)) == "ens1f1"


def test_pci_function_without_a_netdev_is_none(tmp_path: Path) -> None:
    (tmp_path / "bus/pci/devices/0000:81:00.2").mkdir(parents=True)
    assert netdev.name_for_pci("0000:81:00.2", sysfs=str(tmp_path)) is None
    assert netdev.name_for_pci("0000:82:00.0", sysfs=str(tmp_path)) is None


@pytest.mark.parametrize("bad", ["81:00.1", "0000:81:00.8", "eth0", "0000:81:00.1/../x"])
def test_malformed_pci_address_is_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(exceptions.InvalidRequest):
        netdev.name_for_pci(bad, sysfs=str(tmp_path))
