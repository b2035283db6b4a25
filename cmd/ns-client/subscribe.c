/*
 * ns-client: subscribe.  Each space followed, its history paged in with
 * --from while live events are held, and every envelope printed once, in
 * seq order.
 */
#include <string.h>

#include "jsonl.h"
#include "msg.h"
#include "client.h"

static struct sub *
sub_find(const char *space)
{
	for (int i = 0; space && i < g.nsubs; i++)
		if (strcmp(g.subs[i].space, space) == 0)
			return &g.subs[i];
	return NULL;
}

void
sub_over(struct sub *u)
{
	if (u->state == SUB_OVER)
		return;
	u->state = SUB_OVER;
	g.subs_open--;
	jv_free(u->held);
	u->held = jv_array();
	u->nheld = 0;
}

/* --from: ask for the next history page of each space that wants one, as
 * long as a slot is free (the others wait for the next call). */
void
send_pages(void)
{
	struct sub *u;
	struct slot *s;

	for (int i = 0; i < g.nsubs && g.state == S_READY; i++) {
		u = &g.subs[i];
		if (!u->want_page || u->state != SUB_HISTORY)
			continue;
		if (!slot_free_for_next())
			return;
		u->want_page = 0;
		if ((s = send_req("space.history", JV_OBJECT(jv_string("space"),
		    jv_string(u->space), jv_string("after"), jv_number(u->after),
		    jv_string("limit"), jv_number(PAGE)), K_PAGE)))
			s->sub = i;
	}
}

/* Print env (consumed), an envelope of u's space (u NULL: of no space
 * followed here), unless its seq was printed already.  With --raw, msg
 * (borrowed; jv_invalid() for an envelope of a history page, whose whole
 * answer is printed) is printed instead. */
static void
deliver(struct sub *u, jv env, jv msg)
{
	const char *space = jsonl_str(env, "space");
	int64_t seq = 0;

	if (g.count > 0 && g.events >= g.count) {
		jv_free(env);
		return;
	}
	if (u && (!space || strcmp(space, u->space) != 0)) {
		warn("%s: an envelope of another space refused", u->space);
		failed();
		jv_free(env);
		return;
	}
	if (u && jsonl_int(env, "seq", &seq) == 0 && seq <= u->last) {
		jv_free(env);		/* printed already */
		return;
	}
	if (emit_envelope(env) != 0)
		return;
	if (u)
		u->last = seq;
	if (g.raw && jv_is_valid(msg))
		emit(jv_copy(msg));
	g.events++;
}

/* The history is in: print what came meanwhile, then follow live. */
static void
sub_live(struct sub *u)
{
	jv held = u->held;

	u->state = SUB_LIVE;
	u->held = jv_array();
	u->nheld = 0;
	jv_array_foreach(held, i, m) {
		deliver(u, jsonl_get(m, "params"), m);
		jv_free(m);
	}
	jv_free(held);
}

/* A subscribe result: the space is followed from now on. */
void
sub_started(struct sub *u)
{
	if (u->state != SUB_ASKED)
		return;		/* ended by the node meanwhile */
	if (g.from > 0) {
		u->state = SUB_HISTORY;
		u->after = u->last = g.from - 1;
		u->want_page = 1;
	} else
		sub_live(u);
}

/* A page of the history of u, after u->after. */
void
handle_page(struct sub *u, jv msg, jv res)
{
	jv envs = jsonl_get(res, "envelopes");
	int64_t next;

	if (u->state != SUB_HISTORY)
		goto out;	/* ended meanwhile: nothing more to print */
	if (jv_get_kind(envs) != JV_KIND_ARRAY) {
		fatal("space.history: the node sent no envelopes array");
		goto out;
	}
	if (g.raw)
		emit(jv_copy(msg));
	jv_array_foreach(envs, i, env)
		deliver(u, env, jv_invalid());
	if (jsonl_kind(res, "next") == JV_KIND_NULL && u->dropped) {
		/* what was dropped is in the log by now: one more page */
		u->dropped = 0;
		u->after = u->last;
		u->want_page = 1;
	} else if (jsonl_kind(res, "next") == JV_KIND_NULL)
		sub_live(u);
	else if (jsonl_int(res, "next", &next) != 0 || next <= u->after)
		fatal("space.history: the node's next page does not advance");
	else {
		u->after = next;
		u->want_page = 1;
	}
out:
	jv_free(envs);
}

/* The node ended a subscription (the caller lost read access). */
void
on_unsubscribed(jv msg)
{
	jv params = jsonl_get(msg, "params");
	const char *space = jsonl_str(params, "space");
	const char *m = jsonl_str(params, "message");
	struct sub *u = sub_find(space);
	char sp[128], why[100];

	if (u && u->state != SUB_OVER) {
		clean(sp, sizeof(sp), space, 121);
		clean(why, sizeof(why), m ? m : jsonl_str(params, "reason") ?
		    jsonl_str(params, "reason") : "no reason given", 80);
		warn("%s: subscription ended by the node: %s", sp, why);
		if (g.raw)
			emit(jv_copy(msg));
		failed();
		sub_over(u);
	}
	jv_free(params);
}

/* An event or chunk notification for a subscription. */
void
on_event(jv msg, const char *method)
{
	jv params = jsonl_get(msg, "params");
	struct sub *u = sub_find(jsonl_str(params, "space"));

	if (u && u->state == SUB_OVER) {
		jv_free(params);
		return;
	}
	if (strcmp(method, "chunk") == 0) {
		/* live only, never in the log: no order to keep */
		if (g.count > 0 && g.events >= g.count)
			jv_free(params);
		else {
			emit(g.raw ? jv_copy(msg) : params);
			if (g.raw)
				jv_free(params);
			g.events++;
		}
		return;
	}
	if (u && g.from > 0 && u->state != SUB_LIVE) {
		if (u->nheld >= HELD_MAX) {
			/* memory stays bounded: the log has them all, and the
			 * history is read on past them */
			jv_free(u->held);
			u->held = jv_array();
			u->nheld = 0;
			u->dropped = 1;
		}
		u->held = jv_array_append(u->held, jv_copy(msg));
		u->nheld++;
		jv_free(params);
		return;
	}
	deliver(u, params, msg);
}
