#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jsonl.h"
#include "msg.h"
#include "tree.h"

static int
by_key(const void *a, const void *b)
{
	const struct tree_node *x = a, *y = b;

	return memcmp(x->key, y->key, HASH_RAW_LEN);
}

void
tree_sort(const char *space, struct tree_node *nodes, size_t n)
{
	crypto_hash_sha256_state st;

	for (size_t i = 0; i < n; i++) {
		crypto_hash_sha256_init(&st);
		crypto_hash_sha256_update(&st, (const unsigned char *)space,
		    strlen(space));
		crypto_hash_sha256_update(&st,
		    (const unsigned char *)nodes[i].did, strlen(nodes[i].did));
		crypto_hash_sha256_final(&st, nodes[i].key);
	}
	if (n > 1)	/* qsort's base may not be NULL, even for n == 0 */
		qsort(nodes, n, sizeof(*nodes), by_key);
}

long
tree_request(jv v, const char **space, const char **owner,
    struct tree_node **out)
{
	struct tree_node *tn = NULL;
	jv nodes = jsonl_get(v, "nodes");
	size_t n = 0;

	*out = NULL;
	*space = jsonl_str(v, "space");
	*owner = jsonl_str(v, "owner");
	if (!*space || !*owner || jv_get_kind(nodes) != JV_KIND_ARRAY) {
		jv_free(nodes);
		return -1;
	}
	tn = xcalloc((size_t)jv_array_length(jv_copy(nodes)) + 1, sizeof(*tn));
	jv_array_foreach(nodes, i, x) {
		const char *did = jv_get_kind(x) == JV_KIND_STRING ?
		    jv_string_value(x) : jsonl_str(x, "node");
		if (did && strcmp(did, *owner) != 0) {
			snprintf(tn[n].did, sizeof(tn[n].did), "%s", did);
			n++;
		}
		jv_free(x);
	}
	jv_free(nodes);
	tree_sort(*space, tn, n);
	/* a node named twice sorts next to itself (same key): kept once */
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || strcmp(tn[m - 1].did, tn[i].did) != 0)
			tn[m++] = tn[i];
	*out = tn;
	return (long)m;
}

size_t
tree_index(const struct tree_node *nodes, size_t n, const char *did)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(nodes[i].did, did) == 0)
			return i + 1;
	return 0;
}

size_t
tree_children(size_t i, size_t n, size_t k, size_t *out)
{
	size_t m = 0;

	for (size_t c = k * i + 1; c <= k * i + k && c <= n; c++)
		out[m++] = c;
	return m;
}

void
tree_parents(size_t i, size_t n, size_t k, size_t p[2])
{
	p[0] = (i - 1) / k;
	p[1] = p[0] + 1;
	if (p[1] > n || p[1] == i)
		p[1] = 0;
}

size_t
tree_lazy(size_t n, size_t me, const size_t *kids, size_t nk, size_t g,
    unsigned (*rnd)(unsigned), size_t *out)
{
	size_t got = 0;

	/* a few tries each: in a small space there may be nobody left */
	for (size_t t = 0; t < 4 * g && got < g && n > 0; t++) {
		size_t c = 1 + rnd((unsigned)n), i;
		int skip = c == me;

		for (i = 0; i < nk && !skip; i++)
			skip = kids[i] == c;
		for (i = 0; i < got && !skip; i++)
			skip = out[i] == c;
		if (!skip)
			out[got++] = c;
	}
	return got;
}

unsigned
tree_depth(size_t i, size_t k)
{
	unsigned d = 0;

	while (i > 0) {
		i = (i - 1) / k;
		d++;
	}
	return d;
}
