/*
 * The trees a space's nodes form (share/doc/protocol.md, sections 11 and
 * 12): every node computes them the same way from the membership alone.
 * The member nodes other than the owner node are ordered by
 * SHA-256(space id || node DID), bytes compared as unsigned, and numbered
 * from 1; the owner node is 0.  In the tier tree with fan-out k, the
 * children of i are k*i + 1 ... k*i + k.  In the relay tree every node
 * i >= 1 has two parents (double-parenting).
 */
#ifndef NS_TREE_H
#define NS_TREE_H

#include <stddef.h>

#include <jv.h>

#include "didkey.h"
#include "hash.h"

struct tree_node {
	char did[DIDKEY_MAX];
	char *address;			/* owned by the caller */
	unsigned char key[HASH_RAW_LEN];	/* SHA-256(space || did) */
};

/* Fill in the keys of n nodes for space and sort them by key.  Cannot
 * fail. */
void tree_sort(const char *space, struct tree_node *nodes, size_t n);

/* The nodes of a tree request {"space","owner","nodes":[...]} (v borrowed;
 * a node is a DID or an object with "node"), as the tree subcommands of
 * ns-gossip and ns-relay read it: every distinct DID but the owner's,
 * sorted, into *out (owned: free() it).  *space and *owner point into v.
 * The count, or -1 if v is not such a request. */
long tree_request(jv v, const char **space, const char **owner,
    struct tree_node **out);

/* The index of did among n sorted nodes (1-based), or 0 if it is absent
 * (the owner node, or a node that is no member node). */
size_t tree_index(const struct tree_node *nodes, size_t n, const char *did);

/* The children of index i in the tier tree of n nodes with fan-out k, as
 * 1-based indices into out (room for k).  Returns how many. */
size_t tree_children(size_t i, size_t n, size_t k, size_t *out);

/* The two parents of index i >= 1 in the relay tree with fan-out k:
 * p[0] = floor((i - 1) / k), and p[1] the next index when it exists and is
 * not i, else 0 (the owner).  Both may be 0 for the first tier. */
void tree_parents(size_t i, size_t n, size_t k, size_t p[2]);

/* Up to g indices of 1..n chosen at random for announcements: neither me
 * nor any of the nk in kids.  rnd(k) returns a uniform integer below k.
 * Returns how many went into out (room for g). */
size_t tree_lazy(size_t n, size_t me, const size_t *kids, size_t nk,
    size_t g, unsigned (*rnd)(unsigned), size_t *out);

/* The depth of index i in the tier tree (0 for the owner). */
unsigned tree_depth(size_t i, size_t k);

#endif
