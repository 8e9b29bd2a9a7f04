"""How the HostInfo push reads a network manager's refusal."""

from __future__ import annotations

import json
from typing import Any

import httpx

from vifplug.negotiation import hostinfo, push
from vifplug.objects import host_info as hi

SENT = {"versioned_object.name": "HostInfo", "versioned_object.version": "1.0"}


def response(status: int, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content)


def test_a_refusal_without_a_version_is_not_backlevelled() -> None:
    assert (
        push.Pusher._backlevel_step(response(500, {"error": {"message": "down"}}), SENT, None, None)
        is None
    )


def test_max_version_equal_to_what_was_sent_means_the_objects_inside() -> None:
    step = push.Pusher._backlevel_step(
        response(406, {"error": {"message": "no", "details": {"max_version": "1.0"}}}),
        SENT,
        None,
        None,
    )
    assert step is not None
    version, manifest = step
    assert version is None
    assert manifest is not None and manifest["HostVIFInfo"] == "1.0"


def test_oslo_refusal_names_the_object() -> None:
    body = b"Version 1.1 of HostVIFInfo is not supported, supported version is 1.0"
    step = push.Pusher._backlevel_step(response(400, body), SENT, None, None)
    assert step == (None, {"HostVIFInfo": "1.0"})


def test_the_oldest_manifest_backlevels_host_info_for_an_old_peer() -> None:
    info = hi.HostInfo(
        plugin_info=[
            hi.HostPluginInfo(
                plugin_name="ovs",
                vif_info=[
                    hi.HostVIFInfo(
                        vif_object_name="VIFOpenVSwitch",
                        min_version="1.0",
                        max_version="1.0",
                        supported_port_profiles=[],
                    )
                ],
            )
        ]
    )
    primitive = hostinfo.backlevel(info, manifest=push.oldest_manifest())
    vif_info = primitive["versioned_object.data"]["plugin_info"][0]["versioned_object.data"][
        "vif_info"
    ][0]
    assert vif_info["versioned_object.version"] == "1.0"
    assert "supported_port_profiles" not in vif_info["versioned_object.data"]


def test_disabled_pusher_does_nothing() -> None:
    from vifplug import conf

    pusher = push.Pusher(conf.NetworkManagerSettings(), lambda: None)
    pusher.start()
    pusher.trigger("start")
    pusher.stop()
    assert pusher.status()["state"] == "disabled"
