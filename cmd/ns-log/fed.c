/*
 * Federation, ns-log's part (share/doc/protocol.md, sections 10 and 11):
 * the spaces of other nodes this node follows and keeps a replica of, the
 * envelopes that reach it (node.broadcast, sync pages) checked from seq 1
 * as the owner's log and applied in seq order only, the events its users
 * send into those spaces (handed to the owner node with node.submit and
 * answered when it has sequenced them), the events other nodes hand to
 * this one for the spaces it owns, and the lines that tell ns-gossip what
 * to push, announce and pull.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "canon.h"
#include "event.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

#define FANOUT 10		/* children per node in the tier tree */
#define LAZY 2			/* announcements per new envelope */
#define SUBMIT_MS 10000		/* an owner node has this long to answer */
#define SAMPLE 8		/* member nodes named in gossip.follow */

/* An event handed to an owner node, waiting for its answer. */
struct pend {
	struct pend *next;
	char id[48];
	int64_t conn, r;
	jv rid;			/* the client's JSON-RPC id */
	char *space, *beam;	/* beam: a space.beam, its path */
	char evid[HASH_ID_LEN + 1];
	int type;
	int fresh;		/* a join of a space not followed yet */
	char *address;
	int64_t deadline;
};

static struct pend *pends;

static int owner_of(struct log *L, const char *id, struct space *sp,
    jv params, char node[DIDKEY_MAX], char *address, size_t alen);
static void outbox_answer(struct log *L, const char *id, jv res);
static unsigned long pend_seq;
static int64_t started;

int
owns(const struct log *L, const struct space *sp)
{
	return sp && strcmp(sp->node, L->node) == 0;
}

/* ---- the tree ---- */

/* The member nodes of sp but the owner's, in tree order (cached until the
 * membership changes).  NULL with *n 0 on a database failure. */
static struct tree_node *
space_nodes(struct log *L, struct space *sp, size_t *n)
{
	int rc;

	if (sp->tn_ok) {
		*n = sp->ntn;
		return sp->tn;
	}
	space_nodes_drop(sp);
	for (rc = q(L, S_NODES, "t", sp->id); rc == 1; rc = step(L, S_NODES)) {
		const char *node = col(L, S_NODES, 0);

		if (strcmp(node, sp->node) == 0)
			continue;
		sp->tn = xrealloc(sp->tn, (sp->ntn + 1) * sizeof(*sp->tn));
		snprintf(sp->tn[sp->ntn].did, sizeof(sp->tn[0].did), "%s", node);
		sp->tn[sp->ntn].address = xstrdup(col(L, S_NODES, 1));
		sp->ntn++;
	}
	if (rc < 0) {
		space_nodes_drop(sp);
		*n = 0;
		return NULL;
	}
	tree_sort(sp->id, sp->tn, sp->ntn);
	sp->tn_ok = 1;
	*n = sp->ntn;
	return sp->tn;
}

static unsigned
rnd(unsigned k)
{
	return randombytes_uniform(k);
}

static void
add_node(struct buf *out, const char *did, const char *address)
{
	buf_adds(out, "{\"node\":");
	bus_str(out, did);
	buf_adds(out, ",\"address\":");
	bus_str(out, address);
	buf_addc(out, '}');
}

/*
 * The envelope just stored for sp (its text in L->body) goes on to this
 * node's children in the tier tree, and is announced to LAZY other member
 * nodes: a gossip.push line for ns-gossip.
 */
void
gossip_push(struct log *L, struct space *sp, struct buf *out)
{
	struct tree_node *tn;
	size_t n, me, kids[FANOUT], lazy[LAZY], nk, nl, i;

	tn = space_nodes(L, sp, &n);
	me = owns(L, sp) ? 0 : tree_index(tn, n, L->node);
	if (!owns(L, sp) && me == 0)
		return;		/* no member node: nobody to tell */
	nk = tree_children(me, n, FANOUT, kids);
	nl = tree_lazy(n, me, kids, nk, LAZY, rnd, lazy);
	if (nk == 0 && nl == 0)
		return;		/* a space of one node */
	buf_adds(out, "{\"m\":\"gossip.push\",\"p\":{\"space\":");
	bus_str(out, sp->id);
	buf_addf(out, ",\"seq\":%lld,\"hash\":\"%s\",\"owner\":",
	    (long long)sp->head, sp->hash);
	add_node(out, sp->node, sp->address);
	buf_adds(out, ",\"to\":[");
	for (i = 0; i < nk; i++) {
		if (i)
			buf_addc(out, ',');
		add_node(out, tn[kids[i] - 1].did, tn[kids[i] - 1].address);
	}
	buf_adds(out, "],\"lazy\":[");
	for (i = 0; i < nl; i++) {
		if (i)
			buf_addc(out, ',');
		add_node(out, tn[lazy[i] - 1].did, tn[lazy[i] - 1].address);
	}
	buf_adds(out, "],\"envelope\":");
	buf_add(out, L->body.p, L->body.len);
	buf_adds(out, "}}\n");
}

/* A gossip.follow line for space id: ns-gossip keeps it up to date. */
static void
gossip_follow(struct log *L, const char *id, const char *node,
    const char *address, struct buf *out)
{
	struct space *sp;
	struct tree_node *tn = NULL;
	size_t n = 0;
	int err;

	sp = space_find(L, id, &err);
	buf_adds(out, "{\"m\":\"gossip.follow\",\"p\":{\"space\":");
	bus_str(out, id);
	buf_adds(out, ",\"owner\":{\"node\":");
	bus_json(out, node && *node ? jv_string(node) : jv_null());
	buf_adds(out, ",\"address\":");
	bus_str(out, address);
	buf_addf(out, "},\"head\":%lld,\"hash\":\"%s\",\"nodes\":[",
	    sp ? (long long)sp->head : 0LL, sp ? sp->hash : "");
	if (sp)
		tn = space_nodes(L, sp, &n);
	for (size_t i = 0, k = 0; i < n && k < SAMPLE; i++) {
		size_t c = n <= SAMPLE ? i : randombytes_uniform((uint32_t)n);
		if (strcmp(tn[c].did, L->node) == 0)
			continue;
		if (k++)
			buf_addc(out, ',');
		add_node(out, tn[c].did, tn[c].address);
	}
	buf_adds(out, "]}}\n");
}

/* log.follows, from a (re)started ns-gossip: every space followed. */
void
fed_follows(struct log *L, struct buf *out)
{
	char **ids = NULL, **nodes = NULL, **addrs = NULL;
	size_t n = 0;
	int rc;

	for (rc = q(L, S_FOLLOWS, ""); rc == 1; rc = step(L, S_FOLLOWS)) {
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		nodes = xrealloc(nodes, (n + 1) * sizeof(*nodes));
		addrs = xrealloc(addrs, (n + 1) * sizeof(*addrs));
		ids[n] = xstrdup(col(L, S_FOLLOWS, 0));
		nodes[n] = xstrdup(col(L, S_FOLLOWS, 1));
		addrs[n] = xstrdup(col(L, S_FOLLOWS, 2));
		n++;
	}
	for (size_t i = 0; i < n; i++) {
		if (rc >= 0)
			gossip_follow(L, ids[i], nodes[i], addrs[i], out);
		free(ids[i]);
		free(nodes[i]);
		free(addrs[i]);
	}
	free(ids);
	free(nodes);
	free(addrs);
}

/* After a leave or a remove in a space this node follows: with no member
 * living here any more, it stops following. */
static void
maybe_unfollow(struct log *L, struct space *sp, struct buf *out)
{
	int rc = exists(L, S_MEM_NODE, sp->id, L->node, NULL);

	if (rc != 0 || owns(L, sp))
		return;
	if (q(L, S_FOLLOW_DEL, "t", sp->id) < 0)
		return;
	buf_adds(out, "{\"m\":\"gossip.unfollow\",\"p\":{\"space\":");
	bus_str(out, sp->id);
	buf_adds(out, "}}\n");
}

static void
behind(const char *space, int64_t head, const char *node, struct buf *out)
{
	buf_adds(out, "{\"m\":\"gossip.behind\",\"p\":{\"space\":");
	bus_str(out, space);
	buf_addf(out, ",\"head\":%lld,\"node\":", (long long)head);
	bus_str(out, node);
	buf_adds(out, "}}\n");
}

/* ---- envelopes from other nodes ---- */

/*
 * Apply env (borrowed), an envelope of a space this node follows, sent by
 * node from: only the next one (seq head + 1) of the owner node's chain,
 * and only an event the space's state admits; then it is stored, published
 * to local subscribers and pushed on.  Returns 1 if applied, 0 if it was
 * not (a duplicate, a gap asked for, a space not followed), -1 if it is
 * not a valid next envelope, -2 on a database failure.
 */
int
apply_envelope(struct log *L, jv env, const char *from, struct buf *out)
{
	const char *sid = jsonl_str(env, "space"), *node = jsonl_str(env, "node");
	const char *prev = jsonl_str(env, "prev"), *why;
	char hash[HASH_ID_LEN + 1], fnode[DIDKEY_MAX] = "";
	struct space *sp;
	struct evinfo ei;
	enum bus_err e;
	int64_t seq, ts;
	int err, rc;
	jv ev;

	if (!sid || !node || jsonl_int(env, "seq", &seq) != 0 || seq < 1 ||
	    jsonl_int(env, "ts", &ts) != 0)
		return -1;
	sp = space_find(L, sid, &err);
	if (err)
		return -2;
	if (owns(L, sp))
		return 0;	/* its own envelopes come back: nothing new */
	if (!sp) {
		/* a space this node follows gets its replica from seq 1 */
		if ((rc = q(L, S_FOLLOW_GET, "t", sid)) <= 0)
			return rc < 0 ? -2 : 0;
		snprintf(fnode, sizeof(fnode), "%s", col(L, S_FOLLOW_GET, 0));
		rst(L, S_FOLLOW_GET);
		if (seq > 1) {
			behind(sid, 0, from, out);
			return 0;
		}
		if (*fnode && strcmp(fnode, node) != 0) {
			warn("%.80s: seq 1 signed by %.60s, not the owner node",
			    sid, node);
			return -1;
		}
	} else {
		if (strcmp(node, sp->node) != 0) {
			warn("%.80s: envelope signed by %.60s, not the owner "
			    "node", sid, node);
			return -1;
		}
		if (seq <= sp->head) {
			if ((rc = q(L, S_ENV_AT, "ti", sid, seq)) < 0)
				return -2;
			if (rc == 1) {
				if (event_id(env, &L->scratch, hash) == 0 &&
				    strcmp(hash, col(L, S_ENV_AT, 0)) != 0)
					warn("%.80s: seq %lld: the owner node "
					    "signed two envelopes", sid,
					    (long long)seq);
				rst(L, S_ENV_AT);
			}
			return 0;
		}
		if (seq > sp->head + 1) {
			behind(sid, sp->head, from, out);
			return 0;
		}
		if (!prev || strcmp(prev, sp->hash) != 0) {
			warn("%.80s: seq %lld: prev is not the hash of seq %lld",
			    sid, (long long)seq, (long long)sp->head);
			return -1;
		}
	}
	ev = jsonl_get(env, "event");
	/* the owner took it at ts: the skew is judged from then */
	if (check_event(L, ev, NULL, sid, ts, &ei, &e, &why) != 0) {
		warn("%.80s: seq %lld: %s", sid, (long long)seq, why);
		goto bad;
	}
	if ((seq == 1) != (ei.type == T_CREATE) ||
	    (ei.type == T_CREATE && strcmp(ei.node, node) != 0)) {
		warn("%.80s: seq %lld: the log does not start with its "
		    "owner's space.create", sid, (long long)seq);
		goto bad;
	}
	if (sp && (rc = q(L, S_ENV_DUP, "tit", sid, ei.ts, ei.id)) != 0) {
		if (rc > 0)
			rst(L, S_ENV_DUP);
		warn("%.80s: seq %lld: an event sequenced twice", sid,
		    (long long)seq);
		goto bad;
	}
	if (admit(L, sp, &ei, &e, &why) != 0) {
		if (e == E_INTERNAL)
			goto failed;
		warn("%.80s: seq %lld: the owner node sequenced what the "
		    "rules refuse: %s", sid, (long long)seq, why);
		goto bad;
	}
	if (apply(L, &sp, &ei) != 0 || event_id(env, &L->body, hash) != 0 ||
	    q(L, S_ENV_INS, "tiittb", sid, seq, ei.ts, ei.id, hash, L->body.p,
	    (int)L->body.len) < 0)
		goto failed;
	space_set_head(L, sp, seq, hash);
	if (ei.type == T_TOMB)
		note_tombstone(L, ev, ei.beam, ei.author, out);
	publish(L, sp, out);
	if (ei.type == T_LEAVE || ei.type == T_REMOVE || ei.type == T_RULES)
		subs_recheck(L, sp, out);
	gossip_push(L, sp, out);
	if (ei.type == T_LEAVE || ei.type == T_REMOVE)
		maybe_unfollow(L, sp, out);
	jv_free(ev);
	return 1;
bad:
	jv_free(ev);
	return -1;
failed:
	jv_free(ev);
	L->failed = 1;
	return -2;
}

/* A tombstone in a space: the beam is gone here too, its tombstone kept,
 * and a copy ns-beam fetched for a reader is dropped. */
void
note_tombstone(struct log *L, jv t, const char *beam, const char *author,
    struct buf *out)
{
	buf_reset(&L->scratch);
	if (canon_dump(t, NULL, &L->scratch) != 0)
		return;
	q(L, S_GONE_INS, "ttb", beam, author, L->scratch.p,
	    (int)L->scratch.len);
	buf_adds(out, "{\"m\":\"beam.uncache\",\"p\":{\"beam\":");
	bus_str(out, beam);
	buf_adds(out, ",\"tombstone\":");
	buf_add(out, L->scratch.p, L->scratch.len);
	buf_adds(out, "}}\n");
}

/* node.broadcast {"envelope"}: a notification, answered by nobody. */
void
handle_broadcast(struct log *L, const struct bus_req *r, struct buf *out)
{
	jv env = jsonl_get(r->params, "envelope");

	if (jv_get_kind(env) == JV_KIND_OBJECT && r->did &&
	    apply_envelope(L, env, r->did, out) == -1)
		peer_bad(r->did, "sent an envelope that does not follow the "
		    "owner's chain", out);
	jv_free(env);
	bus_done(out, r);
}

/* node.head {"space","head","hash"}: another node's head.  Behind it,
 * this node pulls; ahead of it, it says so, and the other pulls. */
void
handle_head(struct log *L, const struct bus_req *r, struct buf *out)
{
	const char *sid = jsonl_str(r->params, "space");
	const char *hash = jsonl_str(r->params, "hash");
	struct space *sp;
	int64_t head;
	int err;

	if (!sid || !r->did || jsonl_int(r->params, "head", &head) != 0 ||
	    head < 0)
		goto out;
	sp = space_find(L, sid, &err);
	if (!sp) {
		/* followed but no replica yet: anyone ahead is worth asking */
		if (!err && head > 0 && exists(L, S_FOLLOW_GET, sid, NULL,
		    NULL) == 1)
			behind(sid, 0, r->did, out);
		goto out;
	}
	/* a members-only space tells its head only to its member nodes */
	if (can_read(L, sp, r->did, "node") != 1)
		goto out;
	if (head > sp->head) {
		behind(sp->id, sp->head, r->did, out);
	} else if (head < sp->head) {
		buf_adds(out, "{\"m\":\"gossip.ahead\",\"p\":{\"space\":");
		bus_str(out, sp->id);
		buf_addf(out, ",\"head\":%lld,\"hash\":\"%s\",\"node\":",
		    (long long)sp->head, sp->hash);
		bus_str(out, r->did);
		buf_adds(out, "}}\n");
	} else if (hash && head > 0 && strcmp(hash, sp->hash) != 0) {
		warn("%.80s: seq %lld: %.60s holds another envelope than this "
		    "node", sp->id, (long long)head, r->did);
	}
out:
	bus_done(out, r);
}

/* ---- events this node hands to owner nodes ---- */

static void
pend_free(struct pend *p)
{
	jv_free(p->rid);
	free(p->space);
	free(p->beam);
	free(p->address);
	free(p);
}

/* The request p answers. */
static struct bus_req
pend_req(const struct pend *p)
{
	struct bus_req r = {
		.line = jv_invalid(), .conn = p->conn, .r = p->r,
		.id = p->rid, .params = jv_invalid(),
	};
	return r;
}

/* Where the owner node of space id is: its DID (or "" when not known yet)
 * and address, from the replica, the follows table, or the northstar://
 * address the caller gave.  0, or -1 when nobody knows. */
static int
owner_of(struct log *L, const char *id, struct space *sp, jv params,
    char node[DIDKEY_MAX], char *address, size_t alen)
{
	const char *a;
	int rc;

	if (sp) {
		snprintf(node, DIDKEY_MAX, "%s", sp->node);
		snprintf(address, alen, "%s", sp->address);
		return 0;
	}
	if ((rc = q(L, S_FOLLOW_GET, "t", id)) == 1) {
		snprintf(node, DIDKEY_MAX, "%s", col(L, S_FOLLOW_GET, 0));
		snprintf(address, alen, "%s", col(L, S_FOLLOW_GET, 1));
		rst(L, S_FOLLOW_GET);
		return 0;
	}
	/* northstar://host[:port]/space */
	if ((a = jsonl_str(params, "address")) &&
	    strncmp(a, "northstar://", 12) == 0) {
		const char *h = a + 12, *slash = strchr(h, '/');
		size_t hl;

		if (!slash || strcmp(slash + 1, id) != 0 || slash == h ||
		    (hl = (size_t)(slash - h)) + 6 >= alen)
			return -1;
		memcpy(address, h, hl);
		address[hl] = '\0';
		/* the protocol's default port */
		if (!strchr(address, ':') || address[hl - 1] == ']')
			snprintf(address + hl, alen - hl, ":7700");
		if (!valid_address(address))
			return -1;
		node[0] = '\0';
		return 0;
	}
	return -1;
}

/*
 * Hand ev (borrowed; ei describes it) to the owner node of its space with
 * node.submit, for request r: the answer goes to r's sender when the owner
 * has sequenced it (or refused it, or could not be reached).  beam is the
 * path of a space.beam's beam, NULL otherwise.  -1 (r answered) when the
 * owner node is not known.
 */
int
submit_remote(struct log *L, const struct bus_req *r, jv ev,
    const struct evinfo *ei, struct space *sp, const char *beam,
    struct buf *out)
{
	char node[DIDKEY_MAX], address[ADDRESS_MAX + 8];
	struct pend *p;

	if (owner_of(L, ei->space, sp, r->params, node, address,
	    sizeof(address)) != 0) {
		bus_error(out, r, E_NOT_FOUND, "no such space on this node "
		    "(give its northstar:// address)");
		return -1;
	}
	if (!started)
		started = jsonl_now_ms();
	p = xcalloc(1, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "log:%lld.%lu", (long long)started,
	    ++pend_seq);
	p->conn = r->conn;
	p->r = r->r;
	p->rid = jv_copy(r->id);
	p->space = xstrdup(ei->space);
	p->beam = beam ? xstrdup(beam) : NULL;
	memcpy(p->evid, ei->id, sizeof(p->evid));
	p->type = ei->type;
	p->fresh = !sp;
	p->address = xstrdup(address);
	p->deadline = jsonl_now_ms() + SUBMIT_MS;
	p->next = pends;
	pends = p;
	buf_adds(out, "{\"m\":\"peer.send\",\"p\":{");
	if (*node) {
		buf_adds(out, "\"node\":");
		bus_str(out, node);
		buf_addc(out, ',');
	}
	buf_adds(out, "\"address\":");
	bus_str(out, address);
	buf_addf(out, ",\"msg\":{\"id\":\"%s\",\"jsonrpc\":\"2.0\","
	    "\"method\":\"node.submit\",\"params\":{", p->id);
	if (ei->type == T_TOMB) {
		buf_adds(out, "\"event\":");
		bus_json(out, jv_copy(ev));
		buf_adds(out, ",\"space\":");
		bus_str(out, ei->space);
	} else {
		buf_adds(out, "\"event\":");
		bus_json(out, jv_copy(ev));
	}
	buf_adds(out, "}}}}\n");
	return 0;
}

static struct pend *
pend_take(const char *id)
{
	struct pend **pp, *p;

	for (pp = &pends; (p = *pp); pp = &p->next)
		if (strcmp(p->id, id) == 0) {
			*pp = p->next;
			return p;
		}
	return NULL;
}

/* The owner node could not be reached, or did not answer in time: the
 * caller is told so.  A beam stays stored (sending the same request again
 * later is harmless). */
static void
pend_unreachable(struct pend *p, const char *why, struct buf *out)
{
	struct bus_req r = pend_req(p);
	char msg[200];

	snprintf(msg, sizeof(msg), "the owner node of the space (%.60s) could "
	    "not be reached: %.80s", p->address, why);
	bus_error(out, &r, E_UNREACHABLE, msg);
}

/* The owner node answered p (res: its JSON-RPC response, borrowed). */
static void
pend_answer(struct log *L, struct pend *p, jv res, const char *from,
    struct buf *out)
{
	struct bus_req r = pend_req(p);
	jv result = jsonl_get(res, "result"), env = jv_invalid(), err, ans;
	const char *evid = NULL;
	char id[HASH_ID_LEN + 1];
	int64_t seq;

	if (jv_get_kind(result) != JV_KIND_OBJECT) {
		/* refused: the owner's word goes to the caller as it is */
		err = jsonl_get(res, "error");
		jv data = jsonl_get(err, "data");
		const char *reason = jsonl_str(data, "reason");
		const char *message = jsonl_str(err, "message");
		enum bus_err e = E_FORBIDDEN;

		for (int i = 0; i <= E_UNREACHABLE; i++)
			if (reason && strcmp(bus_err_reason(i), reason) == 0)
				e = (enum bus_err)i;
		bus_error(out, &r, e, message ? message : "refused by the "
		    "owner node");
		jv_free(data);
		if (p->beam) {
			buf_adds(out, "{\"m\":\"beam.drop\",\"p\":{\"beam\":");
			bus_str(out, p->beam);
			buf_adds(out, ",\"space\":");
			bus_str(out, p->space);
			buf_adds(out, "}}\n");
		}
		jv_free(err);
		goto out;
	}
	env = jsonl_get(result, "envelope");
	ans = jsonl_get(env, "event");
	if (event_id(ans, &L->scratch, id) == 0)
		evid = id;
	jv_free(ans);
	if (!evid || strcmp(evid, p->evid) != 0 ||
	    jsonl_int(env, "seq", &seq) != 0 ||
	    !jsonl_str(env, "space") ||
	    strcmp(jsonl_str(env, "space"), p->space) != 0) {
		bus_error(out, &r, E_INTERNAL, "the owner node answered with "
		    "another event");
		goto out;
	}
	if (p->fresh && p->type == T_JOIN) {
		/* a member node now: follow the space, and pull its log */
		if (q(L, S_FOLLOW_PUT, "ttt", p->space, from, p->address) < 0) {
			bus_error(out, &r, E_INTERNAL, "the node failed to "
			    "store the space");
			goto out;
		}
		gossip_follow(L, p->space, from, p->address, out);
	}
	ans = jv_object_set(jv_object(), jv_string("space"),
	    jv_string(p->space));
	ans = jv_object_set(ans, jv_string("seq"), jv_number((double)seq));
	ans = jv_object_set(ans, jv_string("eventId"), jv_string(p->evid));
	if (p->beam)
		ans = jv_object_set(ans, jv_string("beam"), jv_string(p->beam));
	bus_result(out, &r, ans);
out:
	jv_free(env);
	jv_free(result);
}

/* rpc.response: an answer of another node.  Envelopes in it (a sync page,
 * a submit's answer) are applied whoever asked, since the owner's
 * signature and the chain vouch for them; an answer to one of this
 * stage's submits is taken here; a sync page goes on to ns-gossip without
 * its envelopes. */
void
handle_response(struct log *L, const struct bus_req *r, const char *line,
    size_t len, struct buf *out)
{
	jv res = r->params, result = jsonl_get(res, "result"), list;
	const char *id = jsonl_str(res, "id"), *sid = NULL;
	int64_t applied = 0, from_head = -1;
	struct pend *p;
	int err;

	list = jsonl_get(result, "envelopes");
	if (jv_get_kind(list) == JV_KIND_ARRAY && r->did) {
		jv_array_foreach(list, i, env) {
			int rc = apply_envelope(L, env, r->did, out);

			jv_free(env);
			if (rc == 1)
				applied++;
			else if (rc < 0) {
				if (rc == -1)
					peer_bad(r->did, "sent a sync page that "
					    "does not follow the owner's chain",
					    out);
				break;
			}
		}
	} else if (jsonl_kind(result, "envelope") == JV_KIND_OBJECT && r->did) {
		jv env = jsonl_get(result, "envelope");
		apply_envelope(L, env, r->did, out);
		jv_free(env);
	}
	if (id && strncmp(id, "log:out:", 8) == 0) {
		outbox_answer(L, id, res);
		bus_done(out, r);
		goto done;
	}
	if (id && strncmp(id, "log:", 4) == 0) {
		if ((p = pend_take(id))) {
			pend_answer(L, p, res, r->did ? r->did : "", out);
			pend_free(p);
		}
		bus_done(out, r);
		goto done;
	}
	if (jv_get_kind(list) != JV_KIND_ARRAY) {
		/* not ours at all: on, as it came */
		buf_add(out, line, len);
		buf_addc(out, '\n');
		goto done;
	}
	/* a sync page: ns-gossip pages on from where this node now is */
	sid = jsonl_str(result, "space");
	jsonl_int(result, "head", &from_head);
	{
		struct space *sp = sid ? space_find(L, sid, &err) : NULL;
		jv summary = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(sid ? sid : ""));

		summary = jv_object_set(summary, jv_string("head"),
		    jv_number(sp ? (double)sp->head : 0));
		summary = jv_object_set(summary, jv_string("theirs"),
		    jv_number((double)from_head));
		summary = jv_object_set(summary, jv_string("applied"),
		    jv_number((double)applied));
		summary = jv_object_set(summary, jv_string("next"),
		    jsonl_get(result, "next"));
		jv p2 = jv_object_set(jv_object(), jv_string("id"),
		    jsonl_get(res, "id"));
		p2 = jv_object_set(p2, jv_string("result"), summary);
		bus_request(out, "rpc.response", r, p2);
	}
done:
	jv_free(list);
	jv_free(result);
}

/* peer.fail {"id","node","address","reason"} from ns-gossip: a message of
 * ours that could not be sent. */
void
handle_peer_fail(struct log *L, const char *line, size_t len,
    const struct bus_req *r, struct buf *out)
{
	const char *id = jsonl_str(r->params, "id");
	const char *why = jsonl_str(r->params, "reason");
	struct pend *p;

	(void)L;
	if (id && strncmp(id, "log:out:", 8) == 0)
		return;		/* sent again when due */
	if (!id || strncmp(id, "log:", 4) != 0) {
		buf_add(out, line, len);
		buf_addc(out, '\n');
		return;
	}
	if ((p = pend_take(id))) {
		pend_unreachable(p, why ? why : "no link", out);
		pend_free(p);
	}
}

/* The outbox: events owed to other nodes' spaces, sent (again) when due,
 * with a backoff of 5 s doubling to an hour. */
static void
outbox_send(struct log *L, int64_t now, struct buf *out)
{
	char node[DIDKEY_MAX], address[ADDRESS_MAX + 8];
	struct {
		int64_t id, tries;
		char *space, *event;
	} due[16];
	int n = 0, rc;

	for (rc = q(L, S_OUT_DUE, "i", now); rc == 1 && n < 16;
	    rc = step(L, S_OUT_DUE)) {
		due[n].id = sqlite3_column_int64(L->st[S_OUT_DUE], 0);
		due[n].space = xstrdup(col(L, S_OUT_DUE, 1));
		due[n].event = xstrdup(col(L, S_OUT_DUE, 2));
		due[n].tries = sqlite3_column_int64(L->st[S_OUT_DUE], 3);
		n++;
	}
	if (rc == 1)
		rst(L, S_OUT_DUE);
	for (int i = 0; i < n; i++) {
		struct space *sp;
		int64_t wait = 5000;
		int err;

		for (int64_t t = 0; t < due[i].tries && wait < 3600000; t++)
			wait *= 2;
		if (wait > 3600000)
			wait = 3600000;
		q(L, S_OUT_LATER, "ii", due[i].id, now + wait);
		sp = space_find(L, due[i].space, &err);
		if (owner_of(L, due[i].space, sp, jv_null(), node, address,
		    sizeof(address)) == 0) {
			buf_adds(out, "{\"m\":\"peer.send\",\"p\":{");
			if (*node) {
				buf_adds(out, "\"node\":");
				bus_str(out, node);
				buf_addc(out, ',');
			}
			buf_adds(out, "\"address\":");
			bus_str(out, address);
			buf_addf(out, ",\"msg\":{\"id\":\"log:out:%lld\","
			    "\"jsonrpc\":\"2.0\",\"method\":\"node.submit\","
			    "\"params\":{\"event\":", (long long)due[i].id);
			buf_adds(out, due[i].event);
			buf_adds(out, ",\"space\":");
			bus_str(out, due[i].space);
			buf_adds(out, "}}}}\n");
		}
		free(due[i].space);
		free(due[i].event);
	}
}

/* The owner node answered an outbox entry: done, unless it could not
 * take it now. */
static void
outbox_answer(struct log *L, const char *id, jv res)
{
	jv err = jsonl_get(res, "error"), data = jsonl_get(err, "data");
	const char *reason = jsonl_str(data, "reason");
	int64_t n = strtoll(id + 8, NULL, 10);

	if (jsonl_kind(res, "result") == JV_KIND_OBJECT ||
	    (reason && strcmp(reason, "busy") != 0 &&
	    strcmp(reason, "internal") != 0 &&
	    strcmp(reason, "unreachable") != 0)) {
		if (reason)
			warn("an owed event was refused: %.80s",
			    jsonl_str(err, "message") ? jsonl_str(err,
			    "message") : reason);
		q(L, S_OUT_DONE, "i", n);
	}
	jv_free(data);
	jv_free(err);
}

/* A tick: submits the owner has not answered in time are given up, and
 * the outbox is sent when due. */
void
fed_tick(struct log *L, int64_t now, struct buf *out)
{
	struct pend **pp = &pends, *p;

	outbox_send(L, now, out);
	while ((p = *pp)) {
		if (p->deadline > now) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		pend_unreachable(p, "no answer in time", out);
		pend_free(p);
	}
}

void
fed_free(void)
{
	struct pend *p;

	while ((p = pends)) {
		pends = p->next;
		pend_free(p);
	}
}

/* ---- events other nodes hand to this one ---- */

/*
 * The rule of section 10: a node hands on only its own users' events.
 * 0, or -1 with *why.
 */
static int
may_submit(struct log *L, struct space *sp, const struct evinfo *ei,
    const char *caller, const char **why)
{
	int rc = 0;

	switch (ei->type) {
	case T_CREATE:
		*why = "a space is created on its owner's node only";
		return -1;
	case T_JOIN:
	case T_REF:
		if (strcmp(ei->node, caller) == 0)
			return 0;
		*why = "the event names another node as its author's";
		return -1;
	case T_TOMB:
		if ((rc = q(L, S_REF_NODE, "tt", sp->id, ei->beam)) == 1) {
			rc = strcmp(col(L, S_REF_NODE, 0), caller) == 0;
			rst(L, S_REF_NODE);
			if (rc)
				return 0;
		}
		*why = "the space's ref to the beam names another node";
		return -1;
	default:
		if ((rc = q(L, S_MEM_NODE_OF, "tt", sp->id, ei->author)) == 1) {
			rc = strcmp(col(L, S_MEM_NODE_OF, 0), caller) == 0;
			rst(L, S_MEM_NODE_OF);
			if (rc)
				return 0;
		}
		*why = "the author is no member who joined through this node";
		return -1;
	}
}

/* node.submit {"event"[, "space"]}: a member node hands this owner node
 * one of its users' events.  The answer carries the envelope. */
void
handle_submit(struct log *L, const struct bus_req *r, int64_t now,
    struct buf *out)
{
	jv ev = jsonl_get(r->params, "event");
	const char *pspace = jsonl_str(r->params, "space"), *why;
	struct evinfo ei;
	struct space *sp;
	enum bus_err e;
	int64_t seq;
	int err, rc;

	if (check_event(L, ev, NULL, pspace, now, &ei, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	sp = space_find(L, ei.space, &err);
	if (err)
		goto internal;
	if (!owns(L, sp)) {
		bus_error(out, r, sp ? E_FORBIDDEN : E_NOT_FOUND, sp ?
		    "this node does not own the space" : "no such space");
		goto out;
	}
	if (!r->did || may_submit(L, sp, &ei, r->did, &why) != 0) {
		bus_error(out, r, E_FORBIDDEN, r->did ? why : "no caller");
		goto out;
	}
	switch ((rc = sequence(L, ev, &ei, now, &sp, &seq, &e, &why))) {
	case SEQ_NEW:
	case SEQ_DUP:
		if (rc == SEQ_DUP) {
			if ((err = q(L, S_ENV_AT, "ti", sp->id, seq)) != 1)
				goto internal;
			buf_reset(&L->body);
			buf_adds(&L->body, col(L, S_ENV_AT, 1));
			rst(L, S_ENV_AT);
		}
		if (jv_is_valid(r->id) && r->conn >= 0) {
			buf_addf(out, "{\"to\":%lld", (long long)r->conn);
			if (r->r >= 0)
				buf_addf(out, ",\"r\":%lld", (long long)r->r);
			buf_adds(out, ",\"msg\":{\"id\":");
			bus_json(out, jv_copy(r->id));
			buf_adds(out, ",\"jsonrpc\":\"2.0\",\"result\":"
			    "{\"envelope\":");
			buf_add(out, L->body.p, L->body.len);
			buf_adds(out, "}}}\n");
		} else
			bus_done(out, r);
		if (rc == SEQ_NEW) {
			if (ei.type == T_TOMB)
				note_tombstone(L, ev, ei.beam, ei.author, out);
			publish(L, sp, out);
			if (ei.type == T_LEAVE || ei.type == T_REMOVE ||
			    ei.type == T_RULES)
				subs_recheck(L, sp, out);
			gossip_push(L, sp, out);
		}
		break;
	case SEQ_REFUSED:
		bus_error(out, r, e, why);
		break;
	default:
		goto internal;
	}
	goto out;
internal:
	L->failed = 1;
	bus_error(out, r, E_INTERNAL, "the node failed to store the event");
out:
	jv_free(ev);
}

/* A peer misbehaved: ns-gossip drops it for a while. */
void
peer_bad(const char *did, const char *why, struct buf *out)
{
	warn("node %.60s %s", did, why);
	buf_adds(out, "{\"m\":\"peer.bad\",\"p\":{\"node\":");
	bus_str(out, did);
	buf_adds(out, ",\"reason\":");
	bus_str(out, why);
	buf_adds(out, "}}\n");
}
