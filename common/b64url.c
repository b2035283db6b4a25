#include <sodium.h>

#include "b64url.h"

#define VARIANT	sodium_base64_VARIANT_URLSAFE_NO_PADDING

/*
 * A table lookup, not libsodium's constant-time encoder: everything encoded
 * here is public (hashes, signatures, public keys, a login nonce sent in
 * the clear), and ns-log encodes four values for every event it takes.
 */
size_t
b64url_encode(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	char *o = out;
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16 |
		    (unsigned long)in[i + 1] << 8 | in[i + 2];

		*o++ = abc[v >> 18];
		*o++ = abc[v >> 12 & 63];
		*o++ = abc[v >> 6 & 63];
		*o++ = abc[v & 63];
	}
	if (n - i == 1) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[(in[i] & 3) << 4];
	} else if (n - i == 2) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[(in[i] & 3) << 4 | in[i + 1] >> 4];
		*o++ = abc[(in[i + 1] & 15) << 2];
	}
	*o = '\0';
	return (size_t)(o - out);
}

/*
 * libsodium's decoder, with no ignore set and no end pointer, already
 * refuses everything the contract lists: '=' is outside the unpadded
 * alphabet, a lone final character leaves 6 bits, set trailing bits are
 * checked, and an overlong result fails.  The length test below only
 * spares it the work.
 */
int
b64url_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outcap, size_t *outlen)
{
	size_t n = 0;

	*outlen = 0;
	if (inlen % 4 == 1 || inlen / 4 * 3 + (inlen % 4 * 3) / 4 > outcap)
		return -1;
	if (sodium_base642bin(out, outcap, in, inlen, NULL, &n, NULL,
	    VARIANT) != 0)
		return -1;
	*outlen = n;
	return 0;
}
