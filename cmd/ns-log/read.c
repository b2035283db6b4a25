/*
 * The requests that read, and the read rule that covers everything
 * derived from a space: its history, members and info, live
 * subscriptions, and the beams its refs name (share/doc/protocol.md,
 * sections 6, 7 and 9).
 */
#include <stdio.h>
#include <string.h>

#include "jsonl.h"
#include "log.h"
#include "msg.h"

/*
 * Whether did, logged in with role, may read sp: anyone a public space,
 * members a members-only one, and a node connection one in which a member
 * has that node.  1, 0, or -1 on a database failure.
 */
int
can_read(struct log *L, const struct space *sp, const char *did,
    const char *role)
{
	int node = role && strcmp(role, "node") == 0;

	if (sp->rules.read == R_PUBLIC)
		return 1;
	if (!did)
		return 0;
	if (!node)
		return exists(L, S_MEM_GET, sp->id, did, NULL);
	if (strcmp(did, sp->node) == 0)
		return 1;
	return exists(L, S_MEM_NODE, sp->id, did, NULL);
}

/* The space params.space names, if r may read it (with check); else
 * answers r and returns NULL. */
struct space *
read_space(struct log *L, const struct bus_req *r, int check, struct buf *out)
{
	const char *id = sget(r->params, "space"), *kid;
	struct space *sp;
	size_t kidlen;
	int type, err, rc;

	if (!id || space_parse(id, &type, &kid, &kidlen) != 0) {
		bus_error(out, r, E_PARAMS, "params.space must be a space id");
		return NULL;
	}
	sp = space_find(L, id, &err);
	if (err)
		goto internal;
	if (!sp) {
		bus_error(out, r, E_NOT_FOUND, "no such space");
		return NULL;
	}
	if (check && (rc = can_read(L, sp, r->did, r->role)) != 1) {
		if (rc < 0)
			goto internal;
		bus_error(out, r, E_FORBIDDEN, "the space's read rule does not "
		    "admit the caller");
		return NULL;
	}
	return sp;
internal:
	bus_error(out, r, E_INTERNAL, "database failure");
	return NULL;
}

/* A JSON array of column 0 of the rows of statement i for sp, or
 * jv_invalid() on failure. */
static jv
did_list(struct log *L, enum stmt i, const struct space *sp)
{
	jv a = jv_array();
	int rc;

	for (rc = q(L, i, "t", sp->id); rc == 1; rc = step(L, i))
		a = jv_array_append(a, jv_string(col(L, i, 0)));
	if (rc < 0) {
		jv_free(a);
		return jv_invalid();
	}
	return a;
}

jv
members_result(struct log *L, const struct space *sp)
{
	jv mem = did_list(L, S_MEM_LIST, sp), inv = jv_invalid(), nodes, res;
	int rc;

	if (!jv_is_valid(mem) ||
	    !jv_is_valid(inv = did_list(L, S_INV_LIST, sp)))
		goto bad;
	nodes = jv_array();
	for (rc = q(L, S_NODES, "t", sp->id); rc == 1; rc = step(L, S_NODES)) {
		jv n = jv_object_set(jv_object(), jv_string("node"),
		    jv_string(col(L, S_NODES, 0)));
		n = jv_object_set(n, jv_string("address"),
		    jv_string(col(L, S_NODES, 1)));
		nodes = jv_array_append(nodes, n);
	}
	if (rc < 0) {
		jv_free(nodes);
		goto bad;
	}
	res = jv_object_set(jv_object(), jv_string("space"), jv_string(sp->id));
	res = jv_object_set(res, jv_string("owner"), jv_string(sp->owner));
	res = jv_object_set(res, jv_string("members"), mem);
	res = jv_object_set(res, jv_string("invited"), inv);
	res = jv_object_set(res, jv_string("rules"), rules_jv(&sp->rules));
	return jv_object_set(res, jv_string("nodes"), nodes);
bad:
	jv_free(mem);
	jv_free(inv);
	return jv_invalid();
}

/* The start of an answer to r whose result is written raw after it, in
 * the exact form bus_result() gives.  0 if r has no id (nothing written). */
static int
answer_open(struct buf *out, const struct bus_req *r)
{
	if (!jv_is_valid(r->id) || r->conn < 0)
		return 0;
	buf_addf(out, "{\"to\":%lld", (long long)r->conn);
	if (r->r >= 0)
		buf_addf(out, ",\"r\":%lld", (long long)r->r);
	buf_adds(out, ",\"msg\":{\"id\":");
	bus_json(out, jv_copy(r->id));
	buf_adds(out, ",\"jsonrpc\":\"2.0\",\"result\":");
	return 1;
}

static void
handle_history(struct log *L, const struct bus_req *r, struct buf *out)
{
	struct space *sp = read_space(L, r, 1, out);
	int64_t after = 0, limit = PAGE_DEFAULT, last = 0;
	size_t mark, start;
	int rc, n = 0;

	if (!sp)
		return;
	if ((jsonl_has(r->params, "after") &&
	    (jsonl_int(r->params, "after", &after) != 0 || after < 0)) ||
	    (jsonl_has(r->params, "limit") &&
	    (jsonl_int(r->params, "limit", &limit) != 0 || limit < 1 ||
	    limit > PAGE_MAX))) {
		bus_error(out, r, E_PARAMS, "after must be an integer from 0 "
		    "to 2^53 - 1 and limit an integer from 1 to 1000");
		return;
	}
	mark = out->len;
	if (!answer_open(out, r)) {
		bus_done(out, r);
		return;
	}
	/* envelopes are stored canonical: they go out without a parse */
	buf_adds(out, "{\"envelopes\":[");
	start = out->len;
	for (rc = q(L, S_ENV_RANGE, "tii", sp->id, after, limit); rc == 1;
	    rc = step(L, S_ENV_RANGE)) {
		/* keep a page well inside a client's message limit; the
		 * caller pages on with "next" */
		if (out->len - start > PAGE_BYTES) {
			sqlite3_reset(L->st[S_ENV_RANGE]);
			break;
		}
		if (n++)
			buf_addc(out, ',');
		last = sqlite3_column_int64(L->st[S_ENV_RANGE], 0);
		buf_add(out, sqlite3_column_text(L->st[S_ENV_RANGE], 1),
		    (size_t)sqlite3_column_bytes(L->st[S_ENV_RANGE], 1));
	}
	if (rc < 0) {
		out->len = mark;
		out->p[mark] = '\0';
		bus_error(out, r, E_INTERNAL, "database failure");
		return;
	}
	buf_addf(out, "],\"head\":%lld,\"next\":", (long long)sp->head);
	if (n > 0 && last < sp->head)
		buf_addf(out, "%lld", (long long)last);
	else
		buf_adds(out, "null");
	buf_adds(out, ",\"space\":");
	bus_str(out, sp->id);
	buf_adds(out, "}}}\n");
}

void
handle_read(struct log *L, const struct bus_req *r, int method,
    struct buf *out)
{
	const char *m = r->method, *id, *kid;
	struct space *sp;
	size_t kidlen;
	int type;
	jv res;

	(void)method;
	if (strcmp(m, "space.history") == 0 || strcmp(m, "node.sync") == 0) {
		handle_history(L, r, out);
	} else if (strcmp(m, "space.members") == 0) {
		if (!(sp = read_space(L, r, 1, out)))
			return;
		res = members_result(L, sp);
		if (!jv_is_valid(res)) {
			jv_free(res);
			bus_error(out, r, E_INTERNAL, "database failure");
			return;
		}
		bus_result(out, r, res);
	} else if (strcmp(m, "space.info") == 0) {
		if (!(sp = read_space(L, r, 1, out)))
			return;
		res = space_json(sp);
		res = jv_object_set(res, jv_string("head"),
		    jv_number((double)sp->head));
		res = jv_object_set(res, jv_string("rules"),
		    rules_jv(&sp->rules));
		bus_result(out, r, res);
	} else if (strcmp(m, "subscribe") == 0) {
		if (!(sp = read_space(L, r, 1, out)))
			return;
		/* subscribed before the head is reported: whatever is
		 * sequenced after it reaches the caller */
		if (r->conn >= 0) {
			bus_subscribe(out, r->conn, sp->id, 1);
			subs_add(r->conn, r->did, r->role, sp->id);
		}
		res = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(sp->id));
		bus_result(out, r, jv_object_set(res, jv_string("head"),
		    jv_number((double)sp->head)));
	} else if (strcmp(m, "unsubscribe") == 0) {
		id = sget(r->params, "space");
		if (!id || space_parse(id, &type, &kid, &kidlen) != 0) {
			bus_error(out, r, E_PARAMS,
			    "params.space must be a space id");
			return;
		}
		if (r->conn >= 0) {
			bus_subscribe(out, r->conn, id, 0);
			subs_del(r->conn, id);
		}
		bus_result(out, r, jv_object_set(jv_object(),
		    jv_string("space"), jv_string(id)));
	}
}

/*
 * beam.get: a beam may be read by its author, and by whoever may read a
 * space that holds a ref to it; for anyone else it does not exist.  A read
 * that is allowed goes on to ns-beam as beam.read.
 */
void
handle_beam_get(struct log *L, const struct bus_req *r, struct buf *out)
{
	const char *path = sget(r->params, "beam");
	char sid[512];
	struct space *sp;
	int rc, err, ok = 0;
	jv p;

	if (!path || beam_path_ok(path, NULL) != 0) {
		bus_error(out, r, E_PARAMS, "beam is not a beam path");
		return;
	}
	if (r->did && beam_path_ok(path, r->did) == 0)
		ok = 1;		/* its author */
	for (rc = ok ? 0 : q(L, S_REF_SPACES, "t", path); rc == 1;
	    rc = step(L, S_REF_SPACES)) {
		snprintf(sid, sizeof(sid), "%s", col(L, S_REF_SPACES, 0));
		sp = space_find(L, sid, &err);
		if (err || (sp && (ok = can_read(L, sp, r->did, r->role)) < 0)) {
			rst(L, S_REF_SPACES);
			rc = -1;
			break;
		}
		if (ok == 1) {
			rst(L, S_REF_SPACES);
			break;
		}
	}
	if (rc < 0) {
		bus_error(out, r, E_INTERNAL, "database failure");
		return;
	}
	if (ok != 1) {
		bus_error(out, r, E_NOT_FOUND, "no such beam on this node");
		return;
	}
	p = jv_object_set(jv_object(), jv_string("beam"), jv_string(path));
	/* where its refs say it is stored, if another node: ns-beam fetches
	 * it from there when it holds no copy */
	if ((rc = q(L, S_REF_WHERE, "t", path)) == 1) {
		if (strcmp(col(L, S_REF_WHERE, 0), L->node) != 0) {
			p = jv_object_set(p, jv_string("node"),
			    jv_string(col(L, S_REF_WHERE, 0)));
			p = jv_object_set(p, jv_string("address"),
			    jv_string(col(L, S_REF_WHERE, 1)));
		}
		rst(L, S_REF_WHERE);
	}
	bus_request(out, "beam.read", r, p);
}
