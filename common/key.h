/*
 * Ed25519 key pairs and key files.  A key file is one compact JSON object
 * on one line, mode 0600:
 *
 * {"type":"northstar.key","version":1,"did":"did:key:z6Mk...",
 *  "publicKey":"<base64url, 32 bytes>","seed":"<64 lowercase hex digits>"}
 *
 * The seed alone defines the key; did and publicKey, when present, must
 * agree with it.  Secret bytes live in sodium_malloc memory.
 */
#ifndef NS_KEY_H
#define NS_KEY_H

#include <stddef.h>

#include "didkey.h"

#define KEY_FILE_MAX	4096	/* larger key files are refused */
#define KEY_SEED_LEN	32
#define KEY_PK_LEN	32
#define KEY_SK_LEN	64	/* seed || public key, as libsodium has it */
#define KEY_SIG_LEN	64
#define KEY_PK_B64_LEN	43	/* B64URL_LEN(KEY_PK_LEN) */

struct key {
	unsigned char pk[KEY_PK_LEN];
	unsigned char *sk;	/* KEY_SK_LEN bytes, sodium_malloc, read-only */
	char did[DIDKEY_MAX];
};

/* The key pair with this seed.  Dies on exhaustion. */
struct key *key_from_seed(const unsigned char seed[KEY_SEED_LEN]);

/* A fresh random key pair.  Dies on exhaustion. */
struct key *key_generate(void);

/* Wipe and free k; NULL is allowed. */
void key_free(struct key *k);

/* Read the key file at path.  Returns the key, or NULL with a one-line
 * message in err (open failure with strerror, not a regular file, mode
 * open to group or others, over KEY_FILE_MAX, not a JSON object, wrong
 * type or version, missing or malformed seed, did or publicKey not
 * matching the seed).  The message never quotes file contents.  Dies on
 * exhaustion. */
struct key *key_load(const char *path, char *err, size_t errlen);

/* Write k as a key file at path, mode 0600, synced to disk.  Without
 * force an existing path is left alone (errno EEXIST); with force the key
 * goes to a temporary file beside path that is renamed over it.  Returns 0,
 * or -1 with errno set and a message in err; nothing is left behind on
 * failure.  Dies on exhaustion. */
int key_save(const struct key *k, const char *path, int force, char *err,
    size_t errlen);

/* The key file text of k, "\n"-terminated, in sodium_malloc memory: it
 * holds the seed, so release it with key_format_free.  Dies on
 * exhaustion. */
char *key_format(const struct key *k);

/* Wipe and free a key_format result; NULL is allowed. */
void key_format_free(char *text);

/* The public key of k as 43 base64url characters plus a NUL. */
void key_public_b64(const struct key *k, char out[KEY_PK_B64_LEN + 1]);

/* Sign n bytes at m (Ed25519, detached).  Returns 0, or -1 on a libsodium
 * failure (not expected in practice). */
int key_sign(const struct key *k, const unsigned char *m, size_t n,
    unsigned char sig[KEY_SIG_LEN]);

/* Returns 0 if sig is pk's signature of n bytes at m, -1 otherwise
 * (including small-order and non-canonical keys or signatures). */
int key_verify(const unsigned char pk[KEY_PK_LEN], const unsigned char *m,
    size_t n, const unsigned char sig[KEY_SIG_LEN]);

#endif
