/*
 * ns-client: a user's side of Northstar, for scripts.
 *
 * Dials a node's WebSocket, checks the node's signed challenge, logs in
 * with the user's key file and runs one COMMAND: each event it submits is
 * signed here, so the secret key never goes to the node.  Every result,
 * envelope and beam comes out as one JSON line on stdout.  beam without a
 * JSON argument, and rpc, read JSON objects on stdin.  A request the node
 * answers busy is sent again after the wait it asks for (but in rpc).
 * Exit 0 if every request succeeded, 1 if the node refused one (its error
 * object is printed) or ended a subscription, 2 on usage, key, connection,
 * login or timeout trouble.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "buf.h"
#include "canon.h"
#include "didkey.h"
#include "event.h"
#include "hash.h"
#include "jsonin.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "neterr.h"
#include "sig.h"

#define PROG		"ns-client"
#define DEFAULT_URL	"ws://127.0.0.1:7700/"
#define DEFAULT_KEY	".config/northstar/user.key"
#define MSG_MAX		(1 << 20)	/* one WebSocket message, both ways */
#define WINDOW_MAX	65536
#define SUB_MAX		256		/* subscriptions per connection */
#define INQ_MAX		16		/* stdin values read ahead */
#define PAGE		100		/* history page asked for */
#define HELD_MAX	10000		/* live events held while paging */
#define TICK_MS		100
#define CLOSE_WAIT	3.0		/* seconds for the closing handshake */
#define PROBE_MS	3000		/* at most, to find why a connect failed */
#define BUSY_TRIES	10		/* sends of a request the node calls busy */
#define BUSY_WAIT	1.0		/* seconds, when it gives no retryAfter */
#define BUSY_WAIT_MAX	10.0		/* seconds, whatever it gives */

enum cmd {
	C_LOGIN, C_CREATE, C_JOIN, C_LEAVE, C_INVITE, C_REMOVE, C_BEAM,
	C_HISTORY, C_MEMBERS, C_INFO, C_SUBSCRIBE, C_GET, C_DELETE, C_RPC
};

static const struct {
	const char *name;
	int min, max;		/* arguments after the command's name */
} cmds[] = {
	[C_LOGIN] =	{ "login", 0, 0 },
	[C_CREATE] =	{ "create", 2, 3 },
	[C_JOIN] =	{ "join", 1, 1 },
	[C_LEAVE] =	{ "leave", 1, 1 },
	[C_INVITE] =	{ "invite", 2, 2 },
	[C_REMOVE] =	{ "remove", 2, 2 },
	[C_BEAM] =	{ "beam", 1, 2 },
	[C_HISTORY] =	{ "history", 1, 1 },
	[C_MEMBERS] =	{ "members", 1, 1 },
	[C_INFO] =	{ "info", 1, 1 },
	[C_SUBSCRIBE] =	{ "subscribe", 1, SUB_MAX },
	[C_GET] =	{ "get", 1, 1 },
	[C_DELETE] =	{ "delete", 1, 1 },
	[C_RPC] =	{ "rpc", 0, 0 },
};

/* What to do with the answer to a request. */
enum kind {
	K_LOGIN, K_PRINT, K_GET, K_HISTORY, K_SUBSCRIBE, K_PAGE, K_RPC, K_BAD
};

/* Connection states, in order. */
enum state {
	S_CONNECTING, S_CHALLENGE, S_LOGIN, S_READY, S_CLOSING
};

/*
 * A request in flight.  Slot i of the ring holds wire id i % cap, so a new
 * request waits while the slot it needs is busy: at most cap requests are
 * outstanding.  In every mode but rpc the answers are handled in request
 * order (msg is kept until the slots before it are done).
 */
struct slot {
	int used, answered;
	int64_t wire;
	enum kind kind;
	char method[40];
	double sent;
	jv uid;			/* rpc: the id printed back (the user's) */
	jv msg;			/* the answer, or for K_BAD the error line */
	struct buf req;		/* the request as sent, to send it again */
	int tries;		/* times sent */
	double again;		/* busy: when to send it again, else 0 */
	int sub;		/* subscribe, K_PAGE: which space */
};

/*
 * subscribe: one space followed.  With --from, the history from that seq
 * is paged in after the subscription is made; live events that come
 * meanwhile are held, and every envelope is printed once, in seq order.
 */
struct sub {
	const char *space;	/* the space id, in argv */
	enum {
		SUB_ASKED,	/* subscribe sent */
		SUB_HISTORY,	/* subscribed, paging the history */
		SUB_LIVE,	/* printing events as they come */
		SUB_OVER	/* refused, or ended by the node */
	} state;
	int want_page;		/* a history page is to be asked for */
	int64_t after;		/* the next page starts after this seq */
	int64_t last;		/* the highest seq printed */
	jv held;		/* notifications that came during the history */
	int nheld;
	int dropped;		/* held ones were dropped: page on past them */
};

struct outmsg {
	struct outmsg *next;
	size_t len;
	unsigned char data[];	/* LWS_PRE bytes, then len bytes */
};

/* One value read from stdin by the reader thread. */
struct item {
	char *p;		/* the value, NUL-terminated; NULL if bad */
	size_t len;
	unsigned long line;
	const char *bad;	/* why the value was refused (static) */
};

/* stdin is read by a thread that blocks in read(); the loop takes values
 * from this small queue, so stdin never stalls the WebSocket. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item q[INQ_MAX];
	size_t head, n;
	int eof, err;		/* err: errno of a failed read */
	int closed;		/* the loop is gone: no more wake-ups */
	struct lws_context *ctx;
} inq = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static struct {
	/* options */
	const char *url, *keyfile, *want_node;
	double timeout;
	int timeout_given, any_address, raw, quiet;
	int64_t window, after, limit, count, from;
	const char *get_address;
	enum cmd cmd;
	char **args;
	int nargs;
	jv beam_arg;		/* beam SPACE JSON: the content */

	/* url */
	char host[256], hostport[300], path[1024];
	int port, tls;

	/* session */
	struct key *key;
	char author_hash[HASH_ID_LEN + 1];
	struct lws_context *ctx;
	struct lws *wsi;
	lws_sorted_usec_list_t sul;
	enum state state;
	jv node, address;	/* from the challenge */
	struct buf rx;
	struct outmsg *outq, **outq_tail;
	struct slot *slots;
	int64_t cap, next_wire, head, used;
	double start, closing_since;
	int quit, status;
	int close_code;
	char close_reason[124];
	int tcp_up;		/* the WebSocket handshake went out */
	int conn_failed;	/* no connection: say why after the loop */
	char cce[128];		/* libwebsockets' word for it */
	char lws_err[128];	/* its last error line */

	/* producers */
	int list_i, list_n;		/* one-shot commands, subscribe */
	int hist_state;			/* 0 want a page, 1 waiting, 2 done */
	int64_t hist_after, hist_printed;
	int stdin_used, stdin_done;
	unsigned long nread;		/* values read from stdin */
	int64_t events;			/* subscribe: events printed */
	int sub_failed;
	struct sub *subs;
	int nsubs, subs_open;		/* subs_open: not SUB_OVER */
} g;

static volatile sig_atomic_t gotsig;

static void usage(int status) __attribute__((noreturn));

static void
usage(int status)
{
	FILE *fp = status == 0 ? stdout : stderr;

	fprintf(fp,
"usage: " PROG " [-q] [--raw] [-k KEYFILE] [-u URL] [-t SECONDS] [--node DID]\n"
"                 [--any-address] [COMMAND [ARG...]]\n");
	if (status != 0) {
		fprintf(fp, "try '" PROG " --help'\n");
		exit(status);
	}
	fprintf(fp,
"commands (default rpc):\n"
"  login                         log in and print the login result\n"
"  create TYPE UNIQUEID [NAME]   create the space TYPE/KEYID/UNIQUEID\n"
"                                (TYPE channel, dm or stream)\n"
"  join SPACE|ADDRESS            join a space (a northstar:// address\n"
"                                tells the node where it lives)\n"
"  leave SPACE\n"
"  invite SPACE DID\n"
"  remove SPACE DID\n"
"  beam SPACE [JSON]             post JSON, or each JSON object on stdin,\n"
"                                as a beam; one result line per beam, in order\n"
"      --window N                most beams in flight (default 64)\n"
"  history SPACE [--after N] [--limit N]\n"
"                                print the envelopes after seq N (default 0),\n"
"                                at most --limit of them\n"
"  members SPACE\n"
"  info SPACE\n"
"  subscribe SPACE... [--from SEQ] [--count N]\n"
"                                print each result, then each new event as\n"
"                                it comes (blocks); with --from, first the\n"
"                                envelopes from seq SEQ on (1: the whole\n"
"                                log), each once and in order; stop after N\n"
"                                envelopes\n"
"  get PATH [--address ADDR]     print the beam at PATH\n"
"  delete PATH                   delete your beam at PATH\n"
"  rpc [--window N]              send each JSON-RPC request on stdin, print\n"
"                                every message from the node\n"
"options:\n"
"  -k, --key KEYFILE    the user's key (default $NS_KEY, else\n"
"                       ~/" DEFAULT_KEY ")\n"
"  -u, --url URL        the node (default $NS_URL, else " DEFAULT_URL ")\n"
"  -t, --timeout SECONDS  give up on an answer after this long, and on\n"
"                       connect and login (default 30); subscribe: stop then\n"
"      --node DID       refuse a node that is not DID\n"
"      --any-address    accept a node that names another address than URL's\n"
"      --raw            print whole JSON-RPC messages, not only results\n"
"  -q, --quiet          no stderr line for each request the node refuses\n"
"  -h, --help           print this help and exit\n"
"      --version        print the version and exit\n");
	exit(status);
}

static void
usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(2);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Copy untrusted text for a one-line message: at most max bytes, control
 * characters replaced, not cut inside a UTF-8 sequence. */
static void
clean(char *out, size_t outsz, const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n > max)
		n = max;
	if (n > outsz - 1)
		n = outsz - 1;
	if (n < strlen(s))
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	for (i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[n] = '\0';
}

static void begin_close(void);

/* Trouble: report it, exit 2 once the connection is closed. */
static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;
	size_t n = strlen(fmt);

	if (g.status == 2)
		return;		/* one reason is enough */
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
	g.status = 2;
	begin_close();
}

static void
failed(void)
{
	if (g.status < 1)
		g.status = 1;
}

/* Print v (consumed) as one line and flush it at once. */
static void
emit(jv v)
{
	if (g.status == 2 && g.state == S_CLOSING) {
		jv_free(v);
		return;
	}
	if (jsonl_emit(v) != 0 || jsonl_flush() != 0)
		fatal("stdout:");
}

/* --- URL, addresses, arguments ------------------------------------------ */

static int
url_parse(const char *url)
{
	const char *p, *h, *e, *colon;
	size_t hl;
	char *end;
	long port;

	if (strncasecmp(url, "ws://", 5) == 0) {
		p = url + 5;
		g.tls = 0;
	} else if (strncasecmp(url, "wss://", 6) == 0) {
		p = url + 6;
		g.tls = 1;
	} else
		return -1;
	e = p + strcspn(p, "/?#");
	if (*p == '[') {
		h = p + 1;
		if (!(colon = memchr(p, ']', e - p)))
			return -1;
		hl = colon - h;
		colon++;
		if (colon != e && *colon != ':')
			return -1;
	} else {
		h = p;
		colon = memchr(p, ':', e - p);
		hl = (colon ? colon : e) - h;
	}
	if (hl == 0 || hl >= sizeof(g.host) || memchr(h, '@', hl))
		return -1;
	memcpy(g.host, h, hl);
	g.host[hl] = '\0';
	port = g.tls ? 443 : 80;
	if (colon && colon != e) {
		port = strtol(colon + 1, &end, 10);
		if (end != e || end == colon + 1 || port < 1 || port > 65535)
			return -1;
	}
	g.port = (int)port;
	if (*e == '\0')
		snprintf(g.path, sizeof(g.path), "/");
	else if (*e == '/' && strlen(e) < sizeof(g.path))
		snprintf(g.path, sizeof(g.path), "%s", e);
	else
		return -1;
	if (strchr(g.host, ':'))
		snprintf(g.hostport, sizeof(g.hostport), "[%s]:%d", g.host, g.port);
	else
		snprintf(g.hostport, sizeof(g.hostport), "%s:%d", g.host, g.port);
	return 0;
}

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

/* The space id named by a bare id or a northstar:// address, or NULL. */
static const char *
space_id(const char *arg)
{
	const char *p;

	if (strncmp(arg, "northstar://", 12) == 0) {
		p = strchr(arg + 12, '/');
		if (!p || p == arg + 12 || p[1] == '\0')
			return NULL;
		return p + 1;
	}
	if (*arg == '\0' || !strchr(arg, '/'))
		return NULL;
	return arg;
}

static int64_t
num_arg(const char *opt, const char *s, int64_t min, int64_t max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v < min || v > max)
		usage_err("%s: want a number from %lld to %lld", opt,
		    (long long)min, (long long)max);
	return v;
}

/* --- output queue and requests ------------------------------------------- */

static void
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

static void
outq_free(void)
{
	struct outmsg *m;

	while ((m = g.outq)) {
		g.outq = m->next;
		free(m);
	}
	g.outq_tail = &g.outq;
}

static int
slot_free_for_next(void)
{
	return !g.slots[g.next_wire % g.cap].used;
}

static struct slot *
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

static void
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
static jv
bad_line(const char *code, const char *why, unsigned long line)
{
	jv e = JV_OBJECT(jv_string("error"), jv_string(code),
	    jv_string("msg"), jv_string(why), jv_string("prog"),
	    jv_string(PROG));

	if (line > 0)
		e = jv_object_set(e, jv_string("line"), jv_number(line));
	return e;
}

static void handle(struct slot *s);
static void drain(void);

/* A refused input takes its place in the order of answers. */
static void
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
static struct slot *
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

static struct slot *
send_req(const char *method, jv params, enum kind kind)
{
	return send_msg(JV_OBJECT(jv_string("method"), jv_string(method),
	    jv_string("params"), params), kind, method, 0);
}

/* ev (consumed) with author and ts set, signed by the user. */
static jv
sign_event(jv ev)
{
	ev = jv_object_set(ev, jv_string("author"), jv_string(g.key->did));
	ev = jv_object_set(ev, jv_string("ts"), jv_number(jsonl_now_ms()));
	return sig_attach(ev, g.key);
}

static jv
node_fields(jv ev)
{
	ev = jv_object_set(ev, jv_string("node"), jv_copy(g.node));
	return jv_object_set(ev, jv_string("address"), jv_copy(g.address));
}

/* The space.beam params for content (consumed, an object) in space. */
static jv
beam_params(const char *space, jv content)
{
	static struct buf scratch;
	char id[HASH_ID_LEN + 1];
	struct buf path = BUF_INIT;
	jv beam, ref, params = jv_invalid();

	content = jv_object_delete(content, jv_string("sig"));
	content = jv_object_set(content, jv_string("type"), jv_string("beam"));
	beam = sign_event(content);
	if (!jv_is_valid(beam) || event_id(beam, &scratch, id) != 0) {
		jv_free(beam);
		return jv_invalid_with_msg(jv_string("not representable in "
		    "RFC 8785"));
	}
	buf_addf(&path, "beam/%s/%s", g.author_hash, id);
	ref = node_fields(JV_OBJECT(jv_string("type"), jv_string("beam.ref"),
	    jv_string("space"), jv_string(space), jv_string("beam"),
	    jv_string(path.p)));
	ref = sign_event(ref);
	if (jv_is_valid(ref))
		params = JV_OBJECT(jv_string("event"), ref, jv_string("beam"),
		    beam);
	else {
		jv_free(ref);
		jv_free(beam);
	}
	buf_free(&path);
	return params;
}

static jv
event_params(jv ev)
{
	return JV_OBJECT(jv_string("event"), sign_event(ev));
}

/* Build and send request i of a one-shot command (or subscribe). */
static void
send_command(int i)
{
	char **a = g.args;
	const char *space = g.nargs > 0 ? space_id(a[0]) : NULL;
	struct buf b = BUF_INIT;
	struct slot *s;
	jv ev, params;

	switch (g.cmd) {
	case C_LOGIN:
	case C_RPC:
		break;
	case C_CREATE:
		buf_addf(&b, "%s/%s/%s", a[0], didkey_keyid(g.key->did), a[1]);
		ev = node_fields(JV_OBJECT(jv_string("type"),
		    jv_string("space.create"), jv_string("space"),
		    jv_string(b.p), jv_string("name"),
		    jv_string(g.nargs > 2 ? a[2] : a[1])));
		send_req("space.create", event_params(ev), K_PRINT);
		break;
	case C_JOIN:
		ev = node_fields(JV_OBJECT(jv_string("type"),
		    jv_string("space.join"), jv_string("space"),
		    jv_string(space)));
		params = event_params(ev);
		if (space != a[0])
			params = jv_object_set(params, jv_string("address"),
			    jv_string(a[0]));
		send_req("space.join", params, K_PRINT);
		break;
	case C_LEAVE:
	case C_INVITE:
	case C_REMOVE:
		ev = JV_OBJECT(jv_string("type"), jv_string(g.cmd == C_LEAVE ?
		    "space.leave" : g.cmd == C_INVITE ? "space.invite" :
		    "space.remove"), jv_string("space"), jv_string(space));
		if (g.cmd != C_LEAVE)
			ev = jv_object_set(ev, jv_string("member"),
			    jv_string(a[1]));
		send_req(g.cmd == C_LEAVE ? "space.leave" : g.cmd == C_INVITE ?
		    "space.invite" : "space.remove", event_params(ev), K_PRINT);
		break;
	case C_BEAM:
		params = beam_params(space, jv_copy(g.beam_arg));
		if (!jv_is_valid(params)) {
			jv_free(params);
			fatal("beam: cannot sign the beam");
			break;
		}
		send_req("space.beam", params, K_PRINT);
		break;
	case C_HISTORY:
		break;
	case C_MEMBERS:
	case C_INFO:
		send_req(g.cmd == C_INFO ? "space.info" : "space.members",
		    JV_OBJECT(jv_string("space"), jv_string(space)), K_PRINT);
		break;
	case C_SUBSCRIBE:
		if ((s = send_req("subscribe", JV_OBJECT(jv_string("space"),
		    jv_string(g.subs[i].space)), K_SUBSCRIBE)))
			s->sub = i;
		break;
	case C_GET:
		params = JV_OBJECT(jv_string("beam"), jv_string(a[0]));
		if (g.get_address)
			params = jv_object_set(params, jv_string("address"),
			    jv_string(g.get_address));
		send_req("beam.get", params, K_GET);
		break;
	case C_DELETE:
		ev = JV_OBJECT(jv_string("type"), jv_string("beam.tombstone"),
		    jv_string("beam"), jv_string(a[0]));
		send_req("beam.delete", event_params(ev), K_PRINT);
		break;
	}
	buf_free(&b);
}

static void
send_history_page(void)
{
	int64_t n = PAGE;

	if (g.limit > 0 && g.limit - g.hist_printed < n)
		n = g.limit - g.hist_printed;
	send_req("space.history", JV_OBJECT(jv_string("space"),
	    jv_string(space_id(g.args[0])), jv_string("after"),
	    jv_number(g.hist_after), jv_string("limit"), jv_number(n)),
	    K_HISTORY);
	g.hist_state = 1;
}

/* --- stdin ------------------------------------------------------------- */

static void *
reader(void *arg)
{
	struct jsonin in;
	struct item it;
	char *p;
	size_t len;
	unsigned long line;
	const char *why;
	int r, eof = 0, err = 0;

	(void)arg;
	jsonin_init(&in, STDIN_FILENO, MSG_MAX);
	while (!eof) {
		memset(&it, 0, sizeof(it));
		r = jsonin_next(&in, &p, &len, &line, &why);
		if (r == JSONIN_EOF || r == JSONIN_ERROR) {
			err = r == JSONIN_ERROR ? errno : 0;
			eof = 1;
		} else if (r == JSONIN_BAD) {
			it.bad = why;
			it.line = line;
		} else {
			it.p = xmalloc(len + 1);
			memcpy(it.p, p, len);
			it.p[len] = '\0';
			it.len = len;
			it.line = line;
		}
		pthread_mutex_lock(&inq.mu);
		while (!eof && inq.n == INQ_MAX && !inq.closed)
			pthread_cond_wait(&inq.cv, &inq.mu);
		if (inq.closed) {
			pthread_mutex_unlock(&inq.mu);
			free(it.p);
			break;
		}
		if (eof) {
			inq.eof = 1;
			inq.err = err;
		} else
			inq.q[(inq.head + inq.n++) % INQ_MAX] = it;
		/* under the lock, so the loop cannot destroy ctx meanwhile */
		lws_cancel_service(inq.ctx);
		pthread_mutex_unlock(&inq.mu);
	}
	jsonin_free(&in);
	return NULL;
}

/* 1 and *it filled, 0 if nothing is waiting, -1 at the end of stdin. */
static int
inq_pop(struct item *it)
{
	int r = 0;

	pthread_mutex_lock(&inq.mu);
	if (inq.n > 0) {
		*it = inq.q[inq.head];
		inq.head = (inq.head + 1) % INQ_MAX;
		inq.n--;
		pthread_cond_signal(&inq.cv);
		r = 1;
	} else if (inq.eof) {
		r = -1;
		if (inq.err) {
			errno = inq.err;
			inq.err = 0;
			fatal("stdin:");
		}
	}
	pthread_mutex_unlock(&inq.mu);
	return r;
}

/* One value from stdin, for beam or rpc. */
static void
send_input(struct item *it)
{
	const char *method;
	char why[80];
	struct slot *s;
	jv v, msg, uid;

	g.nread++;
	if (!it->p) {
		slot_bad(bad_line("parse_error", it->bad, it->line));
		return;
	}
	v = canon_parse(it->p, it->len);
	if (!jv_is_valid(v)) {
		jv m = jv_invalid_get_msg(v);
		clean(why, sizeof(why), jv_get_kind(m) == JV_KIND_STRING ?
		    jv_string_value(m) : "not JSON", 72);
		jv_free(m);
		slot_bad(bad_line("parse_error", why, it->line));
		return;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		slot_bad(bad_line("bad_input", "not a JSON object", it->line));
		return;
	}
	if (g.cmd == C_BEAM) {
		msg = beam_params(space_id(g.args[0]), v);
		if (!jv_is_valid(msg)) {
			jv_free(msg);
			slot_bad(bad_line("bad_input", "cannot sign the beam",
			    it->line));
			return;
		}
		send_msg(JV_OBJECT(jv_string("method"),
		    jv_string("space.beam"), jv_string("params"), msg),
		    K_PRINT, "space.beam", it->line);
		return;
	}
	method = jsonl_str(v, "method");
	if (!method) {
		jv_free(v);
		slot_bad(bad_line("bad_input", "no \"method\" string",
		    it->line));
		return;
	}
	uid = jsonl_has(v, "id") ? jsonl_get(v, "id") : jv_number(g.nread);
	clean(why, sizeof(why), method, 39);
	if ((s = send_msg(v, K_RPC, why, it->line)))
		s->uid = uid;
	else
		jv_free(uid);
}

/* --- subscribe ---------------------------------------------------------- */

static struct sub *
sub_find(const char *space)
{
	for (int i = 0; space && i < g.nsubs; i++)
		if (strcmp(g.subs[i].space, space) == 0)
			return &g.subs[i];
	return NULL;
}

static void
sub_over(struct sub *u)
{
	if (u->state == SUB_OVER)
		return;
	u->state = SUB_OVER;
	g.subs_open--;
	jv_free(u->held);
	u->held = jv_array();
	u->nheld = 0;
}

/* --from: ask for the next history page of each space that wants one, as
 * long as a slot is free (the others wait for the next call). */
static void
send_pages(void)
{
	struct sub *u;
	struct slot *s;

	for (int i = 0; i < g.nsubs && g.state == S_READY; i++) {
		u = &g.subs[i];
		if (!u->want_page || u->state != SUB_HISTORY)
			continue;
		if (!slot_free_for_next())
			return;
		u->want_page = 0;
		if ((s = send_req("space.history", JV_OBJECT(jv_string("space"),
		    jv_string(u->space), jv_string("after"), jv_number(u->after),
		    jv_string("limit"), jv_number(PAGE)), K_PAGE)))
			s->sub = i;
	}
}

static int emit_envelope(jv env);

/* Print env (consumed), an envelope of u's space (u NULL: of no space
 * followed here), unless its seq was printed already.  With --raw, msg
 * (borrowed; jv_invalid() for an envelope of a history page, whose whole
 * answer is printed) is printed instead. */
static void
deliver(struct sub *u, jv env, jv msg)
{
	const char *space = jsonl_str(env, "space");
	int64_t seq = 0;

	if (g.count > 0 && g.events >= g.count) {
		jv_free(env);
		return;
	}
	if (u && (!space || strcmp(space, u->space) != 0)) {
		warn("%s: an envelope of another space refused", u->space);
		failed();
		jv_free(env);
		return;
	}
	if (u && jsonl_int(env, "seq", &seq) == 0 && seq <= u->last) {
		jv_free(env);		/* printed already */
		return;
	}
	if (emit_envelope(env) != 0)
		return;
	if (u)
		u->last = seq;
	if (g.raw && jv_is_valid(msg))
		emit(jv_copy(msg));
	g.events++;
}

/* The history is in: print what came meanwhile, then follow live. */
static void
sub_live(struct sub *u)
{
	jv held = u->held;

	u->state = SUB_LIVE;
	u->held = jv_array();
	u->nheld = 0;
	jv_array_foreach(held, i, m) {
		deliver(u, jsonl_get(m, "params"), m);
		jv_free(m);
	}
	jv_free(held);
}

/* A subscribe result: the space is followed from now on. */
static void
sub_started(struct sub *u)
{
	if (u->state != SUB_ASKED)
		return;		/* ended by the node meanwhile */
	if (g.from > 0) {
		u->state = SUB_HISTORY;
		u->after = u->last = g.from - 1;
		u->want_page = 1;
	} else
		sub_live(u);
}

/* A page of the history of u, after u->after. */
static void
handle_page(struct sub *u, jv msg, jv res)
{
	jv envs = jsonl_get(res, "envelopes");
	int64_t next;

	if (u->state != SUB_HISTORY)
		goto out;	/* ended meanwhile: nothing more to print */
	if (jv_get_kind(envs) != JV_KIND_ARRAY) {
		fatal("space.history: the node sent no envelopes array");
		goto out;
	}
	if (g.raw)
		emit(jv_copy(msg));
	jv_array_foreach(envs, i, env)
		deliver(u, env, jv_invalid());
	if (jsonl_kind(res, "next") == JV_KIND_NULL && u->dropped) {
		/* what was dropped is in the log by now: one more page */
		u->dropped = 0;
		u->after = u->last;
		u->want_page = 1;
	} else if (jsonl_kind(res, "next") == JV_KIND_NULL)
		sub_live(u);
	else if (jsonl_int(res, "next", &next) != 0 || next <= u->after)
		fatal("space.history: the node's next page does not advance");
	else {
		u->after = next;
		u->want_page = 1;
	}
out:
	jv_free(envs);
}

/* The node ended a subscription (the caller lost read access). */
static void
on_unsubscribed(jv msg)
{
	jv params = jsonl_get(msg, "params");
	const char *space = jsonl_str(params, "space");
	const char *m = jsonl_str(params, "message");
	struct sub *u = sub_find(space);
	char sp[128], why[100];

	if (u && u->state != SUB_OVER) {
		clean(sp, sizeof(sp), space, 121);
		clean(why, sizeof(why), m ? m : jsonl_str(params, "reason") ?
		    jsonl_str(params, "reason") : "no reason given", 80);
		warn("%s: subscription ended by the node: %s", sp, why);
		if (g.raw)
			emit(jv_copy(msg));
		failed();
		sub_over(u);
	}
	jv_free(params);
}

/* An event or chunk notification for a subscription. */
static void
on_event(jv msg, const char *method)
{
	jv params = jsonl_get(msg, "params");
	struct sub *u = sub_find(jsonl_str(params, "space"));

	if (u && u->state == SUB_OVER) {
		jv_free(params);
		return;
	}
	if (strcmp(method, "chunk") == 0) {
		/* live only, never in the log: no order to keep */
		if (g.count > 0 && g.events >= g.count)
			jv_free(params);
		else {
			emit(g.raw ? jv_copy(msg) : params);
			if (g.raw)
				jv_free(params);
			g.events++;
		}
		return;
	}
	if (u && g.from > 0 && u->state != SUB_LIVE) {
		if (u->nheld >= HELD_MAX) {
			/* memory stays bounded: the log has them all, and the
			 * history is read on past them */
			jv_free(u->held);
			u->held = jv_array();
			u->nheld = 0;
			u->dropped = 1;
		}
		u->held = jv_array_append(u->held, jv_copy(msg));
		u->nheld++;
		jv_free(params);
		return;
	}
	deliver(u, params, msg);
}

/* --- the run ----------------------------------------------------------- */

static int
produce_done(void)
{
	switch (g.cmd) {
	case C_HISTORY:
		return g.hist_state == 2;
	case C_RPC:
		return g.stdin_done;
	case C_BEAM:
		if (g.stdin_used)
			return g.stdin_done;
		/* FALLTHROUGH */
	default:
		return g.list_i >= g.list_n;
	}
}

/* Send what the window allows; finish when everything is answered. */
static void
pump(void)
{
	struct item it;
	int r;

	while (g.state == S_READY && slot_free_for_next() && !produce_done()) {
		if (g.cmd == C_HISTORY) {
			if (g.hist_state != 0)
				break;
			send_history_page();
		} else if (g.cmd == C_RPC || (g.cmd == C_BEAM && g.stdin_used)) {
			if ((r = inq_pop(&it)) == 0)
				break;
			if (r < 0) {
				g.stdin_done = 1;
				break;
			}
			send_input(&it);
			free(it.p);
		} else
			send_command(g.list_i++);
		drain();
	}
	if (g.cmd == C_SUBSCRIBE)
		send_pages();
	if (g.outq && g.wsi)
		lws_callback_on_writable(g.wsi);
	if (g.state != S_READY || !produce_done() || g.used > 0)
		return;
	if (g.cmd == C_SUBSCRIBE && !g.sub_failed && g.subs_open > 0 &&
	    !(g.count > 0 && g.events >= g.count))
		return;
	begin_close();
}

/* Close the connection (cleanly once it is up) and leave the loop. */
static void
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

/* Say why the node refused a request. */
static void
report_error(const struct slot *s, jv err)
{
	char reason[40], message[100];
	const char *r, *m;
	jv data;

	failed();
	if (g.quiet)
		return;
	data = jsonl_get(err, "data");
	r = jsonl_str(data, "reason");
	m = jsonl_str(err, "message");
	clean(reason, sizeof(reason), r ? r : "error", 32);
	clean(message, sizeof(message), m ? m : "", 80);
	if (s->tries > 1)
		warn("%s: %s%s%s (sent %d times)", s->method, reason,
		    *message ? ": " : "", message, s->tries);
	else
		warn("%s: %s%s%s", s->method, reason, *message ? ": " : "",
		    message);
	jv_free(data);
}

static int
check_beam(const char *path, jv beam)
{
	static struct buf scratch;
	char id[HASH_ID_LEN + 1], ah[HASH_ID_LEN + 1];
	const char *author, *type, *why;

	type = jsonl_str(beam, "type");
	author = jsonl_str(beam, "author");
	if (!type || strcmp(type, "beam") != 0 || !author)
		return -1;
	if (event_verify(beam, &scratch, &why) != 0)
		return -1;
	if (event_id(beam, &scratch, id) != 0)
		return -1;
	hash_id(author, strlen(author), ah);
	if (strncmp(path, "beam/", 5) != 0 || strncmp(path + 5, ah,
	    HASH_ID_LEN) != 0 || path[5 + HASH_ID_LEN] != '/' ||
	    strcmp(path + 6 + HASH_ID_LEN, id) != 0)
		return -1;
	return 0;
}

/* Print an envelope the node sent, if it verifies. */
static int
emit_envelope(jv env)
{
	static struct buf scratch;
	const char *why;

	if (envelope_verify(env, &scratch, &why) != 0) {
		warn("envelope from the node refused: %s", why);
		failed();
		jv_free(env);
		return -1;
	}
	if (!g.raw)
		emit(env);
	else
		jv_free(env);
	return 0;
}

static void
handle_login(jv msg)
{
	jv res = jsonl_get(msg, "result");
	const char *did = jsonl_str(res, "did");

	if (jv_get_kind(res) != JV_KIND_OBJECT || !did ||
	    strcmp(did, g.key->did) != 0) {
		fatal("login: the node answered with another identity");
		goto out;
	}
	g.state = S_READY;
	if (g.cmd == C_LOGIN)
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
out:
	jv_free(res);
}

static void
handle_history(jv msg, jv res)
{
	jv envs = jsonl_get(res, "envelopes");
	int64_t next, n, i;

	if (jv_get_kind(envs) != JV_KIND_ARRAY) {
		fatal("space.history: the node sent no envelopes array");
		goto out;
	}
	if (g.raw)
		emit(jv_copy(msg));
	n = jv_array_length(jv_copy(envs));
	for (i = 0; i < n && g.state != S_CLOSING; i++) {
		if (g.limit > 0 && g.hist_printed >= g.limit)
			break;
		emit_envelope(jv_array_get(jv_copy(envs), (int)i));
		g.hist_printed++;
	}
	if (jsonl_kind(res, "next") == JV_KIND_NULL ||
	    (g.limit > 0 && g.hist_printed >= g.limit)) {
		g.hist_state = 2;
		goto out;
	}
	if (jsonl_int(res, "next", &next) != 0 || next <= g.hist_after) {
		fatal("space.history: the node's next page does not advance");
		goto out;
	}
	g.hist_after = next;
	g.hist_state = 0;
out:
	jv_free(envs);
}

/* An answer whose turn has come.  The slot is released by the caller. */
static void
handle(struct slot *s)
{
	jv msg = s->msg, res, beam;
	int64_t line;

	s->msg = jv_invalid();
	if (s->kind == K_BAD) {
		failed();
		if (!g.quiet && jsonl_int(msg, "line", &line) == 0)
			warn("stdin line %lld: %s", (long long)line,
			    jsonl_str(msg, "msg"));
		else if (!g.quiet)
			warn("%s", jsonl_str(msg, "msg"));
		emit(msg);
		return;
	}
	if (s->kind == K_RPC) {
		msg = jv_object_set(msg, jv_string("id"), jv_copy(s->uid));
		if (jsonl_has(msg, "error")) {
			jv err = jsonl_get(msg, "error");
			report_error(s, err);
			jv_free(err);
		}
		emit(msg);
		return;
	}
	if (jsonl_has(msg, "error")) {
		jv err = jsonl_get(msg, "error");
		if (s->kind == K_LOGIN) {
			char why[300];
			jv data = jsonl_get(err, "data");
			neterr_login(why, sizeof(why), jsonl_str(data, "reason"),
			    jsonl_str(err, "message"));
			jv_free(data);
			fatal("%s: %s", g.url, why);
		} else {
			if (s->kind == K_SUBSCRIBE || s->kind == K_PAGE) {
				g.sub_failed = 1;
				sub_over(&g.subs[s->sub]);
			}
			if (s->kind == K_HISTORY)
				g.hist_state = 2;
			report_error(s, err);
			emit(g.raw ? jv_copy(msg) : jv_copy(err));
		}
		jv_free(err);
		jv_free(msg);
		return;
	}
	res = jsonl_get(msg, "result");
	switch (s->kind) {
	case K_LOGIN:
		handle_login(msg);
		break;
	case K_HISTORY:
		handle_history(msg, res);
		break;
	case K_PAGE:
		handle_page(&g.subs[s->sub], msg, res);
		break;
	case K_SUBSCRIBE:
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
		sub_started(&g.subs[s->sub]);
		break;
	case K_GET:
		beam = jsonl_get(res, "beam");
		if (check_beam(g.args[0], beam) != 0) {
			warn("beam.get: the beam the node sent does not match "
			    "its path");
			failed();
			jv_free(beam);
		} else if (g.raw) {
			jv_free(beam);
			emit(jv_copy(msg));
		} else
			emit(beam);
		break;
	default:
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
		break;
	}
	jv_free(res);
	jv_free(msg);
}

/* Handle the answers whose turn has come, in request order. */
static void
drain(void)
{
	struct slot *s;

	if (g.cmd == C_RPC)
		return;
	while ((s = &g.slots[g.head % g.cap])->used && s->answered &&
	    s->wire == g.head) {
		handle(s);
		slot_release(s);
		g.head++;
	}
}

/* 1 and *wait (seconds) if msg is a busy error: after data.retryAfter
 * milliseconds, capped; 0 otherwise. */
static int
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
		g.conn_failed = 1;
		snprintf(g.cce, sizeof(g.cce), "%.*s", in ? (int)len : 0,
		    in ? (const char *)in : "");
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
static void
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
static void
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

static const struct lws_protocols protocols[] = {
	{ PROG, callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void
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
		else if (g.cmd == C_SUBSCRIBE && g.state == S_READY)
			begin_close();
		else
			fatal("interrupted by %s", sig == SIGINT ? "SIGINT" :
			    "SIGTERM");
	}
	if (g.state == S_CLOSING) {
		if (now - g.closing_since > CLOSE_WAIT)
			g.quit = 1;
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

static void
tick(lws_sorted_usec_list_t *sul)
{
	check_times();
	lws_sul_schedule(g.ctx, 0, sul, tick, TICK_MS * LWS_US_PER_MS);
}

static void
on_signal(int sig)
{
	gotsig = sig;
}

/* --- main -------------------------------------------------------------- */

static void
check_args(void)
{
	const char **a = (const char **)g.args;
	const char *why, *name = cmds[g.cmd].name;
	unsigned char pk[32];
	int i;

	if (g.nargs < cmds[g.cmd].min || g.nargs > cmds[g.cmd].max)
		usage_err("%s: wrong number of arguments", name);
	if (g.after >= 0 && g.cmd != C_HISTORY)
		usage_err("--after is for history only");
	if (g.limit >= 0 && g.cmd != C_HISTORY)
		usage_err("--limit is for history only");
	if (g.count >= 0 && g.cmd != C_SUBSCRIBE)
		usage_err("--count is for subscribe only");
	if (g.from >= 0 && g.cmd != C_SUBSCRIBE)
		usage_err("--from is for subscribe only");
	if (g.get_address && g.cmd != C_GET)
		usage_err("--address is for get only");
	if (g.window > 0 && g.cmd != C_RPC &&
	    !(g.cmd == C_BEAM && g.nargs == 1))
		usage_err("--window is for rpc and beam from stdin only");
	switch (g.cmd) {
	case C_CREATE:
		if (strcmp(a[0], "channel") != 0 && strcmp(a[0], "dm") != 0 &&
		    strcmp(a[0], "stream") != 0)
			usage_err("create: TYPE is channel, dm or stream");
		if (*a[1] == '\0' || strchr(a[1], '/'))
			usage_err("create: bad UNIQUEID");
		break;
	case C_INVITE:
	case C_REMOVE:
		if (didkey_decode(a[1], pk, &why) != 0)
			usage_err("%s: DID: %s", name, why);
		/* FALLTHROUGH */
	case C_JOIN:
	case C_LEAVE:
	case C_BEAM:
	case C_HISTORY:
	case C_MEMBERS:
	case C_INFO:
		if (!space_id(a[0]))
			usage_err("%s: not a space id or northstar:// address",
			    name);
		break;
	case C_SUBSCRIBE:
		for (i = 0; i < g.nargs; i++) {
			if (!space_id(a[i]))
				usage_err("subscribe: not a space id or "
				    "northstar:// address");
			for (int j = 0; j < i; j++)
				if (strcmp(space_id(a[i]), space_id(a[j])) == 0)
					usage_err("subscribe: %.121s given twice",
					    space_id(a[i]));
		}
		break;
	case C_GET:
	case C_DELETE:
		if (strncmp(a[0], "beam/", 5) != 0)
			usage_err("%s: PATH is beam/AUTHORHASH/BEAMID", name);
		break;
	default:
		break;
	}
	if (g.cmd == C_BEAM && g.nargs == 2) {
		jv v = canon_parse(a[1], strlen(a[1]));
		if (jv_get_kind(v) != JV_KIND_OBJECT) {
			jv_free(v);
			usage_err("beam: JSON is not a JSON object");
		}
		g.beam_arg = v;
	}
	if (g.want_node && didkey_decode(g.want_node, pk, &why) != 0)
		usage_err("--node: %s", why);
}

static void
parse_options(int argc, char **argv)
{
	enum {
		O_NODE = 256, O_ANY, O_RAW, O_WINDOW, O_AFTER, O_LIMIT,
		O_COUNT, O_FROM, O_ADDRESS, O_VERSION
	};
	static const struct option opts[] = {
		{ "key",	 required_argument, NULL, 'k' },
		{ "url",	 required_argument, NULL, 'u' },
		{ "timeout",	 required_argument, NULL, 't' },
		{ "quiet",	 no_argument,	    NULL, 'q' },
		{ "node",	 required_argument, NULL, O_NODE },
		{ "any-address", no_argument,	    NULL, O_ANY },
		{ "raw",	 no_argument,	    NULL, O_RAW },
		{ "window",	 required_argument, NULL, O_WINDOW },
		{ "after",	 required_argument, NULL, O_AFTER },
		{ "limit",	 required_argument, NULL, O_LIMIT },
		{ "count",	 required_argument, NULL, O_COUNT },
		{ "from",	 required_argument, NULL, O_FROM },
		{ "address",	 required_argument, NULL, O_ADDRESS },
		{ "help",	 no_argument,	    NULL, 'h' },
		{ "version",	 no_argument,	    NULL, O_VERSION },
		{ NULL,		 0,		    NULL, 0 }
	};
	char *end;
	size_t i;
	int c;

	g.timeout = 30;
	g.after = g.limit = g.count = g.window = g.from = -1;
	while ((c = getopt_long(argc, argv, "k:u:t:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			g.keyfile = optarg;
			break;
		case 'u':
			g.url = optarg;
			break;
		case 't':
			g.timeout = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' ||
			    !(g.timeout > 0 && g.timeout <= 1e7))
				usage_err("-t: want a number of seconds");
			g.timeout_given = 1;
			break;
		case 'q':
			g.quiet = 1;
			break;
		case O_NODE:
			g.want_node = optarg;
			break;
		case O_ANY:
			g.any_address = 1;
			break;
		case O_RAW:
			g.raw = 1;
			break;
		case O_WINDOW:
			g.window = num_arg("--window", optarg, 1, WINDOW_MAX);
			break;
		case O_AFTER:
			g.after = num_arg("--after", optarg, 0, JSONL_INT_MAX);
			break;
		case O_LIMIT:
			g.limit = num_arg("--limit", optarg, 1, JSONL_INT_MAX);
			break;
		case O_COUNT:
			g.count = num_arg("--count", optarg, 1, JSONL_INT_MAX);
			break;
		case O_FROM:
			g.from = num_arg("--from", optarg, 1, JSONL_INT_MAX);
			break;
		case O_ADDRESS:
			g.get_address = optarg;
			break;
		case 'h':
			usage(0);
			break;
		case O_VERSION:
			puts(PROG " " NS_VERSION);
			exit(0);
		default:
			usage(2);
		}
	}
	g.cmd = C_RPC;
	if (optind < argc) {
		for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (strcmp(argv[optind], cmds[i].name) == 0)
				break;
		if (i == sizeof(cmds) / sizeof(cmds[0]))
			usage_err("unknown command: %.40s", argv[optind]);
		g.cmd = (enum cmd)i;
		optind++;
	}
	g.args = argv + optind;
	g.nargs = argc - optind;
	check_args();
}

static void
setup(void)
{
	static char keypath[4096];
	char err[512];
	const char *home;

	if (!g.url && !((g.url = getenv("NS_URL")) && *g.url))
		g.url = DEFAULT_URL;
	if (url_parse(g.url) != 0)
		usage_err("-u: not a ws:// or wss:// URL: %.80s", g.url);
	if (!g.keyfile && (g.keyfile = getenv("NS_KEY")) && !*g.keyfile)
		g.keyfile = NULL;
	if (!g.keyfile) {
		if (!(home = getenv("HOME")) || !*home)
			die("no key file: give -k KEYFILE or set NS_KEY");
		snprintf(keypath, sizeof(keypath), "%s/%s", home, DEFAULT_KEY);
		g.keyfile = keypath;
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (!(g.key = key_load(g.keyfile, err, sizeof(err))))
		die("%s", err);
	hash_id(g.key->did, strlen(g.key->did), g.author_hash);

	if (g.window < 0)
		g.window = 64;
	g.cap = g.window + 1;	/* + the login */
	/* a subscribe and a history page for each space */
	if (g.cmd == C_SUBSCRIBE && g.cap < 2 * g.nargs + 1)
		g.cap = 2 * g.nargs + 1;
	g.slots = xcalloc((size_t)g.cap, sizeof(*g.slots));
	g.next_wire = g.head = 1;
	g.outq_tail = &g.outq;
	g.node = g.address = jv_invalid();
	if (g.after < 0)
		g.after = 0;
	g.hist_after = g.after;
	if (g.cmd == C_SUBSCRIBE) {
		g.list_n = g.nsubs = g.subs_open = g.nargs;
		g.subs = xcalloc((size_t)g.nsubs, sizeof(*g.subs));
		for (int i = 0; i < g.nsubs; i++) {
			g.subs[i].space = space_id(g.args[i]);
			g.subs[i].held = jv_array();
		}
	}
	else if (g.cmd != C_LOGIN && g.cmd != C_HISTORY && g.cmd != C_RPC)
		g.list_n = 1;
	g.stdin_used = g.cmd == C_RPC || (g.cmd == C_BEAM && g.nargs == 1);
}

static void
start_reader(void)
{
	pthread_t t;
	sigset_t all, old;
	int e;

	inq.ctx = g.ctx;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e = pthread_create(&t, NULL, reader, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		errno = e;
		die("pthread_create:");
	}
	pthread_detach(t);
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	struct sigaction sa;
	int64_t i;

	prog = PROG;
	g.beam_arg = jv_invalid();
	parse_options(argc, argv);
	setup();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	lws_set_log_level(LLL_ERR, lws_log);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	/* -t is the one timeout: lws's own fire later */
	info.timeout_secs = info.connect_timeout_secs = (unsigned)g.timeout + 10;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	if (g.tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if (!(g.ctx = lws_create_context(&info)))
		die("cannot create the WebSocket context");
	if (g.stdin_used)
		start_reader();

	g.start = now_s();
	g.state = S_CONNECTING;
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
	if (!lws_client_connect_via_info(&ci)) {
		g.conn_failed = 1;
		g.quit = 1;
	}
	lws_sul_schedule(g.ctx, 0, &g.sul, tick, TICK_MS * LWS_US_PER_MS);
	while (!g.quit) {
		if (lws_service(g.ctx, 0) < 0)
			break;
		if (gotsig)
			check_times();
	}
	if (g.conn_failed && g.status != 2)
		report_connect_failure();

	pthread_mutex_lock(&inq.mu);
	inq.closed = 1;
	pthread_cond_signal(&inq.cv);
	pthread_mutex_unlock(&inq.mu);
	lws_sul_cancel(&g.sul);
	lws_context_destroy(g.ctx);
	if (g.status == 0 && g.state != S_CLOSING)
		g.status = 2;
	for (i = 0; i < g.cap; i++) {
		if (g.slots[i].used)
			slot_release(&g.slots[i]);
		buf_free(&g.slots[i].req);
	}
	free(g.slots);
	outq_free();
	buf_free(&g.rx);
	jv_free(g.node);
	jv_free(g.address);
	jv_free(g.beam_arg);
	for (int j = 0; j < g.nsubs; j++)
		jv_free(g.subs[j].held);
	free(g.subs);
	key_free(g.key);
	if (jsonl_flush() != 0 && g.status < 2) {
		warn("stdout:");
		g.status = 2;
	}
	return g.status;
}
