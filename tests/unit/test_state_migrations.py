"""Schema migrations: every released schema opens in the current daemon, none is lost."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from vifplug import exceptions
from vifplug.records import Bandwidth, Lifecycle, Teaming
from vifplug.state import migrations
from vifplug.state import store as state_store

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "state"


def _load_maker(version: int = 1) -> ModuleType:
    name = f"make_schema_{version}"
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_schema_1 = _load_maker()
make_schema_2 = _load_maker(2)

#: The failover pair of the fixtures: schema 1 and 2 recorded it on the transient member only.
PERSISTENT = "22222222-bbbb-4bbb-8bbb-000000000001"
TRANSIENT = "55555555-eeee-4eee-8eee-000000000001"


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """Open fixtures only through a copy: migrating must not change the committed file."""
    target = tmp_path / "state" / "vifplug.sqlite"
    target.parent.mkdir(mode=0o700)
    shutil.copyfile(FIXTURES / name, target)
    return target


def schema_of(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return {
            name: sql
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
            )
        }
    finally:
        conn.close()


def version_of(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        )
    finally:
        conn.close()


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# --- the steps themselves ------------------------------------------------------------


def test_steps_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in migrations.MIGRATIONS] == list(
        range(1, migrations.SCHEMA_VERSION + 1)
    )
    assert migrations.SCHEMA_VERSION >= 2


def test_released_schema_1_is_unchanged() -> None:
    """The first step is the released DDL, byte for byte, as the fixture script keeps it."""
    shipped = (resources.files("vifplug.state.migrations") / "0001_initial.sql").read_text()
    assert shipped == make_schema_1.V1_DDL
    assert migrations.MIGRATIONS[0].sql == make_schema_1.V1_DDL


def test_every_released_schema_has_a_fixture() -> None:
    """Released = every version before the current one; add its fixture when adding a step."""
    for version in range(1, migrations.SCHEMA_VERSION):
        assert (FIXTURES / f"schema-{version}.sqlite").is_file(), version
        assert (FIXTURES / f"make_schema_{version}.py").is_file(), version


@pytest.mark.parametrize("maker", [make_schema_1, make_schema_2], ids=["schema-1", "schema-2"])
def test_fixture_is_what_its_script_writes(maker: ModuleType, tmp_path: Path) -> None:
    name = "schema-1.sqlite" if maker is make_schema_1 else "schema-2.sqlite"
    fresh = tmp_path / name
    maker.write(str(fresh))
    assert dump(fresh) == dump(FIXTURES / name)


def test_released_schema_2_step_is_unchanged() -> None:
    shipped = (resources.files("vifplug.state.migrations") / "0002_iface_id_index.sql").read_text()
    assert shipped == make_schema_2.V2_STEP


@pytest.mark.parametrize("fixture", ["schema-1.sqlite", "schema-2.sqlite"])
def test_the_teaming_pair_is_recorded_on_both_members_after_the_migration(
    fixture: str, tmp_path: Path
) -> None:
    """Schema 3 gives each member its role, and the persistent member its peer."""
    path = copy_fixture(fixture, tmp_path)
    with state_store.Store(str(path)) as s:
        persistent, transient = s.get(PERSISTENT), s.get(TRANSIENT)
        assert persistent is not None and transient is not None
        assert (persistent.teaming_type, persistent.teaming_peer) == (
            Teaming.PERSISTENT,
            TRANSIENT,
        )
        assert (transient.teaming_type, transient.teaming_peer) == (Teaming.TRANSIENT, PERSISTENT)
        others = [r for r in s.all() if r.vif_id not in (PERSISTENT, TRANSIENT)]
        assert all(r.teaming_type is None and r.teaming_peer is None for r in others)
        # The pair holds: the persistent member is released last.
        with pytest.raises(exceptions.TeamingMemberPlugged):
            s.begin_unplug(PERSISTENT)
        s.begin_unplug(TRANSIENT)
        s.finish_unplug(TRANSIENT)
        persistent = s.get(PERSISTENT)
        assert persistent is not None and persistent.teaming_peer is None


# --- opening old databases -------------------------------------------------------------


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("schema-*.sqlite")))
def test_each_released_fixture_opens_with_every_record(fixture: str, tmp_path: Path) -> None:
    path = copy_fixture(fixture, tmp_path)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT COUNT(*) FROM vifs").fetchone()[0]
    conn.close()
    with state_store.Store(str(path)) as s:
        assert len(s.all()) == rows > 0
    assert version_of(path) == str(migrations.SCHEMA_VERSION)


def test_schema_1_fixture_reads_every_record_through_the_migration(tmp_path: Path) -> None:
    path = copy_fixture("schema-1.sqlite", tmp_path)
    assert version_of(path) == "1"
    assert "vifs_iface_id" not in schema_of(path)
    with state_store.Store(str(path)) as s:
        assert s.meta_get("schema_version") == str(migrations.SCHEMA_VERSION)
        assert s.meta_get("system-id") == "0e4c5d8a-3f1b-4c6e-9a7d-2b8f1e6c4a90"
        records = {r.vif_id: r for r in s.all()}
        assert sorted(records) == sorted(row["vif_id"] for row in make_schema_1.ROWS)

        # Everything the fixture script wrote comes back, field by field.
        for row in make_schema_1.ROWS:
            r = records[row["vif_id"]]
            assert r.lifecycle.value == row["lifecycle"]
            assert (r.plugin, r.obj_name, r.obj_version) == (
                row["plugin"],
                row["obj_name"],
                row["obj_version"],
            )
            assert (r.instance_uuid, r.instance_name) == (
                row["instance_uuid"],
                row["instance_name"],
            )
            # (schema 3 also names the transient member on the persistent one)
            peer = TRANSIENT if row["vif_id"] == PERSISTENT else row["teaming_peer"]
            assert (r.iface_id, r.iface_status, r.mac, r.teaming_peer) == (
                row["iface_id"],
                row["iface_status"],
                row["mac"],
                peer,
            )
            assert r.request_digest == row["request_digest"]
            assert r.request["vif"]["versioned_object.data"]["id"] == row["vif_id"]
            assert (r.created_at, r.updated_at) == (row["created_at"], row["updated_at"])
            assert (r.allocation is None) == (row["allocation_json"] is None)

        ovs = records["11111111-aaaa-4aaa-8aaa-000000000001"]
        assert ovs.lifecycle is Lifecycle.PLUGGED
        assert ovs.allocation is not None
        assert ovs.allocation.created_devices == ("tap11111111-aa",)
        assert ovs.allocation.created_port is True and ovs.allocation.bridge == "br-int"

        direct = records["22222222-bbbb-4bbb-8bbb-000000000001"]
        assert direct.allocation is not None
        assert (
            direct.allocation.network,
            direct.allocation.pool_device,
            direct.allocation.mode,
            direct.allocation.portgroup,
        ) == ("test", "eth10", "vepa", "engineering")
        assert direct.allocation.bandwidth == Bandwidth(
            inbound_average=1000, inbound_burst=2048, outbound_average=500
        )
        assert direct.allocation.virtualport == {
            "type": "802.1Qbg",
            "managerid": 33,
            "typeid": 89,
            "typeidversion": 3,
            "instanceid": None,
        }

        hybrid = records["33333333-cccc-4ccc-8ccc-000000000001"]
        assert hybrid.allocation is not None
        assert hybrid.allocation.created_devices == (
            "qbr33333333-cc",
            "qvb33333333-cc",
            "qvo33333333-cc",
        )

        assert records["44444444-dddd-4ddd-8ddd-000000000001"].allocation is None
        assert records["55555555-eeee-4eee-8eee-000000000001"].teaming_peer == (
            "22222222-bbbb-4bbb-8bbb-000000000001"
        )

        # The indexes are rebuilt from what schema 1 stored.
        assert s.pool_holders("test") == {
            "eth10": ["22222222-bbbb-4bbb-8bbb-000000000001"],
            "eth12": ["22222222-bbbb-4bbb-8bbb-000000000002"],
        }
        assert [r.vif_id for r in s.by_iface_id("5f2c3d4e-0000-4000-8000-00000000aaaa")] == [
            "11111111-aaaa-4aaa-8aaa-000000000001",
            "11111111-aaaa-4aaa-8aaa-000000000002",
        ]
        assert {r.vif_id for r in s.all() if r.lifecycle is not Lifecycle.PLUGGED} == {
            "22222222-bbbb-4bbb-8bbb-000000000002",
            "33333333-cccc-4ccc-8ccc-000000000001",
            "44444444-dddd-4ddd-8ddd-000000000001",
        }

        # And the migrated database keeps working: an interrupted unplug finishes.
        s.finish_unplug("33333333-cccc-4ccc-8ccc-000000000001")
    assert version_of(path) == str(migrations.SCHEMA_VERSION)
    assert "vifs_iface_id" in schema_of(path)
    with state_store.Store(str(path)) as s:
        assert len(s.all()) == len(make_schema_1.ROWS) - 1


def test_migrated_database_has_the_same_schema_as_a_new_one(tmp_path: Path) -> None:
    old = copy_fixture("schema-1.sqlite", tmp_path)
    state_store.Store(str(old)).close()
    new = tmp_path / "new" / "vifplug.sqlite"
    state_store.Store(str(new)).close()
    assert schema_of(old) == schema_of(new)


def test_the_committed_fixture_is_left_alone(tmp_path: Path) -> None:
    before = (FIXTURES / "schema-1.sqlite").read_bytes()
    path = copy_fixture("schema-1.sqlite", tmp_path)
    state_store.Store(str(path)).close()
    assert (FIXTURES / "schema-1.sqlite").read_bytes() == before


# --- refusing what cannot be read safely ---------------------------------------------------


def test_a_schema_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "vifplug.sqlite"
    state_store.Store(str(path)).close()
    newer = migrations.SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(newer),))
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(exceptions.StateSchemaTooNew) as err:
        state_store.Store(str(path))
    assert err.value.code == "state_schema_too_new"
    assert err.value.context["found"] == newer
    assert err.value.context["supported"] == migrations.SCHEMA_VERSION
    assert str(newer) in err.value.message
    assert path.read_bytes() == before  # not even switched to WAL
    # The refusal released the lock: fixing the file makes it usable again.
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(migrations.SCHEMA_VERSION),)
    )
    conn.commit()
    conn.close()
    state_store.Store(str(path)).close()


def test_missing_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vifplug.sqlite"
    state_store.Store(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM meta WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(exceptions.StateUnavailable, match="schema_version"):
        state_store.Store(str(path))


def test_a_failing_step_leaves_the_previous_version_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_fixture("schema-1.sqlite", tmp_path)
    broken = migrations.Migration(
        version=migrations.SCHEMA_VERSION + 1,
        name="broken",
        sql="CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", broken.version)
    with pytest.raises(exceptions.StateUnavailable, match="broken"):
        state_store.Store(str(path))
    # Steps before the broken one stayed; the broken one left no trace.
    assert version_of(path) == str(broken.version - 1)
    assert "half_done" not in schema_of(path)
    monkeypatch.undo()
    with state_store.Store(str(path)) as s:
        assert len(s.all()) == len(make_schema_1.ROWS)
