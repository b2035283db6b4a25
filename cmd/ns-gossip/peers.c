/*
 * Links to other nodes.  A message for a node goes on a link to it if
 * there is one (either way: dialed by us or by it), else it waits while
 * ns-serve dials; a link is reused for every space two nodes share.  A
 * node that cannot be reached is tried again after a capped, jittered,
 * exponential backoff (1 s doubling to 5 min), so a node down for an hour
 * is dialed every few minutes, not in a storm; meanwhile messages for it
 * fail at once.  A node that sent forged or malformed data is dropped and
 * refused for a while.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bus.h"
#include "gossip.h"
#include "msg.h"

static struct peer *peers;

struct peer *
peer_find(const char *did)
{
	struct peer *p;

	if (!did || !*did)
		return NULL;
	for (p = peers; p; p = p->next)
		if (strcmp(p->did, did) == 0)
			return p;
	return NULL;
}

/* The peer at address whose DID is not known yet; with any, also one
 * whose DID is known (a link first, then a known DID). */
static struct peer *
peer_by_address(const char *address, int any)
{
	struct peer *p, *best = NULL;

	for (p = peers; p; p = p->next) {
		if (!p->address || strcmp(p->address, address) != 0 ||
		    (p->did[0] && !any))
			continue;
		if (!best || (p->nconn > 0 && best->nconn == 0) ||
		    (p->did[0] && !best->did[0] && !best->nconn))
			best = p;
	}
	return best;
}

/* The peer with this DID (or, for an unknown DID, this address), made if
 * new; its address is updated when one is given.  With no DID, a message
 * for an address goes to whoever is known there. */
struct peer *
peer_get(const char *did, const char *address)
{
	struct peer *p = did && *did ? peer_find(did) : NULL;

	if (!p && address)
		p = peer_by_address(address, !(did && *did));
	if (!p) {
		p = xcalloc(1, sizeof(*p));
		p->next = peers;
		peers = p;
	}
	if (did && *did && !p->did[0])
		snprintf(p->did, sizeof(p->did), "%s", did);
	if (address && (!p->address || strcmp(p->address, address) != 0)) {
		free(p->address);
		p->address = xstrdup(address);
	}
	p->last_used = now_ms;
	return p;
}

/* ws://host:port/ for an address (host:port, or a URL already). */
static char *
url_of(const char *address)
{
	size_t n = strlen(address) + 8;
	char *u = xmalloc(n);

	if (strstr(address, "://"))
		snprintf(u, n, "%s", address);
	else
		snprintf(u, n, "ws://%s/", address);
	return u;
}

static void
emit_to(int64_t conn, const char *msg, size_t len)
{

	buf_addf(&out, "{\"to\":%lld,\"msg\":", (long long)conn);
	buf_add(&out, msg, len);
	buf_adds(&out, "}\n");
}

static void
q_free(struct qmsg *m)
{
	free(m->text);
	free(m->id);
	free(m);
}

/* Every message waiting for p fails: their senders are told. */
static void
fail_queue(struct peer *p, const char *why)
{
	struct qmsg *m;

	while ((m = p->qhead)) {
		p->qhead = m->next;
		if (m->id)
			emit_peer_fail(m->id, p->did, p->address, why);
		q_free(m);
	}
	p->qtail = NULL;
	p->qlen = 0;
}

static void
dial(struct peer *p)
{
	free(p->dial_url);
	p->dial_url = url_of(p->address);
	buf_adds(&out, "{\"dial\":");
	bus_json(&out, jv_string(p->dial_url));
	if (p->did[0]) {
		buf_adds(&out, ",\"node\":");
		bus_json(&out, jv_string(p->did));
	}
	buf_adds(&out, "}\n");
	p->dialing = 1;
}

/*
 * Send msg (len bytes, a whole JSON-RPC message) to the node did at
 * address (either may be NULL, not both).  id: a request of another stage,
 * which gets a peer.fail line if it cannot go.  0 if it went or waits for
 * a link, -1 if it failed at once.
 */
int
peer_send(const char *did, const char *address, const char *msg, size_t len,
    const char *id)
{
	struct peer *p;
	struct qmsg *m;
	char why[160];

	if (!(did && *did) && !address) {
		if (id)
			emit_peer_fail(id, NULL, NULL, "no node or address "
			    "given");
		return -1;
	}
	p = peer_get(did, address);
	if (p->banned_until > now_ms) {
		if (id)
			emit_peer_fail(id, p->did, p->address, "the node is "
			    "refused for a while: it sent forged data");
		return -1;
	}
	if (p->nconn > 0) {
		emit_to(p->conns[p->nconn - 1], msg, len);
		p->sent++;
		return 0;
	}
	if (!p->address) {
		if (id)
			emit_peer_fail(id, p->did, "", "no address known");
		return -1;
	}
	if (!p->dialing && p->next_try > now_ms) {
		snprintf(why, sizeof(why), "unreachable (%u failures, next try "
		    "in %llds): %.80s", p->fails,
		    (long long)(p->next_try - now_ms + 999) / 1000,
		    p->last_error[0] ? p->last_error : "no reason");
		if (id)
			emit_peer_fail(id, p->did, p->address, why);
		return -1;
	}
	if (p->qlen >= QUEUE_MAX) {
		if (id)
			emit_peer_fail(id, p->did, p->address, "too many "
			    "messages wait for the link");
		return -1;
	}
	m = xcalloc(1, sizeof(*m));
	m->text = xmalloc(len + 1);
	memcpy(m->text, msg, len);
	m->text[len] = '\0';
	m->len = len;
	m->id = id ? xstrdup(id) : NULL;
	if (p->qtail)
		p->qtail->next = m;
	else
		p->qhead = m;
	p->qtail = m;
	p->qlen++;
	if (!p->dialing)
		dial(p);
	return 0;
}

/* conn.open of a node: a link, ours (url set) or its. */
void
peer_conn_open(int64_t conn, const char *did, const char *url)
{
	struct peer *p = NULL, *q;
	struct qmsg *m;

	if (url)
		for (q = peers; q; q = q->next)
			if (q->dial_url && strcmp(q->dial_url, url) == 0 &&
			    (!q->did[0] || strcmp(q->did, did) == 0)) {
				p = q;
				break;
			}
	if (p && !p->did[0]) {
		/* dialed by address: now we know who it is */
		struct peer *known = peer_find(did);

		snprintf(p->did, sizeof(p->did), "%s", did);
		if (known && known != p) {
			/* its messages wait on the known one's */
			while ((m = p->qhead)) {
				p->qhead = m->next;
				m->next = NULL;
				if (known->qtail)
					known->qtail->next = m;
				else
					known->qhead = m;
				known->qtail = m;
				known->qlen++;
			}
			p->qtail = NULL;
			p->qlen = 0;
			p->did[0] = '\0';	/* an empty shell now */
			p->dialing = 0;
			p = known;
		}
	}
	if (!p)
		p = peer_get(did, NULL);
	if (p->banned_until > now_ms) {
		buf_addf(&out, "{\"close\":%lld,\"code\":1008,\"reason\":"
		    "\"refused for a while\"}\n", (long long)conn);
		return;
	}
	if (url)
		p->dialing = 0;
	p->last_used = now_ms;
	if (p->nconn >= CONNS_MAX) {
		/* one more would be a link nothing here uses or counts */
		buf_addf(&out, "{\"close\":%lld,\"code\":1008,\"reason\":"
		    "\"too many links from one node\"}\n", (long long)conn);
		return;
	}
	p->conns[p->nconn++] = conn;
	p->fails = 0;
	p->next_try = 0;
	p->last_error[0] = '\0';
	if (!p->up_since)
		p->up_since = now_ms;
	while ((m = p->qhead)) {
		p->qhead = m->next;
		emit_to(conn, m->text, m->len);
		p->sent++;
		q_free(m);
	}
	p->qtail = NULL;
	p->qlen = 0;
}

void
peer_conn_close(int64_t conn, const char *did)
{
	struct peer *p;

	for (p = peers; p; p = p->next)
		for (int i = 0; i < p->nconn; i++)
			if (p->conns[i] == conn) {
				p->conns[i] = p->conns[--p->nconn];
				if (!p->nconn)
					p->up_since = 0;
				p->last_used = now_ms;
				return;
			}
	(void)did;
}

/* A dial failed: back off, jittered, and fail what waited. */
void
peer_conn_fail(const char *url, const char *node, const char *reason)
{
	struct peer *p;
	int64_t delay;

	for (p = peers; p; p = p->next)
		if (p->dial_url && strcmp(p->dial_url, url) == 0 &&
		    (!node || !p->did[0] || strcmp(p->did, node) == 0))
			break;
	if (!p)
		return;
	p->dialing = 0;
	p->fails++;
	delay = BACKOFF_MIN << (p->fails > 9 ? 9 : p->fails - 1);
	if (delay > BACKOFF_MAX)
		delay = BACKOFF_MAX;
	/* 75% to 125%: nodes that lost the same peer do not retry as one */
	delay = delay * 3 / 4 + (int64_t)randombytes_uniform((uint32_t)(delay
	    / 2 + 1));
	p->next_try = now_ms + delay;
	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
	warn("node %.60s (%.60s): %.80s; next try in %llds",
	    p->did[0] ? p->did : "?", p->address ? p->address : url, reason,
	    (long long)(delay + 999) / 1000);
	fail_queue(p, reason);
}

void
peer_conn_reset(void)
{
	struct peer *p;

	for (p = peers; p; p = p->next) {
		p->nconn = 0;
		p->dialing = 0;
		p->up_since = 0;
	}
}

/* did sent forged or malformed data: its links go, and it is refused. */
void
peer_bad(const char *did, const char *reason)
{
	struct peer *p = peer_get(did, NULL);

	warn("node %.60s refused for %d min: %.80s", did, BAN_MS / 60000,
	    reason);
	p->banned_until = now_ms + BAN_MS;
	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
	for (int i = 0; i < p->nconn; i++)
		buf_addf(&out, "{\"close\":%lld,\"code\":1008,\"reason\":"
		    "\"forged data\"}\n", (long long)p->conns[i]);
	p->nconn = 0;
	p->up_since = 0;
	fail_queue(p, "refused: it sent forged data");
}

static const char *
state_of(const struct peer *p)
{
	if (p->banned_until > now_ms)
		return "refused";
	if (p->nconn)
		return "up";
	if (p->dialing)
		return "dialing";
	if (p->next_try > now_ms)
		return "backoff";
	return "idle";
}

void
peers_json(struct buf *b)
{
	struct peer *p;
	int first = 1;

	buf_addc(b, '[');
	for (p = peers; p; p = p->next) {
		if (!p->did[0] && !p->dialing)
			continue;
		if (!first)
			buf_addc(b, ',');
		first = 0;
		buf_adds(b, "{\"node\":");
		bus_json(b, p->did[0] ? jv_string(p->did) : jv_null());
		buf_adds(b, ",\"address\":");
		bus_json(b, p->address ? jv_string(p->address) : jv_null());
		buf_addf(b, ",\"state\":\"%s\",\"links\":%d,\"failures\":%u,"
		    "\"sent\":%llu,\"lastError\":", state_of(p), p->nconn,
		    p->fails, (unsigned long long)p->sent);
		bus_json(b, p->last_error[0] ? jv_string(p->last_error) :
		    jv_null());
		buf_addc(b, '}');
	}
	buf_addc(b, ']');
}

size_t
peers_count(size_t *up)
{
	struct peer *p;
	size_t n = 0;

	*up = 0;
	for (p = peers; p; p = p->next) {
		if (!p->did[0])
			continue;
		n++;
		if (p->nconn)
			(*up)++;
	}
	return n;
}

static void
peer_free(struct peer *p)
{
	fail_queue(p, "shutting down");
	free(p->address);
	free(p->dial_url);
	free(p);
}

/* Forget the peers nothing holds: no link, no dial out, no message
 * waiting, not refused, unused for IDLE_MS.  Every node ever heard of, and
 * every node key that ever logged in, would otherwise stay for the life of
 * the stage.  One that is wanted again starts afresh (a first dial at
 * once, its backoff forgotten: it was not tried for that long anyway). */
void
peers_prune(void)
{
	struct peer **pp = &peers, *p;

	while ((p = *pp)) {
		if (!p->nconn && !p->dialing && !p->qhead &&
		    p->banned_until <= now_ms &&
		    now_ms - p->last_used >= IDLE_MS) {
			*pp = p->next;
			peer_free(p);
		} else
			pp = &p->next;
	}
}

void
peers_free(void)
{
	struct peer *p;

	while ((p = peers)) {
		peers = p->next;
		peer_free(p);
	}
}
