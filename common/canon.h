/* The bytes that get signed: a strict JSON parser and the RFC 8785 (JCS)
 * canonical form.  Nothing else in the tree serializes JSON for signing. */
#ifndef NS_CANON_H
#define NS_CANON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jv.h>

#include "buf.h"

#define CANON_DEPTH_MAX 64	/* nesting depth refused beyond this */

/* Strict RFC 8259 / I-JSON parse of exactly one JSON value in buf[0..len),
 * whitespace around it allowed.  Rejects invalid UTF-8 (overlong forms,
 * encoded surrogates, > U+10FFFF), lone or mismatched \u surrogates, raw
 * control characters and NUL bytes, duplicate member names (compared after
 * unescaping), non-JSON numbers (01, +1, .5, 1., NaN, Infinity), numbers
 * that overflow (1e400), and nesting deeper than CANON_DEPTH_MAX.
 * Returns the value (owned by the caller), or jv_invalid_with_msg() whose
 * message is a short lower-case reason ending in "at byte N", N counting
 * from 0 at buf; a reason quotes at most ~40 bytes of the input. */
jv canon_parse(const char *buf, size_t len);

/* Append the RFC 8785 canonical form of v (borrowed) to out.  If skip is
 * not NULL and v is an object, its top-level member named skip is left out
 * (an object "without its sig").  Returns 0, or -1 if v holds something
 * JCS cannot represent (NaN or infinite number, an invalid jv, a string
 * that is not UTF-8) or that canon_parse would refuse (nesting deeper than
 * CANON_DEPTH_MAX); out's contents are then unspecified. */
int canon_dump(jv v, const char *skip, struct buf *out);

/* canon_dump(v, NULL, ...) into a new string (v borrowed).  Returns NULL
 * on error; the caller frees the result with free(). */
char *canon_string(jv v);

/* How many of s[0..n) lead as plain string bytes: 0x20-0x7f but '"' and
 * '\\', which a string takes as they are.  Eight at a time: most of a
 * line is such bytes (a beam's body, a signature, a DID), and the JSON
 * scanners of every stage pass over each line. */
static inline size_t
canon_plain_run(const unsigned char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t x, q, b;

		memcpy(&x, s + i, 8);
		q = x ^ (ones * '"');
		b = x ^ (ones * '\\');
		/* a byte < 0x20, >= 0x80, == '"' or == '\\' */
		if (((x - ones * 0x20) | x | ((q - ones) & ~q) |
		    ((b - ones) & ~b)) & high)
			break;
	}
	while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' &&
	    s[i] != '\\')
		i++;
	return i;
}

#endif
