/* What ns-gossip sim and ns-relay sim share: a queue of timed events, the
 * earliest first, and a seeded generator, so that one seed always gives
 * the same run. */
#ifndef NS_SIM_H
#define NS_SIM_H

#include <stddef.h>
#include <stdint.h>

struct sim_ev {
	int64_t t;		/* simulated milliseconds */
	int type, from, to;	/* the simulation's own kinds, node numbers */
	int64_t a;		/* a number the kind needs (seq, chunk, ...) */
	int hops;
};

struct sim_queue {
	struct sim_ev *heap;
	size_t n, cap;
};

void sim_push(struct sim_queue *q, struct sim_ev e);
/* The earliest event; the queue must not be empty. */
struct sim_ev sim_pop(struct sim_queue *q);
void sim_queue_free(struct sim_queue *q);

/* xorshift64*: a uniform integer below k (0 for k 0) from *state. */
unsigned sim_rand(uint64_t *state, unsigned k);

#endif
