/*
 * The bus (share/doc/node.md): lines out on stdout, which is non-blocking
 * with a backlog of our own, and lines in from stdin, each carried out
 * here: {"to"...} (an answer or a message for one connection), {"pub"...},
 * {"sub"...}, {"unsub"...}, {"close"...}, {"dial"...}, {"resync"...}, and
 * requests that came all the way round because no stage took them.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canon.h"
#include "jsonl.h"
#include "msg.h"
#include "serve.h"

struct buf obuf = BUF_INIT;	/* stdout backlog from ohead on */
static size_t ohead;
struct buf inl = BUF_INIT;	/* stdin: partial line */
static int in_skip;		/* dropping an over-long line */
int stdin_eof;

/* ---- stdout ----
 *
 * The backlog goes out with as few write()s as it can: straight away while
 * the pipe takes it, and once it took less than it was offered (it is
 * full), not again until poll says it is writable (out_writeable()).  A
 * write on a full pipe fails at once and would be made again on every
 * line and every pass of the loop; that cost grew with the load exactly
 * when the node was behind.
 */

static int out_full;	/* the pipe took less than offered: wait for POLLOUT */

static void
out_write(void)
{
	ssize_t n;
	size_t want;

	while (ohead < obuf.len) {
		want = obuf.len - ohead;
		n = write(STDOUT_FILENO, obuf.p + ohead, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				out_full = 1;
				break;
			}
			die("stdout:");
		}
		ohead += (size_t)n;
		if ((size_t)n < want) {
			out_full = 1;
			break;
		}
	}
	if (ohead == obuf.len) {
		ohead = 0;
		if (obuf.cap > KEEP_MAX)
			buf_free(&obuf);
		else
			buf_reset(&obuf);
	} else if (ohead > obuf.len / 2 && ohead > (64u << 10)) {
		memmove(obuf.p, obuf.p + ohead, obuf.len - ohead);
		obuf.len -= ohead;
		obuf.p[obuf.len] = '\0';
		ohead = 0;
	}
}

/* Write the backlog, unless the pipe was full and has not said since that
 * it has room. */
void
out_flush(void)
{
	if (!out_full)
		out_write();
}

/* Poll says stdout has room. */
void
out_writeable(void)
{
	out_full = 0;
	out_write();
}

/* 1 while a backlog waits for stdout to have room: the loop asks lws to
 * watch for it. */
int
out_blocked(void)
{
	return out_full && ohead < obuf.len;
}

size_t
out_pending(void)
{
	return obuf.len - ohead;
}

/* The line is complete in obuf; write it out if the buffer is large. */
void
out_line_done(void)
{
	if (out_pending() >= (64u << 10))
		out_flush();
}

/* Write what is left, waiting at most ms for a slow reader. */
void
out_final(int ms)
{
	struct pollfd pfd = { STDOUT_FILENO, POLLOUT, 0 };
	int64_t end = now_ms() + ms;

	for (;;) {
		out_writeable();
		if (out_pending() == 0)
			return;
		int left = (int)(end - now_ms());
		if (left <= 0 || poll(&pfd, 1, left) <= 0) {
			warn("stdout: %zu bytes not written at exit",
			    out_pending());
			return;
		}
	}
}

/* Append v (consumed) to the stdout backlog. */
void
out_json(jv v)
{
	size_t mark = obuf.len;

	if (canon_dump(v, NULL, &obuf) != 0) {
		obuf.len = mark;
		buf_adds(&obuf, "null");
	}
	jv_free(v);
}

void
emit_conn_open(struct conn *c)
{
	buf_addf(&obuf, "{\"m\":\"conn.open\",\"c\":%lld,\"did\":",
	    (long long)c->id);
	out_json(jv_string(c->did));
	buf_addf(&obuf, ",\"role\":\"%s\"", c->node_role ? "node" : "client");
	if (c->url) {
		buf_adds(&obuf, ",\"url\":");
		out_json(jv_string(c->url));
	}
	buf_adds(&obuf, "}\n");
	out_line_done();
}

void
emit_conn_fail(struct conn *c, const char *reason)
{
	if (c->reported)
		return;
	c->reported = 1;
	buf_adds(&obuf, "{\"m\":\"conn.fail\",\"url\":");
	out_json(jv_string(c->url ? c->url : ""));
	if (c->expect) {
		buf_adds(&obuf, ",\"node\":");
		out_json(jv_string(c->expect));
	}
	buf_adds(&obuf, ",\"reason\":");
	out_json(jv_string(reason));
	buf_adds(&obuf, "}\n");
	out_line_done();
	warn("dial %.80s: %.80s", c->url ? c->url : "", reason);
}

void
emit_conn_close(struct conn *c)
{
	buf_addf(&obuf, "{\"m\":\"conn.close\",\"c\":%lld,\"did\":\"%s\","
	    "\"role\":\"%s\"}\n", (long long)c->id, c->did,
	    c->node_role ? "node" : "client");
	out_line_done();
}

/* ---- lines on stdin ---- */

void
warn_line(const char *what, const char *p, size_t len)
{
	size_t n = len < QUOTE ? len : QUOTE, i;
	char q[QUOTE + 1];

	for (i = 0; i < n; i++)
		q[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
	q[n] = '\0';
	warn("%s: %s%s", what, q, len > n ? "..." : "");
}

/* The integer at *pp (advanced past it), or -1. */
static int64_t
raw_int(const char **pp, const char *end)
{
	const char *p = *pp;
	int64_t v = 0;

	if (p >= end || *p < '0' || *p > '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	*pp = p;
	return v;
}

static int
lit(const char **pp, const char *end, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(end - *pp) < n || memcmp(*pp, s, n) != 0)
		return 0;
	*pp += n;
	return 1;
}

/*
 * {"to":C[,"r":R][,"msg":M]}: M's bytes go to connection C as they are.
 * With R it ends request R of C: M is its answer (none for a request that
 * is not answered), which goes out only if R is still waiting (not timed
 * out).
 */
static void
line_to(const char *p, size_t len)
{
	const char *q = p + 6, *end = p + len;
	int64_t id = raw_int(&q, end), r = -1;
	struct conn *c;

	if (id < 0 || end[-1] != '}')
		goto bad;
	if (lit(&q, end, ",\"r\":") && (r = raw_int(&q, end)) < 0)
		goto bad;
	if (q != end - 1 && !lit(&q, end, ",\"msg\":"))
		goto bad;
	if (!(c = conn_find(id)))
		return;
	if (r >= 0 && !conn_answer_ok(c, r))
		return;
	if (q < end - 1)
		conn_queue(c, msg_new(q, (size_t)(end - 1 - q)));
	return;
bad:
	warn_line("bad to line", p, len);
}

/* {"pub":SPACE,"msg":M}: M to every subscriber of SPACE. */
static void
line_pub(const char *p, size_t len)
{
	const char *q = p + 7, *end = p + len, *s, *m;
	jv name = jv_invalid();

	if (q >= end || *q != '"')
		goto bad;
	for (s = q + 1; s < end && *s != '"'; s++)
		if (*s == '\\')
			s++;
	if (s >= end)
		goto bad;
	m = s + 1;
	if (!lit(&m, end, ",\"msg\":") || end[-1] != '}' || m >= end - 1)
		goto bad;
	if (memchr(q + 1, '\\', (size_t)(s - q - 1))) {
		name = canon_parse(q, (size_t)(s + 1 - q));
		if (jv_get_kind(name) != JV_KIND_STRING)
			goto bad;
		subs_publish(jv_string_value(name),
		    (size_t)jv_string_length_bytes(jv_copy(name)), m,
		    (size_t)(end - 1 - m));
	} else
		subs_publish(q + 1, (size_t)(s - q - 1), m,
		    (size_t)(end - 1 - m));
	jv_free(name);
	return;
bad:
	jv_free(name);
	warn_line("bad pub line", p, len);
}

static void
line_sub(const char *p, size_t len, int on)
{
	jv v = canon_parse(p, len);
	const char *space = jsonl_str(v, "space");
	int64_t id;
	struct conn *c;

	if (jsonl_int(v, on ? "sub" : "unsub", &id) != 0 || !space) {
		warn_line(on ? "bad sub line" : "bad unsub line", p, len);
		goto out;
	}
	if (!(c = conn_find(id)) || c->closing)
		goto out;
	if (on)
		subscribe(c, space);
	else
		unsubscribe(c, space);
out:
	jv_free(v);
}

static void
line_close(const char *p, size_t len)
{
	jv v = canon_parse(p, len);
	const char *reason = jsonl_str(v, "reason");
	int64_t id, code = 1000;
	struct conn *c;
	char r[124];
	size_t n;

	if (jsonl_int(v, "close", &id) != 0) {
		warn_line("bad close line", p, len);
		goto out;
	}
	if (jsonl_int(v, "code", &code) != 0 || code > 4999 ||
	    !ws_close_code_ok((unsigned)code))
		code = 1000;
	if (!(c = conn_find(id)))
		goto out;
	/* a close frame has room for 123 bytes: cut between characters */
	if (!reason)
		reason = "";
	n = strlen(reason);
	if (n > sizeof(r) - 1)
		for (n = sizeof(r) - 1; n > 0 &&
		    ((unsigned char)reason[n] & 0xc0) == 0x80; n--)
			;
	memcpy(r, reason, n);
	r[n] = '\0';
	conn_close(c, (int)code, r, 0);
out:
	jv_free(v);
}

static void
line_dial(const char *p, size_t len)
{
	jv v = canon_parse(p, len);
	const char *url = jsonl_str(v, "dial"), *node = jsonl_str(v, "node");

	if (!url || (jsonl_has(v, "node") && !node)) {
		warn_line("bad dial line", p, len);
		goto out;
	}
	if (shutting) {
		struct conn tmp;
		memset(&tmp, 0, sizeof(tmp));
		tmp.url = (char *)url;
		tmp.expect = (char *)node;
		emit_conn_fail(&tmp, "shutting down");
		goto out;
	}
	dial(url, node);
out:
	jv_free(v);
}

/* A request that came all the way round: nobody handled it.  A request
 * of a peer is answered method_not_found (a notification just ends); the
 * lines this program wrote itself (tick, conn.*, sub.restore) end here,
 * and so does an rpc.response no stage took.  peer.fail and log.follows,
 * which ns-gossip at the end of the ring writes for earlier stages, go on
 * round. */
static void
line_request(const char *p, size_t len)
{
	jv v, id;
	int64_t cid, r;
	struct conn *c;
	const char *m;
	char why[160];

	/* stage lines for a stage before the last one go round once more:
	 * each has exactly one stage that takes it */
	if (bus_is(p, len, "peer.fail") || bus_is(p, len, "log.follows")) {
		buf_add(&obuf, p, len);
		buf_addc(&obuf, '\n');
		out_line_done();
		return;
	}
	v = canon_parse(p, len);
	m = jsonl_str(v, "m");
	id = jsonl_get(v, "id");
	if (!m) {
		warn_line("bad request line", p, len);
		goto out;
	}
	if (jsonl_int(v, "c", &cid) != 0 || !(c = conn_find(cid)))
		goto out;
	/* a line without r was written by hand: answer it all the same */
	if (jsonl_int(v, "r", &r) == 0 && !conn_answer_ok(c, r))
		goto out;
	if (!jv_is_valid(id))
		goto out;
	snprintf(why, sizeof(why), "no stage handled %.80s", m);
	send_error(c, jv_copy(id), E_METHOD, why);
out:
	jv_free(id);
	jv_free(v);
}

#define HAS(lit) \
	(len >= sizeof(lit) - 1 && memcmp(p, lit, sizeof(lit) - 1) == 0)

static void
handle_line(const char *p, size_t len)
{
	if (len && p[len - 1] == '\r')
		len--;
	if (len == 0)
		return;
	if (HAS("{\"to\":"))
		line_to(p, len);
	else if (HAS("{\"pub\":"))
		line_pub(p, len);
	else if (HAS("{\"m\":"))
		line_request(p, len);
	else if (HAS("{\"sub\":"))
		line_sub(p, len, 1);
	else if (HAS("{\"unsub\":"))
		line_sub(p, len, 0);
	else if (HAS("{\"close\":"))
		line_close(p, len);
	else if (HAS("{\"dial\":"))
		line_dial(p, len);
	else if (HAS("{\"resync\":\"subs\"}"))
		subs_resync();
	else
		warn_line("unknown bus line", p, len);
}

/* Take every complete line in inl; keep the partial one. */
void
stdin_lines(size_t from)
{
	size_t start = 0;
	char *nl;

	if (in_skip) {
		nl = memchr(inl.p + from, '\n', inl.len - from);
		if (!nl) {
			buf_reset(&inl);
			return;
		}
		in_skip = 0;
		start = (size_t)(nl - inl.p) + 1;
		from = start;
	}
	while ((nl = memchr(inl.p + from, '\n', inl.len - from))) {
		if ((size_t)(nl - inl.p) - start > BUS_LINE_MAX)
			warn("bus line over %u bytes skipped", BUS_LINE_MAX);
		else
			handle_line(inl.p + start,
			    (size_t)(nl - inl.p) - start);
		start = from = (size_t)(nl - inl.p) + 1;
	}
	if (inl.len - start > BUS_LINE_MAX) {
		warn("bus line over %u bytes skipped", BUS_LINE_MAX);
		in_skip = 1;
		buf_reset(&inl);
		return;
	}
	memmove(inl.p, inl.p + start, inl.len - start);
	inl.len -= start;
	inl.p[inl.len] = '\0';
	if (inl.len < READ_CHUNK && inl.cap > KEEP_MAX + READ_CHUNK) {
		struct buf nb = BUF_INIT;
		buf_add(&nb, inl.p, inl.len);
		buf_free(&inl);
		inl = nb;
	}
}

/* One read(): 1 if lines came, 0 at EOF or error, 2 if nothing yet. */
int
stdin_read(void)
{
	size_t from = inl.len;
	ssize_t n;

	buf_grow(&inl, READ_CHUNK);
	n = read(STDIN_FILENO, inl.p + inl.len, READ_CHUNK);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 2;
	if (n < 0)
		warn("stdin:");
	if (n <= 0)
		return 0;
	inl.len += (size_t)n;
	inl.p[inl.len] = '\0';
	stdin_lines(from);
	return 1;
}
