/*
 * ns-log, shared between its files: the store and its space cache
 * (store.c), events and the rules that admit them (rules.c), requests
 * that write (write.c) and read (read.c), the subscriptions it answers
 * for (subs.c), reports on a database (report.c), and the stage's loop
 * (main.c).
 */
#ifndef NS_LOG_H
#define NS_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>
#include <jv.h>

#include "buf.h"
#include "bus.h"
#include "hash.h"
#include "key.h"
#include "span.h"
#include "tree.h"

#define PROG "ns-log"
#define BATCH_DEFAULT 512
#define BATCH_LIMIT 65536
#define BATCH_OUT (1 << 20)    /* a batch ends once its output passes this */
#define EVENT_MAX 16384         /* canonical bytes of an event */
#define BEAM_MAX (256 * 1024)   /* canonical bytes of a signed beam */
#define NAME_MAX_BYTES 200
#define ADDRESS_MAX 256
#define UNIQUE_MAX 64
#define SKEW_MS (5 * 60 * 1000)
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define PAGE_BYTES (512 * 1024)  /* a page stops growing past this */
#define CACHE_BUCKETS 1024
#define CACHE_MAX 4096          /* spaces kept in memory between batches */
/* "beam/" authorHash "/" beamId */
#define PATH_LEN (5 + HASH_ID_LEN + 1 + HASH_ID_LEN)

/* Rules: each member's words, in the order of the enum values. */
enum { J_OPEN, J_INVITE };
enum { P_MEMBERS, P_OWNER };
enum { R_PUBLIC, R_MEMBERS };
struct rules {
	int join, post, read;
};
extern const char *const join_words[], *const post_words[],
    *const read_words[];

enum { SP_CHANNEL, SP_DM, SP_STREAM };
extern const char *const sptype_names[];
extern const struct rules defaults[];

enum evtype {
	T_CREATE, T_JOIN, T_LEAVE, T_INVITE, T_REMOVE, T_RULES, T_REF, T_TOMB
};
extern const char *const type_names[];

enum stmt {
	S_SPACE_GET, S_SPACE_INS, S_SPACE_HEAD, S_SPACE_RULES, S_SPACES,
	S_ENV_DUP, S_ENV_INS, S_ENV_RANGE, S_ENV_ALL,
	S_MEM_GET, S_MEM_INS, S_MEM_DEL, S_MEM_NODE, S_MEM_LIST, S_NODES,
	S_INV_GET, S_INV_INS, S_INV_DEL, S_INV_LIST,
	S_REF_GET, S_REF_HAS, S_REF_INS, S_REF_SPACES, S_REF_AUTHOR,
	S_GONE_GET, S_GONE_INS,
	S_REF_WHERE, S_REF_NODE, S_MEM_NODE_OF,
	S_FOLLOW_GET, S_FOLLOW_PUT, S_FOLLOW_DEL, S_FOLLOWS, S_ENV_AT,
	S_OUT_PUT, S_OUT_DUE, S_OUT_LATER, S_OUT_DONE,
	S_N
};

extern const char *const migrations[];
extern const int nmigrations;

/* A space's row, cached.  Within a transaction the cache is ahead of the
 * database for head and hash (dirty), written just before COMMIT; after a
 * ROLLBACK the whole cache is dropped. */
struct space {
	struct space *next, *dnext;
	char *id, *owner, *name, *node, *address;
	int type;
	struct rules rules;
	int64_t head;
	char hash[HASH_ID_LEN + 1];     /* of envelope head; "" when head 0 */
	int dirty;
	/* its member nodes but the owner's, in tree order, once asked for */
	struct tree_node *tn;
	size_t ntn;
	int tn_ok;
};

/* What check_event read from an event; strings point into the event. */
struct evinfo {
	enum evtype type;
	const char *space, *author, *name, *node, *address, *member, *beam;
	int sptype;
	struct rules rules;
	int64_t ts;
	char id[HASH_ID_LEN + 1];
};

struct log {
	sqlite3 *db;
	sqlite3_stmt *st[S_N];
	const struct key *key;  /* signs envelopes; NULL when not sequencing */
	const char *node;       /* required "node" of a space.create */
	const char *address;    /* required "address" of a space.create, or NULL */
	struct space *tab[CACHE_BUCKETS];
	size_t ncached;
	struct space *dirty;
	struct buf scratch, body;
	struct buf evtext;      /* the last checked event's canonical text */
	char evtext_id[HASH_ID_LEN + 1];        /* and its id; "" if none */
	int failed;             /* a statement failed in this transaction */
};

/* store.c */
unsigned long strhash(const char *s);
int word_index(const char *const *words, const char *s);
const char *sget(jv obj, const char *key);
int sqlerr(struct log *L, enum stmt i);
int q(struct log *L, enum stmt i, const char *fmt, ...);
int step(struct log *L, enum stmt i);
void rst(struct log *L, enum stmt i);
const char *col(struct log *L, enum stmt i, int c);
int exists(struct log *L, enum stmt i, const char *space, const char *a,
    const char *b);
void log_init(struct log *L, sqlite3 *db);
void log_free(struct log *L);
void cache_clear(struct log *L);
struct space *cache_add(struct log *L, const char *id, int type,
    const char *owner, const char *name, const char *node,
    const char *address);
struct space *space_find(struct log *L, const char *id, int *err);
void space_set_head(struct log *L, struct space *sp, int64_t seq,
    const char *hash);
void space_nodes_drop(struct space *sp);
int flush_heads(struct log *L);

/* rules.c */
int valid_did(const char *s);
int valid_address(const char *s);
int space_parse(const char *id, int *type, const char **kid,
    size_t *kidlen);
int beam_path_ok(const char *beam, const char *author);
int rules_parse(jv obj, int sptype, struct rules *out);
void rules_text(const struct rules *r, char *out, size_t len);
jv rules_jv(const struct rules *r);
/* The canonical text of a request's params.event and params.beam as it
 * stands on its line (p NULL when not known canonical): hashed and copied
 * instead of printed again. */
struct raw {
	struct span event, beam;
};
void raw_params(const char *line, size_t len, struct raw *raw);
int check_event(struct log *L, jv ev, const struct span *raw,
    const char *pspace, int64_t now, struct evinfo *ei, enum bus_err *e,
    const char **why);
int admit(struct log *L, struct space *sp, const struct evinfo *ei,
    enum bus_err *e, const char **why);
int apply(struct log *L, struct space **spp, const struct evinfo *ei);
int64_t append(struct log *L, struct space *sp, jv ev, const char *evid,
    int64_t ts, int64_t now);

/* write.c: the methods that carry events */
enum { SEQ_NEW, SEQ_DUP, SEQ_REFUSED, SEQ_FAILED };
int sequence(struct log *L, jv ev, const struct evinfo *ei, int64_t now,
    struct space **spp, int64_t *seq, enum bus_err *e, const char **why);
void publish(struct log *L, const struct space *sp, struct buf *out);
void handle_event(struct log *L, const struct bus_req *r, const char *method,
    const struct raw *raw, int unchecked, int64_t now, struct buf *out);
void handle_space_beam(struct log *L, const struct bus_req *r,
    const struct raw *raw, int unchecked, int64_t now, struct buf *out);
int take_space_beam(struct log *L, const char *line, size_t len,
    int64_t now, struct bus_req *r, struct buf *out);
void handle_beam_delete(struct log *L, const struct bus_req *r,
    int unchecked, int64_t now, struct buf *out);
jv space_json(const struct space *sp);

/* read.c */
int can_read(struct log *L, const struct space *sp, const char *did,
    const char *role);
void handle_read(struct log *L, const struct bus_req *r, int method,
    struct buf *out);
void handle_beam_get(struct log *L, const struct bus_req *r,
    struct buf *out);
struct space *read_space(struct log *L, const struct bus_req *r, int check,
    struct buf *out);

/* stream.c: live streams' requests, checked before ns-relay acts */
enum { ST_PUSH, ST_WATCH, ST_UNWATCH, ST_RECENT, ST_JOIN, ST_ATTACH,
    ST_FETCH };
void handle_stream(struct log *L, const struct bus_req *r, int which,
    struct buf *out);
void watch_restore(struct log *L, const struct bus_req *r, struct space *sp,
    const char *key, struct buf *out);
#define WATCH_PREFIX "chunk:"	/* the subscription key of a stream's chunks */

/* subs.c: who is subscribed to what, as ns-serve has it */
void subs_add(int64_t conn, const char *did, const char *role,
    const char *space);
void subs_del(int64_t conn, const char *space);
void subs_conn_gone(int64_t conn);
void subs_clear(void);
void subs_recheck(struct log *L, struct space *sp, struct buf *out);
void subs_restore(struct log *L, const struct bus_req *r, struct buf *out);
void subs_end(struct buf *out, int64_t conn, const char *space,
    enum bus_err e, const char *message);

/* fed.c: other nodes' spaces, and this node's for other nodes */
int owns(const struct log *L, const struct space *sp);
void gossip_push(struct log *L, struct space *sp, struct buf *out);
void fed_follows(struct log *L, struct buf *out);
int apply_envelope(struct log *L, jv env, const char *from, struct buf *out);
void note_tombstone(struct log *L, jv t, const char *beam, const char *author,
    struct buf *out);
void handle_broadcast(struct log *L, const struct bus_req *r, struct buf *out);
void handle_head(struct log *L, const struct bus_req *r, struct buf *out);
int submit_remote(struct log *L, const struct bus_req *r, jv ev,
    const struct evinfo *ei, struct space *sp, const char *beam,
    struct buf *out);
void handle_response(struct log *L, const struct bus_req *r, const char *line,
    size_t len, struct buf *out);
void handle_peer_fail(struct log *L, const char *line, size_t len,
    const struct bus_req *r, struct buf *out);
void fed_tick(struct log *L, int64_t now, struct buf *out);
void fed_free(void);
void handle_submit(struct log *L, const struct bus_req *r, int64_t now,
    struct buf *out);
void peer_bad(const char *did, const char *why, struct buf *out);

/* report.c */
int cmd_spaces(struct log *L);
int cmd_history(struct log *L, const char *id, int64_t after,
    int64_t limit);
int cmd_members(struct log *L, const char *id);
int cmd_verify(struct log *src, const char *id);
jv members_result(struct log *L, const struct space *sp);

#endif
