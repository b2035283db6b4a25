/* Signed protocol objects: events (signed by their author) and sequenced
 * envelopes (signed by a space's owner node), their ids and their checks.
 * See share/doc/protocol.md, "Events" and "Envelopes". */
#ifndef NS_EVENT_H
#define NS_EVENT_H

#include <jv.h>

#include "buf.h"
#include "hash.h"

/* What the checks below return besides 0: the object is malformed (the
 * protocol's bad_event), or it is well formed and its signature is not
 * good (bad_sig: missing or malformed sig, a signer DID that does not
 * decode, a signature that does not verify).  A caller that only needs
 * yes or no tests for != 0. */
#define EVENT_MALFORMED	(-1)
#define EVENT_BAD_SIG	(-2)

/* Id of a signed object (event id, envelope hash, beam id): base64url of
 * SHA-256 over its RFC 8785 form, sig included.  obj is borrowed.
 * Returns 0, or -1 if obj cannot be canonicalized. */
int event_id(jv obj, struct buf *scratch, char out[HASH_ID_LEN + 1]);

/* The shape of an author-signed event (borrowed), without crypto: an
 * object, "type" a string, "author" a string starting "did:key:", "ts" an
 * integer from 0 to 2^53 - 1.  0, or EVENT_MALFORMED and a static *why. */
int event_check(jv ev, const char **why);
/* event_check, then the author's signature.  0, EVENT_MALFORMED or
 * EVENT_BAD_SIG, with a static *why. */
int event_verify(jv ev, struct buf *scratch, const char **why);

/* Check an envelope (borrowed): first its shape (type "envelope", space,
 * seq >= 1, prev null exactly when seq is 1, node, ts), the shape of the
 * event inside and that the event's space, if it names one, is the
 * envelope's; then the node's signature and the author's.  Does not check
 * that "node" owns the space or the chain: that needs the log.  0,
 * EVENT_MALFORMED or EVENT_BAD_SIG, with a static *why. */
int envelope_verify(jv env, struct buf *scratch, const char **why);

#endif
