/* The protocol's id hash: SHA-256, written as unpadded base64url. */
#ifndef NS_HASH_H
#define NS_HASH_H

#include <stddef.h>

#define HASH_RAW_LEN	32
#define HASH_ID_LEN	43	/* B64URL_LEN(HASH_RAW_LEN) */

/* SHA-256 of n bytes at p, as 43 base64url characters plus a NUL.
 * Cannot fail. */
void hash_id(const void *p, size_t n, char out[HASH_ID_LEN + 1]);

/* SHA-256 of n bytes at p.  Cannot fail. */
void hash_raw(const void *p, size_t n, unsigned char out[HASH_RAW_LEN]);

#endif
