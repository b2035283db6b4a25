/*
 * ns-verify: the signature gate.  Each JSON value read must be a signed
 * object: an event or beam (signed by "author") or a sequenced envelope
 * (signed by its "node", with the author's event inside, and its hash chain
 * checked against the envelope before it in the same stream).  Good values
 * pass to stdout unchanged; each bad one is reported on stderr with its line
 * number and reason.  With --bus it sits in a node's ring instead: it checks
 * the signed objects inside requests and turns a failure into a JSON-RPC
 * error line addressed to the sender.  With --raw DID SIG, all of stdin is
 * one message of raw bytes checked against SIG by DID.  Exit 0 if all values were good,
 * 1 if any failed, 2 on usage or environment trouble.
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "b64url.h"
#include "buf.h"
#include "bus.h"
#include "canon.h"
#include "didkey.h"
#include "event.h"
#include "jsonin.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

#define PROG "ns-verify"
#define VALUE_MAX (1 << 20)
#define BATCH_MAX 1024
#define JOBS_MAX 64
#define CHAIN_MAX 4096          /* spaces whose chain head is remembered */

struct item {
	char *text;             /* copy of the value's bytes */
	size_t len;
	unsigned long lineno;
	int bad;                /* worker's verdict */
	const char *why;
	int envelope;           /* filter mode: it was an envelope */
	char hash[HASH_ID_LEN + 1];     /* its hash, for the chain */
	char *space;            /* envelope's space (owned) */
	char *prev;             /* envelope's prev (owned) */
	long long seq;
	char *reason;           /* owned copy of a parser's reason */
	char *reply;            /* line to emit instead of text, if set */
};

struct batch {
	struct item items[BATCH_MAX];
	size_t n;
	int bus;
};

struct worker {
	struct batch *b;
	size_t from, step;
	struct buf scratch;
	pthread_t tid;
};

struct chain {
	char *space;
	long long seq;
	char hash[HASH_ID_LEN + 1];
};

static struct chain chains[CHAIN_MAX];
static size_t nchains, chain_next;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-verify [-q] [-j JOBS] [--bus] [--max-size BYTES]\n"
	    "       ns-verify --raw DID SIG\n"
	    "  -j, --jobs N        verify on N threads (0: one per core; default 1)\n"
	    "  -q, --quiet         do not report bad values on stderr\n"
	    "      --bus           node mode: check requests on the node's bus and\n"
	    "                      answer a bad one with an error to its sender\n"
	    "                      (bad_event, bad_sig, forbidden, invalid_params)\n"
	    "      --raw DID SIG   check SIG (base64url) by DID over all of stdin\n"
	    "      --max-size N    largest value accepted, in bytes (default %d)\n"
	    "  -h, --help          this help\n"
	    "      --version       print the version\n", VALUE_MAX);
	exit(status);
}

/* Filter mode: one value that must be a signed object or an envelope. */
static void
check_value(struct item *it, struct buf *scratch)
{
	jv v = canon_parse(it->text, it->len);
	const char *type;

	if (!jv_is_valid(v)) {
		jv msg = jv_invalid_get_msg(v);
		it->why = "invalid JSON";
		if (jv_get_kind(msg) == JV_KIND_STRING) {
			/* the reason dies with the jv: keep a copy */
			it->reason = xstrdup(jv_string_value(msg));
			it->why = it->reason;
		}
		jv_free(msg);
		it->bad = 1;
		return;
	}
	type = jsonl_str(v, "type");
	if (type && strcmp(type, "envelope") == 0) {
		int64_t seq = 0;

		it->envelope = 1;
		if (envelope_verify(v, scratch, &it->why) != 0 ||
		    event_id(v, scratch, it->hash) != 0) {
			it->bad = 1;
			goto out;
		}
		jsonl_int(v, "seq", &seq);
		it->seq = seq;
		it->space = xstrdup(jsonl_str(v, "space"));
		if (jsonl_str(v, "prev"))
			it->prev = xstrdup(jsonl_str(v, "prev"));
	} else if (jv_get_kind(v) != JV_KIND_OBJECT) {
		it->why = "not a JSON object";
		it->bad = 1;
		goto out;
	} else if (sig_verify(v, scratch, &it->why) != 0) {
		it->bad = 1;
		goto out;
	}
	/* a pretty-printed value leaves as one line */
	if (memchr(it->text, '\n', it->len))
		it->reply = canon_string(v);
out:
	jv_free(v);
}

/* A well-formed object whose signature fails is bad_sig; anything else
 * wrong with it is bad_event (rc from event_verify or envelope_verify). */
static enum bus_err
bus_err_of(int rc)
{
	return rc == EVENT_BAD_SIG ? E_BAD_SIG : E_BAD_EVENT;
}

/* Every event a connection submits must be its own, whatever its role:
 * only a node handing the owner node one of its users' events
 * (node.submit) submits someone else's. */
static int
own_events_only(const struct bus_req *r)
{
	return !(strcmp(r->method, "node.submit") == 0 && r->role &&
	    strcmp(r->role, "node") == 0);
}

/* Bus mode: check the signed objects a request carries in its params:
 * "event", "envelope" and each of "envelopes". */
static void
check_bus(struct item *it, struct buf *scratch)
{
	struct bus_req r;
	struct buf reply = BUF_INIT;
	enum bus_err e = E_BAD_EVENT;
	const char *why = NULL;
	int rc;

	if (!bus_is_prefix(it->text, it->len, "") ||
	    !memmem(it->text, it->len, "\"sig\"", 5))
		return;
	/* a line that does not parse is not ours to judge: the stage that
	 * owns its method reports it */
	if (bus_parse(it->text, it->len, &r) != 0)
		return;
	jv ev = jsonl_get(r.params, "event");
	if (jv_is_valid(ev)) {
		const char *author;

		if (jv_get_kind(ev) != JV_KIND_OBJECT) {
			e = E_PARAMS;
			why = "params.event must be an event object";
			goto bad;
		}
		if ((rc = event_verify(ev, scratch, &why)) != 0) {
			e = bus_err_of(rc);
			goto bad;
		}
		author = jsonl_str(ev, "author");
		if (own_events_only(&r) && (!r.did || strcmp(author, r.did) != 0)) {
			e = E_FORBIDDEN;
			why = "a connection may only submit its own events";
			goto bad;
		}
	}
	jv env = jsonl_get(r.params, "envelope");
	if (jv_is_valid(env) &&
	    (rc = envelope_verify(env, scratch, &why)) != 0) {
		e = bus_err_of(rc);
		jv_free(env);
		goto bad;
	}
	jv_free(env);
	jv list = jsonl_get(r.params, "envelopes");
	if (jv_get_kind(list) == JV_KIND_ARRAY) {
		jv_array_foreach(list, i, x) {
			rc = envelope_verify(x, scratch, &why);
			jv_free(x);
			if (rc != 0) {
				e = bus_err_of(rc);
				jv_free(list);
				goto bad;
			}
		}
	}
	jv_free(list);
	goto out;
bad:
	it->bad = 1;
	it->why = why;
	/* a notification cannot be answered: it is dropped (reply "") */
	bus_error(&reply, &r, e, why);
	if (reply.len > 0)
		reply.p[--reply.len] = '\0';    /* jsonl_write adds the '\n' */
	it->reply = reply.p ? reply.p : xstrdup("");
out:
	jv_free(ev);
	bus_req_free(&r);
}

static void *
work(void *arg)
{
	struct worker *w = arg;

	for (size_t i = w->from; i < w->b->n; i += w->step) {
		if (w->b->bus)
			check_bus(&w->b->items[i], &w->scratch);
		else
			check_value(&w->b->items[i], &w->scratch);
	}
	return NULL;
}

static void
run_batch(struct batch *b, struct worker *ws, int jobs)
{
	int n = b->n < 32 ? 1 : jobs;

	for (int i = 0; i < n; i++) {
		ws[i].b = b;
		ws[i].from = (size_t)i;
		ws[i].step = (size_t)n;
	}
	for (int i = 1; i < n; i++)
		if (pthread_create(&ws[i].tid, NULL, work, &ws[i]) != 0)
			die("pthread_create:");
	work(&ws[0]);
	for (int i = 1; i < n; i++)
		pthread_join(ws[i].tid, NULL);
}

static unsigned long
str_hash(const char *s)
{
	unsigned long h = 1469598103934665603UL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211UL;
	return h;
}

/* Check an envelope against the one before it in the same space, if that
 * one passed by.  Returns 0 or -1 with *why. */
static int
check_chain(struct item *it)
{
	size_t i = str_hash(it->space) % CHAIN_MAX;
	struct chain *ch;

	for (size_t probe = 0; probe < CHAIN_MAX; probe++) {
		ch = &chains[(i + probe) % CHAIN_MAX];
		if (!ch->space || strcmp(ch->space, it->space) == 0)
			goto found;
	}
	/* full: forget an arbitrary space and reuse its slot */
	ch = &chains[chain_next++ % CHAIN_MAX];
	free(ch->space);
	ch->space = NULL;
found:
	if (!ch->space) {
		ch->space = xstrdup(it->space);
		nchains++;
		ch->seq = 0;
	}
	if (it->seq == ch->seq + 1 && ch->seq > 0 &&
	    (!it->prev || strcmp(it->prev, ch->hash) != 0)) {
		it->why = "hash chain broken: prev is not the hash of the envelope before";
		return -1;
	}
	if (it->seq > ch->seq) {
		ch->seq = it->seq;
		memcpy(ch->hash, it->hash, sizeof(ch->hash));
	}
	return 0;
}

static void
item_clear(struct item *it)
{
	free(it->text);
	free(it->space);
	free(it->prev);
	free(it->reason);
	free(it->reply);
	memset(it, 0, sizeof(*it));
}

/* --raw: check sig by did over all of stdin (at most max bytes). */
static int
verify_raw(const char *did, const char *sig64, size_t max, int quiet)
{
	struct buf msg = BUF_INIT;
	unsigned char pk[KEY_PK_LEN], sig[KEY_SIG_LEN];
	char chunk[65536];
	const char *why;
	size_t siglen;
	ssize_t n;
	int rc;

	if (didkey_decode(did, pk, &why) != 0)
		die("%.80s: %s", did, why);
	if (b64url_decode(sig64, strlen(sig64), sig, sizeof(sig), &siglen) != 0 ||
	    siglen != sizeof(sig))
		die("signature is not base64url of 64 bytes");
	while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
		if (n < 0)
			die("stdin:");
		if (msg.len + (size_t)n > max)
			die("stdin: message larger than %zu bytes", max);
		buf_add(&msg, chunk, (size_t)n);
	}
	rc = key_verify(pk, (const unsigned char *)msg.p, msg.len, sig);
	buf_free(&msg);
	if (rc != 0 && !quiet)
		warn("signature does not verify");
	return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "bus", no_argument, NULL, 'b' },
		{ "raw", no_argument, NULL, 'r' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct batch b;
	struct worker ws[JOBS_MAX];
	struct jsonin in;
	int c, r, quiet = 0, jobs = 1, raw = 0;
	unsigned long rejected = 0;
	size_t max = VALUE_MAX;

	prog = PROG;
	while ((c = getopt_long(argc, argv, "j:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			jobs = (int)xnum("--jobs", optarg, 0, JOBS_MAX);
			break;
		case 'q':
			quiet = 1;
			break;
		case 'b':
			b.bus = 1;
			break;
		case 'r':
			raw = 1;
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
	if (raw && (argc - optind != 2 || b.bus))
		usage(2);
	if (!raw && optind != argc)
		usage(2);
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (raw)
		return verify_raw(argv[optind], argv[optind + 1], max, quiet);
	if (jobs == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		jobs = n < 1 ? 1 : n > JOBS_MAX ? JOBS_MAX : (int)n;
	}
	memset(ws, 0, sizeof(ws));

	if (b.bus)
		jsonl_big_pipe(STDOUT_FILENO);
	jsonin_init(&in, STDIN_FILENO, max);
	for (;;) {
		char *p;
		size_t len;
		unsigned long lineno;
		const char *why;

		/* gather what is already buffered, without blocking twice */
		b.n = 0;
		while (b.n < BATCH_MAX && (b.n == 0 || !jsonin_would_block(&in))) {
			r = jsonin_next(&in, &p, &len, &lineno, &why);
			if (r == JSONIN_EOF)
				break;
			if (r == JSONIN_ERROR)
				die("stdin:");
			struct item *it = &b.items[b.n++];
			it->lineno = lineno;
			if (r == JSONIN_BAD) {
				it->bad = 1;
				it->why = why;
				it->reply = xstrdup("");
				continue;
			}
			it->text = xmalloc(len + 1);
			memcpy(it->text, p, len);
			it->text[len] = '\0';
			it->len = len;
		}
		if (b.n == 0)
			break;
		run_batch(&b, ws, jobs);
		for (size_t i = 0; i < b.n; i++) {
			struct item *it = &b.items[i];

			if (!b.bus && !it->bad && it->envelope && check_chain(it) != 0)
				it->bad = 1;
			if (it->bad) {
				rejected++;
				if (!quiet)
					warn("line %lu: %s", it->lineno, it->why);
			}
			if (b.bus ? it->reply && !*it->reply : it->bad)
				;       /* nothing goes on */
			else if (it->reply ? jsonl_write(it->reply, strlen(it->reply)) :
			    jsonl_write(it->text, it->len))
				die("stdout:");
			item_clear(it);
		}
		if (jsonin_would_block(&in) && jsonl_flush() != 0)
			die("stdout:");
	}
	if (jsonl_flush() != 0)
		die("stdout:");
	jsonin_free(&in);
	for (size_t i = 0; i < CHAIN_MAX; i++)
		free(chains[i].space);
	for (int i = 0; i < JOBS_MAX; i++)
		buf_free(&ws[i].scratch);
	return !b.bus && rejected ? 1 : 0;
}
