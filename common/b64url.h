/* base64url without padding (RFC 4648 section 5), strict on input. */
#ifndef NS_B64URL_H
#define NS_B64URL_H

#include <stddef.h>

/* Characters needed for n bytes, not counting the NUL. */
#define B64URL_LEN(n)	((n) / 3 * 4 + ((n) % 3 * 4 + 2) / 3)

/* Encode n bytes into out, which has room for B64URL_LEN(n) + 1 bytes;
 * NUL-terminates and returns B64URL_LEN(n).  Cannot fail. */
size_t b64url_encode(const unsigned char *in, size_t n, char *out);

/* Decode inlen characters (no NUL needed) into out and set *outlen.
 * Returns 0, or -1 if the input is not the canonical unpadded encoding of
 * some bytes ('=' present, a character outside [A-Za-z0-9_-], inlen % 4 ==
 * 1, non-zero trailing bits) or decodes to more than outcap bytes; on -1
 * the contents of out are unspecified and *outlen is 0. */
int b64url_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outcap, size_t *outlen);

#endif
