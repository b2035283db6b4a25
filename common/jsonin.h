/* Reader that splits a byte stream into JSON values: one value per line,
 * or pretty-printed values spanning lines (as jq reads them).  It only finds
 * value boundaries; the value itself is checked by canon_parse().
 *
 * A value that is not closed when a new line starts with '{' or '[' in
 * column 0, or that has a raw newline inside a string, is reported as
 * truncated and reading resumes at the next line, so one bad line costs
 * one value. */
#ifndef NS_JSONIN_H
#define NS_JSONIN_H

#include <stddef.h>

struct jsonin {
	int fd;
	size_t max;             /* largest value accepted, in bytes */
	char *buf;
	size_t cap, start, end; /* unread bytes are buf[start..end) */
	unsigned long line;     /* line number of the next unread byte */
	int eof;
	int lines;              /* one value per line, no scan (jsonin_lines) */
};

enum {
	JSONIN_VALUE = 0,       /* *p, *len hold one value (not NUL-terminated) */
	JSONIN_BAD = 1,         /* *reason says why; the value was skipped */
	JSONIN_EOF = -1,
	JSONIN_ERROR = -2,      /* read() failed; errno is set */
};

void jsonin_init(struct jsonin *in, int fd, size_t max);
/* One value per line, found with memchr instead of a scan of every byte:
 * for the bus, where every line is one compact value a stage wrote.  A
 * value is then not checked for being whole here, only by the parser. */
void jsonin_lines(struct jsonin *in);
/* Next value.  *lineno is the line the value (or bad value) starts on.
 * The bytes stay valid until the next call. */
int jsonin_next(struct jsonin *in, char **p, size_t *len,
    unsigned long *lineno, const char **reason);
/* 1 if the next jsonin_next() may block in read(): no complete line is
 * buffered.  Filters flush their output then. */
int jsonin_would_block(const struct jsonin *in);
void jsonin_free(struct jsonin *in);

#endif
