#include <string.h>

#include "canon.h"
#include "span.h"

/*
 * One checker for two questions: is this well-formed JSON (span_get's scan
 * of a whole line), and is it RFC 8785 text (span_canonical).  It walks the
 * bytes once and builds nothing.
 */
struct chk {
	const unsigned char *p, *e;
	int canon;
};

static void
ws(struct chk *c)
{
	if (c->canon)
		return;
	while (c->p < c->e && (*c->p == ' ' || *c->p == '\t' ||
	    *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int
hex(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* \uXXXX at p (after the backslash and u): the code unit, or -1. */
static long
u4(struct chk *c, int lower)
{
	long u = 0;

	if (c->e - c->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int h = hex(c->p[i]);
		if (h < 0 || (lower && c->p[i] >= 'A' && c->p[i] <= 'F'))
			return -1;
		u = u * 16 + h;
	}
	c->p += 4;
	return u;
}

/* One UTF-8 sequence of 2-4 bytes at c->p: no overlong form, no
 * surrogate, nothing past U+10FFFF. */
static int
utf8(struct chk *c)
{
	const unsigned char *s = c->p;
	unsigned long cp;
	int n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 1, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 2, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 3, cp = s[0] & 0x07;
	else
		return -1;
	if (c->e - s <= n)
		return -1;
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return -1;
	c->p += n + 1;
	return 0;
}

/* A string at c->p (its opening quote); with plain, also that it is
 * ASCII without escapes (a member name RFC 8785 order can be checked on). */
static int
string(struct chk *c, int *plain)
{
	*plain = 1;
	if (c->p >= c->e || *c->p != '"')
		return -1;
	c->p++;
	for (;;) {
		const unsigned char *q = c->p;

		/* the common run of plain bytes */
		q += canon_plain_run(q, (size_t)(c->e - q));
		c->p = q;
		if (q >= c->e)
			return -1;
		if (*q == '"') {
			c->p++;
			return 0;
		}
		*plain = 0;
		if (*q < 0x20)
			return -1;
		if (*q >= 0x80) {
			if (utf8(c) != 0)
				return -1;
			continue;
		}
		/* an escape */
		if (c->e - q < 2)
			return -1;
		c->p = q + 2;
		switch (q[1]) {
		case '"': case '\\': case 'b': case 'f': case 'n': case 'r':
		case 't':
			break;
		case '/':
			if (c->canon)
				return -1;
			break;
		case 'u': {
			long u = u4(c, c->canon);

			if (u < 0)
				return -1;
			if (c->canon) {
				/* only controls without a short form */
				if (u >= 0x20 || u == 0x08 || u == 0x09 ||
				    u == 0x0a || u == 0x0c || u == 0x0d)
					return -1;
				break;
			}
			if (u >= 0xdc00 && u <= 0xdfff)
				return -1;
			if (u >= 0xd800 && u <= 0xdbff) {
				long lo;

				if (c->e - c->p < 2 || c->p[0] != '\\' ||
				    c->p[1] != 'u')
					return -1;
				c->p += 2;
				lo = u4(c, 0);
				if (lo < 0xdc00 || lo > 0xdfff)
					return -1;
			}
			break;
		}
		default:
			return -1;
		}
	}
}

static int
digits(struct chk *c)
{
	const unsigned char *s = c->p;

	while (c->p < c->e && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return (int)(c->p - s);
}

static int
number(struct chk *c)
{
	const unsigned char *s = c->p;
	int n;

	if (c->p < c->e && *c->p == '-')
		c->p++;
	if (c->p < c->e && *c->p == '0') {
		c->p++;
		n = 1;
	} else if ((n = digits(c)) == 0)
		return -1;
	if (c->canon)	/* an integer exactly as a double prints, not -0 */
		return n <= 15 && !(s[0] == '-' && s[1] == '0') &&
		    !(c->p < c->e && (*c->p == '.' || *c->p == 'e' ||
		    *c->p == 'E' || (*c->p >= '0' && *c->p <= '9'))) ? 0 : -1;
	if (c->p < c->e && *c->p == '.') {
		c->p++;
		if (digits(c) == 0)
			return -1;
	}
	if (c->p < c->e && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->e && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (digits(c) == 0)
			return -1;
	}
	return 0;
}

static int
word(struct chk *c, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(c->e - c->p) < n || memcmp(c->p, w, n) != 0)
		return -1;
	c->p += n;
	return 0;
}

/* The members span_get looks for, and where their values go. */
struct want {
	const char *const *names;
	struct span *v;
	int n;
};

static int value(struct chk *c, int depth);

/* After a member or an element: 1 at a comma (more follow), 0 at close
 * (the end), -1 at anything else. */
static int
next(struct chk *c, unsigned char close)
{
	ws(c);
	if (c->p < c->e && *c->p == ',') {
		c->p++;
		ws(c);
		return 1;
	}
	if (c->p < c->e && *c->p == close) {
		c->p++;
		return 0;
	}
	return -1;
}

/* An object at c->p (its opening brace); with w, the values of the
 * members it names are noted. */
static int
object(struct chk *c, int depth, const struct want *w)
{
	const unsigned char *prev = NULL;
	size_t prevlen = 0;
	int plain, more;

	c->p++;
	ws(c);
	if (c->p < c->e && *c->p == '}') {
		c->p++;
		return 0;
	}
	do {
		const unsigned char *k = c->p + 1, *val;
		size_t klen;

		if (string(c, &plain) != 0)
			return -1;
		klen = (size_t)(c->p - k - 1);
		if (c->canon) {
			/* ASCII names compare in UTF-16 order bytewise;
			 * strictly ascending also rules out duplicates */
			size_t m = prevlen < klen ? prevlen : klen;
			int d = prev ? memcmp(prev, k, m) : -1;

			if (!plain || (prev && (d > 0 || (d == 0 &&
			    prevlen >= klen))))
				return -1;
			prev = k;
			prevlen = klen;
		}
		ws(c);
		if (c->p >= c->e || *c->p != ':')
			return -1;
		c->p++;
		ws(c);
		val = c->p;
		if (value(c, depth) != 0)
			return -1;
		/* the first of duplicates; a name spelled with escapes is
		 * not matched */
		for (int i = 0; w && plain && i < w->n; i++)
			if (!w->v[i].p && strlen(w->names[i]) == klen &&
			    memcmp(k, w->names[i], klen) == 0) {
				w->v[i].p = (const char *)val;
				w->v[i].len = (size_t)(c->p - val);
				break;
			}
	} while ((more = next(c, '}')) == 1);
	return more;
}

static int
array(struct chk *c, int depth)
{
	int more;

	c->p++;
	ws(c);
	if (c->p < c->e && *c->p == ']') {
		c->p++;
		return 0;
	}
	do {
		if (value(c, depth) != 0)
			return -1;
	} while ((more = next(c, ']')) == 1);
	return more;
}

static int
value(struct chk *c, int depth)
{
	int plain;

	if (c->p >= c->e)
		return -1;
	switch (*c->p) {
	case '{':
		return depth >= CANON_DEPTH_MAX ? -1 :
		    object(c, depth + 1, NULL);
	case '[':
		return depth >= CANON_DEPTH_MAX ? -1 : array(c, depth + 1);
	case '"':
		return string(c, &plain);
	case 't':
		return word(c, "true");
	case 'f':
		return word(c, "false");
	case 'n':
		return word(c, "null");
	default:
		return number(c);
	}
}

int
span_canonical(const char *p, size_t len)
{
	struct chk c = { (const unsigned char *)p,
	    (const unsigned char *)p + len, 1 };

	return len > 0 && value(&c, 0) == 0 && c.p == c.e;
}

int
span_get(const char *obj, size_t len, const char *const *names,
    struct span *v, int n)
{
	struct chk c = { (const unsigned char *)obj,
	    (const unsigned char *)obj + len, 0 };
	struct want w = { names, v, n };

	for (int i = 0; i < n; i++)
		v[i].p = NULL, v[i].len = 0;
	ws(&c);
	if (c.p >= c.e || *c.p != '{' || object(&c, 1, &w) != 0)
		return -1;
	ws(&c);
	return c.p == c.e ? 0 : -1;
}

int
span_str(const char *v, size_t vlen, char *out, size_t outlen)
{
	if (vlen < 2 || v[0] != '"' || v[vlen - 1] != '"' ||
	    vlen - 2 >= outlen || memchr(v + 1, '\\', vlen - 2) ||
	    memchr(v + 1, '"', vlen - 2))
		return -1;
	memcpy(out, v + 1, vlen - 2);
	out[vlen - 2] = '\0';
	return 0;
}

int
span_is(const struct span *v, const char *s)
{
	size_t n = strlen(s);

	return v->p && v->len == n + 2 && v->p[0] == '"' &&
	    memcmp(v->p + 1, s, n) == 0 && v->p[n + 1] == '"';
}

int
span_int(const char *v, size_t vlen, int64_t *n)
{
	size_t i = 0;
	int neg = 0;
	int64_t x = 0;

	if (vlen > 0 && v[0] == '-')
		neg = 1, i = 1;
	/* up to 2^53 - 1, the integers a double (and so jv) holds exactly
	 * and jsonl_int takes: ns-serve's connection numbers have 16 digits */
	if (vlen == i || vlen - i > 16 || (v[i] == '0' && vlen - i > 1))
		return -1;
	for (; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	if (x > SPAN_INT_MAX)
		return -1;
	*n = neg ? -x : x;
	return 0;
}
