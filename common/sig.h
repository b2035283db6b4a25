/* Signatures of protocol objects: Ed25519 over the RFC 8785 form of the
 * object without its "sig" member; "sig" is base64url without padding.
 * The signer is the DID in "author", or in "node" when there is no
 * "author" (envelopes and challenges are signed by nodes). */
#ifndef NS_SIG_H
#define NS_SIG_H

#include <jv.h>

#include "buf.h"
#include "key.h"

#define SIG_B64_LEN 86          /* base64url of 64 bytes */

/* Sign obj (borrowed) with k into out (NUL-terminated).  scratch is a
 * caller-owned buffer reused between calls (so threads do not share one).
 * Returns 0, or -1 if obj cannot be canonicalized. */
int sig_sign(jv obj, const struct key *k, struct buf *scratch,
    char out[SIG_B64_LEN + 1]);
/* Return obj (consumed) with "sig" set by k, or jv_invalid_with_msg. */
jv sig_attach(jv obj, const struct key *k);
/* Check obj's (borrowed) signature against its signer.  0 if good;
 * otherwise -1 and *reason, a static phrase. */
int sig_verify(jv obj, struct buf *scratch, const char **reason);
/* The signer field of obj: "author" if present, else "node" (borrowed). */
const char *sig_signer(jv obj);

#endif
