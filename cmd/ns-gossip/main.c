/*
 * ns-gossip: how a node talks to other nodes.  With --bus it is the last
 * stage of a node's ring: it takes ns-log's gossip.* lines (push an
 * envelope to the children in the tier tree, announce heads, pull what is
 * missing, follow a space) and the other stages' peer.send lines, keeps
 * the links to other nodes (dialing through ns-serve, with backoff, and
 * refusing a node that sent forged data), and passes every other line on.
 * "ns-gossip tree" prints the tier tree of a membership; "ns-gossip sim"
 * simulates a broadcast over many nodes with the same tree and the same
 * rules of push, announcement and pull, and prints one JSON line of
 * figures.  Exit 0 at the end of input, 1 on bad input to tree, 2 on
 * usage or environment trouble.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "bus.h"
#include "canon.h"
#include "gossip.h"
#include "jsonin.h"
#include "jsonl.h"
#include "msg.h"
#include "tree.h"

#define SYNC_ID "\"id\":\"g:"	/* the ids of our node.sync, on the bus */

struct buf out = BUF_INIT;
int64_t now_ms;
static const char *stats_file;
static int64_t started, last_stats, tick_ms;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-gossip --bus [--stats FILE]\n"
	    "       ns-gossip tree [--fanout K]\n"
	    "       ns-gossip sim [--nodes N] [--fail P] [--seed S] [--events E]\n"
	    "                     [--fanout K] [--lazy G] [--loss L]\n"
	    "                     [--interval MS]\n"
	    "  --bus          ring stage, after ns-beam: gossip and peer lines in,\n"
	    "                 lines for ns-serve out, every other line passed on\n"
	    "  --stats FILE   --bus: rewrite FILE every tick with the peers' states\n"
	    "  tree           for each line {\"space\",\"owner\",\"nodes\":[DID...]}, one\n"
	    "                 line per node: its index, depth, parent and children\n"
	    "  sim            simulate a broadcast; see ns-gossip(1)\n"
	    "  -h, --help     this help\n"
	    "      --version  print the version\n");
	exit(status);
}

void
emit_peer_fail(const char *id, const char *did, const char *address,
    const char *reason)
{
	buf_adds(&out, "{\"m\":\"peer.fail\",\"p\":{\"id\":");
	bus_json(&out, jv_string(id));
	buf_adds(&out, ",\"node\":");
	bus_json(&out, did && *did ? jv_string(did) : jv_null());
	buf_adds(&out, ",\"address\":");
	bus_json(&out, address ? jv_string(address) : jv_null());
	buf_adds(&out, ",\"reason\":");
	bus_json(&out, jv_string(reason));
	buf_adds(&out, "}}\n");
}

static void
write_stats(void)
{
	struct buf b = BUF_INIT;
	size_t up, n = peers_count(&up);
	char tmp[4096];
	FILE *f;

	buf_addf(&b, "{\"pid\":%ld,\"started\":%lld,\"followed\":%zu,"
	    "\"peers\":%zu,\"up\":%zu,\"nodes\":", (long)getpid(),
	    (long long)started, spaces_followed(), n, up);
	peers_json(&b);
	buf_adds(&b, "}\n");
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", stats_file, (long)getpid());
	if ((f = fopen(tmp, "w"))) {
		fputs(b.p, f);
		if (fclose(f) != 0 || rename(tmp, stats_file) != 0)
			unlink(tmp);
	}
	buf_free(&b);
}

/*
 * The time: the clock's (NS_NOW's, if set), or the "now" of the last tick
 * when that is later.  ns-serve writes its clock into each tick, so in a
 * node the two agree; a test that sets NS_NOW moves time on with ticks.
 */
static int64_t
clock_ms(void)
{
	int64_t t = jsonl_now_ms();

	return tick_ms > t ? tick_ms : t;
}

/* One bus line.  1 if it goes on, 0 if it was ours. */
static int
line(const char *p, size_t len)
{
	struct bus_req r;
	int on = 1;

	if (!bus_is_prefix(p, len, ""))
		return 1;
	if (bus_is(p, len, "tick")) {
		if (bus_parse(p, len, &r) == 0) {
			int64_t t;

			if (jsonl_int(r.line, "now", &t) == 0)
				tick_ms = t;
			bus_req_free(&r);
		}
		now_ms = clock_ms();
		spaces_tick();
		peers_prune();
		if (stats_file && now_ms - last_stats >= 1000) {
			write_stats();
			last_stats = now_ms;
		}
		return 1;
	}
	if (!bus_is_prefix(p, len, "gossip.") && !bus_is_prefix(p, len, "peer.") &&
	    !bus_is_prefix(p, len, "conn.") && !(bus_is(p, len, "rpc.response") &&
	    memmem(p, len, SYNC_ID, sizeof(SYNC_ID) - 1)))
		return 1;
	if (bus_parse(p, len, &r) != 0)
		return 1;
	now_ms = clock_ms();
	if (bus_is(p, len, "gossip.push")) {
		space_push(r.params);
		on = 0;
	} else if (bus_is(p, len, "gossip.follow")) {
		space_follow(r.params);
		on = 0;
	} else if (bus_is(p, len, "gossip.unfollow")) {
		const char *id = jsonl_str(r.params, "space");
		if (id)
			space_unfollow(id);
		on = 0;
	} else if (bus_is(p, len, "gossip.behind") ||
	    bus_is(p, len, "gossip.ahead")) {
		const char *id = jsonl_str(r.params, "space");
		const char *node = jsonl_str(r.params, "node");
		int64_t head = 0;

		jsonl_int(r.params, "head", &head);
		if (id && node && bus_is(p, len, "gossip.behind"))
			space_behind(id, head, node);
		else if (id && node)
			space_ahead(id, head, jsonl_str(r.params, "hash"), node);
		on = 0;
	} else if (bus_is(p, len, "peer.send")) {
		jv msg = jsonl_get(r.params, "msg");
		struct buf m = BUF_INIT;
		const char *id = jsonl_str(msg, "id");

		if (jv_get_kind(msg) == JV_KIND_OBJECT) {
			bus_json(&m, jv_copy(msg));
			peer_send(jsonl_str(r.params, "node"),
			    jsonl_str(r.params, "address"), m.p, m.len, id);
		}
		buf_free(&m);
		jv_free(msg);
		on = 0;
	} else if (bus_is(p, len, "peer.bad")) {
		const char *node = jsonl_str(r.params, "node");
		const char *why = jsonl_str(r.params, "reason");
		if (node)
			peer_bad(node, why ? why : "bad data");
		on = 0;
	} else if (bus_is(p, len, "peer.fail")) {
		on = 0;		/* a stage's message nobody waits for */
	} else if (bus_is(p, len, "rpc.response")) {
		const char *id = jsonl_str(r.params, "id");
		if (id)
			space_synced(id, r.params);
		bus_done(&out, &r);
		on = 0;
	} else if (bus_is(p, len, "conn.open")) {
		if (r.role && strcmp(r.role, "node") == 0 && r.did)
			peer_conn_open(r.conn, r.did,
			    jsonl_str(r.line, "url"));
	} else if (bus_is(p, len, "conn.close")) {
		if (r.role && strcmp(r.role, "node") == 0)
			peer_conn_close(r.conn, r.did);
	} else if (bus_is(p, len, "conn.fail")) {
		const char *url = jsonl_str(r.line, "url");
		if (url)
			peer_conn_fail(url, jsonl_str(r.line, "node"),
			    jsonl_str(r.line, "reason") ?
			    jsonl_str(r.line, "reason") : "failed");
	} else if (bus_is(p, len, "conn.reset")) {
		peer_conn_reset();
	}
	bus_req_free(&r);
	return on;
}

static int
run_bus(void)
{
	struct jsonin in;
	unsigned long lineno;
	const char *why;
	size_t len;
	char *p;
	int rc;

	jsonl_big_pipe(STDOUT_FILENO);
	jsonin_init(&in, STDIN_FILENO, BUS_LINE_MAX);
	jsonin_lines(&in);
	started = now_ms = jsonl_now_ms();
	/* a (re)started ns-gossip learns the spaces ns-log follows */
	buf_adds(&out, "{\"m\":\"log.follows\"}\n");
	for (;;) {
		if (out.len && jsonin_would_block(&in)) {
			if (fwrite(out.p, 1, out.len, stdout) != out.len ||
			    jsonl_flush() != 0)
				die("stdout:");
			buf_reset(&out);
		}
		rc = jsonin_next(&in, &p, &len, &lineno, &why);
		if (rc == JSONIN_EOF)
			break;
		if (rc == JSONIN_ERROR)
			die("stdin:");
		if (rc == JSONIN_BAD) {
			warn("line %lu: %s", lineno, why);
			continue;
		}
		if (line(p, len)) {
			buf_add(&out, p, len);
			buf_addc(&out, '\n');
		}
		if (out.len > (1u << 20)) {
			if (fwrite(out.p, 1, out.len, stdout) != out.len)
				die("stdout:");
			buf_reset(&out);
		}
	}
	if (out.len && fwrite(out.p, 1, out.len, stdout) != out.len)
		die("stdout:");
	if (jsonl_flush() != 0)
		die("stdout:");
	jsonin_free(&in);
	peers_free();
	spaces_free();
	buf_free(&out);
	if (stats_file)
		unlink(stats_file);
	return 0;
}

/* tree: the tier tree of each membership read. */
static int
run_tree(size_t k)
{
	struct jsonin in;
	unsigned long lineno;
	const char *why, *sid, *owner;
	size_t len;
	char *p;
	int rc, bad = 0;

	jsonin_init(&in, STDIN_FILENO, BUS_LINE_MAX);
	while ((rc = jsonin_next(&in, &p, &len, &lineno, &why)) != JSONIN_EOF) {
		struct tree_node *tn = NULL;
		size_t n = 0, kids[64], nk;
		long nl;
		jv v;

		if (rc == JSONIN_ERROR)
			die("stdin:");
		if (rc == JSONIN_BAD) {
			warn("line %lu: %s", lineno, why);
			bad = 1;
			continue;
		}
		v = canon_parse(p, len);
		if ((nl = tree_request(v, &sid, &owner, &tn)) < 0) {
			warn("line %lu: want {\"space\",\"owner\",\"nodes\":[...]}",
			    lineno);
			bad = 1;
			goto next;
		}
		n = (size_t)nl;
		for (size_t i = 0; i <= n; i++) {
			struct buf b = BUF_INIT;
			const char *me = i ? tn[i - 1].did : owner;

			buf_adds(&b, "{\"space\":");
			bus_json(&b, jv_string(sid));
			buf_adds(&b, ",\"node\":");
			bus_json(&b, jv_string(me));
			buf_addf(&b, ",\"index\":%zu,\"depth\":%u,\"parent\":",
			    i, tree_depth(i, k));
			if (i == 0)
				buf_adds(&b, "null");
			else {
				size_t pi = (i - 1) / k;
				bus_json(&b, jv_string(pi ? tn[pi - 1].did : owner));
			}
			buf_adds(&b, ",\"children\":[");
			nk = tree_children(i, n, k, kids);
			for (size_t c = 0; c < nk; c++) {
				if (c)
					buf_addc(&b, ',');
				bus_json(&b, jv_string(tn[kids[c] - 1].did));
			}
			buf_adds(&b, "]}");
			if (jsonl_write(b.p, b.len) != 0)
				die("stdout:");
			buf_free(&b);
		}
next:
		free(tn);
		jv_free(v);
	}
	jsonin_free(&in);
	if (jsonl_flush() != 0)
		die("stdout:");
	return bad;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bus", no_argument, NULL, 'b' },
		{ "stats", required_argument, NULL, 'S' },
		{ "fanout", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, bus = 0;
	size_t k = FANOUT;

	prog = PROG;
	if (argc > 1 && strcmp(argv[1], "sim") == 0) {
		if (sodium_init() < 0)
			die("libsodium failed to initialize");
		return sim_main(argc - 1, argv + 1);
	}
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			bus = 1;
			break;
		case 'S':
			stats_file = optarg;
			break;
		case 'k':
			k = (size_t)xnum("--fanout", optarg, 1, 64);
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
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (bus) {
		if (optind != argc)
			usage(2);
		return run_bus();
	}
	if (optind + 1 != argc || strcmp(argv[optind], "tree") != 0 ||
	    stats_file)
		usage(2);
	return run_tree(k);
}
