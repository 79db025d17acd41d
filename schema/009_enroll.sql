-- 009_enroll: the certificate issued for a request (issue 12), kept so a collector that asks
-- again with the same key (its answer was lost, or a person approved it meanwhile) gets the
-- very same certificate back instead of a second identity. NULL until issued; a request a
-- person approved is signed at the collector's next ask, by `tlsgate enroll serve`, which holds
-- the CA key. Owned by orchestrator/domain/identity.c.
ALTER TABLE enroll_request ADD COLUMN certificate TEXT;
