#include <sodium.h>

#include "b64url.h"
#include "hash.h"

_Static_assert(HASH_RAW_LEN == crypto_hash_sha256_BYTES, "sha256 size");
_Static_assert(HASH_ID_LEN == B64URL_LEN(HASH_RAW_LEN), "id length");

void
hash_raw(const void *p, size_t n, unsigned char out[HASH_RAW_LEN])
{
	crypto_hash_sha256(out, p, n);
}

void
hash_id(const void *p, size_t n, char out[HASH_ID_LEN + 1])
{
	unsigned char h[HASH_RAW_LEN];

	hash_raw(p, n, h);
	b64url_encode(h, sizeof(h), out);
}
