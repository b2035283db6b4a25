/*
 * ns-client: the connection.  The libwebsockets callback, the node's
 * challenge and the login, the queue of messages to send, the ring of
 * requests in flight with their busy retries, the timers, and for stream
 * push, dialing again when the connection drops.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "canon.h"
#include "jsonl.h"
#include "msg.h"
#include "neterr.h"
#include "sig.h"
#include "client.h"

/* "host:port" of an address as a node names itself: host:port, host
 * (port 7700), or a ws:// or wss:// URL.  Returns 0 or -1. */
static int
addr_norm(const char *a, char *out, size_t outsz)
{
	const char *p = a, *e, *colon;
	int port = 7700;

	if (strncasecmp(a, "ws://", 5) == 0) {
		p = a + 5;
		port = 80;
	} else if (strncasecmp(a, "wss://", 6) == 0) {
		p = a + 6;
		port = 443;
	}
	e = p + strcspn(p, "/?#");
	if (*p == '[') {
		colon = memchr(p, ']', e - p);
		if (!colon)
			return -1;
		colon = colon + 1 < e && colon[1] == ':' ? colon + 1 : NULL;
	} else
		colon = memchr(p, ':', e - p);
	if (colon) {
		if ((size_t)(e - p) >= outsz)
			return -1;
		snprintf(out, outsz, "%.*s", (int)(e - p), p);
	} else if ((size_t)(e - p) + 7 >= outsz)
		return -1;
	else
		snprintf(out, outsz, "%.*s:%d", (int)(e - p), p, port);
	return 0;
}

/* --- output queue and requests ------------------------------------------- */

void
outq_push(struct buf *b)
{
	struct outmsg *m;

	m = xmalloc(sizeof(*m) + LWS_PRE + b->len);
	m->next = NULL;
	m->len = b->len;
	memcpy(m->data + LWS_PRE, b->p, b->len);
	*g.outq_tail = m;
	g.outq_tail = &m->next;
}

void
outq_free(void)
{
	struct outmsg *m;

	while ((m = g.outq)) {
		g.outq = m->next;
		free(m);
	}
	g.outq_tail = &g.outq;
}

int
slot_free_for_next(void)
{
	return !g.slots[g.next_wire % g.cap].used;
}

struct slot *
slot_take(enum kind kind, const char *method)
{
	struct slot *s = &g.slots[g.next_wire % g.cap];

	s->used = 1;
	s->answered = 0;
	s->tries = 1;
	s->again = 0;
	buf_reset(&s->req);
	s->wire = g.next_wire++;
	s->kind = kind;
	clean(s->method, sizeof(s->method), method, sizeof(s->method) - 1);
	s->sent = now_s();
	s->uid = jv_invalid();
	s->msg = jv_invalid();
	g.used++;
	return s;
}

void
slot_release(struct slot *s)
{
	jv_free(s->uid);
	jv_free(s->msg);
	s->uid = s->msg = jv_invalid();
	if (s->req.cap > 65536)
		buf_free(&s->req);	/* a big beam's copy goes at once */
	s->used = 0;
	g.used--;
}

/* An error line for an input refused here, in the style of the filters. */
jv
bad_line(const char *code, const char *why, unsigned long line)
{
	jv e = JV_OBJECT(jv_string("error"), jv_string(code),
	    jv_string("msg"), jv_string(why), jv_string("prog"),
	    jv_string(PROG));

	if (line > 0)
		e = jv_object_set(e, jv_string("line"), jv_number(line));
	return e;
}

/* A refused input takes its place in the order of answers. */
void
slot_bad(jv line)
{
	struct slot *s = slot_take(K_BAD, "");

	s->answered = 1;
	s->msg = line;
	if (g.cmd == C_RPC) {
		handle(s);
		slot_release(s);
	}
}

/* Send msg (consumed, an object without "id") as a request of this kind.
 * Returns its slot, or NULL if msg cannot be sent (reported as K_BAD). */
struct slot *
send_msg(jv msg, enum kind kind, const char *method, unsigned long line)
{
	static struct buf b;
	struct slot *s;

	msg = jv_object_set(msg, jv_string("jsonrpc"), jv_string("2.0"));
	msg = jv_object_set(msg, jv_string("id"), jv_number(g.next_wire));
	buf_reset(&b);
	if (canon_dump(msg, NULL, &b) != 0 || b.len > MSG_MAX) {
		slot_bad(bad_line(b.len > MSG_MAX ? "too_large" : "bad_input",
		    b.len > MSG_MAX ? "request over 1 MiB" :
		    "not representable in RFC 8785", line));
		jv_free(msg);
		return NULL;
	}
	jv_free(msg);
	s = slot_take(kind, method);
	outq_push(&b);
	/* lws_write masks what it sends in place: keep a copy to send again
	 * when the node is busy (rpc prints busy as it is) */
	if (kind != K_RPC)
		buf_add(&s->req, b.p, b.len);
	return s;
}

struct slot *
send_req(const char *method, jv params, enum kind kind)
{
	return send_msg(JV_OBJECT(jv_string("method"), jv_string(method),
	    jv_string("params"), params), kind, method, 0);
}

/* ev (consumed) with author and ts set, signed by the user. */
jv
sign_event(jv ev)
{
	ev = jv_object_set(ev, jv_string("author"), jv_string(g.key->did));
	ev = jv_object_set(ev, jv_string("ts"), jv_number(jsonl_now_ms()));
	return sig_attach(ev, g.key);
}

jv
node_fields(jv ev)
{
	ev = jv_object_set(ev, jv_string("node"), jv_copy(g.node));
	return jv_object_set(ev, jv_string("address"), jv_copy(g.address));
}

/* Close the connection (cleanly once it is up) and leave the loop. */
void
begin_close(void)
{
	int up = g.state >= S_CHALLENGE;

	if (g.state == S_CLOSING)
		return;
	g.state = S_CLOSING;
	g.closing_since = now_s();
	outq_free();
	if (g.wsi && up)
		lws_callback_on_writable(g.wsi);
	else
		g.quit = 1;
}

/* 1 and *wait (seconds) if msg is a busy error: after data.retryAfter
 * milliseconds, capped; 0 otherwise. */
int
busy_wait(jv msg, double *wait)
{
	jv err = jsonl_get(msg, "error"), data = jsonl_get(err, "data");
	const char *reason = jsonl_str(data, "reason");
	int64_t code = 0;
	int busy;

	jsonl_int(err, "code", &code);
	busy = code == -32008 || (reason && strcmp(reason, "busy") == 0);
	*wait = BUSY_WAIT;
	if (jsonl_kind(data, "retryAfter") == JV_KIND_NUMBER) {
		jv ra = jsonl_get(data, "retryAfter");
		double ms = jv_number_value(ra);
		jv_free(ra);
		if (ms >= 0 && ms <= BUSY_WAIT_MAX * 1000)
			*wait = ms / 1000;
		else if (ms > BUSY_WAIT_MAX * 1000)
			*wait = BUSY_WAIT_MAX;
	}
	jv_free(data);
	jv_free(err);
	return busy;
}

/* Send again the requests whose busy wait is over. */
static void
send_again(double now)
{
	struct slot *s;

	for (int64_t i = 0; i < g.cap; i++) {
		s = &g.slots[i];
		if (!s->used || s->answered || s->again == 0 || now < s->again)
			continue;
		s->again = 0;
		s->tries++;
		s->sent = now;
		outq_push(&s->req);
	}
	if (g.outq && g.wsi)
		lws_callback_on_writable(g.wsi);
}

static void
on_response(jv msg)
{
	int64_t id;
	struct slot *s;
	double wait;

	if (jsonl_int(msg, "id", &id) != 0) {
		/* id null: the node could not read a request at all */
		if (jsonl_has(msg, "error")) {
			warn("the node refused a message it could not read");
			failed();
			if (g.raw || g.cmd == C_RPC)
				emit(jv_copy(msg));
		}
		jv_free(msg);
		return;
	}
	if (id < 0 && g.cmd == C_STREAM_PUSH) {
		/* chunk n goes as request -n, outside the ring */
		if (id != INT64_MIN)
			stream_push_answer(-id, msg);
		jv_free(msg);
		return;
	}
	s = id >= 0 ? &g.slots[id % g.cap] : NULL;
	if (!s || !s->used || s->wire != id || s->answered) {
		jv_free(msg);
		return;
	}
	if (!jsonl_has(msg, "result") && !jsonl_has(msg, "error")) {
		jv_free(msg);
		fatal("%s: the node sent an answer without result or error",
		    s->method);
		return;
	}
	if (s->kind != K_RPC && s->tries < BUSY_TRIES && busy_wait(msg, &wait)) {
		/* the same request again later; answers keep their order, as
		 * the ones after it wait for its turn */
		s->again = now_s() + wait;
		jv_free(msg);
		return;
	}
	s->answered = 1;
	s->msg = msg;
	if (g.cmd == C_RPC) {
		handle(s);
		slot_release(s);
		return;
	}
	drain();
}

static void
on_challenge(jv ch)
{
	static struct buf scratch;
	char want[300], have[300], why_buf[300];
	const char *why, *type, *nonce, *node, *addr;
	struct slot *s;
	jv login;

	type = jsonl_str(ch, "type");
	nonce = jsonl_str(ch, "nonce");
	node = jsonl_str(ch, "node");
	addr = jsonl_str(ch, "address");
	if (!type || strcmp(type, "auth.challenge") != 0 || !nonce || !node ||
	    !addr || jsonl_has(ch, "author")) {
		fatal("%s: the node's challenge is malformed", g.url);
		return;
	}
	if (sig_verify(ch, &scratch, &why) != 0) {
		fatal("%s: the node's challenge does not verify: %s", g.url,
		    why);
		return;
	}
	if (g.want_node && strcmp(node, g.want_node) != 0) {
		neterr_wrong_node(why_buf, sizeof(why_buf), node, g.want_node);
		fatal("%s: %s", g.url, why_buf);
		return;
	}
	if (!g.any_address && (addr_norm(addr, have, sizeof(have)) != 0 ||
	    addr_norm(g.hostport, want, sizeof(want)) != 0 ||
	    strcasecmp(have, want) != 0)) {
		neterr_wrong_address(why_buf, sizeof(why_buf), addr);
		fatal("%s: %s, or use --any-address to accept it", g.url,
		    why_buf);
		return;
	}
	jv_free(g.node);
	jv_free(g.address);
	g.node = jv_string(node);
	g.address = jv_string(addr);
	login = JV_OBJECT(jv_string("type"), jv_string("auth.login"),
	    jv_string("nonce"), jv_string(nonce), jv_string("node"),
	    jv_string(node), jv_string("address"), jv_string(addr),
	    jv_string("role"), jv_string("client"));
	s = send_req("auth.login", sign_event(login), K_LOGIN);
	if (!s) {
		fatal("login: cannot send the login");
		return;
	}
	g.state = S_LOGIN;
	lws_callback_on_writable(g.wsi);
}

static void
on_notification(jv msg, const char *method)
{
	jv params;

	if (g.state == S_CHALLENGE) {
		if (strcmp(method, "auth.challenge") == 0) {
			params = jsonl_get(msg, "params");
			on_challenge(params);
			jv_free(params);
		}
		return;
	}
	if (g.cmd == C_RPC) {
		emit(jv_copy(msg));
		return;
	}
	if (g.cmd == C_STREAM_WATCH && g.state == S_READY) {
		stream_notification(msg, method);
		return;
	}
	if (g.cmd != C_SUBSCRIBE || g.state != S_READY)
		return;
	if (strcmp(method, "unsubscribed") == 0)
		on_unsubscribed(msg);
	else if (strcmp(method, "event") == 0 || strcmp(method, "chunk") == 0)
		on_event(msg, method);
}

static void
on_message(const char *p, size_t len)
{
	jv msg = canon_parse(p, len);
	const char *method;

	if (!jv_is_valid(msg) || jv_get_kind(msg) != JV_KIND_OBJECT) {
		jv_free(msg);
		fatal("the node sent a message that is not a JSON object");
		return;
	}
	if ((method = jsonl_str(msg, "method")) && !jsonl_has(msg, "id"))
		on_notification(msg, method);
	else if (g.state >= S_LOGIN)
		on_response(jv_copy(msg));
	pump();
	jv_free(msg);
}

static int
on_writeable(struct lws *wsi)
{
	struct outmsg *m;
	int n;

	if (g.state == S_CLOSING) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
		    (unsigned char *)"done", 4);
		return -1;
	}
	while ((m = g.outq)) {
		g.outq = m->next;
		if (!g.outq)
			g.outq_tail = &g.outq;
		n = lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
		free(m);
		if (n < 0) {
			fatal("%s: send failed", g.url);
			return -1;
		}
		if (lws_send_pipe_choked(wsi))
			break;
	}
	if (g.outq)
		lws_callback_on_writable(wsi);
	return 0;
}

int
conn_open(void)
{
	struct lws_client_connect_info ci;

	memset(&ci, 0, sizeof(ci));
	ci.context = g.ctx;
	ci.address = g.host;
	ci.port = g.port;
	ci.path = g.path;
	ci.host = g.hostport;
	ci.origin = g.hostport;
	ci.ssl_connection = g.tls ? LCCSCF_USE_SSL : 0;
	ci.local_protocol_name = PROG;
	ci.pwsi = &g.wsi;
	/* a name that does not resolve fails here, without a callback */
	return lws_client_connect_via_info(&ci) ? 0 : -1;
}

/* Forget the connection that dropped: what was queued for it, the
 * requests of the ring (stream.c sends again what it needs), a message
 * half received. */
static void
conn_reset(void)
{
	outq_free();
	for (int64_t i = 0; i < g.cap; i++)
		if (g.slots[i].used)
			slot_release(&g.slots[i]);
	g.head = g.next_wire;
	buf_reset(&g.rx);
	g.close_code = 0;
	g.close_reason[0] = '\0';
	g.tcp_up = 0;
	g.wsi = NULL;
	g.state = S_CONNECTING;
}

/* The connection dropped, or an attempt to make it again failed, for why.
 * 1 if it will be made again (stream push, once logged in, for up to
 * --retry seconds); 0 if it is the end. */
static int
conn_lost(const char *why)
{
	double now = now_s();

	if (g.cmd != C_STREAM_PUSH || !g.ready_once || g.retry <= 0 ||
	    g.state == S_CLOSING || g.status == 2)
		return 0;
	if (!g.down_since) {
		g.down_since = now;
		g.backoff = RETRY_FIRST;
		if (g.verbose)
			warn("%s: %s: connecting again", g.url, why);
		stream_conn_lost();
	}
	snprintf(g.down_why, sizeof(g.down_why), "%s", why);
	conn_reset();
	/* 75 to 125 %, so that pushers that lost the same node do not all
	 * come back at once */
	g.retry_at = now + g.backoff * (0.75 + 0.5 * randombytes_uniform(1001) /
	    1000.0);
	g.backoff = g.backoff * 2 < RETRY_MAX ? g.backoff * 2 : RETRY_MAX;
	return 1;
}

/* While the connection is down: dial again when it is time, give up
 * after --retry seconds. */
static void
conn_retry(double now)
{
	if (now - g.down_since > g.retry) {
		fatal("%s: %s; gave up after %g s", g.url, g.down_why,
		    g.retry);
		return;
	}
	if (g.wsi || now < g.retry_at)
		return;
	g.retry_at = now + RETRY_MAX;	/* until the attempt reports */
	if (conn_open() != 0)
		conn_lost(neterr_what(NETERR_NOHOST));
}

static void
peer_closed(const unsigned char *in, size_t len)
{
	if (len >= 2)
		g.close_code = in[0] << 8 | in[1];
	if (len > 2) {
		char tmp[124];
		size_t n = len - 2 < sizeof(tmp) - 1 ? len - 2 :
		    sizeof(tmp) - 1;
		memcpy(tmp, in + 2, n);
		tmp[n] = '\0';
		clean(g.close_reason, sizeof(g.close_reason), tmp, 80);
	}
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		/* reported after the loop, where finding out more may block */
		g.wsi = NULL;
		snprintf(g.cce, sizeof(g.cce), "%.*s", in ? (int)len : 0,
		    in ? (const char *)in : "");
		if (conn_lost(neterr_what(neterr_from_lws(g.cce))))
			break;
		g.conn_failed = 1;
		g.quit = 1;
		break;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		g.tcp_up = 1;
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		g.state = S_CHALLENGE;
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (lws_frame_is_binary(wsi)) {
			fatal("%s: the node sent a binary frame", g.url);
			return -1;
		}
		if (g.rx.len + len > MSG_MAX) {
			fatal("%s: the node sent a message over 1 MiB", g.url);
			lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
			    NULL, 0);
			return -1;
		}
		buf_add(&g.rx, in, len);
		if (!lws_is_final_fragment(wsi))
			break;
		on_message(g.rx.p, g.rx.len);
		buf_reset(&g.rx);
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_writeable(wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		peer_closed(in, len);
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		g.wsi = NULL;
		if (g.state != S_CLOSING) {
			char why[300];
			neterr_closed(why, sizeof(why), g.close_code,
			    g.close_reason);
			if (conn_lost(why))
				break;
			fatal("%s: %s", g.url, why);
		}
		g.quit = 1;
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		pump();
		break;
	default:
		break;
	}
	return 0;
}

/* libwebsockets' error lines are kept, not printed, so that a failure
 * makes one line; the TLS one names what is wrong with a certificate. */
void
lws_log(int level, const char *line)
{
	size_t n = strcspn(line, "\n");
	char tmp[sizeof(g.lws_err)];

	(void)level;
	snprintf(tmp, sizeof(tmp), "%.*s", (int)n, line);
	clean(g.lws_err, sizeof(g.lws_err), tmp, sizeof(g.lws_err) - 1);
}

/* Say why no connection was made: after the loop, as finding out may
 * block, and libwebsockets says "Unable to connect" for most causes. */
void
report_connect_failure(void)
{
	enum neterr e = neterr_from_lws(g.cce);
	const char *p;
	char detail[100] = "", cce[100];
	double left = g.timeout - (now_s() - g.start);
	int r;

	if (e == NETERR_CONNECT && !g.tcp_up) {
		r = left * 1000 < PROBE_MS ? (int)(left * 1000) : PROBE_MS;
		if ((r = neterr_probe(g.host, g.port, r < 200 ? 200 : r)) >= 0)
			e = (enum neterr)r;
	}
	if (e == NETERR_TLS && (p = strstr(g.lws_err, "SSL error: ")))
		snprintf(detail, sizeof(detail), "%.*s", (int)strcspn(p + 11,
		    "("), p + 11);
	while (*detail && detail[strlen(detail) - 1] == ' ')
		detail[strlen(detail) - 1] = '\0';
	if (e == NETERR_OTHER) {
		clean(cce, sizeof(cce), g.cce, 80);
		fatal("%s: %s: %s", g.url, cce, neterr_hint(e));
	} else if (*detail)
		fatal("%s: %s (%s): %s", g.url, neterr_what(e), detail,
		    neterr_hint(e));
	else
		fatal("%s: %s", g.url, neterr_str(e));
	g.quit = 1;
}

const struct lws_protocols protocols[] = {
	{ PROG, callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

void
check_times(void)
{
	double now = now_s(), age;
	int64_t i;
	struct slot *s;

	if (gotsig) {
		int sig = gotsig;
		gotsig = 0;
		if (g.state == S_CLOSING)
			g.quit = 1;
		else if ((g.cmd == C_SUBSCRIBE || g.cmd == C_STREAM_WATCH) &&
		    g.state == S_READY)
			begin_close();
		else if (g.cmd == C_STREAM_PUSH && g.state == S_READY &&
		    stream_stop() == 0)
			pump();
		else
			fatal("interrupted by %s", sig == SIGINT ? "SIGINT" :
			    "SIGTERM");
	}
	if (g.state == S_CLOSING) {
		if (now - g.closing_since > CLOSE_WAIT)
			g.quit = 1;
		return;
	}
	if (g.state < S_READY && g.down_since) {
		send_again(now);
		conn_retry(now);
		return;
	}
	if (g.state < S_READY) {
		send_again(now);
		if (now - g.start <= g.timeout)
			return;
		if (!g.tcp_up)
			fatal("%s: timeout: no connection after %g s: %s", g.url,
			    g.timeout, neterr_hint(NETERR_TIMEOUT));
		else if (g.state == S_CONNECTING)
			fatal("%s: timeout: no WebSocket handshake after %g s: "
			    "%s", g.url, g.timeout,
			    neterr_hint(NETERR_HANDSHAKE));
		else if (g.state == S_CHALLENGE)
			fatal("%s: timeout: no challenge after %g s: %s", g.url,
			    g.timeout, neterr_hint(NETERR_HANDSHAKE));
		else
			fatal("%s: timeout: no answer to the login after %g s",
			    g.url, g.timeout);
		return;
	}
	send_again(now);
	for (i = 0; i < g.cap; i++) {
		s = &g.slots[i];
		if (!s->used || s->answered || s->again != 0)
			continue;
		age = now - s->sent;
		if (age > g.timeout) {
			fatal("%s: timeout: no answer after %g s", s->method,
			    g.timeout);
			return;
		}
	}
	if (g.cmd == C_STREAM_PUSH || g.cmd == C_STREAM_WATCH)
		stream_tick(now);
	if (g.cmd == C_SUBSCRIBE && g.timeout_given &&
	    now - g.start > g.timeout) {
		if (g.count > 0)
			fatal("subscribe: timeout: %lld of %lld events after "
			    "%g s", (long long)g.events, (long long)g.count,
			    g.timeout);
		else
			begin_close();
	}
}

void
tick(lws_sorted_usec_list_t *sul)
{
	check_times();
	lws_sul_schedule(g.ctx, 0, sul, tick, TICK_MS * LWS_US_PER_MS);
}
