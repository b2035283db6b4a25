/*
 * Live streams (share/doc/protocol.md, section 12).  Chunks are not
 * sequenced and ns-relay carries them; what ns-log decides is who may do
 * what with a stream: only its owner pushes, on the stream's own node; a
 * reader watches, or asks for the recent chunks; a node joins the relay
 * tree, attaches to a parent or fetches a gap only if the stream's read
 * rule admits it.  A request that passes goes on to ns-relay under a name
 * of the ring's own (relay.push, relay.watch, relay.recent, relay.admit,
 * relay.child, relay.gap), so nothing unchecked reaches it.  A watch is a
 * subscription to the key "chunk:SPACE", which ends, like any other, when
 * read access does.
 */
#include <stdio.h>
#include <string.h>

#include "jsonl.h"
#include "log.h"
#include "msg.h"

static const char *const inner[] = {
	[ST_PUSH] = "relay.push", [ST_WATCH] = "relay.watch",
	[ST_RECENT] = "relay.recent", [ST_JOIN] = "relay.admit",
	[ST_ATTACH] = "relay.child", [ST_FETCH] = "relay.gap",
};

/* params for relay.watch: where the stream's owner node is */
static jv
watch_params(struct log *L, const struct space *sp)
{
	jv p = jv_object_set(jv_object(), jv_string("space"), jv_string(sp->id));

	p = jv_object_set(p, jv_string("node"), jv_string(sp->node));
	p = jv_object_set(p, jv_string("address"), sp->address ?
	    jv_string(sp->address) : jv_null());
	return jv_object_set(p, jv_string("owned"), jv_bool(owns(L, sp)));
}

/* A safe integer member of params in [min, max], or absent: 0; else -1. */
static int
int_param(jv params, const char *name, int64_t min, int64_t max)
{
	int64_t v;

	if (jsonl_kind(params, name) == JV_KIND_INVALID)
		return 0;
	return jsonl_int(params, name, &v) == 0 && v >= min && v <= max ?
	    0 : -1;
}

/* stream.push: the owner's chunk, on the stream's node.  The chunk's
 * shape and signature are ns-relay's to check; the rules are ours. */
static void
push(struct log *L, const struct bus_req *r, struct buf *out)
{
	jv chunk = jsonl_get(r->params, "chunk");
	const char *sid = jsonl_str(chunk, "space");
	const char *author = jsonl_str(chunk, "author");
	struct space *sp;
	int err;

	if (jv_get_kind(chunk) != JV_KIND_OBJECT || !sid) {
		bus_error(out, r, E_PARAMS, "params.chunk must be a stream.chunk "
		    "with its space");
		goto out;
	}
	if (!(sp = space_find(L, sid, &err))) {
		if (err)
			bus_error(out, r, E_INTERNAL, "database failure");
		else
			bus_error(out, r, E_NOT_FOUND, "no such space");
		goto out;
	}
	if (sp->type != SP_STREAM)
		bus_error(out, r, E_FORBIDDEN, "chunks are pushed to streams "
		    "only");
	else if (!r->did || strcmp(r->did, sp->owner) != 0)
		bus_error(out, r, E_FORBIDDEN, "only the stream's owner pushes");
	else if (!author || strcmp(author, r->did) != 0)
		bus_error(out, r, E_FORBIDDEN, "a chunk's author is its pusher");
	else if (!owns(L, sp))
		bus_error(out, r, E_FORBIDDEN, "chunks are pushed on the "
		    "stream's own node");
	else
		bus_request(out, inner[ST_PUSH], r, jv_copy(r->params));
out:
	jv_free(chunk);
}

void
handle_stream(struct log *L, const struct bus_req *r, int which,
    struct buf *out)
{
	struct space *sp;
	char key[sizeof(WATCH_PREFIX) + 256];

	if (which == ST_PUSH) {
		push(L, r, out);
		return;
	}
	if (which == ST_UNWATCH) {
		const char *id = sget(r->params, "space");
		int type;
		const char *kid;
		size_t kidlen;

		if (!id || space_parse(id, &type, &kid, &kidlen) != 0 ||
		    r->conn < 0) {
			bus_error(out, r, E_PARAMS, "params.space must be a "
			    "space id");
			return;
		}
		snprintf(key, sizeof(key), WATCH_PREFIX "%s", id);
		subs_del(r->conn, key);
		bus_subscribe(out, r->conn, key, 0);
		bus_result(out, r, jv_object_set(jv_object(),
		    jv_string("space"), jv_string(id)));
		return;
	}
	/* the rest read the stream: its read rule decides */
	if (!(sp = read_space(L, r, 1, out)))
		return;
	if (sp->type != SP_STREAM) {
		bus_error(out, r, E_PARAMS, "not a stream");
		return;
	}
	switch (which) {
	case ST_WATCH:
		if (r->conn < 0) {
			bus_error(out, r, E_PARAMS, "a watch needs a connection");
			return;
		}
		snprintf(key, sizeof(key), WATCH_PREFIX "%s", sp->id);
		subs_add(r->conn, r->did, r->role, key);
		bus_subscribe(out, r->conn, key, 1);
		bus_request(out, inner[ST_WATCH], r, watch_params(L, sp));
		return;
	case ST_RECENT:
	case ST_FETCH:
		if (int_param(r->params, "after", 0, JSONL_INT_MAX) != 0 ||
		    int_param(r->params, "limit", 0, 256) != 0) {
			bus_error(out, r, E_PARAMS, "after must be an integer from "
			    "0, limit one from 0 to 256");
			return;
		}
		break;
	case ST_JOIN:
		if (!owns(L, sp)) {
			bus_error(out, r, E_FORBIDDEN, "relay.join goes to the "
			    "stream's own node");
			return;
		}
		/* fall through */
	case ST_ATTACH:
		if (!sget(r->params, "address") ||
		    !valid_address(sget(r->params, "address"))) {
			bus_error(out, r, E_PARAMS, "params.address must be the "
			    "node's host:port");
			return;
		}
		break;
	}
	bus_request(out, inner[which], r, jv_copy(r->params));
}

/* sub.restore of a watch key, after ns-log restarted or ns-relay asked:
 * still readable, it is kept and ns-relay learns it again (answering
 * no one). */
void
watch_restore(struct log *L, const struct bus_req *r, struct space *sp,
    const char *key, struct buf *out)
{
	subs_add(r->conn, r->did, r->role, key);
	bus_request(out, inner[ST_WATCH], r, jv_object_set(watch_params(L, sp),
	    jv_string("restore"), jv_true()));
}
