/*
 * ns-gossip sim: a broadcast over N nodes, simulated event by event with
 * the node's own rules: the same tier tree (tree_sort over DIDs, the same
 * children), the same choice of nodes to announce to (tree_lazy), and the
 * same reactions: an envelope that is the next one is applied and pushed
 * to the children; one beyond the next is a gap, pulled from its sender; a
 * head above one's own is pulled from whoever announced it, one below is
 * answered with one's own head; and every node exchanges heads with the
 * owner node and one random member every 10 s.  A fraction of the nodes
 * (never the owner) is down for the whole run, and messages may be lost.
 * Prints one JSON line of figures.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip.h"
#include "jsonl.h"
#include "msg.h"
#include "sim.h"
#include "tree.h"

enum { EV_SEQUENCE, EV_BROADCAST, EV_HEAD, EV_SYNC, EV_PAGE, EV_TICK };


struct snode {
	int alive;
	int64_t head;
	int pulling;		/* a sync in flight */
	int64_t pull_deadline;	/* given up then, as spaces.c does */
	int64_t next_ae;
	size_t *lazy;		/* announce at the next tick */
	size_t nlazy;
	size_t index;		/* in tree order: 0 the owner */
};

static struct sim_queue evq;	/* the events to come */
static uint64_t rng_state;

static unsigned
rnd(unsigned k)
{
	return sim_rand(&rng_state, k);
}

static double
frand(void)
{
	return rnd(1u << 30) / (double)(1u << 30);
}


/* the figures */
static uint64_t n_payload, n_heads, n_pulls, n_dup;
static int64_t **got_at;	/* [node][seq]: time it was applied, -1 not */
static int **got_hops;
static char **by_push;

static size_t n_nodes, fanout = FANOUT, lazy_n = LAZY;
static double loss;
static struct snode *nodes;
static int64_t now;

static int64_t
latency(void)
{
	return 2 + rnd(19);	/* 2 to 20 ms */
}

static void
send(int type, int from, int to, int64_t a, int hops)
{
	struct sim_ev e = { now + latency(), type, from, to, a, hops };

	if (type == EV_BROADCAST || type == EV_PAGE)
		n_payload += type == EV_PAGE ? 0 : 1;
	if (type == EV_HEAD)
		n_heads++;
	if (type == EV_SYNC)
		n_pulls++;
	if (loss > 0 && frand() < loss)
		return;
	sim_push(&evq, e);
}

/* node i applied seq: it pushes it to its children and will announce
 * it, as gossip_push does. */
static void
applied(int i, int64_t seq, int hops, int pushed)
{
	struct snode *s = &nodes[i];
	size_t kids[64], nk, lz[16];

	s->head = seq;
	got_at[i][seq] = now;
	got_hops[i][seq] = hops;
	by_push[i][seq] = (char)pushed;
	nk = tree_children(s->index, n_nodes - 1, fanout, kids);
	for (size_t c = 0; c < nk; c++)
		send(EV_BROADCAST, i, (int)kids[c], seq, hops + 1);
	size_t nl = tree_lazy(n_nodes - 1, s->index, kids, nk, lazy_n, rnd, lz);
	/* the nodes of every envelope since the last tick, as ns-gossip
	 * keeps them */
	if (!s->lazy)
		s->lazy = xmalloc(LAZY_MAX * sizeof(*s->lazy));
	for (size_t j = 0; j < nl && s->nlazy < LAZY_MAX; j++) {
		int known = 0;
		for (size_t k = 0; k < s->nlazy && !known; k++)
			known = s->lazy[k] == lz[j];
		if (!known)
			s->lazy[s->nlazy++] = lz[j];
	}
}

static void
deliver(struct sim_ev e, int64_t events)
{
	struct snode *s = &nodes[e.to];

	if (!s->alive)
		return;
	switch (e.type) {
	case EV_SEQUENCE:
		applied(0, e.a, 0, 1);
		break;
	case EV_BROADCAST:
		if (e.a == s->head + 1)
			applied(e.to, e.a, e.hops, 1);
		else if (e.a <= s->head)
			n_dup++;
		else if (!s->pulling) {
			s->pulling = 1;
			s->pull_deadline = now + SYNC_MS;
			send(EV_SYNC, e.to, e.from, s->head, 0);
		}
		break;
	case EV_HEAD:
		if (e.a > s->head && !s->pulling) {
			s->pulling = 1;
			s->pull_deadline = now + SYNC_MS;
			send(EV_SYNC, e.to, e.from, s->head, 0);
		} else if (e.a < s->head)
			send(EV_HEAD, e.to, e.from, s->head, 0);
		break;
	case EV_SYNC:
		/* one page with everything after e.a: payload per envelope */
		n_payload += (uint64_t)(s->head > e.a ? s->head - e.a : 0);
		send(EV_PAGE, e.to, e.from, s->head, 0);
		(void)events;
		break;
	case EV_PAGE:
		s->pulling = 0;
		while (s->head < e.a)
			applied(e.to, s->head + 1, 0, 0);
		break;
	case EV_TICK:
		if (s->pulling && now >= s->pull_deadline)
			s->pulling = 0;
		for (size_t i = 0; i < s->nlazy; i++)
			send(EV_HEAD, e.to, (int)s->lazy[i], s->head, 0);
		s->nlazy = 0;
		if (e.to != 0 && now >= s->next_ae) {
			s->next_ae = now + AE_MS;
			send(EV_HEAD, e.to, 0, s->head, 0);
			send(EV_HEAD, e.to, 1 + (int)rnd((unsigned)n_nodes - 1),
			    s->head, 0);
		}
		{
			struct sim_ev t = { now + 1000, EV_TICK, e.to, e.to,
			    0, 0 };
			sim_push(&evq, t);
		}
		break;
	}
}

static void
sim_usage(void)
{
	fprintf(stderr, "usage: ns-gossip sim [--nodes N] [--fail P] [--seed S] "
	    "[--events E]\n                     [--fanout K] [--lazy G] "
	    "[--loss L] [--interval MS]\n");
	exit(2);
}

int
sim_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "fail", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 's' },
		{ "events", required_argument, NULL, 'e' },
		{ "fanout", required_argument, NULL, 'k' },
		{ "lazy", required_argument, NULL, 'g' },
		{ "loss", required_argument, NULL, 'l' },
		{ "interval", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t events = 100, interval = 50, seed = 1, end, push_end;
	double fail = 0, pushed_ratio, final_ratio, p;
	struct tree_node *tn;
	size_t live = 0, i, failed = 0;
	uint64_t pushed = 0, got = 0;
	int64_t last_all = 0, hops_max = 0;
	int c;
	char *e;

	n_nodes = 100;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			n_nodes = (size_t)xnum("--nodes", optarg, 2, 1000000);
			break;
		case 'f':
			fail = strtod(optarg, &e);
			if (*e || fail < 0 || fail >= 1)
				sim_usage();
			break;
		case 's':
			seed = xnum("--seed", optarg, 0, 1ll << 62);
			break;
		case 'e':
			events = xnum("--events", optarg, 1, 100000);
			break;
		case 'k':
			fanout = (size_t)xnum("--fanout", optarg, 1, 64);
			break;
		case 'g':
			lazy_n = (size_t)xnum("--lazy", optarg, 0, 16);
			break;
		case 'l':
			loss = strtod(optarg, &e);
			if (*e || loss < 0 || loss >= 1)
				sim_usage();
			break;
		case 'i':
			interval = xnum("--interval", optarg, 1, 60000);
			break;
		default:
			sim_usage();
		}
	}
	if (optind != argc)
		sim_usage();
	rng_state = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
	/* the member nodes in the node's own tree order */
	tn = xcalloc(n_nodes, sizeof(*tn));
	for (i = 0; i + 1 < n_nodes; i++)
		snprintf(tn[i].did, sizeof(tn[i].did), "did:key:sim-%zu", i);
	tree_sort("channel/sim/space", tn, n_nodes - 1);
	nodes = xcalloc(n_nodes, sizeof(*nodes));
	got_at = xcalloc(n_nodes, sizeof(*got_at));
	got_hops = xcalloc(n_nodes, sizeof(*got_hops));
	by_push = xcalloc(n_nodes, sizeof(*by_push));
	for (i = 0; i < n_nodes; i++) {
		nodes[i].index = i;
		nodes[i].alive = i == 0 || frand() >= fail;
		failed += !nodes[i].alive;
		live += nodes[i].alive;
		nodes[i].next_ae = AE_MS + rnd(AE_MS);
		got_at[i] = xmalloc((size_t)(events + 1) * sizeof(int64_t));
		got_hops[i] = xcalloc((size_t)events + 1, sizeof(int));
		by_push[i] = xcalloc((size_t)events + 1, 1);
		for (int64_t s = 0; s <= events; s++)
			got_at[i][s] = -1;
		struct sim_ev t = { 1 + rnd(1000), EV_TICK, (int)i, (int)i,
		    0, 0 };
		sim_push(&evq, t);
	}
	for (int64_t s = 1; s <= events; s++) {
		struct sim_ev q = { s * interval, EV_SEQUENCE, 0, 0, s, 0 };
		sim_push(&evq, q);
	}
	/* after the last envelope: the push settles in well under a
	 * second, repair gets three anti-entropy rounds */
	push_end = events * interval + 900;
	end = events * interval + 3 * AE_MS + 2000;
	while (evq.n && (now = evq.heap[0].t) <= end) {
		struct sim_ev ev = sim_pop(&evq);
		deliver(ev, events);
	}
	for (i = 1; i < n_nodes; i++) {
		if (!nodes[i].alive)
			continue;
		for (int64_t s = 1; s <= events; s++) {
			if (got_at[i][s] < 0)
				continue;
			got++;
			pushed += got_at[i][s] <= s * interval + (push_end -
			    events * interval) && by_push[i][s];
			if (by_push[i][s] && got_hops[i][s] > hops_max)
				hops_max = got_hops[i][s];
			if (got_at[i][s] - s * interval > last_all)
				last_all = got_at[i][s] - s * interval;
		}
	}
	p = (double)(live - 1) * (double)events;
	pushed_ratio = p > 0 ? pushed / p : 1;
	final_ratio = p > 0 ? got / p : 1;
	printf("{\"nodes\":%zu,\"failed\":%zu,\"events\":%lld,\"fanout\":%zu,"
	    "\"lazy\":%zu,\"loss\":%g,\"seed\":%lld,"
	    "\"delivered_push\":%.4f,\"delivered_repair\":%.4f,"
	    "\"hops_max\":%lld,\"latency_max_ms\":%lld,"
	    "\"payload_per_node_event\":%.3f,\"heads_per_node_event\":%.3f,"
	    "\"pulls_per_node_event\":%.4f,\"duplicates_per_node_event\":%.4f}\n",
	    n_nodes, failed, (long long)events, fanout, lazy_n, loss,
	    (long long)seed, pushed_ratio, final_ratio, (long long)hops_max,
	    (long long)last_all,
	    (double)n_payload / (double)n_nodes / (double)events,
	    (double)n_heads / (double)n_nodes / (double)events,
	    (double)n_pulls / (double)n_nodes / (double)events,
	    (double)n_dup / (double)n_nodes / (double)events);
	for (i = 0; i < n_nodes; i++) {
		free(got_at[i]);
		free(got_hops[i]);
		free(by_push[i]);
		free(nodes[i].lazy);
	}
	free(got_at);
	free(got_hops);
	free(by_push);
	free(nodes);
	free(tn);
	sim_queue_free(&evq);
	return fflush(stdout) == 0 ? 0 : 2;
}
