#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "neterr.h"

#define W(what, hint)	{ what, hint, what ": " hint }

static const struct {
	const char *what, *hint, *all;
} words[] = {
	[NETERR_OTHER] = W("cannot connect",
	    "check the URL, and that the node is running"),
	[NETERR_CONNECT] = W("cannot connect",
	    "check the address and port, and that the node is running"),
	[NETERR_REFUSED] = W("connection refused",
	    "is the node running? start it with: ns-node run DIR"),
	[NETERR_NOHOST] = W("host not found",
	    "check the host name in the URL"),
	[NETERR_DNS] = W("host name lookup failed",
	    "check the host name in the URL and this machine's DNS"),
	[NETERR_UNREACHABLE] = W("host unreachable",
	    "check the address, port and network"),
	[NETERR_TIMEOUT] = W("timed out",
	    "check the address, port and network"),
	[NETERR_TLS] = W("TLS handshake failed",
	    "does the node serve wss:// at that port, with a certificate "
	    "this machine trusts?"),
	[NETERR_HANDSHAKE] = W("no WebSocket upgrade",
	    "is this the URL of a Northstar node?"),
	[NETERR_DROPPED] = W("closed during the WebSocket handshake",
	    "is this the URL of a Northstar node, and ws:// or wss:// "
	    "the right one?"),
};

static enum neterr
valid(enum neterr e)
{
	return (unsigned)e < sizeof(words) / sizeof(words[0]) ? e :
	    NETERR_OTHER;
}

const char *
neterr_str(enum neterr e)
{
	return words[valid(e)].all;
}

const char *
neterr_what(enum neterr e)
{
	return words[valid(e)].what;
}

const char *
neterr_hint(enum neterr e)
{
	return words[valid(e)].hint;
}

enum neterr
neterr_from_lws(const char *in)
{
	if (!in || !*in || strcmp(in, "Unable to connect") == 0)
		return NETERR_CONNECT;
	if (strstr(in, "getaddrinfo"))
		return NETERR_NOHOST;
	if (strstr(in, "SSL") || strstr(in, "ssl") || strstr(in, "tls"))
		return NETERR_TLS;
	if (strncmp(in, "HS: ", 4) == 0 || strstr(in, "upgrade") ||
	    strstr(in, "protocol"))
		return NETERR_HANDSHAKE;
	if (strstr(in, "closed before") || strcmp(in, "read failed") == 0 ||
	    strcmp(in, "Peer hung up") == 0)
		return NETERR_DROPPED;
	return NETERR_OTHER;
}

enum neterr
neterr_from_errno(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return NETERR_REFUSED;
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
	case EADDRNOTAVAIL:
		return NETERR_UNREACHABLE;
	case ETIMEDOUT:
		return NETERR_TIMEOUT;
	case ECONNRESET:
	case EPIPE:
		return NETERR_DROPPED;
	default:
		return NETERR_CONNECT;
	}
}

enum neterr
neterr_from_gai(int rc)
{
	switch (rc) {
	case 0:
		return NETERR_CONNECT;
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return NETERR_NOHOST;
	case EAI_AGAIN:
	case EAI_FAIL:
		return NETERR_DNS;
	default:
		return NETERR_NOHOST;
	}
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* 0 if a TCP connection to ai is made before deadline, else an errno. */
static int
try_connect(const struct addrinfo *ai, long deadline)
{
	struct pollfd pfd;
	socklen_t len = sizeof(int);
	int fd, e = 0, left;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		goto out;
	if (errno != EINPROGRESS) {
		e = errno;
		goto out;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		left = (int)(deadline - now_ms());
		if (left <= 0) {
			e = ETIMEDOUT;
			break;
		}
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			e = errno;
		else if (r == 0)
			e = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
			e = errno;
		break;
	}
out:
	close(fd);
	return e;
}

/* Which of two causes says more about an address that cannot be reached. */
static int
rank(enum neterr e)
{
	switch (e) {
	case NETERR_REFUSED:
		return 4;
	case NETERR_UNREACHABLE:
		return 3;
	case NETERR_TIMEOUT:
		return 2;
	case NETERR_DROPPED:
		return 1;
	default:
		return 0;
	}
}

int
neterr_probe(const char *host, int port, int ms)
{
	struct addrinfo hints, *res, *ai;
	enum neterr best = NETERR_CONNECT, e;
	char serv[16];
	long deadline = now_ms() + (ms > 0 ? ms : 1);
	int rc, err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(serv, sizeof(serv), "%d", port);
	if ((rc = getaddrinfo(host, serv, &hints, &res)) != 0)
		return rc == EAI_SYSTEM ? neterr_from_errno(errno) :
		    neterr_from_gai(rc);
	for (ai = res; ai; ai = ai->ai_next) {
		if ((err = try_connect(ai, deadline)) == 0) {
			freeaddrinfo(res);
			return -1;
		}
		e = neterr_from_errno(err);
		if (rank(e) > rank(best))
			best = e;
	}
	freeaddrinfo(res);
	return best;
}

/* Untrusted text for a message: at most 80 bytes, not cut inside a UTF-8
 * sequence, control characters replaced. */
static const char *
clean(char *out, size_t outsz, const char *s)
{
	size_t i, n;

	if (!s)
		s = "";
	n = strlen(s);
	if (n > 80)
		n = 80;
	if (n > outsz - 1)
		n = outsz - 1;
	if (n < strlen(s))
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	for (i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[n] = '\0';
	return out;
}

void
neterr_closed(char *out, size_t n, int code, const char *reason)
{
	const char *hint;
	char r[84];

	switch (code) {
	case 0:
	case 1006:
		snprintf(out, n, "the connection dropped: is the node still "
		    "running?");
		return;
	case 1001:
		hint = "the node is going away: try again later";
		break;
	case 1003:
	case 1007:
		hint = "the node cannot take what was sent";
		break;
	case 1008:
		hint = "the node's rules refused this connection";
		break;
	case 1009:
		hint = "a message was over the node's size limit";
		break;
	case 1011:
		hint = "the node failed: try again later";
		break;
	case 1013:
		hint = "the node is full, or this side read too slowly: try "
		    "again later";
		break;
	default:
		hint = NULL;
	}
	clean(r, sizeof(r), reason);
	snprintf(out, n, "the node closed the connection (%d%s%s)%s%s", code,
	    *r ? " " : "", r, hint ? ": " : "", hint ? hint : "");
}

void
neterr_login(char *out, size_t n, const char *reason, const char *message)
{
	char r[84], m[84];

	clean(r, sizeof(r), reason ? reason : "error");
	clean(m, sizeof(m), message);
	snprintf(out, n, "login refused: %s%s%s: %s", r, *m ? ": " : "", m,
	    strstr(m, "clock") ? "is this machine's clock right?" :
	    "is this the right key for this node?");
}

void
neterr_wrong_node(char *out, size_t n, const char *got, const char *want)
{
	char g[84], w[84];

	snprintf(out, n, "the node is %s, not %s: is this the URL of that "
	    "node?", clean(g, sizeof(g), got), clean(w, sizeof(w), want));
}

void
neterr_wrong_address(char *out, size_t n, const char *got)
{
	char g[84];

	snprintf(out, n, "the node calls itself %s: dial it by that address",
	    clean(g, sizeof(g), got));
}
