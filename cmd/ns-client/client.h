/*
 * ns-client, shared between its files: options, setup and main
 * (main.c), the connection, login and the send queue (conn.c), the
 * one-shot commands and their answers (cmds.c), subscriptions and their
 * history (subscribe.c), the stdin readers (input.c), and live streams
 * (stream.c).
 */
#ifndef NS_CLIENT_H
#define NS_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <jv.h>
#include <libwebsockets.h>

#include "buf.h"
#include "didkey.h"
#include "hash.h"
#include "key.h"

#define PROG		"ns-client"
#define DEFAULT_URL	"ws://127.0.0.1:7700/"
#define DEFAULT_KEY	".config/northstar/user.key"
#define MSG_MAX		(1 << 20)	/* one WebSocket message, both ways */
#define WINDOW_MAX	65536
#define SUB_MAX		256		/* subscriptions per connection */
#define INQ_MAX		16		/* stdin values read ahead */
#define PAGE		100		/* history page asked for */
#define HELD_MAX	10000		/* live events held while paging */
#define TICK_MS		100
#define CLOSE_WAIT	3.0		/* seconds for the closing handshake */
#define PROBE_MS	3000		/* at most, to find why a connect failed */
#define BUSY_TRIES	10		/* sends of a request the node calls busy */
#define BUSY_WAIT	1.0		/* seconds, when it gives no retryAfter */
#define BUSY_WAIT_MAX	10.0		/* seconds, whatever it gives */
#define PUSH_WINDOW	32		/* stream push: chunks in flight */
#define PUSH_WINDOW_MAX	64		/* a DID's share of a busy node */
#define CHUNK_DEFAULT	16384		/* stream push: raw bytes a chunk */
/* A chunk is at most 65536 bytes in canonical form.  Its members other
 * than "data" take at most 367 of them (a 64-character uniqueId, an n of
 * 16 digits, a 13-digit ts), which leaves 65169 characters of base64url:
 * 48876 bytes. */
#define CHUNK_DATA_MAX	48876
#define CHUNK_CANON_MAX	65536
#define FLUSH_MS	100		/* stream push: a part chunk waits so long */
#define RETRY_S		60		/* stream push: reconnect for so long */
#define RETRY_FIRST	0.25		/* seconds before the first reconnect */
#define RETRY_MAX	2.0		/* seconds between reconnects, at most */

enum cmd {
	C_LOGIN, C_CREATE, C_JOIN, C_LEAVE, C_INVITE, C_REMOVE, C_BEAM,
	C_HISTORY, C_MEMBERS, C_INFO, C_SUBSCRIBE, C_GET, C_DELETE, C_RPC,
	C_STREAM_PUSH, C_STREAM_WATCH
};

/* What to do with the answer to a request. */
enum kind {
	K_LOGIN, K_PRINT, K_GET, K_HISTORY, K_SUBSCRIBE, K_PAGE, K_RPC, K_BAD,
	/* stream.c's, from here on */
	K_EDGE,			/* push: stream.recent for the edge */
	K_WATCH,		/* watch: stream.watch */
	K_RECENT		/* watch: a page of stream.recent */
};

/* Connection states, in order. */
enum state {
	S_CONNECTING, S_CHALLENGE, S_LOGIN, S_READY, S_CLOSING
};

/*
 * A request in flight.  Slot i of the ring holds wire id i % cap, so a new
 * request waits while the slot it needs is busy: at most cap requests are
 * outstanding.  In every mode but rpc the answers are handled in request
 * order (msg is kept until the slots before it are done).
 */
struct slot {
	int used, answered;
	int64_t wire;
	enum kind kind;
	char method[40];
	double sent;
	jv uid;			/* rpc: the id printed back (the user's) */
	jv msg;			/* the answer, or for K_BAD the error line */
	struct buf req;		/* the request as sent, to send it again */
	int tries;		/* times sent */
	double again;		/* busy: when to send it again, else 0 */
	int sub;		/* subscribe, K_PAGE: which space */
};

/*
 * subscribe: one space followed.  With --from, the history from that seq
 * is paged in after the subscription is made; live events that come
 * meanwhile are held, and every envelope is printed once, in seq order.
 */
struct sub {
	const char *space;	/* the space id, in argv */
	enum {
		SUB_ASKED,	/* subscribe sent */
		SUB_HISTORY,	/* subscribed, paging the history */
		SUB_LIVE,	/* printing events as they come */
		SUB_OVER	/* refused, or ended by the node */
	} state;
	int want_page;		/* a history page is to be asked for */
	int64_t after;		/* the next page starts after this seq */
	int64_t last;		/* the highest seq printed */
	jv held;		/* notifications that came during the history */
	int nheld;
	int dropped;		/* held ones were dropped: page on past them */
};

struct outmsg {
	struct outmsg *next;
	size_t len;
	unsigned char data[];	/* LWS_PRE bytes, then len bytes */
};

/* One value read from stdin by the reader thread. */
struct item {
	char *p;		/* the value, NUL-terminated; NULL if bad */
	size_t len;
	unsigned long line;
	const char *bad;	/* why the value was refused (static) */
};

/* The whole run: options, the connection and what is left to do (main.c
 * defines it, as g). */
struct client {
	/* options */
	const char *url, *keyfile, *want_node;
	double timeout;
	int timeout_given, any_address, raw, quiet, verbose;
	int64_t window, after, limit, count, from;
	int64_t chunk, flush_ms;	/* stream push */
	double retry;			/* stream push: seconds, 0 never */
	const char *get_address;
	enum cmd cmd;
	char **args;
	int nargs;
	jv beam_arg;		/* beam SPACE JSON: the content */

	/* url */
	char host[256], hostport[300], path[1024];
	int port, tls;

	/* session */
	struct key *key;
	char author_hash[HASH_ID_LEN + 1];
	struct lws_context *ctx;
	struct lws *wsi;
	lws_sorted_usec_list_t sul;
	enum state state;
	jv node, address;	/* from the challenge */
	struct buf rx;
	struct outmsg *outq, **outq_tail;
	struct slot *slots;
	int64_t cap, next_wire, head, used;
	double start, closing_since;
	int quit, status;
	int close_code;
	char close_reason[124];
	int tcp_up;		/* the WebSocket handshake went out */
	int conn_failed;	/* no connection: say why after the loop */
	char cce[128];		/* libwebsockets' word for it */
	char lws_err[128];	/* its last error line */

	/* stream push: a connection that drops is made again */
	int ready_once;		/* logged in at least once */
	double down_since;	/* when it dropped; 0: up */
	double retry_at;	/* the next attempt */
	double backoff;
	char down_why[300];	/* why it dropped, for the last word */
	char pinned[DIDKEY_MAX];	/* the node's DID, from the first login */

	/* producers */
	int list_i, list_n;		/* one-shot commands, subscribe */
	int hist_state;			/* 0 want a page, 1 waiting, 2 done */
	int64_t hist_after, hist_printed;
	int stdin_used, stdin_done;
	unsigned long nread;		/* values read from stdin */
	int64_t events;			/* subscribe: events printed */
	int sub_failed;
	struct sub *subs;
	int nsubs, subs_open;		/* subs_open: not SUB_OVER */
};

extern struct client g;
extern volatile sig_atomic_t gotsig;

/* main.c */
double now_s(void);
/* Copy untrusted text for a one-line message: at most max bytes, control
 * characters replaced, not cut inside a UTF-8 sequence. */
void clean(char *out, size_t outsz, const char *s, size_t max);
/* Trouble: report it, exit 2 once the connection is closed. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The status is 1 at least: something was refused. */
void failed(void);
/* Print v (consumed) as one line and flush it at once. */
void emit(jv v);

/* conn.c */
extern const struct lws_protocols protocols[];
/* Dial the node (again).  0, or -1 when the name does not resolve. */
int conn_open(void);
void outq_push(struct buf *b);
void outq_free(void);
int slot_free_for_next(void);
struct slot *slot_take(enum kind kind, const char *method);
void slot_release(struct slot *s);
/* An error line for an input refused here (owned). */
jv bad_line(const char *code, const char *why, unsigned long line);
/* A refused input (line consumed) takes its place among the answers. */
void slot_bad(jv line);
/* Send msg (consumed, an object without "id") as a request of this kind.
 * Returns its slot, or NULL if msg cannot be sent (reported as K_BAD). */
struct slot *send_msg(jv msg, enum kind kind, const char *method,
    unsigned long line);
/* send_msg of method with params (consumed). */
struct slot *send_req(const char *method, jv params, enum kind kind);
/* ev (consumed) with author and ts set, signed by the user. */
jv sign_event(jv ev);
/* ev (consumed) with the node's DID and address from the challenge. */
jv node_fields(jv ev);
/* Close the connection (cleanly once it is up) and leave the loop. */
void begin_close(void);
/* 1 and *wait (seconds) if msg (borrowed) is a busy error; 0 otherwise. */
int busy_wait(jv msg, double *wait);
void lws_log(int level, const char *line);
/* Say why no connection was made (after the loop: it may block). */
void report_connect_failure(void);
/* Signals, timeouts and busy retries; called every tick. */
void check_times(void);
void tick(lws_sorted_usec_list_t *sul);

/* cmds.c */
/* The space id named by a bare id or a northstar:// address, or NULL. */
const char *space_id(const char *arg);
/* The space.beam params for content (consumed, an object) in space, or
 * jv_invalid_with_msg. */
jv beam_params(const char *space, jv content);
/* Send what the window allows; finish when everything is answered. */
void pump(void);
/* Say why the node refused a request (err borrowed). */
void report_error(const struct slot *s, jv err);
/* Print an envelope (consumed) the node sent, if it verifies; 0 or -1. */
int emit_envelope(jv env);
/* An answer whose turn has come.  The slot is released by the caller. */
void handle(struct slot *s);
/* Handle the answers whose turn has come, in request order. */
void drain(void);

/* subscribe.c */
void sub_over(struct sub *u);
/* --from: ask for the next history page of each space that wants one. */
void send_pages(void);
/* A subscribe result: the space is followed from now on. */
void sub_started(struct sub *u);
/* A page of the history of u (msg and res borrowed). */
void handle_page(struct sub *u, jv msg, jv res);
/* The node ended a subscription (msg borrowed). */
void on_unsubscribed(jv msg);
/* An event or chunk notification (msg borrowed). */
void on_event(jv msg, const char *method);

/* input.c */
/* 1 and *it filled, 0 if nothing is waiting, -1 at the end of stdin. */
int inq_pop(struct item *it);
/* One value from stdin, for beam or rpc. */
void send_input(struct item *it);
/* Start the thread that reads stdin: JSON values, or for stream push
 * raw chunks of g.chunk bytes at most, each sent on when full or when
 * g.flush_ms have passed since its first byte. */
void start_reader(void);
/* The loop is over: the reader stops and wakes it no more. */
void input_stop(void);

/* stream.c */
/* Parse SPACE (argv) as a stream's id and find its owner; -1 if it is
 * not one. */
int stream_setup(const char *space);
/* Send what is due: the edge or the watch, chunks, pages. */
void stream_pump(void);
/* An answer to a stream request of the ring (msg consumed). */
void stream_answer(struct slot *s, jv msg);
/* The answer to stream.push of chunk n (msg borrowed). */
void stream_push_answer(int64_t n, jv msg);
/* A notification during stream watch (msg borrowed). */
void stream_notification(jv msg, const char *method);
/* Timeouts and busy resends; every tick. */
void stream_tick(double now);
/* The connection dropped and will be made again: resend what is not in. */
void stream_conn_lost(void);
/* SIGINT or SIGTERM during push: stop reading, finish what was read.
 * 0, or -1 if it was asked already (the second signal). */
int stream_stop(void);
/* At the end: the -v summary, and memory. */
void stream_free(void);

#endif
