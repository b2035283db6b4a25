/*
 * The log database: its schema, the prepared statements every part uses,
 * and the cache of space rows that keeps a batch from asking SQLite for
 * the same space over and over.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "db.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

/* The index of refs holds the last 12 characters of a beam's path (72
 * bits of its content hash) rather than the path and the space, about 180
 * bytes: a new beam's key lands on a random page of that index, and each
 * such page costs a write per commit, so the smaller the index, the fewer
 * pages a batch touches (and the more of it the cache holds). */
#define REF_TAIL(n) "substr(beam, -12) = substr(?" n ", -12)"
/* The ref of beam ?n.  The unary + keeps SQLite from putting ?n in place
 * of beam in REF_TAIL (constant propagation), which would leave nothing for
 * the index to match. */
#define REF_IS(n) REF_TAIL(n) " AND +beam = ?" n

static const char *const sqls[S_N] = {
	[S_SPACE_GET] = "SELECT type, owner, name, node, address, rules, head, "
	    "head_hash FROM spaces WHERE id = ?1",
	[S_SPACE_INS] = "INSERT INTO spaces (id, type, owner, name, node, "
	    "address, rules, head, head_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, 0, NULL)",
	[S_SPACE_HEAD] = "UPDATE spaces SET head = ?2, head_hash = ?3 "
	    "WHERE id = ?1",
	[S_SPACE_RULES] = "UPDATE spaces SET rules = ?2 WHERE id = ?1",
	[S_SPACES] = "SELECT id, type, name, owner, head, node FROM spaces "
	    "ORDER BY id",
	[S_ENV_DUP] = "SELECT seq FROM envelopes WHERE space = ?1 AND "
	    "ts = ?2 AND event_id = ?3",
	[S_ENV_INS] = "INSERT INTO envelopes (space, seq, ts, event_id, hash, "
	    "body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
	/* refs are found by the end of the beam's path (migration 6) */
	[S_REF_GET] = "SELECT 1 FROM refs WHERE " REF_IS("2")
	    " AND space = ?1 AND author = ?3",
	[S_REF_HAS] = "SELECT 1 FROM refs WHERE " REF_IS("2") " AND space = ?1",
	/* not INSERT ... SELECT ... WHERE NOT EXISTS: reading the table it
	 * writes, that copies the row through a temporary table */
	[S_REF_INS] = "INSERT INTO refs (space, beam, author, node, address) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_REF_SPACES] = "SELECT space FROM refs WHERE " REF_IS("1")
	    " ORDER BY space",
	[S_REF_AUTHOR] = "SELECT space FROM refs WHERE " REF_IS("1")
	    " AND author = ?2 ORDER BY space",
	[S_GONE_GET] = "SELECT tomb FROM gone WHERE beam = ?1",
	[S_GONE_INS] = "INSERT OR IGNORE INTO gone (beam, author, tomb) "
	    "VALUES (?1, ?2, ?3)",
	[S_REF_WHERE] = "SELECT node, address FROM refs WHERE " REF_IS("1")
	    " AND node IS NOT NULL ORDER BY space LIMIT 1",
	[S_REF_NODE] = "SELECT node FROM refs WHERE " REF_IS("2")
	    " AND space = ?1",
	[S_MEM_NODE_OF] = "SELECT node FROM members WHERE space = ?1 AND did = ?2",
	[S_FOLLOW_GET] = "SELECT node, address FROM follows WHERE space = ?1",
	[S_FOLLOW_PUT] = "INSERT INTO follows (space, node, address) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (space) DO UPDATE SET "
	    "node = coalesce(excluded.node, node), address = excluded.address",
	[S_FOLLOW_DEL] = "DELETE FROM follows WHERE space = ?1",
	[S_FOLLOWS] = "SELECT f.space, f.node, f.address, coalesce(s.head, 0), "
	    "coalesce(s.head_hash, '') FROM follows f LEFT JOIN spaces s "
	    "ON s.id = f.space ORDER BY f.space",
	[S_ENV_AT] = "SELECT hash, body FROM envelopes WHERE space = ?1 AND "
	    "seq = ?2",
	[S_OUT_PUT] = "INSERT OR IGNORE INTO outbox (space, event) "
	    "VALUES (?1, ?2)",
	[S_OUT_DUE] = "SELECT id, space, event, tries FROM outbox "
	    "WHERE next_at <= ?1 ORDER BY next_at LIMIT 16",
	[S_OUT_LATER] = "UPDATE outbox SET tries = tries + 1, next_at = ?2 "
	    "WHERE id = ?1",
	[S_OUT_DONE] = "DELETE FROM outbox WHERE id = ?1",
};

const char *const migrations[] = {
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
	/* 2: which spaces refer to a beam (its read rule), and the beams
	 * deleted, with the first tombstone, from the logs already kept */
	"CREATE INDEX refs_beam ON refs (beam);"
	"CREATE TABLE gone ("
	"  beam TEXT PRIMARY KEY NOT NULL,"
	"  author TEXT NOT NULL,"
	"  tomb TEXT NOT NULL"
	") WITHOUT ROWID;"
	"INSERT OR IGNORE INTO gone (beam, author, tomb)"
	"  SELECT json_extract(body, '$.event.beam'),"
	"    json_extract(body, '$.event.author'), json(json_extract(body, '$.event'))"
	"  FROM envelopes"
	"  WHERE json_extract(body, '$.event.type') = 'beam.tombstone'"
	"  ORDER BY space, seq;",
	/* 3: federation: the spaces of other nodes this node follows (keeps
	 * a replica of), and where each ref says its beam is stored */
	"CREATE TABLE follows ("
	"  space TEXT PRIMARY KEY NOT NULL,"
	"  node TEXT,"
	"  address TEXT NOT NULL"
	") WITHOUT ROWID;"
	"ALTER TABLE refs ADD COLUMN node TEXT;"
	"ALTER TABLE refs ADD COLUMN address TEXT;"
	"UPDATE refs SET node = x.node, address = x.address FROM ("
	"  SELECT space, json_extract(body, '$.event.beam') AS beam,"
	"    json_extract(body, '$.event.node') AS node,"
	"    json_extract(body, '$.event.address') AS address"
	"  FROM envelopes"
	"  WHERE json_extract(body, '$.event.type') = 'beam.ref') AS x"
	"  WHERE refs.space = x.space AND refs.beam = x.beam;",
	/* 4: events this node owes other nodes' spaces (a tombstone of a
	 * beam beamed from here), kept until the owner node has them */
	"CREATE TABLE outbox ("
	"  id INTEGER PRIMARY KEY,"
	"  space TEXT NOT NULL,"
	"  event TEXT NOT NULL,"
	"  tries INTEGER NOT NULL DEFAULT 0,"
	"  next_at INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (space, event));",
	/* 5: fewer pages written per event.  A key that is a hash lands on
	 * a random page of its index, and each such page costs a write (and
	 * later a checkpoint copy) per commit.  An event is found again by
	 * (space, ts, id): the same event has the same ts, and ts mostly
	 * grows, so that index is written at its end.  refs becomes a rowid
	 * table (written at its end) with one index, by beam, that serves
	 * every lookup instead of two. */
	"CREATE TABLE envelopes5 ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  seq INTEGER NOT NULL,"
	"  ts INTEGER NOT NULL,"
	"  event_id TEXT NOT NULL,"
	"  hash TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  PRIMARY KEY (space, seq)"
	");"
	"INSERT INTO envelopes5 (space, seq, ts, event_id, hash, body)"
	"  SELECT space, seq, coalesce(json_extract(body, '$.event.ts'), 0),"
	"    event_id, hash, body FROM envelopes ORDER BY space, seq;"
	"DROP TABLE envelopes;"
	"ALTER TABLE envelopes5 RENAME TO envelopes;"
	"CREATE UNIQUE INDEX envelopes_event ON envelopes (space, ts, event_id);"
	"CREATE TABLE refs5 ("
	"  space TEXT NOT NULL REFERENCES spaces (id),"
	"  beam TEXT NOT NULL,"
	"  author TEXT NOT NULL,"
	"  node TEXT,"
	"  address TEXT"
	");"
	"INSERT INTO refs5 (space, beam, author, node, address)"
	"  SELECT space, beam, author, node, address FROM refs;"
	"DROP TABLE refs;"
	"ALTER TABLE refs5 RENAME TO refs;"
	"CREATE UNIQUE INDEX refs_beam ON refs (beam, space);",
	/* 6: refs found by the end of the beam's path (REF_IS); a ref
	 * named twice in a space is kept once (S_REF_HAS) */
	"DROP INDEX refs_beam;"
	"CREATE INDEX refs_tail ON refs (substr(beam, -12));",
};
const int nmigrations = (int)(sizeof(migrations) / sizeof(migrations[0]));

unsigned long
strhash(const char *s)
{
	unsigned long h = 1469598103934665603UL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211UL;
	return h;
}

int
word_index(const char *const *words, const char *s)
{
	for (int i = 0; words[i]; i++)
		if (strcmp(words[i], s) == 0)
			return i;
	return -1;
}

/* A string member of obj (borrowed) without NUL bytes inside, or NULL. */
const char *
sget(jv obj, const char *key)
{
	return jsonl_str(obj, key);
}

int
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
int
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

int
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

void
rst(struct log *L, enum stmt i)
{
	sqlite3_reset(L->st[i]);
}

const char *
col(struct log *L, enum stmt i, int c)
{
	const unsigned char *t = sqlite3_column_text(L->st[i], c);

	return t ? (const char *)t : "";
}

/* 1 if the query on (space, arg[, arg2]) has a row, 0 if not, -1. */
int
exists(struct log *L, enum stmt i, const char *space, const char *a,
    const char *b)
{
	int rc = b ? q(L, i, "ttt", space, a, b) : q(L, i, "tt", space, a);

	if (rc == 1)
		rst(L, i);
	return rc;
}

void
log_init(struct log *L, sqlite3 *db)
{
	memset(L, 0, sizeof(*L));
	L->db = db;
	for (int i = 0; i < S_N; i++)
		if (db_prepare(db, &L->st[i], sqls[i]) != 0)
			die("prepare: %s", sqlite3_errmsg(db));
}

void
log_free(struct log *L)
{
	cache_clear(L);
	buf_free(&L->scratch);
	buf_free(&L->body);
	buf_free(&L->evtext);
	db_close(L->db);
	L->db = NULL;
}

/* ---- the space cache ---- */

void
space_nodes_drop(struct space *sp)
{
	for (size_t i = 0; i < sp->ntn; i++)
		free(sp->tn[i].address);
	free(sp->tn);
	sp->tn = NULL;
	sp->ntn = 0;
	sp->tn_ok = 0;
}

static void
space_free(struct space *sp)
{
	space_nodes_drop(sp);
	free(sp->id);
	free(sp->owner);
	free(sp->name);
	free(sp->node);
	free(sp->address);
	free(sp);
}

void
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

struct space *
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
struct space *
space_find(struct log *L, const char *id, int *err)
{
	struct space *sp;
	const char *rt;
	int type, rc;
	jv rj;

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
	rt = col(L, S_SPACE_GET, 5);
	rj = canon_parse(rt, strlen(rt));
	if (rules_parse(rj, type, &sp->rules) != 0)
		warn("%.80s: stored rules unreadable; using defaults", id);
	jv_free(rj);
	sp->head = sqlite3_column_int64(L->st[S_SPACE_GET], 6);
	snprintf(sp->hash, sizeof(sp->hash), "%s", col(L, S_SPACE_GET, 7));
	rst(L, S_SPACE_GET);
	return sp;
}

void
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
int
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
