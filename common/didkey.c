#include <string.h>

#include "b58.h"
#include "didkey.h"

#define PREFIX_LEN	(sizeof(DIDKEY_PREFIX) - 1)

/* Multicodec ed25519-pub (0xed) as an unsigned varint. */
static const unsigned char ed25519_pub[2] = { 0xed, 0x01 };

/* Key types seen in did:key, to name the one we were handed. */
static const struct {
	unsigned long code;
	const char *reason;
} others[] = {
	{ 0xec, "not an Ed25519 key (multicodec 0xec, x25519-pub)" },
	{ 0xe7, "not an Ed25519 key (multicodec 0xe7, secp256k1-pub)" },
	{ 0xea, "not an Ed25519 key (multicodec 0xea, bls12_381-g1-pub)" },
	{ 0xeb, "not an Ed25519 key (multicodec 0xeb, bls12_381-g2-pub)" },
	{ 0x1200, "not an Ed25519 key (multicodec 0x1200, p256-pub)" },
	{ 0x1201, "not an Ed25519 key (multicodec 0x1201, p384-pub)" },
	{ 0x1202, "not an Ed25519 key (multicodec 0x1202, p521-pub)" },
	{ 0x1205, "not an Ed25519 key (multicodec 0x1205, rsa-pub)" },
};

void
didkey_encode(const unsigned char pk[32], char out[DIDKEY_MAX])
{
	unsigned char raw[2 + 32];

	memcpy(raw, ed25519_pub, 2);
	memcpy(raw + 2, pk, 32);
	memcpy(out, DIDKEY_PREFIX "z", PREFIX_LEN + 1);
	b58_encode(raw, sizeof(raw), out + PREFIX_LEN + 1,
	    DIDKEY_MAX - PREFIX_LEN - 1);
}

static const char *
codec_reason(const unsigned char *p, size_t n)
{
	unsigned long code = 0;
	size_t i;

	/* a multicodec varint: 7 bits a byte, low group first */
	for (i = 0; i < n && i < 4; i++) {
		code |= (unsigned long)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0)
			break;
	}
	if (i == n || i == 4)
		return "not an Ed25519 key (unreadable multicodec)";
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		if (others[i].code == code)
			return others[i].reason;
	return "not an Ed25519 key (unknown multicodec)";
}

int
didkey_decode(const char *did, unsigned char pk[32], const char **reason)
{
	/* the last DID decoded, per thread: a batch of events is mostly
	 * one author's, and base58 both ways costs a few microseconds */
	static _Thread_local char last[DIDKEY_MAX];
	static _Thread_local unsigned char last_pk[32];
	unsigned char raw[B58_MAX];	/* big enough to name other key types */
	char again[DIDKEY_MAX];
	const char *id;
	size_t idlen, n;

	if (last[0] && strcmp(did, last) == 0) {
		memcpy(pk, last_pk, 32);
		return 0;
	}
	if (strncmp(did, DIDKEY_PREFIX, PREFIX_LEN) != 0) {
		*reason = "not a did:key DID";
		return -1;
	}
	id = did + PREFIX_LEN;
	idlen = strlen(id);
	if (idlen == 0) {
		*reason = "empty did:key method-specific id";
		return -1;
	}
	if (strcspn(id, "#?/;") < idlen) {
		*reason = "did:key with a path, query or fragment; "
		    "a bare DID is expected";
		return -1;
	}
	if (id[0] != 'z') {
		*reason = "unsupported multibase (only 'z', base58btc)";
		return -1;
	}
	id++;
	idlen--;
	if (idlen == 0) {
		*reason = "wrong did:key length for an Ed25519 key";
		return -1;
	}
	if (b58_span(id) != idlen) {
		*reason = "invalid base58btc character in did:key";
		return -1;
	}
	if (b58_decode(id, idlen, raw, sizeof(raw), &n) != 0) {
		*reason = "wrong did:key length for an Ed25519 key";
		return -1;
	}
	if (n < 2 || memcmp(raw, ed25519_pub, 2) != 0) {
		*reason = codec_reason(raw, n);
		return -1;
	}
	if (n != 2 + 32) {
		*reason = "wrong Ed25519 key length in did:key (want 32 bytes)";
		return -1;
	}
	/* base58 is a bijection, so this holds; it guards the one-string-
	 * per-key property that ids and membership checks rely on */
	didkey_encode(raw + 2, again);
	if (strcmp(again, did) != 0) {
		*reason = "non-canonical did:key";
		return -1;
	}
	memcpy(pk, raw + 2, 32);
	memcpy(last, again, strlen(again) + 1);
	memcpy(last_pk, pk, 32);
	return 0;
}

const char *
didkey_keyid(const char *did)
{
	if (strncmp(did, DIDKEY_PREFIX, PREFIX_LEN) != 0 ||
	    did[PREFIX_LEN] == '\0')
		return NULL;
	return did + PREFIX_LEN;
}
