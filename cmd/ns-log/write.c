/*
 * The requests that write: an event for a space (space.create, space.join,
 * ...; log.append from a stage), a beam with its ref (space.beam) and a
 * tombstone (beam.delete).  ns-log decides each against the space's rules
 * before anything is stored anywhere: the beam of a refused ref never
 * reaches ns-beam, and an accepted one goes on to it as beam.store with
 * the answer, so that the author is answered once both are durable.
 */
#include <stdio.h>
#include <string.h>

#include "canon.h"
#include "event.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"

static jv
space_address(const struct space *sp)
{
	return jv_string_fmt("northstar://%s/%s", sp->address, sp->id);
}

/* What space.create answers and space.info starts from: id, type, name,
 * ownerDid, nodeAddress, address. */
jv
space_json(const struct space *sp)
{
	jv res = jv_object_set(jv_object(), jv_string("id"), jv_string(sp->id));

	res = jv_object_set(res, jv_string("type"),
	    jv_string(sptype_names[sp->type]));
	res = jv_object_set(res, jv_string("name"), jv_string(sp->name));
	res = jv_object_set(res, jv_string("ownerDid"), jv_string(sp->owner));
	res = jv_object_set(res, jv_string("nodeAddress"),
	    jv_string(sp->address));
	return jv_object_set(res, jv_string("address"), space_address(sp));
}

static jv
event_result(const struct space *sp, const struct evinfo *ei, int64_t seq)
{
	jv res;

	if (ei->type == T_CREATE)
		res = space_json(sp);
	else
		res = jv_object_set(jv_object(), jv_string("space"),
		    jv_string(sp->id));
	res = jv_object_set(res, jv_string("seq"), jv_number((double)seq));
	res = jv_object_set(res, jv_string("eventId"), jv_string(ei->id));
	if (ei->type == T_REF)
		res = jv_object_set(res, jv_string("beam"), jv_string(ei->beam));
	return res;
}

/* The envelope just appended (its text is in L->body) to every
 * subscriber of sp. */
void
publish(struct log *L, const struct space *sp, struct buf *out)
{
	/* msg is {"jsonrpc","method","params"}, already in canonical order */
	buf_adds(out, "{\"pub\":");
	bus_str(out, sp->id);
	buf_adds(out, ",\"msg\":{\"jsonrpc\":\"2.0\",\"method\":\"event\","
	    "\"params\":");
	buf_add(out, L->body.p, L->body.len);
	buf_adds(out, "}}\n");
}

/*
 * Sequence the checked event ev (borrowed; ei describes it) in its space
 * at time now.  *spp is the space and *seq the event's seq.  SEQ_NEW when
 * it was appended (its envelope's text in L->body), SEQ_DUP when the space
 * holds it already, SEQ_REFUSED with *e and *why, SEQ_FAILED on a database
 * failure (L->failed is set).
 */
int
sequence(struct log *L, jv ev, const struct evinfo *ei, int64_t now,
    struct space **spp, int64_t *seq, enum bus_err *e, const char **why)
{
	struct space *sp;
	int err, rc;

	*spp = sp = space_find(L, ei->space, &err);
	if (err)
		goto failed;
	if (sp) {
		/* the same event again: the first answer, nothing new */
		if ((rc = q(L, S_ENV_DUP, "tit", sp->id, ei->ts, ei->id)) < 0)
			goto failed;
		if (rc == 1) {
			*seq = sqlite3_column_int64(L->st[S_ENV_DUP], 0);
			rst(L, S_ENV_DUP);
			return SEQ_DUP;
		}
	}
	if (ei->type == T_CREATE && sp) {
		*e = E_CONFLICT;
		*why = "the space exists already";
		return SEQ_REFUSED;
	}
	if (ei->type != T_CREATE && !sp) {
		*e = E_NOT_FOUND;
		*why = "no such space";
		return SEQ_REFUSED;
	}
	if (sp && strcmp(sp->node, L->node) != 0) {
		*e = E_FORBIDDEN;
		*why = "this node does not own the space";
		return SEQ_REFUSED;
	}
	if (admit(L, sp, ei, e, why) != 0)
		return *e == E_INTERNAL ? SEQ_FAILED : SEQ_REFUSED;
	if (apply(L, &sp, ei) != 0 || (*seq = append(L, sp, ev, ei->id,
	    ei->ts, now)) < 0)
		goto failed;
	*spp = sp;
	return SEQ_NEW;
failed:
	L->failed = 1;
	return SEQ_FAILED;
}

/* The checks ns-verify makes, for an event whose line does not spell
 * "sig" (an escaped member name): 0, or -1 with the request answered. */
static int
verify_here(struct log *L, const struct bus_req *r, jv ev, const char *author,
    struct buf *out)
{
	const char *why;
	int rc;

	if ((rc = event_verify(ev, &L->scratch, &why)) != 0) {
		bus_error(out, r, rc == EVENT_BAD_SIG ? E_BAD_SIG : E_BAD_EVENT,
		    why);
		return -1;
	}
	if (r->role && (!r->did || strcmp(r->did, author) != 0) &&
	    strcmp(r->method, "log.append") != 0) {
		bus_error(out, r, E_FORBIDDEN,
		    "a connection may only submit its own events");
		return -1;
	}
	return 0;
}

/*
 * unchecked: the raw line does not spell "sig", so ns-verify, which looks
 * for that spelling, has not checked the event (an escaped member name
 * such as "\u0073ig" is still a "sig"): then it is checked here.
 */
void
handle_event(struct log *L, const struct bus_req *r, const char *method,
    const struct raw *raw, int unchecked, int64_t now, struct buf *out)
{
	jv ev = jsonl_get(r->params, "event");
	const char *pspace = NULL, *type, *why;
	struct evinfo ei;
	struct space *sp;
	enum bus_err e;
	int64_t seq;
	int err, rc;

	if (jsonl_has(r->params, "space") &&
	    !(pspace = sget(r->params, "space"))) {
		bus_error(out, r, E_PARAMS, "params.space must be a space id");
		goto out;
	}
	/* the method names the event type, but for log.append */
	if (method && jv_get_kind(ev) == JV_KIND_OBJECT &&
	    (!(type = sget(ev, "type")) || strcmp(type, method) != 0)) {
		bus_error(out, r, E_BAD_EVENT,
		    "event type does not match the method");
		goto out;
	}
	if (check_event(L, ev, &raw->event, pspace, now, &ei, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	if (unchecked && verify_here(L, r, ev, ei.author, out) != 0)
		goto out;
	if (method && ei.type == T_JOIN && (strcmp(ei.node, L->node) != 0 ||
	    strcmp(ei.address, L->address) != 0)) {
		bus_error(out, r, E_BAD_EVENT,
		    "a join sent to this node must name this node and address");
		goto out;
	}
	if (ei.type == T_CREATE && strcmp(ei.node, L->node) != 0) {
		bus_error(out, r, E_BAD_EVENT, "node is not this node");
		goto out;
	}
	if (ei.type == T_CREATE && strcmp(ei.address, L->address) != 0) {
		bus_error(out, r, E_BAD_EVENT, "address is not this node's address");
		goto out;
	}
	/* a client's event for a space another node owns goes there */
	if (method && (sp = space_find(L, ei.space, &err), !err) &&
	    !owns(L, sp) && !(ei.type == T_CREATE && !sp)) {
		if (sp && (rc = q(L, S_ENV_DUP, "tit", sp->id, ei.ts,
		    ei.id)) == 1) {
			seq = sqlite3_column_int64(L->st[S_ENV_DUP], 0);
			rst(L, S_ENV_DUP);
			bus_result(out, r, event_result(sp, &ei, seq));
		} else
			submit_remote(L, r, ev, &ei, sp, NULL, out);
		goto out;
	}
	switch (sequence(L, ev, &ei, now, &sp, &seq, &e, &why)) {
	case SEQ_NEW:
		bus_result(out, r, event_result(sp, &ei, seq));
		if (ei.type == T_TOMB)
			note_tombstone(L, ev, ei.beam, ei.author, out);
		publish(L, sp, out);
		if (ei.type == T_LEAVE || ei.type == T_REMOVE ||
		    ei.type == T_RULES)
			subs_recheck(L, sp, out);
		gossip_push(L, sp, out);
		break;
	case SEQ_DUP:
		bus_result(out, r, event_result(sp, &ei, seq));
		break;
	case SEQ_REFUSED:
		bus_error(out, r, e, why);
		break;
	default:
		bus_error(out, r, E_INTERNAL,
		    "the node failed to store the event");
	}
out:
	jv_free(ev);
}

/*
 * The signed beam (borrowed) a ref by author names as path: a beam by the
 * same author, within the size limit, whose canonical bytes hash to the
 * path's beam id.  0, or -1 with *e and *why.
 */
static int
beam_check(struct log *L, jv beam, const struct span *raw, const char *author,
    const char *path, enum bus_err *e, const char **why)
{
	char id[HASH_ID_LEN + 1];
	const char *s;
	int64_t ts;
	size_t size;

	*e = E_BAD_EVENT;
	if (!(s = sget(beam, "type")) || strcmp(s, "beam") != 0) {
		*why = "beam type is not \"beam\"";
		return -1;
	}
	if (!(s = sget(beam, "author")) || strcmp(s, author) != 0) {
		*why = "beam author is not the ref's author";
		return -1;
	}
	if (jsonl_int(beam, "ts", &ts) != 0 || ts < 0) {
		*why = "beam ts is not a non-negative integer";
		return -1;
	}
	if (!sget(beam, "sig")) {
		*why = "beam has no sig";
		return -1;
	}
	if (raw->p) {
		hash_id(raw->p, raw->len, id);
		size = raw->len;
	} else if (event_id(beam, &L->scratch, id) != 0) {
		*why = "beam is not representable in RFC 8785";
		return -1;
	} else
		size = L->scratch.len;
	if (size > BEAM_MAX) {
		*e = E_TOO_LARGE;
		*why = "beam larger than 256 KiB";
		return -1;
	}
	if (memcmp(path + PATH_LEN - HASH_ID_LEN, id, HASH_ID_LEN) != 0) {
		*why = "beam does not hash to the ref's path";
		return -1;
	}
	return 0;
}

/* The tombstone stored for beam (a path), parsed, or jv_invalid(). */
static jv
gone_of(struct log *L, const char *beam, int *err)
{
	jv t = jv_invalid();
	int rc;

	*err = 0;
	if ((rc = q(L, S_GONE_GET, "t", beam)) < 0) {
		*err = 1;
		return t;
	}
	if (rc == 1) {
		const char *s = col(L, S_GONE_GET, 0);
		t = canon_parse(s, strlen(s));
		rst(L, S_GONE_GET);
		if (!jv_is_valid(t)) {
			warn("%.100s: stored tombstone unreadable", beam);
			*err = 1;
		}
	}
	return t;
}

/*
 * What follows the sequencing of a space.beam's ref (rc from sequence,
 * with its seq, or e and why): the beam goes on to ns-beam with the
 * answer, which ns-beam sends once the beam is durable too, or the refusal
 * goes back.  The beam is text, its canonical text when known, else the
 * value beam (consumed either way).  0, or -1 on a database failure,
 * with nothing written.
 */
static int
beam_sequenced(struct log *L, const struct bus_req *r, const struct span *text,
    jv beam, const struct evinfo *ei, struct space *sp, int rc, int64_t seq,
    enum bus_err e, const char *why, struct buf *out)
{
	jv p;

	switch (rc) {
	case SEQ_NEW:
	case SEQ_DUP:
		/* ns-beam stores it and answers; a repeat stores it again,
		 * in case ns-beam lost it the first time.  {"beam","result"}
		 * is in canonical order, the beam's text canonical already
		 * when raw has it */
		if (text->p) {
			bus_request_head(out, "beam.store", r);
			buf_adds(out, "{\"beam\":");
			buf_add(out, text->p, text->len);
			/* event_result of a beam.ref, in canonical order */
			buf_adds(out, ",\"result\":{\"beam\":");
			bus_str(out, ei->beam);
			buf_adds(out, ",\"eventId\":");
			bus_str(out, ei->id);
			buf_adds(out, ",\"seq\":");
			buf_addi(out, seq);
			buf_adds(out, ",\"space\":");
			bus_str(out, sp->id);
			buf_adds(out, "}}}\n");
		} else {
			p = jv_object_set(jv_object(), jv_string("beam"), beam);
			beam = jv_invalid();
			p = jv_object_set(p, jv_string("result"),
			    event_result(sp, ei, seq));
			bus_request(out, "beam.store", r, p);
		}
		if (rc == SEQ_NEW) {
			publish(L, sp, out);
			gossip_push(L, sp, out);
		}
		break;
	case SEQ_REFUSED:
		bus_error(out, r, e, why);
		break;
	default:
		jv_free(beam);
		return -1;
	}
	jv_free(beam);
	return 0;
}

void
handle_space_beam(struct log *L, const struct bus_req *r,
    const struct raw *raw, int unchecked, int64_t now, struct buf *out)
{
	jv ev = jsonl_get(r->params, "event");
	jv beam = jsonl_get(r->params, "beam");
	jv tomb = jv_invalid(), p;
	const char *type, *why = NULL;
	struct evinfo ei;
	struct space *sp;
	enum bus_err e = E_INTERNAL;
	int64_t seq;
	int err, rc;

	if (jv_get_kind(ev) != JV_KIND_OBJECT ||
	    jv_get_kind(beam) != JV_KIND_OBJECT) {
		bus_error(out, r, E_PARAMS,
		    "params need an event and a beam, both objects");
		goto out;
	}
	if (!(type = sget(ev, "type")) || strcmp(type, "beam.ref") != 0) {
		bus_error(out, r, E_BAD_EVENT, "event is not a beam.ref");
		goto out;
	}
	if (check_event(L, ev, &raw->event, NULL, now, &ei, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	if (unchecked && verify_here(L, r, ev, ei.author, out) != 0)
		goto out;
	if (strcmp(ei.node, L->node) != 0 ||
	    strcmp(ei.address, L->address) != 0) {
		bus_error(out, r, E_BAD_EVENT,
		    "ref names another node to store the beam");
		goto out;
	}
	if (beam_check(L, beam, &raw->beam, ei.author, ei.beam, &e,
	    &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	tomb = gone_of(L, ei.beam, &err);
	if (err)
		goto internal;
	if (jv_is_valid(tomb)) {
		bus_error_data(out, r, E_GONE, "the beam was deleted",
		    jv_object_set(jv_object(), jv_string("tombstone"), tomb));
		tomb = jv_invalid();
		goto out;
	}
	sp = space_find(L, ei.space, &err);
	if (err)
		goto internal;
	if (!owns(L, sp) && !(sp && (rc = q(L, S_ENV_DUP, "tit", sp->id,
	    ei.ts, ei.id)) == 1)) {
		/* another node's space: the beam is kept here while the
		 * owner decides (dropped if it refuses), and the ref goes
		 * there */
		p = jv_object_set(jv_object(), jv_string("beam"), beam);
		beam = jv_invalid();
		p = jv_object_set(p, jv_string("hold"), jv_true());
		p = jv_object_set(p, jv_string("space"), jv_string(ei.space));
		struct bus_req held = *r;
		held.id = jv_invalid();	/* ns-beam keeps it; no answer */
		held.r = -1;
		bus_request(out, "beam.store", &held, p);
		if (submit_remote(L, r, ev, &ei, sp, ei.beam, out) != 0) {
			/* nobody to hand it to: the beam must not stay */
			buf_adds(out, "{\"m\":\"beam.drop\",\"p\":{\"beam\":");
			bus_str(out, ei.beam);
			buf_adds(out, ",\"space\":");
			bus_str(out, ei.space);
			buf_adds(out, "}}\n");
		}
		goto out;
	}
	if (sp && !owns(L, sp)) {
		/* sequenced by its owner already: stored again, answered */
		seq = sqlite3_column_int64(L->st[S_ENV_DUP], 0);
		rst(L, S_ENV_DUP);
		rc = SEQ_DUP;
	} else
		rc = sequence(L, ev, &ei, now, &sp, &seq, &e, &why);
	rc = beam_sequenced(L, r, &raw->beam, beam, &ei, sp, rc, seq, e, why,
	    out);
	beam = jv_invalid();
	if (rc != 0)
		goto internal;
	goto out;
internal:
	L->failed = 1;
	bus_error(out, r, E_INTERNAL, "the node failed to store the event");
out:
	jv_free(tomb);
	jv_free(beam);
	jv_free(ev);
}

/* A C string from a string value's text with no escapes, printable ASCII
 * but for '"' and '\\' (what DIDs, addresses, paths and ids are made of):
 * 0, else -1. */
static int
plain_str(const struct span *v, char *out, size_t outlen)
{
	if (!v->p || span_str(v->p, v->len, out, outlen) != 0)
		return -1;
	for (const char *s = out; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return -1;
	return 0;
}

/*
 * space.beam read from its text.  Nearly every request a busy node takes
 * is a client's beam with its ref, written canonical by ns-serve: this
 * takes the members it needs as spans of the line and decides the request
 * as handle_space_beam does, without building the line as values.
 * Anything else (a member missing, escaped or out of place, any fault, a
 * deleted beam, another node's space, a database error) returns 0 before
 * anything is done, and the line takes the full path, which has the
 * answer for it.  This path only ever accepts what that one would.
 *
 * 1 when the request was decided and answered into out: *r then holds its
 * conn, r and id (owned: bus_req_free) for the batch, and did and role,
 * which point to storage kept until the next call.
 */
int
take_space_beam(struct log *L, const char *line, size_t len, int64_t now,
    struct bus_req *r, struct buf *out)
{
	/* the bus line's members in the order ns-serve writes them */
	static const char *const top[] = { "m", "c", "r", "did", "role", "id",
	    "p" };
	static const char *const par[] = { "beam", "event" };
	static const char *const evn[] = { "address", "author", "beam", "node",
	    "sig", "space", "ts", "type" };
	static const char *const bmn[] = { "author", "sig", "ts", "type" };
	static struct {
		char did[DIDKEY_MAX], role[16];
	} keep;
	char author[DIDKEY_MAX], node[DIDKEY_MAX], address[ADDRESS_MAX + 1];
	char space[256], path[PATH_LEN + 1], id[HASH_ID_LEN + 1];
	struct span t[7], pv[2], ev[8], bv[4];
	const char *kid, *why = NULL;
	enum bus_err e = E_INTERNAL;
	struct evinfo ei;
	struct space *sp;
	int64_t conn = -1, rn = -1, evts, ts, seq = 0;
	size_t want = 1, kidlen;
	int sptype, rc, err;

	if (!L->address || span_get(line, len, top, t, 7) != 0)
		return 0;
	/* these members once each and nothing else, no whitespace: each is
	 * its name, quotes and colon, its value, and a ',' or the '}' */
	for (int i = 0; i < 7; i++)
		if (t[i].p)
			want += strlen(top[i]) + 3 + t[i].len + 1;
	if (want != len || !span_is(&t[0], "space.beam") ||
	    (t[1].p && span_int(t[1].p, t[1].len, &conn) != 0) ||
	    (t[2].p && span_int(t[2].p, t[2].len, &rn) != 0) ||
	    (t[3].p && plain_str(&t[3], keep.did, sizeof(keep.did)) != 0) ||
	    (t[4].p && plain_str(&t[4], keep.role, sizeof(keep.role)) != 0) ||
	    !t[6].p || t[6].p[0] != '{' || !span_canonical(t[6].p, t[6].len) ||
	    span_get(t[6].p, t[6].len, par, pv, 2) != 0 ||
	    !pv[0].p || pv[0].p[0] != '{' || pv[0].len > BEAM_MAX ||
	    !pv[1].p || pv[1].p[0] != '{' || pv[1].len > EVENT_MAX)
		return 0;
	/* the ref: what check_event asks of a beam.ref */
	if (span_get(pv[1].p, pv[1].len, evn, ev, 8) != 0 ||
	    !span_is(&ev[7], "beam.ref") ||
	    plain_str(&ev[1], author, sizeof(author)) != 0 ||
	    !valid_did(author) ||
	    !ev[6].p || span_int(ev[6].p, ev[6].len, &evts) != 0 || evts < 0 ||
	    evts > now + SKEW_MS || !ev[4].p || ev[4].p[0] != '"' ||
	    plain_str(&ev[5], space, sizeof(space)) != 0 ||
	    space_parse(space, &sptype, &kid, &kidlen) != 0 ||
	    plain_str(&ev[3], node, sizeof(node)) != 0 || !valid_did(node) ||
	    plain_str(&ev[0], address, sizeof(address)) != 0 ||
	    !valid_address(address) ||
	    plain_str(&ev[2], path, sizeof(path)) != 0 ||
	    beam_path_ok(path, author) != 0)
		return 0;
	/* what handle_space_beam and beam_check ask of it and its beam */
	if (strcmp(node, L->node) != 0 || strcmp(address, L->address) != 0 ||
	    span_get(pv[0].p, pv[0].len, bmn, bv, 4) != 0 ||
	    !span_is(&bv[3], "beam") || !span_is(&bv[0], author) ||
	    !bv[2].p || span_int(bv[2].p, bv[2].len, &ts) != 0 || ts < 0 ||
	    !bv[1].p || bv[1].p[0] != '"')
		return 0;
	hash_id(pv[0].p, pv[0].len, id);
	if (memcmp(path + PATH_LEN - HASH_ID_LEN, id, HASH_ID_LEN) != 0)
		return 0;
	/* a deleted beam, another node's space: the full path */
	if ((rc = q(L, S_GONE_GET, "t", path)) != 0) {
		if (rc == 1)
			rst(L, S_GONE_GET);
		return 0;
	}
	sp = space_find(L, space, &err);
	if (err || !owns(L, sp))
		return 0;

	memset(r, 0, sizeof(*r));
	r->line = r->params = jv_invalid();
	r->id = t[5].p ? canon_parse(t[5].p, t[5].len) : jv_invalid();
	if (t[5].p && !jv_is_valid(r->id)) {
		jv_free(r->id);
		r->id = jv_invalid();
		return 0;
	}
	r->method = "space.beam";
	r->conn = conn;
	r->r = rn;
	r->did = t[3].p ? keep.did : NULL;
	r->role = t[4].p ? keep.role : NULL;

	/* the event's text and id, as check_event leaves them for append */
	memset(&ei, 0, sizeof(ei));
	ei.type = T_REF;
	ei.space = space;
	ei.sptype = sptype;
	ei.author = author;
	ei.node = node;
	ei.address = address;
	ei.beam = path;
	ei.ts = evts;
	buf_reset(&L->evtext);
	buf_add(&L->evtext, pv[1].p, pv[1].len);
	hash_id(pv[1].p, pv[1].len, ei.id);
	memcpy(L->evtext_id, ei.id, sizeof(L->evtext_id));

	rc = sequence(L, jv_invalid(), &ei, now, &sp, &seq, &e, &why);
	if (beam_sequenced(L, r, &pv[0], jv_invalid(), &ei, sp, rc, seq, e,
	    why, out) != 0) {
		L->failed = 1;
		bus_error(out, r, E_INTERNAL,
		    "the node failed to store the event");
	}
	return 1;
}

/* The shape of a tombstone (borrowed): 0, or -1 with *e and *why. */
static int
tomb_check(struct log *L, jv t, int64_t now, const char **beam,
    const char **author, enum bus_err *e, const char **why)
{
	char id[HASH_ID_LEN + 1];
	const char *s;
	int64_t ts;

	*e = E_BAD_EVENT;
	if (event_id(t, &L->scratch, id) != 0) {
		*why = "event cannot be put in canonical form";
		return -1;
	}
	if (L->scratch.len > EVENT_MAX) {
		*e = E_TOO_LARGE;
		*why = "tombstone larger than 16 KiB";
		return -1;
	}
	if (!(s = sget(t, "type")) || strcmp(s, "beam.tombstone") != 0) {
		*why = "event is not a beam.tombstone";
		return -1;
	}
	if (jsonl_has(t, "space")) {
		*why = "a tombstone has no space member";
		return -1;
	}
	if (!valid_did(*author = sget(t, "author"))) {
		*why = "author is not a did:key";
		return -1;
	}
	if (jsonl_int(t, "ts", &ts) != 0 || ts < 0) {
		*why = "ts is not a non-negative integer";
		return -1;
	}
	if (ts > now + SKEW_MS) {
		*why = "ts is more than 5 minutes in the future";
		return -1;
	}
	if (!sget(t, "sig")) {
		*e = E_BAD_SIG;
		*why = "event has no signature";
		return -1;
	}
	if (!(*beam = sget(t, "beam")) || beam_path_ok(*beam, NULL) != 0) {
		*why = "beam is not a path beam/{authorHash}/{beamId}";
		return -1;
	}
	if (beam_path_ok(*beam, *author) != 0) {
		*e = E_FORBIDDEN;
		*why = "only the beam's author may delete it";
		return -1;
	}
	return 0;
}

/*
 * beam.delete: the tombstone goes into every space this node owns that
 * holds a ref to the beam by its author, and then to ns-beam (beam.bury),
 * which drops the content, keeps the tombstone and answers.  A beam deleted
 * before keeps its first tombstone: that one goes out again, and the
 * spaces take it as the duplicate it is.
 */
void
handle_beam_delete(struct log *L, const struct bus_req *r, int unchecked,
    int64_t now, struct buf *out)
{
	jv t = jsonl_get(r->params, "event"), sent = jv_invalid();
	jv spaces = jv_array(), ids = jv_array();
	struct buf pubs = BUF_INIT;
	const char *beam, *author, *why;
	struct evinfo ei;
	struct space *sp;
	enum bus_err e;
	int64_t seq;
	int err, rc;

	if (jv_get_kind(t) != JV_KIND_OBJECT) {
		bus_error(out, r, E_PARAMS, "params need an event object");
		goto out;
	}
	if (tomb_check(L, t, now, &beam, &author, &e, &why) != 0) {
		bus_error(out, r, e, why);
		goto out;
	}
	if (unchecked && verify_here(L, r, t, author, out) != 0)
		goto out;
	sent = gone_of(L, beam, &err);
	if (err)
		goto internal;
	for (rc = q(L, S_REF_AUTHOR, "tt", beam, author); rc == 1;
	    rc = step(L, S_REF_AUTHOR))
		ids = jv_array_append(ids, jv_string(col(L, S_REF_AUTHOR, 0)));
	if (rc < 0)
		goto internal;
	/* a beam no space refers to is ns-beam's alone to answer for: it
	 * may not exist at all, and then nothing is marked deleted */
	if (!jv_is_valid(sent) && jv_array_length(jv_copy(ids)) > 0) {
		buf_reset(&L->scratch);
		if (canon_dump(t, NULL, &L->scratch) != 0 ||
		    q(L, S_GONE_INS, "ttb", beam, author, L->scratch.p,
		    (int)L->scratch.len) < 0)
			goto internal;
	}
	if (!jv_is_valid(sent)) {
		jv_free(sent);
		sent = jv_copy(t);
	}
	jv_array_foreach(ids, i, id) {
		const char *sid = jv_string_value(id);

		sp = space_find(L, sid, &err);
		if (err) {
			jv_free(id);
			goto internal;
		}
		if (!sp || check_event(L, sent, NULL, sid, now, &ei, &e, &why) != 0) {
			jv_free(id);
			continue;
		}
		/* another node's space: it is owed the tombstone, until its
		 * owner node has it (fed.c sends and resends) */
		if (!owns(L, sp)) {
			buf_reset(&L->scratch);
			if (canon_dump(sent, NULL, &L->scratch) != 0 ||
			    q(L, S_OUT_PUT, "tb", sid, L->scratch.p,
			    (int)L->scratch.len) < 0) {
				jv_free(id);
				goto internal;
			}
			spaces = jv_array_append(spaces, jv_copy(id));
			jv_free(id);
			continue;
		}
		switch (sequence(L, sent, &ei, now, &sp, &seq, &e, &why)) {
		case SEQ_NEW:
			publish(L, sp, &pubs);
			gossip_push(L, sp, &pubs);
			/* FALLTHROUGH */
		case SEQ_DUP:
			spaces = jv_array_append(spaces, jv_copy(id));
			break;
		case SEQ_REFUSED:
			warn("%.80s: tombstone refused: %s", sid, why);
			break;
		default:
			jv_free(id);
			goto internal;
		}
		jv_free(id);
	}
	bus_request(out, "beam.bury", r, jv_object_set(jv_object_set(
	    jv_object(), jv_string("event"), sent), jv_string("spaces"),
	    spaces));
	sent = spaces = jv_invalid();
	if (pubs.len)
		buf_add(out, pubs.p, pubs.len);
	goto out;
internal:
	L->failed = 1;
	bus_error(out, r, E_INTERNAL, "the node failed to store the event");
out:
	buf_free(&pubs);
	jv_free(ids);
	jv_free(spaces);
	jv_free(sent);
	jv_free(t);
}

void
raw_params(const char *line, size_t len, struct raw *raw)
{
	static const char *const top[] = { "p" };
	static const char *const par[] = { "event", "beam" };
	struct span p, v[2];

	raw->event.p = raw->beam.p = NULL;
	if (span_get(line, len, top, &p, 1) != 0 || !p.p ||
	    span_get(p.p, p.len, par, v, 2) != 0)
		return;
	if (v[0].p && span_canonical(v[0].p, v[0].len))
		raw->event = v[0];
	if (v[1].p && span_canonical(v[1].p, v[1].len))
		raw->beam = v[1];
}
