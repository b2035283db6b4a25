/*
 * Dialing other nodes: a "dial" line names a URL (and the node DID it
 * must be); the connection goes up as raw TCP, speaks the WebSocket
 * handshake itself (ws.c) and logs in as this node (login.c).  A dial that
 * fails for any reason is reported once as a conn.fail line.
 */
#include <stdio.h>
#include <string.h>

#include "msg.h"
#include "serve.h"

static struct conn *dialing;		/* inside lws_client_connect_via_info */
static struct lws *dial_wsi;

void
dial_fail(struct conn *c, const char *reason)
{
	emit_conn_fail(c, reason);
	conn_close(c, 1008, "login failed", 1);
}

/* c is gone: if it is being dialed right now, dial() must not touch it. */
void
dial_forget(struct conn *c)
{
	if (c == dialing)
		dialing = NULL;
}

/* Split a dial URL, ws://host[:port][/path], wss://... or host[:port],
 * copied into u (which the results point into).  The port defaults to the
 * protocol's 7700, not to 80 or 443.  0, or -1 if malformed. */
static int
parse_url(const char *url, struct buf *u, int *tls, const char **host,
    int *port, const char **path)
{
	const char *prot, *h, *e, *colon, *rb;
	int p;

	buf_reset(u);
	if (!strstr(url, "://"))
		buf_adds(u, "ws://");
	buf_adds(u, url);
	h = strstr(u->p, "://") + 3;
	e = h + strcspn(h, "/");
	colon = memrchr(h, ':', (size_t)(e - h));
	rb = memrchr(h, ']', (size_t)(e - h));
	if (lws_parse_uri(u->p, &prot, host, &p, path) != 0 || !**host)
		return -1;
	if (strcmp(prot, "ws") != 0 && strcmp(prot, "wss") != 0)
		return -1;
	*tls = strcmp(prot, "wss") == 0;
	*port = colon && (!rb || colon > rb) ? p : 7700;
	return 0;
}

void
dial(const char *url, const char *expect)
{
	struct lws_client_connect_info ci;
	struct buf u = BUF_INIT;
	const char *host, *path;
	char pathbuf[512];
	struct conn *c, tmp;
	struct lws *wsi;
	int port, tls;

	memset(&tmp, 0, sizeof(tmp));
	tmp.url = (char *)url;
	tmp.expect = (char *)expect;
	if (n_outbound >= max_conn) {
		emit_conn_fail(&tmp, "too many connections");
		goto out;
	}
	if (parse_url(url, &u, &tls, &host, &port, &path) != 0) {
		emit_conn_fail(&tmp, "not a ws:// or wss:// URL");
		goto out;
	}
	if (tls && !wss_dial) {
		emit_conn_fail(&tmp, "wss:// needs ns-serve --wss-dial");
		goto out;
	}
	snprintf(pathbuf, sizeof(pathbuf), "/%s", path);

	c = conn_new(NULL, 1, 1);
	c->state = S_DIALING;
	c->url = xstrdup(url);
	if (expect)
		c->expect = xstrdup(expect);
	ws_client_hello(c, host, port, pathbuf);

	memset(&ci, 0, sizeof(ci));
	ci.context = ctx;
	ci.vhost = dial_vhost;
	ci.address = host;
	ci.port = port;
	ci.path = pathbuf;
	ci.host = host;
	ci.origin = host;
	ci.method = "RAW";
	ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
	ci.local_protocol_name = "ns";
	ci.opaque_user_data = c;
	/* not &c->wsi: lws stores NULL there after a failure that freed c */
	ci.pwsi = &dial_wsi;
	dialing = c;
	wsi = lws_client_connect_via_info(&ci);
	/* a failure inside the call may have reported and freed c already */
	if (dialing == c) {
		if (wsi)
			c->wsi = wsi;
		else
			conn_gone(NULL, c, "cannot connect");
	}
	dialing = NULL;
out:
	buf_free(&u);
}
