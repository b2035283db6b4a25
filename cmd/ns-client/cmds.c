/*
 * ns-client: the commands.  Each one-shot command's request, history
 * paging, what to send next (pump), and each answer in its turn: printed,
 * checked, or reported as the node's refusal.
 */
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>

#include "didkey.h"
#include "event.h"
#include "hash.h"
#include "jsonl.h"
#include "msg.h"
#include "neterr.h"
#include "client.h"

/* The space id named by a bare id or a northstar:// address, or NULL. */
const char *
space_id(const char *arg)
{
	const char *p;

	if (strncmp(arg, "northstar://", 12) == 0) {
		p = strchr(arg + 12, '/');
		if (!p || p == arg + 12 || p[1] == '\0')
			return NULL;
		return p + 1;
	}
	if (*arg == '\0' || !strchr(arg, '/'))
		return NULL;
	return arg;
}

/* The space.beam params for content (consumed, an object) in space. */
jv
beam_params(const char *space, jv content)
{
	static struct buf scratch;
	char id[HASH_ID_LEN + 1];
	struct buf path = BUF_INIT;
	jv beam, ref, params = jv_invalid();

	content = jv_object_delete(content, jv_string("sig"));
	content = jv_object_set(content, jv_string("type"), jv_string("beam"));
	beam = sign_event(content);
	if (!jv_is_valid(beam) || event_id(beam, &scratch, id) != 0) {
		jv_free(beam);
		return jv_invalid_with_msg(jv_string("not representable in "
		    "RFC 8785"));
	}
	buf_addf(&path, "beam/%s/%s", g.author_hash, id);
	ref = node_fields(JV_OBJECT(jv_string("type"), jv_string("beam.ref"),
	    jv_string("space"), jv_string(space), jv_string("beam"),
	    jv_string(path.p)));
	ref = sign_event(ref);
	if (jv_is_valid(ref))
		params = JV_OBJECT(jv_string("event"), ref, jv_string("beam"),
		    beam);
	else {
		jv_free(ref);
		jv_free(beam);
	}
	buf_free(&path);
	return params;
}

static jv
event_params(jv ev)
{
	return JV_OBJECT(jv_string("event"), sign_event(ev));
}

/* Build and send request i of a one-shot command (or subscribe). */
static void
send_command(int i)
{
	char **a = g.args;
	const char *space = g.nargs > 0 ? space_id(a[0]) : NULL;
	struct buf b = BUF_INIT;
	struct slot *s;
	jv ev, params;

	switch (g.cmd) {
	case C_LOGIN:
	case C_RPC:
	case C_STREAM_PUSH:
	case C_STREAM_WATCH:
		break;
	case C_CREATE:
		buf_addf(&b, "%s/%s/%s", a[0], didkey_keyid(g.key->did), a[1]);
		ev = node_fields(JV_OBJECT(jv_string("type"),
		    jv_string("space.create"), jv_string("space"),
		    jv_string(b.p), jv_string("name"),
		    jv_string(g.nargs > 2 ? a[2] : a[1])));
		send_req("space.create", event_params(ev), K_PRINT);
		break;
	case C_JOIN:
		ev = node_fields(JV_OBJECT(jv_string("type"),
		    jv_string("space.join"), jv_string("space"),
		    jv_string(space)));
		params = event_params(ev);
		if (space != a[0])
			params = jv_object_set(params, jv_string("address"),
			    jv_string(a[0]));
		send_req("space.join", params, K_PRINT);
		break;
	case C_LEAVE:
	case C_INVITE:
	case C_REMOVE:
		ev = JV_OBJECT(jv_string("type"), jv_string(g.cmd == C_LEAVE ?
		    "space.leave" : g.cmd == C_INVITE ? "space.invite" :
		    "space.remove"), jv_string("space"), jv_string(space));
		if (g.cmd != C_LEAVE)
			ev = jv_object_set(ev, jv_string("member"),
			    jv_string(a[1]));
		send_req(g.cmd == C_LEAVE ? "space.leave" : g.cmd == C_INVITE ?
		    "space.invite" : "space.remove", event_params(ev), K_PRINT);
		break;
	case C_BEAM:
		params = beam_params(space, jv_copy(g.beam_arg));
		if (!jv_is_valid(params)) {
			jv_free(params);
			fatal("beam: cannot sign the beam");
			break;
		}
		send_req("space.beam", params, K_PRINT);
		break;
	case C_HISTORY:
		break;
	case C_MEMBERS:
	case C_INFO:
		send_req(g.cmd == C_INFO ? "space.info" : "space.members",
		    JV_OBJECT(jv_string("space"), jv_string(space)), K_PRINT);
		break;
	case C_SUBSCRIBE:
		if ((s = send_req("subscribe", JV_OBJECT(jv_string("space"),
		    jv_string(g.subs[i].space)), K_SUBSCRIBE)))
			s->sub = i;
		break;
	case C_GET:
		params = JV_OBJECT(jv_string("beam"), jv_string(a[0]));
		if (g.get_address)
			params = jv_object_set(params, jv_string("address"),
			    jv_string(g.get_address));
		send_req("beam.get", params, K_GET);
		break;
	case C_DELETE:
		ev = JV_OBJECT(jv_string("type"), jv_string("beam.tombstone"),
		    jv_string("beam"), jv_string(a[0]));
		send_req("beam.delete", event_params(ev), K_PRINT);
		break;
	}
	buf_free(&b);
}

static void
send_history_page(void)
{
	int64_t n = PAGE;

	if (g.limit > 0 && g.limit - g.hist_printed < n)
		n = g.limit - g.hist_printed;
	send_req("space.history", JV_OBJECT(jv_string("space"),
	    jv_string(space_id(g.args[0])), jv_string("after"),
	    jv_number(g.hist_after), jv_string("limit"), jv_number(n)),
	    K_HISTORY);
	g.hist_state = 1;
}

/* --- the run ----------------------------------------------------------- */

static int
produce_done(void)
{
	switch (g.cmd) {
	case C_HISTORY:
		return g.hist_state == 2;
	case C_RPC:
		return g.stdin_done;
	case C_BEAM:
		if (g.stdin_used)
			return g.stdin_done;
		/* FALLTHROUGH */
	default:
		return g.list_i >= g.list_n;
	}
}

/* Send what the window allows; finish when everything is answered. */
void
pump(void)
{
	struct item it;
	int r;

	if (g.cmd == C_STREAM_PUSH || g.cmd == C_STREAM_WATCH) {
		stream_pump();
		if (g.outq && g.wsi)
			lws_callback_on_writable(g.wsi);
		return;
	}
	while (g.state == S_READY && slot_free_for_next() && !produce_done()) {
		if (g.cmd == C_HISTORY) {
			if (g.hist_state != 0)
				break;
			send_history_page();
		} else if (g.cmd == C_RPC || (g.cmd == C_BEAM && g.stdin_used)) {
			if ((r = inq_pop(&it)) == 0)
				break;
			if (r < 0) {
				g.stdin_done = 1;
				break;
			}
			send_input(&it);
			free(it.p);
		} else
			send_command(g.list_i++);
		drain();
	}
	if (g.cmd == C_SUBSCRIBE)
		send_pages();
	if (g.outq && g.wsi)
		lws_callback_on_writable(g.wsi);
	if (g.state != S_READY || !produce_done() || g.used > 0)
		return;
	if (g.cmd == C_SUBSCRIBE && !g.sub_failed && g.subs_open > 0 &&
	    !(g.count > 0 && g.events >= g.count))
		return;
	begin_close();
}

/* Say why the node refused a request. */
void
report_error(const struct slot *s, jv err)
{
	char reason[40], message[100];
	const char *r, *m;
	jv data;

	failed();
	if (g.quiet)
		return;
	data = jsonl_get(err, "data");
	r = jsonl_str(data, "reason");
	m = jsonl_str(err, "message");
	clean(reason, sizeof(reason), r ? r : "error", 32);
	clean(message, sizeof(message), m ? m : "", 80);
	if (s->tries > 1)
		warn("%s: %s%s%s (sent %d times)", s->method, reason,
		    *message ? ": " : "", message, s->tries);
	else
		warn("%s: %s%s%s", s->method, reason, *message ? ": " : "",
		    message);
	jv_free(data);
}

static int
check_beam(const char *path, jv beam)
{
	static struct buf scratch;
	char id[HASH_ID_LEN + 1], ah[HASH_ID_LEN + 1];
	const char *author, *type, *why;

	type = jsonl_str(beam, "type");
	author = jsonl_str(beam, "author");
	if (!type || strcmp(type, "beam") != 0 || !author)
		return -1;
	if (event_verify(beam, &scratch, &why) != 0)
		return -1;
	if (event_id(beam, &scratch, id) != 0)
		return -1;
	hash_id(author, strlen(author), ah);
	if (strncmp(path, "beam/", 5) != 0 || strncmp(path + 5, ah,
	    HASH_ID_LEN) != 0 || path[5 + HASH_ID_LEN] != '/' ||
	    strcmp(path + 6 + HASH_ID_LEN, id) != 0)
		return -1;
	return 0;
}

/* Print an envelope the node sent, if it verifies. */
int
emit_envelope(jv env)
{
	static struct buf scratch;
	const char *why;

	if (envelope_verify(env, &scratch, &why) != 0) {
		warn("envelope from the node refused: %s", why);
		failed();
		jv_free(env);
		return -1;
	}
	if (!g.raw)
		emit(env);
	else
		jv_free(env);
	return 0;
}

static void
handle_login(jv msg)
{
	jv res = jsonl_get(msg, "result");
	const char *did = jsonl_str(res, "did");

	if (jv_get_kind(res) != JV_KIND_OBJECT || !did ||
	    strcmp(did, g.key->did) != 0) {
		fatal("login: the node answered with another identity");
		goto out;
	}
	g.state = S_READY;
	if (g.cmd == C_LOGIN)
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
	/* a connection made again must reach the same node */
	if (!g.want_node && jv_get_kind(g.node) == JV_KIND_STRING) {
		snprintf(g.pinned, sizeof(g.pinned), "%s",
		    jv_string_value(g.node));
		g.want_node = g.pinned;
	}
	if (g.down_since && g.verbose)
		warn("%s: logged in again after %.1f s", g.url,
		    now_s() - g.down_since);
	g.down_since = 0;
	g.ready_once = 1;
out:
	jv_free(res);
}

static void
handle_history(jv msg, jv res)
{
	jv envs = jsonl_get(res, "envelopes");
	int64_t next, n, i;

	if (jv_get_kind(envs) != JV_KIND_ARRAY) {
		fatal("space.history: the node sent no envelopes array");
		goto out;
	}
	if (g.raw)
		emit(jv_copy(msg));
	n = jv_array_length(jv_copy(envs));
	for (i = 0; i < n && g.state != S_CLOSING; i++) {
		if (g.limit > 0 && g.hist_printed >= g.limit)
			break;
		emit_envelope(jv_array_get(jv_copy(envs), (int)i));
		g.hist_printed++;
	}
	if (jsonl_kind(res, "next") == JV_KIND_NULL ||
	    (g.limit > 0 && g.hist_printed >= g.limit)) {
		g.hist_state = 2;
		goto out;
	}
	if (jsonl_int(res, "next", &next) != 0 || next <= g.hist_after) {
		fatal("space.history: the node's next page does not advance");
		goto out;
	}
	g.hist_after = next;
	g.hist_state = 0;
out:
	jv_free(envs);
}

/* An answer whose turn has come.  The slot is released by the caller. */
void
handle(struct slot *s)
{
	jv msg = s->msg, res, beam;
	int64_t line;

	s->msg = jv_invalid();
	if (s->kind == K_BAD) {
		failed();
		if (!g.quiet && jsonl_int(msg, "line", &line) == 0)
			warn("stdin line %lld: %s", (long long)line,
			    jsonl_str(msg, "msg"));
		else if (!g.quiet)
			warn("%s", jsonl_str(msg, "msg"));
		emit(msg);
		return;
	}
	if (s->kind >= K_EDGE) {
		stream_answer(s, msg);
		return;
	}
	if (s->kind == K_RPC) {
		msg = jv_object_set(msg, jv_string("id"), jv_copy(s->uid));
		if (jsonl_has(msg, "error")) {
			jv err = jsonl_get(msg, "error");
			report_error(s, err);
			jv_free(err);
		}
		emit(msg);
		return;
	}
	if (jsonl_has(msg, "error")) {
		jv err = jsonl_get(msg, "error");
		if (s->kind == K_LOGIN) {
			char why[300];
			jv data = jsonl_get(err, "data");
			neterr_login(why, sizeof(why), jsonl_str(data, "reason"),
			    jsonl_str(err, "message"));
			jv_free(data);
			fatal("%s: %s", g.url, why);
		} else {
			if (s->kind == K_SUBSCRIBE || s->kind == K_PAGE) {
				g.sub_failed = 1;
				sub_over(&g.subs[s->sub]);
			}
			if (s->kind == K_HISTORY)
				g.hist_state = 2;
			report_error(s, err);
			emit(g.raw ? jv_copy(msg) : jv_copy(err));
		}
		jv_free(err);
		jv_free(msg);
		return;
	}
	res = jsonl_get(msg, "result");
	switch (s->kind) {
	case K_LOGIN:
		handle_login(msg);
		break;
	case K_HISTORY:
		handle_history(msg, res);
		break;
	case K_PAGE:
		handle_page(&g.subs[s->sub], msg, res);
		break;
	case K_SUBSCRIBE:
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
		sub_started(&g.subs[s->sub]);
		break;
	case K_GET:
		beam = jsonl_get(res, "beam");
		if (check_beam(g.args[0], beam) != 0) {
			warn("beam.get: the beam the node sent does not match "
			    "its path");
			failed();
			jv_free(beam);
		} else if (g.raw) {
			jv_free(beam);
			emit(jv_copy(msg));
		} else
			emit(beam);
		break;
	default:
		emit(g.raw ? jv_copy(msg) : jv_copy(res));
		break;
	}
	jv_free(res);
	jv_free(msg);
}

/* Handle the answers whose turn has come, in request order. */
void
drain(void)
{
	struct slot *s;

	if (g.cmd == C_RPC)
		return;
	while ((s = &g.slots[g.head % g.cap])->used && s->answered &&
	    s->wire == g.head) {
		handle(s);
		slot_release(s);
		g.head++;
	}
}
