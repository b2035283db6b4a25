/* base58btc (the Bitcoin alphabet) for short byte strings such as keys.
 * Each leading zero byte is one leading '1'.  The work is quadratic, so
 * both directions take at most B58_MAX bytes or characters. */
#ifndef NS_B58_H
#define NS_B58_H

#include <stddef.h>

#define B58_MAX		256
/* Characters needed for n bytes, NUL included (an upper bound). */
#define B58_ENC_SIZE(n)	((n) * 138 / 100 + 2)

/* Encode n bytes into out (outcap bytes, NUL included) and return the
 * length, or -1 if n > B58_MAX or out is too small. */
int b58_encode(const unsigned char *in, size_t n, char *out, size_t outcap);

/* Decode inlen characters into out and set *outlen.  Returns 0, or -1 if
 * the input is empty, longer than B58_MAX, holds a character outside the
 * alphabet (0, O, I, l, anything not alphanumeric) or decodes to more than
 * outcap bytes; *outlen is 0 then. */
int b58_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outcap, size_t *outlen);

/* The length of the initial run of base58btc characters in s (strspn). */
size_t b58_span(const char *s);

#endif
