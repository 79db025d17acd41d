/*
 * identity: the owner of enrollment's tables (schema/008_identity.sql, 009_enroll.sql): the
 * sites' enrollment secrets, the certificate requests, the identities issued here, and
 * revocation. The HTTPS side (enroll/enroll.c) asks identity_ask what to answer; the commands
 * (cli/enrollcmd.c) call the rest.
 *
 * THE POLICY (fail closed; the threat model is in README.md, "Enrollment"):
 *   - a site's secret admits only the FIRST enrollment of an inventory name of that site that
 *     has never had an identity (no identity row, no issued request): issued at once;
 *   - any other request for a name of the inventory (the name had an identity, was revoked,
 *     or another key got there first) waits for a person (`tlsgate enroll approve ID`);
 *   - a wrong or retired secret, a name outside the inventory or of another site: refused;
 *     before the secret is verified the answer does not say whether the name exists;
 *   - asking again with the same key finds the same request: pending stays pending, an
 *     issued one gets the same certificate again (unless revoked), a denied one is refused;
 *   - renewal: the client certificate must be an 'enroll' identity of this orchestrator, not
 *     revoked and not expired, and the request must name the same host.
 * Each ask is one BEGIN IMMEDIATE transaction with its audit row: the request row, the signed
 * identity and the audit row are all stored, or none is (a busy store: -EBUSY, nothing).
 *
 * Functions return 0 or -errno with the message on the store (store.h, HOW ERRORS TRAVEL).
 */
#ifndef TLSGATE_IDENTITY_H
#define TLSGATE_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

struct store;

/* A new secret: 24 random bytes in hex. */
#define IDENTITY_SECRET_BYTES 24
#define IDENTITY_SECRET_TEXT (2 * IDENTITY_SECRET_BYTES + 1)
/* A reason (deny, revoke) is at most this many bytes. */
#define IDENTITY_REASON_MAX 512
/* The answer's message for the client, with its NUL. */
#define IDENTITY_WHY_MAX 256

/*
 * `enroll secret --site S`: a new random secret for site S (which must exist: -ENOENT),
 * retiring the current one. Only a salted SHA-256 is stored; `secret` gets the text, the one
 * time it exists. *rotated: a previous secret was retired. Call inside a write transaction.
 */
int identity_secret_rotate(struct store *s, const char *site, long long now, const char *by,
                           char secret[IDENTITY_SECRET_TEXT], bool *rotated);

/* What the signer (enroll.c, holding the CA) hands back. */
struct identity_issued {
    char *pem; /* malloc'd by the signer; freed by identity_ask */
    char fingerprint[65];
    char serial[41];
    char issuer[512];
    long long not_before, not_after;
};
/* Signs a certificate for `name` with the key of the request being answered. 0 or -errno
 * (the message is the signer's; the ask then fails with -EIO and nothing is stored). */
typedef int (*identity_sign_fn)(void *arg, const char *name, struct identity_issued *out);

struct identity_ask {
    bool renew;            /* false: POST /v1/enroll; true: POST /v1/renew */
    const char *name;      /* enroll: the requested name; renew: the CSR's CN */
    const char *site;      /* enroll only */
    const char *secret;    /* enroll only */
    const char *presented; /* renew only: SHA-256 (hex) of the client certificate's DER */
    const char *spki;      /* SHA-256 (hex) of the request's public key */
    const char *csr;       /* the request, PEM as received */
    const char *peer;      /* the client's address */
    long long now;
    long pending_max; /* a new pending request beyond this many: IDENTITY_FULL */
};

enum identity_outcome {
    IDENTITY_ISSUED,  /* 200: certificate set */
    IDENTITY_PENDING, /* 202: request set; a person decides */
    IDENTITY_REFUSED, /* 403: why set */
    IDENTITY_FULL,    /* too many requests wait already: retry later */
};

struct identity_answer {
    enum identity_outcome outcome;
    long long request;
    char *certificate; /* malloc'd PEM when issued */
    long long not_after;
    char why[IDENTITY_WHY_MAX];
};

/* Answers one request under THE POLICY above, with its audit row, in one transaction of its
 * own. 0 and *ans (release it), or -EBUSY (the store is busy: nothing stored, retry) / -EIO. */
int identity_ask(struct store *s, const struct identity_ask *ask, identity_sign_fn sign, void *arg,
                 struct identity_answer *ans);
void identity_answer_release(struct identity_answer *a);

/* One audit row for a request refused before identity_ask (malformed, too big, rate limited):
 * user "enroll:PEER", command `what`, outcome "refused: WHY". Its own transaction. */
int identity_audit_refusal(struct store *s, long long now, const char *peer, const char *what,
                           const char *why);

/* How long the serve's store waits for another writer before an ask fails -EBUSY (503). */
void identity_set_busy_timeout(struct store *s, int ms);

/* A person's decision on pending request `id`: approve (signed at the collector's next ask)
 * or deny. -ENOENT no such request, -EALREADY decided already (message names its state).
 * Call inside a write transaction (with the command's audit row). */
int identity_approve(struct store *s, long long id, long long now, const char *by, char name[256]);
int identity_deny(struct store *s, long long id, long long now, const char *by, const char *reason,
                  char name[256]);

/* `enroll revoke HOST`: revokes every identity of `name` (issued or seen) not revoked yet and
 * denies its undecided and undelivered requests. *identities / *requests: how many. -ENOENT
 * when the name has no identity and no request at all. Inside a write transaction. */
int identity_revoke(struct store *s, const char *name, long long now, const char *by,
                    const char *reason, int *identities, int *requests);

/* A row of `enroll list`. Strings are borrowed for the callback only; NULL when unknown. */
struct identity_row {
    const char *name, *site, *source, *fingerprint, *serial, *issuer;
    long long not_before, not_after, revoked_at; /* 0: unknown / not revoked */
    const char *revoked_by, *reason;
};
/*
 * Every identity (name order), of hosts of `site` when set. With `expiring` (a window in
 * seconds from `now`): only what expires by now+window, revoked ones left out: each name's
 * latest enrolled identity, and the certificate the puller last saw (source "pull") for hosts
 * without an enrolled one. fn's non-zero return stops the walk and is returned.
 */
int identity_each(struct store *s, const char *site, long long expiring, long long now,
                  int (*fn)(const struct identity_row *row, void *arg), void *arg);

/* A request waiting for a person. */
struct identity_pending {
    long long id, created_at;
    const char *name, *site, *kind, *peer, *spki;
};
int identity_pending_each(struct store *s, int (*fn)(const struct identity_pending *row, void *arg),
                          void *arg);

#endif
