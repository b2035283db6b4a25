/*
 * gen-beams: the benchmark's load, signed ahead of time.  Writes N space.beam
 * JSON-RPC requests (ids 1..N), each a signed beam and its signed ref, for
 * one author, space and storing node, one per line.  Signing here keeps the
 * client's signing cost out of the node's ingest figure.
 *   usage: gen-beams KEYFILE SPACE NODE_DID ADDRESS N [FIRST_ID]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "buf.h"
#include "canon.h"
#include "event.h"
#include "jsonl.h"
#include "key.h"
#include "msg.h"
#include "sig.h"

int
main(int argc, char **argv)
{
	struct key *k;
	struct buf scratch = BUF_INIT;
	char err[256], id[HASH_ID_LEN + 1], ah[HASH_ID_LEN + 1], path[128];
	long n, first;

	prog = "gen-beams";
	if (argc < 6)
		die("usage: gen-beams KEYFILE SPACE NODE_DID ADDRESS N [FIRST_ID]");
	if (sodium_init() < 0)
		die("libsodium failed to initialize");
	if (!(k = key_load(argv[1], err, sizeof(err))))
		die("%s", err);
	n = atol(argv[5]);
	first = argc > 6 ? atol(argv[6]) : 1;
	hash_id(k->did, strlen(k->did), ah);
	for (long i = 0; i < n; i++) {
		char title[64];
		/* stamped as it is made, as a client does: beams all of one
		 * millisecond would land in random places of the node's
		 * (space, ts, event) index instead of at its end */
		int64_t ts = jsonl_now_ms();

		snprintf(title, sizeof(title), "bench beam %ld", first + i);
		jv beam = jv_object();
		beam = jv_object_set(beam, jv_string("type"), jv_string("beam"));
		beam = jv_object_set(beam, jv_string("title"), jv_string(title));
		beam = jv_object_set(beam, jv_string("body"), jv_string(
		    "Email is older than most platforms, and it still works."));
		beam = jv_object_set(beam, jv_string("author"), jv_string(k->did));
		beam = jv_object_set(beam, jv_string("ts"), jv_number((double)ts));
		beam = sig_attach(beam, k);
		event_id(beam, &scratch, id);
		snprintf(path, sizeof(path), "beam/%s/%s", ah, id);
		jv ref = jv_object();
		ref = jv_object_set(ref, jv_string("type"), jv_string("beam.ref"));
		ref = jv_object_set(ref, jv_string("space"), jv_string(argv[2]));
		ref = jv_object_set(ref, jv_string("beam"), jv_string(path));
		ref = jv_object_set(ref, jv_string("node"), jv_string(argv[3]));
		ref = jv_object_set(ref, jv_string("address"), jv_string(argv[4]));
		ref = jv_object_set(ref, jv_string("author"), jv_string(k->did));
		ref = jv_object_set(ref, jv_string("ts"), jv_number((double)ts));
		ref = sig_attach(ref, k);
		jv p = jv_object_set(jv_object(), jv_string("event"), ref);
		p = jv_object_set(p, jv_string("beam"), beam);
		jv req = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
		req = jv_object_set(req, jv_string("id"), jv_number((double)(first + i)));
		req = jv_object_set(req, jv_string("method"), jv_string("space.beam"));
		req = jv_object_set(req, jv_string("params"), p);
		if (jsonl_emit(req) != 0)
			die("stdout:");
	}
	if (jsonl_flush() != 0)
		die("stdout:");
	buf_free(&scratch);
	key_free(k);
	return 0;
}
