#include <string.h>

#include "canon.h"
#include "didkey.h"
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
event_check(jv ev, const char **why)
{
	const char *author;
	int64_t ts;

	if (jv_get_kind(ev) != JV_KIND_OBJECT) {
		*why = "event is not an object";
		return EVENT_MALFORMED;
	}
	if (!jsonl_str(ev, "type")) {
		*why = "event has no type";
		return EVENT_MALFORMED;
	}
	if (!(author = jsonl_str(ev, "author"))) {
		*why = jsonl_has(ev, "author") ? "event author is not a did:key" :
		    "event has no author";
		return EVENT_MALFORMED;
	}
	if (!didkey_keyid(author)) {
		*why = "event author is not a did:key";
		return EVENT_MALFORMED;
	}
	if (jsonl_int(ev, "ts", &ts) != 0 || ts < 0) {
		*why = "event ts is not a non-negative integer";
		return EVENT_MALFORMED;
	}
	return 0;
}

int
event_verify(jv ev, struct buf *scratch, const char **why)
{
	if (event_check(ev, why) != 0)
		return EVENT_MALFORMED;
	if (sig_verify(ev, scratch, why) != 0)
		return EVENT_BAD_SIG;
	return 0;
}

/* The shape of an envelope and of the event inside (borrowed): no crypto. */
static int
envelope_check(jv env, jv ev, const char **why)
{
	const char *type, *space, *evspace;
	int64_t seq, ts;
	jv_kind prev;

	if (jv_get_kind(env) != JV_KIND_OBJECT) {
		*why = "envelope is not an object";
		return EVENT_MALFORMED;
	}
	type = jsonl_str(env, "type");
	if (!type || strcmp(type, "envelope") != 0) {
		*why = "not an envelope";
		return EVENT_MALFORMED;
	}
	if (!(space = jsonl_str(env, "space"))) {
		*why = "envelope has no space";
		return EVENT_MALFORMED;
	}
	if (jsonl_int(env, "seq", &seq) != 0 || seq < 1) {
		*why = "envelope seq is not a positive integer";
		return EVENT_MALFORMED;
	}
	prev = jsonl_kind(env, "prev");
	if (seq == 1 ? prev != JV_KIND_NULL : prev != JV_KIND_STRING ||
	    !jsonl_str(env, "prev")) {
		*why = seq == 1 ? "envelope seq 1 must have prev null" :
		    "envelope prev is not a hash";
		return EVENT_MALFORMED;
	}
	if (jsonl_has(env, "author") || !jsonl_str(env, "node")) {
		*why = "envelope must be signed by a node";
		return EVENT_MALFORMED;
	}
	if (jsonl_int(env, "ts", &ts) != 0 || ts < 0) {
		*why = "envelope ts is not a non-negative integer";
		return EVENT_MALFORMED;
	}
	if (event_check(ev, why) != 0)
		return EVENT_MALFORMED;
	evspace = jsonl_str(ev, "space");
	if (evspace ? strcmp(evspace, space) != 0 : jsonl_has(ev, "space")) {
		*why = "event belongs to another space";
		return EVENT_MALFORMED;
	}
	return 0;
}

int
envelope_verify(jv env, struct buf *scratch, const char **why)
{
	jv ev = jsonl_get(env, "event");
	int rc;

	if ((rc = envelope_check(env, ev, why)) != 0)
		goto out;
	rc = EVENT_BAD_SIG;
	if (sig_verify(env, scratch, why) != 0) {
		if (strcmp(*why, "signature does not verify") == 0)
			*why = "envelope signature does not verify";
		goto out;
	}
	if (sig_verify(ev, scratch, why) != 0) {
		if (strcmp(*why, "signature does not verify") == 0)
			*why = "event signature does not verify";
		goto out;
	}
	rc = 0;
out:
	jv_free(ev);
	return rc;
}
