"""Loading the primitives a caller sends: ``primitive_identity``, ``load_vif``
and ``load_instance`` (``vifplug.objects.loading``), and what they say when a
primitive is wrong."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vifplug import exceptions
from vifplug.objects import base, loading
from vifplug.objects import vif as vifs

DATA = base.KEY_DATA
VERSION = base.KEY_VERSION
PORT_ID = "3c1e2b1a-4f5d-4e6c-8a7b-9c0d1e2f3a4b"
INSTANCE_ID = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"


def _vif_primitive(**data: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": PORT_ID,
        "plugin": "ovs",
        "address": "fa:16:3e:5c:1d:2e",
        "vif_name": "tap3c1e2b1a-4f",
        "bridge_name": "br-int",
        "port_profile": vifs.VIFPortProfileOpenVSwitch(
            interface_id=PORT_ID, profile_id=""
        ).obj_to_primitive(),
    }
    values.update(data)
    return {
        base.KEY_NAME: "VIFOpenVSwitch",
        base.KEY_NAMESPACE: "os_vif",
        VERSION: "1.0",
        DATA: values,
    }


def _instance_primitive(**data: Any) -> dict[str, Any]:
    values = {"uuid": INSTANCE_ID, "name": "instance-0000002a", "project_id": "4f1e2d3c"}
    values.update(data)
    return {
        base.KEY_NAME: "InstanceInfo",
        base.KEY_NAMESPACE: "os_vif",
        VERSION: "1.0",
        DATA: values,
    }


def test_load_vif_loads_an_os_vif_primitive() -> None:
    vif = loading.load_vif(_vif_primitive())
    assert isinstance(vif, vifs.VIFOpenVSwitch)
    assert (vif.id, vif.plugin, vif.vif_name) == (PORT_ID, "ovs", "tap3c1e2b1a-4f")
    assert isinstance(vif.port_profile, vifs.VIFPortProfileOpenVSwitch)


def test_primitive_identity_names_the_object_without_judging_its_version() -> None:
    newer = _vif_primitive()
    newer[VERSION] = "1.7"
    assert loading.primitive_identity(newer, what="vif") == ("VIFOpenVSwitch", "1.7")


def _broken(change: Any) -> Any:
    primitive = _vif_primitive()
    result = change(primitive)
    return primitive if result is None else result


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: [p], "it is a JSON array, not a JSON object"),
        (lambda p: "VIFOpenVSwitch", "it is a JSON string"),
        (lambda p: p.pop(DATA) and None, "it has no versioned_object.data key"),
        (lambda p: p.pop(base.KEY_NAME) and None, "it has no versioned_object.name key"),
        (lambda p: p.update({base.KEY_NAMESPACE: "nova"}), "its namespace is 'nova', not 'os_vif'"),
        (lambda p: p.update({base.KEY_NAME: "VIFNope"}), "'VIFNope' is not an os_vif object"),
        (lambda p: p.update({base.KEY_NAME: 42}), "its object name is a JSON number"),
        (
            lambda p: p.update({base.KEY_NAME: "InstanceInfo"}),
            "it is a InstanceInfo, not a VIFBase",
        ),
        (lambda p: p.update({base.KEY_NAME: "VIFPortProfileOpenVSwitch"}), "not a VIFBase"),
        (lambda p: p.update({VERSION: "1"}), "its version '1' is not of the form X.Y"),
        (lambda p: p.update({VERSION: 1.0}), "its version '1.0' is not of the form X.Y"),
        (lambda p: p.update({DATA: []}), "versioned_object.data is not a JSON object"),
        (lambda p: p.update({base.KEY_CHANGES: "id"}), "changes is not a list of field names"),
        (lambda p: p[DATA].update({"id": "port-1"}), "its id 'port-1' is not a UUID"),
        (lambda p: p[DATA].pop("id") and None, "its id is missing or not a string"),
        (lambda p: p[DATA].pop("plugin") and None, "its plugin is missing"),
        (lambda p: p[DATA].update({"plugin": ""}), "its plugin is missing"),
        (lambda p: p.update({VERSION: "1.1"}), "it is VIFOpenVSwitch 1.1, and this host knows"),
        (lambda p: p.update({VERSION: "2.0"}), "this host knows VIFOpenVSwitch 1.0 to 1.0"),
        (lambda p: p[DATA].update({"address": "not-a-mac"}), "its data does not load"),
        (lambda p: p[DATA].update({"port_profile": "ovs"}), "its data does not load"),
        (
            lambda p: p[DATA].update({"network": {"versioned_object.name": "Network"}}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA]["port_profile"].update({base.KEY_NAME: "VIFPortProfileNope"}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA]["port_profile"].update({VERSION: "1.9"}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA].update({"port_profile": _instance_primitive()}),
            "its data does not load",
        ),
    ],
)
def test_load_vif_explains_in_one_sentence_what_is_wrong(make: Any, says: str) -> None:
    primitive = _broken(make)
    with pytest.raises(exceptions.InvalidObject) as caught:
        loading.load_vif(primitive)
    message = str(caught.value)
    assert says in message
    assert message.startswith("The VIF is not a valid os_vif object: ")
    assert message.endswith(".") and "\n" not in message
    assert caught.value.code == "invalid_object"
    json.dumps(caught.value.details())  # goes into the error envelope as is


def test_load_vif_ignores_data_keys_its_version_does_not_have_as_os_vif_does() -> None:
    primitive = _vif_primitive(vif_name="tap0", future_field={"x": 1})
    vif = loading.load_vif(primitive)
    assert isinstance(vif, vifs.VIFOpenVSwitch)
    assert vif.vif_name == "tap0"
    assert "future_field" not in vif.obj_to_primitive()[DATA]


def test_load_vif_accepts_a_vif_with_only_id_and_plugin() -> None:
    primitive = _vif_primitive()
    primitive[DATA] = {"id": PORT_ID, "plugin": "ovs"}
    vif = loading.load_vif(primitive)
    assert not vif.obj_attr_is_set("vif_name")


def test_load_vif_does_not_modify_its_input() -> None:
    primitive = _vif_primitive()
    before = copy.deepcopy(primitive)
    loading.load_vif(primitive)
    assert primitive == before


def test_load_instance_loads_and_checks_the_uuid() -> None:
    instance = loading.load_instance(_instance_primitive())
    assert (instance.uuid, instance.name) == (INSTANCE_ID, "instance-0000002a")
    with pytest.raises(exceptions.InvalidObject, match="The instance is not a valid os_vif"):
        loading.load_instance(_instance_primitive(uuid="vm-1"))
    with pytest.raises(
        exceptions.InvalidObject, match="it is a VIFOpenVSwitch, not a InstanceInfo"
    ):
        loading.load_instance(_vif_primitive())


# --- check_writable: what no layer below can hold ------------------------------------


def _profile(primitive: dict[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = primitive[DATA]["port_profile"][DATA]
    return profile


@pytest.mark.parametrize(
    ("change", "field", "character"),
    [
        (lambda p: _profile(p).update(interface_id=PORT_ID + "\x00"), "interface_id", "U+0000"),
        (lambda p: _profile(p).update(profile_id="\ud800"), "profile_id", "U+D800"),
        (lambda p: _profile(p).update(profile_id="a\udfffb"), "profile_id", "U+DFFF"),
        (lambda p: p[DATA].update(vif_name="tap\n0"), "vif_name", "U+000A"),
        (lambda p: p[DATA].update(bridge_name="br\tint"), "bridge_name", "U+0009"),
        (lambda p: p[DATA].update(address="fa:16:3e:00:00:01\r"), "address", "U+000D"),
        (lambda p: p[DATA].update(plugin="ovs\x7f"), "plugin", "U+007F"),
        (lambda p: p[DATA].update(plugin="ovs\x85"), "plugin", "U+0085"),
        (lambda p: p[DATA].update(id=PORT_ID + "\u2028"), "id", "U+2028"),
        (lambda p: p[DATA].update(id=PORT_ID + "\u2029"), "id", "U+2029"),
        (lambda p: p.update({base.KEY_NAME: "VIFOpenVSwitch\x00"}), "versioned_object.name", ""),
    ],
)
def test_check_writable_names_the_field_and_the_character(
    change: Any, field: str, character: str
) -> None:
    primitive = _vif_primitive()
    change(primitive)
    with pytest.raises(exceptions.UnwritableValue) as caught:
        loading.check_writable(primitive, "vif")
    details = caught.value.details()
    assert details["field"].endswith(field), details
    assert details["field"].startswith("vif."), details
    assert character in str(caught.value)
    assert caught.value.code == "unwritable_value"
    message = str(caught.value)
    assert message.startswith("The field vif.") and message.endswith(".")
    # The envelope must be encodable: nothing of the bad value is echoed.
    json.dumps(details, ensure_ascii=False).encode()
    message.encode()


def test_check_writable_paths_go_through_nested_objects_and_lists() -> None:
    primitive = _vif_primitive()
    primitive[DATA]["network"] = {
        base.KEY_NAME: "Network",
        base.KEY_NAMESPACE: "os_vif",
        VERSION: "1.1",
        DATA: {
            "subnets": {
                base.KEY_NAME: "SubnetList",
                base.KEY_NAMESPACE: "os_vif",
                VERSION: "1.0",
                DATA: {"objects": [{"cidr": "10.0.0.0/24"}, {"cidr": "10.0.1.0/24\x00"}]},
            }
        },
    }
    with pytest.raises(exceptions.UnwritableValue) as caught:
        loading.check_writable(primitive, "vif")
    assert caught.value.details()["field"] == "vif.network.subnets.objects[1].cidr"


def test_check_writable_looks_at_keys_and_does_not_echo_them() -> None:
    primitive = _vif_primitive()
    primitive[DATA]["\ud800evil"] = "x"
    with pytest.raises(exceptions.UnwritableValue) as caught:
        loading.check_writable(primitive, "vif")
    assert caught.value.details()["field"] == "vif"
    assert "has a key that contains an unpaired surrogate (U+D800)" in str(caught.value)
    str(caught.value).encode()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (2**63, "outside the 64-bit integer range"),
        (-(2**63) - 1, "outside the 64-bit integer range"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
    ],
)
def test_check_writable_refuses_numbers_ovsdb_cannot_hold(value: object, says: str) -> None:
    primitive = _vif_primitive()
    primitive[DATA]["network"] = {"mtu": value}
    with pytest.raises(exceptions.UnwritableValue, match=says) as caught:
        loading.check_writable(primitive, "vif")
    assert caught.value.details()["field"] == "vif.network.mtu"


def test_check_writable_accepts_every_real_primitive_and_printable_unicode() -> None:
    primitive = _vif_primitive()
    primitive[DATA]["network"] = {"label": "réseau ünïcode 网络 \u200d\U0001f600", "mtu": 2**63 - 1}
    loading.check_writable(primitive, "vif")
    loading.check_writable(_instance_primitive(name="vm \u00e9\u00e8 \u202e"), "instance")
    loading.check_writable(None, "portgroup")


def test_check_writable_walks_any_nesting_without_recursing() -> None:
    deep: Any = "\x00"
    for _ in range(20000):
        deep = [deep]
    with pytest.raises(exceptions.UnwritableValue):
        loading.check_writable({"a": deep}, "vif")


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, categories=None), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, database=None)
@given(value=_json_values)
def test_check_writable_refuses_exactly_what_its_quick_pass_finds(value: object) -> None:
    """The pass without field paths and the one that names the field agree."""
    try:
        loading.check_writable({"a": value}, "vif")
    except exceptions.UnwritableValue:
        refused = True
    else:
        refused = False
    assert refused == loading._has_unwritable(value)
