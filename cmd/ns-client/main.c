/*
 * ns-client: a user's side of Northstar, for scripts.
 *
 * Dials a node's WebSocket, checks the node's signed challenge, logs in
 * with the user's key file and runs one COMMAND: each event it submits is
 * signed here, so the secret key never goes to the node.  Every result,
 * envelope and beam comes out as one JSON line on stdout.  beam without a
 * JSON argument, and rpc, read JSON objects on stdin.  A request the node
 * answers busy is sent again after the wait it asks for (but in rpc).
 * stream push reads raw bytes on stdin and pushes them as signed chunks,
 * connecting again when the connection drops; stream watch writes a
 * stream's bytes to stdout.
 * Exit 0 if every request succeeded, 1 if the node refused one (its error
 * object is printed) or ended a subscription or watch, 2 on usage, key,
 * connection, login or timeout trouble.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "canon.h"
#include "didkey.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "client.h"

static const struct {
	const char *name;
	int min, max;		/* arguments after the command's name */
} cmds[] = {
	[C_LOGIN] =	{ "login", 0, 0 },
	[C_CREATE] =	{ "create", 2, 3 },
	[C_JOIN] =	{ "join", 1, 1 },
	[C_LEAVE] =	{ "leave", 1, 1 },
	[C_INVITE] =	{ "invite", 2, 2 },
	[C_REMOVE] =	{ "remove", 2, 2 },
	[C_BEAM] =	{ "beam", 1, 2 },
	[C_HISTORY] =	{ "history", 1, 1 },
	[C_MEMBERS] =	{ "members", 1, 1 },
	[C_INFO] =	{ "info", 1, 1 },
	[C_SUBSCRIBE] =	{ "subscribe", 1, SUB_MAX },
	[C_GET] =	{ "get", 1, 1 },
	[C_DELETE] =	{ "delete", 1, 1 },
	[C_RPC] =	{ "rpc", 0, 0 },
	[C_STREAM_PUSH] = { "stream push", 1, 1 },
	[C_STREAM_WATCH] = { "stream watch", 1, 1 },
};

struct client g;
volatile sig_atomic_t gotsig;

static void usage(int status) __attribute__((noreturn));

static void
usage(int status)
{
	FILE *fp = status == 0 ? stdout : stderr;

	fprintf(fp,
"usage: " PROG " [-qv] [--raw] [-k KEYFILE] [-u URL] [-t SECONDS] [--node DID]\n"
"                 [--any-address] [COMMAND [ARG...]]\n");
	if (status != 0) {
		fprintf(fp, "try '" PROG " --help'\n");
		exit(status);
	}
	fprintf(fp,
"commands (default rpc):\n"
"  login                         log in and print the login result\n"
"  create TYPE UNIQUEID [NAME]   create the space TYPE/KEYID/UNIQUEID\n"
"                                (TYPE channel, dm or stream)\n"
"  join SPACE|ADDRESS            join a space (a northstar:// address\n"
"                                tells the node where it lives)\n"
"  leave SPACE\n"
"  invite SPACE DID\n"
"  remove SPACE DID\n"
"  beam SPACE [JSON]             post JSON, or each JSON object on stdin,\n"
"                                as a beam; one result line per beam, in order\n"
"      --window N                most beams in flight (default 256)\n"
"  history SPACE [--after N] [--limit N]\n"
"                                print the envelopes after seq N (default 0),\n"
"                                at most --limit of them\n"
"  members SPACE\n"
"  info SPACE\n"
"  subscribe SPACE... [--from SEQ] [--count N]\n"
"                                print each result, then each new event as\n"
"                                it comes (blocks); with --from, first the\n"
"                                envelopes from seq SEQ on (1: the whole\n"
"                                log), each once and in order; stop after N\n"
"                                envelopes\n"
"  get PATH [--address ADDR]     print the beam at PATH\n"
"  delete PATH                   delete your beam at PATH\n"
"  rpc [--window N]              send each JSON-RPC request on stdin, print\n"
"                                every message from the node\n"
"  stream push SPACE [--chunk BYTES] [--flush MS] [--window N] [--retry SEC]\n"
"                                push stdin's bytes to your stream SPACE as\n"
"                                signed live chunks; exit once all are in\n"
"      --chunk BYTES             bytes a chunk at most (1 to 48876,\n"
"                                default 16384)\n"
"      --flush MS                send a part chunk MS ms after its first\n"
"                                byte (default 100)\n"
"      --window N                most chunks in flight (1 to 64, default 32)\n"
"      --retry SEC               connect again for SEC s when the connection\n"
"                                drops, resending what is not in (default\n"
"                                60; 0: never)\n"
"  stream watch SPACE [--after N] [--count K]\n"
"                                write the stream's live bytes to stdout, in\n"
"                                order; with --after, first the chunks the\n"
"                                node holds after chunk N; stop after K\n"
"                                chunks\n"
"options:\n"
"  -k, --key KEYFILE    the user's key (default $NS_KEY, else\n"
"                       ~/" DEFAULT_KEY ")\n"
"  -u, --url URL        the node (default $NS_URL, else " DEFAULT_URL ")\n"
"  -t, --timeout SECONDS  give up on an answer after this long, and on\n"
"                       connect and login (default 30); subscribe, stream\n"
"                       watch: stop then\n"
"      --node DID       refuse a node that is not DID\n"
"      --any-address    accept a node that names another address than URL's\n"
"      --raw            print whole JSON-RPC messages, not only results\n"
"  -q, --quiet          no stderr line for each request the node refuses\n"
"  -v, --verbose        stream: say on stderr when a watch starts, when the\n"
"                       connection is made again, and what was pushed\n"
"  -h, --help           print this help and exit\n"
"      --version        print the version and exit\n");
	exit(status);
}

static void
usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(2);
}

double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Copy untrusted text for a one-line message: at most max bytes, control
 * characters replaced, not cut inside a UTF-8 sequence. */
void
clean(char *out, size_t outsz, const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n > max)
		n = max;
	if (n > outsz - 1)
		n = outsz - 1;
	if (n < strlen(s))
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	for (i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[n] = '\0';
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;
	size_t n = strlen(fmt);

	if (g.status == 2)
		return;		/* one reason is enough */
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
	g.status = 2;
	begin_close();
}

void
failed(void)
{
	if (g.status < 1)
		g.status = 1;
}

/* Print v (consumed) as one line and flush it at once. */
void
emit(jv v)
{
	if (g.status == 2 && g.state == S_CLOSING) {
		jv_free(v);
		return;
	}
	if (jsonl_emit(v) != 0 || jsonl_flush() != 0)
		fatal("stdout:");
}

/* --- URL, arguments ----------------------------------------------------- */

static int
url_parse(const char *url)
{
	const char *p, *h, *e, *colon;
	size_t hl;
	char *end;
	long port;

	if (strncasecmp(url, "ws://", 5) == 0) {
		p = url + 5;
		g.tls = 0;
	} else if (strncasecmp(url, "wss://", 6) == 0) {
		p = url + 6;
		g.tls = 1;
	} else
		return -1;
	e = p + strcspn(p, "/?#");
	if (*p == '[') {
		h = p + 1;
		if (!(colon = memchr(p, ']', e - p)))
			return -1;
		hl = colon - h;
		colon++;
		if (colon != e && *colon != ':')
			return -1;
	} else {
		h = p;
		colon = memchr(p, ':', e - p);
		hl = (colon ? colon : e) - h;
	}
	if (hl == 0 || hl >= sizeof(g.host) || memchr(h, '@', hl))
		return -1;
	memcpy(g.host, h, hl);
	g.host[hl] = '\0';
	port = g.tls ? 443 : 80;
	if (colon && colon != e) {
		port = strtol(colon + 1, &end, 10);
		if (end != e || end == colon + 1 || port < 1 || port > 65535)
			return -1;
	}
	g.port = (int)port;
	if (*e == '\0')
		snprintf(g.path, sizeof(g.path), "/");
	else if (*e == '/' && strlen(e) < sizeof(g.path))
		snprintf(g.path, sizeof(g.path), "%s", e);
	else
		return -1;
	if (strchr(g.host, ':'))
		snprintf(g.hostport, sizeof(g.hostport), "[%s]:%d", g.host, g.port);
	else
		snprintf(g.hostport, sizeof(g.hostport), "%s:%d", g.host, g.port);
	return 0;
}

static int64_t
num_arg(const char *opt, const char *s, int64_t min, int64_t max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v < min || v > max)
		usage_err("%s: want a number from %lld to %lld", opt,
		    (long long)min, (long long)max);
	return v;
}

static void
on_signal(int sig)
{
	gotsig = sig;
}

/* --- main -------------------------------------------------------------- */

static void
check_args(void)
{
	const char **a = (const char **)g.args;
	const char *why, *name = cmds[g.cmd].name;
	unsigned char pk[32];
	int i;

	if (g.nargs < cmds[g.cmd].min || g.nargs > cmds[g.cmd].max)
		usage_err("%s: wrong number of arguments", name);
	if (g.after >= 0 && g.cmd != C_HISTORY && g.cmd != C_STREAM_WATCH)
		usage_err("--after is for stream watch and history only");
	if (g.limit >= 0 && g.cmd != C_HISTORY)
		usage_err("--limit is for history only");
	if (g.count >= 0 && g.cmd != C_SUBSCRIBE && g.cmd != C_STREAM_WATCH)
		usage_err("--count is for stream watch and subscribe only");
	if (g.from >= 0 && g.cmd != C_SUBSCRIBE)
		usage_err("--from is for subscribe only");
	if (g.get_address && g.cmd != C_GET)
		usage_err("--address is for get only");
	if (g.window > 0 && g.cmd != C_RPC && g.cmd != C_STREAM_PUSH &&
	    !(g.cmd == C_BEAM && g.nargs == 1))
		usage_err("--window is for rpc, stream push and beam from stdin "
		    "only");
	if (g.window > PUSH_WINDOW_MAX && g.cmd == C_STREAM_PUSH)
		usage_err("--window: want a number from 1 to %d for stream push",
		    PUSH_WINDOW_MAX);
	if ((g.chunk >= 0 || g.flush_ms >= 0 || g.retry >= 0) &&
	    g.cmd != C_STREAM_PUSH)
		usage_err("--chunk, --flush and --retry are for stream push only");
	if (g.raw && (g.cmd == C_STREAM_PUSH || g.cmd == C_STREAM_WATCH))
		usage_err("--raw is not for stream");
	switch (g.cmd) {
	case C_CREATE:
		if (strcmp(a[0], "channel") != 0 && strcmp(a[0], "dm") != 0 &&
		    strcmp(a[0], "stream") != 0)
			usage_err("create: TYPE is channel, dm or stream");
		if (*a[1] == '\0' || strchr(a[1], '/'))
			usage_err("create: bad UNIQUEID");
		break;
	case C_INVITE:
	case C_REMOVE:
		if (didkey_decode(a[1], pk, &why) != 0)
			usage_err("%s: DID: %s", name, why);
		/* FALLTHROUGH */
	case C_JOIN:
	case C_LEAVE:
	case C_BEAM:
	case C_HISTORY:
	case C_MEMBERS:
	case C_INFO:
		if (!space_id(a[0]))
			usage_err("%s: not a space id or northstar:// address",
			    name);
		break;
	case C_SUBSCRIBE:
		for (i = 0; i < g.nargs; i++) {
			if (!space_id(a[i]))
				usage_err("subscribe: not a space id or "
				    "northstar:// address");
			for (int j = 0; j < i; j++)
				if (strcmp(space_id(a[i]), space_id(a[j])) == 0)
					usage_err("subscribe: %.121s given twice",
					    space_id(a[i]));
		}
		break;
	case C_STREAM_PUSH:
	case C_STREAM_WATCH:
		if (stream_setup(a[0]) != 0)
			usage_err("%s: not a stream's id or northstar:// address",
			    name);
		break;
	case C_GET:
	case C_DELETE:
		if (strncmp(a[0], "beam/", 5) != 0)
			usage_err("%s: PATH is beam/AUTHORHASH/BEAMID", name);
		break;
	default:
		break;
	}
	if (g.cmd == C_BEAM && g.nargs == 2) {
		jv v = canon_parse(a[1], strlen(a[1]));
		if (jv_get_kind(v) != JV_KIND_OBJECT) {
			jv_free(v);
			usage_err("beam: JSON is not a JSON object");
		}
		g.beam_arg = v;
	}
	if (g.want_node && didkey_decode(g.want_node, pk, &why) != 0)
		usage_err("--node: %s", why);
}

static void
parse_options(int argc, char **argv)
{
	enum {
		O_NODE = 256, O_ANY, O_RAW, O_WINDOW, O_AFTER, O_LIMIT,
		O_COUNT, O_FROM, O_ADDRESS, O_VERSION, O_CHUNK, O_FLUSH,
		O_RETRY
	};
	static const struct option opts[] = {
		{ "key",	 required_argument, NULL, 'k' },
		{ "url",	 required_argument, NULL, 'u' },
		{ "timeout",	 required_argument, NULL, 't' },
		{ "quiet",	 no_argument,	    NULL, 'q' },
		{ "verbose",	 no_argument,	    NULL, 'v' },
		{ "node",	 required_argument, NULL, O_NODE },
		{ "any-address", no_argument,	    NULL, O_ANY },
		{ "raw",	 no_argument,	    NULL, O_RAW },
		{ "window",	 required_argument, NULL, O_WINDOW },
		{ "after",	 required_argument, NULL, O_AFTER },
		{ "limit",	 required_argument, NULL, O_LIMIT },
		{ "count",	 required_argument, NULL, O_COUNT },
		{ "from",	 required_argument, NULL, O_FROM },
		{ "address",	 required_argument, NULL, O_ADDRESS },
		{ "chunk",	 required_argument, NULL, O_CHUNK },
		{ "flush",	 required_argument, NULL, O_FLUSH },
		{ "retry",	 required_argument, NULL, O_RETRY },
		{ "help",	 no_argument,	    NULL, 'h' },
		{ "version",	 no_argument,	    NULL, O_VERSION },
		{ NULL,		 0,		    NULL, 0 }
	};
	char *end;
	size_t i;
	int c;

	g.timeout = 30;
	g.after = g.limit = g.count = g.window = g.from = -1;
	g.chunk = g.flush_ms = -1;
	g.retry = -1;
	while ((c = getopt_long(argc, argv, "k:u:t:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			g.keyfile = optarg;
			break;
		case 'u':
			g.url = optarg;
			break;
		case 't':
			g.timeout = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' ||
			    !(g.timeout > 0 && g.timeout <= 1e7))
				usage_err("-t: want a number of seconds");
			g.timeout_given = 1;
			break;
		case 'q':
			g.quiet = 1;
			break;
		case 'v':
			g.verbose = 1;
			break;
		case O_NODE:
			g.want_node = optarg;
			break;
		case O_ANY:
			g.any_address = 1;
			break;
		case O_RAW:
			g.raw = 1;
			break;
		case O_WINDOW:
			g.window = num_arg("--window", optarg, 1, WINDOW_MAX);
			break;
		case O_AFTER:
			g.after = num_arg("--after", optarg, 0, JSONL_INT_MAX);
			break;
		case O_LIMIT:
			g.limit = num_arg("--limit", optarg, 1, JSONL_INT_MAX);
			break;
		case O_COUNT:
			g.count = num_arg("--count", optarg, 1, JSONL_INT_MAX);
			break;
		case O_FROM:
			g.from = num_arg("--from", optarg, 1, JSONL_INT_MAX);
			break;
		case O_ADDRESS:
			g.get_address = optarg;
			break;
		case O_CHUNK:
			g.chunk = num_arg("--chunk", optarg, 1, CHUNK_DATA_MAX);
			break;
		case O_FLUSH:
			g.flush_ms = num_arg("--flush", optarg, 0, 3600000);
			break;
		case O_RETRY:
			g.retry = (double)num_arg("--retry", optarg, 0, 86400);
			break;
		case 'h':
			usage(0);
			break;
		case O_VERSION:
			puts(PROG " " NS_VERSION);
			exit(0);
		default:
			usage(2);
		}
	}
	g.cmd = C_RPC;
	if (optind < argc && strcmp(argv[optind], "stream") == 0) {
		if (optind + 1 < argc && strcmp(argv[optind + 1], "push") == 0)
			g.cmd = C_STREAM_PUSH;
		else if (optind + 1 < argc &&
		    strcmp(argv[optind + 1], "watch") == 0)
			g.cmd = C_STREAM_WATCH;
		else
			usage_err("stream: want push or watch");
		optind += 2;
	} else if (optind < argc) {
		for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (strcmp(argv[optind], cmds[i].name) == 0)
				break;
		if (i == sizeof(cmds) / sizeof(cmds[0]))
			usage_err("unknown command: %.40s", argv[optind]);
		g.cmd = (enum cmd)i;
		optind++;
	}
	g.args = argv + optind;
	g.nargs = argc - optind;
	check_args();
}

static void
setup(void)
{
	static char keypath[4096];
	char err[512];
	const char *home;

	if (!g.url && !((g.url = getenv("NS_URL")) && *g.url))
		g.url = DEFAULT_URL;
	if (url_parse(g.url) != 0)
		usage_err("-u: not a ws:// or wss:// URL: %.80s", g.url);
	if (!g.keyfile && (g.keyfile = getenv("NS_KEY")) && !*g.keyfile)
		g.keyfile = NULL;
	if (!g.keyfile) {
		if (!(home = getenv("HOME")) || !*home)
			die("no key file: give -k KEYFILE or set NS_KEY");
		snprintf(keypath, sizeof(keypath), "%s/%s", home, DEFAULT_KEY);
		g.keyfile = keypath;
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (!(g.key = key_load(g.keyfile, err, sizeof(err))))
		die("%s", err);
	hash_id(g.key->did, strlen(g.key->did), g.author_hash);

	if (g.window < 0)
		/* a node takes 256 requests of a connection at once
		 * (protocol.md, section 8): fewer leave its stages idle */
		g.window = g.cmd == C_STREAM_PUSH ? PUSH_WINDOW : 256;
	g.cap = g.window + 1;	/* + the login */
	/* stream: chunks are pushed outside the ring, which holds only the
	 * login, the edge or watch and a page or check */
	if (g.cmd == C_STREAM_PUSH || g.cmd == C_STREAM_WATCH)
		g.cap = 4;
	if (g.chunk < 0)
		g.chunk = CHUNK_DEFAULT;
	if (g.flush_ms < 0)
		g.flush_ms = FLUSH_MS;
	if (g.retry < 0)
		g.retry = RETRY_S;
	/* a subscribe and a history page for each space */
	if (g.cmd == C_SUBSCRIBE && g.cap < 2 * g.nargs + 1)
		g.cap = 2 * g.nargs + 1;
	g.slots = xcalloc((size_t)g.cap, sizeof(*g.slots));
	g.next_wire = g.head = 1;
	g.outq_tail = &g.outq;
	g.node = g.address = jv_invalid();
	if (g.after < 0 && g.cmd != C_STREAM_WATCH)
		g.after = 0;	/* stream watch: -1, no --after */
	g.hist_after = g.after;
	if (g.cmd == C_SUBSCRIBE) {
		g.list_n = g.nsubs = g.subs_open = g.nargs;
		g.subs = xcalloc((size_t)g.nsubs, sizeof(*g.subs));
		for (int i = 0; i < g.nsubs; i++) {
			g.subs[i].space = space_id(g.args[i]);
			g.subs[i].held = jv_array();
		}
	}
	else if (g.cmd != C_LOGIN && g.cmd != C_HISTORY && g.cmd != C_RPC)
		g.list_n = 1;
	g.stdin_used = g.cmd == C_RPC || (g.cmd == C_BEAM && g.nargs == 1) ||
	    g.cmd == C_STREAM_PUSH;
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct sigaction sa;
	int64_t i;

	prog = PROG;
	g.beam_arg = jv_invalid();
	parse_options(argc, argv);
	setup();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	lws_set_log_level(LLL_ERR, lws_log);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	/* -t is the one timeout: lws's own fire later */
	info.timeout_secs = info.connect_timeout_secs = (unsigned)g.timeout + 10;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	if (g.tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if (!(g.ctx = lws_create_context(&info)))
		die("cannot create the WebSocket context");
	if (g.stdin_used)
		start_reader();

	g.start = now_s();
	g.state = S_CONNECTING;
	if (conn_open() != 0) {
		g.conn_failed = 1;
		g.quit = 1;
	}
	lws_sul_schedule(g.ctx, 0, &g.sul, tick, TICK_MS * LWS_US_PER_MS);
	while (!g.quit) {
		if (lws_service(g.ctx, 0) < 0)
			break;
		if (gotsig)
			check_times();
	}
	if (g.conn_failed && g.status != 2)
		report_connect_failure();

	input_stop();
	lws_sul_cancel(&g.sul);
	lws_context_destroy(g.ctx);
	if (g.status == 0 && g.state != S_CLOSING)
		g.status = 2;
	for (i = 0; i < g.cap; i++) {
		if (g.slots[i].used)
			slot_release(&g.slots[i]);
		buf_free(&g.slots[i].req);
	}
	free(g.slots);
	outq_free();
	buf_free(&g.rx);
	jv_free(g.node);
	jv_free(g.address);
	jv_free(g.beam_arg);
	for (int j = 0; j < g.nsubs; j++)
		jv_free(g.subs[j].held);
	free(g.subs);
	if (g.cmd == C_STREAM_PUSH || g.cmd == C_STREAM_WATCH)
		stream_free();
	key_free(g.key);
	if (jsonl_flush() != 0 && g.status < 2) {
		warn("stdout:");
		g.status = 2;
	}
	return g.status;
}
