/*
 * The subscriptions ns-log has granted, so that it can end those whose
 * reader lost read access (removed, left, or the rules changed) the moment
 * the event that took it is sequenced.  ns-serve holds the same set for
 * delivery; this copy lives in memory, so a restarted ns-log asks ns-serve
 * for it ({"resync":"subs"}) and checks each one as it comes back
 * (sub.restore).
 */
#include <stdlib.h>
#include <string.h>

#include "didkey.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

#define SUB_BUCKETS 4096

struct lsub {
	struct lsub *snext;	/* same space */
	struct lsub *cnext;	/* same connection */
	int64_t conn;
	char *space;
	char did[DIDKEY_MAX];
	char node;		/* logged in with role "node" */
};

static struct lsub *by_space[SUB_BUCKETS], *by_conn[SUB_BUCKETS];

static size_t
conn_slot(int64_t conn)
{
	return (size_t)((uint64_t)conn * 0x9e3779b97f4a7c15ull >> 40) %
	    SUB_BUCKETS;
}

void
subs_add(int64_t conn, const char *did, const char *role, const char *space)
{
	size_t cs = conn_slot(conn), ss = strhash(space) % SUB_BUCKETS;
	struct lsub *s;

	for (s = by_conn[cs]; s; s = s->cnext)
		if (s->conn == conn && strcmp(s->space, space) == 0)
			return;
	s = xcalloc(1, sizeof(*s));
	s->conn = conn;
	s->space = xstrdup(space);
	snprintf(s->did, sizeof(s->did), "%s", did ? did : "");
	s->node = role && strcmp(role, "node") == 0;
	s->cnext = by_conn[cs];
	by_conn[cs] = s;
	s->snext = by_space[ss];
	by_space[ss] = s;
}

/* Unlink s from its space's chain and its connection's, and free it. */
static void
unlink_sub(struct lsub *s)
{
	struct lsub **pp;

	for (pp = &by_space[strhash(s->space) % SUB_BUCKETS]; *pp;
	    pp = &(*pp)->snext)
		if (*pp == s) {
			*pp = s->snext;
			break;
		}
	for (pp = &by_conn[conn_slot(s->conn)]; *pp; pp = &(*pp)->cnext)
		if (*pp == s) {
			*pp = s->cnext;
			break;
		}
	free(s->space);
	free(s);
}

void
subs_del(int64_t conn, const char *space)
{
	struct lsub *s;

	for (s = by_conn[conn_slot(conn)]; s; s = s->cnext)
		if (s->conn == conn && strcmp(s->space, space) == 0) {
			unlink_sub(s);
			return;
		}
}

void
subs_conn_gone(int64_t conn)
{
	struct lsub *s, *next;

	for (s = by_conn[conn_slot(conn)]; s; s = next) {
		next = s->cnext;
		if (s->conn == conn)
			unlink_sub(s);
	}
}

void
subs_clear(void)
{
	for (size_t i = 0; i < SUB_BUCKETS; i++)
		while (by_conn[i])
			unlink_sub(by_conn[i]);
}

/* End conn's subscription to space: no more events, then a notification
 * that says why (protocol.md, section 9). */
void
subs_end(struct buf *out, int64_t conn, const char *space, enum bus_err e,
    const char *message)
{
	size_t pl = sizeof(WATCH_PREFIX) - 1;
	int watch = strncmp(space, WATCH_PREFIX, pl) == 0;
	jv p = jv_object_set(jv_object(), jv_string("space"),
	    jv_string(watch ? space + pl : space));

	bus_subscribe(out, conn, space, 0);
	p = jv_object_set(p, jv_string("reason"), jv_string(bus_err_reason(e)));
	p = jv_object_set(p, jv_string("message"), jv_string(message));
	bus_send(out, conn, bus_notification(watch ? "unwatched" :
	    "unsubscribed", p));
}

/* End every subscription to key (sp's events, or its chunks) whose
 * reader may no longer read sp. */
static void
recheck_key(struct log *L, struct space *sp, const char *key,
    struct buf *out)
{
	struct lsub *s, *next;
	int rc;

	for (s = by_space[strhash(key) % SUB_BUCKETS]; s; s = next) {
		next = s->snext;
		if (strcmp(s->space, key) != 0)
			continue;
		rc = can_read(L, sp, s->did, s->node ? "node" : "client");
		if (rc == 1)
			continue;
		if (rc < 0)
			L->failed = 1;
		/* on a failure too: a reader is never left in by doubt */
		subs_end(out, s->conn, key, E_FORBIDDEN,
		    "read access to the space was withdrawn");
		unlink_sub(s);
	}
}

/* After an event that may take read access away (leave, remove, rules):
 * every subscriber of sp, and every watcher of a stream's chunks, who may
 * no longer read it is cut off, before any later envelope goes out. */
void
subs_recheck(struct log *L, struct space *sp, struct buf *out)
{
	struct buf key = BUF_INIT;

	recheck_key(L, sp, sp->id, out);
	if (sp->type == SP_STREAM) {
		buf_adds(&key, WATCH_PREFIX);
		buf_adds(&key, sp->id);
		recheck_key(L, sp, key.p, out);
		buf_free(&key);
	}
}

/* sub.restore from ns-serve after a restart of ns-log: keep what may
 * still be read, end the rest. */
void
subs_restore(struct log *L, const struct bus_req *r, struct buf *out)
{
	const char *id = sget(r->params, "space"), *sid;
	size_t pl = sizeof(WATCH_PREFIX) - 1;
	struct space *sp;
	int err, rc = 0, watch;

	if (!id || r->conn < 0)
		return;
	watch = strncmp(id, WATCH_PREFIX, pl) == 0;
	sid = watch ? id + pl : id;
	sp = space_find(L, sid, &err);
	if (sp && watch && sp->type != SP_STREAM)
		sp = NULL;
	if (sp && (rc = can_read(L, sp, r->did, r->role)) == 1) {
		if (watch)
			watch_restore(L, r, sp, id, out);
		else
			subs_add(r->conn, r->did, r->role, id);
		return;
	}
	if (err || rc < 0)
		L->failed = 1;
	subs_end(out, r->conn, id, sp ? E_FORBIDDEN : E_NOT_FOUND, sp ?
	    "read access to the space was withdrawn" : "no such space");
}
