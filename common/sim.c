#include <stdlib.h>

#include "msg.h"
#include "sim.h"

void
sim_push(struct sim_queue *q, struct sim_ev e)
{
	size_t i;

	if (q->n == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 1024;
		q->heap = xrealloc(q->heap, q->cap * sizeof(*q->heap));
	}
	for (i = q->n++; i > 0 && q->heap[(i - 1) / 2].t > e.t; i = (i - 1) / 2)
		q->heap[i] = q->heap[(i - 1) / 2];
	q->heap[i] = e;
}

struct sim_ev
sim_pop(struct sim_queue *q)
{
	struct sim_ev top = q->heap[0], last = q->heap[--q->n];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < q->n) {
		if (c + 1 < q->n && q->heap[c + 1].t < q->heap[c].t)
			c++;
		if (last.t <= q->heap[c].t)
			break;
		q->heap[i] = q->heap[c];
		i = c;
	}
	if (q->n)
		q->heap[i] = last;
	return top;
}

void
sim_queue_free(struct sim_queue *q)
{
	free(q->heap);
	q->heap = NULL;
	q->n = q->cap = 0;
}

unsigned
sim_rand(uint64_t *state, unsigned k)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (unsigned)((x * 0x2545f4914f6cdd1dull) >> 33) % (k ? k : 1);
}
