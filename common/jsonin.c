#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonin.h"
#include "msg.h"

void
jsonin_init(struct jsonin *in, int fd, size_t max)
{
	memset(in, 0, sizeof(*in));
	in->fd = fd;
	in->max = max;
	in->line = 1;
}

void
jsonin_free(struct jsonin *in)
{
	free(in->buf);
	in->buf = NULL;
}

int
jsonin_would_block(const struct jsonin *in)
{
	size_t i = in->start;

	if (in->eof)
		return 0;
	/* the newline that ends the value just read is not a next line */
	while (i < in->end && (in->buf[i] == ' ' || in->buf[i] == '\t' ||
	    in->buf[i] == '\n' || in->buf[i] == '\r'))
		i++;
	return i == in->end ||
	    memchr(in->buf + i, '\n', in->end - i) == NULL;
}

/* Read more input after buf[end], keeping buf[start..end).  Returns bytes
 * read, 0 at EOF, -1 on error. */
static ssize_t
fill(struct jsonin *in)
{
	ssize_t n;

	if (in->start > 0 && in->start == in->end)
		in->start = in->end = 0;
	if (in->cap - in->end < 65536 && in->start > 0) {
		memmove(in->buf, in->buf + in->start, in->end - in->start);
		in->end -= in->start;
		in->start = 0;
	}
	if (in->cap - in->end < 65536) {
		in->cap = in->cap ? in->cap * 2 : 131072;
		in->buf = xrealloc(in->buf, in->cap);
	}
	do
		n = read(in->fd, in->buf + in->end, in->cap - in->end - 1);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		in->end += (size_t)n;
	return n;
}

static int
is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void
jsonin_lines(struct jsonin *in)
{
	in->lines = 1;
}

/* Line mode: the next line, found with memchr.  A line over in->max is
 * skipped whole without being kept. */
static int
next_line(struct jsonin *in, char **p, size_t *len, unsigned long *lineno,
    const char **reason)
{
	size_t seen = 0;
	int skipping = 0;

	for (;;) {
		size_t n, avail = in->end - in->start - seen;
		/* (before the first read there is no buffer at all) */
		char *nl = avail ? memchr(in->buf + in->start + seen, '\n',
		    avail) : NULL;

		if (nl || (in->eof && in->end > in->start)) {
			n = nl ? (size_t)(nl - (in->buf + in->start)) :
			    in->end - in->start;
			*lineno = in->line++;
			*p = in->buf + in->start;
			in->start += n + (nl != NULL);
			while (n > 0 && is_ws((*p)[n - 1]))
				n--;
			if (skipping || n > in->max) {
				*reason = "value too large";
				return JSONIN_BAD;
			}
			if (n == 0)
				continue;	/* an empty line */
			*len = n;
			return JSONIN_VALUE;
		}
		if (in->eof)
			return JSONIN_EOF;
		seen = in->end - in->start;
		if (seen > in->max) {
			/* drop what was read; the line goes on */
			skipping = 1;
			in->start = in->end;
			seen = 0;
		}
		ssize_t r = fill(in);
		if (r < 0)
			return JSONIN_ERROR;
		if (r == 0)
			in->eof = 1;
	}
}

/*
 * The scan keeps its state across fills: pos is relative to start, so a
 * memmove in fill() does not invalidate it.
 */
int
jsonin_next(struct jsonin *in, char **p, size_t *len, unsigned long *lineno,
    const char **reason)
{
	size_t pos, vlen = 0;
	int depth = 0, instr = 0, esc = 0, scalar = 0, started = 0;
	int skipping = 0;   /* value too large: scan on, keep nothing */
	const char *why = NULL;

	if (in->lines)
		return next_line(in, p, len, lineno, reason);
	for (;;) {
		/* skip whitespace between values */
		while (in->start < in->end && is_ws(in->buf[in->start])) {
			if (in->buf[in->start] == '\n')
				in->line++;
			in->start++;
		}
		if (in->start < in->end)
			break;
		if (in->eof)
			return JSONIN_EOF;
		ssize_t n = fill(in);
		if (n < 0)
			return JSONIN_ERROR;
		if (n == 0)
			in->eof = 1;
	}
	*lineno = in->line;
	pos = 0;
	for (;;) {
		if (in->start + pos >= in->end) {
			if (in->eof) {
				if (started && (depth > 0 || instr)) {
					why = "truncated value at end of input";
					goto bad;
				}
				break;  /* a scalar ending at EOF */
			}
			if (skipping) {
				/* drop what was scanned; keep the state */
				in->start += pos;
				pos = 0;
			}
			ssize_t n = fill(in);
			if (n < 0)
				return JSONIN_ERROR;
			if (n == 0)
				in->eof = 1;
			continue;
		}
		char c = in->buf[in->start + pos];
		if (!skipping && pos >= in->max) {
			skipping = 1;
			why = "value too large";
		}
		if (!started) {
			started = 1;
			if (c == '{' || c == '[')
				depth = 1;
			else if (c == '"')
				instr = 1;
			else
				scalar = 1;
			pos++;
			continue;
		}
		if (c == '\n') {
			in->line++;
			if (instr) {
				/* raw newline inside a string: a cut line */
				pos++;
				why = why ? why : "truncated value (newline inside a string)";
				goto bad;
			}
			if (scalar) {
				pos++;
				vlen = pos - 1;
				goto done;
			}
			/* an unclosed value followed by a new one in column 0 */
			if (in->start + pos + 1 < in->end) {
				char d = in->buf[in->start + pos + 1];
				if (d == '{' || d == '[') {
					pos++;
					why = why ? why : "truncated value";
					goto bad;
				}
			}
			pos++;
			continue;
		}
		if (scalar) {
			if (is_ws(c)) {
				vlen = pos;
				pos++;
				goto done;
			}
			pos++;
			continue;
		}
		pos++;
		if (instr) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"') {
				instr = 0;
				if (depth == 0) {
					vlen = pos;
					goto done;
				}
			}
			continue;
		}
		if (c == '"')
			instr = 1;
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']') {
			if (--depth == 0) {
				vlen = pos;
				goto done;
			}
		}
	}
	/* EOF right after a scalar */
	vlen = pos;
done:
	if (skipping)
		goto bad;
	*p = in->buf + in->start;
	*len = vlen;
	in->start += pos;
	return JSONIN_VALUE;
bad:
	in->start += pos;
	*reason = why;
	return JSONIN_BAD;
}
