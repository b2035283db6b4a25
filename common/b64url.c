#include <sodium.h>

#include "b64url.h"

#define VARIANT	sodium_base64_VARIANT_URLSAFE_NO_PADDING

size_t
b64url_encode(const unsigned char *in, size_t n, char *out)
{
	/* sodium_base64_ENCODED_LEN(n, VARIANT) == B64URL_LEN(n) + 1 */
	sodium_bin2base64(out, B64URL_LEN(n) + 1, in, n, VARIANT);
	return B64URL_LEN(n);
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
