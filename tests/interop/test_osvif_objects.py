"""vifplug's wire objects against the real os-vif package, object by object.

os-vif runs in a subprocess (see conftest.py).  For every object os-vif has
and every version it has had, these tests prove that:

* vifplug defines the same objects, with the same oslo fingerprints, field
  structure and dependency tree;
* a fully populated primitive os-vif makes at that version loads in vifplug
  and re-serialises identically (so every field came through unchanged), and
  passes vifplug's request validators;
* vifplug backlevels an object to that version exactly as os-vif does;
* a primitive vifplug makes at that version loads in os-vif, field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import osvif_samples
import pytest

from vifplug.objects import base as obj_base
from vifplug.objects import instance_info as ii
from vifplug.objects import loading
from vifplug.objects import vif as vifs

CLASSES = obj_base.classes()
CASES = [
    pytest.param(name, version, id=f"{name}-{version}")
    for name, cls in sorted(CLASSES.items())
    for version in osvif_samples.versions(cls.VERSION)
]

Key = tuple[str, int, str]


def _osvif_items(made: list[dict[str, Any]], name: str, version: str) -> list[dict[str, Any]]:
    items = [i for i in made if i["name"] == name and i["version"] == version]
    assert items, f"os-vif made no {name} {version}: it does not have that version"
    assert len(items) == len(osvif_samples.SAMPLES[name])
    return items


@pytest.fixture(scope="session")
def vifplug_made() -> dict[Key, dict[str, Any]]:
    """vifplug's primitive of every sample at every version, built natively."""
    made: dict[Key, dict[str, Any]] = {}
    for name, cls in CLASSES.items():
        for index, spec in enumerate(osvif_samples.SAMPLES[name]):
            obj = osvif_samples.build(spec, CLASSES)
            for version in osvif_samples.versions(cls.VERSION):
                made[(name, index, version)] = obj.obj_to_primitive(target_version=version)
    return made


@pytest.fixture(scope="session")
def osvif_loaded(
    osvif: Callable[..., dict[str, Any]], vifplug_made: dict[Key, dict[str, Any]]
) -> dict[Key, dict[str, Any]]:
    """What os-vif makes of each of vifplug's primitives (one subprocess for all)."""
    keys = list(vifplug_made)
    results = osvif("load", primitives=[vifplug_made[k] for k in keys])["results"]
    return dict(zip(keys, results, strict=True))


# --- the same objects ----------------------------------------------------------------


def test_vifplug_defines_exactly_the_objects_osvif_has(osvif_inventory: dict[str, Any]) -> None:
    assert sorted(osvif_inventory["hashes"]) == sorted(CLASSES)
    assert osvif_inventory["missing_samples"] == [], "every os-vif object needs a sample"


def test_fingerprints_equal_osvif(osvif_inventory: dict[str, Any]) -> None:
    from oslo_versionedobjects import fixture

    checker = fixture.ObjectVersionChecker({n: [c] for n, c in CLASSES.items()})
    assert checker.get_hashes() == osvif_inventory["hashes"]


def test_field_structure_equals_osvif(osvif_inventory: dict[str, Any]) -> None:
    ours = osvif_samples.describe(CLASSES)
    theirs = osvif_inventory["describe"]
    differing = sorted(name for name in theirs if ours.get(name) != theirs[name])
    assert not differing, {name: (ours.get(name), theirs[name]) for name in differing}


def test_dependency_tree_equals_osvif(osvif_inventory: dict[str, Any]) -> None:
    from oslo_versionedobjects import fixture

    checker = fixture.ObjectVersionChecker({n: [c] for n, c in CLASSES.items()})
    assert checker.get_dependency_tree() == osvif_inventory["tree"]


def test_the_helper_really_ran_osvif(osvif_inventory: dict[str, Any]) -> None:
    # Guards against a helper that silently imported vifplug's objects.
    assert osvif_inventory["os_vif_version"]
    loaded = osvif_inventory["describe"]["VIFOpenVSwitch"]
    assert loaded["namespace"] == "os_vif"


# --- os-vif -> vifplug ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "version"), CASES)
def test_osvif_primitive_loads_in_vifplug_unchanged(
    osvif_made: list[dict[str, Any]], name: str, version: str
) -> None:
    for item in _osvif_items(osvif_made, name, version):
        theirs = item["primitive"]
        obj = obj_base.from_primitive(theirs)
        assert type(obj) is CLASSES[name]
        assert obj.VERSION == version
        assert osvif_samples.canonical(obj.obj_to_primitive()) == osvif_samples.canonical(theirs)


@pytest.mark.parametrize(("name", "version"), CASES)
def test_osvif_primitive_passes_vifplug_validation(
    osvif_made: list[dict[str, Any]], name: str, version: str
) -> None:
    cls = CLASSES[name]
    for item in _osvif_items(osvif_made, name, version):
        theirs = item["primitive"]
        assert loading.primitive_identity(theirs) == (name, version)
        if issubclass(cls, vifs.VIFBase):
            loaded: obj_base.VersionedObject = loading.load_vif(theirs)
        elif issubclass(cls, ii.InstanceInfo):
            loaded = loading.load_instance(theirs)
        else:
            continue
        assert osvif_samples.canonical(loaded.obj_to_primitive()) == osvif_samples.canonical(theirs)


@pytest.mark.parametrize(("name", "version"), CASES)
def test_vifplug_backlevels_exactly_as_osvif(
    osvif_made: list[dict[str, Any]], name: str, version: str
) -> None:
    """From os-vif's newest primitive, vifplug makes os-vif's primitive at V.

    os-vif 5.3.0 cannot backlevel some objects without a manifest (a
    sub-object field without a version rule raises ObjectActionError); the
    helper then used a manifest naming the object, which is oslo's RPC path.
    vifplug needs no manifest for any of them and gives the same answer.
    """
    for item in _osvif_items(osvif_made, name, version):
        obj = obj_base.from_primitive(item["latest"])
        ours = obj.obj_to_primitive(target_version=version)
        assert osvif_samples.canonical(ours) == osvif_samples.canonical(item["primitive"]), item[
            "mode"
        ]


def test_osvif_needs_a_manifest_where_vifplug_does_not(osvif_made: list[dict[str, Any]]) -> None:
    """Documents os-vif's limitation that vifplug fixes (see the test above)."""
    for item in osvif_made:
        if item["mode"] == "manifest":
            assert "No rule for" in item["plain_error"], item["plain_error"]
            obj = obj_base.from_primitive(item["latest"])
            obj.obj_to_primitive(target_version=item["version"])  # no manifest, no error


# --- vifplug -> os-vif ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "version"), CASES)
def test_vifplug_primitive_loads_in_osvif_field_for_field(
    osvif_loaded: dict[Key, dict[str, Any]],
    vifplug_made: dict[Key, dict[str, Any]],
    name: str,
    version: str,
) -> None:
    keys = [k for k in vifplug_made if k[0] == name and k[2] == version]
    assert len(keys) == len(osvif_samples.SAMPLES[name])
    for key in keys:
        result = osvif_loaded[key]
        assert "error" not in result, result.get("error")
        assert result["class"].startswith("os_vif.objects.")
        assert result["class"].endswith(f".{name}")
        assert result["version"] == version
        assert osvif_samples.field_differences(vifplug_made[key], result["primitive"]) == []


@pytest.mark.parametrize(("name", "version"), CASES)
def test_vifplug_and_osvif_build_the_same_primitive(
    osvif_made: list[dict[str, Any]],
    vifplug_made: dict[Key, dict[str, Any]],
    name: str,
    version: str,
) -> None:
    """The same constructor arguments give the same wire bytes on both sides
    (constructor defaults such as Network's included)."""
    for item in _osvif_items(osvif_made, name, version):
        ours = vifplug_made[(name, item["sample"], version)]
        assert osvif_samples.canonical(ours) == osvif_samples.canonical(item["primitive"])
