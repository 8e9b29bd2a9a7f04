-- vifplug state, schema 1: the first released format.
--
-- Never edit this file once released: databases written with it must stay
-- readable, and tests/fixtures/state/make_schema_1.py holds a verbatim copy
-- that a test compares with it.  Change the schema with a new step instead.
--
-- meta holds schema_version (written by the migration runner) and small
-- host facts such as the system-id.  vifs holds one row per VIF: the request
-- as received (os_vif primitives, canonical JSON), the allocation it produced
-- (JSON with its own "format" number) and its lifecycle, which is written
-- before the system is changed ('plugging', 'unplugging') and after
-- ('plugged', or the row deleted), so a restart finds every operation that
-- was in flight.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE vifs (
    vif_id          TEXT PRIMARY KEY NOT NULL,
    lifecycle       TEXT NOT NULL
                    CHECK (lifecycle IN ('plugging', 'plugged', 'unplugging')),
    plugin          TEXT NOT NULL,
    obj_name        TEXT NOT NULL,
    obj_version     TEXT NOT NULL,
    instance_uuid   TEXT NOT NULL,
    instance_name   TEXT NOT NULL,
    iface_id        TEXT,
    iface_status    TEXT,
    mac             TEXT,
    teaming_peer    TEXT,
    request_json    TEXT NOT NULL,
    request_digest  TEXT NOT NULL,
    allocation_json TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
