/*
 * Logins: the signed challenge a node sends on every new connection, the
 * check of a client's or node's auth.login, and this node's own login when
 * it dials another (share/doc/protocol.md, section 8).
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "jsonl.h"
#include "msg.h"
#include "serve.h"
#include "sig.h"

static struct buf vs = BUF_INIT;	/* scratch for signature checks */

static void
new_nonce(struct conn *c)
{
	unsigned char raw[NONCE_LEN];

	randombytes_buf(raw, sizeof(raw));
	b64url_encode(raw, sizeof(raw), c->nonce);
}

void
send_challenge(struct conn *c)
{
	jv ch;

	new_nonce(c);
	ch = jv_object_set(jv_object(), jv_string("type"),
	    jv_string("auth.challenge"));
	ch = jv_object_set(ch, jv_string("nonce"), jv_string(c->nonce));
	ch = jv_object_set(ch, jv_string("node"), jv_string(nodekey->did));
	ch = jv_object_set(ch, jv_string("address"), jv_string(address));
	ch = jv_object_set(ch, jv_string("ts"),
	    jv_number((double)jsonl_now_ms()));
	ch = sig_attach(ch, nodekey);
	if (!jv_is_valid(ch)) {
		jv_free(ch);
		conn_close(c, 1011, "internal error", 1);
		return;
	}
	send_jv(c, bus_notification("auth.challenge", ch));
}

/* Why params (borrowed) is not a good login on c, or NULL. */
static const char *
login_check(struct conn *c, jv params, const char **role)
{
	static char why[128];
	unsigned char pk[KEY_PK_LEN];
	const char *s, *reason;
	int64_t ts, now;

	if (jv_get_kind(params) != JV_KIND_OBJECT)
		return "params must be an object";
	if (!(s = jsonl_str(params, "type")) || strcmp(s, "auth.login") != 0)
		return "type is not auth.login";
	if (!(s = jsonl_str(params, "nonce")) || c->nonce[0] == '\0' ||
	    strcmp(s, c->nonce) != 0)
		return "nonce is not the one issued on this connection";
	if (!(s = jsonl_str(params, "node")) || strcmp(s, nodekey->did) != 0)
		return "node is not this node";
	if (!(s = jsonl_str(params, "address")) || strcmp(s, address) != 0)
		return "address is not this node's";
	if (!(s = jsonl_str(params, "role")) ||
	    (strcmp(s, "client") != 0 && strcmp(s, "node") != 0))
		return "role must be client or node";
	*role = s;
	if (!(s = jsonl_str(params, "author")) || didkey_decode(s, pk, &reason) != 0)
		return "author is not a did:key";
	if (jsonl_int(params, "ts", &ts) != 0)
		return "ts missing or not an integer";
	now = jsonl_now_ms();
	if (ts > now + SKEW_MS || ts < now - SKEW_MS)
		return "ts is more than 5 minutes from the node's clock";
	if (sig_verify(params, &vs, &reason) != 0) {
		snprintf(why, sizeof(why), "bad signature: %s", reason);
		return why;
	}
	if (vs.cap > KEEP_MAX)
		buf_free(&vs);
	return NULL;
}

/* c logged in as did: count it against the DID's connections.  0, or -1
 * when the DID has too many (c is then being closed). */
static int
account(struct conn *c, const char *did)
{
	struct acct *a = acct_get(did);

	/* counted even when over: conn_gone releases it either way */
	a->conns++;
	c->acct = a;
	return a->conns > max_did_conn ? -1 : 0;
}

/* auth.login from an inbound connection; msg borrowed, id consumed. */
void
do_login(struct conn *c, jv msg, jv id)
{
	jv params = jsonl_get(msg, "params"), res;
	const char *why, *role = NULL;

	if (c->state == S_AUTH) {
		send_error(c, id, E_INVALID_REQUEST, "already logged in");
		goto out;
	}
	why = login_check(c, params, &role);
	c->nonce[0] = '\0';		/* burned either way */
	if (why) {
		send_error(c, id, E_UNAUTH, why);
		if (++c->fails >= LOGIN_FAILS_MAX)
			conn_close(c, 1008, "too many failed logins", 0);
		else
			send_challenge(c);	/* a retry needs a nonce */
		goto out;
	}
	if (account(c, jsonl_str(params, "author")) != 0) {
		send_error_data(c, id, E_BUSY, "too many connections for this "
		    "DID", jv_object_set(jv_object(), jv_string("retryAfter"),
		    jv_number(1000)));
		conn_close(c, CLOSE_TRY_AGAIN, "too many connections for this "
		    "DID", 0);
		goto out;
	}
	snprintf(c->did, sizeof(c->did), "%s", jsonl_str(params, "author"));
	c->node_role = strcmp(role, "node") == 0;
	c->state = S_AUTH;
	res = jv_object_set(jv_object(), jv_string("did"), jv_string(c->did));
	res = jv_object_set(res, jv_string("role"), jv_string(role));
	res = jv_object_set(res, jv_string("node"), jv_string(nodekey->did));
	send_result(c, id, res);
	emit_conn_open(c);
	if (rx_paused)
		conn_pause(c, PAUSE_OUT, 1);
out:
	jv_free(params);
}

/* A message on an outbound connection before login; msg borrowed. */
void
dial_step(struct conn *c, jv msg)
{
	const char *s, *reason, *nonce, *node, *addr;
	jv ch, login, req, err;
	char why[160];
	int64_t id;

	if (c->state == S_CHALLENGE) {
		s = jsonl_str(msg, "method");
		if (!s || strcmp(s, "auth.challenge") != 0) {
			dial_fail(c, "first message is not auth.challenge");
			return;
		}
		ch = jsonl_get(msg, "params");
		nonce = jsonl_str(ch, "nonce");
		node = jsonl_str(ch, "node");
		addr = jsonl_str(ch, "address");
		s = jsonl_str(ch, "type");
		if (!s || strcmp(s, "auth.challenge") != 0 || !nonce || !node ||
		    !addr || jsonl_has(ch, "author")) {
			jv_free(ch);
			dial_fail(c, "malformed auth.challenge");
			return;
		}
		if (sig_verify(ch, &vs, &reason) != 0) {
			snprintf(why, sizeof(why), "challenge: %s", reason);
			jv_free(ch);
			dial_fail(c, why);
			return;
		}
		if (c->expect && strcmp(node, c->expect) != 0) {
			jv_free(ch);
			dial_fail(c, "challenge is from another node than expected");
			return;
		}
		snprintf(c->did, sizeof(c->did), "%s", node);
		login = jv_object_set(jv_object(), jv_string("type"),
		    jv_string("auth.login"));
		login = jv_object_set(login, jv_string("nonce"),
		    jv_string(nonce));
		login = jv_object_set(login, jv_string("node"),
		    jv_string(node));
		login = jv_object_set(login, jv_string("address"),
		    jv_string(addr));
		login = jv_object_set(login, jv_string("role"),
		    jv_string("node"));
		login = jv_object_set(login, jv_string("author"),
		    jv_string(nodekey->did));
		login = jv_object_set(login, jv_string("ts"),
		    jv_number((double)jsonl_now_ms()));
		jv_free(ch);
		login = sig_attach(login, nodekey);
		if (!jv_is_valid(login)) {
			jv_free(login);
			dial_fail(c, "cannot sign the login");
			return;
		}
		req = jv_object_set(jv_object(), jv_string("jsonrpc"),
		    jv_string("2.0"));
		req = jv_object_set(req, jv_string("id"), jv_number(1));
		req = jv_object_set(req, jv_string("method"),
		    jv_string("auth.login"));
		req = jv_object_set(req, jv_string("params"), login);
		send_jv(c, req);
		c->state = S_LOGIN_SENT;
		return;
	}
	/* S_LOGIN_SENT: wait for the answer with id 1, ignore the rest */
	if (jsonl_has(msg, "method"))
		return;
	if (jsonl_int(msg, "id", &id) != 0 || id != 1)
		return;
	if (jsonl_kind(msg, "result") == JV_KIND_OBJECT) {
		if (account(c, c->did) != 0) {
			dial_fail(c, "too many connections to this node");
			return;
		}
		c->state = S_AUTH;
		c->node_role = 1;
		emit_conn_open(c);
		if (rx_paused)
			conn_pause(c, PAUSE_OUT, 1);
		return;
	}
	err = jsonl_get(msg, "error");
	s = jsonl_str(err, "message");
	snprintf(why, sizeof(why), "login refused: %.80s", s ? s : "no reason");
	jv_free(err);
	dial_fail(c, why);
}
