/*
 * ns-log: the stage that owns spaces.  With --bus, each space.*, subscribe,
 * unsubscribe or log.append bus line is checked against its space's rules;
 * an accepted event is sequenced into the space's hash chain in an envelope
 * signed by the node key, stored, and answered ("to" line, then "pub" line)
 * after the batch's commit.  Other lines pass unchanged, in order.  Without
 * --bus it reports on a database: spaces, history, members, verify.  Exit 0
 * at EOF or when all is well, 1 when a space is unknown or does not verify,
 * 2 on usage or setup trouble.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "b64url.h"
#include "buf.h"
#include "bus.h"
#include "canon.h"
#include "db.h"
#include "didkey.h"
#include "event.h"
#include "hash.h"
#include "jsonin.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

#define PROG "ns-log"
#define VALUE_MAX (8 << 20)     /* largest bus line read */
#define BATCH_DEFAULT 512
#define BATCH_LIMIT 65536
#define EVENT_MAX 16384         /* canonical bytes of an event */
#define NAME_MAX_BYTES 200
#define ADDRESS_MAX 256
#define UNIQUE_MAX 64
#define SKEW_MS (5 * 60 * 1000)
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define PAGE_BYTES (512 * 1024)  /* a page stops growing past this */
#define CACHE_BUCKETS 1024
#define CACHE_MAX 4096          /* spaces kept in memory between batches */

/* Rules: each member's words, in the order of the enum values. */
enum { J_OPEN, J_INVITE };
enum { P_MEMBERS, P_OWNER };
enum { R_PUBLIC, R_MEMBERS };
struct rules {
	int join, post, read;
};
static const char *const join_words[] = { "open", "invite", NULL };
static const char *const post_words[] = { "members", "owner", NULL };
static const char *const read_words[] = { "public", "members", NULL };

enum { SP_CHANNEL, SP_DM, SP_STREAM };
static const char *const sptype_names[] = { "channel", "dm", "stream", NULL };
static const struct rules defaults[] = {
	[SP_CHANNEL] = { J_OPEN, P_MEMBERS, R_PUBLIC },
	[SP_DM] = { J_INVITE, P_MEMBERS, R_MEMBERS },
	[SP_STREAM] = { J_OPEN, P_OWNER, R_PUBLIC },
};

enum evtype {
	T_CREATE, T_JOIN, T_LEAVE, T_INVITE, T_REMOVE, T_RULES, T_REF, T_TOMB
};
static const char *const type_names[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "beam.ref", "beam.tombstone", NULL,
};

/* The methods this stage owns; the first six carry the event of the same
 * name (M_CREATE == T_CREATE ...). */
enum method {
	M_CREATE, M_JOIN, M_LEAVE, M_INVITE, M_REMOVE, M_RULES, M_APPEND,
	M_HISTORY, M_MEMBERS, M_INFO, M_SUB, M_UNSUB,
};
static const char *const methods[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "log.append", "space.history",
	"space.members", "space.info", "subscribe", "unsubscribe", NULL,
};

enum stmt {
	S_SPACE_GET, S_SPACE_INS, S_SPACE_HEAD, S_SPACE_RULES, S_SPACES,
	S_ENV_DUP, S_ENV_INS, S_ENV_RANGE, S_ENV_ALL,
	S_MEM_GET, S_MEM_INS, S_MEM_DEL, S_MEM_NODE, S_MEM_LIST, S_NODES,
	S_INV_GET, S_INV_INS, S_INV_DEL, S_INV_LIST,
	S_REF_GET, S_REF_INS,
	S_N
};
static const char *const sqls[S_N] = {
	[S_SPACE_GET] = "SELECT type, owner, name, node, address, rules, head, "
	    "head_hash FROM spaces WHERE id = ?1",
	[S_SPACE_INS] = "INSERT INTO spaces (id, type, owner, name, node, "
	    "address, rules, head, head_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, 0, NULL)",
	[S_SPACE_HEAD] = "UPDATE spaces SET head = ?2, head_hash = ?3 "
	    "WHERE id = ?1",
	[S_SPACE_RULES] = "UPDATE spaces SET rules = ?2 WHERE id = ?1",
	[S_SPACES] = "SELECT id, type, name, owner, head FROM spaces ORDER BY id",
	[S_ENV_DUP] = "SELECT seq FROM envelopes WHERE space = ?1 AND "
	    "event_id = ?2",
	[S_ENV_INS] = "INSERT INTO envelopes (space, seq, event_id, hash, body) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_ENV_RANGE] = "SELECT seq, body FROM envelopes WHERE space = ?1 AND "
	    "seq > ?2 ORDER BY seq LIMIT ?3",
	[S_ENV_ALL] = "SELECT seq, event_id, hash, body FROM envelopes WHERE "
	    "space = ?1 ORDER BY seq",
	[S_MEM_GET] = "SELECT 1 FROM members WHERE space = ?1 AND did = ?2",
	[S_MEM_INS] = "INSERT INTO members (space, did, node, address) "
	    "VALUES (?1, ?2, ?3, ?4)",
	[S_MEM_DEL] = "DELETE FROM members WHERE space = ?1 AND did = ?2",
	[S_MEM_NODE] = "SELECT 1 FROM members WHERE space = ?1 AND node = ?2 "
	    "LIMIT 1",
	[S_MEM_LIST] = "SELECT did FROM members WHERE space = ?1 ORDER BY rowid",
	[S_NODES] = "SELECT node, min(address) FROM members WHERE space = ?1 "
	    "GROUP BY node ORDER BY min(rowid)",
	[S_INV_GET] = "SELECT 1 FROM invited WHERE space = ?1 AND did = ?2",
	[S_INV_INS] = "INSERT OR IGNORE INTO invited (space, did) VALUES (?1, ?2)",
	[S_INV_DEL] = "DELETE FROM invited WHERE space = ?1 AND did = ?2",
	[S_INV_LIST] = "SELECT did FROM invited WHERE space = ?1 ORDER BY rowid",
	[S_REF_GET] = "SELECT 1 FROM refs WHERE space = ?1 AND beam = ?2 AND "
	    "author = ?3",
	[S_REF_INS] = "INSERT OR IGNORE INTO refs (space, beam, author) "
	    "VALUES (?1, ?2, ?3)",
};

static const char *const migrations[] = {
	"CREATE TABLE spaces ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  type TEXT NOT NULL,"
	"  owner TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  address TEXT NOT NULL,"
	"  rules TEXT NOT NULL,"
	"  head INTEGER NOT NULL DEFAULT 0,"
	"  head_hash TEXT"
	") WITHOUT ROWID;"
	"CREATE TABLE envelopes ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  seq INTEGER NOT NULL,"
	"  event_id TEXT NOT NULL,"
	"  hash TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  PRIMARY KEY (space, seq),"
	"  UNIQUE (space, event_id)"
	");"
	"CREATE TABLE members ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  did TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  address TEXT NOT NULL,"
	"  PRIMARY KEY (space, did)"
	");"
	"CREATE INDEX members_node ON members (space, node);"
	"CREATE TABLE invited ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  did TEXT NOT NULL,"
	"  PRIMARY KEY (space, did)"
	");"
	"CREATE TABLE refs ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  beam TEXT NOT NULL,"
	"  author TEXT NOT NULL,"
	"  PRIMARY KEY (space, beam)"
	") WITHOUT ROWID;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

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
	int failed;             /* a statement failed in this transaction */
};

/* One line of a batch: where its output lies in the batch buffer, and for
 * a request, whom to tell if the commit fails. */
struct item {
	size_t start, end;
	int req;
	int64_t conn;
	jv id;
};

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-log --bus -k KEYFILE -d DBFILE -a ADDRESS "
	    "[--sync full|normal] [--batch N]\n"
	    "       ns-log -d DBFILE spaces\n"
	    "       ns-log -d DBFILE history SPACE [--after N] [--limit N]\n"
	    "       ns-log -d DBFILE members SPACE\n"
	    "       ns-log -d DBFILE verify [SPACE]\n"
	    "  -b, --bus            ring stage: bus lines in, bus lines out\n"
	    "  -k, --key FILE       the node key (signs envelopes)\n"
	    "  -d, --db FILE        the log database\n"
	    "  -a, --address ADDR   this node's address (host:port)\n"
	    "      --sync MODE      full (default) or normal: sqlite synchronous\n"
	    "      --batch N        most requests per transaction (default %d)\n"
	    "      --after N        history: envelopes after seq N (default 0)\n"
	    "      --limit N        history: at most N envelopes (default all)\n"
	    "  -h, --help           this help\n"
	    "      --version        print the version\n", BATCH_DEFAULT);
	exit(status);
}

/* ---- small checks ---- */

static unsigned long
strhash(const char *s)
{
	unsigned long h = 1469598103934665603UL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211UL;
	return h;
}

static int
word_index(const char *const *words, const char *s)
{
	for (int i = 0; words[i]; i++)
		if (strcmp(words[i], s) == 0)
			return i;
	return -1;
}

/* A string member of obj (borrowed) without NUL bytes inside, or NULL. */
static const char *
sget(jv obj, const char *key)
{
	return jsonl_str(obj, key);
}

/* A did:key decodes (base58 both ways: the slow part of an event's
 * checks), so the DIDs that passed lately are remembered; the answer for a
 * string never changes. */
static int
valid_did(const char *s)
{
	static char seen[256][DIDKEY_LEN + 1];
	unsigned char pk[KEY_PK_LEN];
	const char *why;
	char *slot;

	if (!s || strlen(s) != DIDKEY_LEN)
		return 0;
	slot = seen[strhash(s) % 256];
	if (strcmp(slot, s) == 0)
		return 1;
	if (didkey_decode(s, pk, &why) != 0)
		return 0;
	memcpy(slot, s, DIDKEY_LEN + 1);
	return 1;
}

/* host:port or a ws(s):// URL: printable, no spaces, bounded. */
static int
valid_address(const char *s)
{
	size_t n;

	if (!s || (n = strlen(s)) == 0 || n > ADDRESS_MAX)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '"' ||
		    *s == '\\')
			return 0;
	return 1;
}

/* {type}/{owner key id}/{uniqueId}.  Sets *type and the key id's span. */
static int
space_parse(const char *id, int *type, const char **kid, size_t *kidlen)
{
	const char *a, *b, *u;
	char t[16], did[DIDKEY_MAX + 8];
	size_t n;

	if (!id || !(a = strchr(id, '/')) || !(b = strchr(a + 1, '/')))
		return -1;
	if ((size_t)(a - id) >= sizeof(t))
		return -1;
	memcpy(t, id, (size_t)(a - id));
	t[a - id] = '\0';
	if ((*type = word_index(sptype_names, t)) < 0)
		return -1;
	n = (size_t)(b - a - 1);
	if (n == 0 || n + sizeof(DIDKEY_PREFIX) > sizeof(did))
		return -1;
	snprintf(did, sizeof(did), DIDKEY_PREFIX "%.*s", (int)n, a + 1);
	if (!valid_did(did))
		return -1;
	u = b + 1;
	n = strlen(u);
	if (n < 1 || n > UNIQUE_MAX || strspn(u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789._-") != n ||
	    strcmp(u, ".") == 0 || strcmp(u, "..") == 0)
		return -1;
	*kid = a + 1;
	*kidlen = (size_t)(b - a - 1);
	return 0;
}

/* beam/{authorHash}/{beamId}, two ids; with author, authorHash must be
 * its hash. */
static int
beam_path_ok(const char *beam, const char *author)
{
	char h[HASH_ID_LEN + 1];
	unsigned char raw[HASH_RAW_LEN];
	size_t n;

	if (strlen(beam) != 5 + HASH_ID_LEN + 1 + HASH_ID_LEN ||
	    strncmp(beam, "beam/", 5) != 0 || beam[5 + HASH_ID_LEN] != '/')
		return -1;
	for (int i = 0; i < 2; i++)
		if (b64url_decode(beam + 5 + i * (HASH_ID_LEN + 1), HASH_ID_LEN,
		    raw, sizeof(raw), &n) != 0 || n != sizeof(raw))
			return -1;
	if (author) {
		hash_id(author, strlen(author), h);
		if (memcmp(beam + 5, h, HASH_ID_LEN) != 0)
			return -1;
	}
	return 0;
}

/* Defaults of the space type merged with obj (borrowed), which must be an
 * object; members other than join, post and read are ignored. */
static int
rules_parse(jv obj, int sptype, struct rules *out)
{
	static const struct {
		const char *name;
		const char *const *words;
		size_t off;
	} f[] = {
		{ "join", join_words, offsetof(struct rules, join) },
		{ "post", post_words, offsetof(struct rules, post) },
		{ "read", read_words, offsetof(struct rules, read) },
	};

	*out = defaults[sptype];
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return -1;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const char *s;
		int w;

		if (!jsonl_has(obj, f[i].name))
			continue;
		if (!(s = jsonl_str(obj, f[i].name)) ||
		    (w = word_index(f[i].words, s)) < 0)
			return -1;
		*(int *)((char *)out + f[i].off) = w;
	}
	return 0;
}

/* The stored form of rules: canonical JSON. */
static void
rules_text(const struct rules *r, char *out, size_t len)
{
	snprintf(out, len, "{\"join\":\"%s\",\"post\":\"%s\",\"read\":\"%s\"}",
	    join_words[r->join], post_words[r->post], read_words[r->read]);
}

static jv
rules_jv(const struct rules *r)
{
	jv o = jv_object_set(jv_object(), jv_string("join"),
	    jv_string(join_words[r->join]));

	o = jv_object_set(o, jv_string("post"), jv_string(post_words[r->post]));
	return jv_object_set(o, jv_string("read"),
	    jv_string(read_words[r->read]));
}

/* ---- statements ---- */

static int
sqlerr(struct log *L, enum stmt i)
{
	warn("%s: %s", sqlite3_sql(L->st[i]), sqlite3_errmsg(L->db));
	sqlite3_reset(L->st[i]);
	L->failed = 1;
	return -1;
}

/*
 * Reset statement i, bind the arguments fmt describes ('t' a string or
 * NULL, 'b' a string and its int length, 'i' an int64_t) and step.
 * Returns 1 with a row to read (then step() or rst()), 0 when done (the
 * statement is reset), -1 on error (reported; L->failed set).
 */
static int
q(struct log *L, enum stmt i, const char *fmt, ...)
{
	sqlite3_stmt *st = L->st[i];
	va_list ap;
	int k = 1, rc = SQLITE_OK;

	sqlite3_reset(st);
	va_start(ap, fmt);
	for (; *fmt && rc == SQLITE_OK; fmt++, k++) {
		const char *s;
		int n;

		switch (*fmt) {
		case 't':
			s = va_arg(ap, const char *);
			rc = sqlite3_bind_text(st, k, s, -1, SQLITE_STATIC);
			break;
		case 'b':
			s = va_arg(ap, const char *);
			n = va_arg(ap, int);
			rc = sqlite3_bind_text(st, k, s, n, SQLITE_STATIC);
			break;
		case 'i':
			rc = sqlite3_bind_int64(st, k, va_arg(ap, int64_t));
			break;
		}
	}
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	return sqlerr(L, i);
}

static int
step(struct log *L, enum stmt i)
{
	int rc = sqlite3_step(L->st[i]);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(L->st[i]);
		return 0;
	}
	return sqlerr(L, i);
}

static void
rst(struct log *L, enum stmt i)
{
	sqlite3_reset(L->st[i]);
}

static const char *
col(struct log *L, enum stmt i, int c)
{
	const unsigned char *t = sqlite3_column_text(L->st[i], c);

	return t ? (const char *)t : "";
}

static void
log_init(struct log *L, sqlite3 *db)
{
	memset(L, 0, sizeof(*L));
	L->db = db;
	for (int i = 0; i < S_N; i++)
		if (db_prepare(db, &L->st[i], sqls[i]) != 0)
			die("prepare: %s", sqlite3_errmsg(db));
}

/* ---- the space cache ---- */

static void
space_free(struct space *sp)
{
	free(sp->id);
	free(sp->owner);
	free(sp->name);
	free(sp->node);
	free(sp->address);
	free(sp);
}

static void
cache_clear(struct log *L)
{
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct space *sp, *nx;

		for (sp = L->tab[i]; sp; sp = nx) {
			nx = sp->next;
			space_free(sp);
		}
		L->tab[i] = NULL;
	}
	L->ncached = 0;
	L->dirty = NULL;
}

static struct space *
cache_add(struct log *L, const char *id, int type, const char *owner,
    const char *name, const char *node, const char *address)
{
	struct space *sp = xcalloc(1, sizeof(*sp));
	size_t b = strhash(id) % CACHE_BUCKETS;

	sp->id = xstrdup(id);
	sp->type = type;
	sp->owner = xstrdup(owner);
	sp->name = xstrdup(name);
	sp->node = xstrdup(node);
	sp->address = xstrdup(address);
	sp->rules = defaults[type];
	sp->next = L->tab[b];
	L->tab[b] = sp;
	L->ncached++;
	return sp;
}

/* The space with this id, or NULL (*err set on a database failure). */
static struct space *
space_find(struct log *L, const char *id, int *err)
{
	struct space *sp;
	int type, rc;

	*err = 0;
	for (sp = L->tab[strhash(id) % CACHE_BUCKETS]; sp; sp = sp->next)
		if (strcmp(sp->id, id) == 0)
			return sp;
	if ((rc = q(L, S_SPACE_GET, "t", id)) <= 0) {
		*err = rc < 0;
		return NULL;
	}
	if ((type = word_index(sptype_names, col(L, S_SPACE_GET, 0))) < 0) {
		warn("%.80s: stored space has an unknown type", id);
		rst(L, S_SPACE_GET);
		*err = 1;
		return NULL;
	}
	sp = cache_add(L, id, type, col(L, S_SPACE_GET, 1),
	    col(L, S_SPACE_GET, 2), col(L, S_SPACE_GET, 3),
	    col(L, S_SPACE_GET, 4));
	const char *rt = col(L, S_SPACE_GET, 5);
	jv rj = canon_parse(rt, strlen(rt));
	if (rules_parse(rj, type, &sp->rules) != 0)
		warn("%.80s: stored rules unreadable; using defaults", id);
	jv_free(rj);
	sp->head = sqlite3_column_int64(L->st[S_SPACE_GET], 6);
	snprintf(sp->hash, sizeof(sp->hash), "%s", col(L, S_SPACE_GET, 7));
	rst(L, S_SPACE_GET);
	return sp;
}

static void
space_set_head(struct log *L, struct space *sp, int64_t seq, const char *hash)
{
	sp->head = seq;
	memcpy(sp->hash, hash, sizeof(sp->hash));
	if (!sp->dirty) {
		sp->dirty = 1;
		sp->dnext = L->dirty;
		L->dirty = sp;
	}
}

/* Write the heads changed in this transaction. */
static int
flush_heads(struct log *L)
{
	struct space *sp;

	for (sp = L->dirty; sp; sp = sp->dnext) {
		if (q(L, S_SPACE_HEAD, "tit", sp->id, sp->head, sp->hash) < 0)
			return -1;
		sp->dirty = 0;
	}
	L->dirty = NULL;
	return 0;
}

/* ---- events: shape, rules, state ---- */

/*
 * Check the shape of event ev (borrowed), which goes to space pspace if it
 * has no "space" member of its own (a tombstone), at time now.  Fills ei.
 * Returns 0, or -1 with *e and *why.
 */
static int
check_event(struct log *L, jv ev, const char *pspace, int64_t now,
    struct evinfo *ei, enum bus_err *e, const char **why)
{
	const char *type, *kid;
	size_t kidlen;
	int t;

	memset(ei, 0, sizeof(*ei));
	*e = E_BAD_EVENT;
	if (jv_get_kind(ev) != JV_KIND_OBJECT) {
		*e = E_PARAMS;
		*why = "params.event must be an event object";
		return -1;
	}
	if (event_id(ev, &L->scratch, ei->id) != 0) {
		*why = "event cannot be put in canonical form";
		return -1;
	}
	if (L->scratch.len > EVENT_MAX) {
		*e = E_TOO_LARGE;
		*why = "event larger than 16 KiB";
		return -1;
	}
	if (!(type = sget(ev, "type")) || (t = word_index(type_names, type)) < 0) {
		*why = "unknown event type";
		return -1;
	}
	ei->type = (enum evtype)t;
	if (!valid_did(ei->author = sget(ev, "author"))) {
		*why = "author is not a did:key";
		return -1;
	}
	if (jsonl_int(ev, "ts", &ei->ts) != 0 || ei->ts < 0) {
		*why = "ts is not a non-negative integer";
		return -1;
	}
	if (ei->ts > now + SKEW_MS) {
		*why = "ts is more than 5 minutes in the future";
		return -1;
	}
	if (!jsonl_str(ev, "sig")) {
		*e = E_BAD_SIG;
		*why = "event has no signature";
		return -1;
	}
	if (ei->type == T_TOMB) {
		if (jsonl_has(ev, "space")) {
			*why = "a tombstone has no space member";
			return -1;
		}
		if (!(ei->space = pspace)) {
			*e = E_PARAMS;
			*why = "params.space is needed for a tombstone";
			return -1;
		}
	} else {
		if (!(ei->space = sget(ev, "space"))) {
			*why = "event has no space";
			return -1;
		}
		if (pspace && strcmp(pspace, ei->space) != 0) {
			*why = "params.space is not the event's space";
			return -1;
		}
	}
	if (space_parse(ei->space, &ei->sptype, &kid, &kidlen) != 0) {
		*why = "bad space id";
		return -1;
	}
	switch (ei->type) {
	case T_CREATE:
		ei->name = sget(ev, "name");
		if (!ei->name || strlen(ei->name) > NAME_MAX_BYTES) {
			*why = "name must be a string of at most 200 bytes";
			return -1;
		}
		/* FALLTHROUGH */
	case T_JOIN:
	case T_REF:
		if (!valid_did(ei->node = sget(ev, "node"))) {
			*why = "node is not a did:key";
			return -1;
		}
		if (!valid_address(ei->address = sget(ev, "address"))) {
			*why = "address is not a node address";
			return -1;
		}
		break;
	case T_INVITE:
	case T_REMOVE:
		if (!valid_did(ei->member = sget(ev, "member"))) {
			*why = "member is not a did:key";
			return -1;
		}
		break;
	default:
		break;
	}
	if (ei->type == T_CREATE || ei->type == T_RULES) {
		jv r = jsonl_get(ev, "rules");
		int bad = (ei->type == T_RULES || jv_is_valid(r)) &&
		    rules_parse(r, ei->sptype, &ei->rules) != 0;

		if (!jv_is_valid(r))
			ei->rules = defaults[ei->sptype];
		jv_free(r);
		if (bad) {
			*why = "rules must be an object of join, post and "
			    "read words";
			return -1;
		}
	}
	/* a ref must name its author's beam; a tombstone of another's beam
	 * is well formed, and refused by the state (no such ref of its) */
	if (ei->type == T_REF || ei->type == T_TOMB) {
		if (!(ei->beam = sget(ev, "beam")) || beam_path_ok(ei->beam,
		    ei->type == T_REF ? ei->author : NULL) != 0) {
			*why = ei->type == T_REF ? "beam is not a path "
			    "beam/{authorHash}/{beamId} of the author" :
			    "beam is not a path beam/{authorHash}/{beamId}";
			return -1;
		}
	}
	if (ei->type == T_CREATE) {
		const char *akid = didkey_keyid(ei->author);

		if (strlen(akid) != kidlen || memcmp(akid, kid, kidlen) != 0) {
			*e = E_FORBIDDEN;
			*why = "only the owner named in the space id may create it";
			return -1;
		}
		if (strcmp(ei->node, L->node) != 0) {
			*why = "node is not this node";
			return -1;
		}
		if (L->address && strcmp(ei->address, L->address) != 0) {
			*why = "address is not this node's address";
			return -1;
		}
	}
	return 0;
}

/* 1 if the query on (space, arg[, arg2]) has a row, 0 if not, -1. */
static int
exists(struct log *L, enum stmt i, const char *space, const char *a,
    const char *b)
{
	int rc = b ? q(L, i, "ttt", space, a, b) : q(L, i, "tt", space, a);

	if (rc == 1)
		rst(L, i);
	return rc;
}

/* Whether the state of sp (NULL for a space.create) admits the event.
 * Returns 0, or -1 with *e and *why. */
static int
admit(struct log *L, struct space *sp, const struct evinfo *ei,
    enum bus_err *e, const char **why)
{
	int owner = sp && strcmp(ei->author, sp->owner) == 0;
	int rc = 0;

	*e = E_FORBIDDEN;
	switch (ei->type) {
	case T_CREATE:
		return 0;
	case T_JOIN:
		if ((rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 0) {
			*why = "already a member";
			goto out;
		}
		if (sp->rules.join == J_INVITE &&
		    (rc = exists(L, S_INV_GET, sp->id, ei->author, NULL)) != 1) {
			*why = "the space admits invited members only";
			goto out;
		}
		return 0;
	case T_LEAVE:
		if (owner) {
			*why = "the owner cannot leave";
			return -1;
		}
		if ((rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 1) {
			*why = "not a member";
			goto out;
		}
		return 0;
	case T_INVITE:
	case T_REMOVE:
	case T_RULES:
		if (!owner) {
			*why = "only the owner may do this";
			return -1;
		}
		if (ei->type == T_REMOVE && strcmp(ei->member, sp->owner) == 0) {
			*why = "the owner cannot be removed";
			return -1;
		}
		return 0;
	case T_REF:
		if (sp->rules.post == P_OWNER ? !owner :
		    (rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 1) {
			*why = sp->rules.post == P_OWNER ?
			    "only the owner may post in this space" :
			    "only members may post in this space";
			goto out;
		}
		return 0;
	case T_TOMB:
		if ((rc = exists(L, S_REF_GET, sp->id, ei->beam,
		    ei->author)) != 1) {
			*why = "the space holds no ref to this beam by its author";
			goto out;
		}
		return 0;
	}
	*why = "unknown event type";
	return -1;
out:
	if (rc < 0) {
		*e = E_INTERNAL;
		*why = "database failure";
	}
	return -1;
}

/* Change the state for an admitted event.  *spp is set for a new space.
 * Returns 0, or -1 on a database failure. */
static int
apply(struct log *L, struct space **spp, const struct evinfo *ei)
{
	struct space *sp = *spp;
	char rt[80];

	switch (ei->type) {
	case T_CREATE:
		rules_text(&ei->rules, rt, sizeof(rt));
		if (q(L, S_SPACE_INS, "ttttttt", ei->space,
		    sptype_names[ei->sptype], ei->author, ei->name, ei->node,
		    ei->address, rt) < 0)
			return -1;
		sp = *spp = cache_add(L, ei->space, ei->sptype, ei->author,
		    ei->name, ei->node, ei->address);
		sp->rules = ei->rules;
		/* FALLTHROUGH */
	case T_JOIN:
		return q(L, S_MEM_INS, "tttt", sp->id, ei->author, ei->node,
		    ei->address) < 0 ? -1 : 0;
	case T_LEAVE:
		return q(L, S_MEM_DEL, "tt", sp->id, ei->author) < 0 ? -1 : 0;
	case T_INVITE:
		return q(L, S_INV_INS, "tt", sp->id, ei->member) < 0 ? -1 : 0;
	case T_REMOVE:
		if (q(L, S_MEM_DEL, "tt", sp->id, ei->member) < 0)
			return -1;
		return q(L, S_INV_DEL, "tt", sp->id, ei->member) < 0 ? -1 : 0;
	case T_RULES:
		rules_text(&ei->rules, rt, sizeof(rt));
		if (q(L, S_SPACE_RULES, "tt", sp->id, rt) < 0)
			return -1;
		sp->rules = ei->rules;
		return 0;
	case T_REF:
		return q(L, S_REF_INS, "ttt", sp->id, ei->beam, ei->author) < 0 ?
		    -1 : 0;
	case T_TOMB:
		return 0;
	}
	return -1;
}

/* Sequence ev (borrowed) as the next envelope of sp, signed and stored.
 * The envelope's canonical text is left in L->body.  Returns the seq, or
 * -1 on failure. */
static int64_t
append(struct log *L, struct space *sp, jv ev, const char *evid, int64_t now)
{
	char hash[HASH_ID_LEN + 1];
	int64_t seq = sp->head + 1;
	jv env;

	env = jv_object_set(jv_object(), jv_string("type"), jv_string("envelope"));
	env = jv_object_set(env, jv_string("space"), jv_string(sp->id));
	env = jv_object_set(env, jv_string("seq"), jv_number((double)seq));
	env = jv_object_set(env, jv_string("prev"),
	    seq == 1 ? jv_null() : jv_string(sp->hash));
	env = jv_object_set(env, jv_string("event"), jv_copy(ev));
	env = jv_object_set(env, jv_string("node"), jv_string(L->node));
	env = jv_object_set(env, jv_string("ts"), jv_number((double)now));
	env = sig_attach(env, L->key);
	if (!jv_is_valid(env) || event_id(env, &L->body, hash) != 0) {
		warn("%.80s: cannot sign the envelope", sp->id);
		jv_free(env);
		return -1;
	}
	jv_free(env);
	if (q(L, S_ENV_INS, "tittb", sp->id, seq, evid, hash, L->body.p,
	    (int)L->body.len) < 0)
		return -1;
	space_set_head(L, sp, seq, hash);
	return seq;
}

/* ---- answers ---- */

static void
add_json(struct buf *out, jv v)
{
	if (canon_dump(v, NULL, out) != 0)
		buf_adds(out, "null");
	jv_free(v);
}

/* The start and end of an answer to r whose result is written raw in
 * between, in the exact form bus_result() gives.  0 if r cannot be
 * answered (nothing written). */
static int
answer_open(struct buf *out, const struct bus_req *r)
{
	if (!jv_is_valid(r->id) || r->conn < 0)
		return 0;
	buf_addf(out, "{\"to\":%lld,\"msg\":{\"id\":", (long long)r->conn);
	add_json(out, jv_copy(r->id));
	buf_adds(out, ",\"jsonrpc\":\"2.0\",\"result\":");
	return 1;
}

static void
answer_close(struct buf *out)
{
	buf_adds(out, "}}\n");
}

static jv
space_address(const struct space *sp)
{
	return jv_string_fmt("northstar://%s/%s", sp->address, sp->id);
}

/* What space.create answers and space.info starts from: id, type, name,
 * ownerDid, nodeAddress, address. */
static jv
space_json(const struct space *sp)
{
	jv res = jv_object_set(jv_object(), jv_string("id"), jv_string(sp->id));

	res = jv_object_set(res, jv_string("type"),
	    jv_string(sptype_names[sp->type]));
	res = jv_object_set(res, jv_string("name"), jv_string(sp->name));
	res = jv_object_set(res, jv_string("ownerDid"), jv_string(sp->owner));
	res = jv_object_set(res, jv_string("nodeAddress"),
	    jv_string(sp->address));
	return jv_object_set(res, jv_string("address"), space_address(sp));
}

static jv
event_result(const struct space *sp, const struct evinfo *ei, int64_t seq)
{
	jv res;

	if (ei->type == T_CREATE)
		res = space_json(sp);
	else
		res = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(sp->id));
	res = jv_object_set(res, jv_string("seq"), jv_number((double)seq));
	res = jv_object_set(res, jv_string("eventId"), jv_string(ei->id));
	if (ei->type == T_REF)
		res = jv_object_set(res, jv_string("beam"), jv_string(ei->beam));
	return res;
}

/* ---- request handlers ---- */

/*
 * unchecked: the raw line does not spell "sig", so ns-verify, which looks
 * for that spelling, has not checked the event (an escaped member name
 * such as "\u0073ig" is still a "sig"): then it is checked here.
 */
static void
handle_event(struct log *L, const struct bus_req *r, enum method m,
    int unchecked, int64_t now, struct buf *out)
{
	jv ev = jsonl_get(r->params, "event");
	const char *pspace = NULL, *type, *why;
	struct evinfo ei;
	struct space *sp;
	enum bus_err e;
	int64_t seq;
	int err, rc;

	if (jsonl_has(r->params, "space") &&
	    !(pspace = sget(r->params, "space"))) {
		bus_error(out, r, E_PARAMS, "params.space must be a space id");
		goto out;
	}
	/* the method names the event type, but for log.append */
	if (m != M_APPEND && jv_get_kind(ev) == JV_KIND_OBJECT &&
	    (!(type = sget(ev, "type")) || strcmp(type, methods[m]) != 0)) {
		bus_error(out, r, E_BAD_EVENT,
		    "event type does not match the method");
		goto out;
	}
	if (check_event(L, ev, pspace, now, &ei, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	if (unchecked) {
		if (event_verify(ev, &L->scratch, &why) != 0) {
			bus_error(out, r, E_BAD_SIG, why);
			goto out;
		}
		if (r->role && strcmp(r->role, "client") == 0 &&
		    (!r->did || strcmp(r->did, ei.author) != 0)) {
			bus_error(out, r, E_FORBIDDEN,
			    "a client may only submit its own events");
			goto out;
		}
	}
	if (m == M_JOIN && (strcmp(ei.node, L->node) != 0 ||
	    strcmp(ei.address, L->address) != 0)) {
		bus_error(out, r, E_BAD_EVENT,
		    "a join sent to this node must name this node and address");
		goto out;
	}
	sp = space_find(L, ei.space, &err);
	if (err)
		goto internal;
	if (sp) {
		/* the same event again: the first answer, nothing new */
		if ((rc = q(L, S_ENV_DUP, "tt", sp->id, ei.id)) < 0)
			goto internal;
		if (rc == 1) {
			seq = sqlite3_column_int64(L->st[S_ENV_DUP], 0);
			rst(L, S_ENV_DUP);
			bus_result(out, r, event_result(sp, &ei, seq));
			goto out;
		}
	}
	if (ei.type == T_CREATE && sp) {
		bus_error(out, r, E_CONFLICT, "the space exists already");
		goto out;
	}
	if (ei.type != T_CREATE && !sp) {
		bus_error(out, r, E_NOT_FOUND, "no such space");
		goto out;
	}
	if (sp && strcmp(sp->node, L->node) != 0) {
		bus_error(out, r, E_FORBIDDEN, "this node does not own the space");
		goto out;
	}
	if (admit(L, sp, &ei, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	if (apply(L, &sp, &ei) != 0 || (seq = append(L, sp, ev, ei.id, now)) < 0)
		goto internal;
	bus_result(out, r, event_result(sp, &ei, seq));
	/* msg is {"jsonrpc","method","params"}, already in canonical order */
	buf_adds(out, "{\"pub\":");
	add_json(out, jv_string(sp->id));
	buf_adds(out, ",\"msg\":{\"jsonrpc\":\"2.0\",\"method\":\"event\","
	    "\"params\":");
	buf_add(out, L->body.p, L->body.len);
	buf_adds(out, "}}\n");
	goto out;
internal:
	L->failed = 1;
	bus_error(out, r, E_INTERNAL, "the node failed to store the event");
out:
	jv_free(ev);
}

/* Whether r's caller may read sp: 1, 0, or -1 on a database failure. */
static int
can_read(struct log *L, const struct space *sp, const struct bus_req *r)
{
	int rc;

	if (sp->rules.read == R_PUBLIC)
		return 1;
	if (!r->did)
		return 0;
	if ((rc = exists(L, S_MEM_GET, sp->id, r->did, NULL)) != 0)
		return rc;
	if (!r->role || strcmp(r->role, "node") != 0)
		return 0;
	if (strcmp(r->did, sp->node) == 0)
		return 1;
	return exists(L, S_MEM_NODE, sp->id, r->did, NULL);
}

/* The space params.space names, if r may read it; else answers r and
 * returns NULL. */
static struct space *
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
	if (check && (rc = can_read(L, sp, r)) != 1) {
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

static jv
members_result(struct log *L, const struct space *sp)
{
	jv mem = did_list(L, S_MEM_LIST, sp), inv = jv_invalid(), nodes;
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
	jv res = jv_object_set(jv_object(), jv_string("space"), jv_string(sp->id));
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
		bus_error(out, r, E_PARAMS, "after must be an integer >= 0 and "
		    "limit an integer from 1 to 1000");
		return;
	}
	mark = out->len;
	if (!answer_open(out, r))
		return;
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
	add_json(out, jv_string(sp->id));
	buf_addc(out, '}');
	answer_close(out);
}

static void
handle_read(struct log *L, const struct bus_req *r, enum method m,
    struct buf *out)
{
	struct space *sp;
	jv res;

	switch (m) {
	case M_HISTORY:
		handle_history(L, r, out);
		return;
	case M_MEMBERS:
		if (!(sp = read_space(L, r, 1, out)))
			return;
		res = members_result(L, sp);
		if (!jv_is_valid(res)) {
			jv_free(res);
			bus_error(out, r, E_INTERNAL, "database failure");
			return;
		}
		bus_result(out, r, res);
		return;
	case M_INFO:
		if (!(sp = read_space(L, r, 0, out)))
			return;
		res = space_json(sp);
		res = jv_object_set(res, jv_string("head"),
		    jv_number((double)sp->head));
		res = jv_object_set(res, jv_string("rules"), rules_jv(&sp->rules));
		bus_result(out, r, res);
		return;
	case M_SUB:
		if (!(sp = read_space(L, r, 1, out)))
			return;
		/* subscribed before the head is reported: whatever is
		 * sequenced after it reaches the caller */
		if (r->conn >= 0)
			bus_subscribe(out, r->conn, sp->id, 1);
		res = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(sp->id));
		bus_result(out, r, jv_object_set(res, jv_string("head"),
		    jv_number((double)sp->head)));
		return;
	case M_UNSUB: {
		const char *id = sget(r->params, "space");

		if (!id) {
			bus_error(out, r, E_PARAMS,
			    "params.space must be a space id");
			return;
		}
		if (r->conn >= 0)
			bus_subscribe(out, r->conn, id, 0);
		bus_result(out, r, jv_object_set(jv_object(), jv_string("space"),
		    jv_string(id)));
		return;
	}
	default:
		return;
	}
}

/* ---- the ring stage ---- */

/* The method of a line this stage owns, or -1. */
static int
owned(const char *p, size_t len)
{
	char m[24];

	if (bus_method(p, len, m, sizeof(m)) != 0)
		return -1;
	return word_index(methods, m);
}

/* The commit failed: every request of the batch is answered "internal"
 * instead, nothing is published, other lines go on as they came. */
static void
fail_batch(struct buf *out, const struct item *items, size_t n)
{
	struct buf nb = BUF_INIT;

	for (size_t i = 0; i < n; i++) {
		const struct item *it = &items[i];

		if (!it->req) {
			buf_add(&nb, out->p + it->start, it->end - it->start);
			continue;
		}
		struct bus_req r = { .conn = it->conn, .id = it->id };
		bus_error(&nb, &r, E_INTERNAL, "the node failed to store the "
		    "request; retry");
	}
	buf_free(out);
	*out = nb;
}

static void
run_bus(struct log *L, size_t batch)
{
	struct item *items = xcalloc(batch, sizeof(*items));
	struct buf out = BUF_INIT;
	struct jsonin in;
	int eof = 0;

	jsonl_big_pipe(STDOUT_FILENO);
	jsonin_init(&in, STDIN_FILENO, VALUE_MAX);
	while (!eof) {
		size_t n = 0;
		int64_t now = -1;
		int began = 0;

		buf_reset(&out);
		L->failed = 0;
		if (L->ncached > CACHE_MAX)
			cache_clear(L);
		while (n < batch && (n == 0 || !jsonin_would_block(&in))) {
			struct bus_req r;
			unsigned long lineno;
			const char *why;
			size_t len;
			char *p;
			int rc = jsonin_next(&in, &p, &len, &lineno, &why), m;

			if (rc == JSONIN_EOF) {
				eof = 1;
				break;
			}
			if (rc == JSONIN_ERROR)
				die("stdin:");
			if (rc == JSONIN_BAD) {
				warn("line %lu: %s", lineno, why);
				continue;
			}
			struct item *it = &items[n];
			it->start = out.len;
			it->req = 0;
			it->id = jv_invalid();
			if ((m = owned(p, len)) < 0) {
				buf_add(&out, p, len);
				buf_addc(&out, '\n');
				it->end = out.len;
				n++;
				continue;
			}
			if (bus_parse(p, len, &r) != 0) {
				warn("line %lu: malformed %s request", lineno,
				    methods[m]);
				continue;
			}
			n++;
			it->req = 1;
			it->conn = r.conn;
			it->id = jv_copy(r.id);
			if (!began) {
				began = 1;
				if (db_begin(L->db) != 0) {
					warn("begin: %s", sqlite3_errmsg(L->db));
					L->failed = 1;
				}
			}
			if (now < 0)
				now = jsonl_now_ms();
			if (L->failed)
				;
			else if (m <= M_APPEND)
				handle_event(L, &r, (enum method)m,
				    !memmem(p, len, "\"sig\"", 5), now, &out);
			else
				handle_read(L, &r, (enum method)m, &out);
			bus_req_free(&r);
			it->end = out.len;
		}
		if (began) {
			if (L->failed || flush_heads(L) != 0 ||
			    db_commit(L->db) != 0) {
				if (!L->failed)
					warn("commit: %s", sqlite3_errmsg(L->db));
				if (db_rollback(L->db) != 0)
					warn("rollback: %s", sqlite3_errmsg(L->db));
				cache_clear(L);
				fail_batch(&out, items, n);
			}
		}
		for (size_t i = 0; i < n; i++)
			jv_free(items[i].id);
		if (out.len > 0 && fwrite(out.p, 1, out.len, stdout) != out.len)
			die("stdout:");
		if (jsonl_flush() != 0)
			die("stdout:");
	}
	jsonin_free(&in);
	buf_free(&out);
	free(items);
}

/* ---- reports on a database ---- */

static struct space *
report_space(struct log *L, const char *id)
{
	struct space *sp;
	int err;

	if (!(sp = space_find(L, id, &err)) && !err)
		warn("%.80s: no such space", id);
	return sp;
}

static int
cmd_spaces(struct log *L)
{
	int rc;

	for (rc = q(L, S_SPACES, ""); rc == 1; rc = step(L, S_SPACES)) {
		jv o = jv_object_set(jv_object(), jv_string("id"),
		    jv_string(col(L, S_SPACES, 0)));
		o = jv_object_set(o, jv_string("type"),
		    jv_string(col(L, S_SPACES, 1)));
		o = jv_object_set(o, jv_string("name"),
		    jv_string(col(L, S_SPACES, 2)));
		o = jv_object_set(o, jv_string("ownerDid"),
		    jv_string(col(L, S_SPACES, 3)));
		o = jv_object_set(o, jv_string("head"), jv_number((double)
		    sqlite3_column_int64(L->st[S_SPACES], 4)));
		if (jsonl_emit(o) != 0)
			die("stdout:");
	}
	return rc < 0 ? 2 : 0;
}

static int
cmd_history(struct log *L, const char *id, int64_t after, int64_t limit)
{
	int rc;

	if (!report_space(L, id))
		return L->failed ? 2 : 1;
	for (rc = q(L, S_ENV_RANGE, "tii", id, after, limit); rc == 1;
	    rc = step(L, S_ENV_RANGE))
		if (jsonl_write(col(L, S_ENV_RANGE, 1), (size_t)
		    sqlite3_column_bytes(L->st[S_ENV_RANGE], 1)) != 0)
			die("stdout:");
	return rc < 0 ? 2 : 0;
}

static int
cmd_members(struct log *L, const char *id)
{
	struct space *sp = report_space(L, id);
	jv res;

	if (!sp)
		return L->failed ? 2 : 1;
	res = members_result(L, sp);
	if (!jv_is_valid(res)) {
		jv_free(res);
		return 2;
	}
	if (jsonl_emit(res) != 0)
		die("stdout:");
	return 0;
}

/* Run sql (one parameter: the space id) on both databases and compare the
 * rows.  0 if equal, -1 if not or on failure. */
static int
same_rows(sqlite3 *a, sqlite3 *b, const char *sql, const char *id)
{
	sqlite3_stmt *sa = NULL, *sb = NULL;
	int ra, rb, rc = -1;

	if (sqlite3_prepare_v2(a, sql, -1, &sa, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(b, sql, -1, &sb, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(sa, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(sb, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		goto out;
	for (;;) {
		ra = sqlite3_step(sa);
		rb = sqlite3_step(sb);
		if (ra != rb || (ra != SQLITE_ROW && ra != SQLITE_DONE))
			goto out;
		if (ra == SQLITE_DONE)
			break;
		for (int c = 0; c < sqlite3_column_count(sa); c++) {
			const unsigned char *x = sqlite3_column_text(sa, c);
			const unsigned char *y = sqlite3_column_text(sb, c);

			if ((x == NULL) != (y == NULL) ||
			    (x && strcmp((const char *)x, (const char *)y) != 0))
				goto out;
		}
	}
	rc = 0;
out:
	sqlite3_finalize(sa);
	sqlite3_finalize(sb);
	return rc;
}

/*
 * Check one space of src from seq 1: every envelope's signatures, its
 * place in the chain, its signer (the owner node of seq 1), and its event
 * against the state replayed in mem.  Then the stored state must equal the
 * replayed one.  Returns 0, or 1 after reporting the first fault.
 */
static int
verify_space(struct log *src, struct log *mem, const char *id)
{
	static const struct {
		const char *what, *sql;
	} compare[] = {
		{ "space", "SELECT type, owner, name, node, address, rules, "
		    "head, head_hash FROM spaces WHERE id = ?1" },
		{ "members", "SELECT did, node, address FROM members "
		    "WHERE space = ?1 ORDER BY did" },
		{ "invited", "SELECT did FROM invited WHERE space = ?1 "
		    "ORDER BY did" },
		{ "refs", "SELECT beam, author FROM refs WHERE space = ?1 "
		    "ORDER BY beam" },
	};
	char hash[HASH_ID_LEN + 1], last[HASH_ID_LEN + 1] = "";
	char *owner = NULL;
	struct space *sp, *msp;
	struct evinfo ei;
	enum bus_err e;
	const char *why = NULL;
	int64_t seq = 0, n, ts;
	int rc, dup, err, bad = 1;

	if (!(sp = space_find(src, id, &err)))
		return err ? 2 : 1;
	for (rc = q(src, S_ENV_ALL, "t", id); rc == 1; rc = step(src, S_ENV_ALL)) {
		const char *body = col(src, S_ENV_ALL, 3);
		size_t blen = (size_t)sqlite3_column_bytes(src->st[S_ENV_ALL], 3);
		jv env = canon_parse(body, blen), ev;

		n = sqlite3_column_int64(src->st[S_ENV_ALL], 0);
		ev = jsonl_get(env, "event");
		if (n != ++seq)
			why = "envelope missing";
		else if (!jv_is_valid(env))
			why = "stored envelope is not JSON";
		else if (envelope_verify(env, &src->scratch, &why) != 0)
			;
		else if (event_id(env, &src->scratch, hash) != 0 ||
		    src->scratch.len != blen ||
		    memcmp(src->scratch.p, body, blen) != 0)
			why = "stored envelope is not in canonical form";
		else if (strcmp(hash, col(src, S_ENV_ALL, 2)) != 0)
			why = "stored hash is not the envelope's";
		else if (jsonl_int(env, "seq", &n) != 0 || n != seq ||
		    strcmp(jsonl_str(env, "space"), id) != 0)
			why = "envelope names another place than its own";
		else if (seq > 1 && strcmp(jsonl_str(env, "prev"), last) != 0)
			why = "prev is not the hash of the envelope before";
		else if (seq > 1 && strcmp(jsonl_str(env, "node"), owner) != 0)
			why = "envelope not signed by the owner node";
		else {
			if (seq == 1)
				owner = xstrdup(jsonl_str(env, "node"));
			jsonl_int(env, "ts", &ts);
			mem->node = owner;
			if (check_event(mem, ev, id, ts, &ei, &e, &why) != 0)
				;
			else if (strcmp(ei.id, col(src, S_ENV_ALL, 1)) != 0)
				why = "stored event id is not the event's";
			else if ((seq == 1) != (ei.type == T_CREATE))
				why = seq == 1 ? "seq 1 is not a space.create" :
				    "space.create after seq 1";
			else if (!(msp = space_find(mem, id, &err)) &&
			    (err || seq > 1))
				why = "replay failed";
			else if ((dup = msp ? exists(mem, S_ENV_DUP, id, ei.id,
			    NULL) : 0) != 0)
				why = dup < 0 ? "replay failed" : "event repeated";
			else if (admit(mem, msp, &ei, &e, &why) != 0)
				;
			else if (apply(mem, &msp, &ei) != 0 ||
			    q(mem, S_ENV_INS, "tittt", id, seq, ei.id, hash,
			    "") < 0)
				why = "replay failed";
			else {
				space_set_head(mem, msp, seq, hash);
				memcpy(last, hash, sizeof(last));
				why = NULL;
			}
		}
		jv_free(ev);
		jv_free(env);
		if (why) {
			rst(src, S_ENV_ALL);
			warn("%s: seq %lld: %s", id, (long long)seq, why);
			goto out;
		}
	}
	if (rc < 0)
		goto out;
	if (seq != sp->head || strcmp(last, sp->hash) != 0) {
		warn("%s: stored head %lld does not match the envelopes (%lld)",
		    id, (long long)sp->head, (long long)seq);
		goto out;
	}
	if (flush_heads(mem) != 0)
		goto out;
	for (size_t i = 0; i < sizeof(compare) / sizeof(compare[0]); i++)
		if (same_rows(src->db, mem->db, compare[i].sql, id) != 0) {
			warn("%s: stored %s differ from the replayed log", id,
			    compare[i].what);
			goto out;
		}
	jv o = jv_object_set(jv_object(), jv_string("space"), jv_string(id));
	o = jv_object_set(o, jv_string("head"), jv_number((double)seq));
	if (jsonl_emit(jv_object_set(o, jv_string("ok"), jv_true())) != 0)
		die("stdout:");
	bad = 0;
out:
	mem->node = NULL;
	free(owner);
	return bad;
}

static int
cmd_verify(struct log *src, const char *id)
{
	struct log mem;
	char err[512];
	char **ids = NULL;
	size_t n = 0;
	int rc, status = 0;
	sqlite3 *db;

	if (!(db = db_open(":memory:", migrations, NMIGRATIONS, 0, err,
	    sizeof(err))))
		die("%s", err);
	log_init(&mem, db);
	if (id) {
		ids = xmalloc(sizeof(*ids));
		ids[n++] = xstrdup(id);
		if (!report_space(src, id))
			status = src->failed ? 2 : 1;
	} else {
		for (rc = q(src, S_SPACES, ""); rc == 1; rc = step(src, S_SPACES)) {
			ids = xrealloc(ids, (n + 1) * sizeof(*ids));
			ids[n++] = xstrdup(col(src, S_SPACES, 0));
		}
		if (rc < 0)
			status = 2;
	}
	if (status == 0 && db_begin(mem.db) != 0)
		die("replay: %s", sqlite3_errmsg(mem.db));
	for (size_t i = 0; i < n && status != 2; i++) {
		rc = verify_space(src, &mem, ids[i]);
		if (rc > status)
			status = rc;
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	cache_clear(&mem);
	buf_free(&mem.scratch);
	buf_free(&mem.body);
	db_close(mem.db);
	return status;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bus", no_argument, NULL, 'b' },
		{ "key", required_argument, NULL, 'k' },
		{ "db", required_argument, NULL, 'd' },
		{ "address", required_argument, NULL, 'a' },
		{ "sync", required_argument, NULL, 's' },
		{ "batch", required_argument, NULL, 'B' },
		{ "after", required_argument, NULL, 'A' },
		{ "limit", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *keyfile = NULL, *dbfile = NULL, *address = NULL, *cmd = NULL;
	int64_t batch = BATCH_DEFAULT, after = 0, limit = -1;
	int c, bus = 0, sync_full = 1, paging = 0, status = 0;
	struct key *key = NULL;
	struct log L;
	char err[512];
	sqlite3 *db;

	prog = PROG;
	while ((c = getopt_long(argc, argv, "bk:d:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			bus = 1;
			break;
		case 'k':
			keyfile = optarg;
			break;
		case 'd':
			dbfile = optarg;
			break;
		case 'a':
			address = optarg;
			break;
		case 's':
			if (strcmp(optarg, "full") == 0)
				sync_full = 1;
			else if (strcmp(optarg, "normal") == 0)
				sync_full = 0;
			else
				usage(2);
			break;
		case 'B':
			batch = xnum("--batch", optarg, 1, BATCH_LIMIT);
			break;
		case 'A':
			after = xnum("--after", optarg, 0, JSONL_INT_MAX);
			paging = 1;
			break;
		case 'L':
			limit = xnum("--limit", optarg, 1, JSONL_INT_MAX);
			paging = 1;
			break;
		case 'h':
			usage(0);
			break;
		case 'V':
			puts(PROG " " NS_VERSION);
			return 0;
		default:
			usage(2);
		}
	}
	if (!dbfile)
		usage(2);
	if (bus) {
		if (!keyfile || !address || optind != argc || paging)
			usage(2);
		if (!valid_address(address)) {
			warn("-a: not a node address: %.80s", address);
			usage(2);
		}
	} else {
		if (optind >= argc || keyfile || address)
			usage(2);
		cmd = argv[optind];
		if (strcmp(cmd, "spaces") == 0 ? argc - optind != 1 :
		    strcmp(cmd, "history") == 0 ? argc - optind != 2 :
		    strcmp(cmd, "members") == 0 ? argc - optind != 2 :
		    strcmp(cmd, "verify") == 0 ? argc - optind > 2 : 1)
			usage(2);
		if (paging && strcmp(cmd, "history") != 0)
			usage(2);
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialize");

	if (bus) {
		if (!(key = key_load(keyfile, err, sizeof(err))))
			die("%s", err);
		if (!(db = db_open(dbfile, migrations, NMIGRATIONS, sync_full,
		    err, sizeof(err))))
			die("%s", err);
		log_init(&L, db);
		L.key = key;
		L.node = key->did;
		L.address = address;
		run_bus(&L, (size_t)batch);
	} else {
		if (!(db = db_open_ro(dbfile, NMIGRATIONS, err, sizeof(err))))
			die("%s", err);
		log_init(&L, db);
		if (strcmp(cmd, "spaces") == 0)
			status = cmd_spaces(&L);
		else if (strcmp(cmd, "history") == 0)
			status = cmd_history(&L, argv[optind + 1], after, limit);
		else if (strcmp(cmd, "members") == 0)
			status = cmd_members(&L, argv[optind + 1]);
		else
			status = cmd_verify(&L, argc - optind == 2 ?
			    argv[optind + 1] : NULL);
	}
	cache_clear(&L);
	buf_free(&L.scratch);
	buf_free(&L.body);
	db_close(L.db);
	key_free(key);
	if (jsonl_flush() != 0)
		die("stdout:");
	return status;
}
