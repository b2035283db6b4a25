/*
 * ns-keygen: make an Ed25519 key pair and its did:key identity.
 *
 * A new key goes only where -o says, as signify's -s: with -o FILE the key
 * file (one JSON line, secret seed included) is written to FILE, mode
 * 0600, and stdout gets only its public part, {"did":...,"publicKey":...};
 * with -o - the key file itself goes to stdout, which must not be a
 * terminal.  -p FILE prints the public part of an existing key file.
 * --seed makes the key reproducible.  No input is read, except the seed
 * with --seed -.  Exit 0 on success, 2 on bad usage or any trouble.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "key.h"
#include "msg.h"

#define PROG		"ns-keygen"
#define SEED_HEX_LEN	(2 * KEY_SEED_LEN)

enum {
	OPT_SEED = 256,
	OPT_VERSION
};

static const struct option longopts[] = {
	{ "force",	no_argument,		NULL,	'f' },
	{ "help",	no_argument,		NULL,	'h' },
	{ "output",	required_argument,	NULL,	'o' },
	{ "public",	required_argument,	NULL,	'p' },
	{ "seed",	required_argument,	NULL,	OPT_SEED },
	{ "version",	no_argument,		NULL,	OPT_VERSION },
	{ NULL,		0,			NULL,	0 }
};

static void
usage(int status)
{
	FILE *fp = status == 0 ? stdout : stderr;

	fprintf(fp,
	    "usage: " PROG " [-f] -o FILE [--seed HEX64 | --seed -]\n"
	    "       " PROG " -p FILE\n"
	    "  -o, --output FILE  write the new key file to FILE (mode 0600) and\n"
	    "                     print only its public part; -o - writes the\n"
	    "                     key file to stdout, never to a terminal\n"
	    "  -f, --force        let -o replace an existing FILE\n"
	    "  --seed HEX64       derive the key from a 32-byte seed in hex\n"
	    "                     (for tests and fixtures: others can see\n"
	    "                     argv); '-' reads it from stdin\n"
	    "  -p, --public FILE  print the public part of key file FILE\n"
	    "  -h, --help         print this help and exit\n"
	    "      --version      print the version and exit\n");
	exit(status);
}

static void
usage_err(const char *msg)
{
	warn("%s", msg);
	usage(2);
}

static void
seed_parse(const char *hex, size_t len, unsigned char seed[KEY_SEED_LEN])
{
	size_t n;

	if (len != SEED_HEX_LEN || sodium_hex2bin(seed, KEY_SEED_LEN, hex, len,
	    NULL, &n, NULL) != 0 || n != KEY_SEED_LEN)
		die("--seed: want %d hex digits (32 bytes)", SEED_HEX_LEN);
}

/* 64 hex digits on stdin, optionally followed by one newline. */
static void
seed_read(unsigned char seed[KEY_SEED_LEN])
{
	char *buf;
	size_t len = 0;
	ssize_t r;

	buf = sodium_malloc(SEED_HEX_LEN + 3);
	if (buf == NULL)
		die("sodium_malloc:");
	while (len < SEED_HEX_LEN + 2) {
		r = read(STDIN_FILENO, buf + len, SEED_HEX_LEN + 2 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("stdin:");
		if (r == 0)
			break;
		len += r;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	seed_parse(buf, len, seed);
	sodium_free(buf);
}

static struct key *
key_seeded(char *arg)
{
	unsigned char *seed;
	struct key *k;

	if ((seed = sodium_malloc(KEY_SEED_LEN)) == NULL)
		die("sodium_malloc:");
	if (strcmp(arg, "-") == 0)
		seed_read(seed);
	else {
		seed_parse(arg, strlen(arg), seed);
		/* shortens the time it shows in ps, does not close the gap */
		sodium_memzero(arg, strlen(arg));
	}
	k = key_from_seed(seed);
	sodium_free(seed);
	return k;
}

static void
print_public(const struct key *k)
{
	char pk[KEY_PK_B64_LEN + 1];

	key_public_b64(k, pk);
	printf("{\"did\":\"%s\",\"publicKey\":\"%s\"}\n", k->did, pk);
}

/* Straight to the descriptor, so that no stdio buffer keeps a copy. */
static void
print_secret(const struct key *k)
{
	char *text = key_format(k);
	size_t n = strlen(text), off = 0;
	ssize_t w;

	while (off < n) {
		w = write(STDOUT_FILENO, text + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("stdout:");
		off += w;
	}
	key_format_free(text);
}

int
main(int argc, char *argv[])
{
	struct key *k;
	const char *out = NULL, *pub = NULL;
	char *seedarg = NULL;
	char err[512];
	int c, force = 0;

	prog = PROG;
	if (sodium_init() < 0)
		die("sodium_init failed");

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fho:p:", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			force = 1;
			break;
		case 'h':
			usage(0);
			break;
		case 'o':
			out = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		case OPT_SEED:
			seedarg = optarg;
			break;
		case OPT_VERSION:
			printf("%s %s\n", PROG, NS_VERSION);
			return fflush(stdout) == 0 ? 0 : 2;
		case ':':
			warn("option %.80s needs an argument",
			    argv[optind - 1]);
			usage(2);
			break;
		default:
			if (optopt > 0 && optopt < 256)
				warn("unknown option -%c", optopt);
			else
				warn("unknown option %.80s", argv[optind - 1]);
			usage(2);
		}
	}
	if (optind < argc)
		usage_err("unexpected argument");
	if (pub != NULL && (out != NULL || force || seedarg != NULL))
		usage_err("-p takes no other option");
	if (force && (out == NULL || strcmp(out, "-") == 0))
		usage_err("-f needs -o FILE");
	if (pub == NULL && out == NULL)
		usage_err("-o FILE needed: a new key goes to a file, or with "
		    "-o - to stdout");
	/* a secret on a screen stays in scrollback, logs and recordings */
	if (out != NULL && strcmp(out, "-") == 0 && isatty(STDOUT_FILENO))
		die("-o -: refusing to write a secret key to a terminal; "
		    "redirect stdout or give -o FILE");

	if (pub != NULL) {
		if ((k = key_load(pub, err, sizeof(err))) == NULL)
			die("%s", err);
		print_public(k);
	} else {
		k = seedarg != NULL ? key_seeded(seedarg) : key_generate();
		if (strcmp(out, "-") == 0)
			print_secret(k);
		else {
			if (key_save(k, out, force, err, sizeof(err)) < 0) {
				if (errno == EEXIST && !force)
					die("%s; -f replaces it", err);
				die("%s", err);
			}
			print_public(k);
		}
	}
	key_free(k);
	if (fflush(stdout) == EOF || ferror(stdout))
		die("stdout:");
	return 0;
}
