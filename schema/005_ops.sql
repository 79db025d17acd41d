-- 005_ops: what the daemon learns about a collector's certificate (issue 14, "why is this host
-- unknown"). cert_not_after: the notAfter (epoch seconds) of the certificate the collector
-- presented at the last handshake that got that far, kept across pulls that reuse a connection;
-- NULL until one was seen. Written by orchestrator/pull/writer.c, read by domain/pollstatus.c.
ALTER TABLE poll ADD COLUMN cert_not_after INTEGER;
