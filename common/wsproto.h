/* The parts of RFC 6455 (WebSocket) that do not depend on a connection:
 * the opening handshake's headers and accept key, frame headers, masking,
 * and the checks a receiver owes the sender (UTF-8, close codes).  The
 * connection state machines live with the programs that run them. */
#ifndef NS_WSPROTO_H
#define NS_WSPROTO_H

#include <stddef.h>
#include <stdint.h>

#define WS_HDR_MAX	14	/* 2 + 8 length + 4 mask */
#define WS_CTL_MAX	125	/* control frame payload limit */
#define WS_ACCEPT_LEN	28	/* base64 of a SHA-1 */
#define WS_KEY_LEN	24	/* base64 of 16 bytes */
#define WS_HTTP_MAX	8192	/* longest opening handshake accepted */

enum ws_op {
	WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2,
	WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10,
};

struct ws_frame {
	int fin, rsv, op, masked;
	uint64_t len;		/* payload length */
	unsigned char mask[4];
	size_t hdr;		/* header length */
};

/* Decode the frame header at p[0..n).  Returns 1 with f filled when the
 * whole header is there, 0 when more bytes are needed, -1 when the 64-bit
 * length has its top bit set (RFC 6455 5.2).  Checks nothing else. */
int ws_frame_parse(const unsigned char *p, size_t n, struct ws_frame *f);

/* Write the header of a frame with opcode op and payload length len into
 * out; masked with mask unless mask is NULL.  Returns the header length.
 * Cannot fail. */
size_t ws_frame_header(unsigned char out[WS_HDR_MAX], int op, int fin,
    uint64_t len, const unsigned char *mask);

/* XOR n bytes at p with mask, the first byte being at offset off of the
 * payload (masking and unmasking are the same). */
void ws_mask(unsigned char *p, size_t n, const unsigned char mask[4],
    size_t off);

/* 1 if p[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), else 0. */
int ws_utf8_ok(const unsigned char *p, size_t n);

/* 1 if a peer may send code in a close frame (RFC 6455 7.4), else 0. */
int ws_close_code_ok(unsigned code);

/* Sec-WebSocket-Accept for the key (n bytes) into out, NUL-terminated. */
void ws_accept_key(const char *key, size_t n, char out[WS_ACCEPT_LEN + 1]);

/* A fresh random Sec-WebSocket-Key into out, NUL-terminated. */
void ws_new_key(char out[WS_KEY_LEN + 1]);

/* The opening handshake of a client, parsed from the header block p[0..n)
 * that ends with the empty line.  Pointers point into p. */
struct ws_request {
	const char *path, *key;
	size_t pathlen, keylen;
	int get;		/* method GET, HTTP/1.1 */
	int upgrade;		/* Upgrade: websocket */
	int connection;		/* Connection: ... upgrade ... */
	int version;		/* Sec-WebSocket-Version, or -1 */
};

/* Parse a request.  0, or -1 when it is not an HTTP/1.x request at all
 * (*why says how).  A well-formed request that is not a WebSocket
 * upgrade parses, with the members saying what is missing. */
int ws_request_parse(const char *p, size_t n, struct ws_request *r,
    const char **why);

/* Check the server's answer p[0..n) (the header block) to a handshake sent
 * with key.  0, or -1 with *why. */
int ws_response_check(const char *p, size_t n, const char *key,
    const char **why);

/* The length of the header block at p[0..n) including its final empty
 * line, or 0 if it is not complete yet. */
size_t ws_http_end(const char *p, size_t n);

#endif
