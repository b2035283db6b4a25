/*
 * ns-client: stdin, for beam, rpc and stream push.  A thread blocks in
 * read() and hands each JSON value (or for stream push, each chunk of raw
 * bytes) to the loop through a small queue; the loop turns each into a
 * request.  While the queue is full the thread reads no more, so a full
 * window holds stdin back.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "canon.h"
#include "jsonin.h"
#include "jsonl.h"
#include "msg.h"
#include "client.h"

/* stdin is read by a thread that blocks in read(); the loop takes values
 * from this small queue, so stdin never stalls the WebSocket. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item q[INQ_MAX];
	size_t head, n;
	int eof, err;		/* err: errno of a failed read */
	int closed;		/* the loop is gone: no more wake-ups */
	struct lws_context *ctx;
} inq = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* Hand it (consumed) to the loop, or with eof the end of stdin and err
 * (errno of a failed read, or 0), waiting while the queue is full.  0, or
 * -1 if the loop is gone. */
static int
inq_put(struct item *it, int eof, int err)
{
	pthread_mutex_lock(&inq.mu);
	while (!eof && inq.n == INQ_MAX && !inq.closed)
		pthread_cond_wait(&inq.cv, &inq.mu);
	if (inq.closed) {
		pthread_mutex_unlock(&inq.mu);
		free(it ? it->p : NULL);
		return -1;
	}
	if (eof) {
		inq.eof = 1;
		inq.err = err;
	} else
		inq.q[(inq.head + inq.n++) % INQ_MAX] = *it;
	/* under the lock, so the loop cannot destroy ctx meanwhile */
	lws_cancel_service(inq.ctx);
	pthread_mutex_unlock(&inq.mu);
	return 0;
}

static void *
reader(void *arg)
{
	struct jsonin in;
	struct item it;
	char *p;
	size_t len;
	unsigned long line;
	const char *why;
	int r, eof = 0, err = 0;

	(void)arg;
	jsonin_init(&in, STDIN_FILENO, MSG_MAX);
	while (!eof) {
		memset(&it, 0, sizeof(it));
		r = jsonin_next(&in, &p, &len, &line, &why);
		if (r == JSONIN_EOF || r == JSONIN_ERROR) {
			err = r == JSONIN_ERROR ? errno : 0;
			eof = 1;
		} else if (r == JSONIN_BAD) {
			it.bad = why;
			it.line = line;
		} else {
			it.p = xmalloc(len + 1);
			memcpy(it.p, p, len);
			it.p[len] = '\0';
			it.len = len;
			it.line = line;
		}
		if (inq_put(eof ? NULL : &it, eof, err) != 0)
			break;
	}
	jsonin_free(&in);
	return NULL;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The len bytes at p, as one chunk, to the loop.  0, or -1 if the loop is
 * gone. */
static int
raw_put(const char *p, size_t len)
{
	struct item it;

	memset(&it, 0, sizeof(it));
	it.p = xmalloc(len);
	memcpy(it.p, p, len);
	it.len = len;
	return inq_put(&it, 0, 0);
}

/* stream push: stdin's bytes in chunks of g.chunk bytes at most.  A chunk
 * goes when it is full, or when g.flush_ms have passed since its first
 * byte came: then what can be read at once goes with it, and no more, so
 * that bytes that trickle in wait no longer than that. */
static void *
raw_reader(void *arg)
{
	struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
	size_t cap = (size_t)g.chunk, len = 0;
	char *b = xmalloc(cap);
	int64_t first = 0, left;
	ssize_t n;
	int r, due, err = 0;

	(void)arg;
	for (;;) {
		due = 0;
		if (len > 0) {
			left = first + g.flush_ms - mono_ms();
			r = poll(&pfd, 1, left > 0 ? (int)left : 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				err = errno;
				break;
			}
			if (r == 0) {		/* nothing more came in time */
				if (raw_put(b, len) != 0)
					goto out;
				len = 0;
				continue;
			}
			due = left <= 0;
		}
		n = read(STDIN_FILENO, b + len, cap - len);
		if (n < 0 && errno == EAGAIN) {
			/* a non-blocking stdin: wait for it here */
			poll(&pfd, 1, len > 0 ? 1 : -1);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		if (len == 0)
			first = mono_ms();
		len += (size_t)n;
		if (len == cap || due || mono_ms() >= first + g.flush_ms) {
			if (raw_put(b, len) != 0)
				goto out;
			len = 0;
		}
	}
	/* what was read before the end (or an error) still goes */
	if (len > 0 && raw_put(b, len) != 0)
		goto out;
	inq_put(NULL, 1, err);
out:
	free(b);
	return NULL;
}

/* 1 and *it filled, 0 if nothing is waiting, -1 at the end of stdin. */
int
inq_pop(struct item *it)
{
	int r = 0;

	pthread_mutex_lock(&inq.mu);
	if (inq.n > 0) {
		*it = inq.q[inq.head];
		inq.head = (inq.head + 1) % INQ_MAX;
		inq.n--;
		pthread_cond_signal(&inq.cv);
		r = 1;
	} else if (inq.eof) {
		r = -1;
		if (inq.err) {
			errno = inq.err;
			inq.err = 0;
			fatal("stdin:");
		}
	}
	pthread_mutex_unlock(&inq.mu);
	return r;
}

/* One value from stdin, for beam or rpc. */
void
send_input(struct item *it)
{
	const char *method;
	char why[80];
	struct slot *s;
	jv v, msg, uid;

	g.nread++;
	if (!it->p) {
		slot_bad(bad_line("parse_error", it->bad, it->line));
		return;
	}
	v = canon_parse(it->p, it->len);
	if (!jv_is_valid(v)) {
		jv m = jv_invalid_get_msg(v);
		clean(why, sizeof(why), jv_get_kind(m) == JV_KIND_STRING ?
		    jv_string_value(m) : "not JSON", 72);
		jv_free(m);
		slot_bad(bad_line("parse_error", why, it->line));
		return;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		slot_bad(bad_line("bad_input", "not a JSON object", it->line));
		return;
	}
	if (g.cmd == C_BEAM) {
		msg = beam_params(space_id(g.args[0]), v);
		if (!jv_is_valid(msg)) {
			jv_free(msg);
			slot_bad(bad_line("bad_input", "cannot sign the beam",
			    it->line));
			return;
		}
		send_msg(JV_OBJECT(jv_string("method"),
		    jv_string("space.beam"), jv_string("params"), msg),
		    K_PRINT, "space.beam", it->line);
		return;
	}
	method = jsonl_str(v, "method");
	if (!method) {
		jv_free(v);
		slot_bad(bad_line("bad_input", "no \"method\" string",
		    it->line));
		return;
	}
	uid = jsonl_has(v, "id") ? jsonl_get(v, "id") : jv_number(g.nread);
	clean(why, sizeof(why), method, 39);
	if ((s = send_msg(v, K_RPC, why, it->line)))
		s->uid = uid;
	else
		jv_free(uid);
}

void
start_reader(void)
{
	pthread_t t;
	sigset_t all, old;
	int e;

	inq.ctx = g.ctx;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e = pthread_create(&t, NULL, g.cmd == C_STREAM_PUSH ? raw_reader :
	    reader, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		errno = e;
		die("pthread_create:");
	}
	pthread_detach(t);
}

void
input_stop(void)
{
	pthread_mutex_lock(&inq.mu);
	inq.closed = 1;
	pthread_cond_signal(&inq.cv);
	pthread_mutex_unlock(&inq.mu);
}
