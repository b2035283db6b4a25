/*
 * wsc: a small WebSocket client for the tests (RFC 6455 by hand over TCP).
 * It connects to 127.0.0.1:PORT, prints every text message it receives as
 * one line, and sends each stdin line as one masked text frame.  With -k it
 * first answers the auth.challenge with a signed auth.login.  A close frame
 * from the server prints {"wsc":"close","code":N,"reason":R}; the end of the
 * connection {"wsc":"eof"}; running out of time {"wsc":"timeout"} (exit 3).
 * Exit 0 when --count messages arrived, the server closed, or stdin ended
 * and nothing came for --quiet ms; 2 on usage or connection trouble.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "buf.h"
#include "canon.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

static int port, opt_binary, opt_stall, opt_badsig, opt_unmasked, opt_rtt, count = -1;
static int opt_stamp;
static long ping_len = -1;
static long big, fragment, churn;
static double timeout_s = 10;
static int quiet_ms = 500;
static const char *role = "client", *o_nonce, *o_node, *o_address, *o_ts;
static const char *print_login, *nl_token;
static struct key *key;
static int fd = -1;
static struct buf rx = BUF_INIT, msgb = BUF_INIT;
static int msg_op;
static long received;

static void
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: wsc -p PORT [-k KEYFILE [--role R] [--nonce S] [--node S]\n"
	    "           [--address S] [--ts MS] [--bad-sig] [--print-login FILE]]\n"
	    "           [--binary] [--big N] [--fragment N] [--stall] [--count N]\n"
	    "           [--timeout SEC] [--quiet MS] [--churn N] [--nl TOKEN]\n"
	    "           [--unmasked] [--ping N] [--rtt] [--stamp]\n"
	    "  --rtt: send stdin lines one at a time, each after the answer to the\n"
	    "         one before, and print {\"wsc\":\"rtt\",\"ms\":N,\"ok\":B} for\n"
	    "         each (ok: the answer was a result)\n"
	    "  --stamp: start each message's line with the wall clock in ms and a\n"
	    "         space\n");
	exit(status);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
out(const char *p, size_t n)
{
	fwrite(p, 1, n, stdout);
	putchar('\n');
	fflush(stdout);
}

static void
send_all(const void *p, size_t n)
{
	const char *s = p;
	ssize_t w;

	while (n) {
		w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("send:");
		s += w;
		n -= (size_t)w;
	}
}

static void
send_frame(int op, int fin, const void *p, size_t n)
{
	unsigned char h[14], mask[4], *m;
	size_t hl = 2, i;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
	if (n < 126)
		h[1] = (unsigned char)(0x80 | n);
	else if (n < 65536 && (op & 8) == 0) {
		h[1] = 0x80 | 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else if (n < 65536) {
		h[1] = 0x80 | 126;	/* a control frame too: it is a test */
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	randombytes_buf(mask, 4);
	if (opt_unmasked) {
		/* a client that breaks RFC 6455 5.1 */
		h[1] &= 0x7f;
		memset(mask, 0, sizeof(mask));
	} else {
		memcpy(h + hl, mask, 4);
		hl += 4;
	}
	m = xmalloc(hl + n);
	memcpy(m, h, hl);
	for (i = 0; i < n; i++)
		m[hl + i] = ((const unsigned char *)p)[i] ^ mask[i & 3];
	send_all(m, hl + n);
	free(m);
}

static void
send_msg(int op, const char *p, size_t n)
{
	size_t off = 0, step;

	if (fragment <= 0 || n <= (size_t)fragment) {
		send_frame(op, 1, p, n);
		return;
	}
	while (off < n) {
		step = n - off < (size_t)fragment ? n - off : (size_t)fragment;
		send_frame(off ? 0 : op, off + step == n, p + off, step);
		off += step;
	}
}

static void
connect_ws(void)
{
	struct sockaddr_in a;
	char req[256], resp[4096];
	size_t got = 0;
	ssize_t n;
	char *end;
	int one = 1;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket:");
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("connect:");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(req, sizeof(req),
	    "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", port);
	send_all(req, strlen(req));
	for (;;) {
		n = read(fd, resp + got, sizeof(resp) - 1 - got);
		if (n <= 0)
			die("handshake: connection closed");
		got += (size_t)n;
		resp[got] = '\0';
		if ((end = strstr(resp, "\r\n\r\n")))
			break;
		if (got == sizeof(resp) - 1)
			die("handshake: response too long");
	}
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0)
		die("handshake: %.40s", resp);
	end += 4;
	buf_reset(&rx);
	buf_add(&rx, end, got - (size_t)(end - resp));
}

/* One complete frame from rx, or 0 if more bytes are needed. */
static int
next_frame(int *fin, int *op, char **p, size_t *n)
{
	unsigned char *b = (unsigned char *)rx.p;
	size_t hl = 2, len, i;

	if (rx.len < 2)
		return 0;
	*fin = b[0] >> 7;
	*op = b[0] & 15;
	len = b[1] & 127;
	if (len == 126) {
		if (rx.len < 4)
			return 0;
		len = (size_t)b[2] << 8 | b[3];
		hl = 4;
	} else if (len == 127) {
		if (rx.len < 10)
			return 0;
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | b[2 + i];
		hl = 10;
	}
	if (b[1] & 0x80)
		hl += 4;		/* servers do not mask; skip it anyway */
	if (rx.len < hl + len)
		return 0;
	*p = rx.p + hl;
	*n = len;
	return (int)(hl + len);
}

static void
consume(size_t n)
{
	memmove(rx.p, rx.p + n, rx.len - n);
	rx.len -= n;
}

static void
print_close(const char *p, size_t n)
{
	int code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;
	jv o = jv_object_set(jv_object(), jv_string("wsc"), jv_string("close"));

	o = jv_object_set(o, jv_string("code"), jv_number(code));
	o = jv_object_set(o, jv_string("reason"),
	    jv_string_sized(n > 2 ? p + 2 : "", n > 2 ? (int)n - 2 : 0));
	jsonl_emit(o);
	fflush(stdout);
}

enum { GOT_NONE, GOT_MSG, GOT_CLOSE };

/* Handle the frames in rx; a whole text message goes to *m. */
static int
frames(char **m, size_t *mn)
{
	int fin, op, r;
	char *p;
	size_t n;

	while ((r = next_frame(&fin, &op, &p, &n)) > 0) {
		if (op == 8) {
			print_close(p, n);
			send_frame(8, 1, p, n >= 2 ? 2 : 0);
			consume((size_t)r);
			return GOT_CLOSE;
		}
		if (op == 9) {
			send_frame(10, 1, p, n);
			consume((size_t)r);
			continue;
		}
		if (op == 10) {
			consume((size_t)r);
			continue;
		}
		if (op == 1 || op == 2) {
			buf_reset(&msgb);
			msg_op = op;
		}
		buf_add(&msgb, p, n);
		consume((size_t)r);
		if (fin) {
			*m = msgb.p;
			*mn = msgb.len;
			return GOT_MSG;
		}
	}
	return GOT_NONE;
}

/* Read more into rx; 0 at EOF. */
static int
fill(void)
{
	ssize_t n;

	buf_grow(&rx, 65536);
	n = read(fd, rx.p + rx.len, 65536);
	if (n < 0 && errno == EINTR)
		return 1;
	if (n <= 0)
		return 0;
	rx.len += (size_t)n;
	return 1;
}

/* Wait for one whole message, at most until deadline; GOT_*. */
static int
wait_msg(double deadline, char **m, size_t *mn)
{
	struct pollfd pfd = { 0, POLLIN, 0 };
	int r;

	pfd.fd = fd;
	for (;;) {
		if ((r = frames(m, mn)) != GOT_NONE)
			return r;
		double left = deadline - now_s();
		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (!fill())
			return -2;
	}
}

static void
finish(int how)
{
	if (how == -1) {
		puts("{\"wsc\":\"timeout\"}");
		exit(3);
	}
	if (how == -2)
		puts("{\"wsc\":\"eof\"}");
	exit(0);
}

static void
got_message(char *m, size_t n)
{
	received++;
	if (opt_stamp) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld ", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	}
	if (msg_op == 2)
		fputs("binary:", stdout);
	out(m, n);
	if (count >= 0 && received >= count) {
		send_frame(8, 1, "\x03\xe8", 2);
		exit(0);
	}
}

static void
login(double deadline)
{
	char *m, *p;
	size_t n;
	int r;
	jv ch, params, lg, req;
	struct buf b = BUF_INIT;

	r = wait_msg(deadline, &m, &n);
	if (r != GOT_MSG)
		finish(r == GOT_CLOSE ? 0 : r);
	ch = canon_parse(m, n);
	got_message(m, n);
	params = jsonl_get(ch, "params");
	lg = jv_object();
	lg = jv_object_set(lg, jv_string("type"), jv_string("auth.login"));
	lg = jv_object_set(lg, jv_string("nonce"), jv_string(o_nonce ? o_nonce :
	    jsonl_str(params, "nonce") ? jsonl_str(params, "nonce") : ""));
	lg = jv_object_set(lg, jv_string("node"), jv_string(o_node ? o_node :
	    jsonl_str(params, "node") ? jsonl_str(params, "node") : ""));
	lg = jv_object_set(lg, jv_string("address"), jv_string(o_address ?
	    o_address : jsonl_str(params, "address") ?
	    jsonl_str(params, "address") : ""));
	lg = jv_object_set(lg, jv_string("role"), jv_string(role));
	lg = jv_object_set(lg, jv_string("author"), jv_string(key->did));
	lg = jv_object_set(lg, jv_string("ts"), jv_number((double)(o_ts ?
	    strtoll(o_ts, NULL, 10) : jsonl_now_ms())));
	lg = sig_attach(lg, key);
	if (opt_badsig)
		lg = jv_object_set(lg, jv_string("role"), jv_string(
		    strcmp(role, "client") == 0 ? "node" : "client"));
	req = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
	req = jv_object_set(req, jv_string("id"), jv_string("login"));
	req = jv_object_set(req, jv_string("method"), jv_string("auth.login"));
	req = jv_object_set(req, jv_string("params"), lg);
	if (canon_dump(req, NULL, &b) != 0)
		die("cannot serialize the login");
	jv_free(req);
	jv_free(params);
	jv_free(ch);
	if (print_login) {
		FILE *f = fopen(print_login, "w");
		if (!f)
			die("%s:", print_login);
		fprintf(f, "%s\n", b.p);
		fclose(f);
	}
	send_msg(1, b.p, b.len);
	buf_free(&b);
	r = wait_msg(deadline, &p, &n);
	if (r != GOT_MSG)
		finish(r == GOT_CLOSE ? 0 : r);
	got_message(p, n);
}

static struct buf inb = BUF_INIT;

/* Send one stdin line (n bytes at p, no '\n') as one message. */
static void
send_line(const char *p, size_t n)
{
	char *line = xmalloc(n + 1), *t;
	size_t tl;

	memcpy(line, p, n);
	line[n] = '\0';
	if (nl_token && *nl_token) {
		tl = strlen(nl_token);
		while ((t = strstr(line, nl_token))) {
			*t = '\n';
			memmove(t + 1, t + tl, strlen(t + tl) + 1);
		}
		n = strlen(line);
	}
	send_msg(opt_binary ? 2 : 1, line, n);
	free(line);
}

static void
send_lines(void)
{
	size_t start = 0;
	char *nl;

	while ((nl = memchr(inb.p + start, '\n', inb.len - start))) {
		send_line(inb.p + start, (size_t)(nl - inb.p) - start);
		start = (size_t)(nl - inb.p) + 1;
	}
	memmove(inb.p, inb.p + start, inb.len - start);
	inb.len -= start;
}

static void
do_churn(void)
{
	char *m;
	size_t n;
	long i;

	for (i = 0; i < churn; i++) {
		connect_ws();
		if (wait_msg(now_s() + timeout_s, &m, &n) != GOT_MSG)
			die("churn %ld: no challenge", i);
		if (i % 2)
			send_frame(8, 1, "\x03\xe8", 2);
		close(fd);
	}
	printf("{\"wsc\":\"churn\",\"n\":%ld}\n", churn);
	exit(0);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },
		{ "nonce", required_argument, NULL, 'N' },
		{ "node", required_argument, NULL, 'D' },
		{ "address", required_argument, NULL, 'A' },
		{ "ts", required_argument, NULL, 'T' },
		{ "bad-sig", no_argument, NULL, 'B' },
		{ "print-login", required_argument, NULL, 'L' },
		{ "binary", no_argument, NULL, 'b' },
		{ "big", required_argument, NULL, 'g' },
		{ "fragment", required_argument, NULL, 'f' },
		{ "stall", no_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "quiet", required_argument, NULL, 'q' },
		{ "churn", required_argument, NULL, 'C' },
		{ "nl", required_argument, NULL, 'n' },
		{ "unmasked", no_argument, NULL, 'U' },
		{ "ping", required_argument, NULL, 'P' },
		{ "rtt", no_argument, NULL, 'R' },
		{ "stamp", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char err[256], *m;
	size_t n;
	ssize_t ll;
	double deadline, quiet_until = 0;
	int c, r, in_open = 1;
	struct pollfd pfd[2];

	prog = "wsc";
	while ((c = getopt_long(argc, argv, "p:k:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'k':
			if (sodium_init() < 0)
				die("sodium_init");
			if (!(key = key_load(optarg, err, sizeof(err))))
				die("%s", err);
			break;
		case 'r': role = optarg; break;
		case 'N': o_nonce = optarg; break;
		case 'D': o_node = optarg; break;
		case 'A': o_address = optarg; break;
		case 'T': o_ts = optarg; break;
		case 'B': opt_badsig = 1; break;
		case 'L': print_login = optarg; break;
		case 'b': opt_binary = 1; break;
		case 'g': big = atol(optarg); break;
		case 'f': fragment = atol(optarg); break;
		case 's': opt_stall = 1; break;
		case 'c': count = atoi(optarg); break;
		case 't': timeout_s = atof(optarg); break;
		case 'q': quiet_ms = atoi(optarg); break;
		case 'C': churn = atol(optarg); break;
		case 'n': nl_token = optarg; break;
		case 'U': opt_unmasked = 1; break;
		case 'P': ping_len = atol(optarg); break;
		case 'R': opt_rtt = 1; break;
		case 'M': opt_stamp = 1; break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (port <= 0 || optind != argc)
		usage(2);
	if (sodium_init() < 0)
		die("sodium_init");
	deadline = now_s() + timeout_s;
	if (churn)
		do_churn();
	connect_ws();
	if (key)
		login(deadline);
	if (ping_len >= 0) {
		char *b = xmalloc((size_t)ping_len + 1);
		memset(b, 'p', (size_t)ping_len);
		send_frame(9, 1, b, (size_t)ping_len);
		free(b);
	}
	if (big > 0) {
		char *b = xmalloc((size_t)big);
		memset(b, 'a', (size_t)big);
		b[0] = '"';
		b[big - 1] = '"';
		send_msg(1, b, (size_t)big);
		free(b);
	}
	if (opt_rtt) {
		/* one request at a time: how long each takes to be answered */
		char *line = NULL;
		size_t cap = 0;
		ssize_t got;

		while ((got = getline(&line, &cap, stdin)) > 0) {
			double t0 = now_s();
			if (line[got - 1] == '\n')
				line[--got] = '\0';
			send_line(line, (size_t)got);
			r = wait_msg(deadline, &m, &n);
			if (r != GOT_MSG)
				finish(r == GOT_CLOSE ? 0 : r);
			/* ok: the answer was a result, not an error */
			printf("{\"wsc\":\"rtt\",\"ms\":%.3f,\"ok\":%s}\n",
			    (now_s() - t0) * 1000,
			    memmem(m, n, "\"result\":", 9) ? "true" : "false");
			fflush(stdout);
		}
		free(line);
		finish(0);
	}
	if (opt_stall) {
		/* read nothing more: a slow reader */
		while (now_s() < deadline)
			usleep(50000);
		finish(0);
	}
	pfd[0].fd = fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = 0;
	pfd[1].events = POLLIN;
	for (;;) {
		while ((r = frames(&m, &n)) == GOT_MSG) {
			got_message(m, n);
			quiet_until = now_s() + quiet_ms / 1000.0;
		}
		if (r == GOT_CLOSE)
			finish(0);
		if (now_s() >= deadline)
			finish(-1);
		if (!in_open && count < 0 && now_s() >= quiet_until)
			finish(0);
		if (poll(pfd, in_open ? 2 : 1, 20) <= 0)
			continue;
		if (pfd[0].revents && !fill())
			finish(-2);
		if (in_open && pfd[1].revents) {
			buf_grow(&inb, 65536);
			ll = read(0, inb.p + inb.len, 65536);
			if (ll < 0 && errno == EINTR)
				continue;
			if (ll <= 0) {
				in_open = 0;
				if (inb.len)	/* a last line without '\n' */
					send_line(inb.p, inb.len);
				quiet_until = now_s() + quiet_ms / 1000.0;
				continue;
			}
			inb.len += (size_t)ll;
			send_lines();
		}
	}
}
