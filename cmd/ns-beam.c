/*
 * ns-beam: the author-side beam store.  With --bus it is a stage of a
 * node's ring, after ns-log, which decides every request on a beam against
 * the rules of the spaces that refer to it and sends on those it accepts:
 * beam.store (keep the beam of a sequenced ref, answer the author),
 * beam.read (answer a reader) and beam.bury (drop a deleted beam, keep its
 * tombstone).  Every other line passes on unchanged, in order.  Lines are
 * handled in batches, one transaction each; nothing leaves before its batch
 * is committed.  Without --bus, the commands put, get, delete and
 * list work on the same database.  Exit 0 at the end of input, 1 if a
 * command refused some input, 2 on usage or environment trouble.
 */
#include <getopt.h>
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
#include "msg.h"
#include "sig.h"
#include "span.h"

#define PROG "ns-beam"
#define VALUE_MAX (4 << 20)     /* longest input line or value */
#define BEAM_MAX (256 * 1024)   /* signed beam, canonical bytes */
#define EVENT_MAX (16 * 1024)   /* any other event, canonical bytes */
#define SPACE_MAX 256           /* longest space id kept in refs */
#define BATCH_DEFAULT 512
#define BATCH_LIMIT 65536
/* "beam/" authorHash "/" beamId */
#define PATH_LEN (5 + HASH_ID_LEN + 1 + HASH_ID_LEN)
#define PATH_ID (5 + HASH_ID_LEN + 1)   /* offset of beamId */

static const char *const migrations[] = {
	"CREATE TABLE beams ("
	"  path TEXT PRIMARY KEY,"
	"  author TEXT NOT NULL,"
	"  ts INTEGER NOT NULL,"
	"  body TEXT NOT NULL);"
	"CREATE TABLE tombstones ("
	"  path TEXT PRIMARY KEY,"
	"  author TEXT NOT NULL,"
	"  body TEXT NOT NULL);"
	"CREATE TABLE refs ("
	"  path TEXT NOT NULL,"
	"  space TEXT NOT NULL,"
	"  PRIMARY KEY (path, space)) WITHOUT ROWID;",
	/* 2: copies of other nodes' beams fetched for readers here */
	"ALTER TABLE beams ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;",
	/* 3: the first space that refers to a beam, in the beam's own row
	 * (refs holds the others): a beam stored with its ref writes one
	 * row, where refs, keyed by path, took a second at a random place
	 * and about half of the pages each commit wrote */
	"ALTER TABLE beams ADD COLUMN ref TEXT;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum {
	Q_BEAM, Q_PUT, Q_UNPUT, Q_TOMB, Q_BURY, Q_REF_ROW, Q_REF, Q_REFS,
	Q_CACHE, Q_UNREF_ROW, Q_UNREF, Q_NREFS, Q_KEEP_REF, Q_UNCACHE, Q_N
};

static const char *const queries[Q_N] = {
	[Q_BEAM] = "SELECT author, body FROM beams WHERE path = ?1",
	[Q_PUT] = "INSERT OR IGNORE INTO beams (path, author, ts, body, ref) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_UNPUT] = "DELETE FROM beams WHERE path = ?1",
	[Q_TOMB] = "SELECT author, body FROM tombstones WHERE path = ?1",
	[Q_BURY] = "INSERT OR IGNORE INTO tombstones (path, author, body) "
	    "VALUES (?1, ?2, ?3)",
	/* a beam's refs: its row's ref, and those in refs (ref_add) */
	[Q_REF_ROW] = "UPDATE beams SET ref = ?2 WHERE path = ?1 AND ref IS NULL "
	    "AND NOT EXISTS (SELECT 1 FROM refs WHERE path = ?1 AND space = ?2)",
	[Q_REF] = "INSERT OR IGNORE INTO refs (path, space) SELECT ?1, ?2 "
	    "WHERE NOT EXISTS (SELECT 1 FROM beams WHERE path = ?1 AND ref = ?2)",
	[Q_REFS] = "SELECT ref FROM beams WHERE path = ?1 AND ref IS NOT NULL "
	    "UNION SELECT space FROM refs WHERE path = ?1 ORDER BY 1",
	[Q_CACHE] = "INSERT OR IGNORE INTO beams (path, author, ts, body, "
	    "cached) VALUES (?1, ?2, ?3, ?4, 1)",
	[Q_UNREF_ROW] = "UPDATE beams SET ref = NULL WHERE path = ?1 AND ref = ?2",
	[Q_UNREF] = "DELETE FROM refs WHERE path = ?1 AND space = ?2",
	[Q_NREFS] = "SELECT (SELECT count(*) FROM beams WHERE path = ?1 AND "
	    "ref IS NOT NULL) + (SELECT count(*) FROM refs WHERE path = ?1)",
	/* before a row goes (?2 = 1: only a cached copy), its ref stays */
	[Q_KEEP_REF] = "INSERT OR IGNORE INTO refs (path, space) SELECT path, "
	    "ref FROM beams WHERE path = ?1 AND ref IS NOT NULL AND cached >= ?2",
	[Q_UNCACHE] = "DELETE FROM beams WHERE path = ?1 AND cached = 1",
};

struct store {
	const char *path;       /* of the database, for messages */
	sqlite3 *db;
	sqlite3_stmt *q[Q_N];
	const char *node;       /* --bus: this node's DID and address */
	const char *address;
	struct buf canon;       /* canonical bytes of the object at hand */
	struct buf scratch;     /* for sig_verify */
	struct buf author, body;        /* a row read back */
};

/* Why a request was refused: its protocol error and a message. */
struct verdict {
	enum bus_err e;
	const char *why;
};

/* A request of a --bus batch: where its output went, and what an error
 * answer needs in case the batch does not commit. */
struct item {
	size_t off, len;        /* its output in the batch buffer */
	int64_t conn, r;
	jv id;                  /* owned */
};

static void fetch_start(struct store *s, struct buf *out, struct bus_req *r,
    const char *path, const char *node, const char *address);

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-beam --bus -d DBFILE -n NODE_DID -a ADDRESS [--sync full|normal]\n"
	    "               [--batch N]\n"
	    "       ns-beam -d DBFILE [--sync full|normal] [--batch N] put | delete\n"
	    "       ns-beam -d DBFILE get PATH ...\n"
	    "       ns-beam -d DBFILE list\n"
	    "  -d, --db FILE       the beam database (created with put, delete, --bus)\n"
	    "      --bus           node mode, after ns-log on the ring: take beam.store,\n"
	    "                      beam.read and beam.bury, pass every other line on\n"
	    "  -n, --node DID      --bus: this node's DID\n"
	    "  -a, --address ADDR  --bus: this node's address\n"
	    "      --sync MODE     full (default) or normal: SQLite synchronous setting\n"
	    "      --batch N       lines handled per transaction at most (default %d)\n"
	    "  -h, --help          this help\n"
	    "      --version       print the version\n"
	    "commands: put (signed beams on stdin), get PATH..., delete (signed\n"
	    "tombstones on stdin), list\n", BATCH_DEFAULT);
	exit(status);
}

static int
streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* jsonl_str: NULL also for a string with a NUL inside.  obj is borrowed. */
static const char *
cstr(jv obj, const char *key)
{
	return jsonl_str(obj, key);
}

/* 1 if s is "beam/{authorHash}/{beamId}", both SHA-256 ids. */
static int
path_ok(const char *s)
{
	unsigned char raw[HASH_RAW_LEN];
	size_t n;

	if (!s || strlen(s) != PATH_LEN || memcmp(s, "beam/", 5) != 0 ||
	    s[PATH_ID - 1] != '/')
		return 0;
	if (b64url_decode(s + 5, HASH_ID_LEN, raw, sizeof(raw), &n) != 0 ||
	    n != sizeof(raw))
		return 0;
	if (b64url_decode(s + PATH_ID, HASH_ID_LEN, raw, sizeof(raw), &n) != 0 ||
	    n != sizeof(raw))
		return 0;
	return 1;
}

/* The path of a beam by author whose canonical bytes are p[0..n). */
static void
path_make(const char *author, const char *p, size_t n, char out[PATH_LEN + 1])
{
	memcpy(out, "beam/", 5);
	hash_id(author, strlen(author), out + 5);
	out[PATH_ID - 1] = '/';
	hash_id(p, n, out + PATH_ID);
}

static void
store_open(struct store *s, int rw, int sync_full)
{
	char err[512];

	if (rw)
		s->db = db_open(s->path, migrations, NMIGRATIONS, sync_full, err,
		    sizeof(err));
	else
		s->db = db_open_ro(s->path, migrations, NMIGRATIONS, err,
		    sizeof(err));
	if (!s->db)
		die("%s", err);
	for (int i = 0; i < Q_N; i++) {
		if (!rw && (i == Q_PUT || i == Q_UNPUT || i == Q_BURY ||
		    i == Q_REF_ROW || i == Q_REF || i == Q_CACHE ||
		    i == Q_UNREF_ROW || i == Q_UNREF || i == Q_KEEP_REF ||
		    i == Q_UNCACHE))
			continue;
		if (db_prepare(s->db, &s->q[i], queries[i]) != 0)
			die("%s: %s", s->path, sqlite3_errmsg(s->db));
	}
}

static void
store_close(struct store *s)
{
	db_close(s->db);        /* finalizes the statements too */
	buf_free(&s->canon);
	buf_free(&s->scratch);
	buf_free(&s->author);
	buf_free(&s->body);
}

static void
dberr(struct store *s)
{
	warn("%s: %s", s->path, sqlite3_errmsg(s->db));
}

static void
bind_text(sqlite3_stmt *st, int i, const char *p, size_t n)
{
	/* every statement is reset before the bytes go away */
	sqlite3_bind_text(st, i, p, (int)n, SQLITE_STATIC);
}

/* Run a statement that returns no rows: 0, or -1 (reported). */
static int
run(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		dberr(s);
		return -1;
	}
	return 0;
}

/* Note that space refers to path: in the beam's row when that has no ref
 * yet, in refs otherwise.  0, or -1 (reported). */
static int
ref_add(struct store *s, const char *path, const char *space)
{
	bind_text(s->q[Q_REF_ROW], 1, path, PATH_LEN);
	bind_text(s->q[Q_REF_ROW], 2, space, strlen(space));
	if (run(s, s->q[Q_REF_ROW]) != 0)
		return -1;
	if (sqlite3_changes(s->db) > 0)
		return 0;
	bind_text(s->q[Q_REF], 1, path, PATH_LEN);
	bind_text(s->q[Q_REF], 2, space, strlen(space));
	return run(s, s->q[Q_REF]);
}

/* Before path's row goes (with cached_only, only a copy of another node's
 * beam goes), its ref moves to refs, which outlive the content. */
static int
ref_keep(struct store *s, const char *path, int cached_only)
{
	bind_text(s->q[Q_KEEP_REF], 1, path, PATH_LEN);
	sqlite3_bind_int(s->q[Q_KEEP_REF], 2, cached_only);
	return run(s, s->q[Q_KEEP_REF]);
}

/* Copy text column i of st's current row into b (NUL-terminated). */
static void
column(struct buf *b, sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);

	buf_reset(b);
	if (!t || n < 0)
		n = 0;
	buf_add(b, n > 0 ? (const char *)t : "", (size_t)n);
}

/* Look path up with q (Q_BEAM or Q_TOMB); the row lands in s->author and
 * s->body.  1 found, 0 none, -1 database error (reported). */
static int
lookup(struct store *s, int q, const char *path)
{
	sqlite3_stmt *st = s->q[q];
	int rc;

	bind_text(st, 1, path, strlen(path));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		column(&s->author, st, 0);
		column(&s->body, st, 1);
		rc = 1;
	} else if (rc == SQLITE_DONE)
		rc = 0;
	else {
		dberr(s);
		rc = -1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

/* The spaces that refer to path, sorted, or jv_invalid() (reported). */
static jv
refs_of(struct store *s, const char *path)
{
	sqlite3_stmt *st = s->q[Q_REFS];
	jv a = jv_array();
	int rc;

	bind_text(st, 1, path, strlen(path));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		a = jv_array_append(a, jv_string_sized(
		    (const char *)sqlite3_column_text(st, 0),
		    sqlite3_column_bytes(st, 0)));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		dberr(s);
		jv_free(a);
		return jv_invalid();
	}
	return a;
}

/* The stored text in s->body parsed; jv_invalid() (reported) if the
 * database holds something that is not JSON. */
static jv
body_parse(struct store *s, const char *path)
{
	jv v = canon_parse(s->body.p ? s->body.p : "", s->body.len);

	if (!jv_is_valid(v))
		warn("%s: %s: stored text is not JSON", s->path, path);
	return v;
}

/*
 * Shape of a signed beam (borrowed): type "beam", author, ts and sig.  Its
 * canonical bytes go to s->canon and its path to path.  With verify, its
 * signature is checked too.  0, or -1 with v set.
 */
static int
beam_check(struct store *s, jv beam, int verify, char path[PATH_LEN + 1],
    struct verdict *v)
{
	const char *author;
	int64_t ts;

	v->e = E_BAD_EVENT;
	if (jv_get_kind(beam) != JV_KIND_OBJECT) {
		v->why = "beam is not an object";
		return -1;
	}
	if (!streq(cstr(beam, "type"), "beam")) {
		v->why = "beam type is not \"beam\"";
		return -1;
	}
	if (!(author = cstr(beam, "author"))) {
		v->why = "beam has no author";
		return -1;
	}
	if (jsonl_int(beam, "ts", &ts) != 0 || ts < 0) {
		v->why = "beam ts is not a non-negative integer";
		return -1;
	}
	if (!cstr(beam, "sig")) {
		v->why = "beam has no sig";
		return -1;
	}
	if (verify && sig_verify(beam, &s->scratch, &v->why) != 0) {
		v->e = E_BAD_SIG;
		return -1;
	}
	buf_reset(&s->canon);
	if (canon_dump(beam, NULL, &s->canon) != 0) {
		v->why = "beam is not representable in RFC 8785";
		return -1;
	}
	if (s->canon.len > BEAM_MAX) {
		v->e = E_TOO_LARGE;
		v->why = "beam larger than 256 KiB";
		return -1;
	}
	path_make(author, s->canon.p, s->canon.len, path);
	return 0;
}

/* Store the beam whose canonical bytes are in s->canon, with space (or
 * NULL) as the space that refers to it, unless path has a tombstone (then
 * *tomb is set to it, owned).  Stored already, the beam gets space as a
 * further ref.  0, or -1 on a database error (reported). */
static int
beam_put(struct store *s, jv beam, const char *path, const char *space,
    jv *tomb)
{
	sqlite3_stmt *st = s->q[Q_PUT];
	const char *author = cstr(beam, "author");
	int64_t ts = 0;
	int rc;

	*tomb = jv_invalid();
	if ((rc = lookup(s, Q_TOMB, path)) < 0)
		return -1;
	if (rc > 0) {
		*tomb = body_parse(s, path);
		return jv_is_valid(*tomb) ? 0 : -1;
	}
	jsonl_int(beam, "ts", &ts);
	bind_text(st, 1, path, PATH_LEN);
	bind_text(st, 2, author, strlen(author));
	sqlite3_bind_int64(st, 3, ts);
	bind_text(st, 4, s->canon.p, s->canon.len);
	if (space)
		bind_text(st, 5, space, strlen(space));
	if (run(s, st) != 0)
		return -1;
	return space && sqlite3_changes(s->db) == 0 ? ref_add(s, path, space) :
	    0;
}

/*
 * Delete the beam a signed tombstone t (borrowed) names.  On success the
 * result {"beam","spaces"} is in *res and the tombstone to send to each
 * space in *sent (both owned): t itself, or the tombstone stored before when
 * the beam was deleted already (the answer is the same again, and the same
 * tombstone goes out again, which ns-log takes as a duplicate).  Returns 0;
 * -1 with v set when refused; -2 on a database error (reported).
 */
static int
beam_bury(struct store *s, jv t, int keep, jv *res, jv *sent,
    struct verdict *v)
{
	const char *path, *author;
	jv spaces;
	int rc;

	*res = *sent = jv_invalid();
	v->e = E_BAD_EVENT;
	if (!streq(cstr(t, "type"), "beam.tombstone")) {
		v->why = "event is not a beam.tombstone";
		return -1;
	}
	if (!path_ok(path = cstr(t, "beam"))) {
		v->why = "tombstone beam is not a beam path";
		return -1;
	}
	if (!(author = cstr(t, "author"))) {
		v->why = "tombstone has no author";
		return -1;
	}
	buf_reset(&s->canon);
	if (canon_dump(t, NULL, &s->canon) != 0) {
		v->why = "tombstone is not representable in RFC 8785";
		return -1;
	}
	if (s->canon.len > EVENT_MAX) {
		v->e = E_TOO_LARGE;
		v->why = "tombstone larger than 16 KiB";
		return -1;
	}
	if ((rc = lookup(s, Q_TOMB, path)) < 0)
		return -2;
	if (rc > 0) {
		if (strcmp(s->author.p, author) != 0)
			goto forbidden;
		if (!jv_is_valid(*sent = body_parse(s, path)))
			return -2;
	} else {
		if ((rc = lookup(s, Q_BEAM, path)) < 0)
			return -2;
		if (rc == 0 && !keep) {
			v->e = E_NOT_FOUND;
			v->why = "no such beam on this node";
			return -1;
		}
		if (rc > 0 && strcmp(s->author.p, author) != 0)
			goto forbidden;
		bind_text(s->q[Q_BURY], 1, path, PATH_LEN);
		bind_text(s->q[Q_BURY], 2, author, strlen(author));
		bind_text(s->q[Q_BURY], 3, s->canon.p, s->canon.len);
		if (run(s, s->q[Q_BURY]) != 0 || ref_keep(s, path, 0) != 0)
			return -2;
		bind_text(s->q[Q_UNPUT], 1, path, PATH_LEN);
		if (run(s, s->q[Q_UNPUT]) != 0)
			return -2;
		*sent = jv_copy(t);
	}
	spaces = refs_of(s, path);
	if (!jv_is_valid(spaces)) {
		jv_free(*sent);
		*sent = jv_invalid();
		return -2;
	}
	*res = jv_object_set(jv_object(), jv_string("beam"), jv_string(path));
	*res = jv_object_set(*res, jv_string("spaces"), spaces);
	return 0;
forbidden:
	v->e = E_FORBIDDEN;
	v->why = "only the beam's author may delete it";
	return -1;
}

/*
 * --bus handlers, for the requests ns-log sends on once it has decided
 * them (share/doc/node.md): beam.store, beam.read, beam.bury.  Each
 * appends its output lines to out and returns 0, or -1 on a database
 * error: the batch is then rolled back and every request in it answered
 * internal.
 */

/* beam.store {"beam","result"}: the ref is sequenced; keep the beam and
 * answer result.  A beam deleted before stays deleted: gone. */
static int
bus_beam_store(struct store *s, struct buf *out, struct bus_req *r)
{
	jv beam = jsonl_get(r->params, "beam");
	jv result = jsonl_get(r->params, "result");
	jv tomb = jv_invalid();
	struct verdict v;
	int hold = jsonl_kind(r->params, "hold") == JV_KIND_TRUE;
	const char *space = hold ? cstr(r->params, "space") :
	    cstr(result, "space");
	char path[PATH_LEN + 1];
	int rc = 0;

	/* hold: kept while another node's space decides on its ref; ns-log
	 * answers then, and sends beam.drop if the ref is refused */
	if (jv_get_kind(beam) != JV_KIND_OBJECT || !space ||
	    (!hold && jv_get_kind(result) != JV_KIND_OBJECT)) {
		bus_error(out, r, E_INTERNAL, "beam.store without a beam and "
		    "a result");
		goto out;
	}
	if (beam_check(s, beam, 0, path, &v) != 0) {
		bus_error(out, r, v.e, v.why);
		goto out;
	}
	if (beam_put(s, beam, path, space, &tomb) != 0) {
		rc = -1;
		goto out;
	}
	if (jv_is_valid(tomb)) {
		bus_error_data(out, r, E_GONE, "the beam was deleted",
		    jv_object_set(jv_object(), jv_string("tombstone"), tomb));
		tomb = jv_invalid();
		goto out;
	}
	if (hold)
		goto out;
	bus_result(out, r, result);
	result = jv_invalid();
out:
	jv_free(beam);
	jv_free(result);
	jv_free(tomb);
	return rc;
}

/*
 * beam.store without building a value: the line as ns-log wrote it, whose
 * beam and result are canonical already (the bus invariant, checked here by
 * span_canonical), so the beam's bytes are stored as they stand and the
 * result goes back as it stands.  Parsing the line into jv and printing
 * its parts again cost more than the store itself.  1 when handled (it then
 * has its conn, r and id), 0 when the line needs bus_beam_store: a held
 * beam, a beam deleted before, anything unusual.  -1 on a database error.
 */
static int
beam_store_fast(struct store *s, struct buf *out, const char *p, size_t len,
    struct item *it)
{
	static const char *const top[] = { "c", "r", "id", "p" };
	static const char *const par[] = { "beam", "result", "hold" };
	static const char *const res[] = { "space" };
	static const char *const bm[] = { "author", "ts", "type", "sig" };
	struct span t[4], pv[3], rv[1], bv[4];
	char path[PATH_LEN + 1], space[SPACE_MAX + 1], author[DIDKEY_MAX];
	int64_t conn, r, ts;
	int rc;

	if (span_get(p, len, top, t, 4) != 0 || !t[0].p || !t[1].p ||
	    !t[3].p || span_int(t[0].p, t[0].len, &conn) != 0 ||
	    span_int(t[1].p, t[1].len, &r) != 0 || conn < 0 || r < 0 ||
	    (t[2].p && !span_canonical(t[2].p, t[2].len)) ||
	    span_get(t[3].p, t[3].len, par, pv, 3) != 0 || !pv[0].p ||
	    !pv[1].p || pv[2].p || pv[0].len > BEAM_MAX ||
	    !span_canonical(pv[0].p, pv[0].len) ||
	    !span_canonical(pv[1].p, pv[1].len) ||
	    span_get(pv[1].p, pv[1].len, res, rv, 1) != 0 || !rv[0].p ||
	    span_str(rv[0].p, rv[0].len, space, sizeof(space)) ||
	    span_get(pv[0].p, pv[0].len, bm, bv, 4) != 0 || !bv[0].p ||
	    !bv[1].p || !bv[2].p || !bv[3].p ||
	    span_str(bv[0].p, bv[0].len, author, sizeof(author)) ||
	    span_int(bv[1].p, bv[1].len, &ts) != 0 || ts < 0 ||
	    !span_is(&bv[2], "beam") ||
	    bv[3].p[0] != '"')
		return 0;
	/* the path the beam's own bytes make, as bus_beam_store finds it */
	path_make(author, pv[0].p, pv[0].len, path);
	if ((rc = lookup(s, Q_TOMB, path)) > 0)
		return 0;	/* deleted before: answered gone */
	it->conn = conn;
	it->r = r;
	it->id = t[2].p ? canon_parse(t[2].p, t[2].len) : jv_invalid();
	if (rc < 0)
		return -1;
	bind_text(s->q[Q_PUT], 1, path, PATH_LEN);
	bind_text(s->q[Q_PUT], 2, author, strlen(author));
	sqlite3_bind_int64(s->q[Q_PUT], 3, ts);
	bind_text(s->q[Q_PUT], 4, pv[0].p, pv[0].len);
	bind_text(s->q[Q_PUT], 5, space, strlen(space));
	if (run(s, s->q[Q_PUT]) != 0 || (sqlite3_changes(s->db) == 0 &&
	    ref_add(s, path, space) != 0))
		return -1;
	/* what bus_result writes: {"to","r","msg":{"id","jsonrpc","result"}},
	 * or the bare end of a notification */
	buf_addf(out, "{\"to\":%lld,\"r\":%lld", (long long)conn,
	    (long long)r);
	if (t[2].p) {
		buf_adds(out, ",\"msg\":{\"id\":");
		buf_add(out, t[2].p, t[2].len);
		buf_adds(out, ",\"jsonrpc\":\"2.0\",\"result\":");
		buf_add(out, pv[1].p, pv[1].len);
		buf_addc(out, '}');
	}
	buf_adds(out, "}\n");
	return 1;
}

/* beam.read {"beam"}: the reader may read it; answer from the store. */
static int
bus_beam_read(struct store *s, struct buf *out, struct bus_req *r)
{
	const char *path = cstr(r->params, "beam");
	char id[HASH_ID_LEN + 1];
	jv v = jv_invalid();
	int rc;

	if (!path_ok(path)) {
		bus_error(out, r, E_PARAMS, "beam is not a beam path");
		return 0;
	}
	if ((rc = lookup(s, Q_TOMB, path)) < 0)
		return -1;
	if (rc > 0) {
		if (!jv_is_valid(v = body_parse(s, path)))
			goto internal;
		bus_error_data(out, r, E_GONE, "the beam was deleted",
		    jv_object_set(jv_object(), jv_string("tombstone"), v));
		return 0;
	}
	if ((rc = lookup(s, Q_BEAM, path)) < 0)
		return -1;
	if (rc == 0) {
		const char *node = cstr(r->params, "node");
		const char *address = cstr(r->params, "address");

		/* stored on the node its ref names: fetched from there */
		if (node && address && !streq(node, s->node)) {
			fetch_start(s, out, r, path, node, address);
			return 0;
		}
		bus_error(out, r, E_NOT_FOUND, "no such beam on this node");
		return 0;
	}
	hash_id(s->body.p, s->body.len, id);
	if (memcmp(id, path + PATH_ID, HASH_ID_LEN) != 0) {
		warn("%s: %s: stored beam does not hash to its path", s->path,
		    path);
		goto internal;
	}
	if (!jv_is_valid(v = body_parse(s, path)))
		goto internal;
	bus_result(out, r, jv_object_set(jv_object(), jv_string("beam"), v));
	return 0;
internal:
	jv_free(v);
	bus_error(out, r, E_INTERNAL, "stored beam is damaged");
	return 0;
}

/*
 * beam.bury {"event","spaces"}: the tombstone is in those spaces; drop the
 * content, keep the tombstone, answer {"beam","spaces"}.  A beam this node
 * never stored is not_found, unless a space held a ref to it (the author
 * beamed it through another node): its tombstone is kept all the same.
 */
static int
bus_beam_bury(struct store *s, struct buf *out, struct bus_req *r)
{
	jv t = jsonl_get(r->params, "event");
	jv spaces = jsonl_get(r->params, "spaces");
	jv res = jv_invalid(), sent = jv_invalid();
	struct verdict v;
	const char *path;
	int rc = 0;

	if (jv_get_kind(t) != JV_KIND_OBJECT ||
	    jv_get_kind(spaces) != JV_KIND_ARRAY) {
		bus_error(out, r, E_INTERNAL, "beam.bury without an event and "
		    "spaces");
		goto out;
	}
	switch (beam_bury(s, t, jv_array_length(jv_copy(spaces)) > 0, &res,
	    &sent, &v)) {
	case -1:
		bus_error(out, r, v.e, v.why);
		goto out;
	case -2:
		rc = -1;
		goto out;
	}
	path = cstr(t, "beam");
	jv_free(res);
	res = jv_object_set(jv_object(), jv_string("beam"), jv_string(path));
	res = jv_object_set(res, jv_string("spaces"), spaces);
	spaces = jv_invalid();
	bus_result(out, r, res);
	res = jv_invalid();
out:
	jv_free(t);
	jv_free(spaces);
	jv_free(res);
	jv_free(sent);
	return rc;
}

/* beam.drop {"beam","space"}: another node's space refused the ref of a
 * beam held for it.  The beam goes unless another space refers to it. */
static int
bus_beam_drop(struct store *s, struct buf *out, struct bus_req *r)
{
	const char *path = cstr(r->params, "beam");
	const char *space = cstr(r->params, "space");
	sqlite3_stmt *st = s->q[Q_NREFS];
	int64_t left = 0;
	int rc;

	if (!path_ok(path) || !space) {
		bus_done(out, r);
		return 0;
	}
	bind_text(s->q[Q_UNREF_ROW], 1, path, PATH_LEN);
	bind_text(s->q[Q_UNREF_ROW], 2, space, strlen(space));
	if (run(s, s->q[Q_UNREF_ROW]) != 0)
		return -1;
	bind_text(s->q[Q_UNREF], 1, path, PATH_LEN);
	bind_text(s->q[Q_UNREF], 2, space, strlen(space));
	if (run(s, s->q[Q_UNREF]) != 0)
		return -1;
	bind_text(st, 1, path, PATH_LEN);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		left = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW) {
		dberr(s);
		return -1;
	}
	if (left == 0) {
		bind_text(s->q[Q_UNPUT], 1, path, PATH_LEN);
		if (run(s, s->q[Q_UNPUT]) != 0)
			return -1;
	}
	bus_done(out, r);
	return 0;
}

/* beam.uncache {"beam","tombstone"}: a space took the beam's tombstone.
 * A copy fetched from another node goes; the tombstone answers reads. */
static int
bus_beam_uncache(struct store *s, struct buf *out, struct bus_req *r)
{
	const char *path = cstr(r->params, "beam");
	jv t = jsonl_get(r->params, "tombstone");
	const char *author = cstr(t, "author");
	int rc = 0;

	if (!path_ok(path) || !author || jv_get_kind(t) != JV_KIND_OBJECT)
		goto out;
	if (ref_keep(s, path, 1) != 0) {
		rc = -1;
		goto out;
	}
	bind_text(s->q[Q_UNCACHE], 1, path, PATH_LEN);
	if (run(s, s->q[Q_UNCACHE]) != 0) {
		rc = -1;
		goto out;
	}
	buf_reset(&s->canon);
	if (canon_dump(t, NULL, &s->canon) != 0)
		goto out;
	bind_text(s->q[Q_BURY], 1, path, PATH_LEN);
	bind_text(s->q[Q_BURY], 2, author, strlen(author));
	bind_text(s->q[Q_BURY], 3, s->canon.p, s->canon.len);
	if (run(s, s->q[Q_BURY]) != 0)
		rc = -1;
out:
	jv_free(t);
	bus_done(out, r);
	return rc;
}

/* ---- beams of other nodes ---- */

#define FETCH_MS 10000		/* the storing node has this long */
#define BEAM_ID "\"id\":\"beam:"	/* the ids of our requests, on the bus */

/* A read waiting for the node that stores the beam. */
struct fetch {
	struct fetch *next;
	char id[48];
	int64_t conn, r;
	jv rid;
	char path[PATH_LEN + 1];
	char node[DIDKEY_MAX];
	int64_t deadline;
};

static struct fetch *fetches;
static unsigned long fetch_seq;
static int64_t fetch_epoch;

static struct bus_req
fetch_req(const struct fetch *f)
{
	struct bus_req r = {
		.line = jv_invalid(), .conn = f->conn, .r = f->r,
		.id = f->rid, .params = jv_invalid(),
	};
	return r;
}

static void
fetch_free(struct fetch *f)
{
	jv_free(f->rid);
	free(f);
}

static struct fetch *
fetch_take(const char *id)
{
	struct fetch **pp, *f;

	for (pp = &fetches; (f = *pp); pp = &f->next)
		if (strcmp(f->id, id) == 0) {
			*pp = f->next;
			return f;
		}
	return NULL;
}

/* Ask node, at address, for the beam at path on behalf of r. */
static void
fetch_start(struct store *s, struct buf *out, struct bus_req *r,
    const char *path, const char *node, const char *address)
{
	struct fetch *f = xcalloc(1, sizeof(*f));

	(void)s;
	if (!fetch_epoch)
		fetch_epoch = jsonl_now_ms();
	snprintf(f->id, sizeof(f->id), "beam:%lld.%lu", (long long)fetch_epoch,
	    ++fetch_seq);
	f->conn = r->conn;
	f->r = r->r;
	f->rid = jv_copy(r->id);
	snprintf(f->path, sizeof(f->path), "%s", path);
	snprintf(f->node, sizeof(f->node), "%s", node);
	f->deadline = jsonl_now_ms() + FETCH_MS;
	f->next = fetches;
	fetches = f;
	buf_adds(out, "{\"m\":\"peer.send\",\"p\":{\"node\":");
	bus_json(out, jv_string(node));
	buf_adds(out, ",\"address\":");
	bus_json(out, jv_string(address));
	buf_addf(out, ",\"msg\":{\"id\":\"%s\",\"jsonrpc\":\"2.0\","
	    "\"method\":\"beam.get\",\"params\":{\"beam\":\"%s\"}}}}\n",
	    f->id, path);
}

/* A beam or tombstone (borrowed) another node sent for path: it must be
 * the one the path names, signed by its author.  0 or -1. */
static int
fetched_ok(struct store *s, jv obj, const char *path, int tomb)
{
	char id[HASH_ID_LEN + 1], ah[HASH_ID_LEN + 1];
	const char *author = cstr(obj, "author"), *why;

	if (jv_get_kind(obj) != JV_KIND_OBJECT || !author)
		return -1;
	hash_id(author, strlen(author), ah);
	if (memcmp(ah, path + 5, HASH_ID_LEN) != 0)
		return -1;
	if (sig_verify(obj, &s->scratch, &why) != 0)
		return -1;
	if (tomb)
		return streq(cstr(obj, "type"), "beam.tombstone") &&
		    streq(cstr(obj, "beam"), path) ? 0 : -1;
	buf_reset(&s->canon);
	if (canon_dump(obj, NULL, &s->canon) != 0 || s->canon.len > BEAM_MAX)
		return -1;
	hash_id(s->canon.p, s->canon.len, id);
	return memcmp(id, path + PATH_ID, HASH_ID_LEN) == 0 ? 0 : -1;
}

/* rpc.response to one of our beam.get requests (the response in r's
 * params): check what came, keep a copy, answer the reader. */
static int
bus_fetched(struct store *s, struct buf *out, struct bus_req *r)
{
	const char *id = cstr(r->params, "id");
	jv result = jsonl_get(r->params, "result");
	jv err = jsonl_get(r->params, "error"), data = jsonl_get(err, "data");
	jv beam = jsonl_get(result, "beam"), t = jsonl_get(data, "tombstone");
	struct fetch *f = id ? fetch_take(id) : NULL;
	struct bus_req q;
	int rc = 0;

	bus_done(out, r);
	if (!f)
		goto out;
	q = fetch_req(f);
	if (!r->did || strcmp(r->did, f->node) != 0) {
		bus_error(&*out, &q, E_INTERNAL, "the answer came from another "
		    "node");
		goto out;
	}
	if (jv_get_kind(beam) == JV_KIND_OBJECT) {
		if (fetched_ok(s, beam, f->path, 0) != 0) {
			bus_error(out, &q, E_INTERNAL, "the storing node sent a "
			    "beam that does not match its path");
			goto out;
		}
		bind_text(s->q[Q_CACHE], 1, f->path, PATH_LEN);
		bind_text(s->q[Q_CACHE], 2, cstr(beam, "author"),
		    strlen(cstr(beam, "author")));
		int64_t ts = 0;
		jsonl_int(beam, "ts", &ts);
		sqlite3_bind_int64(s->q[Q_CACHE], 3, ts);
		bind_text(s->q[Q_CACHE], 4, s->canon.p, s->canon.len);
		if (run(s, s->q[Q_CACHE]) != 0) {
			rc = -1;
			goto out;
		}
		bus_result(out, &q, jv_object_set(jv_object(),
		    jv_string("beam"), jv_copy(beam)));
		goto out;
	}
	if (jv_get_kind(t) == JV_KIND_OBJECT && fetched_ok(s, t, f->path,
	    1) == 0) {
		const char *author = cstr(t, "author");
		buf_reset(&s->canon);
		canon_dump(t, NULL, &s->canon);
		bind_text(s->q[Q_BURY], 1, f->path, PATH_LEN);
		bind_text(s->q[Q_BURY], 2, author, strlen(author));
		bind_text(s->q[Q_BURY], 3, s->canon.p, s->canon.len);
		if (run(s, s->q[Q_BURY]) != 0) {
			rc = -1;
			goto out;
		}
		bus_error_data(out, &q, E_GONE, "the beam was deleted",
		    jv_object_set(jv_object(), jv_string("tombstone"),
		    jv_copy(t)));
		goto out;
	}
	bus_error(out, &q, E_NOT_FOUND, "the node that stores the beam does "
	    "not have it, or does not let this node read it");
out:
	if (f)
		fetch_free(f);
	jv_free(result);
	jv_free(err);
	jv_free(data);
	jv_free(beam);
	jv_free(t);
	return rc;
}

/* peer.fail for one of our requests: the storing node is unreachable. */
static void
fetch_failed(struct buf *out, const char *id, const char *why)
{
	struct fetch *f = fetch_take(id);
	struct bus_req q;
	char msg[160];

	if (!f)
		return;
	q = fetch_req(f);
	snprintf(msg, sizeof(msg), "the node that stores the beam could not be "
	    "reached: %.80s", why ? why : "no link");
	bus_error(out, &q, E_UNREACHABLE, msg);
	fetch_free(f);
}

static void
fetch_tick(struct buf *out, int64_t now)
{
	struct fetch **pp = &fetches, *f;

	while ((f = *pp)) {
		if (f->deadline > now) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		struct bus_req q = fetch_req(f);
		bus_error(out, &q, E_UNREACHABLE, "the node that stores the "
		    "beam did not answer in time");
		fetch_free(f);
	}
}

/* Write n bytes to stdout, dying on failure. */
static void
put_out(const char *p, size_t n)
{
	if (n > 0 && fwrite(p, 1, n, stdout) != n)
		die("stdout:");
}

/* buf_add that takes an empty range from a buffer never written. */
static void
add(struct buf *b, const char *p, size_t n)
{
	if (n > 0)
		buf_add(b, p, n);
}

/* The batch's transaction begins at its first request. */
static void
batch_begin(struct store *s, int *began, int *failed)
{
	if (*began || *failed)
		return;
	if (db_begin(s->db) == 0)
		*began = 1;
	else {
		dberr(s);
		*failed = 1;
	}
}

/*
 * The ring stage.  A batch is every line already waiting (at most batch):
 * owned requests are handled inside one transaction begun at the first of
 * them, other lines are copied; after the commit the whole batch's output
 * leaves in input order.  If the batch fails, its requests are answered
 * internal instead and their effects rolled back.
 */
static int
run_bus(struct store *s, size_t batch)
{
	struct item *items = xcalloc(batch, sizeof(*items));
	struct buf out = BUF_INIT, redo = BUF_INIT;
	struct jsonin in;
	unsigned long lineno;
	const char *why;
	size_t lines, n, len;
	char *p;
	int r = JSONIN_VALUE;

	jsonl_big_pipe(STDOUT_FILENO);
	jsonin_init(&in, STDIN_FILENO, BUS_LINE_MAX);
	jsonin_lines(&in);
	while (r != JSONIN_EOF) {
		int began = 0, failed = 0;

		buf_reset(&out);
		n = 0;
		for (lines = 0; lines < batch &&
		    (lines == 0 || !jsonin_would_block(&in)); lines++) {
			int (*handle)(struct store *, struct buf *,
			    struct bus_req *);
			struct bus_req req;
			struct item *it;

			r = jsonin_next(&in, &p, &len, &lineno, &why);
			if (r == JSONIN_EOF)
				break;
			if (r == JSONIN_ERROR)
				die("stdin:");
			if (r == JSONIN_BAD) {
				warn("line %lu: %s", lineno, why);
				continue;
			}
			if (bus_is(p, len, "beam.store")) {
				int fast = 0;

				if (!failed) {
					batch_begin(s, &began, &failed);
					it = &items[n];
					it->off = out.len;
					if (!failed)
						fast = beam_store_fast(s, &out,
						    p, len, it);
				}
				if (fast != 0) {
					if (fast < 0)
						failed = 1;
					it->len = out.len - it->off;
					n++;
					continue;
				}
				handle = bus_beam_store;
			} else if (bus_is(p, len, "beam.read"))
				handle = bus_beam_read;
			else if (bus_is(p, len, "beam.bury"))
				handle = bus_beam_bury;
			else if (bus_is(p, len, "beam.drop"))
				handle = bus_beam_drop;
			else if (bus_is(p, len, "beam.uncache"))
				handle = bus_beam_uncache;
			else if (bus_is(p, len, "rpc.response") &&
			    memmem(p, len, BEAM_ID, sizeof(BEAM_ID) - 1))
				handle = bus_fetched;
			else if (bus_is(p, len, "peer.fail") &&
			    memmem(p, len, BEAM_ID, sizeof(BEAM_ID) - 1)) {
				if (bus_parse(p, len, &req) == 0) {
					fetch_failed(&out, cstr(req.params, "id"),
					    cstr(req.params, "reason"));
					bus_req_free(&req);
				}
				continue;
			} else {
				if (bus_is(p, len, "tick"))
					fetch_tick(&out, jsonl_now_ms());
				buf_add(&out, p, len);
				buf_addc(&out, '\n');
				continue;
			}
			if (bus_parse(p, len, &req) != 0) {
				warn("line %lu: not a valid request", lineno);
				continue;
			}
			batch_begin(s, &began, &failed);
			it = &items[n++];
			it->off = out.len;
			it->conn = req.conn;
			it->r = req.r;
			it->id = jv_copy(req.id);
			if (!failed && handle(s, &out, &req) != 0)
				failed = 1;
			it->len = out.len - it->off;
			bus_req_free(&req);
		}
		if (began && !failed && db_commit(s->db) != 0) {
			dberr(s);
			failed = 1;
		}
		if (failed) {
			size_t at = 0;

			if (began && db_rollback(s->db) != 0)
				dberr(s);
			buf_reset(&redo);
			for (size_t i = 0; i < n; i++) {
				struct bus_req sender = {	/* whom to answer */
					.line = jv_invalid(), .conn = items[i].conn,
					.r = items[i].r, .id = items[i].id,
					.params = jv_invalid(),
				};
				add(&redo, out.p + at, items[i].off - at);
				bus_error(&redo, &sender, E_INTERNAL,
				    "the beam store failed; retry later");
				at = items[i].off + items[i].len;
			}
			add(&redo, out.p + at, out.len - at);
			put_out(redo.p, redo.len);
		} else
			put_out(out.p, out.len);
		for (size_t i = 0; i < n; i++) {
			jv_free(items[i].id);
			items[i].id = jv_invalid();
		}
		if ((r == JSONIN_EOF || jsonin_would_block(&in)) &&
		    jsonl_flush() != 0)
			die("stdout:");
	}
	jsonin_free(&in);
	buf_free(&out);
	buf_free(&redo);
	free(items);
	return 0;
}

/* Standalone put / delete: one value from stdin.  Appends the output line
 * to out; 0, -1 when refused (reported), -2 on a database error. */
static int
cmd_put(struct store *s, struct buf *out, jv v, unsigned long lineno)
{
	struct verdict vd;
	char path[PATH_LEN + 1];
	jv tomb;

	if (beam_check(s, v, 1, path, &vd) != 0) {
		warn("line %lu: %s", lineno, vd.why);
		return -1;
	}
	if (beam_put(s, v, path, NULL, &tomb) != 0)
		return -2;
	if (jv_is_valid(tomb)) {
		jv_free(tomb);
		warn("line %lu: %s: deleted", lineno, path);
		return -1;
	}
	buf_addf(out, "{\"beam\":\"%s\"}\n", path);
	return 0;
}

static int
cmd_delete(struct store *s, struct buf *out, jv v, unsigned long lineno)
{
	struct verdict vd;
	const char *why;
	jv res, sent;

	if (event_verify(v, &s->scratch, &why) != 0) {
		warn("line %lu: %s", lineno, why);
		return -1;
	}
	switch (beam_bury(s, v, 0, &res, &sent, &vd)) {
	case -1:
		warn("line %lu: %s", lineno, vd.why);
		return -1;
	case -2:
		return -2;
	}
	jv_free(sent);
	if (canon_dump(res, NULL, out) != 0)
		die("cannot serialize a result");
	buf_addc(out, '\n');
	jv_free(res);
	return 0;
}

static int
run_stdin(struct store *s, size_t batch,
    int (*handle)(struct store *, struct buf *, jv, unsigned long))
{
	struct buf out = BUF_INIT;
	struct jsonin in;
	unsigned long lineno, refused = 0;
	const char *why;
	size_t n, len;
	char *p;
	int r = 0;

	jsonin_init(&in, STDIN_FILENO, VALUE_MAX);
	while (r != JSONIN_EOF) {
		int began = 0;

		buf_reset(&out);
		for (n = 0; n < batch && (n == 0 || !jsonin_would_block(&in));
		    n++) {
			r = jsonin_next(&in, &p, &len, &lineno, &why);
			if (r == JSONIN_EOF)
				break;
			if (r == JSONIN_ERROR)
				die("stdin:");
			if (r == JSONIN_BAD) {
				warn("line %lu: %s", lineno, why);
				refused++;
				continue;
			}
			jv v = canon_parse(p, len);
			if (!jv_is_valid(v)) {
				jv msg = jv_invalid_get_msg(v);
				warn("line %lu: %s", lineno,
				    jv_get_kind(msg) == JV_KIND_STRING ?
				    jv_string_value(msg) : "invalid JSON");
				jv_free(msg);
				refused++;
				continue;
			}
			if (jv_get_kind(v) != JV_KIND_OBJECT) {
				warn("line %lu: not a JSON object", lineno);
				jv_free(v);
				refused++;
				continue;
			}
			if (!began) {
				if (db_begin(s->db) != 0)
					die("%s: %s", s->path,
					    sqlite3_errmsg(s->db));
				began = 1;
			}
			int rc = handle(s, &out, v, lineno);
			jv_free(v);
			if (rc == -2)
				die("%s: cannot store", s->path);
			if (rc != 0)
				refused++;
		}
		if (began && db_commit(s->db) != 0)
			die("%s: commit: %s", s->path, sqlite3_errmsg(s->db));
		put_out(out.p, out.len);
		if (jsonl_flush() != 0)
			die("stdout:");
	}
	jsonin_free(&in);
	buf_free(&out);
	return refused ? 1 : 0;
}

static int
cmd_get(struct store *s, char **paths, int n)
{
	char id[HASH_ID_LEN + 1];
	int refused = 0, rc;

	for (int i = 0; i < n; i++) {
		const char *path = paths[i];

		if (!path_ok(path)) {
			warn("%.100s: not a beam path", path);
			refused = 1;
			continue;
		}
		if ((rc = lookup(s, Q_TOMB, path)) < 0)
			exit(2);
		if (rc > 0) {
			/* the tombstone is the answer, but not a beam */
			buf_reset(&s->canon);
			buf_adds(&s->canon, "{\"tombstone\":");
			buf_add(&s->canon, s->body.p, s->body.len);
			buf_addc(&s->canon, '}');
			if (jsonl_write(s->canon.p, s->canon.len) != 0)
				die("stdout:");
			warn("%s: deleted", path);
			refused = 1;
			continue;
		}
		if ((rc = lookup(s, Q_BEAM, path)) < 0)
			exit(2);
		if (rc == 0) {
			warn("%s: not found", path);
			refused = 1;
			continue;
		}
		hash_id(s->body.p, s->body.len, id);
		if (memcmp(id, path + PATH_ID, HASH_ID_LEN) != 0) {
			warn("%s: stored beam does not hash to its path", path);
			refused = 1;
			continue;
		}
		if (jsonl_write(s->body.p, s->body.len) != 0)
			die("stdout:");
	}
	if (jsonl_flush() != 0)
		die("stdout:");
	return refused;
}

static int
cmd_list(struct store *s)
{
	sqlite3_stmt *st;
	int rc;

	/* the beams authored here, not the copies fetched for readers */
	if (db_prepare(s->db, &st, "SELECT path, author, ts, "
	    "length(CAST(body AS BLOB)) FROM beams WHERE cached = 0 "
	    "ORDER BY ts, path") != 0)
		die("%s: %s", s->path, sqlite3_errmsg(s->db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		jv o = jv_object();

		o = jv_object_set(o, jv_string("beam"), jv_string_sized(
		    (const char *)sqlite3_column_text(st, 0),
		    sqlite3_column_bytes(st, 0)));
		o = jv_object_set(o, jv_string("author"), jv_string_sized(
		    (const char *)sqlite3_column_text(st, 1),
		    sqlite3_column_bytes(st, 1)));
		o = jv_object_set(o, jv_string("ts"),
		    jv_number((double)sqlite3_column_int64(st, 2)));
		o = jv_object_set(o, jv_string("size"),
		    jv_number((double)sqlite3_column_int64(st, 3)));
		if (jsonl_emit(o) != 0)
			die("stdout:");
	}
	if (rc != SQLITE_DONE)
		die("%s: %s", s->path, sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	if (jsonl_flush() != 0)
		die("stdout:");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "bus", no_argument, NULL, 'b' },
		{ "node", required_argument, NULL, 'n' },
		{ "address", required_argument, NULL, 'a' },
		{ "sync", required_argument, NULL, 's' },
		{ "batch", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct store s;
	unsigned char pk[32];
	const char *cmd = NULL, *why;
	int c, bus = 0, sync_full = 1, rc;
	unsigned long batch = BATCH_DEFAULT;

	prog = PROG;
	memset(&s, 0, sizeof(s));
	while ((c = getopt_long(argc, argv, "d:n:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			s.path = optarg;
			break;
		case 'b':
			bus = 1;
			break;
		case 'n':
			s.node = optarg;
			break;
		case 'a':
			s.address = optarg;
			break;
		case 's':
			if (strcmp(optarg, "full") == 0)
				sync_full = 1;
			else if (strcmp(optarg, "normal") == 0)
				sync_full = 0;
			else {
				warn("--sync: full or normal, not %.40s", optarg);
				usage(2);
			}
			break;
		case 'B':
			batch = (size_t)xnum("--batch", optarg, 1, BATCH_LIMIT);
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
	if (!s.path) {
		warn("-d DBFILE is required");
		usage(2);
	}
	if (bus) {
		if (optind != argc || !s.node || !s.address || !*s.address) {
			warn("--bus needs -n NODE_DID and -a ADDRESS, and no command");
			usage(2);
		}
		if (didkey_decode(s.node, pk, &why) != 0) {
			warn("-n: %.80s: %s", s.node, why);
			usage(2);
		}
	} else {
		if (optind == argc)
			usage(2);
		cmd = argv[optind++];
		if (s.node || s.address) {
			warn("-n and -a go with --bus");
			usage(2);
		}
		if (strcmp(cmd, "get") == 0 ? optind == argc :
		    (strcmp(cmd, "put") != 0 && strcmp(cmd, "delete") != 0 &&
		    strcmp(cmd, "list") != 0) || optind != argc)
			usage(2);
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	store_open(&s, bus || strcmp(cmd, "put") == 0 ||
	    strcmp(cmd, "delete") == 0, sync_full);

	if (bus)
		rc = run_bus(&s, batch);
	else if (strcmp(cmd, "put") == 0)
		rc = run_stdin(&s, batch, cmd_put);
	else if (strcmp(cmd, "delete") == 0)
		rc = run_stdin(&s, batch, cmd_delete);
	else if (strcmp(cmd, "get") == 0)
		rc = cmd_get(&s, argv + optind, argc - optind);
	else
		rc = cmd_list(&s);
	store_close(&s);
	return rc;
}
