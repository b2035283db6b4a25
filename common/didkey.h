/* did:key identities for Ed25519 keys:
 * "did:key:z" + base58btc(0xed 0x01 + 32-byte public key), 56 characters. */
#ifndef NS_DIDKEY_H
#define NS_DIDKEY_H

#define DIDKEY_PREFIX	"did:key:"
#define DIDKEY_LEN	56	/* every Ed25519 did:key has this length */
#define DIDKEY_MAX	64	/* buffer size, NUL included, room to spare */

/* Write the DID of public key pk into out, NUL-terminated.  Cannot fail. */
void didkey_encode(const unsigned char pk[32], char out[DIDKEY_MAX]);

/* Parse a bare Ed25519 did:key into pk.  Returns 0, or -1 with *reason
 * set to a string constant saying why (not did:key, empty id, multibase
 * other than 'z', a DID URL suffix, bad base58btc, another key type, wrong
 * length, non-canonical).  The point itself is not validated; signature
 * verification rejects weak keys. */
int didkey_decode(const char *did, unsigned char pk[32], const char **reason);

/* The key id of did, the part after "did:key:" ("z6Mk..."), pointing into
 * did; NULL if did does not start with "did:key:" or nothing follows.
 * Checks nothing else: decode the DID first when it comes from a peer. */
const char *didkey_keyid(const char *did);

#endif
