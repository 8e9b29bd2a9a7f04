"""The examples the README points at load as the daemon will load them."""

from __future__ import annotations

import json
from pathlib import Path

from vifplug.objects import loading

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_readme_plug_example_loads() -> None:
    body = json.loads((EXAMPLES / "vif-ovs.json").read_text())
    vif = loading.load_vif(body["vif"])
    instance = loading.load_instance(body["instance"])
    assert vif.obj_name() == "VIFOpenVSwitch"
    assert vif.port_profile.interface_id == vif.id
    assert vif.network.bridge == "br-int"
    assert instance.name == "demo-vm"
