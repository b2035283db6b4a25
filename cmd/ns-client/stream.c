/*
 * ns-client: live streams (share/doc/protocol.md, section 12).
 *
 * stream push: stdin's bytes, cut into chunks by the reader (input.c), are
 * numbered from the node's edge + 1, signed and sent with stream.push
 * without waiting for each answer, at most g.window of them in flight.  A
 * chunk stays here until the node has it.  The node takes the numbers
 * without gaps, so chunks go out in order of n, and none passes one that
 * waits out a busy answer; one the node refused for coming too early
 * (bad_event: an earlier one is not in) goes again after it.  When the
 * connection drops, conn.c makes it again and every chunk not yet in goes
 * again with its number; the node answers conflict for one it has, and
 * for a chunk that went out before the drop that counts as in (for one
 * that did not, conflict means that another pusher took the number first:
 * the push ends there).
 * A chunk goes as request id -n, outside the ring of conn.c, so that its
 * answer is taken whenever it comes.
 *
 * stream watch: stream.watch; with --after, first the chunks the node
 * holds after that number (stream.recent, page by page, up to the watch's
 * edge) while live chunks wait; then the live ones.  Each chunk is checked
 * (the owner's, signed) and its bytes written to stdout once, in order; a
 * jump in the numbers is said on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b64url.h"
#include "canon.h"
#include "didkey.h"
#include "jsonl.h"
#include "msg.h"
#include "sig.h"
#include "client.h"

#define RECENT_MAX	256	/* chunks a stream.recent page asks for */
#define HELD_CHUNKS	1024	/* live chunks held while the recent come */
#define UNIQUE_MAX	64	/* a uniqueId's characters */

/* A chunk pushed and not yet in. */
struct pchunk {
	int64_t n;		/* 0: a free entry */
	struct buf req;		/* its stream.push request, id -n */
	size_t bytes;		/* of data */
	double sent;		/* when sent last; 0: to send (again) */
	double again;		/* busy: when to send it again; else 0 */
	int busies;		/* busy answers so far */
	int early;		/* bad_event answers so far: sent too early */
	int again_after_drop;	/* it went out before the connection dropped,
				 * so the node may have it: conflict says so */
};

static struct {
	const char *space;		/* the stream's id, in argv */
	char owner[DIDKEY_MAX];		/* the DID its chunks are signed by */
	struct buf scratch;

	/* push */
	struct pchunk *win;		/* chunk n at n % g.window */
	int64_t low, next;		/* the lowest n not in; the next n */
	int64_t cwnd;			/* chunks in flight at most now: halved
					 * by a busy answer, back up by one
					 * with each chunk that goes in */
	int started;			/* the edge is known */
	int asked;			/* the stream.recent for it is out */
	int eof, stopping;
	int64_t first;			/* the first n made here */
	uint64_t in, inbytes, resent, busies;
	unsigned drops;

	/* watch */
	enum { W_NONE, W_ASKED, W_RECENT, W_LIVE } w;
	int64_t edge;			/* the watch's edge */
	int64_t last;			/* the highest n written or passed */
	int64_t page_after;
	int want_page;
	jv held;			/* live chunks before their turn */
	int nheld;
	int64_t written;
	uint64_t outbytes;
	struct buf data;		/* a chunk's bytes, decoded */
} st;

int
stream_setup(const char *arg)
{
	const char *id = space_id(arg), *kid, *u, *why;
	unsigned char pk[32];
	size_t i;

	if (!id || strncmp(id, "stream/", 7) != 0)
		return -1;
	kid = id + 7;
	if (!(u = strchr(kid, '/')) || u == kid ||
	    (size_t)(u - kid) + sizeof(DIDKEY_PREFIX) > sizeof(st.owner))
		return -1;
	u++;
	/* the uniqueId of section 6, which keeps a chunk within its size */
	if (strlen(u) < 1 || strlen(u) > UNIQUE_MAX || strcmp(u, ".") == 0 ||
	    strcmp(u, "..") == 0)
		return -1;
	for (i = 0; u[i]; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789._-", u[i]))
			return -1;
	snprintf(st.owner, sizeof(st.owner), DIDKEY_PREFIX "%.*s",
	    (int)(u - 1 - kid), kid);
	if (didkey_decode(st.owner, pk, &why) != 0)
		return -1;
	st.space = id;
	st.held = jv_array();
	return 0;
}

/* --- push --------------------------------------------------------------- */

static struct pchunk *
entry(int64_t n)
{
	struct pchunk *e = &st.win[n % g.window];

	return e->n == n ? e : NULL;
}

static void
send_chunk(struct pchunk *e)
{
	if (g.state != S_READY)
		return;		/* sent once the connection is back */
	outq_push(&e->req);
	e->sent = now_s();
	e->again = 0;
}

/* The node has chunk e: the window moves on. */
static void
chunk_in(struct pchunk *e)
{
	st.in++;
	st.inbytes += e->bytes;
	e->n = 0;
	while (st.low < st.next && !entry(st.low))
		st.low++;
}

/* The raw bytes p[0..len) as the next chunk, signed and kept, to send. */
static void
make_chunk(const char *p, size_t len)
{
	struct pchunk *e = &st.win[st.next % g.window];
	char *data = xmalloc(B64URL_LEN(len) + 1);
	jv chunk, msg;

	b64url_encode((const unsigned char *)p, len, data);
	chunk = sign_event(JV_OBJECT(jv_string("type"),
	    jv_string("stream.chunk"), jv_string("space"), jv_string(st.space),
	    jv_string("n"), jv_number((double)st.next), jv_string("data"),
	    jv_string(data)));
	free(data);
	buf_reset(&st.scratch);
	if (!jv_is_valid(chunk) || canon_dump(chunk, NULL, &st.scratch) != 0) {
		jv_free(chunk);
		fatal("stream push: cannot sign chunk %lld", (long long)st.next);
		return;
	}
	if (st.scratch.len > CHUNK_CANON_MAX) {
		jv_free(chunk);
		fatal("stream push: chunk %lld is %zu bytes signed, over %d",
		    (long long)st.next, st.scratch.len, CHUNK_CANON_MAX);
		return;
	}
	msg = JV_OBJECT(jv_string("jsonrpc"), jv_string("2.0"),
	    jv_string("id"), jv_number(-(double)st.next),
	    jv_string("method"), jv_string("stream.push"),
	    jv_string("params"), JV_OBJECT(jv_string("chunk"), chunk));
	buf_reset(&e->req);
	if (canon_dump(msg, NULL, &e->req) != 0) {
		jv_free(msg);
		fatal("stream push: cannot send chunk %lld", (long long)st.next);
		return;
	}
	jv_free(msg);
	e->n = st.next++;
	e->bytes = len;
	e->sent = e->again = 0;
	e->busies = e->early = e->again_after_drop = 0;
	if (!st.first)
		st.first = e->n;
}

/* The node refused chunk e with err (borrowed): the push ends, exit 1. */
static void
chunk_refused(struct pchunk *e, jv err)
{
	struct slot s;

	memset(&s, 0, sizeof(s));
	snprintf(s.method, sizeof(s.method), "stream.push");
	s.tries = 1 + e->busies;
	report_error(&s, err);
	st.stopping = 1;
	begin_close();
}

void
stream_push_answer(int64_t n, jv msg)
{
	struct pchunk *e;
	const char *reason;
	int64_t edge;
	double wait;
	jv err, data;

	if (!st.win || n < st.low || n >= st.next || !(e = entry(n)) ||
	    !e->sent || e->again || g.state != S_READY)
		return;		/* not one we wait for */
	if (jsonl_has(msg, "result")) {
		chunk_in(e);
		if (st.cwnd < g.window)
			st.cwnd++;
		return;
	}
	if (!jsonl_has(msg, "error")) {
		fatal("stream.push: the node sent an answer without result or "
		    "error");
		return;
	}
	if (busy_wait(msg, &wait) && ++e->busies < BUSY_TRIES) {
		e->again = now_s() + wait;
		st.cwnd = st.cwnd > 1 ? st.cwnd / 2 : 1;
		st.busies++;
		return;
	}
	err = jsonl_get(msg, "error");
	data = jsonl_get(err, "data");
	reason = jsonl_str(data, "reason");
	if (!reason)
		chunk_refused(e, err);
	else if (strcmp(reason, "conflict") == 0 && e->again_after_drop)
		chunk_in(e);	/* it came in before the connection dropped */
	else if (strcmp(reason, "bad_event") == 0 &&
	    jsonl_int(data, "edge", &edge) == 0 && edge + 1 < n &&
	    ++e->early < BUSY_TRIES) {
		/* an earlier chunk is not in yet (it met a busy node): this
		 * one goes again after it */
		e->sent = 0;
	} else
		chunk_refused(e, err);	/* conflict for a chunk sent once:
					 * another pusher took n */
	jv_free(data);
	jv_free(err);
}

static void
push_pump(void)
{
	struct pchunk *e;
	struct item it;
	int64_t n, flying = 0;
	int r;

	if (g.state != S_READY)
		return;
	if (!st.started) {
		if (!st.asked && slot_free_for_next() &&
		    send_req("stream.recent", JV_OBJECT(jv_string("space"),
		    jv_string(st.space), jv_string("limit"), jv_number(0)),
		    K_EDGE))
			st.asked = 1;
		return;
	}
	while (!st.eof && !st.stopping && st.next - st.low < g.window &&
	    g.state == S_READY) {
		if ((r = inq_pop(&it)) == 0)
			break;
		if (r < 0) {
			st.eof = 1;
			break;
		}
		make_chunk(it.p, it.len);
		free(it.p);
	}
	/* in order of n: new ones, and after a busy wait, a chunk sent too
	 * early or a reconnect, those not in; none passes one that waits */
	for (n = st.low; n < st.next; n++)
		if ((e = entry(n)) && e->sent && !e->again)
			flying++;
	for (n = st.low; n < st.next && g.state == S_READY; n++) {
		if (!(e = entry(n)))
			continue;
		if (e->again || flying >= st.cwnd)
			break;
		if (!e->sent) {
			send_chunk(e);
			flying++;
		}
	}
	if (g.state == S_READY && (st.eof || st.stopping) &&
	    st.low == st.next && g.used == 0)
		begin_close();
}

static void
edge_answer(jv res)
{
	int64_t edge;

	if (jsonl_int(res, "edge", &edge) != 0 || edge < 0 ||
	    edge >= JSONL_INT_MAX) {
		fatal("stream.recent: the node sent no edge");
		return;
	}
	st.low = st.next = edge + 1;
	st.win = xcalloc((size_t)g.window, sizeof(*st.win));
	st.cwnd = g.window;
	st.started = 1;
	if (g.verbose)
		warn("stream %s: pushing from chunk %lld on", st.space,
		    (long long)st.next);
}

void
stream_conn_lost(void)
{
	struct pchunk *e;

	st.drops++;
	st.asked = 0;
	for (int64_t n = st.low; st.win && n < st.next; n++)
		if ((e = entry(n))) {
			if (e->sent && !e->again) {
				/* unanswered: the node may have it */
				st.resent++;
				e->again_after_drop = 1;
			}
			e->sent = e->again = 0;
		}
}

int
stream_stop(void)
{
	if (st.stopping)
		return -1;
	st.stopping = 1;
	return 0;
}

/* --- watch -------------------------------------------------------------- */

static int
write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDOUT_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Chunks a to b will never be written: say so. */
static void
say_lost(int64_t a, int64_t b)
{
	if (a == b)
		warn("stream %s: chunk %lld was lost", st.space, (long long)a);
	else
		warn("stream %s: chunks %lld..%lld were lost", st.space,
		    (long long)a, (long long)b);
}

/* Write chunk c's (consumed) bytes, if it is the owner's, well signed and
 * not written before. */
static void
deliver(jv c)
{
	const char *type, *space, *author, *data, *why = NULL;
	size_t dlen = 0;
	int64_t n;

	if (g.state == S_CLOSING)
		goto out;
	if (jsonl_int(c, "n", &n) != 0 || n < 1) {
		warn("stream %s: a chunk without a number dropped", st.space);
		failed();
		goto out;
	}
	if (n <= st.last)
		goto out;	/* written already */
	type = jsonl_str(c, "type");
	space = jsonl_str(c, "space");
	author = jsonl_str(c, "author");
	data = jsonl_str(c, "data");
	if (!type || strcmp(type, "stream.chunk") != 0)
		why = "not a stream.chunk";
	else if (!space || strcmp(space, st.space) != 0)
		why = "a chunk of another stream";
	else if (!author || strcmp(author, st.owner) != 0)
		why = "not the stream owner's";
	else if (!data)
		why = "no data";
	else if (sig_verify(c, &st.scratch, &why) != 0)
		;
	else {
		buf_reset(&st.data);
		buf_grow(&st.data, strlen(data));
		if (b64url_decode(data, strlen(data),
		    (unsigned char *)st.data.p, st.data.cap, &dlen) != 0)
			why = "data is not base64url";
	}
	if (why) {
		warn("stream %s: chunk %lld dropped: %s", st.space,
		    (long long)n, why);
		failed();
		goto out;
	}
	/* without --after, the first chunk is where the watch starts: a
	 * node that is not yet in the stream's tree answers the watch with
	 * an edge that is behind the live one */
	if (n > st.last + 1 && (g.after >= 0 || st.written > 0))
		say_lost(st.last + 1, n - 1);
	if (write_all(st.data.p, dlen) != 0) {
		fatal("stdout:");
		goto out;
	}
	st.last = n;
	st.written++;
	st.outbytes += dlen;
	if (g.count > 0 && st.written >= g.count)
		begin_close();
out:
	jv_free(c);
}

/* The recent chunks are written: the live ones that waited follow.  What
 * the node no longer holds up to its edge at the watch is lost now. */
static void
go_live(void)
{
	jv held = st.held;
	int64_t upto = st.edge, n;

	if (st.w == W_RECENT && st.last < st.edge && g.state != S_CLOSING) {
		jv_array_foreach(held, i, c) {
			if (jsonl_int(c, "n", &n) == 0 && n > st.last &&
			    n <= upto)
				upto = n - 1;
			jv_free(c);
		}
		if (upto > st.last) {
			say_lost(st.last + 1, upto);
			st.last = upto;
		}
	}
	st.w = W_LIVE;
	st.held = jv_array();
	st.nheld = 0;
	jv_array_foreach(held, i, c)
		deliver(c);
	jv_free(held);
}

static void
watch_answer(jv res)
{
	int64_t edge;

	if (jsonl_int(res, "edge", &edge) != 0 || edge < 0) {
		fatal("stream.watch: the node sent no edge");
		return;
	}
	st.edge = edge;
	if (g.verbose)
		warn("stream %s: watching; the node is at chunk %lld",
		    st.space, (long long)edge);
	if (g.after < 0) {
		st.last = edge;
		go_live();
	} else if (g.after >= edge) {
		st.last = g.after;
		go_live();
	} else {
		st.last = st.page_after = g.after;
		st.want_page = 1;
		st.w = W_RECENT;
	}
}

static void
recent_answer(jv res)
{
	jv chunks = jsonl_get(res, "chunks");
	int64_t top = st.page_after, n;

	if (jv_get_kind(chunks) != JV_KIND_ARRAY) {
		fatal("stream.recent: the node sent no chunks array");
		goto out;
	}
	jv_array_foreach(chunks, i, c) {
		if (jsonl_int(c, "n", &n) == 0 && n > top)
			top = n;
		deliver(c);
	}
	if (top <= st.page_after || top >= st.edge)
		go_live();
	else {
		st.page_after = top;
		st.want_page = 1;
	}
out:
	jv_free(chunks);
}

static void
watch_pump(void)
{
	if (g.state != S_READY)
		return;
	if (st.w == W_NONE && slot_free_for_next() &&
	    send_req("stream.watch", JV_OBJECT(jv_string("space"),
	    jv_string(st.space)), K_WATCH))
		st.w = W_ASKED;
	if (st.w == W_RECENT && st.want_page && slot_free_for_next()) {
		st.want_page = 0;
		send_req("stream.recent", JV_OBJECT(jv_string("space"),
		    jv_string(st.space), jv_string("after"),
		    jv_number((double)st.page_after), jv_string("limit"),
		    jv_number(RECENT_MAX)), K_RECENT);
	}
}

void
stream_notification(jv msg, const char *method)
{
	jv params = jsonl_get(msg, "params");
	const char *m;
	char why[100];

	if (strcmp(method, "chunk") == 0) {
		if (st.w == W_LIVE)
			deliver(params);
		else if (st.nheld < HELD_CHUNKS) {
			/* its turn comes after the recent ones */
			st.held = jv_array_append(st.held, params);
			st.nheld++;
		} else
			jv_free(params);	/* a gap, said when it shows */
		return;
	}
	if (strcmp(method, "unwatched") == 0 && jsonl_str(params, "space") &&
	    strcmp(jsonl_str(params, "space"), st.space) == 0) {
		m = jsonl_str(params, "message");
		if (!m)
			m = jsonl_str(params, "reason");
		clean(why, sizeof(why), m ? m : "no reason given", 80);
		warn("stream %s: watch ended by the node: %s", st.space, why);
		failed();
		begin_close();
	}
	jv_free(params);
}

/* --- both --------------------------------------------------------------- */

void
stream_pump(void)
{
	if (g.cmd == C_STREAM_PUSH)
		push_pump();
	else
		watch_pump();
}

void
stream_answer(struct slot *s, jv msg)
{
	jv res, err;

	if (jsonl_has(msg, "error")) {
		err = jsonl_get(msg, "error");
		report_error(s, err);
		jv_free(err);
		st.stopping = 1;
		begin_close();
		goto out;
	}
	res = jsonl_get(msg, "result");
	switch (s->kind) {
	case K_EDGE:
		edge_answer(res);
		break;
	case K_WATCH:
		watch_answer(res);
		break;
	case K_RECENT:
		recent_answer(res);
		break;
	default:
		break;
	}
	jv_free(res);
out:
	jv_free(msg);
}

void
stream_tick(double now)
{
	struct pchunk *e;

	if (g.cmd == C_STREAM_WATCH) {
		if (!g.timeout_given || now - g.start <= g.timeout)
			return;
		if (g.count > 0)
			fatal("stream watch: timeout: %lld of %lld chunks after "
			    "%g s", (long long)st.written, (long long)g.count,
			    g.timeout);
		else
			begin_close();
		return;
	}
	if (g.state != S_READY || !st.win)
		return;
	for (int64_t n = st.low; n < st.next; n++) {
		if (!(e = entry(n)))
			continue;
		if (e->again && now >= e->again)
			e->again = e->sent = 0;	/* its wait is over */
		else if (e->sent && !e->again && now - e->sent > g.timeout) {
			fatal("stream.push: timeout: no answer after %g s",
			    g.timeout);
			return;
		}
	}
	push_pump();
	if (g.outq && g.wsi)
		lws_callback_on_writable(g.wsi);
}

void
stream_free(void)
{
	if (g.verbose && g.cmd == C_STREAM_PUSH && st.in > 0)
		warn("stream %s: %llu chunks (%lld to %lld), %llu bytes pushed; "
		    "%u reconnects, %llu chunks sent again, %llu busy answers",
		    st.space, (unsigned long long)st.in, (long long)st.first,
		    (long long)st.next - 1, (unsigned long long)st.inbytes,
		    st.drops, (unsigned long long)st.resent,
		    (unsigned long long)st.busies);
	else if (g.verbose && g.cmd == C_STREAM_PUSH)
		warn("stream %s: nothing pushed", st.space);
	else if (g.verbose)
		warn("stream %s: %lld chunks, %llu bytes written", st.space,
		    (long long)st.written, (unsigned long long)st.outbytes);
	for (int64_t i = 0; st.win && i < g.window; i++)
		buf_free(&st.win[i].req);
	free(st.win);
	jv_free(st.held);
	buf_free(&st.scratch);
	buf_free(&st.data);
}
