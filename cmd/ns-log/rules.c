/*
 * Events and the rules of a space: the shape of each event, whether the
 * state of its space admits it, the change it makes, and the envelope
 * that sequences it (share/doc/protocol.md, sections 4 to 6).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "canon.h"
#include "didkey.h"
#include "event.h"
#include "hash.h"
#include "key.h"
#include "jsonl.h"
#include "log.h"
#include "msg.h"
#include "sig.h"

const char *const join_words[] = { "open", "invite", NULL };
const char *const post_words[] = { "members", "owner", NULL };
const char *const read_words[] = { "public", "members", NULL };
const char *const sptype_names[] = { "channel", "dm", "stream", NULL };
const struct rules defaults[] = {
	[SP_CHANNEL] = { J_OPEN, P_MEMBERS, R_PUBLIC },
	[SP_DM] = { J_INVITE, P_MEMBERS, R_MEMBERS },
	[SP_STREAM] = { J_OPEN, P_OWNER, R_PUBLIC },
};
const char *const type_names[] = {
	"space.create", "space.join", "space.leave", "space.invite",
	"space.remove", "space.rules", "beam.ref", "beam.tombstone", NULL,
};

/* A did:key decodes (base58 both ways: the slow part of an event's
 * checks), so the DIDs that passed lately are remembered; the answer for a
 * string never changes. */
int
valid_did(const char *s)
{
	static char seen[256][DIDKEY_LEN + 1];
	unsigned char pk[KEY_PK_LEN];
	const char *why;
	char *slot;

	if (!s || strlen(s) != DIDKEY_LEN)
		return 0;
	slot = seen[strhash(s) % 256];
	if (strcmp(slot, s) == 0)
		return 1;
	if (didkey_decode(s, pk, &why) != 0)
		return 0;
	memcpy(slot, s, DIDKEY_LEN + 1);
	return 1;
}

/* host:port or a ws(s):// URL: printable, no spaces, bounded. */
int
valid_address(const char *s)
{
	size_t n;

	if (!s || (n = strlen(s)) == 0 || n > ADDRESS_MAX)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '"' ||
		    *s == '\\')
			return 0;
	return 1;
}

/* {type}/{owner key id}/{uniqueId}.  Sets *type and the key id's span. */
int
space_parse(const char *id, int *type, const char **kid, size_t *kidlen)
{
	const char *a, *b, *u;
	char t[16], did[DIDKEY_MAX + 8];
	size_t n;

	if (!id || !(a = strchr(id, '/')) || !(b = strchr(a + 1, '/')))
		return -1;
	if ((size_t)(a - id) >= sizeof(t))
		return -1;
	memcpy(t, id, (size_t)(a - id));
	t[a - id] = '\0';
	if ((*type = word_index(sptype_names, t)) < 0)
		return -1;
	n = (size_t)(b - a - 1);
	if (n == 0 || n + sizeof(DIDKEY_PREFIX) > sizeof(did))
		return -1;
	snprintf(did, sizeof(did), DIDKEY_PREFIX "%.*s", (int)n, a + 1);
	if (!valid_did(did))
		return -1;
	u = b + 1;
	n = strlen(u);
	if (n < 1 || n > UNIQUE_MAX || strspn(u, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789._-") != n ||
	    strcmp(u, ".") == 0 || strcmp(u, "..") == 0)
		return -1;
	*kid = a + 1;
	*kidlen = (size_t)(b - a - 1);
	return 0;
}

/* beam/{authorHash}/{beamId}, two ids; with author, authorHash must be
 * its hash. */
int
beam_path_ok(const char *beam, const char *author)
{
	char h[HASH_ID_LEN + 1];
	unsigned char raw[HASH_RAW_LEN];
	size_t n;

	if (strlen(beam) != 5 + HASH_ID_LEN + 1 + HASH_ID_LEN ||
	    strncmp(beam, "beam/", 5) != 0 || beam[5 + HASH_ID_LEN] != '/')
		return -1;
	for (int i = 0; i < 2; i++)
		if (b64url_decode(beam + 5 + i * (HASH_ID_LEN + 1), HASH_ID_LEN,
		    raw, sizeof(raw), &n) != 0 || n != sizeof(raw))
			return -1;
	if (author) {
		/* the last author's hash: most refs come in runs by one */
		static char last[DIDKEY_MAX], lasth[HASH_ID_LEN + 1];

		if (strcmp(author, last) != 0) {
			hash_id(author, strlen(author), h);
			if (strlen(author) < sizeof(last)) {
				memcpy(last, author, strlen(author) + 1);
				memcpy(lasth, h, sizeof(lasth));
			}
		} else
			memcpy(h, lasth, sizeof(h));
		if (memcmp(beam + 5, h, HASH_ID_LEN) != 0)
			return -1;
	}
	return 0;
}

/* Defaults of the space type merged with obj (borrowed), which must be an
 * object; members other than join, post and read are ignored. */
int
rules_parse(jv obj, int sptype, struct rules *out)
{
	static const struct {
		const char *name;
		const char *const *words;
		size_t off;
	} f[] = {
		{ "join", join_words, offsetof(struct rules, join) },
		{ "post", post_words, offsetof(struct rules, post) },
		{ "read", read_words, offsetof(struct rules, read) },
	};

	*out = defaults[sptype];
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return -1;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const char *s;
		int w;

		if (!jsonl_has(obj, f[i].name))
			continue;
		if (!(s = jsonl_str(obj, f[i].name)) ||
		    (w = word_index(f[i].words, s)) < 0)
			return -1;
		*(int *)((char *)out + f[i].off) = w;
	}
	return 0;
}

/* The stored form of rules: canonical JSON. */
void
rules_text(const struct rules *r, char *out, size_t len)
{
	snprintf(out, len, "{\"join\":\"%s\",\"post\":\"%s\",\"read\":\"%s\"}",
	    join_words[r->join], post_words[r->post], read_words[r->read]);
}

jv
rules_jv(const struct rules *r)
{
	jv o = jv_object_set(jv_object(), jv_string("join"),
	    jv_string(join_words[r->join]));

	o = jv_object_set(o, jv_string("post"), jv_string(post_words[r->post]));
	return jv_object_set(o, jv_string("read"),
	    jv_string(read_words[r->read]));
}

/*
 * Check the shape of event ev (borrowed), which goes to space pspace if it
 * has no "space" member of its own (a tombstone), at time now.  Fills ei.
 * Returns 0, or -1 with *e and *why.
 */
int
check_event(struct log *L, jv ev, const struct span *raw,
    const char *pspace, int64_t now, struct evinfo *ei, enum bus_err *e,
    const char **why)
{
	const char *type, *kid;
	size_t kidlen;
	int t;

	memset(ei, 0, sizeof(*ei));
	*e = E_BAD_EVENT;
	if (jv_get_kind(ev) != JV_KIND_OBJECT) {
		*e = E_PARAMS;
		*why = "params.event must be an event object";
		return -1;
	}
	/* its canonical text stays in L->evtext: append signs it */
	L->evtext_id[0] = '\0';
	if (raw && raw->p) {
		buf_reset(&L->evtext);
		buf_add(&L->evtext, raw->p, raw->len);
		hash_id(raw->p, raw->len, ei->id);
	} else if (event_id(ev, &L->evtext, ei->id) != 0) {
		*why = "event cannot be put in canonical form";
		return -1;
	}
	memcpy(L->evtext_id, ei->id, sizeof(L->evtext_id));
	if (L->evtext.len > EVENT_MAX) {
		*e = E_TOO_LARGE;
		*why = "event larger than 16 KiB";
		return -1;
	}
	if (!(type = sget(ev, "type")) || (t = word_index(type_names, type)) < 0) {
		*why = "unknown event type";
		return -1;
	}
	ei->type = (enum evtype)t;
	if (!valid_did(ei->author = sget(ev, "author"))) {
		*why = "author is not a did:key";
		return -1;
	}
	if (jsonl_int(ev, "ts", &ei->ts) != 0 || ei->ts < 0) {
		*why = "ts is not a non-negative integer";
		return -1;
	}
	if (ei->ts > now + SKEW_MS) {
		*why = "ts is more than 5 minutes in the future";
		return -1;
	}
	if (!jsonl_str(ev, "sig")) {
		*e = E_BAD_SIG;
		*why = "event has no signature";
		return -1;
	}
	if (ei->type == T_TOMB) {
		if (jsonl_has(ev, "space")) {
			*why = "a tombstone has no space member";
			return -1;
		}
		if (!(ei->space = pspace)) {
			*e = E_PARAMS;
			*why = "params.space is needed for a tombstone";
			return -1;
		}
	} else {
		if (!(ei->space = sget(ev, "space"))) {
			*why = "event has no space";
			return -1;
		}
		if (pspace && strcmp(pspace, ei->space) != 0) {
			*why = "params.space is not the event's space";
			return -1;
		}
	}
	if (space_parse(ei->space, &ei->sptype, &kid, &kidlen) != 0) {
		*why = "bad space id";
		return -1;
	}
	switch (ei->type) {
	case T_CREATE:
		ei->name = sget(ev, "name");
		if (!ei->name || strlen(ei->name) > NAME_MAX_BYTES) {
			*why = "name must be a string of at most 200 bytes";
			return -1;
		}
		/* FALLTHROUGH */
	case T_JOIN:
	case T_REF:
		if (!valid_did(ei->node = sget(ev, "node"))) {
			*why = "node is not a did:key";
			return -1;
		}
		if (!valid_address(ei->address = sget(ev, "address"))) {
			*why = "address is not a node address";
			return -1;
		}
		break;
	case T_INVITE:
	case T_REMOVE:
		if (!valid_did(ei->member = sget(ev, "member"))) {
			*why = "member is not a did:key";
			return -1;
		}
		break;
	default:
		break;
	}
	if (ei->type == T_CREATE || ei->type == T_RULES) {
		jv r = jsonl_get(ev, "rules");
		int bad = (ei->type == T_RULES || jv_is_valid(r)) &&
		    rules_parse(r, ei->sptype, &ei->rules) != 0;

		if (!jv_is_valid(r))
			ei->rules = defaults[ei->sptype];
		jv_free(r);
		if (bad) {
			*why = "rules must be an object of join, post and "
			    "read words";
			return -1;
		}
	}
	/* a ref must name its author's beam; a tombstone of another's beam
	 * is well formed, and refused by the state (no such ref of its) */
	if (ei->type == T_REF || ei->type == T_TOMB) {
		if (!(ei->beam = sget(ev, "beam")) || beam_path_ok(ei->beam,
		    ei->type == T_REF ? ei->author : NULL) != 0) {
			*why = ei->type == T_REF ? "beam is not a path "
			    "beam/{authorHash}/{beamId} of the author" :
			    "beam is not a path beam/{authorHash}/{beamId}";
			return -1;
		}
	}
	if (ei->type == T_CREATE) {
		const char *akid = didkey_keyid(ei->author);

		if (strlen(akid) != kidlen || memcmp(akid, kid, kidlen) != 0) {
			*e = E_FORBIDDEN;
			*why = "only the owner named in the space id may create it";
			return -1;
		}
	}
	return 0;
}

/* Whether the state of sp (NULL for a space.create) admits the event.
 * Returns 0, or -1 with *e and *why. */
int
admit(struct log *L, struct space *sp, const struct evinfo *ei,
    enum bus_err *e, const char **why)
{
	int owner = sp && strcmp(ei->author, sp->owner) == 0;
	int rc = 0;

	*e = E_FORBIDDEN;
	switch (ei->type) {
	case T_CREATE:
		return 0;
	case T_JOIN:
		if ((rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 0) {
			*why = "already a member";
			goto out;
		}
		if (sp->rules.join == J_INVITE &&
		    (rc = exists(L, S_INV_GET, sp->id, ei->author, NULL)) != 1) {
			*why = "the space admits invited members only";
			goto out;
		}
		return 0;
	case T_LEAVE:
		if (owner) {
			*why = "the owner cannot leave";
			return -1;
		}
		if ((rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 1) {
			*why = "not a member";
			goto out;
		}
		return 0;
	case T_INVITE:
	case T_REMOVE:
	case T_RULES:
		if (!owner) {
			*why = "only the owner may do this";
			return -1;
		}
		if (ei->type == T_REMOVE && strcmp(ei->member, sp->owner) == 0) {
			*why = "the owner cannot be removed";
			return -1;
		}
		return 0;
	case T_REF:
		if (sp->rules.post == P_OWNER ? !owner :
		    (rc = exists(L, S_MEM_GET, sp->id, ei->author, NULL)) != 1) {
			*why = sp->rules.post == P_OWNER ?
			    "only the owner may post in this space" :
			    "only members may post in this space";
			goto out;
		}
		return 0;
	case T_TOMB:
		if ((rc = exists(L, S_REF_GET, sp->id, ei->beam,
		    ei->author)) != 1) {
			*why = "the space holds no ref to this beam by its author";
			goto out;
		}
		return 0;
	}
	*why = "unknown event type";
	return -1;
out:
	if (rc < 0) {
		*e = E_INTERNAL;
		*why = "database failure";
	}
	return -1;
}

/* Change the state for an admitted event.  *spp is set for a new space.
 * Returns 0, or -1 on a database failure. */
int
apply(struct log *L, struct space **spp, const struct evinfo *ei)
{
	struct space *sp = *spp;
	char rt[80];
	int rc;

	switch (ei->type) {
	case T_CREATE:
		rules_text(&ei->rules, rt, sizeof(rt));
		if (q(L, S_SPACE_INS, "ttttttt", ei->space,
		    sptype_names[ei->sptype], ei->author, ei->name, ei->node,
		    ei->address, rt) < 0)
			return -1;
		sp = *spp = cache_add(L, ei->space, ei->sptype, ei->author,
		    ei->name, ei->node, ei->address);
		sp->rules = ei->rules;
		/* FALLTHROUGH */
	case T_JOIN:
		space_nodes_drop(sp);
		return q(L, S_MEM_INS, "tttt", sp->id, ei->author, ei->node,
		    ei->address) < 0 ? -1 : 0;
	case T_LEAVE:
		space_nodes_drop(sp);
		return q(L, S_MEM_DEL, "tt", sp->id, ei->author) < 0 ? -1 : 0;
	case T_INVITE:
		return q(L, S_INV_INS, "tt", sp->id, ei->member) < 0 ? -1 : 0;
	case T_REMOVE:
		space_nodes_drop(sp);
		if (q(L, S_MEM_DEL, "tt", sp->id, ei->member) < 0)
			return -1;
		return q(L, S_INV_DEL, "tt", sp->id, ei->member) < 0 ? -1 : 0;
	case T_RULES:
		rules_text(&ei->rules, rt, sizeof(rt));
		if (q(L, S_SPACE_RULES, "tt", sp->id, rt) < 0)
			return -1;
		sp->rules = ei->rules;
		return 0;
	case T_REF:
		/* a beam referred to twice in a space is kept once */
		if ((rc = exists(L, S_REF_HAS, sp->id, ei->beam, NULL)) != 0)
			return rc < 0 ? -1 : 0;
		return q(L, S_REF_INS, "ttttt", sp->id, ei->beam, ei->author,
		    ei->node, ei->address) < 0 ? -1 : 0;
	case T_TOMB:
		return 0;
	}
	return -1;
}

/* Sequence ev (borrowed) as the next envelope of sp, signed and stored.
 * The envelope's canonical text is left in L->body.  Returns the seq, or
 * -1 on failure.
 *
 * The envelope is written as text, in RFC 8785 order (its members are
 * known, their values plain ASCII or canonical already), around the
 * event's canonical text that check_event made: one canonical pass over
 * the event instead of three over the whole envelope. */
int64_t
append(struct log *L, struct space *sp, jv ev, const char *evid, int64_t ts,
    int64_t now)
{
	unsigned char sig[KEY_SIG_LEN];
	char hash[HASH_ID_LEN + 1], sig64[SIG_B64_LEN + 1], id[HASH_ID_LEN + 1];
	int64_t seq = sp->head + 1;
	size_t cut;

	if (strcmp(L->evtext_id, evid) != 0 &&
	    (event_id(ev, &L->evtext, id) != 0 || strcmp(id, evid) != 0)) {
		warn("%.80s: cannot sign the envelope", sp->id);
		return -1;
	}
	/* the envelope without its signature, in scratch */
	buf_reset(&L->scratch);
	buf_adds(&L->scratch, "{\"event\":");
	buf_add(&L->scratch, L->evtext.p, L->evtext.len);
	buf_adds(&L->scratch, ",\"node\":\"");
	buf_adds(&L->scratch, L->node);
	if (seq == 1)
		buf_adds(&L->scratch, "\",\"prev\":null");
	else {
		buf_adds(&L->scratch, "\",\"prev\":\"");
		buf_adds(&L->scratch, sp->hash);
		buf_addc(&L->scratch, '"');
	}
	buf_adds(&L->scratch, ",\"seq\":");
	buf_addi(&L->scratch, seq);
	buf_addc(&L->scratch, ',');
	cut = L->scratch.len;	/* "sig" goes here, between seq and space */
	buf_adds(&L->scratch, "\"space\":\"");
	buf_adds(&L->scratch, sp->id);
	buf_adds(&L->scratch, "\",\"ts\":");
	buf_addi(&L->scratch, now);
	buf_adds(&L->scratch, ",\"type\":\"envelope\"}");
	key_sign(L->key, (const unsigned char *)L->scratch.p, L->scratch.len,
	    sig);
	b64url_encode(sig, sizeof(sig), sig64);
	/* and with it, in body */
	buf_reset(&L->body);
	buf_add(&L->body, L->scratch.p, cut);
	buf_adds(&L->body, "\"sig\":\"");
	buf_add(&L->body, sig64, SIG_B64_LEN);
	buf_adds(&L->body, "\",");
	buf_add(&L->body, L->scratch.p + cut, L->scratch.len - cut);
	hash_id(L->body.p, L->body.len, hash);
	if (q(L, S_ENV_INS, "tiittb", sp->id, seq, ts, evid, hash, L->body.p,
	    (int)L->body.len) < 0)
		return -1;
	space_set_head(L, sp, seq, hash);
	return seq;
}
