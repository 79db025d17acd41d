-- 008_identity: collector identities (issue 12) — enrollment secrets, certificate requests, the
-- certificates each host is known by, and what the puller last saw. Owned by
-- orchestrator/domain/identity.c (secrets, requests, issued identities, revocation) and
-- orchestrator/pull/writer.c (identities first seen at a pull, the poll columns below).
-- Times are epoch seconds (UTC). Fingerprints and key hashes are lower-case hex SHA-256.
-- Identities and requests name their host (as in the inventory, compared case-insensitively)
-- instead of pointing at host(id): a revocation outlives the host's removal and re-import.

-- One current enrollment secret per site; only a salted SHA-256 of it is kept. Rotation retires
-- the current row (retired_at) and adds a new one; a retired secret is refused.
CREATE TABLE IF NOT EXISTS enroll_secret (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL COLLATE NOCASE,
    salt        TEXT NOT NULL,              -- hex of 16 random bytes
    hash        TEXT NOT NULL,              -- hex SHA-256(salt bytes || secret bytes)
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    retired_at  INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS enroll_secret_current ON enroll_secret (site)
    WHERE retired_at IS NULL;

-- Every certificate request received: 'enroll' (with a site secret) or 'renew' (over mutual TLS
-- with a current identity). spki: SHA-256 of the request's SubjectPublicKeyInfo (DER); a
-- collector that asks again with the same key finds its request instead of adding one.
CREATE TABLE IF NOT EXISTS enroll_request (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL COLLATE NOCASE,
    site        TEXT NOT NULL COLLATE NOCASE,
    kind        TEXT NOT NULL CHECK (kind IN ('enroll', 'renew')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'issued', 'denied')),
    spki        TEXT NOT NULL,
    csr         TEXT NOT NULL,              -- PEM, as received
    peer        TEXT NOT NULL,              -- the address it came from
    created_at  INTEGER NOT NULL,
    decided_at  INTEGER,
    decided_by  TEXT,                       -- a person (approve/deny) or 'policy'
    reason      TEXT
);
CREATE INDEX IF NOT EXISTS enroll_request_by_name ON enroll_request (name, spki);
CREATE INDEX IF NOT EXISTS enroll_request_by_state ON enroll_request (state, created_at);

-- The certificates a host is known by: issued here ('enroll') or first seen at a pull, from the
-- estate's own PKI ('seen'). A revoked one is refused by the puller at the next pull, and by
-- renewal. A name that has ever had an identity enrolls again only with a person's approval.
CREATE TABLE IF NOT EXISTS identity (
    fingerprint TEXT PRIMARY KEY,           -- SHA-256 of the certificate's DER
    name        TEXT NOT NULL COLLATE NOCASE,
    source      TEXT NOT NULL CHECK (source IN ('enroll', 'seen')),
    serial      TEXT NOT NULL,              -- hex
    issuer      TEXT NOT NULL,              -- the issuer's DN (RFC 4514)
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,           -- issued at, for 'enroll'
    request_id  INTEGER REFERENCES enroll_request(id),
    revoked_at  INTEGER,
    revoked_by  TEXT,
    revoke_reason TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_by_name ON identity (name, not_after);

-- What the puller saw at the last handshake with each host's collector (beside cert_not_after):
-- the certificate's fingerprint and issuer; cert_changed_at is set when a certificate other than
-- the previous one arrived not through enrollment, until a person accepts it
-- (`tlsgate enroll accept`); expiry_warned_at: the daemon's once-a-day expiry warning.
ALTER TABLE poll ADD COLUMN cert_fingerprint TEXT;
ALTER TABLE poll ADD COLUMN cert_issuer TEXT;
ALTER TABLE poll ADD COLUMN cert_changed_at INTEGER;
ALTER TABLE poll ADD COLUMN expiry_warned_at INTEGER;
