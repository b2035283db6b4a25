/* Strict JSON in, RFC 8785 (JSON Canonicalization Scheme) out.
 *
 * Every signature in the system is over the bytes canon_dump() writes, so
 * an independent JCS implementation must reproduce them exactly: members
 * sorted by UTF-16 code units, minimal string escaping, and numbers as
 * ECMAScript's Number.prototype.toString prints them. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "msg.h"

#define EXCERPT_MAX	32	/* input bytes quoted in a reason */
#define NUM_MAX		32	/* longest number text, with its NUL */
#define MEMBERS_STACK	16	/* object members sorted without malloc */

struct parser {
	const unsigned char *s;
	size_t len, pos;
	int depth;
	struct buf tmp;		/* unescaped string being built */
	char err[256];		/* first reason; later ones are dropped */
};

static const char hexdig[] = "0123456789abcdef";

static const double pow10tab[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static jv parse_value(struct parser *);

/* Length of the valid UTF-8 sequence at s[0..n), n > 0, or 0 if it is not
 * one: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	int ok;

#define CONT(b)	(((b) & 0xc0) == 0x80)
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		return n >= 2 && CONT(s[1]) ? 2 : 0;
	if (c < 0xf0) {
		if (n < 3 || !CONT(s[2]))
			return 0;
		if (c == 0xe0)
			ok = s[1] >= 0xa0 && s[1] <= 0xbf;
		else if (c == 0xed)
			ok = s[1] >= 0x80 && s[1] <= 0x9f;
		else
			ok = CONT(s[1]);
		return ok ? 3 : 0;
	}
	if (c < 0xf5) {
		if (n < 4 || !CONT(s[2]) || !CONT(s[3]))
			return 0;
		if (c == 0xf0)
			ok = s[1] >= 0x90 && s[1] <= 0xbf;
		else if (c == 0xf4)
			ok = s[1] >= 0x80 && s[1] <= 0x8f;
		else
			ok = CONT(s[1]);
		return ok ? 4 : 0;
	}
	return 0;
#undef CONT
}

static int
is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

/* Characters that run on from a number or literal: "1x", "01", "truex". */
static int
is_word(unsigned c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    c == '+' || c == '-' || c == '.' || c == '_';
}

/* Write s[0..n) into dst as a double-quoted excerpt of at most EXCERPT_MAX
 * input bytes, control bytes and invalid UTF-8 as \xHH, and "..." after
 * it if cut short.  dst holds at least 4 * EXCERPT_MAX + 8 bytes. */
static void
excerpt(char *dst, const unsigned char *s, size_t n)
{
	size_t i = 0, l;
	char *d = dst;

	*d++ = '"';
	while (i < n) {
		if (s[i] >= 0x80) {
			l = utf8_len(s + i, n - i);
			if (l > 0 && i + l <= EXCERPT_MAX) {
				memcpy(d, s + i, l);
				d += l;
				i += l;
				continue;
			}
			if (l > 0 || i >= EXCERPT_MAX)
				break;
		} else if (i >= EXCERPT_MAX)
			break;
		if (s[i] == '"' || s[i] == '\\') {
			*d++ = '\\';
			*d++ = (char)s[i];
		} else if (s[i] < 0x20 || s[i] >= 0x7f) {
			*d++ = '\\';
			*d++ = 'x';
			*d++ = hexdig[s[i] >> 4];
			*d++ = hexdig[s[i] & 15];
		} else
			*d++ = (char)s[i];
		i++;
	}
	*d++ = '"';
	if (i < n) {
		memcpy(d, "...", 3);
		d += 3;
	}
	*d = '\0';
}

/* Record the first reason, "... at byte N", and return jv_invalid(). */
static jv __attribute__((format(printf, 3, 4)))
fail(struct parser *p, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->err[0] != '\0')
		return jv_invalid();
	va_start(ap, fmt);
	n = vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(p->err))
		snprintf(p->err + n, sizeof(p->err) - (size_t)n, " at byte %zu",
		    at);
	return jv_invalid();
}

/* A malformed number or bare word starting at start: quote the token. */
static jv
fail_token(struct parser *p, size_t start, const char *what)
{
	char q[4 * EXCERPT_MAX + 8];
	size_t end = start;

	while (end < p->len && end - start <= EXCERPT_MAX && is_word(p->s[end]))
		end++;
	if (end == start)
		end++;
	excerpt(q, p->s + start, end - start);
	return fail(p, start, "%s %s", what, q);
}

/* Something other than what the grammar wants at p->pos. */
static jv
fail_expect(struct parser *p, const char *want)
{
	unsigned c;

	if (p->pos >= p->len)
		return fail(p, p->pos, "unexpected end of input");
	c = p->s[p->pos];
	if (c == '\0')
		return fail(p, p->pos, "NUL byte");
	if (c > 0x20 && c < 0x7f)
		return fail(p, p->pos, "expected %s, found '%c'", want, c);
	return fail(p, p->pos, "expected %s, found byte 0x%02x", want, c);
}

static void
skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' ||
	    p->s[p->pos] == '\n' || p->s[p->pos] == '\r' ||
	    p->s[p->pos] == '\t'))
		p->pos++;
}

static int
hex4(const unsigned char *s, size_t n)
{
	int v = 0;
	size_t i;

	if (n < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (is_digit(s[i]))
			v |= s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			v |= s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			v |= s[i] - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void
add_utf8(struct buf *b, unsigned long cp)
{
	char u[4];

	if (cp < 0x80) {
		buf_addc(b, (char)cp);
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 3);
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 4);
	}
}

/* A \ escape at s[i]; appends its character to p->tmp and returns the
 * number of input bytes it took, or 0 after fail(). */
static size_t
parse_escape(struct parser *p, size_t i)
{
	const unsigned char *s = p->s;
	static const char plain[] = "\"\\/bfnrt";
	static const char value[] = "\"\\/\b\f\n\r\t";
	const char *e;
	int hi, lo;

	if (i + 1 >= p->len) {
		fail(p, p->len, "unexpected end of input");
		return 0;
	}
	if (s[i + 1] != 'u') {
		if (s[i + 1] != '\0' && (e = strchr(plain, s[i + 1])) != NULL) {
			buf_addc(&p->tmp, value[e - plain]);
			return 2;
		}
		if (s[i + 1] > 0x20 && s[i + 1] < 0x7f)
			fail(p, i, "invalid escape \\%c", s[i + 1]);
		else
			fail(p, i, "invalid escape \\ followed by byte 0x%02x",
			    s[i + 1]);
		return 0;
	}
	if ((hi = hex4(s + i + 2, p->len - i - 2)) < 0) {
		fail(p, i, "invalid \\u escape");
		return 0;
	}
	if (hi < 0xd800 || hi > 0xdfff) {
		add_utf8(&p->tmp, (unsigned long)hi);
		return 6;
	}
	if (hi <= 0xdbff && i + 12 <= p->len && s[i + 6] == '\\' &&
	    s[i + 7] == 'u' && (lo = hex4(s + i + 8, 4)) >= 0xdc00 &&
	    lo <= 0xdfff) {
		add_utf8(&p->tmp, 0x10000 + (((unsigned long)hi - 0xd800) << 10) +
		    ((unsigned long)lo - 0xdc00));
		return 12;
	}
	fail(p, i, "lone surrogate \\u%04x", (unsigned)hi);
	return 0;
}

/* A string at p->pos (its opening quote). */
static jv
parse_string(struct parser *p)
{
	const unsigned char *s = p->s;
	size_t start = p->pos, i = start + 1, j, l;
	unsigned c;

	/* Most strings are plain ASCII: take them straight from the input. */
	i += canon_plain_run(s + i, p->len - i);
	if (i < p->len && s[i] == '"') {
		if (i - start - 1 > INT_MAX)
			return fail(p, start, "string too long");
		p->pos = i + 1;
		return jv_string_sized((const char *)s + start + 1,
		    (int)(i - start - 1));
	}
	buf_reset(&p->tmp);
	buf_add(&p->tmp, s + start + 1, i - start - 1);
	for (;;) {
		if (i >= p->len)
			return fail(p, p->len, "unexpected end of input in string"
			    " started at byte %zu", start);
		c = s[i];
		if (c == '"')
			break;
		if (c == '\\') {
			if ((l = parse_escape(p, i)) == 0)
				return jv_invalid();
			i += l;
		} else if (c == '\0') {
			return fail(p, i, "NUL byte in string");
		} else if (c < 0x20) {
			return fail(p, i, "raw control character 0x%02x in string",
			    c);
		} else if (c < 0x80) {
			j = i + 1 + canon_plain_run(s + i + 1, p->len - i - 1);
			buf_add(&p->tmp, s + i, j - i);
			i = j;
		} else {
			if ((l = utf8_len(s + i, p->len - i)) == 0)
				return fail(p, i, "invalid UTF-8");
			buf_add(&p->tmp, s + i, l);
			i += l;
		}
	}
	if (p->tmp.len > INT_MAX)
		return fail(p, start, "string too long");
	p->pos = i + 1;
	return jv_string_sized(p->tmp.p, (int)p->tmp.len);
}

/* digits: all mantissa digits (leading zeros allowed), ndig of them, the
 * value being digits * 10^e10.  Returns the nearest double. */
static double
decimal_to_double(const unsigned char *int_part, size_t nint,
    const unsigned char *frac, size_t nfrac, long long e10)
{
	char small[128], *t = small;
	size_t k = 0, need = nint + nfrac + 24, sig = 0, i;
	uint64_t m = 0;
	double d;

	for (i = 0; i < nint; i++)
		if (sig > 0 || int_part[i] != '0')
			sig++;
	for (i = 0; i < nfrac; i++)
		if (sig > 0 || frac[i] != '0')
			sig++;
#if FLT_EVAL_METHOD == 0
	/* Exact: m < 10^15 < 2^53 and 10^|e| <= 10^22 are both doubles, so
	 * one multiply or divide rounds once, correctly (Clinger). */
	if (sig <= 15 && e10 >= -22 && e10 <= 22) {
		for (i = 0; i < nint; i++)
			m = m * 10 + (int_part[i] - '0');
		for (i = 0; i < nfrac; i++)
			m = m * 10 + (frac[i] - '0');
		d = (double)m;
		return e10 < 0 ? d / pow10tab[-e10] : d * pow10tab[e10];
	}
#endif
	/* Written without a decimal point so the locale cannot matter. */
	if (need > sizeof(small))
		t = xmalloc(need);
	memcpy(t, int_part, nint);
	memcpy(t + nint, frac, nfrac);
	k = nint + nfrac;
	snprintf(t + k, need - k, "e%lld", e10);
	d = strtod(t, NULL);
	if (t != small)
		free(t);
	return d;
}

static jv
parse_number(struct parser *p)
{
	const unsigned char *s = p->s;
	size_t start = p->pos, i = start, ib, ie, fb = 0, nfrac = 0;
	long long e = 0;
	int neg = 0, eneg = 0;
	double d;

	if (s[i] == '-') {
		neg = 1;
		i++;
	}
	ib = i;
	if (i >= p->len || !is_digit(s[i]))
		return fail_token(p, start, "invalid number");
	if (s[i] == '0')
		i++;
	else
		while (i < p->len && is_digit(s[i]))
			i++;
	ie = i;
	if (i < p->len && s[i] == '.') {
		fb = ++i;
		while (i < p->len && is_digit(s[i]))
			i++;
		if ((nfrac = i - fb) == 0)
			return fail_token(p, start, "invalid number");
	}
	if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < p->len && (s[i] == '+' || s[i] == '-'))
			eneg = s[i++] == '-';
		if (i >= p->len || !is_digit(s[i]))
			return fail_token(p, start, "invalid number");
		for (; i < p->len && is_digit(s[i]); i++)
			if (e < 1000000000000000LL)
				e = e * 10 + (s[i] - '0');
	}
	if (i < p->len && is_word(s[i]))
		return fail_token(p, start, "invalid number");
	if (nfrac == 0 && e == 0 && ie - ib <= 15) {
		uint64_t m = 0;
		size_t k;

		for (k = ib; k < ie; k++)
			m = m * 10 + (s[k] - '0');
		d = (double)m;
	} else {
		d = decimal_to_double(s + ib, ie - ib, s + fb, nfrac,
		    (eneg ? -e : e) - (long long)nfrac);
	}
	if (isinf(d))
		return fail_token(p, start, "number out of range");
	p->pos = i;
	return jv_number(neg ? -d : d);
}

/* true, false, null; anything else spelled with letters is refused. */
static jv
parse_word(struct parser *p)
{
	static const struct {
		const char *w;
		size_t n;
		jv_kind k;
	} words[] = {
		{ "true", 4, JV_KIND_TRUE },
		{ "false", 5, JV_KIND_FALSE },
		{ "null", 4, JV_KIND_NULL },
	};
	size_t i, n = p->len - p->pos;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (n < words[i].n ||
		    memcmp(p->s + p->pos, words[i].w, words[i].n) != 0)
			continue;
		if (n > words[i].n && is_word(p->s[p->pos + words[i].n]))
			break;
		p->pos += words[i].n;
		switch (words[i].k) {
		case JV_KIND_TRUE:
			return jv_true();
		case JV_KIND_FALSE:
			return jv_false();
		default:
			return jv_null();
		}
	}
	return fail_token(p, p->pos, "invalid literal");
}

static jv
parse_array(struct parser *p)
{
	jv arr, v;

	if (++p->depth > CANON_DEPTH_MAX)
		return fail(p, p->pos, "nesting deeper than %d", CANON_DEPTH_MAX);
	arr = jv_array();
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']') {
		p->pos++;
		goto done;
	}
	for (;;) {
		v = parse_value(p);
		if (!jv_is_valid(v))
			goto bad;
		arr = jv_array_append(arr, v);
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == ']') {
			p->pos++;
			break;
		}
		fail_expect(p, "',' or ']'");
		goto bad;
	}
done:
	p->depth--;
	return arr;
bad:
	jv_free(arr);
	return jv_invalid();
}

static jv
parse_object(struct parser *p)
{
	char q[4 * EXCERPT_MAX + 8];
	jv obj, key, v;
	size_t at;

	if (++p->depth > CANON_DEPTH_MAX)
		return fail(p, p->pos, "nesting deeper than %d", CANON_DEPTH_MAX);
	obj = jv_object();
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		goto done;
	}
	for (;;) {
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != '"') {
			fail_expect(p, "member name");
			goto bad;
		}
		at = p->pos;
		key = parse_string(p);
		if (!jv_is_valid(key))
			goto bad;
		if (jv_object_has(jv_copy(obj), jv_copy(key))) {
			excerpt(q, (const unsigned char *)jv_string_value(key),
			    (size_t)jv_string_length_bytes(jv_copy(key)));
			fail(p, at, "duplicate key %s", q);
			jv_free(key);
			goto bad;
		}
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != ':') {
			fail_expect(p, "':'");
			jv_free(key);
			goto bad;
		}
		p->pos++;
		v = parse_value(p);
		if (!jv_is_valid(v)) {
			jv_free(key);
			goto bad;
		}
		obj = jv_object_set(obj, key, v);
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == '}') {
			p->pos++;
			break;
		}
		fail_expect(p, "',' or '}'");
		goto bad;
	}
done:
	p->depth--;
	return obj;
bad:
	jv_free(obj);
	return jv_invalid();
}

static jv
parse_value(struct parser *p)
{
	unsigned c;

	skip_ws(p);
	if (p->pos >= p->len)
		return fail(p, p->pos, "unexpected end of input");
	c = p->s[p->pos];
	switch (c) {
	case '{':
		return parse_object(p);
	case '[':
		return parse_array(p);
	case '"':
		return parse_string(p);
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return parse_number(p);
	case '+': case '.':
		return fail_token(p, p->pos, "invalid number");
	case '\0':
		return fail(p, p->pos, "NUL byte");
	}
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return parse_word(p);
	if (c > 0x20 && c < 0x7f)
		return fail(p, p->pos, "unexpected character '%c'", c);
	if (c >= 0x80 && utf8_len(p->s + p->pos, p->len - p->pos) == 0)
		return fail(p, p->pos, "invalid UTF-8");
	return fail(p, p->pos, "unexpected byte 0x%02x", c);
}

jv
canon_parse(const char *buf, size_t len)
{
	struct parser p;
	jv v;

	memset(&p, 0, sizeof(p));
	p.s = (const unsigned char *)buf;
	p.len = len;
	v = parse_value(&p);
	if (jv_is_valid(v)) {
		skip_ws(&p);
		if (p.pos < p.len) {
			jv_free(v);
			v = p.s[p.pos] == '\0' ? fail(&p, p.pos, "NUL byte") :
			    fail(&p, p.pos, "trailing data after value");
		}
	}
	buf_free(&p.tmp);
	if (!jv_is_valid(v)) {
		jv_free(v);
		if (p.err[0] == '\0')
			snprintf(p.err, sizeof(p.err), "invalid JSON");
		return jv_invalid_with_msg(jv_string(p.err));
	}
	return v;
}

/*
 * Numbers: ECMAScript Number::toString.  The digits are the shortest that
 * read back (strtod) as the same double, the nearest such if there are
 * several; glibc's printf and strtod are correctly rounded, which is what
 * makes this exact.
 */

/* The first 25 significant digits of x > 0 (correctly rounded) and the
 * exponent: x ~ d[0].d[1]d[2]... * 10^e. */
struct digits25 {
	char d[25];
	int e;
};

static int
parse_exp(const char *s)
{
	int neg = 0, e = 0;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	while (is_digit((unsigned char)*s))
		e = e * 10 + (*s++ - '0');
	return neg ? -e : e;
}

/* printf("%.*e") of x into nd digits and an exponent; the decimal point
 * is skipped whatever the locale makes it. */
static void
printf_digits(double x, int nd, char *d, int *e)
{
	char t[64];
	const char *s;
	int k = 0;

	snprintf(t, sizeof(t), "%.*e", nd - 1, x);
	for (s = t; *s != '\0' && *s != 'e' && *s != 'E'; s++)
		if (is_digit((unsigned char)*s) && k < nd)
			d[k++] = *s;
	while (k < nd)
		d[k++] = '0';
	*e = *s != '\0' ? parse_exp(s + 1) : 0;
}

/* Add one unit in the last of nd digits. */
static void
digits_inc(char *d, int nd, int *e)
{
	int i = nd - 1;

	while (i >= 0 && d[i] == '9')
		d[i--] = '0';
	if (i >= 0) {
		d[i]++;
	} else {
		d[0] = '1';
		(*e)++;
	}
}

/* x rounded to nd digits (nearest, ties to even) into d, *e. */
static void
digits_round(double x, const struct digits25 *x25, int nd, char *d, int *e)
{
	int i, rest = 0;

	for (i = nd + 1; i < 25; i++)
		if (x25->d[i] != '0') {
			rest = 1;
			break;
		}
	if (x25->d[nd] == '5' && !rest) {
		/* Looks like a tie, but x25 is itself rounded. */
		printf_digits(x, nd, d, e);
		return;
	}
	memcpy(d, x25->d, (size_t)nd);
	*e = x25->e;
	if (x25->d[nd] >= '5')
		digits_inc(d, nd, e);
}

static double
digits_value(const char *d, int nd, int e)
{
	char t[48];

	memcpy(t, d, (size_t)nd);
	snprintf(t + nd, sizeof(t) - (size_t)nd, "e%d", e - (nd - 1));
	return strtod(t, NULL);
}

/* Whether some nd-digit decimal reads back as x; if so it is left in d, *e.
 * Only at a power of two, where the gap below x is half the gap above, can
 * the nearest nd-digit decimal miss while the one above it hits. */
static int
digits_try(double x, const struct digits25 *x25, int nd, int pow2, char *d,
    int *e)
{
	double v;

	digits_round(x, x25, nd, d, e);
	if ((v = digits_value(d, nd, *e)) == x)
		return 1;
	if (pow2 && v < x) {
		digits_inc(d, nd, e);
		return digits_value(d, nd, *e) == x;
	}
	return 0;
}

/* Shortest round-trip digits of finite x > 0 into d[17]; returns their
 * count (no trailing zeros) and sets *e: x = d[0].d[1]... * 10^*e. */
static int
shortest(double x, char *d, int *e)
{
	struct digits25 x25;
	uint64_t bits;
	int lo, hi, mid, pow2, best = 0;
	char t[17];
	int te;

	memcpy(&bits, &x, sizeof(bits));
	pow2 = (bits & ((UINT64_C(1) << 52) - 1)) == 0 && (bits >> 52) > 1;
	printf_digits(x, 25, x25.d, &x25.e);
	if (pow2) {
		for (lo = 1; lo < 17; lo++)
			if (digits_try(x, &x25, lo, 1, d, e))
				break;
		if (lo < 17)
			best = lo;
	} else {
		/* Elsewhere the gap is symmetric and the nearest nd-digit
		 * decimal reads back for every nd from the shortest on, so
		 * a binary search finds the shortest. */
		lo = 1;
		hi = 17;
		while (lo < hi) {
			mid = (lo + hi) / 2;
			if (digits_try(x, &x25, mid, 0, t, &te)) {
				hi = mid;
				best = mid;
				memcpy(d, t, (size_t)mid);
				*e = te;
			} else
				lo = mid + 1;
		}
	}
	if (best != lo)
		digits_try(x, &x25, lo, pow2, d, e);
	while (lo > 1 && d[lo - 1] == '0')
		lo--;
	return lo;
}

static int
fmt_uint(char *s, uint64_t u)
{
	char t[24];
	int n = 0, k;

	do
		t[n++] = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	for (k = 0; k < n; k++)
		s[k] = t[n - 1 - k];
	return n;
}

/* x as ECMAScript prints it, NUL-terminated in s[NUM_MAX]; returns the
 * length, or -1 for NaN and infinities. */
static int
fmt_number(double x, char *s)
{
	char d[17];
	int k, n, e, i, len = 0;

	if (!isfinite(x))
		return -1;
	if (x == 0) {	/* -0 too */
		s[0] = '0';
		s[1] = '\0';
		return 1;
	}
	if (x < 0) {
		s[len++] = '-';
		x = -x;
	}
	if (x < 9007199254740992.0 && x == (double)(uint64_t)x) {
		len += fmt_uint(s + len, (uint64_t)x);
		s[len] = '\0';
		return len;
	}
	k = shortest(x, d, &e);
	n = e + 1;	/* x = 0.d[0]d[1]... * 10^n */
	if (k <= n && n <= 21) {
		memcpy(s + len, d, (size_t)k);
		len += k;
		for (i = k; i < n; i++)
			s[len++] = '0';
	} else if (0 < n && n <= 21) {
		memcpy(s + len, d, (size_t)n);
		len += n;
		s[len++] = '.';
		memcpy(s + len, d + n, (size_t)(k - n));
		len += k - n;
	} else if (-6 < n && n <= 0) {
		s[len++] = '0';
		s[len++] = '.';
		for (i = n; i < 0; i++)
			s[len++] = '0';
		memcpy(s + len, d, (size_t)k);
		len += k;
	} else {
		s[len++] = d[0];
		if (k > 1) {
			s[len++] = '.';
			memcpy(s + len, d + 1, (size_t)(k - 1));
			len += k - 1;
		}
		s[len++] = 'e';
		s[len++] = e < 0 ? '-' : '+';
		len += fmt_uint(s + len, (uint64_t)(e < 0 ? -e : e));
	}
	s[len] = '\0';
	return len;
}

/* A string, escaped as JCS wants; -1 if it is not valid UTF-8. */
static int
dump_string(const unsigned char *s, size_t n, struct buf *out)
{
	size_t i = 0, run = 0, l;
	char u[6];
	unsigned c;

	buf_grow(out, n + 2);
	buf_addc(out, '"');
	while (i < n) {
		c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			if (c < 0x80)
				i++;
			else if ((l = utf8_len(s + i, n - i)) != 0)
				i += l;
			else
				return -1;
			continue;
		}
		buf_add(out, s + run, i - run);
		switch (c) {
		case '"':
			buf_add(out, "\\\"", 2);
			break;
		case '\\':
			buf_add(out, "\\\\", 2);
			break;
		case '\b':
			buf_add(out, "\\b", 2);
			break;
		case '\f':
			buf_add(out, "\\f", 2);
			break;
		case '\n':
			buf_add(out, "\\n", 2);
			break;
		case '\r':
			buf_add(out, "\\r", 2);
			break;
		case '\t':
			buf_add(out, "\\t", 2);
			break;
		default:
			memcpy(u, "\\u00", 4);
			u[4] = hexdig[c >> 4];
			u[5] = hexdig[c & 15];
			buf_add(out, u, 6);
		}
		run = ++i;
	}
	buf_add(out, s + run, i - run);
	buf_addc(out, '"');
	return 0;
}

struct member {
	const unsigned char *k;
	size_t klen;
	jv key, val;
};

/* Order of a and b as arrays of UTF-16 code units.  UTF-8 byte order is
 * code point order, and that differs from UTF-16 order only between
 * U+E000..U+FFFF (lead bytes EE, EF) and the astral planes (F0..F4),
 * which UTF-16 puts first as surrogates.  Bytes that differ after an
 * equal prefix are either both lead bytes or both continuation bytes of
 * same-length sequences, so looking at them alone is enough. */
static int
utf16_cmp(const struct member *a, const struct member *b)
{
	size_t n = a->klen < b->klen ? a->klen : b->klen, i = 0;
	unsigned x, y;

	while (i < n && a->k[i] == b->k[i])
		i++;
	if (i == n)
		return a->klen < b->klen ? -1 : a->klen > b->klen;
	x = a->k[i];
	y = b->k[i];
	if (x >= 0xee && y >= 0xee && (x >= 0xf0) != (y >= 0xf0))
		return x >= 0xf0 ? -1 : 1;
	return x < y ? -1 : 1;
}

static int
member_cmp(const void *a, const void *b)
{
	return utf16_cmp(a, b);
}

static void
sort_members(struct member *m, int n)
{
	struct member t;
	int i, j;

	if (n > MEMBERS_STACK) {
		qsort(m, (size_t)n, sizeof(*m), member_cmp);
		return;
	}
	for (i = 1; i < n; i++) {
		t = m[i];
		for (j = i; j > 0 && utf16_cmp(&m[j - 1], &t) > 0; j--)
			m[j] = m[j - 1];
		m[j] = t;
	}
}

static int dump(jv, const char *, struct buf *, int);

static int
dump_object(jv v, const char *skip, struct buf *out, int depth)
{
	struct member stack[MEMBERS_STACK], *m = stack;
	size_t skiplen = skip != NULL ? strlen(skip) : 0;
	int n, cnt = 0, i, it, rc = 0;
	jv key;

	n = jv_object_length(jv_copy(v));
	if (n > MEMBERS_STACK)
		m = xmalloc((size_t)n * sizeof(*m));
	for (it = jv_object_iter(v); jv_object_iter_valid(v, it);
	    it = jv_object_iter_next(v, it)) {
		key = jv_object_iter_key(v, it);
		if (cnt == n) {		/* cannot happen */
			jv_free(key);
			rc = -1;
			break;
		}
		m[cnt].k = (const unsigned char *)jv_string_value(key);
		m[cnt].klen = (size_t)jv_string_length_bytes(jv_copy(key));
		if (skip != NULL && m[cnt].klen == skiplen &&
		    memcmp(m[cnt].k, skip, skiplen) == 0) {
			jv_free(key);
			continue;
		}
		m[cnt].key = key;
		m[cnt].val = jv_object_iter_value(v, it);
		cnt++;
	}
	sort_members(m, cnt);
	buf_addc(out, '{');
	for (i = 0; i < cnt && rc == 0; i++) {
		if (i > 0)
			buf_addc(out, ',');
		if (dump_string(m[i].k, m[i].klen, out) < 0)
			rc = -1;
		buf_addc(out, ':');
		if (rc == 0 && dump(m[i].val, NULL, out, depth) < 0)
			rc = -1;
	}
	buf_addc(out, '}');
	for (i = 0; i < cnt; i++) {
		jv_free(m[i].key);
		jv_free(m[i].val);
	}
	if (m != stack)
		free(m);
	return rc;
}

/* v borrowed; depth counts the containers around it. */
static int
dump(jv v, const char *skip, struct buf *out, int depth)
{
	char num[NUM_MAX];
	int n, i, rc;
	jv e;

	switch (jv_get_kind(v)) {
	case JV_KIND_NULL:
		buf_add(out, "null", 4);
		return 0;
	case JV_KIND_TRUE:
		buf_add(out, "true", 4);
		return 0;
	case JV_KIND_FALSE:
		buf_add(out, "false", 5);
		return 0;
	case JV_KIND_NUMBER:
		if ((n = fmt_number(jv_number_value(v), num)) < 0)
			return -1;
		buf_add(out, num, (size_t)n);
		return 0;
	case JV_KIND_STRING:
		return dump_string((const unsigned char *)jv_string_value(v),
		    (size_t)jv_string_length_bytes(jv_copy(v)), out);
	case JV_KIND_ARRAY:
		if (depth >= CANON_DEPTH_MAX)
			return -1;
		n = jv_array_length(jv_copy(v));
		buf_addc(out, '[');
		for (i = 0; i < n; i++) {
			if (i > 0)
				buf_addc(out, ',');
			e = jv_array_get(jv_copy(v), i);
			rc = dump(e, NULL, out, depth + 1);
			jv_free(e);
			if (rc < 0)
				return -1;
		}
		buf_addc(out, ']');
		return 0;
	case JV_KIND_OBJECT:
		if (depth >= CANON_DEPTH_MAX)
			return -1;
		return dump_object(v, skip, out, depth + 1);
	default:
		return -1;
	}
}

int
canon_dump(jv v, const char *skip, struct buf *out)
{
	return dump(v, skip, out, 0);
}

char *
canon_string(jv v)
{
	struct buf b = BUF_INIT;

	if (canon_dump(v, NULL, &b) < 0) {
		buf_free(&b);
		return NULL;
	}
	return b.p;
}
