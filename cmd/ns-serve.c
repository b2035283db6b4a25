/*
 * ns-serve: the node's only pump.  It listens for WebSocket connections,
 * logs clients and nodes in (auth.challenge / auth.login), and turns each
 * JSON-RPC request into one bus line on stdout ({"m":METHOD,"c":C,...}).
 * Lines on stdin ({"to"...}, {"pub"...}, {"sub"...}, {"unsub"...},
 * {"close"...}, {"dial"...}, requests that came all the way round) are
 * carried out.  It never blocks on a socket or on stdout and always drains
 * stdin.  Exit 0 after stdin EOF or SIGTERM/SIGINT, 2 on setup trouble or a
 * failed stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <libwebsockets.h>

#include "b64url.h"
#include "buf.h"
#include "bus.h"
#include "canon.h"
#include "didkey.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

#define PROG "ns-serve"

#define NONCE_LEN	32
#define NONCE_B64	B64URL_LEN(NONCE_LEN)
#define SKEW_MS		(5 * 60 * 1000)
#define SUBS_MAX	256		/* subscriptions per connection */
#define LOGIN_FAILS_MAX	3		/* then the connection is closed */
#define OUT_HIGH	(8u << 20)	/* stdout backlog: pause WS reading */
#define OUT_LOW		(1u << 20)	/* and resume below this */
#define KEEP_MAX	(256u << 10)	/* idle buffers larger than this go */
#define READ_CHUNK	(64u << 10)
#define QUOTE		80		/* untrusted bytes quoted at most */
#define SHUTDOWN_MS	3000		/* to close peers and flush stdout */
#define SLOW_KILL_S	3		/* a closed slow reader is cut after */
#define CLOSE_KILL_S	10		/* a draining close is cut after */
#define CLOSE_TRY_AGAIN	1013		/* lws 4.1 has no name for it */

enum state {
	S_DIALING,		/* outbound: TCP / handshake in progress */
	S_CHALLENGE,		/* outbound: waiting for auth.challenge */
	S_LOGIN_SENT,		/* outbound: waiting for the login answer */
	S_NEW,			/* inbound: challenge sent, not logged in */
	S_AUTH,			/* logged in (either way) */
	S_REJECTED,		/* inbound over --max-conn, being closed */
};

struct msg {			/* one outgoing text message, shared */
	unsigned refs;
	size_t len;
	unsigned char data[];	/* LWS_PRE bytes, then the payload */
};

struct qent {
	struct qent *next;
	struct msg *m;
};

struct space;

struct sub {			/* one connection subscribed to one space */
	struct space *sp;
	struct conn *c;
	struct sub *snext, *sprev;	/* the space's subscribers */
	struct sub *cnext;		/* the connection's subscriptions */
};

struct space {
	struct space *hnext;
	struct sub *subs;
	char name[];
};

struct conn {
	struct lws *wsi;
	int64_t id;			/* 0 for a rejected connection */
	struct conn *next, *prev;	/* every connection */
	struct conn *hnext;		/* id hash chain */
	struct qent *qhead, *qtail;
	size_t qbytes;
	struct buf rx;			/* fragments of the message so far */
	struct sub *subs;
	lws_sorted_usec_list_t sul;	/* login timeout */
	char *url;			/* outbound: what was dialed */
	char *expect;			/* outbound: the node DID expected */
	char *close_reason;
	unsigned short nsubs;
	unsigned short close_code;
	unsigned char state;
	unsigned char outbound;
	unsigned char node_role;	/* logged in as "node" */
	unsigned char closing;		/* close once the queue is sent */
	unsigned char fails;		/* failed logins */
	unsigned char reported;		/* conn.fail written */
	unsigned char paused;
	char did[DIDKEY_MAX];
	char nonce[NONCE_B64 + 1];	/* "" once used */
};

static const char *client_methods[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "space.beam", "space.history",
	"space.members", "space.info", "subscribe", "unsubscribe",
	"beam.get", "beam.delete", "stream.push", NULL,
};

static const char *node_methods[] = {
	"node.submit", "node.broadcast", "node.head", "node.sync",
	"relay.join", "relay.leave", "relay.chunk", NULL,
};

/* Options. */
static char *listen_host;
static int listen_port = 7700;
static char *address;
static size_t max_conn = 1024;
static size_t max_msg = 1 << 20;
static size_t max_queue = 4 << 20;
static int login_timeout = 10;
static int tick_ms = 1000;
static int ping_s = 30;
static const char *port_file;
static int wss_dial;

static struct key *nodekey;
static struct lws_context *ctx;
static struct lws_vhost *vhost, *dial_vhost;
static struct lws *stdin_wsi, *stdout_wsi;
static lws_retry_bo_t retry;

static struct conn *conns;		/* every connection */
static struct conn **idtab;		/* id -> connection */
static size_t idtab_mask;
/*
 * Connection ids start at the start time in microseconds' worth of room
 * (seconds * 10^6), not at 1: answers still travelling round the ring for
 * connections of a previous ns-serve process (one that was restarted) must
 * never reach a new connection that happens to get the same number.
 * Restarts are at least a second apart, so ranges never overlap unless a
 * process accepts a million connections per second of its life.
 * --first-id sets it (tests).
 */
static int64_t next_id = 1;
static long long first_id = -1;
static size_t n_inbound, n_outbound;

static struct space **sptab;
static size_t sptab_size, n_spaces;

static struct buf obuf = BUF_INIT;	/* stdout backlog from ohead on */
static size_t ohead;
static int ofd_flags = -1, ifd_flags = -1;
static int rx_paused;

static struct buf inl = BUF_INIT;	/* stdin: partial line */
static size_t line_max;
static int in_skip;			/* dropping an over-long line */
static int stdin_eof;

static struct buf scratch = BUF_INIT;
static struct buf wbuf = BUF_INIT;	/* outbound copies (masked in place) */
static struct conn *dialing;		/* inside lws_client_connect_via_info */
static struct lws *dial_wsi;

static volatile sig_atomic_t got_signal;
static int shutting, destroying, lws_quiet;
static int64_t shutdown_at;
static lws_sorted_usec_list_t tick_sul;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-serve -k NODEKEY [-l HOST:PORT] [-a ADDRESS] [--port-file FILE]\n"
	    "                [--max-conn N] [--max-msg BYTES] [--max-queue BYTES]\n"
	    "                [--login-timeout SEC] [--tick MS] [--ping SEC] [--wss-dial]\n"
	    "                [--first-id N]\n"
	    "  -k, --key FILE          the node's key file (mode 0600)\n"
	    "  -l, --listen HOST:PORT  where to listen (default 127.0.0.1:7700; port 0: any)\n"
	    "  -a, --address ADDR      the address the node names itself by (default: HOST:PORT)\n"
	    "      --port-file FILE    write the bound port to FILE once listening\n"
	    "      --max-conn N        inbound connections at most (default 1024)\n"
	    "      --max-msg BYTES     largest incoming message (default 1048576)\n"
	    "      --max-queue BYTES   unsent bytes per connection (default 4194304)\n"
	    "      --login-timeout SEC close connections not logged in by then (default 10)\n"
	    "      --tick MS           interval of tick lines (default 1000)\n"
	    "      --ping SEC          ping idle connections after SEC (default 30)\n"
	    "      --first-id N        first connection id (default: start time in s * 10^6)\n"
	    "      --wss-dial          allow dial lines with wss:// URLs (loads TLS)\n"
	    "  -h, --help              this help\n"
	    "      --version           print the version\n");
	exit(status);
}

/* HOST:PORT, [V6]:PORT. */
static void
parse_listen(const char *s)
{
	const char *colon, *h, *he;

	if (*s == '[') {
		he = strchr(s, ']');
		if (!he || he[1] != ':') {
			warn("-l: not HOST:PORT: %.80s", s);
			usage(2);
		}
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s) {
			warn("-l: not HOST:PORT: %.80s", s);
			usage(2);
		}
		h = s;
		he = colon;
	}
	free(listen_host);
	listen_host = xmalloc((size_t)(he - h) + 1);
	memcpy(listen_host, h, (size_t)(he - h));
	listen_host[he - h] = '\0';
	listen_port = (int)xnum("-l port", colon + 1, 0, 65535);
}

/* ---- stdout ---------------------------------------------------------- */

static void
out_flush(void)
{
	ssize_t n;

	while (ohead < obuf.len) {
		n = write(STDOUT_FILENO, obuf.p + ohead, obuf.len - ohead);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			die("stdout:");
		}
		ohead += (size_t)n;
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

static size_t
out_pending(void)
{
	return obuf.len - ohead;
}

/* The line is complete in obuf; write it out if the buffer is large. */
static void
out_line_done(void)
{
	if (out_pending() >= (64u << 10))
		out_flush();
}

/* O_NONBLOCK belongs to the open file description, which others share. */
static void
restore_stdout(void)
{
	if (ofd_flags != -1)
		fcntl(STDOUT_FILENO, F_SETFL, ofd_flags);
	if (ifd_flags != -1)
		fcntl(STDIN_FILENO, F_SETFL, ifd_flags);
}

/* Write what is left, waiting at most ms for a slow reader. */
static void
out_final(int ms)
{
	struct pollfd pfd = { STDOUT_FILENO, POLLOUT, 0 };
	int64_t end = (int64_t)lws_now_usecs() / 1000 + ms;

	for (;;) {
		out_flush();
		if (out_pending() == 0)
			return;
		int left = (int)(end - (int64_t)lws_now_usecs() / 1000);
		if (left <= 0 || poll(&pfd, 1, left) <= 0) {
			warn("stdout: %zu bytes not written at exit",
			    out_pending());
			return;
		}
	}
}

/* ---- messages and queues --------------------------------------------- */

static struct msg *
msg_new(const char *p, size_t len)
{
	struct msg *m = xmalloc(sizeof(*m) + LWS_PRE + len);

	m->refs = 0;
	m->len = len;
	memcpy(m->data + LWS_PRE, p, len);
	return m;
}

static void
msg_unref(struct msg *m)
{
	if (--m->refs == 0)
		free(m);
}

static void
queue_free(struct conn *c)
{
	struct qent *q;

	while ((q = c->qhead)) {
		c->qhead = q->next;
		msg_unref(q->m);
		free(q);
	}
	c->qtail = NULL;
	c->qbytes = 0;
}

/* Close c with code and reason.  Unless now, what is queued goes first. */
static void
conn_close(struct conn *c, int code, const char *reason, int now)
{
	if (c->closing && !now)
		return;
	c->close_code = (unsigned short)code;
	free(c->close_reason);
	c->close_reason = xstrdup(reason);
	c->closing = 1;
	if (now)
		queue_free(c);
	if (!c->wsi)
		return;
	if (c->state == S_DIALING) {
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
		return;
	}
	/* A peer that does not read never makes us writeable: cut it then. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
	    now ? SLOW_KILL_S : CLOSE_KILL_S);
	lws_callback_on_writable(c->wsi);
}

/* Queue m (its reference count is taken here) for c. */
static void
conn_queue(struct conn *c, struct msg *m)
{
	struct qent *q;

	if (c->closing || c->state == S_DIALING) {
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
	q = xmalloc(sizeof(*q));
	q->next = NULL;
	q->m = m;
	m->refs++;
	if (c->qtail)
		c->qtail->next = q;
	else
		c->qhead = q;
	c->qtail = q;
	c->qbytes += m->len;
	lws_callback_on_writable(c->wsi);
}

static void
trim_scratch(void)
{
	if (scratch.cap > KEEP_MAX)
		buf_free(&scratch);
}

/* Send v (consumed) to c as one message. */
static void
send_jv(struct conn *c, jv v)
{
	buf_reset(&scratch);
	if (canon_dump(v, NULL, &scratch) == 0)
		conn_queue(c, msg_new(scratch.p, scratch.len));
	else
		warn("connection %lld: message not representable, dropped",
		    (long long)c->id);
	jv_free(v);
	trim_scratch();
}

/* A JSON-RPC error answer with id (consumed). */
static void
send_error(struct conn *c, jv id, enum bus_err e, const char *message)
{
	jv m = jv_object_set(jv_object(), jv_string("jsonrpc"),
	    jv_string("2.0"));

	m = jv_object_set(m, jv_string("id"), id);
	m = jv_object_set(m, jv_string("error"), bus_error_object(e, message));
	send_jv(c, m);
}

static void
send_result(struct conn *c, jv id, jv result)
{
	jv m = jv_object_set(jv_object(), jv_string("jsonrpc"),
	    jv_string("2.0"));

	m = jv_object_set(m, jv_string("id"), id);
	m = jv_object_set(m, jv_string("result"), result);
	send_jv(c, m);
}

/* Write while the socket takes it; -1 asks lws to close. */
static int
conn_writeable(struct conn *c)
{
	struct qent *q;
	unsigned char *p;
	size_t len;
	int n;

	while (c->qhead && !lws_send_pipe_choked(c->wsi)) {
		q = c->qhead;
		len = q->m->len;
		p = q->m->data + LWS_PRE;
		if (c->outbound && q->m->refs > 1) {
			/* a client masks the payload in place */
			buf_reset(&wbuf);
			buf_grow(&wbuf, LWS_PRE + len);
			memcpy(wbuf.p + LWS_PRE, p, len);
			p = (unsigned char *)wbuf.p + LWS_PRE;
		}
		n = lws_write(c->wsi, p, len, LWS_WRITE_TEXT);
		c->qhead = q->next;
		if (!c->qhead)
			c->qtail = NULL;
		c->qbytes -= len;
		msg_unref(q->m);
		free(q);
		if (n < (int)len)
			return -1;
	}
	if (wbuf.cap > KEEP_MAX)
		buf_free(&wbuf);
	if (c->closing && !c->qhead) {
		const char *r = c->close_reason ? c->close_reason : "";
		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
		    (unsigned char *)r, strnlen(r, 123));
		return -1;
	}
	if (c->qhead)
		lws_callback_on_writable(c->wsi);
	return 0;
}

/* ---- connection table ------------------------------------------------ */

static size_t
id_slot(int64_t id)
{
	return (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 20) &
	    idtab_mask;
}

static struct conn *
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

static struct conn *
conn_new(struct lws *wsi, int outbound, int numbered)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	size_t s;

	c->wsi = wsi;
	c->outbound = (unsigned char)outbound;
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

/* ---- subscriptions --------------------------------------------------- */

static uint64_t
str_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static struct space **
space_slot(const char *name, size_t n)
{
	struct space **pp;

	if (!sptab_size)
		return NULL;
	pp = &sptab[str_hash(name, n) & (sptab_size - 1)];
	for (; *pp; pp = &(*pp)->hnext)
		if (strlen((*pp)->name) == n &&
		    memcmp((*pp)->name, name, n) == 0)
			return pp;
	return pp;
}

static void
space_grow(void)
{
	size_t nsize = sptab_size ? sptab_size * 2 : 64, i;
	struct space **nt = xcalloc(nsize, sizeof(*nt)), *sp, *next;

	for (i = 0; i < sptab_size; i++)
		for (sp = sptab[i]; sp; sp = next) {
			size_t h = str_hash(sp->name, strlen(sp->name)) &
			    (nsize - 1);
			next = sp->hnext;
			sp->hnext = nt[h];
			nt[h] = sp;
		}
	free(sptab);
	sptab = nt;
	sptab_size = nsize;
}

static struct space *
space_find(const char *name, size_t n)
{
	struct space **pp = space_slot(name, n);

	return pp ? *pp : NULL;
}

static void
subscribe(struct conn *c, const char *name)
{
	size_t n = strlen(name);
	struct space **pp, *sp;
	struct sub *s;

	for (s = c->subs; s; s = s->cnext)
		if (strcmp(s->sp->name, name) == 0)
			return;
	if (c->nsubs >= SUBS_MAX) {
		warn("connection %lld: over %d subscriptions, ignored",
		    (long long)c->id, SUBS_MAX);
		return;
	}
	if (n_spaces >= sptab_size)
		space_grow();
	pp = space_slot(name, n);
	if (!(sp = *pp)) {
		sp = xmalloc(sizeof(*sp) + n + 1);
		memcpy(sp->name, name, n + 1);
		sp->subs = NULL;
		sp->hnext = NULL;
		*pp = sp;
		n_spaces++;
	}
	s = xmalloc(sizeof(*s));
	s->sp = sp;
	s->c = c;
	s->sprev = NULL;
	s->snext = sp->subs;
	if (sp->subs)
		sp->subs->sprev = s;
	sp->subs = s;
	s->cnext = c->subs;
	c->subs = s;
	c->nsubs++;
}

static void
sub_free(struct sub *s)
{
	struct space *sp = s->sp, **pp;

	if (s->sprev)
		s->sprev->snext = s->snext;
	else
		sp->subs = s->snext;
	if (s->snext)
		s->snext->sprev = s->sprev;
	free(s);
	if (!sp->subs) {
		pp = space_slot(sp->name, strlen(sp->name));
		*pp = sp->hnext;
		free(sp);
		n_spaces--;
	}
}

static void
unsubscribe(struct conn *c, const char *name)
{
	struct sub **pp, *s;

	for (pp = &c->subs; (s = *pp); pp = &s->cnext)
		if (strcmp(s->sp->name, name) == 0) {
			*pp = s->cnext;
			c->nsubs--;
			sub_free(s);
			return;
		}
}

/* ---- bus lines out --------------------------------------------------- */

/* Append v (consumed) to the stdout backlog. */
static void
out_json(jv v)
{
	size_t mark = obuf.len;

	if (canon_dump(v, NULL, &obuf) != 0) {
		obuf.len = mark;
		buf_adds(&obuf, "null");
	}
	jv_free(v);
}

static void
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

static void
emit_conn_fail(struct conn *c, const char *reason)
{
	if (c->reported)
		return;
	c->reported = 1;
	buf_adds(&obuf, "{\"m\":\"conn.fail\",\"url\":");
	out_json(jv_string(c->url ? c->url : ""));
	buf_adds(&obuf, ",\"reason\":");
	out_json(jv_string(reason));
	buf_adds(&obuf, "}\n");
	out_line_done();
	warn("dial %.80s: %.80s", c->url ? c->url : "", reason);
}

/* ---- pause and resume WS reading ------------------------------------- */

/* Only logged-in connections write to stdout (and a login one line), so
 * only they are paused: a login still works while stdout is behind. */
static void
conn_pause(struct conn *c, int pause)
{
	if (c->paused == pause || (pause && c->state != S_AUTH))
		return;
	c->paused = (unsigned char)pause;
	lws_rx_flow_control(c->wsi, !pause);
}

static void
rx_pause_all(int pause)
{
	struct conn *c;

	rx_paused = pause;
	for (c = conns; c; c = c->next)
		conn_pause(c, pause);
}

/* ---- login ----------------------------------------------------------- */

static void
new_nonce(struct conn *c)
{
	unsigned char raw[NONCE_LEN];

	randombytes_buf(raw, sizeof(raw));
	b64url_encode(raw, sizeof(raw), c->nonce);
}

static void
send_challenge(struct conn *c)
{
	jv ch;

	new_nonce(c);
	ch = jv_object_set(jv_object(), jv_string("type"),
	    jv_string("auth.challenge"));
	ch = jv_object_set(ch, jv_string("nonce"), jv_string(c->nonce));
	ch = jv_object_set(ch, jv_string("node"), jv_string(nodekey->did));
	ch = jv_object_set(ch, jv_string("address"), jv_string(address));
	ch = jv_object_set(ch, jv_string("ts"),
	    jv_number((double)jsonl_now_ms()));
	ch = sig_attach(ch, nodekey);
	if (!jv_is_valid(ch)) {
		jv_free(ch);
		conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
		    "internal error", 1);
		return;
	}
	send_jv(c, bus_notification("auth.challenge", ch));
}

static void
login_timeout_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul);

	if (c->state == S_AUTH || c->closing)
		return;
	if (c->outbound)
		emit_conn_fail(c, "login timed out");
	conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "login timeout", 1);
}

static void
arm_login_timer(struct conn *c)
{
	lws_sul_schedule(ctx, 0, &c->sul, login_timeout_cb,
	    (lws_usec_t)login_timeout * LWS_US_PER_SEC);
}

/* Why params (borrowed) is not a good login on c, or NULL. */
static const char *
login_check(struct conn *c, jv params, const char **role)
{
	static struct buf vs;
	static char why[128];
	const char *s, *reason;
	int64_t ts, now;

	if (jv_get_kind(params) != JV_KIND_OBJECT)
		return "params must be an object";
	if (!(s = jsonl_str(params, "type")) || strcmp(s, "auth.login") != 0)
		return "type is not auth.login";
	if (!(s = jsonl_str(params, "nonce")) || c->nonce[0] == '\0' ||
	    strcmp(s, c->nonce) != 0)
		return "nonce is not the one issued on this connection";
	if (!(s = jsonl_str(params, "node")) || strcmp(s, nodekey->did) != 0)
		return "node is not this node";
	if (!(s = jsonl_str(params, "address")) || strcmp(s, address) != 0)
		return "address is not this node's";
	if (!(s = jsonl_str(params, "role")) ||
	    (strcmp(s, "client") != 0 && strcmp(s, "node") != 0))
		return "role must be client or node";
	*role = s;
	if (!jsonl_str(params, "author"))
		return "author missing or not a string";
	if (jsonl_int(params, "ts", &ts) != 0)
		return "ts missing or not an integer";
	now = jsonl_now_ms();
	if (ts > now + SKEW_MS || ts < now - SKEW_MS)
		return "ts is more than 5 minutes from the node's clock";
	if (sig_verify(params, &vs, &reason) != 0) {
		snprintf(why, sizeof(why), "bad signature: %s", reason);
		return why;
	}
	if (vs.cap > KEEP_MAX)
		buf_free(&vs);
	return NULL;
}

/* auth.login from an inbound connection; msg borrowed, id consumed. */
static void
do_login(struct conn *c, jv msg, jv id)
{
	jv params = jsonl_get(msg, "params"), res;
	const char *why, *role = NULL;

	if (c->state == S_AUTH) {
		send_error(c, id, E_INVALID_REQUEST, "already logged in");
		goto out;
	}
	why = login_check(c, params, &role);
	c->nonce[0] = '\0';		/* burned either way */
	if (why) {
		send_error(c, id, E_UNAUTH, why);
		if (++c->fails >= LOGIN_FAILS_MAX)
			conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			    "too many failed logins", 0);
		else
			send_challenge(c);	/* a retry needs a nonce */
		goto out;
	}
	snprintf(c->did, sizeof(c->did), "%s", jsonl_str(params, "author"));
	c->node_role = strcmp(role, "node") == 0;
	c->state = S_AUTH;
	lws_sul_cancel(&c->sul);
	res = jv_object_set(jv_object(), jv_string("did"), jv_string(c->did));
	res = jv_object_set(res, jv_string("role"), jv_string(role));
	res = jv_object_set(res, jv_string("node"), jv_string(nodekey->did));
	send_result(c, id, res);
	emit_conn_open(c);
	if (rx_paused)
		conn_pause(c, 1);
out:
	jv_free(params);
}

/* ---- dialing --------------------------------------------------------- */

static void
dial_fail(struct conn *c, const char *reason)
{
	emit_conn_fail(c, reason);
	conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "login failed", 1);
}

/* A message on an outbound connection before login; msg borrowed. */
static void
dial_step(struct conn *c, jv msg)
{
	static struct buf vs;
	const char *s, *reason, *nonce, *node, *addr;
	jv ch, login, req, err;
	char why[160];

	if (c->state == S_CHALLENGE) {
		s = jsonl_str(msg, "method");
		if (!s || strcmp(s, "auth.challenge") != 0) {
			dial_fail(c, "first message is not auth.challenge");
			return;
		}
		ch = jsonl_get(msg, "params");
		nonce = jsonl_str(ch, "nonce");
		node = jsonl_str(ch, "node");
		addr = jsonl_str(ch, "address");
		s = jsonl_str(ch, "type");
		if (!s || strcmp(s, "auth.challenge") != 0 || !nonce || !node ||
		    !addr || jsonl_has(ch, "author")) {
			jv_free(ch);
			dial_fail(c, "malformed auth.challenge");
			return;
		}
		if (sig_verify(ch, &vs, &reason) != 0) {
			snprintf(why, sizeof(why), "challenge: %s", reason);
			jv_free(ch);
			dial_fail(c, why);
			return;
		}
		if (c->expect && strcmp(node, c->expect) != 0) {
			jv_free(ch);
			dial_fail(c,
			    "challenge is from another node than expected");
			return;
		}
		snprintf(c->did, sizeof(c->did), "%s", node);
		login = jv_object_set(jv_object(), jv_string("type"),
		    jv_string("auth.login"));
		login = jv_object_set(login, jv_string("nonce"),
		    jv_string(nonce));
		login = jv_object_set(login, jv_string("node"),
		    jv_string(node));
		login = jv_object_set(login, jv_string("address"),
		    jv_string(addr));
		login = jv_object_set(login, jv_string("role"),
		    jv_string("node"));
		login = jv_object_set(login, jv_string("author"),
		    jv_string(nodekey->did));
		login = jv_object_set(login, jv_string("ts"),
		    jv_number((double)jsonl_now_ms()));
		jv_free(ch);
		login = sig_attach(login, nodekey);
		if (!jv_is_valid(login)) {
			jv_free(login);
			dial_fail(c, "cannot sign the login");
			return;
		}
		req = jv_object_set(jv_object(), jv_string("jsonrpc"),
		    jv_string("2.0"));
		req = jv_object_set(req, jv_string("id"), jv_number(1));
		req = jv_object_set(req, jv_string("method"),
		    jv_string("auth.login"));
		req = jv_object_set(req, jv_string("params"), login);
		send_jv(c, req);
		c->state = S_LOGIN_SENT;
		return;
	}
	/* S_LOGIN_SENT: wait for the answer with id 1, ignore the rest */
	if (jsonl_has(msg, "method"))
		return;
	{
		int64_t id;
		if (jsonl_int(msg, "id", &id) != 0 || id != 1)
			return;
	}
	if (jsonl_kind(msg, "result") == JV_KIND_OBJECT) {
		c->state = S_AUTH;
		c->node_role = 1;
		lws_sul_cancel(&c->sul);
		emit_conn_open(c);
		if (rx_paused)
			conn_pause(c, 1);
		return;
	}
	err = jsonl_get(msg, "error");
	s = jsonl_str(err, "message");
	snprintf(why, sizeof(why), "login refused: %.80s", s ? s : "no reason");
	jv_free(err);
	dial_fail(c, why);
}

/* c's connection is over: report it, forget it.  wsi is c's (or NULL). */
static void
conn_gone(struct lws *wsi, struct conn *c, const char *why)
{
	struct sub *s;
	size_t slot;
	struct conn **pp;

	if (wsi)
		lws_set_opaque_user_data(wsi, NULL);
	lws_sul_cancel(&c->sul);
	if (c->outbound && c->state != S_AUTH)
		emit_conn_fail(c, why ? why : "closed during login");
	else if (c->state == S_AUTH) {
		buf_addf(&obuf, "{\"m\":\"conn.close\",\"c\":%lld}\n",
		    (long long)c->id);
		out_line_done();
	}
	if (c->id > 0) {
		slot = id_slot(c->id);
		for (pp = &idtab[slot]; *pp; pp = &(*pp)->hnext)
			if (*pp == c) {
				*pp = c->hnext;
				break;
			}
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
	if (c == dialing)
		dialing = NULL;
	queue_free(c);
	while ((s = c->subs)) {
		c->subs = s->cnext;
		sub_free(s);
	}
	buf_free(&c->rx);
	free(c->url);
	free(c->expect);
	free(c->close_reason);
	free(c);
}

/* Split a dial URL, ws://host[:port][/path], wss://... or host[:port],
 * copied into u (which the results point into).  The port defaults to the
 * protocol's 7700, not to lws's 80 or 443.  0, or -1 if malformed. */
static int
parse_url(const char *url, struct buf *u, int *tls, const char **host,
    int *port, const char **path)
{
	const char *prot, *h, *e, *colon, *rb;
	int p;

	buf_reset(u);
	if (!strstr(url, "://"))
		buf_adds(u, "ws://");
	buf_adds(u, url);
	h = strstr(u->p, "://") + 3;
	e = h + strcspn(h, "/");
	colon = memrchr(h, ':', (size_t)(e - h));
	rb = memrchr(h, ']', (size_t)(e - h));
	if (lws_parse_uri(u->p, &prot, host, &p, path) != 0 || !**host)
		return -1;
	if (strcmp(prot, "ws") != 0 && strcmp(prot, "wss") != 0)
		return -1;
	*tls = strcmp(prot, "wss") == 0;
	*port = colon && (!rb || colon > rb) ? p : 7700;
	return 0;
}

static void
dial(const char *url, const char *expect)
{
	struct lws_client_connect_info ci;
	struct buf u = BUF_INIT;
	const char *host, *path;
	char pathbuf[512];
	struct conn *c, tmp;
	struct lws *wsi;
	int port, tls;

	memset(&tmp, 0, sizeof(tmp));
	tmp.url = (char *)url;
	if (n_outbound >= max_conn) {
		emit_conn_fail(&tmp, "too many connections");
		goto out;
	}
	if (parse_url(url, &u, &tls, &host, &port, &path) != 0) {
		emit_conn_fail(&tmp, "not a ws:// or wss:// URL");
		goto out;
	}
	if (tls && !wss_dial) {
		emit_conn_fail(&tmp, "wss:// needs ns-serve --wss-dial");
		goto out;
	}
	snprintf(pathbuf, sizeof(pathbuf), "/%s", path);

	c = conn_new(NULL, 1, 1);
	c->state = S_DIALING;
	c->url = xstrdup(url);
	if (expect)
		c->expect = xstrdup(expect);

	memset(&ci, 0, sizeof(ci));
	ci.context = ctx;
	ci.vhost = dial_vhost;
	ci.address = host;
	ci.port = port;
	ci.path = pathbuf;
	ci.host = host;
	ci.origin = host;
	ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
	ci.local_protocol_name = "ns";
	ci.opaque_user_data = c;
	ci.retry_and_idle_policy = &retry;
	/* not &c->wsi: lws stores NULL there after a failure that freed c */
	ci.pwsi = &dial_wsi;
	dialing = c;
	wsi = lws_client_connect_via_info(&ci);
	/* a failure inside the call may have reported and freed c already */
	if (dialing == c) {
		if (wsi)
			c->wsi = wsi;
		else
			conn_gone(NULL, c, "cannot connect");
	}
	dialing = NULL;
out:
	buf_free(&u);
}

/* ---- messages from peers --------------------------------------------- */

static int
allowed(const char *m, int node)
{
	const char **p;

	for (p = client_methods; *p; p++)
		if (strcmp(*p, m) == 0)
			return 1;
	if (node)
		for (p = node_methods; *p; p++)
			if (strcmp(*p, m) == 0)
				return 1;
	return 0;
}

/* One whole text message from c. */
static void
handle_msg(struct conn *c, const char *p, size_t len)
{
	jv v = canon_parse(p, len), id = jv_invalid(), params = jv_invalid();
	const char *method, *s;
	jv_kind k;
	int has_id;

	if (!jv_is_valid(v)) {
		jv m = jv_invalid_get_msg(v);
		send_error(c, jv_null(), E_PARSE,
		    jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) :
		    "not JSON");
		jv_free(m);
		return;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		send_error(c, jv_null(), E_INVALID_REQUEST,
		    jv_get_kind(v) == JV_KIND_ARRAY ?
		    "batches are not supported" : "not a JSON-RPC object");
		goto out;
	}
	if (c->outbound && c->state != S_AUTH) {
		dial_step(c, v);
		goto out;
	}
	if (!jsonl_has(v, "method") &&
	    (jsonl_has(v, "result") || jsonl_has(v, "error"))) {
		if (c->state == S_AUTH && c->node_role) {
			buf_addf(&obuf, "{\"m\":\"rpc.response\",\"c\":%lld,"
			    "\"did\":\"%s\",\"role\":\"node\",\"p\":",
			    (long long)c->id, c->did);
			out_json(jv_copy(v));
			buf_adds(&obuf, "}\n");
			out_line_done();
		}
		goto out;
	}
	k = jsonl_kind(v, "id");
	has_id = k != JV_KIND_INVALID;
	if (k == JV_KIND_STRING || k == JV_KIND_NUMBER || k == JV_KIND_NULL)
		id = jsonl_get(v, "id");
	else if (has_id) {
		send_error(c, jv_null(), E_INVALID_REQUEST,
		    "id must be a string, a number or null");
		goto out;
	}
	s = jsonl_str(v, "jsonrpc");
	method = jsonl_str(v, "method");
	if (!s || strcmp(s, "2.0") != 0 || !method) {
		send_error(c, has_id ? jv_copy(id) : jv_null(),
		    E_INVALID_REQUEST, !method ?
		    "method missing or not a string" :
		    "jsonrpc must be \"2.0\"");
		goto out;
	}
	if (!c->outbound && strcmp(method, "auth.login") == 0) {
		if (!has_id)
			send_error(c, jv_null(), E_INVALID_REQUEST,
			    "auth.login needs an id");
		else
			do_login(c, v, jv_copy(id));
		goto out;
	}
	if (c->state != S_AUTH) {
		if (has_id)
			send_error(c, jv_copy(id), E_UNAUTH, "log in first");
		goto out;
	}
	if (!allowed(method, c->node_role)) {
		if (has_id)
			send_error(c, jv_copy(id), E_METHOD, c->node_role ||
			    !allowed(method, 1) ? "method not found" :
			    "method allowed to nodes only");
		goto out;
	}
	k = jsonl_kind(v, "params");
	if (k != JV_KIND_INVALID && k != JV_KIND_OBJECT) {
		if (has_id)
			send_error(c, jv_copy(id), E_PARAMS,
			    "params must be an object");
		goto out;
	}
	/* the cap is known only here; refusing before ns-log answers keeps
	 * a client from believing in a subscription that was dropped */
	if (strcmp(method, "subscribe") == 0 && c->nsubs >= SUBS_MAX) {
		if (has_id)
			send_error(c, jv_copy(id), E_TOO_LARGE,
			    "at most 256 subscriptions per connection");
		goto out;
	}
	params = k == JV_KIND_OBJECT ? jsonl_get(v, "params") : jv_object();
	buf_addf(&obuf,
	    "{\"m\":\"%s\",\"c\":%lld,\"did\":\"%s\",\"role\":\"%s\"",
	    method, (long long)c->id, c->did, c->node_role ? "node" : "client");
	if (has_id) {
		buf_adds(&obuf, ",\"id\":");
		out_json(jv_copy(id));
	}
	buf_adds(&obuf, ",\"p\":");
	out_json(jv_copy(params));
	buf_adds(&obuf, "}\n");
	out_line_done();
out:
	jv_free(params);
	jv_free(id);
	jv_free(v);
}

/* ---- lines on stdin -------------------------------------------------- */

static void
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

static const char msg_key[] = ",\"msg\":";
#define MSG_KEY_LEN (sizeof(msg_key) - 1)

/* {"to":C,"msg":M}: M's bytes go to connection C as they are. */
static void
line_to(const char *p, size_t len)
{
	const char *q = p + 6, *end = p + len;
	int64_t id = raw_int(&q, end);
	struct conn *c;

	if (id < 0 || (size_t)(end - q) <= MSG_KEY_LEN + 1 ||
	    memcmp(q, msg_key, MSG_KEY_LEN) != 0 || end[-1] != '}') {
		warn_line("bad to line", p, len);
		return;
	}
	q += MSG_KEY_LEN;
	if ((c = conn_find(id)))
		conn_queue(c, msg_new(q, (size_t)(end - 1 - q)));
}

/* {"pub":SPACE,"msg":M}: M to every subscriber of SPACE. */
static void
line_pub(const char *p, size_t len)
{
	const char *q = p + 7, *end = p + len, *s, *m;
	struct space *sp;
	struct sub *sb;
	struct msg *msg;
	jv name = jv_invalid();

	if (q >= end || *q != '"')
		goto bad;
	for (s = q + 1; s < end && *s != '"'; s++)
		if (*s == '\\')
			s++;
	if (s >= end)
		goto bad;
	m = s + 1;
	if ((size_t)(end - m) <= MSG_KEY_LEN + 1 ||
	    memcmp(m, msg_key, MSG_KEY_LEN) != 0 || end[-1] != '}')
		goto bad;
	m += MSG_KEY_LEN;
	if (memchr(q + 1, '\\', (size_t)(s - q - 1)))  {
		name = canon_parse(q, (size_t)(s + 1 - q));
		if (jv_get_kind(name) != JV_KIND_STRING)
			goto bad;
		sp = space_find(jv_string_value(name),
		    (size_t)jv_string_length_bytes(jv_copy(name)));
	} else
		sp = space_find(q + 1, (size_t)(s - q - 1));
	jv_free(name);
	if (!sp)
		return;
	msg = msg_new(m, (size_t)(end - 1 - m));
	msg->refs = 1;		/* held while the list is walked */
	for (sb = sp->subs; sb; sb = sb->snext)
		conn_queue(sb->c, msg);
	msg_unref(msg);
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

static int
close_code_ok(int64_t code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1011) || code == 1013 ||
	    (code >= 3000 && code <= 4999);
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
	if (jsonl_int(v, "code", &code) != 0 || !close_code_ok(code))
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
		emit_conn_fail(&tmp, "shutting down");
		goto out;
	}
	dial(url, node);
out:
	jv_free(v);
}

/* A request that came all the way round: nobody handled it. */
static void
line_request(const char *p, size_t len)
{
	jv v, id;
	int64_t cid;
	struct conn *c;
	const char *m;
	char why[160];

	if (bus_is(p, len, "tick") || bus_is_prefix(p, len, "conn.") ||
	    bus_is(p, len, "rpc.response"))
		return;
	v = canon_parse(p, len);
	m = jsonl_str(v, "m");
	id = jsonl_get(v, "id");
	if (!m) {
		warn_line("bad request line", p, len);
		goto out;
	}
	if (jsonl_int(v, "c", &cid) != 0 || !jv_is_valid(id))
		goto out;
	if (!(c = conn_find(cid)))
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
	else
		warn_line("unknown bus line", p, len);
	trim_scratch();
}

/* Take every complete line in inl; keep the partial one. */
static void
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
		if ((size_t)(nl - inl.p) - start > line_max)
			warn("bus line over %zu bytes skipped", line_max);
		else
			handle_line(inl.p + start,
			    (size_t)(nl - inl.p) - start);
		start = from = (size_t)(nl - inl.p) + 1;
	}
	if (inl.len - start > line_max) {
		warn("bus line over %zu bytes skipped", line_max);
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
static int
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

/* ---- shutdown -------------------------------------------------------- */

static void
start_shutdown(void)
{
	struct conn *c, *next;

	if (shutting)
		return;
	shutting = 1;
	shutdown_at = (int64_t)(lws_now_usecs() / 1000) + SHUTDOWN_MS;
	for (c = conns; c; c = next) {
		next = c->next;
		if (c->state == S_DIALING) {
			if (c->wsi)
				conn_close(c, 1001, "going away", 1);
		} else
			conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY,
			    "going away", 0);
	}
}

/* ---- lws callbacks --------------------------------------------------- */

static void
on_established(struct lws *wsi)
{
	struct conn *c;

	if (shutting || n_inbound >= max_conn) {
		c = conn_new(wsi, 0, 0);
		c->state = S_REJECTED;
		lws_set_opaque_user_data(wsi, c);
		conn_close(c, shutting ? LWS_CLOSE_STATUS_GOINGAWAY :
		    CLOSE_TRY_AGAIN, shutting ? "going away" :
		    "too many connections", 1);
		return;
	}
	c = conn_new(wsi, 0, 1);
	c->state = S_NEW;
	lws_set_opaque_user_data(wsi, c);
	arm_login_timer(c);
	send_challenge(c);
}

static int
on_receive(struct lws *wsi, struct conn *c, const char *in, size_t len)
{
	if (c->closing)
		return 0;
	if (!in)		/* an empty (final) fragment */
		in = "";
	if (lws_frame_is_binary(wsi)) {
		static const char r[] = "binary frames are not accepted";
		lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
		    (unsigned char *)r, sizeof(r) - 1);
		return -1;
	}
	if (c->rx.len + len > max_msg) {
		static const char r[] = "message too large";
		warn("connection %lld: message over %zu bytes, closed",
		    (long long)c->id, max_msg);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
		    (unsigned char *)r, sizeof(r) - 1);
		return -1;
	}
	if (!lws_is_final_fragment(wsi)) {
		buf_add(&c->rx, in, len);
		return 0;
	}
	if (c->rx.len) {
		buf_add(&c->rx, in, len);
		handle_msg(c, c->rx.p, c->rx.len);
		/* c is still alive: handle_msg never frees it */
		if (c->rx.cap > KEEP_MAX)
			buf_free(&c->rx);
		else
			buf_reset(&c->rx);
	} else
		handle_msg(c, in, len);
	return 0;
}

static int
cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		on_established(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (!c)
			return -1;
		c->wsi = wsi;
		c->state = S_CHALLENGE;
		arm_login_timer(c);
		return 0;
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!c)
			return -1;
		return on_receive(wsi, c, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!c)
			return 0;
		return conn_writeable(c);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c) {
			char why[QUOTE + 1];
			snprintf(why, sizeof(why), "%s",
			    in ? (const char *)in : "connection failed");
			conn_gone(wsi, c, why);
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		if (c)
			conn_gone(wsi, c, NULL);
		return 0;
	case LWS_CALLBACK_HTTP:
		/* plain HTTP: this server speaks WebSocket only */
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return -1;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static int
cb_stdio(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi != stdin_wsi)
			return 0;
		if (!stdin_read()) {
			stdin_eof = 1;
			stdin_wsi = NULL;
			return -1;
		}
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (wsi == stdout_wsi)
			out_flush();
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (wsi == stdin_wsi) {
			/* a pipe's hangup can come with data still unread */
			struct stat st;
			if (!destroying && fstat(STDIN_FILENO, &st) == 0 &&
			    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
				while (stdin_read() == 1)
					;
			stdin_eof = 1;
			stdin_wsi = NULL;
		} else if (wsi == stdout_wsi) {
			stdout_wsi = NULL;
			if (!destroying)
				die("stdout: closed by the reader");
		}
		return 0;
	default:
		return 0;
	}
}

static void
tick_cb(lws_sorted_usec_list_t *sul)
{
	/* a tick is dropped while stdout is backed up: a later one follows */
	if (!rx_paused) {
		buf_addf(&obuf, "{\"m\":\"tick\",\"now\":%lld}\n",
		    (long long)jsonl_now_ms());
		out_line_done();
	}
	lws_sul_schedule(ctx, 0, &tick_sul, tick_cb,
	    (lws_usec_t)tick_ms * LWS_US_PER_MS);
}

/* lws's own errors and warnings, as one line each in our format. */
static void
lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	if (lws_quiet)
		return;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	fprintf(stderr, "%s: lws: %.*s\n", prog, (int)(n > 200 ? 200 : n),
	    line);
}

static void
on_signal(int sig)
{
	got_signal = sig;
	if (ctx)
		lws_cancel_service(ctx);
}

/* ---- setup ----------------------------------------------------------- */

static void
write_port_file(int port)
{
	char *tmp = xmalloc(strlen(port_file) + 32);
	FILE *f;

	sprintf(tmp, "%s.%ld.tmp", port_file, (long)getpid());
	if (!(f = fopen(tmp, "w")))
		die("%s:", tmp);
	fprintf(f, "%d\n", port);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
		unlink(tmp);
		die("%s:", tmp);
	}
	if (rename(tmp, port_file) != 0) {
		unlink(tmp);
		die("%s:", port_file);
	}
	free(tmp);
}

/* Why binding host:port fails, or NULL if it works.  lws does not say,
 * and it waits quietly for an address that does not exist (yet). */
static const char *
bind_error(const char *host, int port)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	int fd, one = 1, rc;
	const char *why = NULL;

	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (!host || inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons((uint16_t)port);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return strerror(errno);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = bind(fd, (struct sockaddr *)&a4, sizeof(a4));
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((uint16_t)port);
		fd = socket(AF_INET6, SOCK_STREAM, 0);
		if (fd < 0)
			return strerror(errno);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = bind(fd, (struct sockaddr *)&a6, sizeof(a6));
	} else
		return "not a numeric address";
	if (rc != 0)
		why = strerror(errno);
	close(fd);
	return why;
}

static const struct lws_protocols protocols[] = {
	{ "ns", cb_ws, 0, 0, 0, NULL, 0 },
	{ "ns-stdio", cb_stdio, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "listen", required_argument, NULL, 'l' },
		{ "address", required_argument, NULL, 'a' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "max-conn", required_argument, NULL, 'C' },
		{ "max-msg", required_argument, NULL, 'M' },
		{ "max-queue", required_argument, NULL, 'Q' },
		{ "login-timeout", required_argument, NULL, 'T' },
		{ "tick", required_argument, NULL, 't' },
		{ "ping", required_argument, NULL, 'p' },
		{ "wss-dial", no_argument, NULL, 'W' },
		{ "first-id", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct lws_context_creation_info info, vinfo;
	lws_sock_file_fd_type fd;
	struct sigaction sa;
	const char *keyfile = NULL, *iface, *why;
	char err[256], *hostport;
	int c, port, v6;
	size_t n;

	prog = PROG;
	listen_host = xstrdup("127.0.0.1");
	while ((c = getopt_long(argc, argv, "k:l:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			keyfile = optarg;
			break;
		case 'l':
			parse_listen(optarg);
			break;
		case 'a':
			address = optarg;
			break;
		case 'P':
			port_file = optarg;
			break;
		case 'C':
			max_conn = (size_t)xnum("--max-conn", optarg, 1,
			    1000000);
			break;
		case 'M':
			max_msg = (size_t)xnum("--max-msg", optarg, 256,
			    64 << 20);
			break;
		case 'Q':
			max_queue = (size_t)xnum("--max-queue", optarg, 1024,
			    1ll << 32);
			break;
		case 'T':
			login_timeout = (int)xnum("--login-timeout", optarg, 1,
			    3600);
			break;
		case 't':
			tick_ms = (int)xnum("--tick", optarg, 10, 3600000);
			break;
		case 'p':
			ping_s = (int)xnum("--ping", optarg, 1, 3600);
			break;
		case 'W':
			wss_dial = 1;
			break;
		case 'I':
			first_id = xnum("--first-id", optarg, 1, 1ll << 52);
			break;
		case 'h':
			usage(0);
			break;
		case 'V':
			puts(PROG " " NS_VERSION);
			return 0;
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	if (!keyfile) {
		warn("-k NODEKEY is required");
		usage(2);
	}
	if (address && (!*address || strlen(address) > 255)) {
		warn("-a: empty or over 255 bytes");
		usage(2);
	}
	line_max = max_msg + 4096;
	if (sodium_init() < 0)
		die("sodium_init failed");
	next_id = first_id > 0 ? first_id : (int64_t)time(NULL) * 1000000;
	if (!(nodekey = key_load(keyfile, err, sizeof(err))))
		die("%s", err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (n = 1; n < 2 * max_conn + 2; n <<= 1)
		;
	idtab = xcalloc(n, sizeof(*idtab));
	idtab_mask = n - 1;

	retry.secs_since_valid_ping = (uint16_t)ping_s;
	retry.secs_since_valid_hangup = (uint16_t)(2 * ping_s + 10);

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	memset(&info, 0, sizeof(info));
	v6 = strchr(listen_host, ':') != NULL;
	iface = listen_host;
	if (strcmp(listen_host, "0.0.0.0") == 0 ||
	    strcmp(listen_host, "*") == 0 || strcmp(listen_host, "::") == 0 ||
	    *listen_host == '\0')
		iface = NULL;
	else if (strcmp(listen_host, "localhost") == 0)
		iface = "127.0.0.1";
	/*
	 * Two vhosts: one listens (IPv4 only when the address is, or lws
	 * would listen on every address), the other dials (IPv6 too).
	 */
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
	    LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (wss_dial)		/* OpenSSL and the CA store: ~2 MB more */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.protocols = protocols;
	info.retry_and_idle_policy = &retry;
	info.fd_limit_per_thread = (unsigned)(2 * max_conn + 64);
	info.timeout_secs = 10;
	if ((why = bind_error(iface, listen_port))) {
		warn("listen %s:%d: %s", listen_host, listen_port, why);
		exit(2);
	}
	if (!(ctx = lws_create_context(&info)))
		die("cannot set up libwebsockets");
	vinfo = info;
	vinfo.vhost_name = "dial";
	vinfo.port = CONTEXT_PORT_NO_LISTEN;
	if (!(dial_vhost = lws_create_vhost(ctx, &vinfo)))
		die("cannot set up libwebsockets");
	vinfo = info;
	vinfo.vhost_name = "listen";
	vinfo.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if (iface && !v6)
		vinfo.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	vinfo.port = listen_port;
	vinfo.iface = iface;
	lws_quiet = 1;		/* a failure is reported below, once */
	vhost = lws_create_vhost(ctx, &vinfo);
	lws_quiet = 0;
	port = vhost ? lws_get_vhost_listen_port(vhost) : 0;
	if (!vhost || port <= 0) {
		/* _exit: lws 4.1.6 leaks from a failed vhost; nothing to
		 * flush yet */
		why = bind_error(iface, listen_port);
		warn("listen %s:%d: %s", listen_host, listen_port,
		    why ? why : "cannot listen");
		_exit(2);
	}
	n = strlen(listen_host) + 16;
	hostport = xmalloc(n);
	snprintf(hostport, n, v6 ? "[%s]:%d" : "%s:%d", listen_host, port);
	if (!address)
		address = hostport;

	/* stdout: non-blocking, our own backlog, re-armed from the loop */
	ifd_flags = fcntl(STDIN_FILENO, F_GETFL);
	ofd_flags = fcntl(STDOUT_FILENO, F_GETFL);
	if (ofd_flags == -1)
		die("stdout:");
	atexit(restore_stdout);
	jsonl_big_pipe(STDOUT_FILENO);
	fcntl(STDOUT_FILENO, F_SETFL, ofd_flags | O_NONBLOCK);
	memset(&fd, 0, sizeof(fd));
	fd.filefd = dup(STDOUT_FILENO);	/* lws closes what it adopted */
	if (fd.filefd < 0)
		die("stdout:");
	stdout_wsi = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC,
	    fd, "ns-stdio", NULL);
	if (!stdout_wsi)
		die("stdout: cannot watch it");
	lws_rx_flow_control(stdout_wsi, 0);
	memset(&fd, 0, sizeof(fd));
	fd.filefd = STDIN_FILENO;
	stdin_wsi = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC,
	    fd, "ns-stdio", NULL);
	if (!stdin_wsi)
		die("stdin: cannot watch it");

	if (port_file)
		write_port_file(port);
	warn("listening on %s", hostport);
	lws_sul_schedule(ctx, 0, &tick_sul, tick_cb,
	    (lws_usec_t)tick_ms * LWS_US_PER_MS);

	for (;;) {
		if (lws_service(ctx, 0) < 0)
			break;
		if ((got_signal || stdin_eof) && !shutting)
			start_shutdown();
		out_flush();
		if (!rx_paused && out_pending() > OUT_HIGH) {
			warn("stdout: over %u bytes behind, reading paused",
			    OUT_HIGH);
			rx_pause_all(1);
		} else if (rx_paused && out_pending() < OUT_LOW) {
			warn("stdout: caught up, reading resumed");
			rx_pause_all(0);
		}
		if (out_pending() && stdout_wsi)
			lws_callback_on_writable(stdout_wsi);
		if (shutting && (!conns || (int64_t)(lws_now_usecs() / 1000) >
		    shutdown_at))
			break;
	}
	destroying = 1;
	lws_sul_cancel(&tick_sul);
	lws_context_destroy(ctx);
	while (conns)		/* lws did not call back for these */
		conn_gone(NULL, conns, "shutting down");
	out_final(SHUTDOWN_MS);
	restore_stdout();
	key_free(nodekey);
	free(idtab);
	free(sptab);
	free(hostport);
	free(listen_host);
	buf_free(&obuf);
	buf_free(&inl);
	buf_free(&scratch);
	buf_free(&wbuf);
	return 0;
}
