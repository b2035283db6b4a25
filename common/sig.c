#include <string.h>
#include <sodium.h>

#include "b64url.h"
#include "canon.h"
#include "didkey.h"
#include "jsonl.h"
#include "sig.h"

const char *
sig_signer(jv obj)
{
	const char *s = jsonl_str(obj, "author");

	if (s || jsonl_has(obj, "author"))
		return s;
	return jsonl_str(obj, "node");
}

int
sig_sign(jv obj, const struct key *k, struct buf *scratch,
    char out[SIG_B64_LEN + 1])
{
	unsigned char sig[64];

	buf_reset(scratch);
	if (canon_dump(obj, "sig", scratch) != 0)
		return -1;
	key_sign(k, (const unsigned char *)scratch->p, scratch->len, sig);
	b64url_encode(sig, sizeof(sig), out);
	return 0;
}

jv
sig_attach(jv obj, const struct key *k)
{
	static struct buf scratch;
	char s[SIG_B64_LEN + 1];

	if (jv_get_kind(obj) != JV_KIND_OBJECT) {
		jv_free(obj);
		return jv_invalid_with_msg(jv_string("not an object"));
	}
	if (sig_sign(obj, k, &scratch, s) != 0) {
		jv_free(obj);
		return jv_invalid_with_msg(jv_string("not representable in RFC 8785"));
	}
	return jv_object_set(obj, jv_string("sig"), jv_string(s));
}

int
sig_verify(jv obj, struct buf *scratch, const char **reason)
{
	unsigned char pk[32], sig[64];
	size_t siglen;
	const char *did, *s;

	if (jv_get_kind(obj) != JV_KIND_OBJECT) {
		*reason = "not an object";
		return -1;
	}
	s = jsonl_str(obj, "sig");
	if (!s) {
		*reason = jsonl_has(obj, "sig") ? "sig is not a string" : "missing sig";
		return -1;
	}
	if (b64url_decode(s, strlen(s), sig, sizeof(sig), &siglen) != 0 ||
	    siglen != sizeof(sig)) {
		*reason = "sig is not base64url of 64 bytes";
		return -1;
	}
	did = sig_signer(obj);
	if (!did) {
		*reason = jsonl_has(obj, "author") || jsonl_has(obj, "node") ?
		    "signer DID is not a string" : "missing author";
		return -1;
	}
	if (didkey_decode(did, pk, reason) != 0)
		return -1;
	buf_reset(scratch);
	if (canon_dump(obj, "sig", scratch) != 0) {
		*reason = "not representable in RFC 8785";
		return -1;
	}
	if (key_verify(pk, (const unsigned char *)scratch->p, scratch->len, sig) != 0) {
		*reason = "signature does not verify";
		return -1;
	}
	return 0;
}
