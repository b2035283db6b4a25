/*
 * Messages from peers: each whole text message is one JSON-RPC object.  A
 * request that passes the checks here (JSON, a request object, an id the
 * answer can carry back exactly, a method the connection's role may call,
 * the caller's limits, the size of the bus line) becomes one request line
 * on stdout; everything else is answered here.
 */
#include <stdio.h>
#include <string.h>

#include "canon.h"
#include "span.h"
#include "jsonl.h"
#include "msg.h"
#include "serve.h"

static const char *const client_methods[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "space.beam", "space.history",
	"space.members", "space.info", "subscribe", "unsubscribe",
	"beam.get", "beam.delete", "stream.push", "stream.watch",
	"stream.unwatch", "stream.recent", NULL,
};

/* A node reads as its members may, and submits events only through
 * node.submit (protocol.md, section 10). */
static const char *const node_methods[] = {
	"space.history", "space.members", "space.info", "subscribe",
	"unsubscribe", "beam.get",
	"node.submit", "node.broadcast", "node.head", "node.sync",
	"relay.join", "relay.attach", "relay.leave", "relay.chunk",
	"relay.fetch", NULL,
};

/* Methods whose answer may be large: a history, member or sync page, a
 * beam, chunks of a stream (at most BIG_INFLIGHT in the node per
 * connection). */
static const char *const big_methods[] = {
	"space.history", "space.members", "beam.get", "stream.recent",
	"node.sync", "relay.fetch", NULL,
};

static struct buf pbuf = BUF_INIT;	/* canonical params */

static int
listed(const char *const *list, const char *m, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, m, n) == 0)
			return 1;
	return 0;
}

/* ---- the raw text of the id ---- */

static const char *
skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
skip_str(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return e;
}

static const char *
skip_val(const char *p, const char *e)
{
	int d = 0;

	if (p < e && *p == '"')
		return skip_str(p, e);
	if (p < e && (*p == '{' || *p == '[')) {
		for (; p < e; p++) {
			if (*p == '"') {
				p = skip_str(p, e) - 1;
				continue;
			}
			if (*p == '{' || *p == '[')
				d++;
			else if ((*p == '}' || *p == ']') && --d == 0)
				return p + 1;
		}
		return e;
	}
	while (p < e && !strchr(",}] \t\r\n", *p))
		p++;
	return p;
}

/* 1 if the key token [k, ke) (quotes included) is "id", escapes read. */
static int
key_is_id(const char *k, const char *ke)
{
	jv s;
	int r;

	if (!memchr(k, '\\', (size_t)(ke - k)))
		return ke - k == 4 && memcmp(k, "\"id\"", 4) == 0;
	s = canon_parse(k, (size_t)(ke - k));
	r = jv_get_kind(s) == JV_KIND_STRING &&
	    jv_string_length_bytes(jv_copy(s)) == 2 &&
	    memcmp(jv_string_value(s), "id", 2) == 0;
	jv_free(s);
	return r;
}

/*
 * The text of the top-level "id" member of the object in p[0..len), which
 * canon_parse has accepted (so it is well formed and has one "id" at
 * most).  1 with *v, *vl set, or 0 when there is none.
 */
static int
raw_id(const char *p, size_t len, const char **v, size_t *vl)
{
	const char *e = p + len, *k, *ke, *ve;

	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return 0;
	for (p++;;) {
		p = skip_ws(p, e);
		if (p >= e || *p != '"')
			return 0;
		k = p;
		ke = skip_str(p, e);
		p = skip_ws(ke, e);
		if (p >= e || *p != ':')
			return 0;
		p = skip_ws(p + 1, e);
		ve = skip_val(p, e);
		if (key_is_id(k, ke)) {
			*v = p;
			*vl = (size_t)(ve - p);
			return 1;
		}
		p = skip_ws(ve, e);
		if (p >= e || *p != ',')
			return 0;
		p++;
	}
}

/*
 * A number id must be an integer written plainly (no fraction, no
 * exponent, no -0) within +-(2^53 - 1): then the answer carries the very
 * same number.  A double cannot hold larger ones exactly.
 */
static int
number_id_ok(const char *s, size_t n)
{
	static const char max[] = "9007199254740991";
	size_t i = 0, digits;

	if (n && s[0] == '-')
		i = 1;
	digits = n - i;
	if (digits == 0 || digits > sizeof(max) - 1)
		return 0;
	for (size_t j = i; j < n; j++)
		if (s[j] < '0' || s[j] > '9')
			return 0;
	if (s[i] == '0' && (digits > 1 || i == 1))
		return 0;
	if (digits == sizeof(max) - 1 && memcmp(s + i, max, digits) > 0)
		return 0;
	return 1;
}

/* Why the id member of v (borrowed), sent as p[0..len), cannot be carried
 * back exactly, or NULL. */
static const char *
id_problem(jv v, const char *p, size_t len)
{
	jv_kind k = jsonl_kind(v, "id");
	const char *raw;
	size_t rl;

	switch (k) {
	case JV_KIND_NULL:
		return NULL;
	case JV_KIND_STRING: {
		jv s = jsonl_get(v, "id");
		int n = jv_string_length_bytes(s);
		return n > ID_MAX ? "a string id is longer than 256 bytes" :
		    NULL;
	}
	case JV_KIND_NUMBER:
		if (!raw_id(p, len, &raw, &rl) || !number_id_ok(raw, rl))
			return "a number id must be an integer from "
			    "-9007199254740991 to 9007199254740991, written "
			    "without fraction or exponent";
		return NULL;
	default:
		return "id must be a string, an integer or null";
	}
}

/* The method member and its length (it may hold a NUL byte, and then
 * is no method of ours), or NULL when it is not a string. */
static const char *
method_of(jv v, size_t *n)
{
	jv m = jsonl_get(v, "method");
	const char *s = NULL;

	if (jv_get_kind(m) == JV_KIND_STRING) {
		*n = (size_t)jv_string_length_bytes(jv_copy(m));
		s = jv_string_value(m);		/* v holds it */
	}
	jv_free(m);
	return s;
}

/* The request line for v from c, with params in pbuf and id (borrowed). */
static void
emit_request(struct conn *c, const char *method, jv id, int64_t r)
{
	buf_addf(&obuf, "{\"m\":\"%s\",\"c\":%lld,\"r\":%lld,\"did\":\"%s\","
	    "\"role\":\"%s\"", method, (long long)c->id, (long long)r, c->did,
	    c->node_role ? "node" : "client");
	if (jv_is_valid(id)) {
		buf_adds(&obuf, ",\"id\":");
		out_json(jv_copy(id));
	}
	buf_adds(&obuf, ",\"p\":");
	buf_add(&obuf, pbuf.p, pbuf.len);
	buf_adds(&obuf, "}\n");
	out_line_done();
}

/* A response from a node to one of our requests: into the ring. */
static void
response(struct conn *c, jv v)
{
	int64_t r;

	if (c->state != S_AUTH || !c->node_role)
		return;
	buf_reset(&pbuf);
	if (canon_dump(v, NULL, &pbuf) != 0 || pbuf.len + 256 > line_max) {
		warn("connection %lld: response too large, dropped",
		    (long long)c->id);
		return;
	}
	r = infl_add(c, jv_invalid(), 0);
	buf_addf(&obuf, "{\"m\":\"rpc.response\",\"c\":%lld,\"r\":%lld,"
	    "\"did\":\"%s\",\"role\":\"node\",\"p\":", (long long)c->id,
	    (long long)r, c->did);
	buf_add(&obuf, pbuf.p, pbuf.len);
	buf_adds(&obuf, "}\n");
	out_line_done();
}

/* Another node's link (logged in either way).  What no node would send,
 * a message that is not JSON-RPC or more messages a second than
 * max_node_rate, drops the link and is reported (peer.bad): ns-gossip
 * closes the node's other links and refuses it for a while.  1 if so. */
static int
node_fault(struct conn *c, const char *why)
{
	if (c->state != S_AUTH || !(c->node_role || c->outbound) ||
	    !c->did[0] || c->closing)
		return 0;
	warn("node %.60s: %s; the link is dropped", c->did, why);
	buf_adds(&obuf, "{\"m\":\"peer.bad\",\"p\":{\"node\":");
	bus_json(&obuf, jv_string(c->did));
	buf_adds(&obuf, ",\"reason\":");
	bus_json(&obuf, jv_string(why));
	buf_adds(&obuf, "}}\n");
	out_line_done();
	conn_close(c, 1008, why, 1);
	return 1;
}

/* A node link over its message rate: a fault. */
static int
node_flood(struct conn *c)
{
	int64_t now;

	if (c->state != S_AUTH || !(c->node_role || c->outbound))
		return 0;
	now = now_ms();
	if (now - c->rate_start >= 1000) {
		c->rate_start = now;
		c->rate_n = 0;
	}
	if (++c->rate_n <= max_node_rate)
		return 0;
	return node_fault(c, "more messages a second than a node may send");
}

/* The params of message p[0..len) (already parsed, of kind k) into out
 * as they were sent, when that is RFC 8785 text: 1, else 0. */
static int
raw_params(const char *p, size_t len, jv_kind k, struct buf *out)
{
	static const char *const names[] = { "params" };
	struct span v;

	if (k != JV_KIND_OBJECT || span_get(p, len, names, &v, 1) != 0 ||
	    !v.p || !span_canonical(v.p, v.len))
		return 0;
	buf_add(out, v.p, v.len);
	return 1;
}

/*
 * What a request message says, taken apart.  v is the parsed message (the
 * slow way), or invalid when the text was canonical and taken apart
 * without building it: then params is the span of its params.
 */
struct req {
	jv v, id;		/* owned */
	int has_id;
	const char *method;	/* in v or in the message text */
	size_t mlen;
	char mbuf[32];
	jv_kind k;		/* of params */
	struct span params;
};

/*
 * The common case without building a value: a logged-in peer's request
 * in RFC 8785 form (as ns-client and the node's own links send them),
 * whose params go on as they stand.  Most of what a node takes in is
 * this, and parsing it into jv cost more than all else ns-serve does with
 * it.  1 with *q filled; 0 when anything is unusual (an error to answer,
 * auth.login, a response, a dialing link): handle_msg parses it then.
 */
static int
take_canonical(const struct conn *c, const char *p, size_t len,
    struct req *q)
{
	static const char *const names[] = { "id", "jsonrpc", "method",
	    "params" };
	struct span v[4];

	if (c->state != S_AUTH || c->outbound || len < 2 || p[0] != '{' ||
	    !span_canonical(p, len) || span_get(p, len, names, v, 4) != 0 ||
	    !span_is(&v[1], "2.0") ||
	    !v[2].p || span_str(v[2].p, v[2].len, q->mbuf,
	    sizeof(q->mbuf)) != 0 || (v[3].p && v[3].p[0] != '{'))
		return 0;
	q->mlen = strlen(q->mbuf);
	if (q->mlen == 10 && memcmp(q->mbuf, "auth.login", 10) == 0)
		return 0;
	q->has_id = v[0].p != NULL;
	if (q->has_id) {
		/* what id_problem takes: null, a string whose text is at
		 * most ID_MAX bytes (escapes only make the text longer than
		 * the string), a plain integer in range */
		switch (v[0].p[0]) {
		case 'n':
			break;
		case '"':
			if (v[0].len - 2 > ID_MAX)
				return 0;
			break;
		default:
			if (!number_id_ok(v[0].p, v[0].len))
				return 0;
		}
		q->id = canon_parse(v[0].p, v[0].len);
		if (!jv_is_valid(q->id)) {
			jv_free(q->id);
			q->id = jv_invalid();
			return 0;
		}
	}
	q->v = jv_invalid();
	q->method = q->mbuf;
	q->k = v[3].p ? JV_KIND_OBJECT : JV_KIND_INVALID;
	q->params = v[3];
	return 1;
}

void
handle_msg(struct conn *c, const char *p, size_t len)
{
	struct req q = { .v = jv_invalid(), .id = jv_invalid() };
	jv v, params = jv_invalid();
	const char *s, *why;
	int too_large = 0;
	int64_t r;

	if (node_flood(c))
		return;
	if (take_canonical(c, p, len, &q))
		goto request;
	q.v = v = canon_parse(p, len);
	if (!jv_is_valid(v)) {
		jv m = jv_invalid_get_msg(v);
		q.v = jv_invalid();
		if (!node_fault(c, "sent a message that is not JSON"))
			send_error(c, jv_null(), E_PARSE,
			    jv_get_kind(m) == JV_KIND_STRING ?
			    jv_string_value(m) : "not JSON");
		jv_free(m);
		return;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT && node_fault(c,
	    "sent a message that is not a JSON-RPC object"))
		goto out;
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
		response(c, v);
		goto out;
	}
	q.has_id = jsonl_kind(v, "id") != JV_KIND_INVALID;
	if (q.has_id && (why = id_problem(v, p, len))) {
		if (!node_fault(c, "sent a request with an id no request has"))
			send_error(c, jv_null(), E_INVALID_REQUEST, why);
		goto out;
	}
	if (q.has_id)
		q.id = jsonl_get(v, "id");
	s = jsonl_str(v, "jsonrpc");
	q.method = method_of(v, &q.mlen);
	if ((!s || strcmp(s, "2.0") != 0 || !q.method) && node_fault(c,
	    "sent a message that is not a JSON-RPC request"))
		goto out;
	if (!s || strcmp(s, "2.0") != 0 || !q.method) {
		send_error(c, q.has_id ? jv_copy(q.id) : jv_null(),
		    E_INVALID_REQUEST, !q.method ?
		    "method missing or not a string" :
		    "jsonrpc must be \"2.0\"");
		goto out;
	}
	if (!c->outbound && q.mlen == 10 &&
	    memcmp(q.method, "auth.login", 10) == 0) {
		if (!q.has_id)
			send_error(c, jv_null(), E_INVALID_REQUEST,
			    "auth.login needs an id");
		else
			do_login(c, v, jv_copy(q.id));
		goto out;
	}
	q.k = jsonl_kind(v, "params");
request:
	if (c->state != S_AUTH) {
		if (q.has_id)
			send_error(c, jv_copy(q.id), E_UNAUTH, "log in first");
		goto out;
	}
	if (!listed(c->node_role ? node_methods : client_methods, q.method,
	    q.mlen)) {
		if (q.has_id)
			send_error(c, jv_copy(q.id), E_METHOD,
			    listed(client_methods, q.method, q.mlen) ?
			    "method not allowed to nodes: a node submits "
			    "events with node.submit" :
			    listed(node_methods, q.method, q.mlen) ?
			    "method allowed to nodes only" :
			    "method not found");
		goto out;
	}
	if (q.k != JV_KIND_INVALID && q.k != JV_KIND_OBJECT) {
		if (q.has_id)
			send_error(c, jv_copy(q.id), E_PARAMS,
			    "params must be an object");
		goto out;
	}
	/* the cap is known only here; refusing before ns-log answers keeps
	 * a client from believing in a subscription that was dropped */
	if ((strcmp(q.method, "subscribe") == 0 ||
	    strcmp(q.method, "stream.watch") == 0) && c->nsubs >= SUBS_MAX) {
		if (q.has_id)
			send_error(c, jv_copy(q.id), E_TOO_LARGE, "at most 256 "
			    "subscriptions and watches per connection");
		goto out;
	}
	/* one DID may not fill a node others are waiting on, however many
	 * connections it has */
	if (c->acct)
		acct_active(c->acct, now_ms());
	if (c->acct && c->acct->inflight >= max_did_inflight &&
	    acct_contended(c->acct, now_ms())) {
		if (q.has_id)
			send_error_data(c, jv_copy(q.id), E_BUSY, "too many "
			    "requests in progress for this DID; retry later",
			    jv_object_set(jv_object(), jv_string("retryAfter"),
			    jv_number(BUSY_RETRY_MS)));
		goto out;
	}
	buf_reset(&pbuf);
	/* what one message may cost the ring is bounded after the
	 * canonical form, which can be longer than what was sent; params
	 * sent in canonical form already (as ns-client sends them) go on
	 * as they are */
	if (q.params.p)
		buf_add(&pbuf, q.params.p, q.params.len);
	else if (q.k != JV_KIND_OBJECT || !jv_is_valid(q.v))
		buf_adds(&pbuf, "{}");
	else if (!raw_params(p, len, q.k, &pbuf)) {
		params = jsonl_get(q.v, "params");
		too_large = canon_dump(params, NULL, &pbuf) != 0;
	}
	if (too_large || pbuf.len + 512 + (q.has_id ? ID_MAX : 0) > line_max) {
		if (q.has_id)
			send_error(c, jv_copy(q.id), E_TOO_LARGE, "params are "
			    "too large once in canonical form");
		goto out;
	}
	r = infl_add(c, q.id, listed(big_methods, q.method, q.mlen));
	emit_request(c, q.method, q.id, r);
out:
	if (pbuf.cap > KEEP_MAX)
		buf_free(&pbuf);
	jv_free(params);
	jv_free(q.id);
	jv_free(q.v);
}
