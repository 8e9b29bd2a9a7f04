-- vifplug state, schema 2: index VIFs by iface-id.
--
-- The daemon itself answers every read from memory, but the start-up
-- reconciliation against OVSDB and operators debugging a host
-- (sqlite3 ... "SELECT * FROM vifs WHERE iface_id = ...") look VIFs up by
-- iface-id, which without this index scans the whole table.  Most VIFs
-- carry an iface-id; the partial index leaves out the few that do not.
CREATE INDEX vifs_iface_id ON vifs (iface_id) WHERE iface_id IS NOT NULL;
