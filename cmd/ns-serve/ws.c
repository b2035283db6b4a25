/*
 * The WebSocket layer (RFC 6455) over raw TCP connections: the opening
 * handshake both ways, frames in (checked as the RFC asks of a receiver:
 * masking, reserved bits, opcodes, control frame sizes, fragmentation, the
 * message size limit, UTF-8), and frames out, many per write.  Every
 * protocol fault is answered with a close frame that names it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "msg.h"
#include "serve.h"

static uint64_t prng_state;

/* Masking keys for our client frames: they need to be unpredictable to
 * the page scripts a proxy might serve, not secret, so a fast generator
 * seeded from the system suffices (RFC 6455 10.3). */
static void
new_mask(unsigned char mask[4])
{
	uint64_t x;

	if (!prng_state)
		randombytes_buf(&prng_state, sizeof(prng_state));
	x = prng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	prng_state = x ? x : 0x9e3779b97f4a7c15ull;
	x *= 0x2545f4914f6cdd1dull;
	memcpy(mask, &x, 4);
}

/* A protocol fault of the peer: close with code, read nothing more. */
static void
fail(struct conn *c, int code, const char *why)
{
	if (!c->closing)
		warn("connection %lld: %s", (long long)c->id, why);
	conn_close(c, code, why, 1);
	c->in_off = c->in.len;
	c->rx_dead = 1;
}

/* An HTTP error answer instead of an upgrade; the connection ends once
 * it is sent. */
void
ws_http_refuse(struct conn *c, int status, const char *text)
{
	static const char body[] =
	    "This is a Northstar node: it speaks WebSocket only.\n";

	buf_reset(&c->hs);
	buf_addf(&c->hs, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n", status, text,
	    sizeof(body) - 1);
	if (status == 426)
		buf_adds(&c->hs, "Upgrade: websocket\r\n"
		    "Sec-WebSocket-Version: 13\r\n");
	buf_adds(&c->hs, "\r\n");
	buf_adds(&c->hs, body);
	c->closing = 1;
	/* nothing to wait for: end right after the answer is written */
	c->close_sent = c->close_rcvd = 1;
	c->in_off = c->in.len;
	c->rx_dead = 1;
	lws_callback_on_writable(c->wsi);
}

/* An inbound opening handshake, once its header block is all there.
 * 1 when the connection is open, 0 when more is needed, -1 refused. */
static int
upgrade_in(struct conn *c)
{
	const char *p = c->in.p + c->in_off, *why;
	size_t avail = c->in.len - c->in_off, end = ws_http_end(p, avail);
	unsigned char raw[32];
	char accept[WS_ACCEPT_LEN + 1], key[WS_KEY_LEN + 1];
	struct ws_request r;
	size_t n;

	if (!end) {
		if (avail > WS_HTTP_MAX) {
			ws_http_refuse(c, 431, "Request Header Fields Too Large");
			return -1;
		}
		return 0;
	}
	if (ws_request_parse(p, end, &r, &why) != 0) {
		ws_http_refuse(c, 400, "Bad Request");
		return -1;
	}
	if (!r.get) {
		ws_http_refuse(c, 405, "Method Not Allowed");
		return -1;
	}
	if (!r.upgrade || !r.connection) {
		ws_http_refuse(c, 426, "Upgrade Required");
		return -1;
	}
	if (r.version != 13) {
		ws_http_refuse(c, 426, "Upgrade Required");
		return -1;
	}
	if (!r.key || r.keylen != WS_KEY_LEN || sodium_base642bin(raw,
	    sizeof(raw), r.key, r.keylen, NULL, &n, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || n != 16) {
		ws_http_refuse(c, 400, "Bad Request");
		return -1;
	}
	memcpy(key, r.key, WS_KEY_LEN);
	key[WS_KEY_LEN] = '\0';
	ws_accept_key(key, WS_KEY_LEN, accept);
	buf_reset(&c->hs);
	buf_addf(&c->hs, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	c->in_off += end;
	lws_callback_on_writable(c->wsi);
	if (c->id == 0) {
		/* over a limit: the client learns why from a close frame */
		c->state = S_REJECTED;
		conn_close(c, CLOSE_TRY_AGAIN, shutting ? "going away" :
		    "too many connections", 1);
		c->in_off = c->in.len;
		return -1;
	}
	c->state = S_NEW;
	send_challenge(c);
	return 1;
}

/* The server's answer to our opening handshake. */
static int
upgrade_out(struct conn *c)
{
	const char *p = c->in.p + c->in_off, *why;
	size_t avail = c->in.len - c->in_off, end = ws_http_end(p, avail);

	if (!end) {
		if (avail > WS_HTTP_MAX) {
			dial_fail(c, "the server's handshake answer is too long");
			return -1;
		}
		return 0;
	}
	if (ws_response_check(p, end, c->wskey, &why) != 0) {
		dial_fail(c, why);
		c->in_off = c->in.len;
		return -1;
	}
	c->in_off += end;
	c->state = S_CHALLENGE;
	return 1;
}

/* The opening handshake a dial will send once its TCP connection is up
 * (then the caller sets S_UPGRADE and asks to write). */
void
ws_client_hello(struct conn *c, const char *host, int port, const char *path)
{
	ws_new_key(c->wskey);
	buf_reset(&c->hs);
	buf_addf(&c->hs, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    path, host, port, c->wskey);
}

static void
close_frame_in(struct conn *c, const unsigned char *p, size_t n)
{
	unsigned code = 1000;
	char why[QUOTE + 32];

	if (n == 1) {
		fail(c, 1002, "close frame with a 1-byte payload");
		return;
	}
	if (n >= 2) {
		code = (unsigned)p[0] << 8 | p[1];
		if (!ws_close_code_ok(code)) {
			fail(c, 1002, "close frame with an invalid code");
			return;
		}
		if (!ws_utf8_ok(p + 2, n - 2)) {
			fail(c, 1007, "close reason is not UTF-8");
			return;
		}
	}
	c->close_rcvd = 1;
	if (c->outbound && c->state != S_AUTH) {
		snprintf(why, sizeof(why), "closed by the node (%u%s%.*s)", code,
		    n > 2 ? ": " : "", (int)(n > 2 + QUOTE ? QUOTE : n > 2 ?
		    n - 2 : 0), (const char *)p + 2);
		emit_conn_fail(c, why);
	}
	if (c->close_sent)
		return;		/* the handshake is complete */
	/* answer with the same code (RFC 6455 5.5.1) */
	conn_close(c, n >= 2 ? (int)code : 1000, "", 1);
}

/* One whole text message from c. */
static void
message(struct conn *c, const unsigned char *p, size_t n)
{
	if (!ws_utf8_ok(p, n)) {
		fail(c, 1007, "text message is not UTF-8");
		return;
	}
	handle_msg(c, (const char *)p, n);
}

/* Take every complete frame in c->in, while c is not paused.  Returns -1
 * when lws should end the connection at once. */
static int
process(struct conn *c)
{
	struct ws_frame f;
	unsigned char *p;
	size_t avail, limit;
	int rc;

	for (;;) {
		if (c->state == S_UPGRADE) {
			rc = c->outbound ? upgrade_out(c) : upgrade_in(c);
			if (rc <= 0)
				break;
			continue;
		}
		if (c->paused || c->close_rcvd)
			break;
		avail = c->in.len - c->in_off;
		p = (unsigned char *)c->in.p + c->in_off;
		if ((rc = ws_frame_parse(p, avail, &f)) == 0)
			break;
		if (rc < 0) {
			fail(c, 1002, "frame length with its top bit set");
			break;
		}
		if (f.rsv) {
			fail(c, 1002, "reserved bits set without an extension");
			break;
		}
		if (f.masked == c->outbound) {
			fail(c, 1002, c->outbound ? "masked frame from a server"
			    : "unmasked frame from a client");
			break;
		}
		if (f.op >= 8) {
			if (f.op > WS_PONG) {
				fail(c, 1002, "unknown control opcode");
				break;
			}
			if (!f.fin || f.len > WS_CTL_MAX) {
				fail(c, 1002, f.fin ? "control frame over 125 "
				    "bytes" : "fragmented control frame");
				break;
			}
		} else if (f.op == WS_BINARY) {
			fail(c, 1003, "binary frames are not accepted");
			break;
		} else if (f.op != WS_TEXT && f.op != WS_CONT) {
			fail(c, 1002, "unknown data opcode");
			break;
		} else if ((f.op == WS_CONT) != c->frag_on) {
			fail(c, 1002, c->frag_on ? "new message inside a "
			    "fragmented one" : "continuation with nothing to "
			    "continue");
			break;
		} else {
			limit = c->state == S_AUTH || max_msg < LOGIN_MSG_MAX ?
			    max_msg : LOGIN_MSG_MAX;
			if (f.len > limit || c->frag.len + f.len > limit) {
				char why[64];
				snprintf(why, sizeof(why), "message over %zu "
				    "bytes", limit);
				fail(c, 1009, why);
				break;
			}
		}
		if (avail - f.hdr < f.len)
			break;		/* the rest of the frame is on its way */
		p += f.hdr;
		if (f.masked)
			ws_mask(p, (size_t)f.len, f.mask, 0);
		c->in_off += f.hdr + (size_t)f.len;
		if (c->closing && f.op != WS_CLOSE)
			continue;	/* only the peer's close matters now */
		switch (f.op) {
		case WS_TEXT:
			if (f.fin)
				message(c, p, (size_t)f.len);
			else {
				c->frag_on = 1;
				buf_reset(&c->frag);
				buf_add(&c->frag, p, (size_t)f.len);
			}
			break;
		case WS_CONT:
			buf_add(&c->frag, p, (size_t)f.len);
			if (f.fin) {
				c->frag_on = 0;
				message(c, (unsigned char *)c->frag.p,
				    c->frag.len);
				if (c->frag.cap > KEEP_MAX)
					buf_free(&c->frag);
				else
					buf_reset(&c->frag);
			}
			break;
		case WS_CLOSE:
			close_frame_in(c, p, (size_t)f.len);
			if (c->close_sent && c->close_rcvd)
				return -1;
			break;
		case WS_PING:
			memcpy(c->pong, p, (size_t)f.len);
			c->pong_len = (unsigned char)f.len;
			c->pong_due = 1;
			lws_callback_on_writable(c->wsi);
			break;
		case WS_PONG:
			c->ping_out = 0;
			break;
		}
	}
	/* keep only what is not taken */
	if (c->in_off == c->in.len) {
		if (c->in.cap > KEEP_MAX)
			buf_free(&c->in);
		else
			buf_reset(&c->in);
		c->in_off = 0;
	} else if (c->in_off > (64u << 10) && c->in_off > c->in.len / 2) {
		memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
		c->in.len -= c->in_off;
		c->in.p[c->in.len] = '\0';
		c->in_off = 0;
	}
	return 0;
}

/* Bytes from the socket.  Returns -1 when the connection must end now. */
int
ws_rx(struct conn *c, const unsigned char *p, size_t len)
{
	c->last_rx = now_ms();
	c->ping_out = 0;	/* any traffic shows the peer is alive */
	if (c->rx_dead)
		return 0;	/* after a fault of the peer: ignore the rest */
	buf_add(&c->in, p, len);
	return process(c);
}

/* Reading resumed: take what was read before the pause. */
void
ws_resume(struct conn *c)
{
	static int busy;

	if (busy || c->in_off == c->in.len)
		return;
	busy = 1;
	if (process(c) < 0)
		conn_drop(c);
	busy = 0;
}

static void
frame_out(struct conn *c, struct buf *w, int op, const unsigned char *p,
    size_t n)
{
	unsigned char hdr[WS_HDR_MAX], mask[4];
	size_t h, at;

	if (c->outbound)
		new_mask(mask);
	h = ws_frame_header(hdr, op, 1, n, c->outbound ? mask : NULL);
	buf_add(w, hdr, h);
	at = w->len;
	buf_add(w, p, n);
	if (c->outbound)
		ws_mask((unsigned char *)w->p + at, n, mask, 0);
}

/* Append to w the handshake bytes and control frames c has to send. */
void
ws_fill_ctl(struct conn *c, struct buf *w)
{
	if (c->hs.len) {
		buf_add(w, c->hs.p, c->hs.len);
		buf_free(&c->hs);
	}
	if (c->state == S_UPGRADE || c->close_sent)
		return;
	if (c->pong_due) {
		frame_out(c, w, WS_PONG, c->pong, c->pong_len);
		c->pong_due = 0;
	}
	if (c->ping_due) {
		frame_out(c, w, WS_PING, NULL, 0);
		c->ping_due = 0;
	}
}

/* Append to w what c should write next: handshake bytes, control frames,
 * then queued messages until w holds about soft bytes, then a close frame
 * when the connection is closing and its queue is empty.  Returns the
 * bytes appended. */
size_t
ws_fill(struct conn *c, struct buf *w, size_t soft)
{
	size_t start = w->len;
	struct msg *m;

	ws_fill_ctl(c, w);
	if (c->state == S_UPGRADE || c->close_sent)
		return w->len - start;
	while (c->qn && w->len - start < soft) {
		m = conn_qat(c, 0);
		frame_out(c, w, WS_TEXT, MSG_DATA(m), m->len);
		conn_qpop(c);
	}
	ws_fill_close(c, w);
	return w->len - start;
}

/* Append to w c's close frame, once it is closing and its queue is
 * empty. */
void
ws_fill_close(struct conn *c, struct buf *w)
{
	if (c->closing && !c->qn && !c->close_sent &&
	    c->state != S_DIALING && c->state != S_UPGRADE) {
		unsigned char pl[2 + 123];
		const char *r = c->close_reason ? c->close_reason : "";
		size_t rl = strnlen(r, 123);

		/* cut a long reason between characters */
		while (rl > 0 && rl < strlen(r) &&
		    ((unsigned char)r[rl] & 0xc0) == 0x80)
			rl--;
		pl[0] = (unsigned char)(c->close_code >> 8);
		pl[1] = (unsigned char)c->close_code;
		memcpy(pl + 2, r, rl);
		frame_out(c, w, WS_CLOSE, pl, 2 + rl);
		c->close_sent = 1;
	}
}
