/* Signed protocol objects: events (signed by their author) and sequenced
 * envelopes (signed by a space's owner node), their ids and their checks.
 * See share/doc/protocol.md, "Events" and "Envelopes". */
#ifndef NS_EVENT_H
#define NS_EVENT_H

#include <jv.h>

#include "buf.h"
#include "hash.h"

/* Id of a signed object (event id, envelope hash, beam id): base64url of
 * SHA-256 over its RFC 8785 form, sig included.  obj is borrowed.
 * Returns 0, or -1 if obj cannot be canonicalized. */
int event_id(jv obj, struct buf *scratch, char out[HASH_ID_LEN + 1]);

/* Check an author-signed event (borrowed): "type" a string, "author" a
 * did:key, "ts" an integer, "sig" good.  0, or -1 and a static *why. */
int event_verify(jv ev, struct buf *scratch, const char **why);

/* Check an envelope (borrowed): its shape (type "envelope", space, seq >= 1,
 * prev null exactly when seq is 1, node, ts), the node's signature, the
 * event inside and that the event's space, if it names one, is the
 * envelope's.  Does not check that "node" owns the space or the chain:
 * that needs the log.  0, or -1 and a static *why. */
int envelope_verify(jv env, struct buf *scratch, const char **why);

#endif
