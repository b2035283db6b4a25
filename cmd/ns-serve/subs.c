/*
 * Subscriptions: which connections get a space's "pub" messages.  Only
 * ns-log adds and removes them ({"sub"...}, {"unsub"...}), after checking
 * the space's read rule; a connection's go when it does.
 */
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "msg.h"
#include "serve.h"

struct sub {			/* one connection subscribed to one space */
	struct space *sp;
	struct conn *c;
	struct sub *snext, *sprev;	/* the space's subscribers */
	struct sub *cnext;		/* the connection's subscriptions */
};

struct space {
	struct space *hnext;
	struct sub *subs;
	size_t len;
	char name[];
};

static struct space **sptab;
static size_t sptab_size, n_spaces;

static uint64_t
str_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static struct space **
space_slot(const char *name, size_t n)
{
	struct space **pp;

	if (!sptab_size)
		return NULL;
	pp = &sptab[str_hash(name, n) & (sptab_size - 1)];
	for (; *pp; pp = &(*pp)->hnext)
		if ((*pp)->len == n && memcmp((*pp)->name, name, n) == 0)
			return pp;
	return pp;
}

static void
space_grow(void)
{
	size_t nsize = sptab_size ? sptab_size * 2 : 64, i;
	struct space **nt = xcalloc(nsize, sizeof(*nt)), *sp, *next;

	for (i = 0; i < sptab_size; i++)
		for (sp = sptab[i]; sp; sp = next) {
			size_t h = str_hash(sp->name, sp->len) & (nsize - 1);
			next = sp->hnext;
			sp->hnext = nt[h];
			nt[h] = sp;
		}
	free(sptab);
	sptab = nt;
	sptab_size = nsize;
}

void
subscribe(struct conn *c, const char *name)
{
	size_t n = strlen(name);
	struct space **pp, *sp;
	struct sub *s;

	for (s = c->subs; s; s = s->cnext)
		if (strcmp(s->sp->name, name) == 0)
			return;
	if (c->nsubs >= SUBS_MAX) {
		warn("connection %lld: over %d subscriptions, ignored",
		    (long long)c->id, SUBS_MAX);
		return;
	}
	if (n_spaces >= sptab_size)
		space_grow();
	pp = space_slot(name, n);
	if (!(sp = *pp)) {
		sp = xmalloc(sizeof(*sp) + n + 1);
		memcpy(sp->name, name, n + 1);
		sp->len = n;
		sp->subs = NULL;
		sp->hnext = NULL;
		*pp = sp;
		n_spaces++;
	}
	s = xmalloc(sizeof(*s));
	s->sp = sp;
	s->c = c;
	s->sprev = NULL;
	s->snext = sp->subs;
	if (sp->subs)
		sp->subs->sprev = s;
	sp->subs = s;
	s->cnext = c->subs;
	c->subs = s;
	c->nsubs++;
}

static void
sub_free(struct sub *s)
{
	struct space *sp = s->sp, **pp;

	if (s->sprev)
		s->sprev->snext = s->snext;
	else
		sp->subs = s->snext;
	if (s->snext)
		s->snext->sprev = s->sprev;
	free(s);
	if (!sp->subs) {
		pp = space_slot(sp->name, sp->len);
		*pp = sp->hnext;
		free(sp);
		n_spaces--;
	}
}

void
unsubscribe(struct conn *c, const char *name)
{
	struct sub **pp, *s;

	for (pp = &c->subs; (s = *pp); pp = &s->cnext)
		if (strcmp(s->sp->name, name) == 0) {
			*pp = s->cnext;
			c->nsubs--;
			sub_free(s);
			return;
		}
}

void
subs_drop(struct conn *c)
{
	struct sub *s;

	while ((s = c->subs)) {
		c->subs = s->cnext;
		sub_free(s);
	}
	c->nsubs = 0;
}

/* The bytes m[0..mlen) to every subscriber of the space name[0..n). */
void
subs_publish(const char *name, size_t n, const char *m, size_t mlen)
{
	struct space **pp = space_slot(name, n), *sp;
	struct sub *sb, *next;
	struct msg *msg;

	if (!pp || !(sp = *pp))
		return;
	msg = msg_new(m, mlen);
	msg->refs = 1;		/* held while the list is walked */
	for (sb = sp->subs; sb; sb = next) {
		next = sb->snext;
		conn_queue(sb->c, msg);
	}
	msg_unref(msg);
}

/*
 * ns-log restarted and knows no subscriptions: tell it every one, so that
 * it can end those whose reader lost access while it was away, and know
 * them from now on.
 */
void
subs_resync(void)
{
	struct conn *c;
	struct sub *s;

	for (c = conns; c; c = c->next) {
		if (c->state != S_AUTH || c->closing)
			continue;
		for (s = c->subs; s; s = s->cnext) {
			buf_addf(&obuf, "{\"m\":\"sub.restore\",\"c\":%lld,"
			    "\"did\":\"%s\",\"role\":\"%s\",\"p\":{\"space\":",
			    (long long)c->id, c->did,
			    c->node_role ? "node" : "client");
			out_json(jv_string(s->sp->name));
			buf_adds(&obuf, "}}\n");
			out_line_done();
		}
	}
}

void
subs_free_all(void)
{
	free(sptab);
	sptab = NULL;
	sptab_size = n_spaces = 0;
}
