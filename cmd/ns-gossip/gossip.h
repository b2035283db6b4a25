/*
 * ns-gossip, shared between its files: links to other nodes (peers.c),
 * the spaces it pushes, announces and pulls (spaces.c), the stage's loop
 * and its subcommands (main.c), and the simulation (sim.c).
 */
#ifndef NS_GOSSIP_H
#define NS_GOSSIP_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "buf.h"
#include "didkey.h"
#include "hash.h"

#define PROG		"ns-gossip"
#define FANOUT		10	/* children per node in the tier tree */
#define LAZY		2	/* announcements per new envelope */
#define LAZY_MAX	16	/* nodes announced to per space per tick */
#define AE_MS		10000	/* anti-entropy: heads exchanged this often */
#define SYNC_MS		15000	/* a sync page has this long to come */
#define SYNC_PAGE	1000
#define BAN_MS		(10 * 60 * 1000)
#define BACKOFF_MIN	1000
#define BACKOFF_MAX	(5 * 60 * 1000)
#define QUEUE_MAX	256	/* messages waiting for one peer's link */
#define CONNS_MAX	4	/* links kept to one peer */
#define IDLE_MS		(10 * 60 * 1000)	/* a peer with no link, dial,
						 * message or ban is forgotten
						 * after this long unused */

/* A message waiting for a link. */
struct qmsg {
	struct qmsg *next;
	char *text;		/* the JSON-RPC message */
	size_t len;
	char *id;		/* a request of another stage: told if it fails */
};

struct peer {
	struct peer *next;
	char did[DIDKEY_MAX];	/* "" while only its address is known */
	char *address;
	char *dial_url;		/* the dial out, if any */
	int64_t conns[CONNS_MAX];
	int nconn;
	int dialing;
	unsigned fails;
	int64_t next_try, banned_until, up_since, last_used;
	char last_error[128];
	struct qmsg *qhead, *qtail;
	size_t qlen;
	uint64_t sent, received;
};

struct naddr {
	char did[DIDKEY_MAX];
	char *address;
};

/* A space this node pushes for (owned or followed). */
struct gspace {
	struct gspace *next;
	char *id;
	struct naddr owner;
	int followed;
	int64_t head;
	char hash[HASH_ID_LEN + 1];
	struct naddr *sample;	/* member nodes to exchange heads with */
	size_t nsample;
	struct naddr *lazy;	/* to announce the head to at the next tick */
	size_t nlazy;
	char sync_id[48];	/* a node.sync in flight */
	char sync_node[DIDKEY_MAX];
	int64_t sync_deadline, last_ae;
};

extern struct buf out;		/* the lines of this round */
extern int64_t now_ms;		/* as of the last tick or line */

/* peers.c */
struct peer *peer_find(const char *did);
struct peer *peer_get(const char *did, const char *address);
int peer_send(const char *did, const char *address, const char *msg,
    size_t len, const char *id);
void peer_conn_open(int64_t conn, const char *did, const char *url);
void peer_conn_close(int64_t conn, const char *did);
void peer_conn_fail(const char *url, const char *node, const char *reason);
void peer_conn_reset(void);
void peer_bad(const char *did, const char *reason);
void peers_json(struct buf *b);
size_t peers_count(size_t *up);
void peers_prune(void);
void peers_free(void);

/* spaces.c */
void space_push(jv p);
void space_follow(jv p);
void space_unfollow(const char *id);
void space_behind(const char *id, int64_t head, const char *node);
void space_ahead(const char *id, int64_t head, const char *hash,
    const char *node);
void space_synced(const char *id, jv res);
void spaces_tick(void);
size_t spaces_followed(void);
void spaces_free(void);

/* sim.c */
int sim_main(int argc, char **argv);

/* main.c */
void emit_peer_fail(const char *id, const char *did, const char *address,
    const char *reason);

#endif
