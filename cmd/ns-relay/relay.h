/*
 * ns-relay, shared between its files: the streams it relays (streams.c),
 * the stage's loop and its subcommands (main.c), and the simulation
 * (sim.c).
 */
#ifndef NS_RELAY_H
#define NS_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "buf.h"
#include "bus.h"
#include "didkey.h"

#define PROG		"ns-relay"
#define FANOUT		8	/* children per node at most (two parents each) */
#define KEEP		256	/* chunks kept per stream for late comers and gaps */
#define BEAT_MS		2000	/* joins and attaches are repeated this often */
#define SILENT_MS	6000	/* a viewer or child silent this long is gone */
#define GAP_MS		300	/* a missing chunk waits this long, then is fetched */
#define HOLD_MS		3000	/* and after this long, delivery skips it */
#define GAP_ANSWERS	(2 * FANOUT)	/* gap fetches answered per stream a second */
#define TICK_MS		50	/* the relay's own clock */
#define IDLE_MS		60000	/* a stream unused this long lets go of its chunks */

extern struct buf out;		/* the lines of this round */
extern int64_t now_ms;
extern size_t fanout;
extern const char *self_did;	/* this node, for the tree */

/* streams.c */
void on_push(const struct bus_req *r);
void on_admit(const struct bus_req *r);
void on_attach(const struct bus_req *r);
void on_leave(const struct bus_req *r);
void on_chunk(const struct bus_req *r);
void on_fetch(const struct bus_req *r);
void on_watch(const struct bus_req *r);
void on_recent(const struct bus_req *r);
void on_unwatch(int64_t conn, const char *key);
void on_conn_close(int64_t conn);
void on_response(const struct bus_req *r);
void on_peer_fail(const struct bus_req *r);
void streams_tick(void);
void streams_json(struct buf *b);
void streams_free(void);
extern int state_dirty;		/* an owned stream's edge moved */
extern const char *state_path;	/* --state, or NULL */
void state_load(const char *file);
void state_save(const char *file);

/* the relay tree: parents of index i >= 1 among n viewers with fan-out f,
 * as in share/doc/protocol.md section 12 (0 is the owner) */
void relay_parents(size_t i, size_t n, size_t f, size_t p[2]);
size_t relay_children(size_t j, size_t n, size_t f, size_t *kids);

/* sim.c */
int sim_main(int argc, char **argv);

#endif
