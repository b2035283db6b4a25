/*
 * Reports on a log database, for the shell: the spaces, a space's history
 * and members, and verify, which replays every log from seq 1 and checks
 * it as another node would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "db.h"
#include "event.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

static struct space *
report_space(struct log *L, const char *id)
{
	struct space *sp;
	int err;

	if (!(sp = space_find(L, id, &err)) && !err)
		warn("%.80s: no such space", id);
	return sp;
}

int
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
		o = jv_object_set(o, jv_string("node"),
		    jv_string(col(L, S_SPACES, 5)));
		o = jv_object_set(o, jv_string("head"), jv_number((double)
		    sqlite3_column_int64(L->st[S_SPACES], 4)));
		if (jsonl_emit(o) != 0)
			die("stdout:");
	}
	return rc < 0 ? 2 : 0;
}

int
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

int
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
			if (check_event(mem, ev, NULL, id, ts, &ei, &e, &why) != 0)
				;
			else if (strcmp(ei.id, col(src, S_ENV_ALL, 1)) != 0)
				why = "stored event id is not the event's";
			else if ((seq == 1) != (ei.type == T_CREATE))
				why = seq == 1 ? "seq 1 is not a space.create" :
				    "space.create after seq 1";
			else if (seq == 1 && strcmp(ei.node, owner) != 0)
				why = "seq 1 is not signed by the node it names";
			else if (!(msp = space_find(mem, id, &err)) &&
			    (err || seq > 1))
				why = "replay failed";
			else if ((dup = msp ? q(mem, S_ENV_DUP, "tit", id,
			    ei.ts, ei.id) : 0) != 0) {
				if (dup > 0)
					rst(mem, S_ENV_DUP);
				why = dup < 0 ? "replay failed" : "event repeated";
			}
			else if (admit(mem, msp, &ei, &e, &why) != 0)
				;
			else if (apply(mem, &msp, &ei) != 0 ||
			    q(mem, S_ENV_INS, "tiittt", id, seq, ei.ts, ei.id,
			    hash, "") < 0)
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

int
cmd_verify(struct log *src, const char *id)
{
	struct log mem;
	char err[512];
	char **ids = NULL;
	size_t n = 0;
	int rc, status = 0;
	sqlite3 *db;

	if (!(db = db_open(":memory:", migrations, nmigrations, 0, err,
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
	log_free(&mem);
	return status;
}
