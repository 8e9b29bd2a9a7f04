"""The application in-process, around a fake service: envelopes, statuses, guards.

The functional tests drive the real daemon; these pin the HTTP behaviour
itself, without root and in milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from fastapi import Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from vifplug import exceptions
from vifplug.api import app as api_app
from vifplug.api import errors, metrics, routes
from vifplug.api.routes import host_info, leaks, networks, operations, vifs
from vifplug.negotiation import hostinfo
from vifplug.plugging.service import PlugRequest, PlugResult, Service
from vifplug.records import Allocation, Lifecycle, VifRecord


def record(vif_id: str = "v1") -> VifRecord:
    return VifRecord(
        vif_id=vif_id,
        plugin="ovs",
        obj_name="VIFOpenVSwitch",
        obj_version="1.0",
        instance_uuid="i1",
        instance_name="vm",
        request_json="{}",
        request_digest="d",
        lifecycle=Lifecycle.PLUGGED,
        iface_id=vif_id,
        iface_status="active",
        mac="fa:16:3e:00:00:01",
        allocation=Allocation(
            plugin="ovs",
            device="tap1",
            bridge="br-int",
            port="tap1",
            created_devices=("tap1",),
            created_port=True,
        ),
    )


class FakeService:
    def __init__(self) -> None:
        self.records: dict[str, VifRecord] = {}
        self.raise_on_plug: Exception | None = None
        self.threads: set[str] = set()

    def host_info(self) -> Any:
        return hostinfo.build_host_info([])

    def plugin_names(self) -> frozenset[str]:
        return frozenset({"ovs"})

    def plug(self, request: PlugRequest) -> PlugResult:
        self.threads.add(threading.current_thread().name)
        if self.raise_on_plug is not None:
            raise self.raise_on_plug
        vif_id = request.vif["versioned_object.data"]["id"]
        created = vif_id not in self.records
        self.records[vif_id] = record(vif_id)
        return PlugResult(record=self.records[vif_id], created=created)

    def get(self, vif_id: str) -> VifRecord:
        if vif_id not in self.records:
            raise exceptions.VIFNotFound(vif_id=vif_id)
        return self.records[vif_id]

    def unplug(self, vif_id: str) -> None:
        self.get(vif_id)
        del self.records[vif_id]

    def set_status(self, vif_id: str, status: str, *, allow_dual_active: bool) -> VifRecord:
        return self.get(vif_id).with_changes(iface_status=status)

    def ofport(self, rec: VifRecord) -> int | None:
        return 7

    def networks_view(self) -> list[dict[str, Any]]:
        return [{"name": "physnet1"}]

    # Last: inside the class, ``list`` names this method from here on.
    def list(self) -> list[VifRecord]:
        return [*self.records.values()]


@pytest.fixture
def service() -> FakeService:
    return FakeService()


def as_service(fake: FakeService) -> Service:
    """The fake where the API expects the real ``Service`` (duck-typed)."""
    return cast(Service, fake)


def make_client(service: FakeService, **kwargs: Any) -> TestClient:
    rt = api_app.Runtime(
        executor=ThreadPoolExecutor(4, thread_name_prefix="api-worker"),
        metrics=metrics.Metrics(),
        max_body_bytes=4096,
    )
    return TestClient(
        api_app.create_app(as_service(service), runtime=rt, **kwargs),
        raise_server_exceptions=False,
    )


def body(vif_id: str = "v1") -> dict[str, Any]:
    return {"vif": {"versioned_object.data": {"id": vif_id}}, "instance": {}}


def envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["details"], dict)
    return error


def test_plug_201_then_200_and_work_runs_in_the_api_pool(service: FakeService) -> None:
    c = make_client(service)
    assert c.post("/v1/vifs", json=body()).status_code == 201
    r = c.post("/v1/vifs", json=body())
    assert r.status_code == 200
    assert r.json()["ofport"] == 7 and r.json()["device"] == "tap1"
    assert all(name.startswith("api-worker") for name in service.threads)


def test_plug_timeout_is_504_with_the_envelope(service: FakeService) -> None:
    service.raise_on_plug = exceptions.PlugTimeout(
        vif_id="v1", device="tap1", condition="an ofport", timeout=1.0, seen="no ofport yet"
    )
    error = envelope(make_client(service).post("/v1/vifs", json=body()), 504, "plug_timeout")
    assert error["details"]["vif_id"] == "v1"


def test_unexpected_exception_is_500_with_the_envelope(service: FakeService) -> None:
    service.raise_on_plug = RuntimeError("boom")
    envelope(make_client(service).post("/v1/vifs", json=body()), 500, "internal_error")


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        ("GET", "/nope", 404, "not_found"),
        ("PATCH", "/v1/vifs", 405, "method_not_allowed"),
        ("GET", "/v1/vifs/unknown", 404, "vif_not_found"),
        ("DELETE", "/v1/vifs/unknown", 404, "vif_not_found"),
        ("GET", "/v1/host-info?version=2.0", 406, "version_not_available"),
        ("GET", "/v1/host-info?version=x", 400, "invalid_request"),
        ("POST", "/v1/vifs?wait=later", 400, "invalid_request"),
    ],
)
def test_errors_use_the_envelope(
    service: FakeService, method: str, path: str, status: int, code: str
) -> None:
    envelope(make_client(service).request(method, path, json=body()), status, code)


def test_malformed_json_and_unknown_fields(service: FakeService) -> None:
    c = make_client(service)
    envelope(
        c.post("/v1/vifs", content=b"{", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    error = envelope(c.post("/v1/vifs", json={**body(), "extra": 1}), 400, "invalid_request")
    assert error["details"]["problems"][0]["loc"] == ["body", "extra"]
    assert service.records == {}


def test_media_type(service: FakeService) -> None:
    c = make_client(service)
    envelope(
        c.post("/v1/vifs", content=b"{}", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    envelope(c.post("/v1/vifs", content=b"{}"), 415, "unsupported_media_type")
    ok = c.post(
        "/v1/vifs",
        content=b'{"vif": {"versioned_object.data": {"id": "x"}}, "instance": {}}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 201
    assert c.delete("/v1/vifs/x").status_code == 204


def test_body_limit(service: FakeService) -> None:
    c = make_client(service)
    big = {"vif": {"x": "y" * 5000}, "instance": {}}
    envelope(c.post("/v1/vifs", json=big), 413, "request_too_large")
    assert service.records == {}


def test_token(service: FakeService) -> None:
    c = make_client(service, token="t0k")
    envelope(c.get("/healthz"), 401, "unauthorized")
    envelope(c.get("/healthz", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    assert c.get("/healthz", headers={"Authorization": "Bearer t0k"}).status_code == 200


def test_networks_and_metrics(service: FakeService) -> None:
    c = make_client(service)
    assert c.get("/v1/networks").json() == {"networks": [{"name": "physnet1"}]}
    c.post("/v1/vifs", json=body())
    text = c.get("/metrics").text
    assert 'vifplug_plug_duration_seconds_count{plugin="ovs",result="created"} 1.0' in text


def test_readiness_reports_why(service: FakeService) -> None:
    rt = api_app.Runtime(
        executor=ThreadPoolExecutor(2),
        metrics=metrics.Metrics(),
        readiness=lambda: (False, {"reason": "OVSDB is not connected"}),
    )
    c = TestClient(api_app.create_app(as_service(service), runtime=rt))
    error = envelope(c.get("/readyz"), 503, "not_ready")
    assert "OVSDB is not connected" in error["message"]


def test_many_blocking_calls_run_concurrently(service: FakeService) -> None:
    """The pool, not anyio's limiter, bounds concurrency."""
    gate = threading.Barrier(8, timeout=10)

    def slow_list() -> list[VifRecord]:
        gate.wait()
        return []

    service.list = slow_list  # type: ignore[method-assign]
    rt = api_app.Runtime(executor=ThreadPoolExecutor(8), metrics=metrics.Metrics())
    c = TestClient(api_app.create_app(as_service(service), runtime=rt))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: c.get("/v1/vifs").status_code, range(8)))
    assert statuses == [200] * 8
    assert time.monotonic() - started < 10


def test_plug_metric_names_only_installed_plugins(service: FakeService) -> None:
    service.raise_on_plug = exceptions.PlugTimeout(
        vif_id="v1", device="tap1", condition="an ofport", timeout=1.0, seen="no ofport yet"
    )
    c = make_client(service)
    for plugin in ("ovs", "made-up"):
        vif = {"versioned_object.data": {"id": "v1", "plugin": plugin}}
        assert c.post("/v1/vifs", json={"vif": vif, "instance": {}}).status_code == 504
    text = c.get("/metrics").text
    assert 'vifplug_plug_duration_seconds_count{plugin="ovs",result="plug_timeout"} 1.0' in text
    assert 'plugin="unknown",result="plug_timeout"} 1.0' in text
    assert "made-up" not in text


def test_the_routers_hold_the_named_handlers_in_document_order(service: FakeService) -> None:
    held = [
        (sorted(route.methods or ()), route.path, route.endpoint)
        for router in routes.ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    assert held == [
        (["GET"], "/v1/host-info", host_info.host_info),
        (["POST"], "/v1/vifs", vifs.plug),
        (["GET"], "/v1/vifs", vifs.list_vifs),
        (["GET"], "/v1/vifs/{vif_id}", vifs.show_vif),
        (["DELETE"], "/v1/vifs/{vif_id}", vifs.unplug),
        (["PUT"], "/v1/vifs/{vif_id}/status", vifs.set_status),
        (["GET"], "/v1/networks", networks.networks),
        (["GET"], "/v1/leaks", leaks.list_leaks),
        (["POST"], "/v1/leaks/purge", leaks.purge_leaks),
        (["GET"], "/healthz", operations.healthz),
        (["GET"], "/readyz", operations.readyz),
        (["GET"], "/metrics", operations.metrics),
        (["POST"], "/v1/reload", operations.reload),
    ]
    # The app serves them under the handlers' names (the operation ids' stem).
    app = api_app.create_app(as_service(service))
    assert app.url_path_for("show_vif", vif_id="v1") == "/v1/vifs/v1"
    assert app.url_path_for("readyz") == "/readyz"
    app.state.runtime.executor.shutdown(wait=False)


def test_handlers_called_alone_run_their_work_in_the_runtime_pool(service: FakeService) -> None:
    service.records["v1"] = record("v1")
    threads: list[str] = []
    real_get = service.get

    def get(vif_id: str) -> VifRecord:
        threads.append(threading.current_thread().name)
        return real_get(vif_id)

    service.get = get  # type: ignore[method-assign]
    with ThreadPoolExecutor(1, thread_name_prefix="alone") as pool:
        rt = api_app.Runtime(executor=pool, metrics=metrics.Metrics())
        shown = asyncio.run(vifs.show_vif("v1", service=as_service(service), runtime=rt))
        with pytest.raises(exceptions.VIFNotFound):
            asyncio.run(vifs.show_vif("v2", service=as_service(service), runtime=rt))
    assert shown.vif_id == "v1" and shown.ofport == 7
    assert len(threads) == 2 and all(name.startswith("alone") for name in threads)


def test_readyz_called_alone_answers_503_with_the_envelope() -> None:
    with ThreadPoolExecutor(1) as pool:
        rt = api_app.Runtime(
            executor=pool, metrics=metrics.Metrics(), readiness=lambda: (False, {"x": 1})
        )
        answer = asyncio.run(operations.readyz(runtime=rt))
    assert isinstance(answer, Response) and answer.status_code == 503
    assert b'"code":"not_ready"' in answer.body and b'"x":1' in answer.body


def test_plug_metric_counts_the_plug_when_its_rendering_fails(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The VIF is plugged even if reading its ofport then fails: the answer is
    that error, the metric the plug that happened."""

    def no_answer(rec: VifRecord) -> int | None:
        raise exceptions.OvsdbTimeout(timeout=1.0)

    monkeypatch.setattr(service, "ofport", no_answer)
    c = make_client(service)
    envelope(c.post("/v1/vifs", json=body()), 504, "ovsdb_timeout")
    assert "v1" in service.records
    text = c.get("/metrics").text
    assert 'vifplug_plug_duration_seconds_count{plugin="ovs",result="created"} 1.0' in text
    assert 'result="ovsdb_timeout"' not in text


def test_every_route_is_matched_by_the_apps_own_router(service: FakeService) -> None:
    """No included-router layer between a request and its route (``create_app``),
    and each route still carries its router's tag."""
    app = api_app.create_app(as_service(service))
    flat = [r for r in app.router.routes if isinstance(r, APIRoute)]
    declared = [r for router in routes.ROUTERS for r in router.routes]
    assert declared and all(r in flat for r in declared)
    assert all(isinstance(r, (APIRoute, Route)) for r in app.router.routes)
    for router in routes.ROUTERS:
        assert router.tags and all(router.tags[0] in r.tags for r in router.routes)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/v1/vifs/abc", "/v1/vifs/abc"),
        ("/v1/vifs/é-ü", "/v1/vifs/é-ü"),
        ("/v1/vifs/a\nb", "/v1/vifs/a\\nb"),
        ("/v1/vifs/a\\nb", "/v1/vifs/a\\\\nb"),
        ("/v1/vifs/\u2028", "/v1/vifs/\\u2028"),
    ],
)
def test_printable_escapes_what_could_forge_a_log_line_and_keeps_the_rest(
    text: str, shown: str
) -> None:
    assert errors.printable(text) == shown
