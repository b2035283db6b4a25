/*
 * ns-sign: sign JSON objects.  Each JSON value read (one per line, or
 * pretty-printed) must be an object; "author" (the key's DID) and "ts"
 * (milliseconds since the epoch) are added where missing, any old "sig" is
 * replaced, and the signed object is written as one RFC 8785 line.
 * With --canonical, each value's RFC 8785 form is printed and nothing is
 * signed.  With --raw, all of stdin is one message of raw bytes and its
 * signature is printed as one base64url line (for checking other
 * implementations against the exact bytes).  Exit 0 if every value was handled, 1 if some were refused,
 * 2 on usage or environment trouble.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "b64url.h"
#include "buf.h"
#include "canon.h"
#include "jsonin.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

#define PROG "ns-sign"
#define VALUE_MAX (1 << 20)

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-sign -k KEYFILE [--ts MS] [--max-size BYTES]\n"
	    "       ns-sign --canonical [--max-size BYTES]\n"
	    "       ns-sign -k KEYFILE --raw\n"
	    "  -k, --key FILE       sign with this key file (mode 0600)\n"
	    "  -c, --canonical      print the RFC 8785 bytes of each value; sign nothing\n"
	    "  -r, --raw            sign all of stdin as raw bytes; print the signature\n"
	    "      --ts MS          timestamp to add where \"ts\" is missing (default: now)\n"
	    "      --max-size N     largest value accepted, in bytes (default %d)\n"
	    "  -h, --help           this help\n"
	    "      --version        print the version\n", VALUE_MAX);
	exit(status);
}

/* Sign one value; v is consumed.  Returns 0 or -1 with *why set. */
static int
sign_one(jv v, const struct key *k, int64_t ts, const char **why)
{
	static struct buf scratch;
	char sig[SIG_B64_LEN + 1];
	const char *author;
	int rc = -1;

	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		*why = "not a JSON object";
		goto out;
	}
	author = jsonl_str(v, "author");
	if (author && strcmp(author, k->did) != 0) {
		*why = "author is another DID than the key's";
		goto out;
	}
	if (!author && jsonl_has(v, "author")) {
		*why = "author is not a string";
		goto out;
	}
	if (!author)
		v = jv_object_set(v, jv_string("author"), jv_string(k->did));
	if (!jsonl_has(v, "ts"))
		v = jv_object_set(v, jv_string("ts"), jv_number((double)ts));
	v = jv_object_delete(v, jv_string("sig"));
	if (sig_sign(v, k, &scratch, sig) != 0) {
		*why = "not representable in RFC 8785";
		goto out;
	}
	v = jv_object_set(v, jv_string("sig"), jv_string(sig));
	buf_reset(&scratch);
	if (canon_dump(v, NULL, &scratch) != 0) {
		*why = "not representable in RFC 8785";
		goto out;
	}
	if (jsonl_write(scratch.p, scratch.len) != 0)
		die("stdout:");
	rc = 0;
out:
	jv_free(v);
	return rc;
}

/* --raw: sign all of stdin (at most max bytes) as one message. */
static int
sign_raw(struct key *k, size_t max)
{
	struct buf msg = BUF_INIT;
	unsigned char sig[KEY_SIG_LEN];
	char b64[SIG_B64_LEN + 1];
	char chunk[65536];
	ssize_t n;

	while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
		if (n < 0)
			die("stdin:");
		if (msg.len + (size_t)n > max)
			die("stdin: message larger than %zu bytes", max);
		buf_add(&msg, chunk, (size_t)n);
	}
	if (key_sign(k, (const unsigned char *)msg.p, msg.len, sig) != 0)
		die("signing failed");
	b64url_encode(sig, sizeof(sig), b64);
	if (puts(b64) == EOF || jsonl_flush() != 0)
		die("stdout:");
	buf_free(&msg);
	key_free(k);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "canonical", no_argument, NULL, 'c' },
		{ "raw", no_argument, NULL, 'r' },
		{ "ts", required_argument, NULL, 't' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *keyfile = NULL;
	int canonical = 0, raw = 0, c, rejected = 0, r;
	int64_t ts = -1;
	size_t max = VALUE_MAX;
	struct key *k = NULL;
	struct jsonin in;
	struct buf out = BUF_INIT;
	char *p, errbuf[256];
	size_t len;
	unsigned long lineno;
	const char *why;

	prog = PROG;
	while ((c = getopt_long(argc, argv, "k:crh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			keyfile = optarg;
			break;
		case 'c':
			canonical = 1;
			break;
		case 'r':
			raw = 1;
			break;
		case 't':
			ts = xnum("--ts", optarg, 0, JSONL_INT_MAX);
			break;
		case 'm':
			max = (size_t)xnum("--max-size", optarg, 1, 1 << 30);
			break;
		case 'h':
			usage(0);
			break;
		case 'V':
			puts(PROG " " NS_VERSION);
			return 0;
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	if (canonical == !!keyfile) {
		warn("give exactly one of -k KEYFILE and --canonical");
		usage(2);
	}
	if (raw && canonical) {
		warn("--raw needs -k KEYFILE, not --canonical");
		usage(2);
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (keyfile && !(k = key_load(keyfile, errbuf, sizeof(errbuf))))
		die("%s", errbuf);
	if (ts < 0)
		ts = jsonl_now_ms();
	if (raw)
		return sign_raw(k, max);

	jsonin_init(&in, STDIN_FILENO, max);
	for (;;) {
		if (jsonin_would_block(&in) && jsonl_flush() != 0)
			die("stdout:");
		if ((r = jsonin_next(&in, &p, &len, &lineno, &why)) == JSONIN_EOF)
			break;
		if (r == JSONIN_ERROR)
			die("stdin:");
		if (r == JSONIN_BAD) {
			warn("line %lu: %s", lineno, why);
			rejected++;
			continue;
		}
		jv v = canon_parse(p, len);
		if (!jv_is_valid(v)) {
			jv msg = jv_invalid_get_msg(v);
			warn("line %lu: %s", lineno, jv_get_kind(msg) == JV_KIND_STRING ?
			    jv_string_value(msg) : "invalid JSON");
			jv_free(msg);
			rejected++;
			continue;
		}
		if (canonical) {
			buf_reset(&out);
			if (canon_dump(v, NULL, &out) != 0) {
				warn("line %lu: not representable in RFC 8785", lineno);
				rejected++;
			} else if (jsonl_write(out.p, out.len) != 0)
				die("stdout:");
			jv_free(v);
		} else if (sign_one(v, k, ts, &why) != 0) {
			warn("line %lu: %s", lineno, why);
			rejected++;
		}
	}
	if (jsonl_flush() != 0)
		die("stdout:");
	jsonin_free(&in);
	buf_free(&out);
	if (k)
		key_free(k);
	return rejected ? 1 : 0;
}
