/*
 * Words for a connection to a node that failed: each cause as one phrase,
 * "what went wrong: the likely fix", so that every program that dials a
 * node (ns-client, ns-serve's dials) says the same thing about it.
 *
 * libwebsockets 4.1 says little: LWS_CALLBACK_CLIENT_CONNECTION_ERROR
 * brings "Unable to connect" for a refused, unreachable or timed-out
 * connect alike (the errno is gone by then), and a name that does not
 * resolve makes lws_client_connect_via_info() return NULL with no callback
 * at all.  neterr_probe() finds the cause itself.
 */
#ifndef NS_NETERR_H
#define NS_NETERR_H

#include <stddef.h>

enum neterr {
	NETERR_OTHER,		/* no better words: say what came */
	NETERR_CONNECT,		/* connect failed, cause unknown */
	NETERR_REFUSED,		/* nothing listens at that port */
	NETERR_NOHOST,		/* the name does not resolve */
	NETERR_DNS,		/* the name could not be looked up now */
	NETERR_UNREACHABLE,	/* no route to the host or its network */
	NETERR_TIMEOUT,		/* no answer in time */
	NETERR_TLS,		/* the TLS handshake failed */
	NETERR_HANDSHAKE,	/* an answer, but no WebSocket upgrade */
	NETERR_DROPPED,		/* closed before the WebSocket was up */
};

/* The whole phrase for e, "connection refused: is the node running? ...";
 * its two halves, "connection refused" and "is the node running? ...". */
const char *neterr_str(enum neterr e);
const char *neterr_what(enum neterr e);
const char *neterr_hint(enum neterr e);

/* The cause named by the text libwebsockets 4.1 passes with
 * LWS_CALLBACK_CLIENT_CONNECTION_ERROR (NULL allowed): NETERR_CONNECT for
 * "Unable to connect", NETERR_OTHER for text it does not know. */
enum neterr neterr_from_lws(const char *in);
/* The cause named by an errno value of connect(2) or SO_ERROR, or by a
 * getaddrinfo(3) return value. */
enum neterr neterr_from_errno(int err);
enum neterr neterr_from_gai(int rc);

/* Why host:port cannot be reached: resolve it and try a TCP connect to
 * each address, for ms milliseconds in all.  Returns the most telling
 * cause (refused before unreachable before timeout), or -1 when a
 * connection could be made after all.  Blocks: for a program whose
 * connection has already failed, never inside an event loop. */
int neterr_probe(const char *host, int port, int ms);

/* Phrases for what goes wrong once the connection is up, written into out
 * (n bytes, cut if need be).  The arguments are untrusted text from the
 * peer and are cut and cleaned here: 80 bytes at most, no control
 * characters.
 *
 * neterr_closed: the node closed with code (0: no close frame) and reason.
 * neterr_login: the node refused the login with the error's data.reason
 * and message (either may be NULL); the fix it names is the key, or the
 * clock when the message speaks of one.
 * neterr_wrong_node: the challenge is signed by got, not by want.
 * neterr_wrong_address: the challenge names got, not the address dialed. */
void neterr_closed(char *out, size_t n, int code, const char *reason);
void neterr_login(char *out, size_t n, const char *reason,
    const char *message);
void neterr_wrong_node(char *out, size_t n, const char *got,
    const char *want);
void neterr_wrong_address(char *out, size_t n, const char *got);

#endif
