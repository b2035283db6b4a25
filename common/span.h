/* Spans of JSON text, found and checked without building values.  A stage
 * that only moves a member of a bus line along (ns-beam storing the beam
 * ns-log accepted) takes its text as it is instead of parsing it into jv
 * and printing it again; span_canonical says when that text is already
 * what canon_dump would print, so the bytes stored are the same either
 * way.  Everything here is conservative: when in doubt it answers "no" and
 * the caller takes the slow path. */
#ifndef NS_SPAN_H
#define NS_SPAN_H

#include <stddef.h>
#include <stdint.h>

struct span {
	const char *p;          /* NULL: absent */
	size_t len;
};

/* The values of the members names[0..n) of the object text obj[0..len)
 * (whitespace allowed, any member order, the first of duplicates; a name
 * spelled with escapes is not matched) into v[0..n).  0, or -1 when obj is
 * not a well-formed JSON object.  One pass over obj. */
int span_get(const char *obj, size_t len, const char *const *names,
    struct span *v, int n);

/* 1 if p[0..len) is exactly one JSON value in RFC 8785 form, 0 if it is not
 * or might not be: numbers must be integers of at most 15 digits, member
 * names ASCII, strictly ascending, strings valid UTF-8 with only the
 * escapes RFC 8785 writes, nesting at most CANON_DEPTH_MAX deep. */
int span_canonical(const char *p, size_t len);

/* A string value's text (with its quotes) as a C string in out, when it
 * has no escapes and fits in outlen with its NUL: 0, else -1. */
int span_str(const char *v, size_t vlen, char *out, size_t outlen);

/* 1 if the value v (p NULL: absent) is the string s written without
 * escapes, as canonical text writes a plain string; else 0. */
int span_is(const struct span *v, const char *s);

/* The largest magnitude span_int takes: 2^53 - 1, as jsonl_int. */
#define SPAN_INT_MAX 9007199254740991LL

/* An integer value's text (-?[0-9]+, no leading zero, magnitude at most
 * SPAN_INT_MAX) in *n: 0, else -1. */
int span_int(const char *v, size_t vlen, int64_t *n);

#endif
