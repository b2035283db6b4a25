/*
 * ns-relay: live streams.  With --bus it is a stage of a node's ring,
 * after ns-beam: it relays the chunks of stream spaces down a tree in
 * which every viewer node has two parents, delivers them to the watchers
 * on this node once and in order, keeps the last chunks for late comers
 * and gaps, and, on the owner node, places each viewer node in the tree.
 * Every other line passes on.  "ns-relay tree" prints the relay tree of a
 * list of viewer nodes; "ns-relay sim" simulates chunk delivery over many
 * nodes with the same tree and rules, with failures, and prints one JSON
 * line of figures.  Exit 0 at the end of input, 1 on bad input to tree,
 * 2 on usage or environment trouble.
 */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "canon.h"
#include "jsonin.h"
#include "jsonl.h"
#include "msg.h"
#include "relay.h"
#include "tree.h"

struct buf out = BUF_INIT;
int64_t now_ms;
size_t fanout = FANOUT;
const char *self_did, *self_address;
static const char *stats_file;
const char *state_path;
static int64_t last_stats, last_tick;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-relay --bus -n NODE_DID -a ADDRESS [--fanout F] [--stats FILE]\n"
	    "                [--state FILE]\n"
	    "       ns-relay tree [--fanout F]\n"
	    "       ns-relay sim [--nodes N] [--fanout F] [--kill K] [--seed S]\n"
	    "                    [--chunks C] [--interval MS]\n"
	    "  --bus          ring stage, after ns-beam: stream chunks relayed and\n"
	    "                 delivered, every other line passed on\n"
	    "  -n, --node DID this node's DID      -a, --address ADDR its address\n"
	    "  --fanout F     children per node at most (default %d); each node has\n"
	    "                 two parents; on the owner node it shapes the tree\n"
	    "  --stats FILE   --bus: rewrite FILE every second with the streams' states\n"
	    "  --state FILE   --bus: keep the owned streams' chunk numbers in FILE, so\n"
	    "                 a restart refuses numbers pushed before\n"
	    "  tree           for each line {\"space\",\"owner\",\"nodes\":[DID...]}, one\n"
	    "                 line per viewer node: its index, parents and children\n"
	    "  sim            simulate a stream; see ns-relay(1)\n"
	    "  -h, --help     this help\n"
	    "      --version  print the version\n", FANOUT);
	exit(status);
}

static void
write_stats(void)
{
	struct buf b = BUF_INIT;
	char tmp[4096];
	FILE *f;

	buf_addf(&b, "{\"pid\":%ld,\"streams\":", (long)getpid());
	streams_json(&b);
	buf_adds(&b, "}\n");
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", stats_file, (long)getpid());
	if ((f = fopen(tmp, "w"))) {
		fputs(b.p, f);
		if (fclose(f) != 0 || rename(tmp, stats_file) != 0)
			unlink(tmp);
	}
	buf_free(&b);
}

#define RELAY_ID "\"id\":\"relay:"	/* our requests' ids, on the bus */

/* One bus line: 1 if it goes on, 0 if it was ours. */
static int
line(const char *p, size_t len)
{
	static const struct {
		const char *m;
		void (*fn)(const struct bus_req *);
	} own[] = {
		/* from ns-log, which checked them: */
		{ "relay.push", on_push }, { "relay.admit", on_admit },
		{ "relay.child", on_attach }, { "relay.gap", on_fetch },
		{ "relay.watch", on_watch }, { "relay.recent", on_recent },
		/* from other nodes, which need no check of the rules: */
		{ "relay.leave", on_leave }, { "relay.chunk", on_chunk },
	};
	struct bus_req r;
	int on = 1;

	now_ms = jsonl_now_ms();
	if (len > 9 && memcmp(p, "{\"unsub\":", 9) == 0) {
		jv v = canon_parse(p, len);
		int64_t c;
		const char *key = jsonl_str(v, "space");

		if (jsonl_int(v, "unsub", &c) == 0 && key)
			on_unwatch(c, key);
		jv_free(v);
		return 1;
	}
	if (!bus_is_prefix(p, len, ""))
		return 1;
	if (bus_is(p, len, "tick"))
		return 1;	/* the relay keeps its own, finer time */
	if (bus_is(p, len, "conn.reset")) {
		on_conn_close(-1);	/* ns-serve restarted: every watch ends */
		return 1;
	}
	if (bus_is(p, len, "conn.close")) {
		if (bus_parse(p, len, &r) == 0) {
			if (r.conn >= 0)
				on_conn_close(r.conn);
			bus_req_free(&r);
		}
		return 1;
	}
	if ((bus_is(p, len, "rpc.response") || bus_is(p, len, "peer.fail")) &&
	    memmem(p, len, RELAY_ID, sizeof(RELAY_ID) - 1)) {
		if (bus_parse(p, len, &r) == 0) {
			if (bus_is(p, len, "rpc.response"))
				on_response(&r);
			else
				on_peer_fail(&r);
			bus_req_free(&r);
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (bus_is(p, len, own[i].m)) {
			if (bus_parse(p, len, &r) == 0) {
				own[i].fn(&r);
				bus_req_free(&r);
			} else
				warn("not a valid %s request", own[i].m);
			on = 0;
			break;
		}
	return on;
}

/* The relay's clock: gaps are fetched within GAP_MS, so it runs every
 * TICK_MS, whatever the ring's ticks. */
static void
clock_tick(void)
{
	now_ms = jsonl_now_ms();
	if (now_ms - last_tick < TICK_MS)
		return;
	last_tick = now_ms;
	streams_tick();
	if (state_path && state_dirty)
		state_save(state_path);
	if (stats_file && now_ms - last_stats >= 1000) {
		write_stats();
		last_stats = now_ms;
	}
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
	if (state_path)
		state_load(state_path);
	/* a restarted relay learns again which connections watch what:
	 * ns-serve replays its subscriptions, ns-log checks them, and the
	 * watches come back as relay.watch lines */
	buf_adds(&out, "{\"resync\":\"subs\"}\n");
	for (;;) {
		clock_tick();
		if (jsonin_would_block(&in)) {
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };

			if (out.len) {
				if (fwrite(out.p, 1, out.len, stdout) !=
				    out.len || jsonl_flush() != 0)
					die("stdout:");
				buf_reset(&out);
			}
			if (poll(&pfd, 1, TICK_MS) == 0)
				continue;	/* time passed: the clock */
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
	if (state_path && state_dirty)
		state_save(state_path);
	streams_free();
	buf_free(&out);
	if (stats_file)
		unlink(stats_file);
	return 0;
}

/* tree: the relay tree of each list of viewer nodes read. */
static int
run_tree(void)
{
	struct jsonin in;
	unsigned long lineno;
	const char *why, *sid, *owner;
	size_t len, *kids = NULL;
	char *p;
	int rc, bad = 0;

	jsonin_init(&in, STDIN_FILENO, BUS_LINE_MAX);
	while ((rc = jsonin_next(&in, &p, &len, &lineno, &why)) != JSONIN_EOF) {
		struct tree_node *tn = NULL;
		size_t n = 0, nk, pp[2];
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
		kids = xrealloc(kids, (n + 1) * sizeof(*kids));
		for (size_t i = 0; i <= n; i++) {
			struct buf b = BUF_INIT;

			buf_adds(&b, "{\"space\":");
			bus_json(&b, jv_string(sid));
			buf_adds(&b, ",\"node\":");
			bus_json(&b, jv_string(i ? tn[i - 1].did : owner));
			buf_addf(&b, ",\"index\":%zu,\"parents\":[", i);
			if (i) {
				relay_parents(i, n, fanout, pp);
				for (int k = 0; k < 2; k++) {
					if (k == 1 && pp[1] == pp[0])
						break;
					if (k)
						buf_addc(&b, ',');
					bus_json(&b, jv_string(pp[k] ?
					    tn[pp[k] - 1].did : owner));
				}
			}
			buf_adds(&b, "],\"children\":[");
			nk = relay_children(i, n, fanout, kids);
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
	free(kids);
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
		{ "node", required_argument, NULL, 'n' },
		{ "address", required_argument, NULL, 'a' },
		{ "fanout", required_argument, NULL, 'f' },
		{ "stats", required_argument, NULL, 'S' },
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, bus = 0;

	prog = PROG;
	if (argc > 1 && strcmp(argv[1], "sim") == 0) {
		if (sodium_init() < 0)
			die("libsodium failed to initialize");
		return sim_main(argc - 1, argv + 1);
	}
	while ((c = getopt_long(argc, argv, "n:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			bus = 1;
			break;
		case 'n':
			self_did = optarg;
			break;
		case 'a':
			self_address = optarg;
			break;
		case 'f':
			fanout = (size_t)xnum("--fanout", optarg, 4, 64);
			break;
		case 'S':
			stats_file = optarg;
			break;
		case 's':
			state_path = optarg;
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
		if (optind != argc || !self_did || !self_address) {
			warn("--bus needs -n NODE_DID and -a ADDRESS");
			usage(2);
		}
		return run_bus();
	}
	if (optind + 1 != argc || strcmp(argv[optind], "tree") != 0 ||
	    self_did || self_address || stats_file || state_path)
		usage(2);
	return run_tree();
}
