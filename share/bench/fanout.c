/*
 * fanout: the fan-out figure of make bench.  In one libwebsockets context
 * it opens N subscriber connections and one publisher connection to a node
 * on 127.0.0.1, logs each in with KEYFILE, subscribes the N to SPACE, then
 * sends the pre-signed space.beam requests of BEAMS (gen-beams output, by
 * the same key) at RATE per second; with -n 0 it only publishes (the
 * ingest figure, a lighter load than ns-client).  An event's latency runs
 * from the moment its request went to the publisher's socket to the moment a
 * subscriber holds the whole event notification; every (subscriber, event)
 * pair counts once.  Prints one JSON line:
 *   {"subscribers","events","rate","setup_s","publish_s","p50_ms","p90_ms",
 *    "p99_ms","max_ms","delivered","expected","missing","duplicates",
 *    "disordered","unknown","acked","refused","ack_p50_ms","ack_p99_ms",
 *    "dropped","cpu_s","run_s","node_cpu_s"}
 * and with -P also "per_port_max_ms" and "per_port_missing", one number
 * per port of the list, in its order (max -1: nothing delivered there).
 *   usage: fanout -p PORT -k KEYFILE -s SPACE -n N (-r RATE | -W WINDOW)
 *                 -f BEAMS [-P PORT,PORT,...] [-c PID,PID,...]
 *                 [-t SECONDS] [-w SECONDS]
 * -W publishes as fast as the answers allow instead of at RATE: at most
 * WINDOW requests unanswered at once (the fan-out blast).  -c names the
 * node's processes: "node_cpu_s" is the CPU time they used from the
 * first request to the last delivery (or the end of the wait), read from
 * /proc; run_s is that time on the clock.  "disordered" counts events a
 * subscriber got after a later one of the same publisher.
 * -P spreads the subscribers over several nodes (federation): subscriber i
 * connects to the i-th port of the list, round and round, while the
 * publisher stays on -p.  Each node signs its own login challenge; the
 * login answers each with the node and address it named.
 * -t bounds the set-up (connect, login, subscribe; default 30 s), -w the
 * wait for late deliveries after the last request (default 5 s).  Exit 0
 * when the run finished (whatever its figures), 2 on usage or set-up
 * trouble.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <libwebsockets.h>

#include "buf.h"
#include "canon.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

#define ID_LEN		43	/* base64url of a SHA-256 */
#define MSG_MAX		(1u << 20)
#define CLOSE_S		3.0	/* most time to close every connection */

enum cstate { C_CONNECTING, C_CHALLENGE, C_LOGIN, C_SUBSCRIBE, C_READY,
	C_CLOSED };
enum phase { P_SETUP, P_PUBLISH, P_DRAIN, P_CLOSE, P_DONE };

struct conn {
	struct lws *wsi;
	int idx;		/* 0: the publisher; 1..N: subscribers */
	enum cstate state;
	int closing;
	struct buf rx;
	struct buf out;		/* one pending message after LWS_PRE bytes */
	int pending;
};

struct beam {
	char *line;
	size_t len;
	int64_t id;		/* the JSON-RPC id */
	char bid[ID_LEN + 1];	/* the beam id in the ref's path */
	double sent;		/* -1 until written */
	double acked;		/* -1 until answered */
};

static struct {
	struct lws_context *ctx;
	int tfd;		/* timerfd: the clock of the run */
	int tick_ms;
	struct key *key;
	const char *space;
	int port, nsub;
	int *ports;		/* -P: the subscribers' ports, or NULL */
	int nports;
	double rate, setup_max, drain_max;

	struct conn *conns;
	int nconn, nready, nclosed, dropped;

	struct beam *beams;
	int nbeam, nsent;
	int64_t first_id;
	int32_t *table;		/* open addressing: beam index + 1, 0 empty */
	size_t tmask;
	int32_t *lat;		/* nsub * nbeam microseconds, -1: not yet */
	int *last;		/* per subscriber: the latest beam index, -1 */
	int window;		/* -W: unanswered requests at most; 0: -r */
	int *pids;		/* -c: the node's processes */
	int npids;
	double cpu0, cpu1;	/* their CPU seconds at t_pub and the end */
	double t_end;

	enum phase phase;
	double start, t_ready, t_pub, t_last, t_close;
	long delivered, dups, disordered, unknown, acked, refused;
	int quit, status;
	struct buf wbuf;
} g;

static volatile sig_atomic_t gotsig;

static void
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: fanout -p PORT -k KEYFILE -s SPACE -n N (-r RATE | -W WINDOW)\n"
	    "              -f BEAMS [-P PORT,PORT,...] [-c PID,PID,...]\n"
	    "              [-t SECONDS] [-w SECONDS]\n");
	exit(status);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
on_signal(int sig)
{
	gotsig = sig;
}

/* --- the beams and their ids ------------------------------------------- */

static uint32_t
id_hash(const char *p)
{
	uint32_t h = 2166136261u;
	int i;

	for (i = 0; i < ID_LEN; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

static int
id_find(const char *p)
{
	size_t i = id_hash(p) & g.tmask;

	while (g.table[i]) {
		if (memcmp(g.beams[g.table[i] - 1].bid, p, ID_LEN) == 0)
			return g.table[i] - 1;
		i = (i + 1) & g.tmask;
	}
	return -1;
}

static void
id_add(int b)
{
	size_t i = id_hash(g.beams[b].bid) & g.tmask;

	while (g.table[i])
		i = (i + 1) & g.tmask;
	g.table[i] = b + 1;
}

/* The beam id at the end of a path "beam/AUTHORHASH/BEAMID", or NULL. */
static const char *
path_id(const char *path, size_t len)
{
	if (len != 5 + ID_LEN + 1 + ID_LEN || memcmp(path, "beam/", 5) != 0 ||
	    path[5 + ID_LEN] != '/')
		return NULL;
	return path + 5 + ID_LEN + 1;
}

static void
load_beams(const char *file)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0, n = 0, size;
	ssize_t len;
	const char *path, *bid;
	jv req, params, ev;
	int64_t id;

	if (!(f = fopen(file, "r")))
		die("%s:", file);
	while ((len = getline(&line, &cap, f)) > 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		req = canon_parse(line, (size_t)len);
		params = jsonl_get(req, "params");
		ev = jsonl_get(params, "event");
		path = jsonl_str(ev, "beam");
		if (jsonl_int(req, "id", &id) != 0 || !path ||
		    !(bid = path_id(path, strlen(path))))
			die("%s: line %zu: not a space.beam request of "
			    "gen-beams", file, n + 1);
		if (n == 0)
			g.first_id = id;
		else if (id != g.first_id + (int64_t)n)
			die("%s: line %zu: ids must count up by one", file,
			    n + 1);
		g.beams = xrealloc(g.beams, (n + 1) * sizeof(*g.beams));
		g.beams[n].line = xmalloc((size_t)len);
		memcpy(g.beams[n].line, line, (size_t)len);
		g.beams[n].len = (size_t)len;
		g.beams[n].id = id;
		memcpy(g.beams[n].bid, bid, ID_LEN);
		g.beams[n].bid[ID_LEN] = '\0';
		g.beams[n].sent = g.beams[n].acked = -1;
		jv_free(ev);
		jv_free(params);
		jv_free(req);
		n++;
		if (n > 1000000)
			die("%s: more than 1000000 requests", file);
	}
	if (ferror(f))
		die("%s:", file);
	fclose(f);
	free(line);
	if (n == 0)
		die("%s: no requests", file);
	g.nbeam = (int)n;
	for (size = 16; size < 2 * n; size <<= 1)
		;
	g.table = xcalloc(size, sizeof(*g.table));
	g.tmask = size - 1;
	for (n = 0; n < (size_t)g.nbeam; n++) {
		if (id_find(g.beams[n].bid) >= 0)
			die("%s: the same beam twice", file);
		id_add((int)n);
	}
}

/* --- sending ------------------------------------------------------------ */

/* Queue one message (consumed, an object) on c. */
static void
queue(struct conn *c, jv msg)
{
	static struct buf b;

	buf_reset(&b);
	if (canon_dump(msg, NULL, &b) != 0)
		die("cannot serialize a request");
	jv_free(msg);
	buf_reset(&c->out);
	buf_grow(&c->out, LWS_PRE + b.len);
	memset(c->out.p, 0, LWS_PRE);
	memcpy(c->out.p + LWS_PRE, b.p, b.len);
	c->out.len = LWS_PRE + b.len;
	c->pending = 1;
	lws_callback_on_writable(c->wsi);
}

static jv
request(int id, const char *method, jv params)
{
	jv r = jv_object_set(jv_object(), jv_string("jsonrpc"),
	    jv_string("2.0"));

	r = jv_object_set(r, jv_string("id"), jv_number(id));
	r = jv_object_set(r, jv_string("method"), jv_string(method));
	return jv_object_set(r, jv_string("params"), params);
}

/* The port connection idx dials: the publisher -p, subscriber i the
 * i-th of -P (round and round), or -p without -P. */
static int
conn_port(int idx)
{
	if (idx == 0 || g.nports == 0)
		return g.port;
	return g.ports[(idx - 1) % g.nports];
}

static int
due(double now)
{
	double d;

	if (g.window) {
		d = (double)g.acked + (double)g.refused + g.window;
		return d >= g.nbeam ? g.nbeam : (int)d;
	}
	d = floor((now - g.t_pub) * g.rate) + 1;

	return d >= g.nbeam ? g.nbeam : (int)d;
}

static int
publish(struct lws *wsi)
{
	struct beam *b;
	int n, until = due(now_s());

	while (g.nsent < until) {
		b = &g.beams[g.nsent];
		buf_reset(&g.wbuf);
		buf_grow(&g.wbuf, LWS_PRE + b->len);
		memcpy(g.wbuf.p + LWS_PRE, b->line, b->len);
		n = lws_write(wsi, (unsigned char *)g.wbuf.p + LWS_PRE, b->len,
		    LWS_WRITE_TEXT);
		if (n < 0) {
			warn("publisher: send failed");
			return -1;
		}
		b->sent = now_s();
		g.nsent++;
		if (lws_send_pipe_choked(wsi)) {
			lws_callback_on_writable(wsi);
			break;
		}
	}
	return 0;
}

static int
on_writeable(struct conn *c)
{
	if (c->closing) {
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL,
		    (unsigned char *)"done", 4);
		return -1;
	}
	if (c->pending) {
		c->pending = 0;
		if (lws_write(c->wsi, (unsigned char *)c->out.p + LWS_PRE,
		    c->out.len - LWS_PRE, LWS_WRITE_TEXT) < 0) {
			warn("connection %d: send failed", c->idx);
			return -1;
		}
		return 0;
	}
	if (c->idx == 0 && g.phase == P_PUBLISH)
		return publish(c->wsi);
	return 0;
}

/* --- receiving ---------------------------------------------------------- */

static void setup_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Set-up went wrong: say why and stop. */
static void
setup_fail(const char *fmt, ...)
{
	char m[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	warn("%s", m);
	g.status = 2;
	g.quit = 1;
}

static void
on_challenge(struct conn *c, jv params)
{
	const char *nonce = jsonl_str(params, "nonce");
	const char *node = jsonl_str(params, "node");
	const char *addr = jsonl_str(params, "address");
	jv login;

	if (!nonce || !node || !addr) {
		setup_fail("the node's challenge is malformed");
		return;
	}
	login = jv_object_set(jv_object(), jv_string("type"),
	    jv_string("auth.login"));
	login = jv_object_set(login, jv_string("nonce"), jv_string(nonce));
	login = jv_object_set(login, jv_string("node"), jv_string(node));
	login = jv_object_set(login, jv_string("address"), jv_string(addr));
	login = jv_object_set(login, jv_string("role"), jv_string("client"));
	login = jv_object_set(login, jv_string("author"),
	    jv_string(g.key->did));
	login = jv_object_set(login, jv_string("ts"),
	    jv_number((double)jsonl_now_ms()));
	login = sig_attach(login, g.key);
	if (!jv_is_valid(login))
		die("cannot sign the login");
	queue(c, request(1, "auth.login", login));
	c->state = C_LOGIN;
}

static void
became_ready(struct conn *c)
{
	c->state = C_READY;
	g.nready++;
}

/* A message before the connection is ready: parse it in full. */
static void
on_setup_message(struct conn *c, const char *p, size_t len)
{
	jv msg = canon_parse(p, len), err;
	const char *method = jsonl_str(msg, "method");
	char what[64];

	if (jv_get_kind(msg) != JV_KIND_OBJECT) {
		setup_fail("%s %d: the node sent something that is not a "
		    "JSON object", c->idx ? "subscriber" : "publisher", c->idx);
		jv_free(msg);
		return;
	}
	if (method && !jsonl_has(msg, "id")) {
		if (c->state == C_CHALLENGE &&
		    strcmp(method, "auth.challenge") == 0) {
			jv params = jsonl_get(msg, "params");
			on_challenge(c, params);
			jv_free(params);
		}
		jv_free(msg);
		return;
	}
	snprintf(what, sizeof(what), "%s %d (port %d)",
	    c->idx ? "subscriber" : "publisher", c->idx, conn_port(c->idx));
	if (jsonl_has(msg, "error")) {
		err = jsonl_get(msg, "error");
		setup_fail("%s: refused: %.200s", what,
		    jsonl_str(err, "message") ? jsonl_str(err, "message") :
		    "(no message)");
		jv_free(err);
	} else if (c->state == C_LOGIN && c->idx == 0)
		became_ready(c);
	else if (c->state == C_LOGIN) {
		jv params = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(g.space));
		queue(c, request(2, "subscribe", params));
		c->state = C_SUBSCRIBE;
	} else if (c->state == C_SUBSCRIBE)
		became_ready(c);
	jv_free(msg);
}

/* An event notification on a ready subscriber: no full parse. */
static void
on_event(struct conn *c, const char *p, size_t len, double t)
{
	static const char key[] = "\"beam\":\"";
	const char *q, *bid, *e;
	int32_t *slot;
	int b;

	if (!memmem(p, len, "\"method\":\"event\"", 16))
		return;
	if (!(q = memmem(p, len, key, sizeof(key) - 1)) ||
	    (q += sizeof(key) - 1) >= p + len ||
	    !(e = memchr(q, '"', (size_t)(p + len - q))) ||
	    !(bid = path_id(q, (size_t)(e - q))) ||
	    (b = id_find(bid)) < 0 || g.beams[b].sent < 0) {
		g.unknown++;
		return;
	}
	slot = &g.lat[(size_t)(c->idx - 1) * (size_t)g.nbeam + (size_t)b];
	if (*slot >= 0) {
		g.dups++;
		return;
	}
	double us = (t - g.beams[b].sent) * 1e6;
	*slot = us > INT32_MAX ? INT32_MAX : (int32_t)us;
	g.delivered++;
	if (b < g.last[c->idx - 1])
		g.disordered++;
	else
		g.last[c->idx - 1] = b;
}

/* An answer on the ready publisher. */
static void
on_answer(const char *p, size_t len, double t)
{
	const char *q = memmem(p, len, "\"id\":", 5);
	long long id;
	int64_t i;

	if (!q)
		return;
	id = strtoll(q + 5, NULL, 10);
	i = id - g.first_id;
	if (i < 0 || i >= g.nbeam || g.beams[i].acked >= 0 ||
	    g.beams[i].sent < 0)
		return;
	g.beams[i].acked = t;
	if (memmem(p, len, "\"result\":", 9))
		g.acked++;
	else {
		if (g.refused++ == 0)
			warn("publisher: refused: %.300s", p);
	}
	if (g.window && g.phase == P_PUBLISH && g.conns[0].wsi)
		lws_callback_on_writable(g.conns[0].wsi);
}

static void
on_message(struct conn *c, const char *p, size_t len)
{
	double t = now_s();

	if (c->state != C_READY)
		on_setup_message(c, p, len);
	else if (c->idx == 0)
		on_answer(p, len, t);
	else
		on_event(c, p, len, t);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct conn *c = lws_get_opaque_user_data(wsi);

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c) {
			c->wsi = NULL;
			c->state = C_CLOSED;
			g.nclosed++;
		}
		if (g.phase == P_SETUP && !g.quit)
			setup_fail("connection %d: %s", c ? c->idx : -1,
			    in ? (char *)in : "cannot connect");
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (c)
			c->state = C_CHALLENGE;
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!c || lws_frame_is_binary(wsi))
			break;
		if (c->rx.len + len > MSG_MAX) {
			warn("connection %d: a message over 1 MiB", c->idx);
			return -1;
		}
		if (c->rx.len == 0 && lws_is_final_fragment(wsi)) {
			on_message(c, in, len);
			break;
		}
		buf_add(&c->rx, in, len);
		if (!lws_is_final_fragment(wsi))
			break;
		on_message(c, c->rx.p, c->rx.len);
		buf_reset(&c->rx);
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!c)
			return -1;
		return on_writeable(c);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && g.phase < P_CLOSE && c->state != C_CLOSED)
			warn("connection %d: the node closed it (%d)", c->idx,
			    len >= 2 ? ((unsigned char *)in)[0] << 8 |
			    ((unsigned char *)in)[1] : 1005);
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (!c || c->state == C_CLOSED)
			break;
		if (g.phase < P_CLOSE) {
			g.dropped++;
			if (c->state != C_READY && g.phase == P_SETUP &&
			    !g.quit)
				setup_fail("%s %d: closed during set-up",
				    c->idx ? "subscriber" : "publisher",
				    c->idx);
		}
		if (c->state == C_READY)
			g.nready--;
		c->state = C_CLOSED;
		c->wsi = NULL;
		g.nclosed++;
		break;
	default:
		break;
	}
	return 0;
}

static int timer_callback(struct lws *, enum lws_callback_reasons, void *,
    void *, size_t);

static const struct lws_protocols protocols[] = {
	{ "fanout", callback, 0, 16384, 0, NULL, 0 },
	{ "fanout-timer", timer_callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* --- the node's CPU ----------------------------------------------------- */

/* CPU seconds (user + system) used so far by the -c processes; one that
 * is gone counts nothing. */
static double
node_cpu(void)
{
	static long hz;
	double s = 0;
	char path[64], line[1024], *p;
	unsigned long ut, st;
	FILE *f;
	int i;

	if (!hz && (hz = sysconf(_SC_CLK_TCK)) <= 0)
		hz = 100;
	for (i = 0; i < g.npids; i++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", g.pids[i]);
		if (!(f = fopen(path, "r")))
			continue;
		if (fgets(line, sizeof(line), f) &&
		    (p = strrchr(line, ')')) &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
		    "%*u %lu %lu", &ut, &st) == 2)
			s += (double)(ut + st) / (double)hz;
		fclose(f);
	}
	return s;
}

/* --- the run ------------------------------------------------------------ */

static void
begin_close(void)
{
	int i;

	g.phase = P_CLOSE;
	g.t_close = now_s();
	if (g.t_end == 0) {
		g.t_end = g.t_close;
		g.cpu1 = node_cpu();
	}
	for (i = 0; i < g.nconn; i++)
		if (g.conns[i].wsi && g.conns[i].state != C_CLOSED) {
			g.conns[i].closing = 1;
			lws_callback_on_writable(g.conns[i].wsi);
		}
}

/* The timer at a period of ms milliseconds.  A timerfd, not an lws
 * timer: lws truncates its poll timeout to whole milliseconds and spins
 * through the rest, which would steal a core from the node. */
static void
set_tick(int ms)
{
	struct itimerspec it;

	if (ms == g.tick_ms)
		return;
	memset(&it, 0, sizeof(it));
	it.it_interval.tv_nsec = it.it_value.tv_nsec = ms * 1000000L;
	if (timerfd_settime(g.tfd, 0, &it, NULL) != 0)
		die("timerfd_settime:");
	g.tick_ms = ms;
}

static void
tick(void)
{
	double now = now_s();
	long expected = (long)g.nsub * g.nbeam;

	if (gotsig) {
		warn("interrupted");
		g.status = 2;
		if (g.phase >= P_CLOSE)
			g.quit = 1;
		else
			begin_close();
		gotsig = 0;
	}
	switch (g.phase) {
	case P_SETUP:
		if (g.nready == g.nconn) {
			g.t_ready = now;
			g.cpu0 = node_cpu();
			g.t_pub = now_s();
			g.phase = P_PUBLISH;
			lws_callback_on_writable(g.conns[0].wsi);
		} else if (now - g.start > g.setup_max) {
			warn("set-up: %d of %d connections ready after %g s",
			    g.nready, g.nconn, g.setup_max);
			g.status = 2;
			begin_close();
		}
		break;
	case P_PUBLISH:
		if (!g.conns[0].wsi) {
			warn("the publisher's connection is gone");
			g.t_last = now;
			g.phase = P_DRAIN;
		} else if (g.nsent >= g.nbeam) {
			g.t_last = g.beams[g.nbeam - 1].sent;
			g.phase = P_DRAIN;
		} else if (due(now) > g.nsent)
			lws_callback_on_writable(g.conns[0].wsi);
		break;
	case P_DRAIN:
		if (g.delivered + g.dups >= expected &&
		    g.acked + g.refused >= g.nsent) {
			/* the last delivery was within the last tick */
			g.t_end = now;
			g.cpu1 = node_cpu();
			begin_close();
		} else if (now - g.t_last > g.drain_max)
			begin_close();
		break;
	case P_CLOSE:
		if (g.nclosed >= g.nconn || now - g.t_close > CLOSE_S)
			g.quit = 1;
		break;
	case P_DONE:
		break;
	}
	set_tick(g.phase == P_PUBLISH && !g.window ? 1 : g.phase == P_DRAIN &&
	    g.window ? 1 : 10);
}

static int
timer_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	uint64_t n;

	(void)wsi;
	(void)user;
	(void)in;
	(void)len;
	if (reason == LWS_CALLBACK_RAW_RX_FILE) {
		if (read(g.tfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			die("timerfd:");
		tick();
	}
	return 0;
}

static int
cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values, in ms. */
static double
pct(const int32_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return -1;
	i = (size_t)ceil(p * (double)n);
	i = i ? i - 1 : 0;
	return v[i < n ? i : n - 1] / 1000.0;
}

/* ,"per_port_max_ms":[...],"per_port_missing":[...]: the slowest
 * delivery and the missing ones of the subscribers on each -P port. */
static void
report_ports(void)
{
	double *mx = xcalloc((size_t)g.nports, sizeof(*mx));
	long *miss = xcalloc((size_t)g.nports, sizeof(*miss));
	size_t s, b;
	int p;

	for (p = 0; p < g.nports; p++)
		mx[p] = -1;
	for (s = 0; s < (size_t)g.nsub; s++) {
		p = (int)(s % (size_t)g.nports);
		for (b = 0; b < (size_t)g.nbeam; b++) {
			int32_t l = g.lat[s * (size_t)g.nbeam + b];

			if (l < 0)
				miss[p]++;
			else if (l / 1000.0 > mx[p])
				mx[p] = l / 1000.0;
		}
	}
	printf(",\"per_port_max_ms\":[");
	for (p = 0; p < g.nports; p++)
		printf("%s%.2f", p ? "," : "", mx[p]);
	printf("],\"per_port_missing\":[");
	for (p = 0; p < g.nports; p++)
		printf("%s%ld", p ? "," : "", miss[p]);
	printf("]");
	free(mx);
	free(miss);
}

/* -P PORT,PORT,... or -c PID,PID,...: at most 10000 numbers from lo
 * to hi, into *list. */
static int
parse_list(const char *opt, const char *arg, long lo, long hi, int **list)
{
	const char *p = arg;
	char *end;
	long v;
	int n = 0;

	for (;;) {
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || end == p || v < lo || v > hi ||
		    (*end != ',' && *end != '\0') || n >= 10000) {
			warn("%s: not a list of numbers: %.60s", opt, arg);
			usage(2);
		}
		*list = xrealloc(*list, (size_t)(n + 1) * sizeof(**list));
		(*list)[n++] = (int)v;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	return n;
}

static void
report(void)
{
	size_t total = (size_t)g.nsub * (size_t)g.nbeam, n = 0, i;
	int32_t *v = xmalloc((total ? total : 1) * sizeof(*v)), *a;
	size_t na = 0;
	struct rusage ru;
	double cpu;

	for (i = 0; i < total; i++)
		if (g.lat[i] >= 0)
			v[n++] = g.lat[i];
	qsort(v, n, sizeof(*v), cmp_i32);
	a = xmalloc((size_t)g.nbeam * sizeof(*a));
	for (i = 0; i < (size_t)g.nbeam; i++)
		if (g.beams[i].acked >= 0 && g.beams[i].sent >= 0)
			a[na++] = (int32_t)((g.beams[i].acked -
			    g.beams[i].sent) * 1e6);
	qsort(a, na, sizeof(*a), cmp_i32);
	getrusage(RUSAGE_SELF, &ru);
	cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("{\"subscribers\":%d,\"events\":%d,\"sent\":%d,\"rate\":%g,"
	    "\"setup_s\":%.3f,\"publish_s\":%.3f,"
	    "\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
	    "\"delivered\":%zu,\"expected\":%zu,\"missing\":%zu,"
	    "\"duplicates\":%ld,\"disordered\":%ld,\"unknown\":%ld,"
	    "\"acked\":%ld,\"refused\":%ld,"
	    "\"ack_p50_ms\":%.2f,\"ack_p99_ms\":%.2f,\"dropped\":%d,"
	    "\"cpu_s\":%.2f,\"run_s\":%.3f,\"node_cpu_s\":%.2f",
	    g.nsub, g.nbeam, g.nsent, g.rate,
	    g.t_ready > 0 ? g.t_ready - g.start : -1,
	    g.t_last > 0 ? g.t_last - g.t_pub : -1,
	    pct(v, n, 0.5), pct(v, n, 0.9), pct(v, n, 0.99),
	    n ? v[n - 1] / 1000.0 : -1, n, total, total - n, g.dups,
	    g.disordered, g.unknown, g.acked, g.refused, pct(a, na, 0.5),
	    pct(a, na, 0.99), g.dropped, cpu,
	    g.t_end > 0 ? g.t_end - g.t_pub : -1, g.cpu1 - g.cpu0);
	free(v);
	free(a);
	if (g.nports > 0)
		report_ports();
	printf("}\n");
	if (fflush(stdout) != 0)
		die("stdout:");
}

static double
num_arg(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi)) {
		warn("%s: not a number in [%g, %g]: %.40s", opt, lo, hi, s);
		usage(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	struct sigaction sa;
	struct lws_vhost *vh;
	lws_sock_file_fd_type fd;
	const char *keyfile = NULL, *file = NULL;
	char err[256], (*hostport)[32];
	int nset = 0;
	int ch, i;

	prog = "fanout";
	g.setup_max = 30;
	g.drain_max = 5;
	while ((ch = getopt_long(argc, argv, "p:P:c:k:s:n:r:W:f:t:w:h", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'p':
			g.port = (int)num_arg("-p", optarg, 1, 65535);
			break;
		case 'P':
			g.nports = parse_list("-P", optarg, 1, 65535, &g.ports);
			break;
		case 'c':
			g.npids = parse_list("-c", optarg, 1, 1l << 30, &g.pids);
			break;
		case 'W':
			g.window = (int)num_arg("-W", optarg, 1, 100000);
			break;
		case 'k':
			keyfile = optarg;
			break;
		case 's':
			g.space = optarg;
			break;
		case 'n':
			g.nsub = (int)num_arg("-n", optarg, 0, 10000);
			nset = 1;
			break;
		case 'r':
			g.rate = num_arg("-r", optarg, 0.001, 1e6);
			break;
		case 'f':
			file = optarg;
			break;
		case 't':
			g.setup_max = num_arg("-t", optarg, 0.1, 3600);
			break;
		case 'w':
			g.drain_max = num_arg("-w", optarg, 0, 3600);
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind != argc || !g.port || !keyfile || !g.space || !nset ||
	    (g.rate <= 0 && !g.window) || !file)
		usage(2);
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (!(g.key = key_load(keyfile, err, sizeof(err))))
		die("%s", err);
	load_beams(file);
	if ((size_t)g.nsub * (size_t)g.nbeam > 200000000u)
		die("too many (subscriber, event) pairs");
	g.lat = xmalloc((size_t)g.nsub * (size_t)g.nbeam * sizeof(*g.lat));
	memset(g.lat, 0xff, (size_t)g.nsub * (size_t)g.nbeam *
	    sizeof(*g.lat));
	g.last = xmalloc((size_t)g.nsub * sizeof(*g.last));
	memset(g.last, 0xff, (size_t)g.nsub * sizeof(*g.last));
	g.nconn = g.nsub + 1;
	g.conns = xcalloc((size_t)g.nconn, sizeof(*g.conns));

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.fd_limit_per_thread = (unsigned)(2 * g.nconn + 64);
	info.pt_serv_buf_size = 65536;
	if (!(g.ctx = lws_create_context(&info)))
		die("cannot create the WebSocket context");

	if ((g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK |
	    TFD_CLOEXEC)) < 0)
		die("timerfd_create:");
	memset(&fd, 0, sizeof(fd));
	fd.filefd = g.tfd;
	if (!(vh = lws_get_vhost_by_name(g.ctx, "default")) ||
	    !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, fd,
	    "fanout-timer", NULL))
		die("cannot watch the timer");
	set_tick(10);

	/* each connection's Host, kept for the whole run */
	hostport = xcalloc((size_t)g.nconn, sizeof(*hostport));
	g.start = now_s();
	for (i = 0; i < g.nconn; i++) {
		struct conn *c = &g.conns[i];

		c->idx = i;
		c->state = C_CONNECTING;
		snprintf(hostport[i], sizeof(hostport[i]), "127.0.0.1:%d",
		    conn_port(i));
		memset(&ci, 0, sizeof(ci));
		ci.context = g.ctx;
		ci.address = "127.0.0.1";
		ci.port = conn_port(i);
		ci.path = "/";
		ci.host = hostport[i];
		ci.origin = hostport[i];
		ci.local_protocol_name = "fanout";
		ci.opaque_user_data = c;
		ci.pwsi = &c->wsi;
		if (!lws_client_connect_via_info(&ci) && c->state != C_CLOSED)
			die("connection %d: cannot connect to %s", i,
			    hostport[i]);
	}
	while (!g.quit)
		if (lws_service(g.ctx, 0) < 0)
			break;
	lws_context_destroy(g.ctx);
	if (g.status == 0)
		report();
	for (i = 0; i < g.nconn; i++) {
		buf_free(&g.conns[i].rx);
		buf_free(&g.conns[i].out);
	}
	for (i = 0; i < g.nbeam; i++)
		free(g.beams[i].line);
	free(g.beams);
	free(g.table);
	free(g.lat);
	free(g.last);
	free(g.pids);
	free(g.conns);
	free(g.ports);
	free(hostport);
	buf_free(&g.wbuf);
	key_free(g.key);
	return g.status;
}
