#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "canon.h"
#include "jsonl.h"
#include "msg.h"

static const struct {
	int code;
	const char *reason;
} errs[] = {
	[E_PARSE] = { -32700, "parse_error" },
	[E_INVALID_REQUEST] = { -32600, "invalid_request" },
	[E_METHOD] = { -32601, "method_not_found" },
	[E_PARAMS] = { -32602, "invalid_params" },
	[E_INTERNAL] = { -32603, "internal" },
	[E_UNAUTH] = { -32001, "unauthenticated" },
	[E_BAD_SIG] = { -32002, "bad_sig" },
	[E_FORBIDDEN] = { -32003, "forbidden" },
	[E_NOT_FOUND] = { -32004, "not_found" },
	[E_GONE] = { -32005, "gone" },
	[E_CONFLICT] = { -32006, "conflict" },
	[E_TOO_LARGE] = { -32007, "too_large" },
	[E_BUSY] = { -32008, "busy" },
	[E_BAD_EVENT] = { -32009, "bad_event" },
	[E_UNREACHABLE] = { -32010, "unreachable" },
};

int
bus_err_code(enum bus_err e)
{
	return errs[e].code;
}

const char *
bus_err_reason(enum bus_err e)
{
	return errs[e].reason;
}

static const char req_prefix[] = "{\"m\":\"";
#define REQ_PREFIX_LEN (sizeof(req_prefix) - 1)

int
bus_is_prefix(const char *p, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len > REQ_PREFIX_LEN + n &&
	    memcmp(p, req_prefix, REQ_PREFIX_LEN) == 0 &&
	    memcmp(p + REQ_PREFIX_LEN, prefix, n) == 0;
}

int
bus_is(const char *p, size_t len, const char *method)
{
	size_t n = strlen(method);

	return bus_is_prefix(p, len, method) && p[REQ_PREFIX_LEN + n] == '"';
}

int
bus_method(const char *p, size_t len, char *out, size_t outlen)
{
	const char *s, *e;

	if (len <= REQ_PREFIX_LEN || memcmp(p, req_prefix, REQ_PREFIX_LEN) != 0)
		return -1;
	s = p + REQ_PREFIX_LEN;
	e = memchr(s, '"', len - REQ_PREFIX_LEN);
	if (!e || (size_t)(e - s) >= outlen)
		return -1;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	return 0;
}

int
bus_parse(const char *p, size_t len, struct bus_req *r)
{
	int64_t c;

	memset(r, 0, sizeof(*r));
	r->line = canon_parse(p, len);
	r->method = jsonl_str(r->line, "m");
	if (!r->method) {
		jv_free(r->line);
		memset(r, 0, sizeof(*r));
		r->line = jv_invalid();
		r->id = jv_invalid();
		r->params = jv_invalid();
		return -1;
	}
	r->conn = jsonl_int(r->line, "c", &c) == 0 ? c : -1;
	r->r = jsonl_int(r->line, "r", &c) == 0 ? c : -1;
	r->did = jsonl_str(r->line, "did");
	r->role = jsonl_str(r->line, "role");
	r->id = jsonl_get(r->line, "id");
	r->params = jsonl_get(r->line, "p");
	if (jv_get_kind(r->params) != JV_KIND_OBJECT) {
		jv_free(r->params);
		r->params = jv_object();
	}
	return 0;
}

void
bus_req_free(struct bus_req *r)
{
	jv_free(r->line);
	jv_free(r->id);
	jv_free(r->params);
	memset(r, 0, sizeof(*r));
	r->line = r->id = r->params = jv_invalid();
}

void
bus_json(struct buf *out, jv v)
{
	if (canon_dump(v, NULL, out) != 0)
		buf_adds(out, "null");  /* only for values no parser made */
	jv_free(v);
}

void
bus_str(struct buf *out, const char *s)
{
	size_t n = strlen(s);

	if (canon_plain_run((const unsigned char *)s, n) != n) {
		bus_json(out, jv_string(s));
		return;
	}
	buf_addc(out, '"');
	buf_add(out, s, n);
	buf_addc(out, '"');
}

void
bus_send(struct buf *out, int64_t conn, jv msg)
{
	buf_addf(out, "{\"to\":%lld,\"msg\":", (long long)conn);
	bus_json(out, msg);
	buf_adds(out, "}\n");
}

void
bus_publish(struct buf *out, const char *space, jv msg)
{
	buf_adds(out, "{\"pub\":");
	bus_str(out, space);
	buf_adds(out, ",\"msg\":");
	bus_json(out, msg);
	buf_adds(out, "}\n");
}

jv
bus_notification(const char *method, jv params)
{
	jv n = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));

	n = jv_object_set(n, jv_string("method"), jv_string(method));
	return jv_object_set(n, jv_string("params"), params);
}

void
bus_subscribe(struct buf *out, int64_t conn, const char *space, int on)
{
	buf_addf(out, "{\"%s\":%lld,\"space\":", on ? "sub" : "unsub",
	    (long long)conn);
	bus_str(out, space);
	buf_adds(out, "}\n");
}

void
bus_close(struct buf *out, int64_t conn, int code, const char *reason)
{
	buf_addf(out, "{\"close\":%lld,\"code\":%d,\"reason\":", (long long)conn,
	    code);
	bus_str(out, reason);
	buf_adds(out, "}\n");
}

static jv
rpc(const struct bus_req *r)
{
	jv m = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));

	return jv_object_set(m, jv_string("id"), jv_copy(r->id));
}

/* The answer line to r with msg (consumed), or the bare end of r when it
 * has no id. */
static void
answer(struct buf *out, const struct bus_req *r, jv msg)
{
	if (r->conn < 0 || (!jv_is_valid(r->id) && r->r < 0)) {
		jv_free(msg);
		return;
	}
	buf_addf(out, "{\"to\":%lld", (long long)r->conn);
	if (r->r >= 0)
		buf_addf(out, ",\"r\":%lld", (long long)r->r);
	if (jv_is_valid(r->id)) {
		buf_adds(out, ",\"msg\":");
		bus_json(out, msg);
	} else
		jv_free(msg);
	buf_adds(out, "}\n");
}

void
bus_done(struct buf *out, const struct bus_req *r)
{
	if (r->conn >= 0 && r->r >= 0)
		buf_addf(out, "{\"to\":%lld,\"r\":%lld}\n", (long long)r->conn,
		    (long long)r->r);
}

void
bus_result(struct buf *out, const struct bus_req *r, jv result)
{
	if (!jv_is_valid(r->id)) {
		jv_free(result);
		bus_done(out, r);
		return;
	}
	answer(out, r, jv_object_set(rpc(r), jv_string("result"), result));
}

jv
bus_error_object(enum bus_err e, const char *message)
{
	jv err = jv_object_set(jv_object(), jv_string("code"),
	    jv_number(errs[e].code));

	err = jv_object_set(err, jv_string("message"), jv_string(message));
	return jv_object_set(err, jv_string("data"), jv_object_set(jv_object(),
	    jv_string("reason"), jv_string(errs[e].reason)));
}

void
bus_error_data(struct buf *out, const struct bus_req *r, enum bus_err e,
    const char *message, jv data)
{
	if (!jv_is_valid(r->id)) {
		jv_free(data);
		bus_done(out, r);
		return;
	}
	jv err = jv_object_set(jv_object(), jv_string("code"),
	    jv_number(errs[e].code));
	err = jv_object_set(err, jv_string("message"), jv_string(message));
	data = jv_object_set(data, jv_string("reason"), jv_string(errs[e].reason));
	err = jv_object_set(err, jv_string("data"), data);
	answer(out, r, jv_object_set(rpc(r), jv_string("error"), err));
}

void
bus_error(struct buf *out, const struct bus_req *r, enum bus_err e,
    const char *message)
{
	bus_error_data(out, r, e, message, jv_object());
}

void
bus_request_head(struct buf *out, const char *method,
    const struct bus_req *r)
{
	buf_adds(out, "{\"m\":");
	bus_str(out, method);
	if (r && r->conn >= 0) {
		buf_adds(out, ",\"c\":");
		buf_addi(out, r->conn);
	}
	if (r && r->conn >= 0 && r->r >= 0) {
		buf_adds(out, ",\"r\":");
		buf_addi(out, r->r);
	}
	if (r && r->did) {
		buf_adds(out, ",\"did\":");
		bus_str(out, r->did);
	}
	if (r && r->role) {
		buf_adds(out, ",\"role\":");
		bus_str(out, r->role);
	}
	if (r && jv_is_valid(r->id)) {
		buf_adds(out, ",\"id\":");
		bus_json(out, jv_copy(r->id));
	}
	buf_adds(out, ",\"p\":");
}

void
bus_request(struct buf *out, const char *method, const struct bus_req *r,
    jv params)
{
	bus_request_head(out, method, r);
	bus_json(out, params);
	buf_adds(out, "}\n");
}
