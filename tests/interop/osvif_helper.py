"""The os-vif side of the interop tests, run in its own process.

oslo.versionedobjects has one registry per process, keyed by object name, so
os-vif's classes and vifplug's cannot be loaded together.  The tests run this
script with ``sys.executable``, send one JSON request on stdin and read one
JSON answer on stdout.  It imports os-vif, never vifplug.

Requests (``{"op": ..., ...}``):

``inventory``
    every os_vif object os-vif registers: version, oslo fingerprint,
    the dependency tree and a structural description (``osvif_samples.describe``).
``make``
    for every object, every sample and every version from 1.0 to the
    object's own: os-vif's ``obj_to_primitive(target_version=V)``.  Where
    os-vif cannot do that (it raises for some objects with sub-objects that
    have no version rule), the error is recorded and the primitive is made
    with a version manifest naming only that object instead, which is how
    oslo RPC backlevels.
``load``
    ``primitives``: load each with ``obj_from_primitive`` and answer its
    re-serialisation (at the version it was loaded at), its class and
    version, or the error.
``backlevel``
    ``items`` of ``{primitive, target_version, manifest}``: load, then
    ``obj_to_primitive(target_version, version_manifest)``.

``"old": true`` in any request first turns the registry into that of an
os-vif from before HostPortProfileInfo existed (HostVIFInfo 1.0, no
HostPortProfileInfo), to play an older network manager.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from typing import Any

warnings.simplefilter("ignore")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import os_vif.objects  # noqa: E402
import osvif_samples  # noqa: E402
from os_vif.objects import base as osv_base  # noqa: E402
from oslo_versionedobjects import base as ovo_base  # noqa: E402
from oslo_versionedobjects import fields as ovo_fields  # noqa: E402
from oslo_versionedobjects import fixture as ovo_fixture  # noqa: E402

os_vif.objects.register_all()


def _classes() -> dict[str, Any]:
    return {
        name: classes[0]
        for name, classes in ovo_base.VersionedObjectRegistry.obj_classes().items()
        if classes and classes[0].OBJ_PROJECT_NAMESPACE == osvif_samples.NAMESPACE
    }


def _become_old() -> None:
    """Make this registry that of an os-vif with HostVIFInfo 1.0 and no
    HostPortProfileInfo (os-vif before 1.13)."""
    registry = ovo_base.VersionedObjectRegistry.obj_classes()
    del registry["HostPortProfileInfo"]
    del registry["HostVIFInfo"]

    class HostVIFInfo(osv_base.VersionedObject, ovo_base.ComparableVersionedObject):
        VERSION = "1.0"
        fields = {
            "vif_object_name": ovo_fields.StringField(),
            "min_version": ovo_fields.StringField(),
            "max_version": ovo_fields.StringField(),
        }

    ovo_base.VersionedObjectRegistry.register(HostVIFInfo)


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}


def inventory() -> dict[str, Any]:
    classes = _classes()
    checker = ovo_fixture.ObjectVersionChecker({n: [c] for n, c in classes.items()})
    return {
        "hashes": checker.get_hashes(),
        "tree": checker.get_dependency_tree(),
        "describe": osvif_samples.describe(classes),
        "missing_samples": sorted(set(classes) - set(osvif_samples.SAMPLES)),
    }


def make() -> dict[str, Any]:
    classes = _classes()
    items = []
    for name, cls in sorted(classes.items()):
        for index, spec in enumerate(osvif_samples.SAMPLES.get(name, [])):
            obj = osvif_samples.build(spec, classes)
            latest = obj.obj_to_primitive()
            for version in osvif_samples.versions(cls.VERSION):
                item: dict[str, Any] = {
                    "name": name,
                    "sample": index,
                    "version": version,
                    "latest": latest,
                }
                try:
                    item["primitive"] = obj.obj_to_primitive(target_version=version)
                    item["mode"] = "plain"
                except Exception as exc:
                    item["plain_error"] = f"{type(exc).__name__}: {exc}"
                    item["mode"] = "manifest"
                    item["primitive"] = obj.obj_to_primitive(
                        target_version=version, version_manifest={name: version}
                    )
                items.append(item)
    return {"items": items}


def load(primitives: list[dict[str, Any]]) -> dict[str, Any]:
    results = []
    for primitive in primitives:
        try:
            obj = osv_base.VersionedObject.obj_from_primitive(primitive)
            results.append(
                {
                    "class": f"{type(obj).__module__}.{type(obj).__name__}",
                    "version": obj.VERSION,
                    "primitive": obj.obj_to_primitive(),
                }
            )
        except Exception as exc:
            results.append(_error(exc))
    return {"results": results}


def backlevel(items: list[dict[str, Any]]) -> dict[str, Any]:
    results = []
    for item in items:
        try:
            obj = osv_base.VersionedObject.obj_from_primitive(item["primitive"])
            results.append(
                {
                    "primitive": obj.obj_to_primitive(
                        target_version=item.get("target_version"),
                        version_manifest=item.get("manifest"),
                    )
                }
            )
        except Exception as exc:
            results.append(_error(exc))
    return {"results": results}


def main() -> int:
    request = json.load(sys.stdin)
    if request.get("old"):
        _become_old()
    op = request["op"]
    if op == "inventory":
        answer = inventory()
    elif op == "make":
        answer = make()
    elif op == "load":
        answer = load(request["primitives"])
    elif op == "backlevel":
        answer = backlevel(request["items"])
    else:
        raise SystemExit(f"unknown op {op!r}")
    answer["os_vif_version"] = _os_vif_version()
    json.dump(answer, sys.stdout, sort_keys=True)
    return 0


def _os_vif_version() -> str:
    from importlib import metadata

    return metadata.version("os-vif")


if __name__ == "__main__":
    sys.exit(main())
