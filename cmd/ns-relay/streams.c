/*
 * Live streams (share/doc/protocol.md, section 12).  The owner node keeps
 * the stream's viewer nodes and gives each its place in the relay tree:
 * two parents, so that one failing loses nothing.  Every node keeps the
 * last KEEP chunks, sends each new one to the children attached to it,
 * and hands its own watchers every chunk once and in order, fetching from
 * a parent what both parents missed.  Joins and attaches are repeated
 * every BEAT_MS: a node or child not heard from for SILENT_MS is gone, and
 * the tree mends itself around it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canon.h"
#include "jsonl.h"
#include "sig.h"
#include "msg.h"
#include "relay.h"
#include "tree.h"

#define CHUNK_MAX	65536	/* canonical bytes of a chunk */
#define ANSWER_MAX	(512 * 1024)	/* of chunks in one answer: a message
				 * is at most 1 MiB (protocol.md, 14) */
#define PEND_MAX	1024

extern const char *self_address;

struct pref {			/* another node: a viewer, parent or child */
	char did[DIDKEY_MAX];
	char *address;
	int64_t seen;
};

struct stream {
	struct stream *next;
	char *id;
	char owner[DIDKEY_MAX];	/* the DID that may sign its chunks */
	int owned;		/* this node is its owner node */
	char owner_node[DIDKEY_MAX];	/* where the owner node is */
	char *owner_address;
	struct pref *viewers;	/* owner: the viewer nodes */
	size_t nviewers;
	struct pref parents[2];	/* viewer: its parents now */
	size_t nparents;
	struct pref *children;	/* nodes attached to this one */
	size_t nchildren;
	char *ring[KEEP];	/* the last chunks, canonical text */
	int64_t ring_n[KEEP];
	int64_t edge;		/* highest n held */
	int64_t delivered;	/* highest n handed to local watchers */
	int64_t gap_since, fetch_at;
	int64_t gap_second;	/* gap_answers were given in this second */
	unsigned gap_answers;
	unsigned watchers;
	int joined;		/* a join answer came */
	int pushed;		/* owner: a push was taken since the start */
	int64_t last_push, last_seen;	/* owner: last push; any: last use */
	int64_t next_beat;
	uint64_t in, dup, sent, skipped;
};

struct watch {
	struct watch *next;
	int64_t conn;
	struct stream *s;
};

/* A request of ours to another node, waiting for its answer. */
struct pend {
	struct pend *next;
	char id[48];
	struct stream *s;
	int kind;
	char node[DIDKEY_MAX];
	int64_t deadline;
};
enum { K_JOIN, K_ATTACH, K_FETCH };

static struct stream *streams;
static struct watch *watches;
static struct pend *pends;
static unsigned long pend_seq;
static int64_t epoch;
static struct buf scratch = BUF_INIT;
int state_dirty;

/* ---- the relay tree ---- */

void
relay_parents(size_t i, size_t n, size_t f, size_t p[2])
{
	/* F children each, every node counted twice: k = F/2 per tier */
	tree_parents(i, n, f / 2 ? f / 2 : 1, p);
}

/* The nodes with j as a parent, in order.  A node i has parents
 * (i-1)/k and the one after it, so only those from k(j-1)+1 to kj+k can
 * have j: a look at 2k nodes, not all n. */
size_t
relay_children(size_t j, size_t n, size_t f, size_t *kids)
{
	size_t k = f / 2 ? f / 2 : 1, m = 0, p[2];
	size_t lo = j ? k * (j - 1) + 1 : 1;

	for (size_t i = lo; i <= k * j + k && i <= n; i++) {
		relay_parents(i, n, f, p);
		if (p[0] == j || p[1] == j)
			kids[m++] = i;
	}
	return m;
}

/* ---- streams ---- */

static struct stream *
stream_get(const char *id, int make)
{
	struct stream *s;
	const char *a, *b;

	for (s = streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	if (!make)
		return NULL;
	/* stream/{owner key id}/{uniqueId}: the owner is in the id */
	if (strncmp(id, "stream/", 7) != 0 || !(a = id + 7) ||
	    !(b = strchr(a, '/')) || b - a > DIDKEY_MAX - 10)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->id = xstrdup(id);
	snprintf(s->owner, sizeof(s->owner), "did:key:%.*s", (int)(b - a), a);
	s->next = streams;
	streams = s;
	return s;
}

static void
pref_set(struct pref *p, const char *did, const char *address)
{
	snprintf(p->did, sizeof(p->did), "%s", did ? did : "");
	if (address && (!p->address || strcmp(p->address, address) != 0)) {
		free(p->address);
		p->address = xstrdup(address);
	}
	p->seen = now_ms;
}

/* Add or refresh did in a list; returns its entry. */
static struct pref *
pref_touch(struct pref **list, size_t *n, const char *did,
    const char *address)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i].did, did) == 0) {
			pref_set(&(*list)[i], did, address);
			return &(*list)[i];
		}
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	memset(&(*list)[*n], 0, sizeof(**list));
	pref_set(&(*list)[*n], did, address);
	return &(*list)[(*n)++];
}

static void
pref_drop(struct pref *list, size_t *n, const char *did)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(list[i].did, did) == 0) {
			free(list[i].address);
			list[i] = list[--*n];
			return;
		}
}

/* Forget those not heard from since cut. */
static void
pref_expire(struct pref *list, size_t *n, int64_t cut)
{
	for (size_t i = 0; i < *n;)
		if (list[i].seen < cut) {
			free(list[i].address);
			list[i] = list[--*n];
		} else
			i++;
}

/* ---- talking to other nodes ---- */

static void
peer_send(const char *did, const char *address, const char *msg, size_t len)
{
	buf_adds(&out, "{\"m\":\"peer.send\",\"p\":{");
	if (did && *did) {
		buf_adds(&out, "\"node\":");
		bus_json(&out, jv_string(did));
		buf_addc(&out, ',');
	}
	buf_adds(&out, "\"address\":");
	bus_json(&out, address ? jv_string(address) : jv_null());
	buf_adds(&out, ",\"msg\":");
	buf_add(&out, msg, len);
	buf_adds(&out, "}}\n");
}

/* A request of ours: kind, to did at address, with params (consumed). */
static void
request(struct stream *s, int kind, const char *did, const char *address,
    const char *method, jv params)
{
	struct pend *p;
	size_t n = 0;

	for (p = pends; p; p = p->next)
		n++;
	if (n >= PEND_MAX) {
		jv_free(params);
		return;
	}
	if (!epoch)
		epoch = now_ms;
	p = xcalloc(1, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "relay:%lld.%lu", (long long)epoch,
	    ++pend_seq);
	p->s = s;
	p->kind = kind;
	snprintf(p->node, sizeof(p->node), "%s", did ? did : "");
	p->deadline = now_ms + 10000;
	p->next = pends;
	pends = p;
	buf_reset(&scratch);
	buf_addf(&scratch, "{\"id\":\"%s\",\"jsonrpc\":\"2.0\",\"method\":",
	    p->id);
	bus_json(&scratch, jv_string(method));
	buf_adds(&scratch, ",\"params\":");
	bus_json(&scratch, params);
	buf_addc(&scratch, '}');
	peer_send(did, address, scratch.p, scratch.len);
}

static jv
space_params(const struct stream *s)
{
	jv p = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));

	return jv_object_set(p, jv_string("address"), jv_string(self_address));
}

static void
join(struct stream *s)
{
	request(s, K_JOIN, s->owner_node, s->owner_address, "relay.join",
	    space_params(s));
}

static void
attach(struct stream *s, const struct pref *p)
{
	request(s, K_ATTACH, p->did, p->address, "relay.attach",
	    space_params(s));
}

/* ---- chunks ---- */

/* A chunk (borrowed) this node may take for s: the owner's, of this
 * stream, numbered, within the size limit, and signed by the owner.  Its
 * n, with its canonical text in scratch; or -1 with *e and *why. */
static int64_t
chunk_check(struct stream *s, jv chunk, enum bus_err *e, const char **why)
{
	static struct buf vb = BUF_INIT;
	const char *t = jsonl_str(chunk, "type"), *a = jsonl_str(chunk, "author");
	const char *sid = jsonl_str(chunk, "space");
	int64_t n;

	*e = E_BAD_EVENT;
	if (jv_get_kind(chunk) != JV_KIND_OBJECT || !t ||
	    strcmp(t, "stream.chunk") != 0) {
		*why = "not a stream.chunk";
		return -1;
	}
	if (!sid || strcmp(sid, s->id) != 0) {
		*why = "a chunk of another stream";
		return -1;
	}
	if (!a || strcmp(a, s->owner) != 0) {
		*e = E_FORBIDDEN;
		*why = "a chunk not by the stream's owner";
		return -1;
	}
	if (jsonl_int(chunk, "n", &n) != 0 || n < 1) {
		*why = "n is not an integer from 1";
		return -1;
	}
	if (jsonl_kind(chunk, "data") != JV_KIND_STRING) {
		*why = "data is not a string";
		return -1;
	}
	if (jsonl_kind(chunk, "ts") != JV_KIND_NUMBER) {
		*why = "ts is not a number";
		return -1;
	}
	buf_reset(&scratch);
	if (canon_dump(chunk, NULL, &scratch) != 0 || scratch.len > CHUNK_MAX) {
		*e = E_TOO_LARGE;
		*why = "a chunk is at most 65536 bytes";
		return -1;
	}
	/* the signature last: it costs the most */
	if (sig_verify(chunk, &vb, why) != 0) {
		*e = E_BAD_SIG;
		return -1;
	}
	return n;
}

static int
held(const struct stream *s, int64_t n)
{
	return n > 0 && s->ring_n[n % KEEP] == n && s->ring[n % KEEP];
}

/* Hand the watchers here every chunk after s->delivered that is held, in
 * order. */
static void
deliver(struct stream *s)
{
	int64_t from = s->delivered;

	while (held(s, s->delivered + 1)) {
		s->delivered++;
		if (!s->watchers)
			continue;
		buf_adds(&out, "{\"pub\":");
		buf_adds(&out, "\"chunk:");
		buf_adds(&out, s->id);	/* a space id needs no escapes */
		buf_adds(&out, "\",\"msg\":{\"jsonrpc\":\"2.0\",\"method\":"
		    "\"chunk\",\"params\":");
		buf_adds(&out, s->ring[s->delivered % KEEP]);
		buf_adds(&out, "}}\n");
	}
	/* the give-up clock runs while delivery stands still: a long gap
	 * repaired answer by answer is not given up half way */
	if (s->delivered < s->edge && (!s->gap_since || s->delivered > from))
		s->gap_since = now_ms;
	else if (s->delivered >= s->edge)
		s->gap_since = 0;
}

/* Take chunk text (n) for s: keep it, send it on to the children, and
 * deliver.  0 if it was new, 1 a duplicate or too old.  With resend (the
 * owner node, a chunk it numbered but lost) it goes out even if delivery
 * here is past it. */
static int
take(struct stream *s, int64_t n, const char *text, size_t len, int resend)
{
	struct buf m = BUF_INIT;

	if (held(s, n) || n <= s->edge - KEEP ||
	    (n <= s->delivered && !resend)) {
		s->dup++;
		return 1;
	}
	free(s->ring[n % KEEP]);
	s->ring[n % KEEP] = xmalloc(len + 1);
	memcpy(s->ring[n % KEEP], text, len);
	s->ring[n % KEEP][len] = '\0';
	s->ring_n[n % KEEP] = n;
	if (n > s->edge)
		s->edge = n;
	s->in++;
	buf_adds(&m, "{\"jsonrpc\":\"2.0\",\"method\":\"relay.chunk\","
	    "\"params\":{\"chunk\":");
	buf_add(&m, text, len);
	buf_adds(&m, "}}");
	for (size_t i = 0; i < s->nchildren; i++) {
		peer_send(s->children[i].did, s->children[i].address, m.p,
		    m.len);
		s->sent++;
	}
	buf_free(&m);
	deliver(s);
	return 0;
}

/* A node relayed a chunk that is not the owner's: it is cut off for a
 * while (peer.bad, which ns-gossip and ns-serve act on). */
static void
report_bad(const char *did, const char *why)
{
	if (!did || !*did)
		return;
	warn("node %.60s relayed %s", did, why);
	buf_adds(&out, "{\"m\":\"peer.bad\",\"p\":{\"node\":");
	bus_json(&out, jv_string(did));
	buf_adds(&out, ",\"reason\":");
	bus_json(&out, jv_string(why));
	buf_adds(&out, "}}\n");
}

/* stream.push, checked by ns-log on the owner node (relay.push): the
 * owner's next chunk.  A number already pushed is refused, so that a
 * replayed chunk goes nowhere and a pusher resending after a reconnect
 * learns that the chunk is in. */
void
on_push(const struct bus_req *r)
{
	jv chunk = jsonl_get(r->params, "chunk");
	const char *sid = jsonl_str(chunk, "space"), *why = "no such stream";
	struct stream *s = sid ? stream_get(sid, 1) : NULL;
	enum bus_err e = E_BAD_EVENT;
	int64_t n;

	if (!s || (n = chunk_check(s, chunk, &e, &why)) < 0) {
		bus_error(&out, r, e, why);
		goto out;
	}
	s->owned = 1;
	if (n <= s->edge && (held(s, n) || n <= s->edge - KEEP)) {
		bus_error_data(&out, r, E_CONFLICT, "that chunk number was "
		    "pushed already", jv_object_set(jv_object(),
		    jv_string("edge"), jv_number((double)s->edge)));
		goto out;
	}
	if (n <= s->edge) {
		/* numbered here before but not held: taken as the node went
		 * down, before it could be sent on.  The pusher's copy goes
		 * out now, and viewers that have it drop it */
		take(s, n, scratch.p, scratch.len, 1);
		bus_result(&out, r, jv_object_set(jv_object_set(jv_object(),
		    jv_string("space"), jv_string(s->id)), jv_string("n"),
		    jv_number((double)n)));
		goto out;
	}
	/* numbers without gaps: a chunk skipped here could never come, and
	 * every viewer would wait for it.  The first push this relay takes
	 * for a stream sets where it goes on from (above its edge, kept in
	 * --state) */
	if (s->pushed && n != s->edge + 1) {
		bus_error_data(&out, r, E_BAD_EVENT, "chunk numbers go up by "
		    "one: the next is edge + 1", jv_object_set(jv_object(),
		    jv_string("edge"), jv_number((double)s->edge)));
		goto out;
	}
	if (!s->pushed && n > s->edge + 1 && s->delivered < n - 1) {
		/* nothing below n will come: no gap to wait for here */
		s->delivered = n - 1;
	}
	s->pushed = 1;
	take(s, n, scratch.p, scratch.len, 0);
	s->last_push = now_ms;
	/* the number is kept before the push is answered, so a restarted
	 * relay refuses it */
	state_dirty = 1;
	if (state_path)
		state_save(state_path);
	bus_result(&out, r, jv_object_set(jv_object_set(jv_object(),
	    jv_string("space"), jv_string(s->id)), jv_string("n"),
	    jv_number((double)n)));
out:
	jv_free(chunk);
}

/* relay.chunk from a parent: taken only for a stream this node relays or
 * watches.  A chunk the owner did not sign is not relayed, and the node
 * that sent it is reported. */
void
on_chunk(const struct bus_req *r)
{
	jv chunk = jsonl_get(r->params, "chunk");
	const char *sid = jsonl_str(chunk, "space"), *why;
	struct stream *s = sid ? stream_get(sid, 0) : NULL;
	enum bus_err e;
	int64_t n;

	if (s && (n = chunk_check(s, chunk, &e, &why)) < 0)
		report_bad(r->did, why);
	else if (s && !s->owned && (s->watchers || s->nchildren))
		take(s, n, scratch.p, scratch.len, 0);
	jv_free(chunk);
	bus_done(&out, r);
}

/* ---- the owner node: viewers and their places ---- */

/* relay.join (checked by ns-log): a viewer node's place in the tree. */
void
on_admit(const struct bus_req *r)
{
	const char *sid = jsonl_str(r->params, "space");
	const char *addr = jsonl_str(r->params, "address");
	struct stream *s = sid ? stream_get(sid, 1) : NULL;
	struct tree_node *tn;
	size_t n, i, me, p[2];
	jv res, parents;

	if (!s || !r->did || !addr) {
		bus_error(&out, r, E_PARAMS, "params need a stream and an "
		    "address");
		return;
	}
	s->owned = 1;
	pref_touch(&s->viewers, &s->nviewers, r->did, addr);
	/* the viewers in tree order, as everyone would compute them */
	n = s->nviewers;
	tn = xcalloc(n, sizeof(*tn));
	for (i = 0; i < n; i++) {
		snprintf(tn[i].did, sizeof(tn[i].did), "%s", s->viewers[i].did);
		tn[i].address = s->viewers[i].address;
	}
	tree_sort(s->id, tn, n);
	me = tree_index(tn, n, r->did);
	relay_parents(me, n, fanout, p);
	parents = jv_array();
	for (i = 0; i < 2; i++) {
		if (i == 1 && p[1] == p[0])
			break;
		jv o = jv_object_set(jv_object(), jv_string("node"),
		    jv_string(p[i] ? tn[p[i] - 1].did : self_did));
		o = jv_object_set(o, jv_string("address"),
		    jv_string(p[i] ? tn[p[i] - 1].address : self_address));
		parents = jv_array_append(parents, o);
	}
	res = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));
	res = jv_object_set(res, jv_string("edge"), jv_number((double)s->edge));
	res = jv_object_set(res, jv_string("index"), jv_number((double)me));
	res = jv_object_set(res, jv_string("parents"), parents);
	bus_result(&out, r, res);
	free(tn);
}

/* relay.attach: a child of this node.  It gets every chunk from now on. */
void
on_attach(const struct bus_req *r)
{
	const char *sid = jsonl_str(r->params, "space");
	const char *addr = jsonl_str(r->params, "address");
	struct stream *s = sid ? stream_get(sid, 1) : NULL;
	jv res;

	if (!s || !r->did || !addr) {
		bus_error(&out, r, E_PARAMS, "params need a stream and an "
		    "address");
		return;
	}
	/* the owner node takes as children only viewers it placed: no
	 * node goes round the tree to the owner's uplink */
	if (s->owned) {
		int viewer = 0;
		for (size_t i = 0; i < s->nviewers && !viewer; i++)
			viewer = strcmp(s->viewers[i].did, r->did) == 0;
		if (!viewer) {
			bus_error(&out, r, E_FORBIDDEN, "join the stream's tree "
			    "first (relay.join)");
			return;
		}
	}
	/* the tree gives a node F children at most; twice that leaves room
	 * for the old children while the tree mends */
	if (s->nchildren >= 2 * fanout) {
		int known = 0;
		for (size_t i = 0; i < s->nchildren && !known; i++)
			known = strcmp(s->children[i].did, r->did) == 0;
		if (!known) {
			bus_error(&out, r, E_BUSY, "this node relays to as many "
			    "children as it may");
			return;
		}
	}
	pref_touch(&s->children, &s->nchildren, r->did, addr);
	res = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));
	bus_result(&out, r, jv_object_set(res, jv_string("edge"),
	    jv_number((double)s->edge)));
}

/* relay.leave: a viewer or child that goes. */
void
on_leave(const struct bus_req *r)
{
	const char *sid = jsonl_str(r->params, "space");
	struct stream *s = sid ? stream_get(sid, 0) : NULL;

	if (s && r->did) {
		pref_drop(s->viewers, &s->nviewers, r->did);
		pref_drop(s->children, &s->nchildren, r->did);
	}
	bus_result(&out, r, jv_object_set(jv_object(), jv_string("space"),
	    jv_string(sid ? sid : "")));
}

/* The held chunks of s after after, at most limit and ANSWER_MAX bytes
 * (one chunk at least), as a result. */
static jv
chunks_after(struct stream *s, int64_t after, int64_t limit)
{
	jv a = jv_array();
	int64_t from = after + 1, k = 0;
	size_t bytes = 0, len;

	if (from <= s->edge - KEEP)
		from = s->edge - KEEP + 1;
	for (int64_t n = from; n <= s->edge && k < limit; n++)
		if (held(s, n)) {
			len = strlen(s->ring[n % KEEP]);
			if (k && bytes + len > ANSWER_MAX)
				break;
			bytes += len;
			a = jv_array_append(a, canon_parse(s->ring[n % KEEP],
			    len));
			k++;
		}
	return a;
}

/* Where the last limit numbers of s start, or later, so that the chunks
 * held from there fit in one answer. */
static int64_t
last_after(struct stream *s, int64_t limit)
{
	int64_t after = s->edge - limit;
	size_t bytes = 0, len;

	for (int64_t n = s->edge; n > after && n > s->edge - KEEP; n--)
		if (held(s, n)) {
			len = strlen(s->ring[n % KEEP]);
			if (bytes && bytes + len > ANSWER_MAX)
				return n;
			bytes += len;
		}
	return after;
}

static void
answer_chunks(const struct bus_req *r, int64_t dflt)
{
	const char *sid = jsonl_str(r->params, "space");
	struct stream *s = sid ? stream_get(sid, 0) : NULL;
	int64_t after = -1, limit = dflt;
	jv res;

	jsonl_int(r->params, "after", &after);
	jsonl_int(r->params, "limit", &limit);
	if (limit < 0 || limit > KEEP)
		limit = KEEP;
	res = jv_object_set(jv_object(), jv_string("space"),
	    jv_string(sid ? sid : ""));
	res = jv_object_set(res, jv_string("edge"),
	    jv_number(s ? (double)s->edge : 0));
	/* no after: the last `limit` chunks */
	if (s && after < 0)
		after = last_after(s, limit);
	res = jv_object_set(res, jv_string("chunks"), s ? chunks_after(s,
	    after, limit) : jv_array());
	bus_result(&out, r, res);
}

/*
 * relay.fetch: a child's gap.  A gap every viewer shares (the owner node
 * restarted) would have each of them ask the owner node at once, for up
 * to 512 KiB each; a few answers a second fill the nodes that ask first,
 * which pass the chunks on to their children (take), and the others are
 * told busy and ask their parents in turn.
 */
void
on_fetch(const struct bus_req *r)
{
	const char *sid = jsonl_str(r->params, "space");
	struct stream *s = sid ? stream_get(sid, 0) : NULL;

	if (s) {
		if (s->gap_second != now_ms / 1000) {
			s->gap_second = now_ms / 1000;
			s->gap_answers = 0;
		}
		if (s->gap_answers >= GAP_ANSWERS) {
			bus_error_data(&out, r, E_BUSY, "too many gap fetches "
			    "for this stream; ask a parent",
			    jv_object_set(jv_object(), jv_string("retryAfter"),
			    jv_number(GAP_MS)));
			return;
		}
		s->gap_answers++;
	}
	answer_chunks(r, 64);
}

/* stream.recent (checked by ns-log): what a late viewer missed. */
void
on_recent(const struct bus_req *r)
{
	answer_chunks(r, 16);
}

/* relay.watch from ns-log: a connection here watches a stream (ns-log
 * subscribed it to "chunk:SPACE").  The first watcher joins the tree.
 * With "restore" (ns-log learned the watch again after a restart) it is
 * not answered, and a watch already known is not counted twice. */
void
on_watch(const struct bus_req *r)
{
	const char *sid = jsonl_str(r->params, "space");
	const char *node = jsonl_str(r->params, "node");
	const char *addr = jsonl_str(r->params, "address");
	struct stream *s = sid ? stream_get(sid, 1) : NULL;
	int restore = jsonl_kind(r->params, "restore") == JV_KIND_TRUE;
	struct watch *w;
	jv res;

	if (!s) {
		bus_error(&out, r, E_PARAMS, "not a stream");
		return;
	}
	if (jsonl_kind(r->params, "owned") == JV_KIND_TRUE)
		s->owned = 1;
	if (node)
		snprintf(s->owner_node, sizeof(s->owner_node), "%s", node);
	if (addr && (!s->owner_address || strcmp(s->owner_address, addr))) {
		free(s->owner_address);
		s->owner_address = xstrdup(addr);
	}
	for (w = watches; w; w = w->next)
		if (w->conn == r->conn && w->s == s)
			break;
	if (!w) {
		w = xcalloc(1, sizeof(*w));
		w->conn = r->conn;
		w->s = s;
		w->next = watches;
		watches = w;
		if (!s->watchers++ && !s->owned && !s->nchildren)
			s->delivered = s->edge;	/* start at the live edge */
	}
	if (!s->owned && !s->joined) {
		join(s);
		s->next_beat = now_ms + BEAT_MS;
	}
	if (restore) {
		bus_done(&out, r);
		return;
	}
	res = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));
	bus_result(&out, r, jv_object_set(res, jv_string("edge"),
	    jv_number((double)s->edge)));
}

static void
leave(struct stream *s)
{
	jv p = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));

	if (s->owned)
		goto out;
	request(s, K_JOIN, s->owner_node, s->owner_address, "relay.leave",
	    jv_copy(p));
	for (size_t i = 0; i < s->nparents; i++) {
		request(s, K_ATTACH, s->parents[i].did, s->parents[i].address,
		    "relay.leave", jv_copy(p));
		free(s->parents[i].address);
	}
	s->joined = 0;
	s->nparents = 0;
out:
	jv_free(p);
}

static void
unwatch(struct watch **pp)
{
	struct watch *w = *pp;

	*pp = w->next;
	/* the last watcher here: the node leaves the tree, and its children
	 * get new parents from the owner at their next beat */
	if (w->s->watchers && !--w->s->watchers)
		leave(w->s);
	free(w);
}

/* An unsub line for key "chunk:SPACE" (an unwatch, or read access lost). */
void
on_unwatch(int64_t conn, const char *key)
{
	struct watch **pp;

	if (strncmp(key, "chunk:", 6) != 0)
		return;
	for (pp = &watches; *pp; pp = &(*pp)->next)
		if ((*pp)->conn == conn && strcmp((*pp)->s->id, key + 6) == 0) {
			unwatch(pp);
			return;
		}
}

/* The watches of connection conn end; of every connection for conn -1. */
void
on_conn_close(int64_t conn)
{
	struct watch **pp = &watches;

	while (*pp)
		if ((*pp)->conn == conn || conn < 0)
			unwatch(pp);
		else
			pp = &(*pp)->next;
}

/* ---- answers of other nodes ---- */

/* Our request id, if from (NULL: anyone) is the node it was sent to. */
static struct pend *
pend_take(const char *id, const char *from)
{
	struct pend **pp, *p;

	for (pp = &pends; (p = *pp); pp = &p->next)
		if (strcmp(p->id, id) == 0 && (!from || !p->node[0] ||
		    strcmp(from, p->node) == 0)) {
			*pp = p->next;
			return p;
		}
	return NULL;
}

static int
stream_live(const struct stream *s)
{
	for (struct stream *t = streams; t; t = t->next)
		if (t == s)
			return 1;
	return 0;
}

/* The owner's answer to a join: this node's parents now. */
static void
joined(struct stream *s, jv result)
{
	jv parents = jsonl_get(result, "parents");
	struct pref next[2];
	size_t n = 0;
	int64_t edge;

	memset(next, 0, sizeof(next));
	if (jsonl_int(result, "edge", &edge) == 0 && !s->joined) {
		/* the live edge: watchers start there */
		if (edge > s->edge)
			s->edge = edge;
		if (s->delivered < edge)
			s->delivered = edge;
	} else if (jsonl_int(result, "edge", &edge) == 0 && edge > s->edge &&
	    edge - s->edge < KEEP) {
		/* the owner is ahead of all this node holds: a parent has
		 * gone quiet (one that restarted, one that lost us) and
		 * nothing shows it but this.  A gap now, fetched like any
		 * other. */
		s->edge = edge;
		deliver(s);
	}
	s->joined = 1;
	jv_array_foreach(parents, i, o) {
		const char *did = jsonl_str(o, "node"), *a = jsonl_str(o, "address");
		if (did && a && n < 2)
			pref_set(&next[n++], did, a);
		jv_free(o);
	}
	jv_free(parents);
	/* a new parent is attached to at once; the old ones drop us when
	 * we stop attaching */
	for (size_t i = 0; i < n; i++) {
		int old = 0;
		for (size_t j = 0; j < s->nparents; j++)
			old |= strcmp(s->parents[j].did, next[i].did) == 0;
		if (!old)
			attach(s, &next[i]);
	}
	for (size_t i = 0; i < s->nparents; i++)
		free(s->parents[i].address);
	memcpy(s->parents, next, sizeof(next));
	s->nparents = n;
}

/* rpc.response for one of our requests (ids relay:...). */
void
on_response(const struct bus_req *r)
{
	const char *id = jsonl_str(r->params, "id");
	jv result = jsonl_get(r->params, "result"), list;
	/* only the node asked answers: ids are easily guessed, and another
	 * node's answer to a join could place this one anywhere */
	struct pend *p = id ? pend_take(id, r->did ? r->did : "") : NULL;

	bus_done(&out, r);
	if (!p || !stream_live(p->s) || jv_get_kind(result) != JV_KIND_OBJECT)
		goto out;
	switch (p->kind) {
	case K_JOIN:
		if (jsonl_has(result, "parents"))
			joined(p->s, result);
		break;
	case K_FETCH:
		list = jsonl_get(result, "chunks");
		jv_array_foreach(list, i, c) {
			const char *why;
			enum bus_err e;
			int64_t n = chunk_check(p->s, c, &e, &why);
			if (n > 0)
				take(p->s, n, scratch.p, scratch.len, 0);
			else
				report_bad(p->node, why);
			jv_free(c);
		}
		jv_free(list);
		break;
	}
out:
	free(p);
	jv_free(result);
}

void
on_peer_fail(const struct bus_req *r)
{
	const char *id = jsonl_str(r->params, "id");
	struct pend *p = id ? pend_take(id, NULL) : NULL;

	/* the next beat tries again, and the owner places us anew */
	free(p);
}

/* ---- time ---- */

static void
ring_free(struct stream *s)
{
	for (int i = 0; i < KEEP; i++) {
		free(s->ring[i]);
		s->ring[i] = NULL;
		s->ring_n[i] = 0;
	}
}

static void
stream_free(struct stream *s)
{
	ring_free(s);
	for (size_t i = 0; i < s->nviewers; i++)
		free(s->viewers[i].address);
	for (size_t i = 0; i < s->nchildren; i++)
		free(s->children[i].address);
	for (size_t i = 0; i < s->nparents; i++)
		free(s->parents[i].address);
	free(s->viewers);
	free(s->children);
	free(s->owner_address);
	free(s->id);
	free(s);
}

/* A stream nobody used for IDLE_MS (no watcher, child or viewer, no
 * push) lets go of its chunks, up to 16 MiB; one not owned here goes
 * whole.  An owned one keeps its edge, which refuses old numbers. */
static void
streams_idle(void)
{
	struct stream **sp = &streams, *s;

	while ((s = *sp)) {
		if (s->watchers || s->nchildren || s->nviewers || !s->last_seen)
			s->last_seen = now_ms;
		if (s->last_push > s->last_seen)
			s->last_seen = s->last_push;
		if (now_ms - s->last_seen < IDLE_MS) {
			sp = &s->next;
			continue;
		}
		if (s->owned) {
			ring_free(s);
			sp = &s->next;
			continue;
		}
		*sp = s->next;
		stream_free(s);
	}
}

/* One fetch of what s misses, from a parent in turn or, late in the gap,
 * from the owner node. */
static void
fetch_gap(struct stream *s)
{
	size_t n = s->nparents, i;
	int owner = s->owner_node[0] && now_ms - s->gap_since >= HOLD_MS / 2;
	jv q;

	if (n + (size_t)owner == 0)
		return;		/* no parent yet; the owner later */
	q = jv_object_set(jv_object(), jv_string("space"), jv_string(s->id));
	q = jv_object_set(q, jv_string("after"),
	    jv_number((double)s->delivered));
	i = (size_t)(now_ms / GAP_MS) % (n + (size_t)owner);
	if (i < n)
		request(s, K_FETCH, s->parents[i].did, s->parents[i].address,
		    "relay.fetch", q);
	else
		request(s, K_FETCH, s->owner_node, s->owner_address,
		    "relay.fetch", q);
	s->fetch_at = now_ms + GAP_MS;
}

void
streams_tick(void)
{
	struct stream *s;
	struct pend **pp, *p;

	for (pp = &pends; (p = *pp);)
		if (p->deadline < now_ms) {
			*pp = p->next;
			free(p);
		} else
			pp = &p->next;
	for (s = streams; s; s = s->next) {
		pref_expire(s->viewers, &s->nviewers, now_ms - SILENT_MS);
		pref_expire(s->children, &s->nchildren, now_ms - SILENT_MS);
		if (!s->owned && s->watchers && now_ms >= s->next_beat) {
			s->next_beat = now_ms + BEAT_MS;
			join(s);
			for (size_t i = 0; i < s->nparents; i++)
				attach(s, &s->parents[i]);
		}
		/* a gap both parents left: fetch it from them in turn, and
		 * once it has lasted half the hold from the owner node too,
		 * which keeps every recent chunk (the parents may have
		 * missed the same ones); then give it up */
		if (s->gap_since && now_ms - s->gap_since >= GAP_MS &&
		    now_ms >= s->fetch_at && !s->owned)
			fetch_gap(s);
		if (s->gap_since && now_ms - s->gap_since >= HOLD_MS) {
			/* on to the first chunk held: found among the KEEP
			 * kept, since the owner's numbers may jump by up to
			 * 2^53 and counting up to it would stall the ring */
			int64_t next = s->edge + 1;

			for (int i = 0; i < KEEP; i++)
				if (s->ring[i] && s->ring_n[i] > s->delivered &&
				    s->ring_n[i] < next)
					next = s->ring_n[i];
			s->skipped += (uint64_t)(next - 1 - s->delivered);
			s->delivered = next - 1;
			s->gap_since = 0;
			deliver(s);
		}
	}
	streams_idle();
}

/* ---- the owner's chunk numbers, across restarts ---- */

/* Read what state_save wrote: the edge of each stream owned here, so a
 * restarted relay refuses the numbers it took before. */
void
state_load(const char *file)
{
	FILE *f = fopen(file, "r");
	char line[1024];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		jv v = canon_parse(line, strcspn(line, "\n"));
		const char *sid = jsonl_str(v, "space");
		struct stream *s = sid ? stream_get(sid, 1) : NULL;
		int64_t edge;

		if (s && jsonl_int(v, "edge", &edge) == 0 && edge > s->edge) {
			s->owned = 1;
			s->edge = s->delivered = edge;
		}
		jv_free(v);
	}
	fclose(f);
}

/* Write the owned streams' edges to file, replacing it whole. */
void
state_save(const char *file)
{
	struct buf b = BUF_INIT;
	char tmp[4096];
	FILE *f;

	for (struct stream *s = streams; s; s = s->next)
		if (s->owned && s->edge) {
			buf_adds(&b, "{\"space\":");
			bus_json(&b, jv_string(s->id));
			buf_addf(&b, ",\"edge\":%lld}\n", (long long)s->edge);
		}
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	if (!(f = fopen(tmp, "w"))) {
		warn("%s:", tmp);
	} else {
		int bad = fwrite(b.p, 1, b.len, f) != b.len;

		if (fclose(f) != 0 || bad || rename(tmp, file) != 0) {
			warn("%s:", file);
			unlink(tmp);
		} else
			state_dirty = 0;
	}
	buf_free(&b);
}

void
streams_json(struct buf *b)
{
	struct stream *s;
	int first = 1;

	buf_addc(b, '[');
	for (s = streams; s; s = s->next) {
		if (!first)
			buf_addc(b, ',');
		first = 0;
		buf_adds(b, "{\"space\":");
		bus_json(b, jv_string(s->id));
		buf_addf(b, ",\"owned\":%s,\"edge\":%lld,\"delivered\":%lld,"
		    "\"watchers\":%u,\"viewers\":%zu,\"children\":%zu,"
		    "\"parents\":[", s->owned ? "true" : "false",
		    (long long)s->edge, (long long)s->delivered, s->watchers,
		    s->nviewers, s->nchildren);
		for (size_t i = 0; i < s->nparents; i++) {
			if (i)
				buf_addc(b, ',');
			bus_json(b, jv_string(s->parents[i].did));
		}
		buf_addf(b, "],\"in\":%llu,\"duplicates\":%llu,\"sent\":%llu,"
		    "\"skipped\":%llu}", (unsigned long long)s->in,
		    (unsigned long long)s->dup, (unsigned long long)s->sent,
		    (unsigned long long)s->skipped);
	}
	buf_addc(b, ']');
}

void
streams_free(void)
{
	struct stream *s;
	struct watch *w;
	struct pend *p;

	while ((w = watches)) {
		watches = w->next;
		free(w);
	}
	while ((p = pends)) {
		pends = p->next;
		free(p);
	}
	while ((s = streams)) {
		streams = s->next;
		stream_free(s);
	}
	buf_free(&scratch);
}
