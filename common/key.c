#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jv.h>
#include <sodium.h>

#include "b64url.h"
#include "didkey.h"
#include "key.h"
#include "msg.h"

#define KEY_TYPE	"northstar.key"
#define KEY_VERSION	1
#define FORMAT_SIZE	256

_Static_assert(KEY_SK_LEN == crypto_sign_SECRETKEYBYTES, "sk size");
_Static_assert(KEY_PK_LEN == crypto_sign_PUBLICKEYBYTES, "pk size");
_Static_assert(KEY_SEED_LEN == crypto_sign_SEEDBYTES, "seed size");
_Static_assert(KEY_SIG_LEN == crypto_sign_BYTES, "sig size");
_Static_assert(KEY_PK_B64_LEN == B64URL_LEN(KEY_PK_LEN), "pk b64 size");

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void *
xsodium_malloc(size_t n)
{
	void *p;

	if ((p = sodium_malloc(n)) == NULL)
		die("sodium_malloc:");
	return p;
}

static struct key *
key_new(void)
{
	struct key *k;

	k = xcalloc(1, sizeof(*k));
	k->sk = xsodium_malloc(KEY_SK_LEN);
	return k;
}

static struct key *
key_seal(struct key *k)
{
	didkey_encode(k->pk, k->did);
	sodium_mprotect_readonly(k->sk);
	return k;
}

struct key *
key_from_seed(const unsigned char seed[KEY_SEED_LEN])
{
	struct key *k = key_new();

	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	return key_seal(k);
}

struct key *
key_generate(void)
{
	struct key *k = key_new();

	crypto_sign_keypair(k->pk, k->sk);
	return key_seal(k);
}

void
key_free(struct key *k)
{
	if (k == NULL)
		return;
	sodium_free(k->sk);	/* wipes first */
	sodium_memzero(k, sizeof(*k));
	free(k);
}

void
key_public_b64(const struct key *k, char out[KEY_PK_B64_LEN + 1])
{
	b64url_encode(k->pk, KEY_PK_LEN, out);
}

char *
key_format(const struct key *k)
{
	char seedhex[2 * KEY_SEED_LEN + 1];
	char pk[KEY_PK_B64_LEN + 1];
	char *text;
	int n;

	text = xsodium_malloc(FORMAT_SIZE);
	sodium_bin2hex(seedhex, sizeof(seedhex), k->sk, KEY_SEED_LEN);
	key_public_b64(k, pk);
	n = snprintf(text, FORMAT_SIZE, "{\"type\":\"" KEY_TYPE "\","
	    "\"version\":%d,\"did\":\"%s\",\"publicKey\":\"%s\","
	    "\"seed\":\"%s\"}\n", KEY_VERSION, k->did, pk, seedhex);
	sodium_memzero(seedhex, sizeof(seedhex));
	if (n < 0 || n >= FORMAT_SIZE)
		die("key_format: key file text too long");
	return text;
}

void
key_format_free(char *text)
{
	if (text != NULL)
		sodium_free(text);
}

/*
 * Field name of object o (borrowed): 0 if absent, 1 with *out set (owned)
 * if it is a string, -1 if it is something else.
 */
static int
get_string(jv o, const char *name, jv *out)
{
	jv v = jv_object_get(jv_copy(o), jv_string(name));

	switch (jv_get_kind(v)) {
	case JV_KIND_STRING:
		*out = v;
		return 1;
	case JV_KIND_INVALID:
		jv_free(v);
		return 0;
	default:
		jv_free(v);
		return -1;
	}
}

/* Wipe a jv string's bytes in place; used on secrets before jv_free. */
static void
jv_wipe(jv s)
{
	int n = jv_string_length_bytes(jv_copy(s));

	sodium_memzero((char *)jv_string_value(s), n);
}

/* Read the whole of fd (at most KEY_FILE_MAX bytes) into text. */
static ssize_t
read_small(int fd, char *text)
{
	size_t len = 0;
	ssize_t r;

	for (;;) {
		r = read(fd, text + len, KEY_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		len += r;
		if (len > KEY_FILE_MAX)
			break;
	}
	return len;
}

/*
 * The seed is parsed out of memory we cannot wipe completely: jq's parser
 * keeps its own token buffer.  The file text, the jv string and the
 * decoded seed are wiped; that is as far as libjq lets us go.
 */
struct key *
key_load(const char *path, char *err, size_t errlen)
{
	struct key *k = NULL, *cand = NULL;
	struct stat st;
	unsigned char *seed = NULL;
	unsigned char pk[KEY_PK_LEN];
	char *text = NULL;
	const char *reason, *s;
	jv v = jv_invalid(), f = jv_invalid(), sv = jv_invalid();
	ssize_t len;
	size_t n;
	int fd, r;

	/* O_NONBLOCK: a FIFO must not hang the open; regular files ignore it */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		seterr(err, errlen, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		seterr(err, errlen, "stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "key file %s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		seterr(err, errlen, "key file %s is %s by others (mode %04o); "
		    "chmod 600 %s", path, st.st_mode & 044 ? "readable" :
		    "accessible", (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > KEY_FILE_MAX) {
		seterr(err, errlen, "key file %s is too big (over %d bytes)",
		    path, KEY_FILE_MAX);
		goto out;
	}
	text = xsodium_malloc(KEY_FILE_MAX + 1);
	if ((len = read_small(fd, text)) < 0) {
		seterr(err, errlen, "read %s: %s", path, strerror(errno));
		goto out;
	}
	if (len > KEY_FILE_MAX) {
		seterr(err, errlen, "key file %s is too big (over %d bytes)",
		    path, KEY_FILE_MAX);
		goto out;
	}

	/* jv_parse_sized's message quotes the input: never show it */
	v = jv_parse_sized(text, len);
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		seterr(err, errlen, "key file %s is not a JSON object", path);
		goto out;
	}
	if (get_string(v, "type", &f) != 1 ||
	    strcmp(jv_string_value(f), KEY_TYPE) != 0) {
		seterr(err, errlen, "key file %s: type is not \"" KEY_TYPE "\"",
		    path);
		goto out;
	}
	jv_free(f);
	f = jv_object_get(jv_copy(v), jv_string("version"));
	if (jv_get_kind(f) != JV_KIND_NUMBER ||
	    jv_number_value(f) != KEY_VERSION) {
		seterr(err, errlen, "key file %s: unsupported version "
		    "(want %d)", path, KEY_VERSION);
		goto out;
	}

	if ((r = get_string(v, "seed", &sv)) != 1) {
		seterr(err, errlen, "key file %s: %s", path,
		    r == 0 ? "no seed" : "seed is not a string");
		goto out;
	}
	seed = xsodium_malloc(KEY_SEED_LEN);
	s = jv_string_value(sv);
	if (strlen(s) != 2 * KEY_SEED_LEN ||
	    sodium_hex2bin(seed, KEY_SEED_LEN, s, 2 * KEY_SEED_LEN, NULL, &n,
	    NULL) != 0 || n != KEY_SEED_LEN) {
		seterr(err, errlen, "key file %s: seed is not %d hex digits",
		    path, 2 * KEY_SEED_LEN);
		goto out;
	}
	cand = key_from_seed(seed);

	jv_free(f);
	f = jv_invalid();
	if ((r = get_string(v, "did", &f)) < 0) {
		seterr(err, errlen, "key file %s: did is not a string", path);
		goto out;
	}
	if (r == 1) {
		if (didkey_decode(jv_string_value(f), pk, &reason) != 0) {
			seterr(err, errlen, "key file %s: did: %s", path,
			    reason);
			goto out;
		}
		if (strcmp(jv_string_value(f), cand->did) != 0) {
			seterr(err, errlen, "key file %s: did does not match "
			    "seed", path);
			goto out;
		}
	}

	jv_free(f);
	f = jv_invalid();
	if ((r = get_string(v, "publicKey", &f)) < 0) {
		seterr(err, errlen, "key file %s: publicKey is not a string",
		    path);
		goto out;
	}
	if (r == 1) {
		s = jv_string_value(f);
		if (b64url_decode(s, strlen(s), pk, sizeof(pk), &n) != 0 ||
		    n != KEY_PK_LEN) {
			seterr(err, errlen, "key file %s: publicKey is not "
			    "base64url of %d bytes", path, KEY_PK_LEN);
			goto out;
		}
		if (memcmp(pk, cand->pk, KEY_PK_LEN) != 0) {
			seterr(err, errlen, "key file %s: publicKey does not "
			    "match seed", path);
			goto out;
		}
	}
	k = cand;
	cand = NULL;
out:
	if (jv_is_valid(sv))
		jv_wipe(sv);
	jv_free(sv);
	jv_free(f);
	jv_free(v);
	key_free(cand);
	if (seed != NULL)
		sodium_free(seed);
	if (text != NULL)
		sodium_free(text);
	close(fd);
	return k;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

/*
 * Make the new directory entry durable.  Some file systems refuse fsync on
 * a directory; the key itself is already on disk, so that is not a
 * failure.
 */
static void
sync_dir(const char *path)
{
	char *dir = xstrdup(path), *slash;
	int fd;

	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

int
key_save(const struct key *k, const char *path, int force, char *err,
    size_t errlen)
{
	char *text, *tmp = NULL;
	const char *target = path;
	int fd, saved = 0;

	text = key_format(k);
	if (force) {
		tmp = xmalloc(strlen(path) + sizeof(".XXXXXX"));
		sprintf(tmp, "%s.XXXXXX", path);
		target = tmp;
		fd = mkostemp(tmp, O_CLOEXEC);	/* O_EXCL, mode 0600 */
	} else
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOCTTY, 0600);
	if (fd < 0) {
		saved = errno;
		if (saved == EEXIST && !force)
			seterr(err, errlen, "%s already exists", path);
		else
			seterr(err, errlen, "create %s: %s", target,
			    strerror(saved));
		goto fail_open;
	}
	/* the umask may have taken bits away, never add them: be exact */
	if (fchmod(fd, 0600) < 0 || write_all(fd, text, strlen(text)) < 0 ||
	    fsync(fd) < 0) {
		saved = errno;
		seterr(err, errlen, "write %s: %s", target, strerror(saved));
		close(fd);
		goto fail;
	}
	if (close(fd) < 0) {
		saved = errno;
		seterr(err, errlen, "close %s: %s", target, strerror(saved));
		goto fail;
	}
	if (tmp != NULL && rename(tmp, path) < 0) {
		saved = errno;
		seterr(err, errlen, "rename %s to %s: %s", tmp, path,
		    strerror(saved));
		goto fail;
	}
	sync_dir(path);
	free(tmp);
	key_format_free(text);
	return 0;
fail:
	unlink(target);
fail_open:
	free(tmp);
	key_format_free(text);
	errno = saved;
	return -1;
}

int
key_sign(const struct key *k, const unsigned char *m, size_t n,
    unsigned char sig[KEY_SIG_LEN])
{
	return crypto_sign_detached(sig, NULL, m, n, k->sk) == 0 ? 0 : -1;
}

int
key_verify(const unsigned char pk[KEY_PK_LEN], const unsigned char *m,
    size_t n, const unsigned char sig[KEY_SIG_LEN])
{
	return crypto_sign_verify_detached(sig, m, n, pk) == 0 ? 0 : -1;
}
