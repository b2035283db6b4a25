/*
 * ns-serve, shared between its files: the connection table (conn.c), the
 * WebSocket layer (ws.c), logins (login.c), dialing (dial.c), messages from
 * peers (rpc.c), the bus on stdin and stdout (ring.c), subscriptions
 * (subs.c) and setup and the loop (main.c).
 */
#ifndef NS_SERVE_H
#define NS_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>
#include <libwebsockets.h>

#include "buf.h"
#include "bus.h"
#include "didkey.h"
#include "b64url.h"
#include "key.h"
#include "wsproto.h"

#define PROG		"ns-serve"

#define NONCE_LEN	32
#define NONCE_B64	B64URL_LEN(NONCE_LEN)
#define SKEW_MS		(5 * 60 * 1000)
#define SUBS_MAX	256		/* subscriptions per connection */
#define LOGIN_FAILS_MAX	3		/* then the connection is closed */
#define LOGIN_MSG_MAX	16384		/* largest message before login */
#define ID_MAX		256		/* longest string id, in bytes */
#define OUT_HIGH	(8u << 20)	/* stdout backlog: pause WS reading */
#define OUT_LOW		(1u << 20)	/* and resume below this */
#define KEEP_MAX	(256u << 10)	/* idle buffers larger than this go */
#define READ_CHUNK	(64u << 10)
#define WRITE_CHUNK	(64u << 10)	/* bytes copied for lws_write at once */
#define WRITEV_MAX	(256u << 10)	/* bytes in one writev() (about) */
#define WRITE_IOV	256		/* and frames at most */
#define QUOTE		80		/* untrusted bytes quoted at most */
#define SHUTDOWN_MS	3000		/* to close peers and flush stdout */
#define CLOSE_WAIT_MS	2000		/* for the peer's close frame */
#define SLOW_KILL_S	3		/* a closed slow reader is cut after */
#define BUSY_RETRY_MS	100		/* the retry hint of a busy answer */
#define BIG_INFLIGHT	16		/* requests of one connection in the node
					 * whose answer may be large (a history or
					 * sync page, a beam): their answers must fit
					 * in --max-queue of a client that reads */
#define CLOSE_TRY_AGAIN	1013

enum state {
	S_DIALING,		/* outbound: TCP connect in progress */
	S_UPGRADE,		/* opening handshake in progress (either way) */
	S_CHALLENGE,		/* outbound: waiting for auth.challenge */
	S_LOGIN_SENT,		/* outbound: waiting for the login answer */
	S_NEW,			/* inbound: challenge sent, not logged in */
	S_AUTH,			/* logged in (either way) */
	S_REJECTED,		/* inbound over a limit, being closed */
};

/*
 * One outgoing text message, shared by every connection it goes to.  The
 * header of its unmasked frame, which is what a server sends, is made once
 * and sits right before the payload: frame bytes go to the socket as they
 * are.  A dialed connection masks its frames, so it copies them.
 */
struct msg {
	unsigned refs;
	unsigned char hlen;		/* the frame header's length */
	size_t len;			/* the payload's */
	unsigned char buf[];		/* WS_HDR_MAX bytes, the payload */
};
#define MSG_DATA(m)	((m)->buf + WS_HDR_MAX)
#define MSG_FRAME(m)	((m)->buf + WS_HDR_MAX - (m)->hlen)
#define MSG_FRAME_LEN(m) ((m)->hlen + (m)->len)

struct sub;

/* A logged-in DID: its connections and requests in the node. */
struct acct {
	struct acct *next;
	unsigned conns, inflight;
	unsigned busy;			/* connections with requests in the node */
	char did[DIDKEY_MAX];
};

/* A request of a connection that the node has not finished yet. */
struct infl {
	int64_t r;		/* the bus request number; 0 for a free slot */
	int64_t deadline;	/* ms */
	char *id;		/* the JSON-RPC id, canonical; NULL: none */
	int big;		/* its answer may be large */
};

struct conn {
	struct lws *wsi;
	int64_t id;			/* 0 for a rejected connection */
	struct conn *next, *prev;	/* every connection */
	struct conn *hnext;		/* id hash chain */

	/* WebSocket */
	struct buf in;			/* received, not yet taken */
	size_t in_off;
	struct buf frag;		/* the message being reassembled */
	unsigned char frag_on;		/* a fragmented message is open */
	unsigned char close_sent, close_rcvd, pong_due, ping_due;
	unsigned char ping_out;		/* a ping of ours is unanswered */
	unsigned char rx_dead;		/* input is ignored from now on */
	unsigned char pong_len;
	unsigned char pong[WS_CTL_MAX];
	int64_t last_rx;		/* ms */
	int64_t close_deadline;		/* ms; 0: not waiting */
	int64_t login_deadline;		/* ms */
	char wskey[WS_KEY_LEN + 1];	/* outbound: the key we sent */
	struct buf hs;			/* handshake bytes to send first */

	/* queue of outgoing messages: a ring of qcap (a power of 2) slots,
	 * qn of them used from qfirst on */
	struct msg **q;
	unsigned qcap, qfirst, qn;
	size_t qbytes;			/* their payload bytes */
	size_t qoff;			/* bytes of the first one's frame sent */
	struct buf out;			/* control frames, the handshake */
	size_t out_off;			/* bytes of out sent */

	/* Northstar */
	struct sub *subs;
	struct acct *acct;		/* once logged in */
	struct infl *infl;		/* max_inflight slots, once needed */
	unsigned ninfl;
	unsigned nbig;			/* of them, with large answers */
	char *url;			/* outbound: what was dialed */
	char *expect;			/* outbound: the node DID expected */
	char *close_reason;
	unsigned short nsubs;
	unsigned short close_code;
	unsigned char state;
	unsigned char outbound;
	unsigned char node_role;	/* logged in as "node" */
	unsigned char closing;		/* close once the queue is sent */
	unsigned char fails;		/* failed logins */
	unsigned char reported;		/* conn.fail written */
	unsigned char paused;		/* why reading is paused, a bit mask */
	char did[DIDKEY_MAX];
	char nonce[NONCE_B64 + 1];	/* "" once used */
	int64_t rate_start;		/* node links: this second's start, ms */
	size_t rate_n;			/* and the messages in it */
};

/* conn->paused bits */
#define PAUSE_OUT	1	/* stdout is behind */
#define PAUSE_INFL	2	/* the connection's requests fill its slots */

/* Options (main.c). */
extern char *address;
extern size_t max_conn, max_msg, max_queue, max_inflight, max_did_inflight,
    max_did_conn, line_max, max_node_rate;
extern int login_timeout, tick_ms, ping_s, request_timeout;
extern int wss_dial;

extern struct key *nodekey;
extern struct lws_context *ctx;
extern struct lws_vhost *vhost, *dial_vhost;
extern struct lws *stdout_wsi;
extern int shutting, destroying;

/* Connections (conn.c). */
extern struct conn *conns;
extern size_t n_inbound, n_outbound;
extern int64_t next_id;
extern int rx_paused;
void conn_table_init(size_t nconn);
struct conn *conn_new(struct lws *wsi, int outbound, int numbered);
struct conn *conn_find(int64_t id);
void conn_gone(struct lws *wsi, struct conn *c, const char *why);
void conn_close(struct conn *c, int code, const char *reason, int now);
void conn_drop(struct conn *c);
void conn_queue(struct conn *c, struct msg *m);
void conn_qpop(struct conn *c);
struct msg *msg_new(const char *p, size_t len);
void msg_unref(struct msg *m);
void send_jv(struct conn *c, jv v);
void send_error(struct conn *c, jv id, enum bus_err e, const char *message);
void send_error_data(struct conn *c, jv id, enum bus_err e,
    const char *message, jv data);
void send_result(struct conn *c, jv id, jv result);
void conn_pause(struct conn *c, int why, int on);
void rx_pause_all(int pause);
int conn_writeable(struct conn *c);
void conn_tick(int64_t now);
int64_t infl_add(struct conn *c, jv id, int big);
void infl_done(struct conn *c, int64_t r);
int infl_full(const struct conn *c);
struct acct *acct_get(const char *did);
void acct_release(struct conn *c);
size_t acct_count(void);
void acct_active(struct acct *a, int64_t now);
int acct_contended(const struct acct *a, int64_t now);
void conn_stats(size_t *clients, size_t *nodes, size_t *subs, size_t *infl);
int conn_answer_ok(struct conn *c, int64_t r);
void conn_free_buffers(void);

/* The WebSocket layer (ws.c). */
int ws_rx(struct conn *c, const unsigned char *p, size_t len);
void ws_resume(struct conn *c);
void ws_client_hello(struct conn *c, const char *host, int port,
    const char *path);
size_t ws_fill(struct conn *c, struct buf *w, size_t soft);
void ws_fill_ctl(struct conn *c, struct buf *w);
void ws_fill_close(struct conn *c, struct buf *w);
void ws_http_refuse(struct conn *c, int status, const char *text);

/* Logins (login.c). */
void send_challenge(struct conn *c);
void do_login(struct conn *c, jv msg, jv id);
void dial_step(struct conn *c, jv msg);

/* Dialing (dial.c). */
void dial(const char *url, const char *expect);
void dial_fail(struct conn *c, const char *reason);
void dial_forget(struct conn *c);

/* Messages from peers (rpc.c). */
void handle_msg(struct conn *c, const char *p, size_t len);

/* The bus (ring.c). */
extern struct buf obuf;
void out_flush(void);
void out_writeable(void);
int out_blocked(void);
size_t out_pending(void);
void out_line_done(void);
void out_json(jv v);
void out_final(int ms);
void emit_conn_open(struct conn *c);
void emit_conn_fail(struct conn *c, const char *reason);
void emit_conn_close(struct conn *c);
void stdin_lines(size_t from);
int stdin_read(void);
void warn_line(const char *what, const char *p, size_t len);
extern struct buf inl;
extern int stdin_eof;

/* Subscriptions (subs.c). */
void subscribe(struct conn *c, const char *name);
void unsubscribe(struct conn *c, const char *name);
void subs_drop(struct conn *c);
void subs_publish(const char *name, size_t n, const char *m, size_t mlen);
void subs_resync(void);
void subs_free_all(void);

int64_t now_ms(void);

/* The k-th message in c's queue (k < c->qn). */
static inline struct msg *
conn_qat(const struct conn *c, unsigned k)
{
	return c->q[(c->qfirst + k) & (c->qcap - 1)];
}

#endif
