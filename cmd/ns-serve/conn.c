/*
 * The connection table: ids, outgoing queues and the write path, closing,
 * pausing, the requests each connection has in the node, and the accounts
 * of logged-in DIDs that the per-DID limits count on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "canon.h"
#include "msg.h"
#include "serve.h"

struct conn *conns;
size_t n_inbound, n_outbound;
int64_t next_id = 1;
int rx_paused;

static struct conn **idtab;
static size_t idtab_mask;
static struct acct **acctab;
static size_t acctab_mask, n_accts;
static struct buf scratch = BUF_INIT;
/* The two DIDs whose requests came last, and when: enough to tell
 * whether a DID has the node to itself. */
static struct {
	char did[DIDKEY_MAX];
	int64_t at;
} recent[2];
static struct buf wbuf = BUF_INIT;	/* LWS_PRE, then frames to write */
static int64_t next_r = 1;

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static size_t
id_slot(int64_t id)
{
	return (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 20) &
	    idtab_mask;
}

void
conn_table_init(size_t nconn)
{
	size_t n;

	for (n = 1; n < 2 * nconn + 2; n <<= 1)
		;
	idtab = xcalloc(n, sizeof(*idtab));
	idtab_mask = n - 1;
	for (n = 64; n < nconn; n <<= 1)
		;
	acctab = xcalloc(n, sizeof(*acctab));
	acctab_mask = n - 1;
}

struct conn *
conn_find(int64_t id)
{
	struct conn *c;

	if (id <= 0)
		return NULL;
	for (c = idtab[id_slot(id)]; c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

struct conn *
conn_new(struct lws *wsi, int outbound, int numbered)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	size_t s;

	c->wsi = wsi;
	c->outbound = (unsigned char)outbound;
	c->last_rx = now_ms();
	c->login_deadline = c->last_rx + (int64_t)login_timeout * 1000;
	if (numbered) {
		c->id = next_id++;
		s = id_slot(c->id);
		c->hnext = idtab[s];
		idtab[s] = c;
	}
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	if (outbound)
		n_outbound++;
	else if (numbered)
		n_inbound++;
	return c;
}

/* ---- messages and queues ---- */

struct msg *
msg_new(const char *p, size_t len)
{
	struct msg *m = xmalloc(sizeof(*m) + WS_HDR_MAX + len);
	unsigned char hdr[WS_HDR_MAX];

	m->refs = 0;
	m->len = len;
	m->hlen = (unsigned char)ws_frame_header(hdr, WS_TEXT, 1, len, NULL);
	memcpy(MSG_FRAME(m), hdr, m->hlen);
	memcpy(MSG_DATA(m), p, len);
	return m;
}

void
msg_unref(struct msg *m)
{
	if (--m->refs == 0)
		free(m);
}

/* Take the first message off c's queue. */
void
conn_qpop(struct conn *c)
{
	struct msg *m = c->q[c->qfirst];

	c->qfirst = (c->qfirst + 1) & (c->qcap - 1);
	c->qn--;
	c->qbytes -= m->len;
	msg_unref(m);
	if (c->qn == 0) {
		c->qfirst = 0;
		if (c->qcap > 1024) {	/* a burst is over: give it back */
			free(c->q);
			c->q = NULL;
			c->qcap = 0;
		}
	}
}

/* Drop c's queue; with keep, not the message whose frame is partly
 * sent, which the peer must get whole before anything else. */
static void
queue_free(struct conn *c, int keep)
{
	unsigned left = keep && c->qoff ? 1 : 0;
	struct msg *m;

	while (c->qn > left) {
		m = conn_qat(c, c->qn - 1);
		c->qn--;
		c->qbytes -= m->len;
		msg_unref(m);
	}
	if (c->qn)
		return;
	c->qfirst = 0;
	c->qoff = 0;
	free(c->q);
	c->q = NULL;
	c->qcap = 0;
}

/* Cut the TCP connection without more ado; lws calls back to free c. */
void
conn_drop(struct conn *c)
{
	c->closing = 1;
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
}

/* Close c with code and reason: a close frame after what is queued (or
 * instead of it, if now), then the end of the connection. */
void
conn_close(struct conn *c, int code, const char *reason, int now)
{
	if (c->closing && !now)
		return;
	c->close_code = (unsigned short)code;
	free(c->close_reason);
	c->close_reason = xstrdup(reason);
	c->closing = 1;
	if (now)
		queue_free(c, 1);
	if (!c->wsi)
		return;
	if (c->state == S_DIALING || c->state == S_UPGRADE || c->close_sent) {
		conn_drop(c);
		return;
	}
	/* a peer that does not read never makes us writeable: cut it then */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
	    now ? SLOW_KILL_S : SLOW_KILL_S + 7);
	lws_callback_on_writable(c->wsi);
}

/* Queue m for c; the queue takes a reference (m is freed here if nobody
 * holds one and it cannot be queued). */
void
conn_queue(struct conn *c, struct msg *m)
{
	if (c->closing || c->state == S_DIALING || c->state == S_UPGRADE) {
		if (m->refs == 0)
			free(m);
		return;
	}
	if (c->qbytes + m->len > max_queue) {
		if (m->refs == 0)
			free(m);
		warn("connection %lld: over %zu unsent bytes, closed",
		    (long long)c->id, max_queue);
		conn_close(c, CLOSE_TRY_AGAIN, "too slow", 1);
		return;
	}
	if (c->qn == c->qcap) {
		unsigned ncap = c->qcap ? 2 * c->qcap : 16, k;
		struct msg **nq = xmalloc(ncap * sizeof(*nq));

		for (k = 0; k < c->qn; k++)
			nq[k] = conn_qat(c, k);
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qfirst = 0;
	}
	c->q[(c->qfirst + c->qn) & (c->qcap - 1)] = m;
	m->refs++;
	c->qbytes += m->len;
	/* a queue that was not empty has asked to write already */
	if (c->qn++ == 0)
		lws_callback_on_writable(c->wsi);
}

/* Send v (consumed) to c as one message. */
void
send_jv(struct conn *c, jv v)
{
	buf_reset(&scratch);
	if (canon_dump(v, NULL, &scratch) == 0)
		conn_queue(c, msg_new(scratch.p, scratch.len));
	else
		warn("connection %lld: message not representable, dropped",
		    (long long)c->id);
	jv_free(v);
	if (scratch.cap > KEEP_MAX)
		buf_free(&scratch);
}

static jv
rpc_head(jv id)
{
	jv m = jv_object_set(jv_object(), jv_string("jsonrpc"),
	    jv_string("2.0"));

	return jv_object_set(m, jv_string("id"), id);
}

void
send_error_data(struct conn *c, jv id, enum bus_err e, const char *message,
    jv data)
{
	jv err = bus_error_object(e, message);

	if (jv_get_kind(data) == JV_KIND_OBJECT) {
		jv d = jv_object_merge(jv_object_get(jv_copy(err),
		    jv_string("data")), data);
		err = jv_object_set(err, jv_string("data"), d);
	} else
		jv_free(data);
	send_jv(c, jv_object_set(rpc_head(id), jv_string("error"), err));
}

void
send_error(struct conn *c, jv id, enum bus_err e, const char *message)
{
	send_error_data(c, id, e, message, jv_invalid());
}

void
send_result(struct conn *c, jv id, jv result)
{
	send_jv(c, jv_object_set(rpc_head(id), jv_string("result"), result));
}

/* A dialed connection masks its frames, and TLS goes through lws: their
 * bytes are copied into one buffer for lws_write, which keeps what the
 * socket does not take.  -1 on failure. */
static int
write_copy(struct conn *c)
{
	size_t n;

	buf_reset(&wbuf);
	buf_grow(&wbuf, LWS_PRE + WRITE_CHUNK);
	wbuf.len = LWS_PRE;
	n = ws_fill(c, &wbuf, WRITE_CHUNK);
	if (n > 0 && lws_write(c->wsi, (unsigned char *)wbuf.p + LWS_PRE, n,
	    LWS_WRITE_RAW) < (int)n)
		return -1;
	if (wbuf.cap > KEEP_MAX + LWS_PRE + WRITE_CHUNK)
		buf_free(&wbuf);
	return 0;
}

/*
 * An accepted connection: one writev() of the frames as they are, shared
 * with every other connection they go to, up to about WRITEV_MAX bytes.
 * What the socket does not take waits here, in order: the rest of the
 * first message's frame (c->qoff), then c->out (control frames and
 * handshake bytes, made at the start of a call, so never inside a frame),
 * then the rest of the queue.  -1 on failure.
 */
static int
write_vec(struct conn *c)
{
	struct iovec iov[WRITE_IOV];
	struct msg *m;
	size_t total = 0, left, r;
	unsigned k = 0;
	int n = 0;
	ssize_t w;

	if (c->out_off == c->out.len) {
		c->out_off = 0;
		if (c->out.cap > KEEP_MAX)
			buf_free(&c->out);
		else
			buf_reset(&c->out);
	}
	ws_fill_ctl(c, &c->out);
	ws_fill_close(c, &c->out);
	if (c->qoff) {
		m = conn_qat(c, 0);
		iov[n].iov_base = MSG_FRAME(m) + c->qoff;
		iov[n].iov_len = MSG_FRAME_LEN(m) - c->qoff;
		total += iov[n++].iov_len;
		k = 1;
	}
	if (c->out.len > c->out_off) {
		iov[n].iov_base = c->out.p + c->out_off;
		iov[n].iov_len = c->out.len - c->out_off;
		total += iov[n++].iov_len;
	}
	if (c->state != S_UPGRADE)
		for (; k < c->qn && n < WRITE_IOV && total < WRITEV_MAX; k++) {
			m = conn_qat(c, k);
			iov[n].iov_base = MSG_FRAME(m);
			iov[n].iov_len = MSG_FRAME_LEN(m);
			total += iov[n++].iov_len;
		}
	if (n == 0)
		return 0;
	do
		w = writev(lws_get_socket_fd(c->wsi), iov, n);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	/* take off what went, in the order it was laid out */
	left = (size_t)w;
	if (c->qoff) {
		m = conn_qat(c, 0);
		r = MSG_FRAME_LEN(m) - c->qoff;
		if (left < r) {
			c->qoff += left;
			return 0;
		}
		left -= r;
		c->qoff = 0;
		conn_qpop(c);
	}
	r = c->out.len - c->out_off;
	if (left < r) {
		c->out_off += left;
		return 0;
	}
	c->out_off += r;
	left -= r;
	while (left) {
		m = conn_qat(c, 0);
		r = MSG_FRAME_LEN(m);
		if (left < r) {
			c->qoff = left;
			break;
		}
		left -= r;
		conn_qpop(c);
	}
	return 0;
}

/* Write what c has for the wire, as much as the socket takes; -1 asks lws
 * to close the connection. */
int
conn_writeable(struct conn *c)
{
	int unsent;

	if (c->outbound || lws_is_ssl(c->wsi) ? write_copy(c) : write_vec(c))
		return -1;
	unsent = c->qoff || c->out_off < c->out.len;
	if (c->close_sent) {
		/* our close frame is out: the connection ends when the
		 * peer's comes, or after a while without it */
		if (unsent)
			lws_callback_on_writable(c->wsi);
		else if (c->close_rcvd)
			return -1;
		if (!c->close_deadline)
			c->close_deadline = now_ms() + CLOSE_WAIT_MS;
		return 0;
	}
	if (unsent || c->qn || c->pong_due || c->ping_due || c->hs.len ||
	    c->closing)
		lws_callback_on_writable(c->wsi);
	return 0;
}

/* ---- pausing ---- */

void
conn_pause(struct conn *c, int why, int on)
{
	unsigned char old = c->paused;

	if (on)
		c->paused |= (unsigned char)why;
	else
		c->paused &= (unsigned char)~why;
	if (!old == !c->paused || !c->wsi)
		return;
	lws_rx_flow_control(c->wsi, !c->paused);
	if (old && !c->paused)
		ws_resume(c);	/* what was read before the pause */
}

/* Only logged-in connections write to stdout (and a login one line), so
 * only they are paused: a login still works while stdout is behind. */
void
rx_pause_all(int pause)
{
	struct conn *c, *next;

	rx_paused = pause;
	for (c = conns; c; c = next) {
		next = c->next;
		if (c->state == S_AUTH && !c->closing)
			conn_pause(c, PAUSE_OUT, pause);
	}
}

/* ---- accounts ---- */

struct acct *
acct_get(const char *did)
{
	struct acct **pp = &acctab[str_hash(did) & acctab_mask], *a;

	for (a = *pp; a; a = a->next)
		if (strcmp(a->did, did) == 0)
			return a;
	a = xcalloc(1, sizeof(*a));
	snprintf(a->did, sizeof(a->did), "%s", did);
	a->next = *pp;
	*pp = a;
	n_accts++;
	return a;
}

static void
acct_maybe_free(struct acct *a)
{
	struct acct **pp;

	if (a->conns || a->inflight)
		return;
	for (pp = &acctab[str_hash(a->did) & acctab_mask]; *pp;
	    pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			free(a);
			n_accts--;
			return;
		}
}

/* a sent a request now: note it among the recent DIDs. */
void
acct_active(struct acct *a, int64_t now)
{
	if (strcmp(recent[0].did, a->did) == 0) {
		recent[0].at = now;
		return;
	}
	recent[1] = recent[0];
	snprintf(recent[0].did, sizeof(recent[0].did), "%s", a->did);
	recent[0].at = now;
}

/*
 * Whether another DID than a's has asked the node for something in the
 * last second (or has a request in it): then a gets only its share,
 * max_did_inflight, and the rest is answered busy.  Alone, a DID is held
 * back only by its connections' shares of max_inflight (infl_full), so one
 * user's bulk work runs at full speed on an otherwise idle node.
 */
int
acct_contended(const struct acct *a, int64_t now)
{
	for (int i = 0; i < 2; i++)
		if (recent[i].did[0] && strcmp(recent[i].did, a->did) != 0 &&
		    now - recent[i].at < 1000)
			return 1;
	return 0;
}

size_t
acct_count(void)
{
	return n_accts;
}

/* ---- requests in the node ---- */

/*
 * Reading a connection pauses while its requests fill its share of its
 * DID's max_inflight slots, or while BIG_INFLIGHT of them may answer with
 * a large page.  The share is split among the DID's connections that have
 * requests in the node, so idle ones (a subscriber waiting for events)
 * take nothing from a busy one.  Deep pipelines of small requests (a bulk
 * upload) keep every stage busy; one user's busy connections together
 * queue about as much in the ring as one would, so whoever comes next
 * waits for that much at most; and the answers in flight of a client
 * that reads them fit in its queue.
 */
int
infl_full(const struct conn *c)
{
	size_t n = c->acct ? c->acct->busy + (c->ninfl == 0) : 1;
	size_t share = n > 1 ? max_inflight / n : max_inflight;

	return c->ninfl >= share ||
	    c->nbig >= (share < BIG_INFLIGHT ? share : BIG_INFLIGHT);
}

/* The slot of request r of c, or NULL.  A request's slot is the one its
 * number points at when that was free, so a lookup rarely scans. */
static struct infl *
infl_find(const struct conn *c, int64_t r)
{
	size_t h = (size_t)r % max_inflight;

	if (!c->infl)
		return NULL;
	if (c->infl[h].r == r)
		return &c->infl[h];
	for (size_t i = 0; i < max_inflight; i++)
		if (c->infl[i].r == r)
			return &c->infl[i];
	return NULL;
}

/* Note a request of c with JSON-RPC id (borrowed; invalid for a
 * notification), whose answer may be large if big, going into the node;
 * returns its bus number. */
int64_t
infl_add(struct conn *c, jv id, int big)
{
	struct infl *s = NULL;
	int64_t r = next_r;

	if (!c->infl)
		c->infl = xcalloc(max_inflight, sizeof(*c->infl));
	if (c->infl[(size_t)r % max_inflight].r == 0)
		s = &c->infl[(size_t)r % max_inflight];
	for (size_t i = 0; !s && i < max_inflight; i++)
		if (c->infl[i].r == 0)
			s = &c->infl[i];
	if (!s)
		return 0;	/* the caller checked infl_full */
	s->r = next_r++;
	s->deadline = now_ms() + (int64_t)request_timeout * 1000;
	s->id = jv_is_valid(id) ? canon_string(id) : NULL;
	s->big = big;
	if (c->ninfl++ == 0 && c->acct)
		c->acct->busy++;
	c->nbig += big != 0;
	if (c->acct)
		c->acct->inflight++;
	if (infl_full(c))
		conn_pause(c, PAUSE_INFL, 1);
	return s->r;
}

static void
slot_free(struct conn *c, struct infl *s)
{
	free(s->id);
	s->id = NULL;
	s->r = 0;
	if (--c->ninfl == 0 && c->acct && c->acct->busy)
		c->acct->busy--;
	if (s->big)
		c->nbig--;
	s->big = 0;
	if (c->acct && c->acct->inflight)
		c->acct->inflight--;
}

/* The node is done with request r of c (answered or not). */
void
infl_done(struct conn *c, int64_t r)
{
	struct infl *s = infl_find(c, r);

	if (!s)
		return;
	slot_free(c, s);
	if (!c->closing && !infl_full(c))
		conn_pause(c, PAUSE_INFL, 0);
}

/* Answer requests that stayed in the node past their deadline (a stage
 * crashed with them, or is stuck), send pings on idle connections, and
 * cut those that stopped answering or never close. */
void
conn_tick(int64_t now)
{
	struct conn *c, *next;

	for (c = conns; c; c = next) {
		next = c->next;
		if (c->ninfl && c->infl)
			for (size_t i = 0; i < max_inflight; i++) {
				struct infl *s = &c->infl[i];
				jv id;

				if (!s->r || s->deadline > now)
					continue;
				if (s->id) {
					id = canon_parse(s->id, strlen(s->id));
					send_error(c, id, E_INTERNAL, "the node "
					    "did not finish the request in "
					    "time; it may or may not have "
					    "taken effect");
				}
				warn("connection %lld: request %lld timed out",
				    (long long)c->id, (long long)s->r);
				slot_free(c, s);
				if (!c->closing && !infl_full(c))
					conn_pause(c, PAUSE_INFL, 0);
			}
		if (!c->wsi || c->state == S_DIALING)
			continue;
		if (c->close_deadline && now > c->close_deadline) {
			conn_drop(c);
			continue;
		}
		if (c->state != S_AUTH && !c->closing &&
		    now > c->login_deadline) {
			if (c->outbound)
				emit_conn_fail(c, "login timed out");
			conn_close(c, 1008, "login timeout", 1);
			continue;
		}
		if (c->state == S_UPGRADE || c->closing)
			continue;
		if (now - c->last_rx > (int64_t)(2 * ping_s + 10) * 1000) {
			warn("connection %lld: silent for %ds, dropped",
			    (long long)c->id, 2 * ping_s + 10);
			conn_drop(c);
		} else if (now - c->last_rx > (int64_t)ping_s * 1000 &&
		    !c->ping_out) {
			c->ping_due = 1;
			c->ping_out = 1;
			lws_callback_on_writable(c->wsi);
		}
	}
}

/* Whether an answer for request r of c may go out; it is counted done. */
int
conn_answer_ok(struct conn *c, int64_t r)
{
	if (!infl_find(c, r))
		return 0;
	infl_done(c, r);
	return 1;
}

void
acct_release(struct conn *c)
{
	struct acct *a = c->acct;

	if (!a)
		return;
	a->conns--;
	if (c->ninfl && a->busy)
		a->busy--;
	if (a->inflight >= c->ninfl)
		a->inflight -= c->ninfl;
	else
		a->inflight = 0;
	c->acct = NULL;
	acct_maybe_free(a);
}

void
conn_stats(size_t *clients, size_t *nodes, size_t *subs, size_t *infl)
{
	struct conn *c;

	*clients = *nodes = *subs = *infl = 0;
	for (c = conns; c; c = c->next) {
		if (c->state != S_AUTH)
			continue;
		if (c->node_role)
			(*nodes)++;
		else
			(*clients)++;
		*subs += c->nsubs;
		*infl += c->ninfl;
	}
}

/* c's connection is over: report it, forget it.  wsi is c's (or NULL). */
void
conn_gone(struct lws *wsi, struct conn *c, const char *why)
{
	struct conn **pp;

	if (wsi)
		lws_set_opaque_user_data(wsi, NULL);
	if (c->outbound && c->state != S_AUTH)
		emit_conn_fail(c, why ? why : "closed during login");
	else if (c->state == S_AUTH)
		emit_conn_close(c);
	if (c->id > 0)
		for (pp = &idtab[id_slot(c->id)]; *pp; pp = &(*pp)->hnext)
			if (*pp == c) {
				*pp = c->hnext;
				break;
			}
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->outbound)
		n_outbound--;
	else if (c->id > 0)
		n_inbound--;
	dial_forget(c);
	acct_release(c);
	queue_free(c, 0);
	subs_drop(c);
	if (c->infl) {
		for (size_t i = 0; i < max_inflight; i++)
			free(c->infl[i].id);
		free(c->infl);
	}
	buf_free(&c->in);
	buf_free(&c->frag);
	buf_free(&c->hs);
	buf_free(&c->out);
	free(c->url);
	free(c->expect);
	free(c->close_reason);
	free(c);
}

void
conn_free_buffers(void)
{
	buf_free(&scratch);
	buf_free(&wbuf);
	free(idtab);
	for (size_t i = 0; i <= acctab_mask; i++)
		while (acctab[i]) {
			struct acct *a = acctab[i];
			acctab[i] = a->next;
			free(a);
		}
	free(acctab);
}
