#include <string.h>

#include "canon.h"
#include "event.h"
#include "jsonl.h"
#include "sig.h"

int
event_id(jv obj, struct buf *scratch, char out[HASH_ID_LEN + 1])
{
	buf_reset(scratch);
	if (canon_dump(obj, NULL, scratch) != 0)
		return -1;
	hash_id(scratch->p, scratch->len, out);
	return 0;
}

int
event_verify(jv ev, struct buf *scratch, const char **why)
{
	int64_t ts;

	if (jv_get_kind(ev) != JV_KIND_OBJECT) {
		*why = "event is not an object";
		return -1;
	}
	if (!jsonl_str(ev, "type")) {
		*why = "event has no type";
		return -1;
	}
	if (!jsonl_str(ev, "author")) {
		*why = "event has no author";
		return -1;
	}
	if (jsonl_int(ev, "ts", &ts) != 0 || ts < 0) {
		*why = "event ts is not a non-negative integer";
		return -1;
	}
	return sig_verify(ev, scratch, why);
}

int
envelope_verify(jv env, struct buf *scratch, const char **why)
{
	const char *type, *space, *evspace;
	int64_t seq, ts;
	jv_kind prev;
	int rc = -1;

	if (jv_get_kind(env) != JV_KIND_OBJECT) {
		*why = "envelope is not an object";
		return -1;
	}
	type = jsonl_str(env, "type");
	if (!type || strcmp(type, "envelope") != 0) {
		*why = "not an envelope";
		return -1;
	}
	if (!(space = jsonl_str(env, "space"))) {
		*why = "envelope has no space";
		return -1;
	}
	if (jsonl_int(env, "seq", &seq) != 0 || seq < 1) {
		*why = "envelope seq is not a positive integer";
		return -1;
	}
	prev = jsonl_kind(env, "prev");
	if (seq == 1 ? prev != JV_KIND_NULL : prev != JV_KIND_STRING) {
		*why = seq == 1 ? "envelope seq 1 must have prev null" :
		    "envelope prev is not a hash";
		return -1;
	}
	if (jsonl_has(env, "author") || !jsonl_str(env, "node")) {
		*why = "envelope must be signed by a node";
		return -1;
	}
	if (jsonl_int(env, "ts", &ts) != 0 || ts < 0) {
		*why = "envelope ts is not a non-negative integer";
		return -1;
	}
	if (sig_verify(env, scratch, why) != 0) {
		if (strcmp(*why, "signature does not verify") == 0)
			*why = "envelope signature does not verify";
		return -1;
	}
	jv ev = jsonl_get(env, "event");
	if (event_verify(ev, scratch, why) != 0) {
		if (strcmp(*why, "signature does not verify") == 0)
			*why = "event signature does not verify";
		goto out;
	}
	evspace = jsonl_str(ev, "space");
	if (evspace ? strcmp(evspace, space) != 0 : jsonl_has(ev, "space")) {
		*why = "event belongs to another space";
		goto out;
	}
	rc = 0;
out:
	jv_free(ev);
	return rc;
}
