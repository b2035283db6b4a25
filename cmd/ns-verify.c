/*
 * ns-verify: the signature gate.  Each JSON value read must be a signed
 * object: an event or beam (signed by "author") or a sequenced envelope
 * (signed by its "node", with the author's event inside).  The envelopes of
 * each space must make a log: seq up by one, each prev the hash of the one
 * before, one node signing; a gap fails the run, and a log that starts
 * after seq 1 gets a notice (fails with --from-start).  Good values pass to
 * stdout unchanged; each bad one is reported on stderr with its line number
 * and reason.  With --bus it sits in a node's ring instead: it checks
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
#include "span.h"

#define PROG "ns-verify"
#define VALUE_MAX (1 << 20)
#define BATCH_MAX 1024
#define BUS_BATCH 32            /* --bus: lines checked before they go on */
#define JOBS_MAX 64
#define SPACE_SHOW 121          /* bytes of a space id in a message: the
                                   longest valid one */

struct item {
	char *text;             /* copy of the value's bytes */
	size_t len;
	unsigned long lineno;
	int bad;                /* worker's verdict */
	const char *why;
	int envelope;           /* filter mode: it was an envelope */
	char hash[HASH_ID_LEN + 1];     /* its hash, for the chain */
	char *space;            /* envelope's space (owned), if it has one */
	char *prev;             /* envelope's prev (owned) */
	char *node;             /* envelope's signer (owned) */
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

/* What the stream showed of one space's log so far. */
struct chain {
	char *space;            /* NULL: a free slot */
	long long first, seq;   /* the first seq seen and the last in order */
	int known;              /* hash is the hash of the envelope at seq */
	char hash[HASH_ID_LEN + 1];
	char *node;             /* the signer of the first envelope seen */
};

static struct chain *chains;    /* open addressing, at most half full */
static size_t nchains, chain_cap;
static int from_start, quiet;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-verify [-qs] [-j JOBS] [--max-size BYTES]\n"
	    "       ns-verify --bus [-q] [-j JOBS] [--max-size BYTES]\n"
	    "       ns-verify --raw DID SIG\n"
	    "  -j, --jobs N        verify on N threads (0: one per core; default 1)\n"
	    "  -q, --quiet         do not report bad values or notices on stderr\n"
	    "  -s, --from-start    each space's envelopes must start at seq 1; without\n"
	    "                      it a log that starts later gets a notice, and is\n"
	    "                      checked from its first envelope on\n"
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
		int rc;

		it->envelope = 1;
		rc = envelope_verify(v, scratch, &it->why);
		if (rc == EVENT_MALFORMED)
			goto bad;
		/* well formed: its place in the log is known even if its
		 * signature is bad */
		jsonl_int(v, "seq", &seq);
		it->seq = seq;
		it->space = xstrdup(jsonl_str(v, "space"));
		it->node = xstrdup(jsonl_str(v, "node"));
		if (rc != 0)
			goto bad;
		if (event_id(v, scratch, it->hash) != 0) {
			it->why = "not representable in RFC 8785";
			goto bad;
		}
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
	goto out;
bad:
	it->bad = 1;
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

/*
 * A client's space.beam without building values, the bulk of what a node
 * takes in.  ns-serve writes params as canon_dump prints them, so an event
 * whose text span_canonical accepts is its own canonical form, and its
 * signing bytes are that text without the "sig" member.  1 when the event
 * is the sender's own and verifies: the line goes on as it is.  -1 when
 * its signature does not verify (the rest checked as event_verify would).
 * 0 when check_bus must look: anything unusual, which it then reports.
 */
static int
check_beam_fast(const struct item *it, struct buf *scratch)
{
	static const char *const top[] = { "m", "role", "did", "p" };
	static const char *const par[] = { "event", "envelope", "envelopes" };
	static const char *const evn[] = { "author", "sig", "ts", "type" };
	struct span t[4], pv[3], ev[4];
	char did[DIDKEY_MAX], author[DIDKEY_MAX];
	unsigned char pk[32], sig[64];
	const char *why, *sp, *ep;
	size_t siglen;
	int64_t ts;

	if (span_get(it->text, it->len, top, t, 4) != 0 || !t[0].p ||
	    !t[1].p || !t[2].p || !t[3].p ||
	    !span_is(&t[0], "space.beam") || !span_is(&t[1], "client") ||
	    span_str(t[2].p, t[2].len, did, sizeof(did)) != 0 ||
	    span_get(t[3].p, t[3].len, par, pv, 3) != 0 || !pv[0].p ||
	    pv[1].p || pv[2].p || !span_canonical(pv[0].p, pv[0].len) ||
	    span_get(pv[0].p, pv[0].len, evn, ev, 4) != 0 || !ev[0].p ||
	    !ev[1].p || !ev[2].p || !ev[3].p || ev[3].p[0] != '"' ||
	    span_str(ev[0].p, ev[0].len, author, sizeof(author)) != 0 ||
	    strcmp(author, did) != 0 || !didkey_keyid(author) ||
	    span_int(ev[2].p, ev[2].len, &ts) != 0 || ts < 0 ||
	    ev[1].len < 2 || ev[1].p[0] != '"' ||
	    b64url_decode(ev[1].p + 1, ev[1].len - 2, sig, sizeof(sig),
	    &siglen) != 0 || siglen != sizeof(sig) ||
	    didkey_decode(author, pk, &why) != 0)
		return 0;
	/* canonical text has no spaces: "sig": and the value, and the comma
	 * before it ("author" sorts first, so sig is never the first) */
	sp = ev[1].p - 7;
	ep = ev[1].p + ev[1].len;
	if (sp <= pv[0].p || memcmp(sp, ",\"sig\":", 7) != 0)
		return 0;
	buf_reset(scratch);
	buf_add(scratch, pv[0].p, (size_t)(sp - pv[0].p));
	buf_add(scratch, ep, (size_t)(pv[0].p + pv[0].len - ep));
	return key_verify(pk, (const unsigned char *)scratch->p, scratch->len,
	    sig) == 0 ? 1 : -1;
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
	int rc, fast;

	if (!bus_is_prefix(it->text, it->len, "") ||
	    !memmem(it->text, it->len, "\"sig\"", 5))
		return;
	if ((fast = check_beam_fast(it, scratch)) == 1)
		return;
	/* a line that does not parse is not ours to judge: the stage that
	 * owns its method reports it */
	if (bus_parse(it->text, it->len, &r) != 0)
		return;
	/* a node's answer carries its signed objects in its result */
	if (strcmp(r.method, "rpc.response") == 0) {
		jv result = jsonl_get(r.params, "result");

		jv_free(r.params);
		r.params = jv_get_kind(result) == JV_KIND_OBJECT ? result :
		    (jv_free(result), jv_object());
	}
	jv ev = jsonl_get(r.params, "event");
	if (jv_is_valid(ev)) {
		const char *author;

		if (jv_get_kind(ev) != JV_KIND_OBJECT) {
			e = E_PARAMS;
			why = "params.event must be an event object";
			goto bad;
		}
		/* a forged signature costs one verify, not two */
		if (fast < 0) {
			e = bus_err_of(EVENT_BAD_SIG);
			why = "signature does not verify";
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
	/* a notification or a response cannot be answered: it is dropped,
	 * and ns-serve told it is done */
	if (strcmp(r.method, "rpc.response") == 0) {
		jv_free(r.id);
		r.id = jv_invalid();
	}
	bus_error(&reply, &r, e, why);
	/* a node that sends forged or malformed objects is dropped a while
	 * (ns-gossip) */
	if (r.role && strcmp(r.role, "node") == 0 && r.did &&
	    e != E_FORBIDDEN) {
		buf_adds(&reply, "{\"m\":\"peer.bad\",\"p\":{\"node\":");
		bus_json(&reply, jv_string(r.did));
		buf_adds(&reply, ",\"reason\":");
		bus_json(&reply, jv_string(why ? why : "bad object"));
		buf_adds(&reply, "}}\n");
	}
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

/* The chain of space, a new one (seq 0) the first time. */
static struct chain *
chain_get(const char *space)
{
	struct chain *ch;
	size_t i;

	if (2 * (nchains + 1) > chain_cap) {
		struct chain *old = chains;
		size_t oldcap = chain_cap;

		chain_cap = chain_cap ? 2 * chain_cap : 256;
		chains = xcalloc(chain_cap, sizeof(*chains));
		for (i = 0; i < oldcap; i++) {
			if (!old[i].space)
				continue;
			size_t j = str_hash(old[i].space) % chain_cap;
			while (chains[j].space)
				j = (j + 1) % chain_cap;
			chains[j] = old[i];
		}
		free(old);
	}
	for (i = str_hash(space) % chain_cap; chains[i].space;
	    i = (i + 1) % chain_cap)
		if (strcmp(chains[i].space, space) == 0)
			return &chains[i];
	ch = &chains[i];
	ch->space = xstrdup(space);
	nchains++;
	return ch;
}

static void
chains_free(void)
{
	for (size_t i = 0; i < chain_cap; i++) {
		free(chains[i].space);
		free(chains[i].node);
	}
	free(chains);
}

/* A space id fit for one line of stderr: control characters replaced,
 * no longer than a valid space id. */
static const char *
shown(const char *space)
{
	static char out[SPACE_SHOW + 4];
	size_t i;

	for (i = 0; space[i] && i < SPACE_SHOW; i++)
		out[i] = (unsigned char)space[i] < 0x20 || space[i] == 0x7f ?
		    '?' : space[i];
	if (space[i])
		out[i++] = '.', out[i++] = '.', out[i++] = '.';
	out[i] = '\0';
	return out;
}

static void
chain_step(struct chain *ch, const struct item *it)
{
	ch->seq = it->seq;
	ch->known = !it->bad;
	memcpy(ch->hash, it->hash, sizeof(ch->hash));
}

/*
 * Check an envelope's place in its space's log against what passed before
 * it: seqs go up by one, each prev is the hash of the envelope before it,
 * and one node signs them all.  A well-formed envelope that failed its own
 * checks still takes its place, so that its neighbours are not blamed too.
 * Returns 0; 1 if it is good but envelopes are missing before it (it
 * passes, the log fails); -1 if it is out of place (it is left out).
 * *why is set for 1 and -1, in a buffer good until the next call.
 */
static int
check_chain(struct item *it, const char **why)
{
	static struct buf msg;
	struct chain *ch = chain_get(it->space);
	long long from, to;
	int rc = 0;

	buf_reset(&msg);
	*why = NULL;
	if (ch->seq == 0) {
		if (it->seq > 1 && !from_start) {
			if (!quiet)
				warn("line %lu: %s: the log starts at seq %lld: "
				    "checked from there on", it->lineno,
				    shown(it->space), it->seq);
		} else if (it->seq > 1) {
			from = 1;
			to = it->seq - 1;
			rc = 1;
			goto missing;
		}
		goto take;
	}
	if (it->seq <= ch->seq) {
		if (it->seq < ch->seq)
			buf_addf(&msg, "%s: seq %lld after seq %lld: out of order",
			    shown(it->space), it->seq, ch->seq);
		else if (ch->known && !it->bad &&
		    strcmp(it->hash, ch->hash) == 0)
			buf_addf(&msg, "%s: seq %lld again", shown(it->space),
			    it->seq);
		else
			buf_addf(&msg, "%s: a second envelope at seq %lld",
			    shown(it->space), it->seq);
		*why = msg.p;
		return -1;
	}
	if (it->bad) {
		/* its own failure is reported; it only keeps its place */
		if (it->seq == ch->seq + 1)
			chain_step(ch, it);
		return 0;
	}
	if (!ch->node) {
		ch->first = it->seq;
		ch->node = xstrdup(it->node);
	}
	if (strcmp(it->node, ch->node) != 0) {
		buf_addf(&msg, "%s: seq %lld is signed by another node than "
		    "seq %lld", shown(it->space), it->seq, ch->first);
		rc = -1;
	} else if (it->seq > ch->seq + 1) {
		from = ch->seq + 1;
		to = it->seq - 1;
		rc = 1;
		goto missing;
	} else if (ch->known && (!it->prev || strcmp(it->prev, ch->hash) != 0)) {
		buf_addf(&msg, "hash chain broken: prev is not the hash of the "
		    "envelope before");
		rc = -1;
	}
	if (rc != 0)
		*why = msg.p;
	chain_step(ch, it);
	return rc;
missing:
	if (from == to)
		buf_addf(&msg, "%s: seq %lld missing", shown(it->space), from);
	else
		buf_addf(&msg, "%s: seq %lld to %lld missing", shown(it->space),
		    from, to);
	*why = msg.p;
take:
	if (!ch->node && !it->bad) {
		ch->first = it->seq;
		ch->node = xstrdup(it->node);
	}
	chain_step(ch, it);
	return rc;
}

static void
item_clear(struct item *it)
{
	free(it->text);
	free(it->space);
	free(it->prev);
	free(it->node);
	free(it->reason);
	free(it->reply);
	memset(it, 0, sizeof(*it));
}

/* --raw: check sig by did over all of stdin (at most max bytes). */
static int
verify_raw(const char *did, const char *sig64, size_t max)
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
		{ "from-start", no_argument, NULL, 's' },
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
	int c, r, jobs = 1, raw = 0;
	unsigned long rejected = 0;
	size_t max = VALUE_MAX;

	prog = PROG;
	while ((c = getopt_long(argc, argv, "j:qsh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			jobs = (int)xnum("--jobs", optarg, 0, JOBS_MAX);
			break;
		case 'q':
			quiet = 1;
			break;
		case 's':
			from_start = 1;
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
	if (raw && (argc - optind != 2 || b.bus || from_start))
		usage(2);
	if (from_start && b.bus)
		usage(2);
	if (!raw && optind != argc)
		usage(2);
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (raw)
		return verify_raw(argv[optind], argv[optind + 1], max);
	if (jobs == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		jobs = n < 1 ? 1 : n > JOBS_MAX ? JOBS_MAX : (int)n;
	}
	memset(ws, 0, sizeof(ws));

	if (b.bus) {
		jsonl_big_pipe(STDOUT_FILENO);
		max = BUS_LINE_MAX;	/* whatever ns-serve sends on */
	}
	jsonin_init(&in, STDIN_FILENO, max);
	if (b.bus)
		jsonin_lines(&in);
	for (;;) {
		char *p;
		size_t len;
		unsigned long lineno;
		const char *why;

		/* gather what is already buffered, without blocking twice.  In
		 * a ring, a burst goes on in pieces of BUS_BATCH lines, each
		 * as soon as it is checked: ns-log, the busiest stage, starts
		 * on the first piece while this one checks the rest */
		b.n = 0;
		while (b.n < (b.bus ? BUS_BATCH : BATCH_MAX) &&
		    (b.n == 0 || !jsonin_would_block(&in))) {
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

			if (it->bad) {
				rejected++;
				if (!quiet)
					warn("line %lu: %s", it->lineno, it->why);
			}
			if (!b.bus && it->space) {
				switch (check_chain(it, &why)) {
				case -1:
					it->bad = 1;
					/* FALLTHROUGH */
				case 1:
					rejected++;
					if (!quiet)
						warn("line %lu: %s", it->lineno, why);
				}
			}
			if (b.bus ? it->reply && !*it->reply : it->bad)
				;       /* nothing goes on */
			else if (it->reply ? jsonl_write(it->reply, strlen(it->reply)) :
			    jsonl_write(it->text, it->len))
				die("stdout:");
			item_clear(it);
		}
		if ((b.bus || jsonin_would_block(&in)) && jsonl_flush() != 0)
			die("stdout:");
	}
	if (jsonl_flush() != 0)
		die("stdout:");
	jsonin_free(&in);
	chains_free();
	for (int i = 0; i < JOBS_MAX; i++)
		buf_free(&ws[i].scratch);
	return !b.bus && rejected ? 1 : 0;
}
