/*
 * ns-relay sim: a stream relayed over N viewer nodes, event by event, with
 * the node's own tree (relay_parents, tree order) and rules: a chunk is
 * taken once, sent to the children attached, and delivered in order; a
 * gap is fetched from a parent after GAP_MS and skipped after HOLD_MS;
 * viewers join the owner and attach to their parents every BEAT_MS, and
 * the owner and parents forget those silent for SILENT_MS.  K relays are
 * killed one after another, each once the tree has mended.  Prints one
 * JSON line of figures.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "sim.h"
#include "relay.h"

enum { E_EMIT, E_CHUNK, E_BEAT, E_FETCH, E_FETCHED, E_KILL };

#define START_MS	3000	/* the first chunk, once the tree stands */
#define MEND_MS		(SILENT_MS + 2 * BEAT_MS)	/* a kill mended */


struct snode {
	int alive;
	int64_t parents[2];	/* node numbers; -1 none */
	int np;
	char *attached;		/* [node]: node is my child */
	int64_t *child_seen;
	int64_t delivered, edge, gap_since, fetch_at;
	char *have;		/* [chunk] */
	int64_t last_deliver_t, worst_gap;
	int64_t owner_seen;	/* owner side: last join */
};

static struct sim_queue evq;	/* the events to come */
static uint64_t rng;
static struct snode *nodes;
static size_t nn;		/* viewers + the owner (node 0) */
static int64_t now, nchunks, interval = 40;
static uint64_t sends, fetches;
static int64_t *lat;		/* [node * nchunks + n] */

static unsigned
rnd(unsigned k)
{
	return sim_rand(&rng, k);
}


static void
send(int type, int from, int to, int64_t n)
{
	struct sim_ev e = { now + 2 + rnd(19), type, from, to, n, 0 };

	sim_push(&evq, e);
}

/* The owner's view: its live viewers (those that joined lately) in tree
 * order, and where node v sits.  Returns v's parents as node numbers. */
static int
place(int v, int64_t par[2])
{
	size_t n = 0, me = 0, p[2];
	int *order = xmalloc(nn * sizeof(*order));

	for (size_t i = 1; i < nn; i++)
		if (nodes[i].owner_seen >= now - SILENT_MS) {
			order[n++] = (int)i;
			if ((int)i == v)
				me = n;
		}
	if (!me) {
		free(order);
		return 0;
	}
	relay_parents(me, n, fanout, p);
	par[0] = p[0] ? order[p[0] - 1] : 0;
	par[1] = p[1] ? order[p[1] - 1] : 0;
	free(order);
	return par[0] == par[1] ? 1 : 2;
}

static void
deliver(int v)
{
	struct snode *s = &nodes[v];

	while (s->delivered + 1 <= nchunks && s->have[s->delivered + 1]) {
		s->delivered++;
		lat[(size_t)v * (size_t)(nchunks + 1) + (size_t)s->delivered] =
		    now - (START_MS + (s->delivered - 1) * interval);
		if (s->last_deliver_t && now - s->last_deliver_t > s->worst_gap)
			s->worst_gap = now - s->last_deliver_t;
		s->last_deliver_t = now;
	}
	if (s->delivered < s->edge && !s->gap_since)
		s->gap_since = now;
	else if (s->delivered >= s->edge)
		s->gap_since = 0;
}

static void
take(int v, int64_t n)
{
	struct snode *s = &nodes[v];

	if (s->have[n] || n <= s->delivered)
		return;
	s->have[n] = 1;
	if (n > s->edge)
		s->edge = n;
	for (size_t c = 1; c < nn; c++)
		if (s->attached[c] && s->child_seen[c] >= now - SILENT_MS) {
			send(E_CHUNK, v, (int)c, n);
			sends++;
		}
	deliver(v);
}

static void
step(struct sim_ev e)
{
	struct snode *s = &nodes[e.to];

	if (!s->alive)
		return;
	switch (e.type) {
	case E_EMIT:
		take(0, e.a);
		if (e.a < nchunks) {
			struct sim_ev x = { now + interval, E_EMIT, 0, 0,
			    e.a + 1, 0 };
			sim_push(&evq, x);
		}
		break;
	case E_CHUNK:
		take(e.to, e.a);
		break;
	case E_BEAT: {
		/* join the owner (instant answer: its view), attach to the
		 * parents; expire silent children; mind gaps */
		int64_t p[2];
		int np;

		s->owner_seen = now;
		if ((np = place(e.to, p)) > 0) {
			s->np = np;
			s->parents[0] = p[0];
			s->parents[1] = p[1];
			for (int i = 0; i < np; i++) {
				struct snode *par = &nodes[p[i]];
				if (par->alive) {
					par->attached[e.to] = 1;
					par->child_seen[e.to] = now;
				}
			}
		}
		struct sim_ev x = { now + BEAT_MS, E_BEAT, e.to, e.to, 0, 0 };
		sim_push(&evq, x);
		break;
	}
	case E_FETCH:	/* at a parent: answer with what it holds */
		for (int64_t n = e.a + 1; n <= s->edge; n++)
			if (s->have[n])
				send(E_FETCHED, e.to, e.from, n);
		break;
	case E_FETCHED:
		take(e.to, e.a);
		break;
	case E_KILL:
		s->alive = 0;
		break;
	}
	/* gaps, as streams_tick handles them */
	if (e.to != 0 && s->gap_since && now - s->gap_since >= GAP_MS &&
	    now >= s->fetch_at && s->np) {
		send(E_FETCH, e.to, (int)s->parents[(now / GAP_MS) % s->np],
		    s->delivered);
		fetches++;
		s->fetch_at = now + GAP_MS;
	}
	if (e.to != 0 && s->gap_since && now - s->gap_since >= HOLD_MS) {
		while (s->delivered < s->edge && !s->have[s->delivered + 1])
			s->delivered++;
		s->gap_since = 0;
		deliver(e.to);
	}
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int
sim_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "fanout", required_argument, NULL, 'f' },
		{ "kill", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, 's' },
		{ "chunks", required_argument, NULL, 'c' },
		{ "interval", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t kills = 3, seed = 1, lost = 0, worst = 0, kill_gap, *all;
	size_t viewers = 30, nall = 0, survivors = 0;
	int c;

	nchunks = 750;		/* 30 s at 40 ms */
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			viewers = (size_t)xnum("--nodes", optarg, 1, 100000);
			break;
		case 'f':
			fanout = (size_t)xnum("--fanout", optarg, 4, 64);
			break;
		case 'k':
			kills = xnum("--kill", optarg, 0, 1000);
			break;
		case 's':
			seed = xnum("--seed", optarg, 0, 1ll << 62);
			break;
		case 'c':
			nchunks = xnum("--chunks", optarg, 1, 1000000);
			break;
		case 'i':
			interval = xnum("--interval", optarg, 1, 60000);
			break;
		default:
			fprintf(stderr, "usage: ns-relay sim [--nodes N] [--fanout F] "
			    "[--kill K] [--seed S] [--chunks C] [--interval MS]\n");
			return 2;
		}
	}
	if (optind != argc || (size_t)kills >= viewers) {
		fprintf(stderr, "ns-relay sim: --kill must be below --nodes\n");
		return 2;
	}
	/* kills are spaced MEND_MS at least: the stream runs long enough */
	kill_gap = nchunks * interval / (kills + 1);
	if (kills && kill_gap < MEND_MS) {
		kill_gap = MEND_MS;
		if ((kills + 1) * kill_gap / interval > nchunks)
			nchunks = (kills + 1) * kill_gap / interval;
	}
	rng = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 7;
	nn = viewers + 1;
	nodes = xcalloc(nn, sizeof(*nodes));
	lat = xmalloc(nn * (size_t)(nchunks + 1) * sizeof(*lat));
	memset(lat, 0xff, nn * (size_t)(nchunks + 1) * sizeof(*lat));
	for (size_t i = 0; i < nn; i++) {
		nodes[i].alive = 1;
		nodes[i].attached = xcalloc(nn, 1);
		nodes[i].child_seen = xcalloc(nn, sizeof(int64_t));
		nodes[i].have = xcalloc((size_t)nchunks + 1, 1);
		if (i) {
			/* viewers come within the first second */
			struct sim_ev b = { rnd(1000), E_BEAT, (int)i, (int)i,
			    0, 0 };
			sim_push(&evq, b);
		}
	}
	/* the stream starts once the tree stands; relays are killed one at
	 * a time, each after the tree mended from the one before */
	{
		struct sim_ev e = { START_MS, E_EMIT, 0, 0, 1, 0 };
		sim_push(&evq, e);
	}
	/* a kill once the tree mended from the one before: the dead node
	 * silent for SILENT_MS at the owner, then a beat of everyone; the
	 * stream runs long enough for every kill */
	{
		/* nodes that relay: among the first third, or all of them
		 * when there are more kills; each killed once */
		unsigned pool = (size_t)kills <= viewers / 3 ?
		    (unsigned)(viewers / 3) : (unsigned)viewers;
		char *dead = xcalloc(nn, 1);

		for (int64_t k = 0; k < kills; k++) {
			int v;

			do
				v = 1 + (int)rnd(pool);
			while (dead[v]);
			dead[v] = 1;
			struct sim_ev x = { START_MS + (k + 1) * kill_gap,
			    E_KILL, v, v, 0, 0 };
			sim_push(&evq, x);
		}
		free(dead);
	}
	while (evq.n && (now = evq.heap[0].t) <=
	    START_MS + nchunks * interval + 10000)
		step(sim_pop(&evq));
	all = xmalloc(nn * (size_t)nchunks * sizeof(*all));
	for (size_t i = 1; i < nn; i++) {
		if (!nodes[i].alive)
			continue;
		survivors++;
		for (int64_t n = 1; n <= nchunks; n++) {
			int64_t l = lat[i * (size_t)(nchunks + 1) + (size_t)n];
			if (l < 0) {
				lost++;
				continue;
			}
			all[nall++] = l;
		}
		if (nodes[i].worst_gap > worst)
			worst = nodes[i].worst_gap;
	}
	qsort(all, nall, sizeof(*all), cmp64);
	printf("{\"nodes\":%zu,\"fanout\":%zu,\"killed\":%lld,\"chunks\":%lld,"
	    "\"interval_ms\":%lld,\"seed\":%lld,\"survivors\":%zu,"
	    "\"lost\":%lld,\"longest_gap_ms\":%lld,\"p50_ms\":%lld,"
	    "\"p99_ms\":%lld,\"copies_per_viewer_chunk\":%.3f,"
	    "\"fetches\":%llu}\n", viewers, fanout, (long long)kills,
	    (long long)nchunks, (long long)interval, (long long)seed, survivors,
	    (long long)lost, (long long)worst,
	    (long long)(nall ? all[nall / 2] : -1),
	    (long long)(nall ? all[nall * 99 / 100] : -1),
	    (double)sends / (double)viewers / (double)nchunks,
	    (unsigned long long)fetches);
	for (size_t i = 0; i < nn; i++) {
		free(nodes[i].attached);
		free(nodes[i].child_seen);
		free(nodes[i].have);
	}
	free(nodes);
	free(lat);
	free(all);
	sim_queue_free(&evq);
	return fflush(stdout) == 0 ? 0 : 2;
}
