/* Diagnostics and allocation wrappers shared by every program. */
#ifndef NS_MSG_H
#define NS_MSG_H

#include <stddef.h>

/* Program name used as the prefix of every diagnostic; set first in main. */
extern const char *prog;

/* Print "prog: message" on stderr; a format ending in ':' gets
 * ": strerror(errno)" appended.  die() then exits with status 2. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The whole number in s, for option opt; dies with status 2 ("opt: not a
 * number from lo to hi: s") when s is not one or is out of range. */
long long xnum(const char *opt, const char *s, long long lo, long long hi);

/* Allocation that cannot fail: on exhaustion they die with status 2. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
