/*
 * The broadcast of a space (share/doc/protocol.md, section 11): each new
 * envelope is pushed whole to this node's children in the tier tree; a
 * few other member nodes get only "I have up to seq n" (node.head) at the
 * next tick; a node that learns it is behind pulls what it lacks from
 * whoever told it (node.sync, page by page); and every 10 s a node that
 * follows a space exchanges heads with the owner node and one other
 * member node, so a missed push or a node back from downtime is found out.
 * ns-log decides what to push to whom and when this node is behind; this
 * file sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bus.h"
#include "canon.h"
#include "gossip.h"
#include "jsonl.h"
#include "msg.h"

static struct gspace *spaces;
static unsigned long sync_seq;
static int64_t epoch;

static struct gspace *
space_get(const char *id, int make)
{
	struct gspace *s;

	for (s = spaces; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	if (!make)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->id = xstrdup(id);
	s->next = spaces;
	spaces = s;
	return s;
}

static void
naddr_set(struct naddr *n, jv o)
{
	const char *did = jsonl_str(o, "node"), *a = jsonl_str(o, "address");

	snprintf(n->did, sizeof(n->did), "%s", did ? did : "");
	free(n->address);
	n->address = a ? xstrdup(a) : NULL;
}

static void
naddrs_free(struct naddr *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i].address);
	free(list);
}

/* The list of {node, address} objects in arr (borrowed), made anew. */
static struct naddr *
naddrs_of(jv arr, size_t *n)
{
	struct naddr *list = NULL;

	*n = 0;
	if (jv_get_kind(arr) != JV_KIND_ARRAY)
		return NULL;
	jv_array_foreach(arr, i, o) {
		if (jsonl_str(o, "node") && jsonl_str(o, "address")) {
			list = xrealloc(list, (*n + 1) * sizeof(*list));
			memset(&list[*n], 0, sizeof(*list));
			naddr_set(&list[(*n)++], o);
		}
		jv_free(o);
	}
	return list;
}

static void
send_head(struct gspace *s, const char *did, const char *address)
{
	struct buf m = BUF_INIT;

	buf_addf(&m, "{\"jsonrpc\":\"2.0\",\"method\":\"node.head\",\"params\":"
	    "{\"hash\":\"%s\",\"head\":%lld,\"space\":", s->hash,
	    (long long)s->head);
	bus_json(&m, jv_string(s->id));
	buf_adds(&m, "}}");
	peer_send(did, address, m.p, m.len, NULL);
	buf_free(&m);
}

/* node.sync to did for the envelopes after s->head. */
static void
sync_from(struct gspace *s, const char *did, const char *address)
{
	struct buf m = BUF_INIT;

	if (!epoch)
		epoch = now_ms;
	snprintf(s->sync_id, sizeof(s->sync_id), "g:%lld.%lu",
	    (long long)epoch, ++sync_seq);
	/* paging on, did is s->sync_node itself: an overlapping copy would
	 * leave it empty */
	if (did != s->sync_node)
		snprintf(s->sync_node, sizeof(s->sync_node), "%s",
		    did ? did : "");
	s->sync_deadline = now_ms + SYNC_MS;
	buf_addf(&m, "{\"id\":\"%s\",\"jsonrpc\":\"2.0\",\"method\":"
	    "\"node.sync\",\"params\":{\"after\":%lld,\"limit\":%d,\"space\":",
	    s->sync_id, (long long)s->head, SYNC_PAGE);
	bus_json(&m, jv_string(s->id));
	buf_adds(&m, "}}");
	if (peer_send(did, address, m.p, m.len, NULL) != 0)
		s->sync_id[0] = '\0';
	buf_free(&m);
}

/* Add the {node, address} objects of arr (borrowed) to the nodes s
 * announces its head to at the next tick, each once, LAZY_MAX at most. */
static void
lazy_add(struct gspace *s, jv arr)
{
	if (jv_get_kind(arr) != JV_KIND_ARRAY)
		return;
	jv_array_foreach(arr, i, o) {
		const char *did = jsonl_str(o, "node");
		int known = 0;

		for (size_t j = 0; did && j < s->nlazy && !known; j++)
			known = strcmp(s->lazy[j].did, did) == 0;
		if (did && !known && jsonl_str(o, "address") &&
		    s->nlazy < LAZY_MAX) {
			s->lazy = xrealloc(s->lazy, (s->nlazy + 1) *
			    sizeof(*s->lazy));
			memset(&s->lazy[s->nlazy], 0, sizeof(*s->lazy));
			naddr_set(&s->lazy[s->nlazy++], o);
		}
		jv_free(o);
	}
}

/* gossip.push: ns-log stored an envelope; p holds its space, seq, hash,
 * owner, the children to push it to, the nodes to announce it to, and the
 * envelope itself. */
void
space_push(jv p)
{
	const char *id = jsonl_str(p, "space"), *hash = jsonl_str(p, "hash");
	jv env = jsonl_get(p, "envelope"), to = jsonl_get(p, "to");
	jv lazy = jsonl_get(p, "lazy"), owner = jsonl_get(p, "owner");
	struct buf m = BUF_INIT;
	struct gspace *s;
	int64_t seq;

	if (!id || !hash || jsonl_int(p, "seq", &seq) != 0 ||
	    jv_get_kind(env) != JV_KIND_OBJECT)
		goto out;
	s = space_get(id, 1);
	if (jv_get_kind(owner) == JV_KIND_OBJECT)
		naddr_set(&s->owner, owner);
	if (seq > s->head) {
		s->head = seq;
		snprintf(s->hash, sizeof(s->hash), "%s", hash);
	}
	/* the tree pushes whole envelopes */
	buf_adds(&m, "{\"jsonrpc\":\"2.0\",\"method\":\"node.broadcast\","
	    "\"params\":{\"envelope\":");
	bus_json(&m, jv_copy(env));
	buf_adds(&m, "}}");
	jv_array_foreach(to, i, c) {
		peer_send(jsonl_str(c, "node"), jsonl_str(c, "address"), m.p,
		    m.len, NULL);
		jv_free(c);
	}
	/* the other links only hear of it, at the next tick: the nodes
	 * named for every envelope since the last one, so that a burst
	 * spreads its announcements as widely as single envelopes would */
	lazy_add(s, lazy);
out:
	buf_free(&m);
	jv_free(env);
	jv_free(to);
	jv_free(lazy);
	jv_free(owner);
}

/* gossip.follow: a space this node keeps a replica of.  It catches up
 * with the owner node at once. */
void
space_follow(jv p)
{
	const char *id = jsonl_str(p, "space"), *hash = jsonl_str(p, "hash");
	jv owner = jsonl_get(p, "owner"), nodes = jsonl_get(p, "nodes");
	struct gspace *s;
	int64_t head = 0;

	if (!id || jv_get_kind(owner) != JV_KIND_OBJECT)
		goto out;
	s = space_get(id, 1);
	s->followed = 1;
	naddr_set(&s->owner, owner);
	jsonl_int(p, "head", &head);
	if (head >= s->head) {
		s->head = head;
		snprintf(s->hash, sizeof(s->hash), "%s", hash ? hash : "");
	}
	naddrs_free(s->sample, s->nsample);
	s->sample = naddrs_of(nodes, &s->nsample);
	s->last_ae = now_ms;
	if (!s->sync_id[0])
		sync_from(s, s->owner.did, s->owner.address);
out:
	jv_free(owner);
	jv_free(nodes);
}

void
space_unfollow(const char *id)
{
	struct gspace **pp, *s;

	for (pp = &spaces; (s = *pp); pp = &s->next)
		if (strcmp(s->id, id) == 0) {
			*pp = s->next;
			free(s->id);
			free(s->owner.address);
			naddrs_free(s->sample, s->nsample);
			naddrs_free(s->lazy, s->nlazy);
			free(s);
			return;
		}
}

/* gossip.behind: node has more of the space than this node: pull. */
void
space_behind(const char *id, int64_t head, const char *node)
{
	struct gspace *s = space_get(id, 1);

	if (head > s->head || !s->head) {
		s->head = head;
		s->hash[0] = '\0';
	}
	if (s->sync_id[0] && s->sync_deadline > now_ms)
		return;		/* a pull is under way */
	sync_from(s, node, NULL);
}

/* gossip.ahead: node is behind this node: tell it, and it pulls. */
void
space_ahead(const char *id, int64_t head, const char *hash, const char *node)
{
	struct gspace *s = space_get(id, 1);

	if (head > s->head) {
		s->head = head;
		snprintf(s->hash, sizeof(s->hash), "%s", hash ? hash : "");
	}
	send_head(s, node, NULL);
}

/* A sync page was applied (res: ns-log's summary of it): the next page,
 * if there is one and this one brought something. */
void
space_synced(const char *id, jv res)
{
	jv result = jsonl_get(res, "result");
	const char *sid = jsonl_str(result, "space");
	struct gspace *s;
	int64_t head = 0, theirs = 0, applied = 0;

	for (s = spaces; s; s = s->next)
		if (strcmp(s->sync_id, id) == 0)
			break;
	if (!s)
		goto out;
	s->sync_id[0] = '\0';
	if (!sid || strcmp(sid, s->id) != 0 || jsonl_int(result, "head",
	    &head) != 0)
		goto out;	/* an error: anti-entropy tries again */
	jsonl_int(result, "theirs", &theirs);
	jsonl_int(result, "applied", &applied);
	s->head = head;
	if (applied > 0 && (jsonl_kind(result, "next") == JV_KIND_NUMBER ||
	    theirs > head))
		sync_from(s, s->sync_node, NULL);
out:
	jv_free(result);
}

static unsigned
rnd(unsigned k)
{
	return randombytes_uniform(k);
}

/* Every tick: announcements due, and every AE_MS the head exchange of each
 * followed space with its owner node and one other member node. */
void
spaces_tick(void)
{
	struct gspace *s;

	for (s = spaces; s; s = s->next) {
		for (size_t i = 0; i < s->nlazy; i++)
			send_head(s, s->lazy[i].did, s->lazy[i].address);
		naddrs_free(s->lazy, s->nlazy);
		s->lazy = NULL;
		s->nlazy = 0;
		if (s->sync_id[0] && s->sync_deadline <= now_ms)
			s->sync_id[0] = '\0';	/* given up: tried again */
		if (!s->followed || now_ms - s->last_ae < AE_MS)
			continue;
		s->last_ae = now_ms;
		send_head(s, s->owner.did, s->owner.address);
		if (s->nsample) {
			struct naddr *n = &s->sample[rnd((unsigned)s->nsample)];
			send_head(s, n->did, n->address);
		}
	}
}

size_t
spaces_followed(void)
{
	struct gspace *s;
	size_t n = 0;

	for (s = spaces; s; s = s->next)
		n += s->followed;
	return n;
}

void
spaces_free(void)
{
	while (spaces)
		space_unfollow(spaces->id);
}
