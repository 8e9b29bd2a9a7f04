"""A cloned host: a system-id recorded on another machine is refused at start.

Two hosts with one ``system-id`` make controllers fight over their ports
(ovn-kubernetes #70, #635).  The state keeps the machine-id of the machine
the system-id was recorded on; a start on a machine with another machine-id
and the same system-id (the image carried the state, OVSDB's database and
system-id.conf along) refuses, unless ``[DEFAULT] allow_cloned_system_id``
says to keep it, or a new ``[DEFAULT] system_id`` is configured.  Machine
ids come from temporary files (``[DEFAULT] machine_id_file``).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_fixture import DaemonFactory
from engine_fixture import running_engine, settings_for

import ovs_sandbox
from helpers import unique
from vifplug import conf, exceptions
from vifplug.plugging import engine
from vifplug.state import store as state_store


@pytest.fixture
def no_system_id(ovs: ovs_sandbox.OvsSandbox) -> Iterator[None]:
    """The session OVS without a system-id (as on a fresh host), restored after."""
    previous = ovs.vsctl("--if-exists", "get", "Open_vSwitch", ".", "external_ids:system-id")
    previous = previous.strip().strip('"')
    ovs.vsctl("remove", "Open_vSwitch", ".", "external_ids", "system-id")
    try:
        yield
    finally:
        if previous:
            ovs.vsctl("set", "Open_vSwitch", ".", f"external_ids:system-id={previous}")


def machine(tmp_path: Path, content: str | None = None) -> str:
    path = tmp_path / f"machine-id-{uuid.uuid4().hex[:6]}"
    path.write_text((content if content is not None else uuid.uuid4().hex) + "\n")
    return str(path)


def on(settings: conf.Settings, **host: object) -> conf.Settings:
    return dataclasses.replace(settings, host=dataclasses.replace(settings.host, **host))  # type: ignore[arg-type]


def ovsdb_system_id(ovs: ovs_sandbox.OvsSandbox) -> str:
    return ovs.vsctl("get", "Open_vSwitch", ".", "external_ids:system-id").strip().strip('"')


def recorded(settings: conf.Settings) -> dict[str, str | None]:
    store = state_store.Store(os.path.join(settings.host.state_dir, engine.STATE_FILE))
    try:
        return {k: store.meta_get(k) for k in (engine.META_SYSTEM_ID, engine.META_MACHINE_ID)}
    finally:
        store.close()


def refused(settings: conf.Settings) -> exceptions.ClonedSystemId:
    eng = engine.Engine(settings, owner=f"test-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(exceptions.ClonedSystemId) as caught:
            eng.start()
    finally:
        eng.stop()
    return caught.value


@pytest.mark.usefixtures("no_system_id")
def test_a_system_id_recorded_on_another_machine_is_refused(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    base = settings_for(ovs.remote, tmp_path / "state", bridge=unique("vpbr"))
    first, clone = machine(tmp_path), machine(tmp_path)
    with running_engine(on(base, machine_id_file=first)) as e:
        system_id = e.system_id
    assert system_id is not None and ovsdb_system_id(ovs) == system_id
    first_id = Path(first).read_text().strip()
    assert recorded(base) == {"system_id": system_id, "machine_id": first_id}

    error = refused(on(base, machine_id_file=clone))
    assert system_id in error.message and first_id in error.message
    assert "allow_cloned_system_id" in error.message and "system_id" in error.message
    assert error.details()["machine_id"] == Path(clone).read_text().strip()
    # Refused before anything was written.
    assert ovsdb_system_id(ovs) == system_id
    assert recorded(base) == {"system_id": system_id, "machine_id": first_id}

    # Told to keep it: it starts, and the system-id is this machine's from now on.
    with running_engine(on(base, machine_id_file=clone, allow_cloned_system_id=True)) as e:
        assert e.system_id == system_id
    assert recorded(base)["machine_id"] == Path(clone).read_text().strip()
    with running_engine(on(base, machine_id_file=clone)) as e:
        assert e.system_id == system_id


@pytest.mark.usefixtures("no_system_id")
def test_a_clone_given_a_new_system_id_starts_with_it(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    """The documented reset: a new [DEFAULT] system_id on the copy."""
    base = settings_for(ovs.remote, tmp_path / "state", bridge=unique("vpbr"))
    with running_engine(on(base, machine_id_file=machine(tmp_path))) as e:
        old = e.system_id
    clone = machine(tmp_path)
    new = str(uuid.uuid4())
    with running_engine(on(base, machine_id_file=clone, system_id=new)) as e:
        assert e.system_id == new != old
    assert ovsdb_system_id(ovs) == new
    assert recorded(base) == {"system_id": new, "machine_id": Path(clone).read_text().strip()}


@pytest.mark.usefixtures("no_system_id")
def test_the_copy_is_found_whichever_source_the_system_id_comes_from(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    """A fresh OVSDB on the clone, the copied state alone names the system-id;
    then the configured one is the same as the recorded one."""
    base = settings_for(ovs.remote, tmp_path / "state", bridge=unique("vpbr"))
    with running_engine(on(base, machine_id_file=machine(tmp_path))) as e:
        system_id = e.system_id
    ovs.vsctl("remove", "Open_vSwitch", ".", "external_ids", "system-id")
    refused(on(base, machine_id_file=machine(tmp_path)))
    refused(on(base, machine_id_file=machine(tmp_path), system_id=system_id))


@pytest.mark.usefixtures("no_system_id")
@pytest.mark.parametrize("content", [None, "", "uninitialized", "not-a-machine-id"])
def test_without_a_machine_id_to_compare_nothing_is_refused(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path, content: str | None
) -> None:
    base = settings_for(ovs.remote, tmp_path / "state", bridge=unique("vpbr"))
    with running_engine(on(base, machine_id_file=machine(tmp_path))) as e:
        system_id = e.system_id
    here = str(tmp_path / "absent") if content is None else machine(tmp_path, content)
    with running_engine(on(base, machine_id_file=here)) as e:
        assert e.system_id == system_id


@pytest.mark.usefixtures("no_system_id")
def test_a_state_without_a_machine_id_records_this_one(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    """A state written before this check knows no machine: no evidence of a copy."""
    base = settings_for(ovs.remote, tmp_path / "state", bridge=unique("vpbr"))
    with running_engine(on(base, machine_id_file=str(tmp_path / "absent"))) as e:
        system_id = e.system_id
    assert recorded(base) == {"system_id": system_id, "machine_id": None}
    here = machine(tmp_path)
    with running_engine(on(base, machine_id_file=here)):
        pass
    assert recorded(base)["machine_id"] == Path(here).read_text().strip()


def test_the_daemon_refuses_to_start_on_a_clone_and_says_why(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    previous = ovs.vsctl("--if-exists", "get", "Open_vSwitch", ".", "external_ids:system-id")
    state_dir = str(tmp_path / "state")
    system_id = str(uuid.uuid4())
    first, clone = machine(tmp_path), machine(tmp_path)
    try:
        host = {"state_dir": state_dir, "system_id": system_id}
        d = daemon_factory({"DEFAULT": {**host, "machine_id_file": first}})
        assert d.stop() == 0
        d = daemon_factory({"DEFAULT": {**host, "machine_id_file": clone}}, wait=False)
        assert d.wait(60) != 0
        log = d.stderr()
        assert "cannot start: The system-id " + system_id in log, log
        assert "allow_cloned_system_id" in log
        d = daemon_factory(
            {"DEFAULT": {**host, "machine_id_file": clone, "allow_cloned_system_id": True}}
        )
        assert f"system-id {system_id} was recorded on machine" in d.stderr()
        with d.client() as c:
            assert c.get("/readyz").status_code == 200
    finally:
        previous = previous.strip().strip('"')
        if previous:
            ovs.vsctl("set", "Open_vSwitch", ".", f"external_ids:system-id={previous}")
