-- vifplug state, schema 3: which member of a failover (teaming) pair a VIF is.
--
-- Schema 1 kept only teaming_peer, which the transient member set to its
-- persistent member's id.  The daemon now also records each member's role,
-- so that a transient member is refused unless its peer was plugged as the
-- persistent one, and shows the peer on both members: the persistent
-- member's teaming_peer names its transient member while that is recorded.
-- Rows written by schema 1 get both from what the transient rows said.
ALTER TABLE vifs ADD COLUMN teaming_type TEXT
    CHECK (teaming_type IS NULL OR teaming_type IN ('persistent', 'transient'));

UPDATE vifs SET teaming_type = 'transient' WHERE teaming_peer IS NOT NULL;

UPDATE vifs
   SET teaming_type = 'persistent',
       teaming_peer = (SELECT t.vif_id FROM vifs AS t
                        WHERE t.teaming_peer = vifs.vif_id
                        ORDER BY t.created_at, t.vif_id LIMIT 1)
 WHERE teaming_type IS NULL
   AND vif_id IN (SELECT teaming_peer FROM vifs WHERE teaming_peer IS NOT NULL);
