/* SHA-1 (FIPS 180-4), for the one place the protocol needs it: the
 * WebSocket handshake's Sec-WebSocket-Accept (RFC 6455 section 4.2.2).
 * Never use it for anything that must resist collisions. */
#ifndef NS_SHA1_H
#define NS_SHA1_H

#include <stddef.h>

#define SHA1_LEN 20

/* The digest of n bytes at p.  Cannot fail. */
void sha1(const void *p, size_t n, unsigned char out[SHA1_LEN]);

#endif
