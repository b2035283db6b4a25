#include <string.h>

#include "b58.h"

static const char alphabet[] =
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

static int
digit(unsigned char c)
{
	const char *p;

	if (c == '\0' || (p = strchr(alphabet, c)) == NULL)
		return -1;
	return p - alphabet;
}

size_t
b58_span(const char *s)
{
	return strspn(s, alphabet);
}

int
b58_encode(const unsigned char *in, size_t n, char *out, size_t outcap)
{
	/* base-58 digits, big end first, at the end of d */
	unsigned char d[B58_ENC_SIZE(B58_MAX)];
	size_t zeros, len, i, j, k;
	unsigned int carry;

	if (n > B58_MAX)
		return -1;
	for (zeros = 0; zeros < n && in[zeros] == 0; zeros++)
		;
	len = 0;
	for (i = zeros; i < n; i++) {
		carry = in[i];
		for (j = 0; j < len || carry != 0; j++) {
			k = sizeof(d) - 1 - j;
			if (j < len)
				carry += 256U * d[k];
			d[k] = carry % 58;
			carry /= 58;
		}
		len = j;
	}
	if (zeros + len + 1 > outcap)
		return -1;
	memset(out, '1', zeros);
	for (j = 0; j < len; j++)
		out[zeros + j] = alphabet[d[sizeof(d) - len + j]];
	out[zeros + len] = '\0';
	return zeros + len;
}

int
b58_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outcap, size_t *outlen)
{
	unsigned char b[B58_MAX];	/* bytes, big end first, at the end */
	size_t ones, len, i, j, k;
	unsigned int carry;
	int v;

	*outlen = 0;
	if (inlen == 0 || inlen > B58_MAX)
		return -1;
	for (ones = 0; ones < inlen && in[ones] == '1'; ones++)
		;
	len = 0;
	for (i = ones; i < inlen; i++) {
		if ((v = digit(in[i])) < 0)
			return -1;
		carry = v;
		for (j = 0; j < len || carry != 0; j++) {
			/* B58_MAX digits fill less than 3/4 of b */
			k = sizeof(b) - 1 - j;
			if (j < len)
				carry += 58U * b[k];
			b[k] = carry & 0xff;
			carry >>= 8;
		}
		len = j;
	}
	if (ones + len > outcap)
		return -1;
	memset(out, 0, ones);
	memcpy(out + ones, b + sizeof(b) - len, len);
	*outlen = ones + len;
	return 0;
}
