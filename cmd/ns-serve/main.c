/*
 * ns-serve: the node's only pump.  It listens for WebSocket connections,
 * logs clients and nodes in (auth.challenge / auth.login), and turns each
 * JSON-RPC request into one bus line on stdout ({"m":METHOD,"c":C,...}).
 * Lines on stdin ({"to"...}, {"pub"...}, {"sub"...}, {"unsub"...},
 * {"close"...}, {"dial"...}, {"resync"...}, requests that came all the way
 * round) are carried out.  It never blocks on a socket or on stdout and
 * always drains stdin.  Exit 0 after stdin EOF or SIGTERM/SIGINT, 2 on
 * setup trouble or a failed stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "jsonl.h"
#include "msg.h"
#include "serve.h"

/* Options. */
static char *listen_host;
static int listen_port = 7700;
char *address;
size_t max_conn = 1024;
size_t max_msg = 1 << 20;
size_t max_queue = 4 << 20;
size_t max_inflight = 256;
size_t max_did_inflight = 64;
size_t max_did_conn = 32;
size_t max_node_rate = 20000;
size_t line_max;
int login_timeout = 10;
int tick_ms = 1000;
int ping_s = 30;
int request_timeout = 60;
int wss_dial;
static const char *port_file, *stats_file;
static long long first_id = -1;

struct key *nodekey;
struct lws_context *ctx;
struct lws_vhost *vhost, *dial_vhost;
static struct lws *stdin_wsi;
struct lws *stdout_wsi;
int shutting, destroying;

static int ofd_flags = -1, ifd_flags = -1;
static volatile sig_atomic_t got_signal;
static int lws_quiet;
static int64_t shutdown_at, started_ms;
static lws_sorted_usec_list_t tick_sul;

static void
usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f,
	    "usage: ns-serve -k NODEKEY [-l HOST:PORT] [-a ADDRESS] [--port-file FILE]\n"
	    "                [--stats FILE] [--max-conn N] [--max-msg BYTES]\n"
	    "                [--max-queue BYTES] [--max-inflight N]\n"
	    "                [--max-did-inflight N] [--max-did-conn N]\n"
	    "                [--max-node-rate N]\n"
	    "                [--request-timeout SEC] [--login-timeout SEC]\n"
	    "                [--tick MS] [--ping SEC] [--wss-dial] [--first-id N]\n"
	    "  -k, --key FILE            the node's key file (mode 0600)\n"
	    "  -l, --listen HOST:PORT    where to listen (default 127.0.0.1:7700; port 0: any)\n"
	    "  -a, --address ADDR        the address the node names itself by (default: HOST:PORT)\n"
	    "      --port-file FILE      write the bound port to FILE once listening\n"
	    "      --stats FILE          rewrite FILE every tick with connection counts\n"
	    "      --max-conn N          inbound connections at most (default 1024)\n"
	    "      --max-msg BYTES       largest incoming message (default 1048576)\n"
	    "      --max-queue BYTES     unsent bytes per connection (default 4194304)\n"
	    "      --max-inflight N      requests a DID's connections share in the node,\n"
	    "                            N/n for each of n with requests in it; reading\n"
	    "                            one pauses at its share, or at 16 whose answer\n"
	    "                            may be large (default 256)\n"
	    "      --max-did-inflight N  requests one DID may have in the node over all\n"
	    "                            its connections while others use the node too;\n"
	    "                            more are answered busy (default 64)\n"
	    "      --max-did-conn N      connections per logged-in DID (default 32)\n"
	    "      --max-node-rate N     messages a second another node may send on a\n"
	    "                            link; beyond, it is dropped and refused a while\n"
	    "                            (default 20000)\n"
	    "      --request-timeout SEC answer internal for a request the node has not\n"
	    "                            finished by then (default 60)\n"
	    "      --login-timeout SEC   close connections not logged in by then (default 10)\n"
	    "      --tick MS             interval of tick lines (default 1000)\n"
	    "      --ping SEC            ping idle connections after SEC (default 30)\n"
	    "      --first-id N          first connection id (default: start time in s * 10^6)\n"
	    "      --wss-dial            allow dial lines with wss:// URLs (loads TLS)\n"
	    "  -h, --help                this help\n"
	    "      --version             print the version\n");
	exit(status);
}

/* HOST:PORT, [V6]:PORT. */
static void
parse_listen(const char *s)
{
	const char *colon, *h, *he;

	if (*s == '[') {
		he = strchr(s, ']');
		if (!he || he[1] != ':') {
			warn("-l: not HOST:PORT: %.80s", s);
			usage(2);
		}
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s) {
			warn("-l: not HOST:PORT: %.80s", s);
			usage(2);
		}
		h = s;
		he = colon;
	}
	free(listen_host);
	listen_host = xmalloc((size_t)(he - h) + 1);
	memcpy(listen_host, h, (size_t)(he - h));
	listen_host[he - h] = '\0';
	listen_port = (int)xnum("-l port", colon + 1, 0, 65535);
}

/* O_NONBLOCK belongs to the open file description, which others share. */
static void
restore_stdout(void)
{
	if (ofd_flags != -1)
		fcntl(STDOUT_FILENO, F_SETFL, ofd_flags);
	if (ifd_flags != -1)
		fcntl(STDIN_FILENO, F_SETFL, ifd_flags);
}

static void
write_file(const char *path, const char *text)
{
	size_t n = strlen(path) + 32;
	char *tmp = xmalloc(n);
	FILE *f;

	snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
	if (!(f = fopen(tmp, "w"))) {
		warn("%s:", tmp);
		goto out;
	}
	fputs(text, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		warn("%s:", path);
		unlink(tmp);
	}
out:
	free(tmp);
}

static void
write_stats(void)
{
	size_t clients, nodes, subs, infl;
	char text[256];

	conn_stats(&clients, &nodes, &subs, &infl);
	snprintf(text, sizeof(text), "{\"pid\":%ld,\"started\":%lld,"
	    "\"clients\":%zu,\"nodes\":%zu,\"subs\":%zu,\"inflight\":%zu}\n",
	    (long)getpid(), (long long)started_ms, clients, nodes, subs, infl);
	write_file(stats_file, text);
}

/* ---- shutdown ---- */

static void
start_shutdown(void)
{
	struct conn *c, *next;

	if (shutting)
		return;
	shutting = 1;
	shutdown_at = now_ms() + SHUTDOWN_MS;
	for (c = conns; c; c = next) {
		next = c->next;
		if (c->state == S_DIALING || c->state == S_UPGRADE)
			conn_drop(c);
		else
			conn_close(c, 1001, "going away", 0);
	}
}

/* ---- lws callbacks ---- */

static void
on_adopt(struct lws *wsi)
{
	struct conn *c;

	/* over the limit the upgrade is still answered, so that the
	 * client reads why it is closed (ws.c) */
	c = conn_new(wsi, 0, !shutting && n_inbound < max_conn);
	c->state = S_UPGRADE;
	lws_set_opaque_user_data(wsi, c);
}

static int
cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_RAW_ADOPT:
		if (!c)
			on_adopt(wsi);
		return 0;
	case LWS_CALLBACK_RAW_CONNECTED:
		if (!c)
			return -1;
		c->wsi = wsi;
		c->state = S_UPGRADE;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_RAW_RX:
		if (!c)
			return -1;
		return ws_rx(c, in, len);
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (!c)
			return 0;
		return conn_writeable(c);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c) {
			char why[QUOTE + 1];
			snprintf(why, sizeof(why), "%s",
			    in ? (const char *)in : "connection failed");
			conn_gone(wsi, c, why);
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE:
	case LWS_CALLBACK_WSI_DESTROY:
		if (c)
			conn_gone(wsi, c, "connection closed");
		return 0;
	default:
		return 0;
	}
}

static int
cb_stdio(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi != stdin_wsi)
			return 0;
		if (!stdin_read()) {
			stdin_eof = 1;
			stdin_wsi = NULL;
			return -1;
		}
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (wsi == stdout_wsi)
			out_writeable();
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (wsi == stdin_wsi) {
			/* a pipe's hangup can come with data still unread */
			struct stat st;
			if (!destroying && fstat(STDIN_FILENO, &st) == 0 &&
			    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
				while (stdin_read() == 1)
					;
			stdin_eof = 1;
			stdin_wsi = NULL;
		} else if (wsi == stdout_wsi) {
			stdout_wsi = NULL;
			if (!destroying)
				die("stdout: closed by the reader");
		}
		return 0;
	default:
		return 0;
	}
}

static void
tick_cb(lws_sorted_usec_list_t *sul)
{
	/* a tick is dropped while stdout is backed up: a later one follows */
	if (!rx_paused) {
		buf_addf(&obuf, "{\"m\":\"tick\",\"now\":%lld}\n",
		    (long long)jsonl_now_ms());
		out_line_done();
	}
	conn_tick(now_ms());
	if (stats_file)
		write_stats();
	lws_sul_schedule(ctx, 0, &tick_sul, tick_cb,
	    (lws_usec_t)tick_ms * LWS_US_PER_MS);
}

/* lws's own errors and warnings, as one line each in our format. */
static void
lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	if (lws_quiet)
		return;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	fprintf(stderr, "%s: lws: %.*s\n", prog, (int)(n > 200 ? 200 : n),
	    line);
}

static void
on_signal(int sig)
{
	got_signal = sig;
	if (ctx)
		lws_cancel_service(ctx);
}

/* ---- setup ---- */

/* Why binding host:port fails, or NULL if it works.  lws does not say,
 * and it waits quietly for an address that does not exist (yet). */
static const char *
bind_error(const char *host, int port)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	int fd, one = 1, rc;
	const char *why = NULL;

	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (!host || inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons((uint16_t)port);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return strerror(errno);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = bind(fd, (struct sockaddr *)&a4, sizeof(a4));
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((uint16_t)port);
		fd = socket(AF_INET6, SOCK_STREAM, 0);
		if (fd < 0)
			return strerror(errno);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = bind(fd, (struct sockaddr *)&a6, sizeof(a6));
	} else
		return "not a numeric address";
	if (rc != 0)
		why = strerror(errno);
	close(fd);
	return why;
}

static const struct lws_protocols protocols[] = {
	{ "ns", cb_ws, 0, 0, 0, NULL, 0 },
	{ "ns-stdio", cb_stdio, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "listen", required_argument, NULL, 'l' },
		{ "address", required_argument, NULL, 'a' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "stats", required_argument, NULL, 'S' },
		{ "max-conn", required_argument, NULL, 'C' },
		{ "max-msg", required_argument, NULL, 'M' },
		{ "max-queue", required_argument, NULL, 'Q' },
		{ "max-inflight", required_argument, NULL, 'F' },
		{ "max-did-inflight", required_argument, NULL, 'D' },
		{ "max-did-conn", required_argument, NULL, 'N' },
		{ "max-node-rate", required_argument, NULL, 'X' },
		{ "request-timeout", required_argument, NULL, 'R' },
		{ "login-timeout", required_argument, NULL, 'T' },
		{ "tick", required_argument, NULL, 't' },
		{ "ping", required_argument, NULL, 'p' },
		{ "wss-dial", no_argument, NULL, 'W' },
		{ "first-id", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct lws_context_creation_info info, vinfo;
	lws_sock_file_fd_type fd;
	struct sigaction sa;
	const char *keyfile = NULL, *iface, *why;
	char err[256], *hostport;
	int c, port, v6;
	size_t n;

	prog = PROG;
	listen_host = xstrdup("127.0.0.1");
	while ((c = getopt_long(argc, argv, "k:l:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			keyfile = optarg;
			break;
		case 'l':
			parse_listen(optarg);
			break;
		case 'a':
			address = optarg;
			break;
		case 'P':
			port_file = optarg;
			break;
		case 'S':
			stats_file = optarg;
			break;
		case 'C':
			max_conn = (size_t)xnum("--max-conn", optarg, 1,
			    1000000);
			break;
		case 'M':
			max_msg = (size_t)xnum("--max-msg", optarg, 256,
			    BUS_LINE_MAX - 65536);
			break;
		case 'Q':
			max_queue = (size_t)xnum("--max-queue", optarg, 1024,
			    1ll << 32);
			break;
		case 'F':
			max_inflight = (size_t)xnum("--max-inflight", optarg, 1,
			    4096);
			break;
		case 'D':
			max_did_inflight = (size_t)xnum("--max-did-inflight",
			    optarg, 1, 65536);
			break;
		case 'X':
			max_node_rate = (size_t)xnum("--max-node-rate", optarg,
			    1, 100000000);
			break;
		case 'N':
			max_did_conn = (size_t)xnum("--max-did-conn", optarg, 1,
			    1000000);
			break;
		case 'R':
			request_timeout = (int)xnum("--request-timeout", optarg,
			    1, 3600);
			break;
		case 'T':
			login_timeout = (int)xnum("--login-timeout", optarg, 1,
			    3600);
			break;
		case 't':
			tick_ms = (int)xnum("--tick", optarg, 10, 3600000);
			break;
		case 'p':
			ping_s = (int)xnum("--ping", optarg, 1, 3600);
			break;
		case 'W':
			wss_dial = 1;
			break;
		case 'I':
			first_id = xnum("--first-id", optarg, 1, 1ll << 52);
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
	if (!keyfile) {
		warn("-k NODEKEY is required");
		usage(2);
	}
	if (address && (!*address || strlen(address) > 255)) {
		warn("-a: empty or over 255 bytes");
		usage(2);
	}
	line_max = max_msg + 4096;
	if (sodium_init() < 0)
		die("sodium_init failed");
	next_id = first_id > 0 ? first_id : (int64_t)time(NULL) * 1000000;
	started_ms = jsonl_now_ms();
	if (!(nodekey = key_load(keyfile, err, sizeof(err))))
		die("%s", err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	conn_table_init(max_conn);

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	memset(&info, 0, sizeof(info));
	v6 = strchr(listen_host, ':') != NULL;
	iface = listen_host;
	if (strcmp(listen_host, "0.0.0.0") == 0 ||
	    strcmp(listen_host, "*") == 0 || strcmp(listen_host, "::") == 0 ||
	    *listen_host == '\0')
		iface = NULL;
	else if (strcmp(listen_host, "localhost") == 0)
		iface = "127.0.0.1";
	/*
	 * Two vhosts: one listens (IPv4 only when the address is, or lws
	 * would listen on every address), the other dials (IPv6 too).  Both
	 * carry raw TCP: the WebSocket protocol is ours (ws.c).
	 */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (wss_dial)		/* OpenSSL and the CA store: ~2 MB more */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.protocols = protocols;
	info.fd_limit_per_thread = (unsigned)(2 * max_conn + 64);
	info.timeout_secs = 10;
	info.pt_serv_buf_size = READ_CHUNK;
	if ((why = bind_error(iface, listen_port))) {
		warn("listen %s:%d: %s", listen_host, listen_port, why);
		exit(2);
	}
	if (!(ctx = lws_create_context(&info)))
		die("cannot set up libwebsockets");
	vinfo = info;
	vinfo.vhost_name = "dial";
	vinfo.port = CONTEXT_PORT_NO_LISTEN;
	if (!(dial_vhost = lws_create_vhost(ctx, &vinfo)))
		die("cannot set up libwebsockets");
	vinfo = info;
	vinfo.vhost_name = "listen";
	vinfo.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	vinfo.options |= LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
	vinfo.listen_accept_role = "raw-skt";
	vinfo.listen_accept_protocol = "ns";
	if (iface && !v6)
		vinfo.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	vinfo.port = listen_port;
	vinfo.iface = iface;
	lws_quiet = 1;		/* a failure is reported below, once */
	vhost = lws_create_vhost(ctx, &vinfo);
	lws_quiet = 0;
	port = vhost ? lws_get_vhost_listen_port(vhost) : 0;
	if (!vhost || port <= 0) {
		/* _exit: lws 4.1.6 leaks from a failed vhost; nothing to
		 * flush yet */
		why = bind_error(iface, listen_port);
		warn("listen %s:%d: %s", listen_host, listen_port,
		    why ? why : "cannot listen");
		_exit(2);
	}
	n = strlen(listen_host) + 16;
	hostport = xmalloc(n);
	snprintf(hostport, n, v6 ? "[%s]:%d" : "%s:%d", listen_host, port);
	if (!address)
		address = hostport;

	/* stdout: non-blocking, our own backlog, re-armed from the loop */
	ifd_flags = fcntl(STDIN_FILENO, F_GETFL);
	ofd_flags = fcntl(STDOUT_FILENO, F_GETFL);
	if (ofd_flags == -1)
		die("stdout:");
	atexit(restore_stdout);
	jsonl_big_pipe(STDOUT_FILENO);
	fcntl(STDOUT_FILENO, F_SETFL, ofd_flags | O_NONBLOCK);
	memset(&fd, 0, sizeof(fd));
	fd.filefd = dup(STDOUT_FILENO);	/* lws closes what it adopted */
	if (fd.filefd < 0)
		die("stdout:");
	stdout_wsi = lws_adopt_descriptor_vhost(dial_vhost,
	    LWS_ADOPT_RAW_FILE_DESC, fd, "ns-stdio", NULL);
	if (!stdout_wsi)
		die("stdout: cannot watch it");
	lws_rx_flow_control(stdout_wsi, 0);
	memset(&fd, 0, sizeof(fd));
	fd.filefd = STDIN_FILENO;
	stdin_wsi = lws_adopt_descriptor_vhost(dial_vhost,
	    LWS_ADOPT_RAW_FILE_DESC, fd, "ns-stdio", NULL);
	if (!stdin_wsi)
		die("stdin: cannot watch it");

	/* the stages learn that every earlier connection is gone */
	buf_addf(&obuf, "{\"m\":\"conn.reset\",\"first\":%lld}\n",
	    (long long)next_id);
	if (port_file) {
		char text[32];
		snprintf(text, sizeof(text), "%d\n", port);
		write_file(port_file, text);
	}
	if (stats_file)
		write_stats();
	warn("listening on %s", hostport);
	lws_sul_schedule(ctx, 0, &tick_sul, tick_cb,
	    (lws_usec_t)tick_ms * LWS_US_PER_MS);

	for (;;) {
		if (lws_service(ctx, 0) < 0)
			break;
		if ((got_signal || stdin_eof) && !shutting)
			start_shutdown();
		out_flush();
		if (!rx_paused && out_pending() > OUT_HIGH) {
			warn("stdout: over %u bytes behind, reading paused",
			    OUT_HIGH);
			rx_pause_all(1);
		} else if (rx_paused && out_pending() < OUT_LOW) {
			warn("stdout: caught up, reading resumed");
			rx_pause_all(0);
		}
		/* lws drops a request made inside the writeable callback
		 * of a raw file, so it is made here, after each pass */
		if (out_blocked() && stdout_wsi)
			lws_callback_on_writable(stdout_wsi);
		if (shutting && (!conns || now_ms() > shutdown_at))
			break;
	}
	destroying = 1;
	lws_sul_cancel(&tick_sul);
	lws_context_destroy(ctx);
	while (conns)		/* lws did not call back for these */
		conn_gone(NULL, conns, "shutting down");
	out_final(SHUTDOWN_MS);
	restore_stdout();
	if (stats_file)
		unlink(stats_file);
	key_free(nodekey);
	subs_free_all();
	conn_free_buffers();
	free(hostport);
	free(listen_host);
	buf_free(&obuf);
	buf_free(&inl);
	return 0;
}
