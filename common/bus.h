/*
 * The node's internal bus: the JSON lines that travel around the ring of
 * stages (share/doc/node.md).  Every line starts with its routing member
 * so a stage can tell its own lines from others' by a prefix compare,
 * without parsing:
 *
 *   {"m":METHOD,"c":CONN,"r":N,"did":DID,"role":ROLE,"id":ID,"p":PARAMS}
 *                                     a request (r: ns-serve's number for it)
 *   {"m":"tick","now":MS}             a timer tick
 *   {"to":CONN,"msg":MSG}             send MSG to one connection
 *   {"to":CONN,"r":N[,"msg":MSG]}     request N of CONN is done (MSG answers it)
 *   {"pub":SPACE,"msg":MSG}           send MSG to every subscriber of SPACE
 *   {"sub":CONN,"space":SPACE}        subscribe CONN to SPACE
 *   {"unsub":CONN,"space":SPACE}      and back
 *   {"close":CONN,"code":N,"reason":TEXT}
 *
 * Output functions append one '\n'-terminated line to a buffer, so a stage
 * can hold its output until a commit, and consume their jv arguments.
 */
#ifndef NS_BUS_H
#define NS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "buf.h"

/* Longest bus line any stage must read.  ns-serve keeps every request
 * line it writes well below it, and stages' own lines (a history page, a
 * beam) are far shorter. */
#define BUS_LINE_MAX	(4u << 20)

/* Protocol errors (share/doc/protocol.md, section 13). */
enum bus_err {
	E_PARSE, E_INVALID_REQUEST, E_METHOD, E_PARAMS, E_INTERNAL,
	E_UNAUTH, E_BAD_SIG, E_FORBIDDEN, E_NOT_FOUND, E_GONE, E_CONFLICT,
	E_TOO_LARGE, E_BUSY, E_BAD_EVENT, E_UNREACHABLE,
};

/* A parsed request line.  All members are owned by the struct. */
struct bus_req {
	jv line;                /* the whole line */
	const char *method;     /* points into line */
	int64_t conn;           /* -1 when absent */
	int64_t r;              /* ns-serve's request number, -1 when absent */
	const char *did;        /* authenticated DID, or NULL */
	const char *role;       /* "client", "node", or NULL */
	jv id;                  /* JSON-RPC id; jv_invalid() for a notification */
	jv params;              /* an object (empty when absent) */
};

/* 1 if the line is a request ({"m":...) whose method is exactly method,
 * or, for bus_is_prefix, starts with prefix.  Cheap: no parse. */
int bus_is(const char *p, size_t len, const char *method);
int bus_is_prefix(const char *p, size_t len, const char *prefix);
/* The method of a request line copied into out (NUL-terminated), or -1 if
 * the line is not a request or the method does not fit. */
int bus_method(const char *p, size_t len, char *out, size_t outlen);

/* Parse a request line.  0, or -1 if it is not valid JSON or not a
 * request (r is then zeroed and needs no bus_req_free). */
int bus_parse(const char *p, size_t len, struct bus_req *r);
void bus_req_free(struct bus_req *r);

/* JSON-RPC answers to request r (borrowed).  For a notification nothing
 * is sent, but ns-serve still learns that the request is done. */
void bus_result(struct buf *out, const struct bus_req *r, jv result);
void bus_error(struct buf *out, const struct bus_req *r, enum bus_err e,
    const char *message);
/* The same, with the error's data object (consumed) given in full; its
 * "reason" is filled in. */
void bus_error_data(struct buf *out, const struct bus_req *r,
    enum bus_err e, const char *message, jv data);
/* The JSON-RPC error object for e (code, message, data.reason). */
jv bus_error_object(enum bus_err e, const char *message);
/* Request r (borrowed) is done without an answer (a notification that
 * was taken, or one whose work another stage goes on with and answers). */
void bus_done(struct buf *out, const struct bus_req *r);
/* Error code and reason word of e. */
int bus_err_code(enum bus_err e);
const char *bus_err_reason(enum bus_err e);

/* Append the canonical form of v (consumed) to out ("null" if v cannot be
 * written, which no parsed value is). */
void bus_json(struct buf *out, jv v);
/* The same for the string s: bus_json(out, jv_string(s)), without making
 * a value when s needs no escape (a DID, a space id, a path). */
void bus_str(struct buf *out, const char *s);
void bus_send(struct buf *out, int64_t conn, jv msg);
void bus_publish(struct buf *out, const char *space, jv msg);
/* A JSON-RPC notification object {"jsonrpc":"2.0","method","params"}. */
jv bus_notification(const char *method, jv params);
void bus_subscribe(struct buf *out, int64_t conn, const char *space, int on);
void bus_close(struct buf *out, int64_t conn, int code, const char *reason);
/* A request line for method with params, carrying r's connection, number,
 * DID, role and id (r borrowed; NULL for none), so whoever handles it can
 * answer r's sender. */
void bus_request(struct buf *out, const char *method, const struct bus_req *r,
    jv params);
/* The same line up to its params: the caller writes them, canonical, and
 * ends the line with "}\n". */
void bus_request_head(struct buf *out, const char *method,
    const struct bus_req *r);

#endif
