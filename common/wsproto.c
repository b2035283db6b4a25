#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "sha1.h"
#include "wsproto.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int
ws_frame_parse(const unsigned char *p, size_t n, struct ws_frame *f)
{
	size_t need = 2;
	unsigned len7;

	if (n < 2)
		return 0;
	f->fin = (p[0] & 0x80) != 0;
	f->rsv = p[0] & 0x70;
	f->op = p[0] & 0x0f;
	f->masked = (p[1] & 0x80) != 0;
	len7 = p[1] & 0x7f;
	if (len7 == 126)
		need += 2;
	else if (len7 == 127)
		need += 8;
	if (f->masked)
		need += 4;
	if (n < need)
		return 0;
	if (len7 == 126)
		f->len = (uint64_t)p[2] << 8 | p[3];
	else if (len7 == 127) {
		if (p[2] & 0x80)
			return -1;
		f->len = 0;
		for (int i = 0; i < 8; i++)
			f->len = f->len << 8 | p[2 + i];
	} else
		f->len = len7;
	if (f->masked)
		memcpy(f->mask, p + need - 4, 4);
	f->hdr = need;
	return 1;
}

size_t
ws_frame_header(unsigned char out[WS_HDR_MAX], int op, int fin, uint64_t len,
    const unsigned char *mask)
{
	size_t n = 2;

	out[0] = (unsigned char)((fin ? 0x80 : 0) | (op & 0x0f));
	if (len < 126)
		out[1] = (unsigned char)len;
	else if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		n = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

void
ws_mask(unsigned char *p, size_t n, const unsigned char mask[4], size_t off)
{
	size_t i = 0;

	/* byte by byte up to a multiple of 4 of the payload offset, then a
	 * word at a time */
	for (; i < n && (off + i) % 4; i++)
		p[i] ^= mask[(off + i) % 4];
	if (n - i >= 8) {
		uint32_t m;
		memcpy(&m, mask, 4);
		for (; n - i >= 4; i += 4) {
			uint32_t w;
			memcpy(&w, p + i, 4);
			w ^= m;
			memcpy(p + i, &w, 4);
		}
	}
	for (; i < n; i++)
		p[i] ^= mask[(off + i) % 4];
}

int
ws_utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i];

		if (c < 0x80) {
			/* the common case: runs of ASCII, eight at a time */
			while (i + 8 <= n) {
				uint64_t w;
				memcpy(&w, p + i, 8);
				if (w & 0x8080808080808080ull)
					break;
				i += 8;
			}
			if (i < n && p[i] < 0x80)
				i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			if (i + 1 >= n || (p[i + 1] & 0xc0) != 0x80)
				return 0;
			i += 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			unsigned lo = c == 0xe0 ? 0xa0 : 0x80;
			unsigned hi = c == 0xed ? 0x9f : 0xbf;
			if (i + 2 >= n || p[i + 1] < lo || p[i + 1] > hi ||
			    (p[i + 2] & 0xc0) != 0x80)
				return 0;
			i += 3;
		} else if (c >= 0xf0 && c <= 0xf4) {
			unsigned lo = c == 0xf0 ? 0x90 : 0x80;
			unsigned hi = c == 0xf4 ? 0x8f : 0xbf;
			if (i + 3 >= n || p[i + 1] < lo || p[i + 1] > hi ||
			    (p[i + 2] & 0xc0) != 0x80 ||
			    (p[i + 3] & 0xc0) != 0x80)
				return 0;
			i += 4;
		} else
			return 0;
	}
	return 1;
}

int
ws_close_code_ok(unsigned code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1011) ||
	    (code >= 3000 && code <= 4999);
}

void
ws_accept_key(const char *key, size_t n, char out[WS_ACCEPT_LEN + 1])
{
	unsigned char md[SHA1_LEN];
	char buf[128];

	if (n > sizeof(buf) - sizeof(WS_GUID))
		n = sizeof(buf) - sizeof(WS_GUID);
	memcpy(buf, key, n);
	memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
	sha1(buf, n + sizeof(WS_GUID) - 1, md);
	sodium_bin2base64(out, WS_ACCEPT_LEN + 1, md, sizeof(md),
	    sodium_base64_VARIANT_ORIGINAL);
}

void
ws_new_key(char out[WS_KEY_LEN + 1])
{
	unsigned char raw[16];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, WS_KEY_LEN + 1, raw, sizeof(raw),
	    sodium_base64_VARIANT_ORIGINAL);
}

size_t
ws_http_end(const char *p, size_t n)
{
	const char *e = memmem(p, n, "\r\n\r\n", 4);

	return e ? (size_t)(e - p) + 4 : 0;
}

/* 1 if the comma-separated token list v[0..n) holds tok, ignoring case. */
static int
has_token(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok), i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
			return 1;
	}
	return 0;
}

/* Walk the header lines after the first: for each, name and value with
 * the value's surrounding blanks trimmed.  Returns the next line. */
static const char *
next_header(const char *p, const char *end, const char **name, size_t *nl,
    const char **val, size_t *vl)
{
	const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2), *colon;

	if (!eol || eol == p)
		return NULL;
	colon = memchr(p, ':', (size_t)(eol - p));
	if (!colon) {
		*name = NULL;
		return eol + 2;
	}
	*name = p;
	*nl = (size_t)(colon - p);
	colon++;
	while (colon < eol && (*colon == ' ' || *colon == '\t'))
		colon++;
	*val = colon;
	*vl = (size_t)(eol - colon);
	while (*vl && ((*val)[*vl - 1] == ' ' || (*val)[*vl - 1] == '\t'))
		(*vl)--;
	return eol + 2;
}

static int
name_is(const char *name, size_t nl, const char *want)
{
	return name && nl == strlen(want) && strncasecmp(name, want, nl) == 0;
}

int
ws_request_parse(const char *p, size_t n, struct ws_request *r,
    const char **why)
{
	const char *end = p + n, *eol, *sp1, *sp2, *name, *val, *q;
	size_t nl, vl;

	memset(r, 0, sizeof(*r));
	r->version = -1;
	eol = memmem(p, n, "\r\n", 2);
	if (!eol) {
		*why = "no request line";
		return -1;
	}
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || (size_t)(eol - sp2 - 1) != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		*why = "not an HTTP/1.x request line";
		return -1;
	}
	r->get = sp1 - p == 3 && memcmp(p, "GET", 3) == 0 && sp2[8] == '1';
	r->path = sp1 + 1;
	r->pathlen = (size_t)(sp2 - sp1 - 1);
	for (q = eol + 2; q && q < end;) {
		q = next_header(q, end, &name, &nl, &val, &vl);
		if (!q)
			break;
		if (name_is(name, nl, "upgrade"))
			r->upgrade = has_token(val, vl, "websocket");
		else if (name_is(name, nl, "connection"))
			r->connection = has_token(val, vl, "upgrade");
		else if (name_is(name, nl, "sec-websocket-key")) {
			r->key = val;
			r->keylen = vl;
		} else if (name_is(name, nl, "sec-websocket-version"))
			r->version = vl == 2 && memcmp(val, "13", 2) == 0 ? 13 : 0;
	}
	return 0;
}

int
ws_response_check(const char *p, size_t n, const char *key, const char **why)
{
	const char *end = p + n, *q, *name, *val;
	char want[WS_ACCEPT_LEN + 1];
	size_t nl, vl;
	int upgrade = 0, connection = 0, accept = 0;

	if (n < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0) {
		*why = "not an HTTP/1.1 response";
		return -1;
	}
	if (memcmp(p + 9, "101", 3) != 0) {
		*why = "the server did not switch to WebSocket";
		return -1;
	}
	ws_accept_key(key, strlen(key), want);
	q = memmem(p, n, "\r\n", 2);
	for (q = q ? q + 2 : end; q && q < end;) {
		q = next_header(q, end, &name, &nl, &val, &vl);
		if (!q)
			break;
		if (name_is(name, nl, "upgrade"))
			upgrade = has_token(val, vl, "websocket");
		else if (name_is(name, nl, "connection"))
			connection = has_token(val, vl, "upgrade");
		else if (name_is(name, nl, "sec-websocket-accept"))
			accept = vl == WS_ACCEPT_LEN &&
			    memcmp(val, want, WS_ACCEPT_LEN) == 0;
		else if (name_is(name, nl, "sec-websocket-extensions") ||
		    name_is(name, nl, "sec-websocket-protocol")) {
			*why = "the server chose an extension or subprotocol "
			    "that was not asked for";
			return -1;
		}
	}
	if (!upgrade || !connection) {
		*why = "the server's answer is not a WebSocket upgrade";
		return -1;
	}
	if (!accept) {
		*why = "Sec-WebSocket-Accept does not match the key";
		return -1;
	}
	return 0;
}
