/*
 * ns-log: the stage that owns spaces.  With --bus it decides every request
 * that touches a space against the space's rules: an accepted event is
 * sequenced into the space's hash chain in an envelope signed by the node
 * key, stored, and answered ("to" line, then "pub" line) after the batch's
 * commit; a beam with its ref goes on to ns-beam only once the ref is
 * sequenced (beam.store), a delete once its tombstones are (beam.bury), a
 * read of a beam once the reader may read it (beam.read).  Other lines
 * pass unchanged, in order.  Without --bus it reports on a database:
 * spaces, history, members, verify.  Exit 0 at EOF or when all is well, 1
 * when a space is unknown or does not verify, 2 on usage or setup trouble.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "db.h"
#include "jsonin.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

/* The methods this stage takes. */
enum method {
	M_CREATE, M_JOIN, M_LEAVE, M_INVITE, M_REMOVE, M_RULES, M_APPEND,
	M_BEAM, M_DELETE, M_GET,
	M_HISTORY, M_MEMBERS, M_INFO, M_SUB, M_UNSUB, M_RESTORE,
	M_SUBMIT, M_BROADCAST, M_HEAD, M_SYNC, M_RESPONSE, M_FAIL, M_FOLLOWS,
	M_STREAM,	/* and the stream methods after it, in ST_ order */
};
static const char *const methods[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "log.append",
	"space.beam", "beam.delete", "beam.get",
	"space.history", "space.members", "space.info", "subscribe",
	"unsubscribe", "sub.restore",
	"node.submit", "node.broadcast", "node.head", "node.sync",
	"rpc.response", "peer.fail", "log.follows",
	"stream.push", "stream.watch", "stream.unwatch", "stream.recent",
	"relay.join", "relay.attach", "relay.fetch", NULL,
};

/* One line of a batch: where its output lies in the batch buffer, and for
 * a request, whom to tell if the commit fails. */
struct item {
	size_t start, end;
	int req;
	int64_t conn, r;
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
 * instead, nothing is published, other lines go on as they came.  What
 * this stage knows of subscriptions may now differ from ns-serve's: it
 * asks for them again. */
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
		struct bus_req r = {
			.line = jv_invalid(), .conn = it->conn, .r = it->r,
			.id = it->id, .params = jv_invalid(),
		};
		bus_error(&nb, &r, E_INTERNAL, "the node failed to store the "
		    "request; retry");
	}
	subs_clear();
	buf_adds(&nb, "{\"resync\":\"subs\"}\n");
	buf_free(out);
	*out = nb;
}

/* Lines of ns-serve about connections, which this stage watches and
 * passes on: conn.close ends a connection's subscriptions, conn.reset
 * (a new ns-serve) all of them. */
static void
watch(const char *p, size_t len)
{
	struct bus_req r;

	if (bus_is(p, len, "conn.reset")) {
		subs_clear();
		return;
	}
	if (bus_is(p, len, "conn.close") && bus_parse(p, len, &r) == 0) {
		if (r.conn >= 0)
			subs_conn_gone(r.conn);
		bus_req_free(&r);
	}
}

static void
handle(struct log *L, const struct bus_req *r, int m, int unchecked,
    int64_t now, const char *line, size_t len, struct buf *out)
{
	struct raw raw;

	if (m >= M_STREAM) {
		handle_stream(L, r, m - M_STREAM, out);
		return;
	}
	switch (m) {
	case M_SUBMIT:
		handle_submit(L, r, now, out);
		break;
	case M_BROADCAST:
		handle_broadcast(L, r, out);
		break;
	case M_HEAD:
		handle_head(L, r, out);
		break;
	case M_RESPONSE:
		handle_response(L, r, line, len, out);
		break;
	case M_FAIL:
		handle_peer_fail(L, line, len, r, out);
		break;
	case M_FOLLOWS:
		fed_follows(L, out);
		break;
	case M_APPEND:
		raw_params(line, len, &raw);
		handle_event(L, r, NULL, &raw, unchecked, now, out);
		break;
	case M_BEAM:
		raw_params(line, len, &raw);
		handle_space_beam(L, r, &raw, unchecked, now, out);
		break;
	case M_DELETE:
		handle_beam_delete(L, r, unchecked, now, out);
		break;
	case M_GET:
		handle_beam_get(L, r, out);
		break;
	case M_RESTORE:
		subs_restore(L, r, out);
		break;
	default:
		if (m < M_APPEND) {
			raw_params(line, len, &raw);
			handle_event(L, r, methods[m], &raw, unchecked, now,
			    out);
		} else
			handle_read(L, r, m, out);
	}
}

static void
run_bus(struct log *L, size_t batch)
{
	struct item *items = xcalloc(batch, sizeof(*items));
	struct buf out = BUF_INIT;
	struct jsonin in;
	int eof = 0;

	jsonl_big_pipe(STDOUT_FILENO);
	jsonin_init(&in, STDIN_FILENO, BUS_LINE_MAX);
	jsonin_lines(&in);
	/* a restarted ns-log learns the subscriptions it granted before */
	if (fputs("{\"resync\":\"subs\"}\n", stdout) == EOF ||
	    jsonl_flush() != 0)
		die("stdout:");
	while (!eof) {
		size_t n = 0;
		int64_t now = -1;
		int began = 0;

		buf_reset(&out);
		L->failed = 0;
		if (L->ncached > CACHE_MAX)
			cache_clear(L);
		/* answers leave when the batch commits: a batch of large
		 * reads (a flood of history pages) ends at BATCH_OUT, so a
		 * request behind it waits for a bounded amount of work,
		 * while a batch of writes still commits hundreds at once */
		while (n < batch && (n == 0 || (!jsonin_would_block(&in) &&
		    out.len < BATCH_OUT))) {
			struct bus_req r;
			unsigned long lineno;
			const char *why;
			size_t len;
			char *p;
			int rc = jsonin_next(&in, &p, &len, &lineno, &why), m, taken;

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
				if (bus_is_prefix(p, len, "conn."))
					watch(p, len);
				else if (bus_is(p, len, "tick")) {
					/* time: the outbox and the submits
					 * that waited too long */
					if (!began) {
						began = 1;
						if (db_begin(L->db) != 0) {
							warn("begin: %s",
							    sqlite3_errmsg(L->db));
							L->failed = 1;
						}
					}
					if (!L->failed)
						fed_tick(L, jsonl_now_ms(), &out);
				}
				buf_add(&out, p, len);
				buf_addc(&out, '\n');
				it->end = out.len;
				n++;
				continue;
			}
			if (!began) {
				began = 1;
				if (db_begin(L->db) != 0) {
					warn("begin: %s", sqlite3_errmsg(L->db));
					L->failed = 1;
				}
			}
			if (now < 0)
				now = jsonl_now_ms();
			/* most of a busy node's requests: decided from the
			 * text when it is as ns-serve writes it */
			taken = m == M_BEAM && !L->failed &&
			    take_space_beam(L, p, len, now, &r, &out);
			if (!taken && bus_parse(p, len, &r) != 0) {
				warn("line %lu: malformed %s request", lineno,
				    methods[m]);
				continue;
			}
			n++;
			it->req = 1;
			it->conn = r.conn;
			it->r = r.r;
			it->id = jv_copy(r.id);
			if (!taken && !L->failed)
				handle(L, &r, m, !memmem(p, len, "\"sig\"", 5),
				    now, p, len, &out);
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
	subs_clear();
	fed_free();
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
		if (!(db = db_open(dbfile, migrations, nmigrations, sync_full,
		    err, sizeof(err))))
			die("%s", err);
		log_init(&L, db);
		L.key = key;
		L.node = key->did;
		L.address = address;
		run_bus(&L, (size_t)batch);
	} else {
		if (!(db = db_open_ro(dbfile, migrations, nmigrations, err,
		    sizeof(err))))
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
	log_free(&L);
	key_free(key);
	if (jsonl_flush() != 0)
		die("stdout:");
	return status;
}
