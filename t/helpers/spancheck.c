/*
 * spancheck: common/span.c against common/canon.c, for t/span.bats.  Each
 * line of stdin is one JSON text; for each it prints four numbers:
 *   span_canonical (1/0), whether canon_dump(canon_parse(line)) is the line
 *   itself (1/0, 0 when it does not parse), span_get's verdict on an object
 *   (1 well formed, 0 not, - not an object), whether canon_parse takes it.
 * span_canonical may say 0 for canonical text, never 1 for text that is not.
 * With --int it prints, for each line, span_int's number or "-".
 * With --str it prints, for each line, 1 if common/bus.c's bus_str writes
 * it as bus_json(jv_string(line)) does (0 if not), and what bus_str wrote.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "bus.h"
#include "canon.h"
#include "span.h"

int
main(int argc, char **argv)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	struct buf out = BUF_INIT;
	int ints = argc > 1 && strcmp(argv[1], "--int") == 0;
	int strs = argc > 1 && strcmp(argv[1], "--str") == 0;
	struct buf ref = BUF_INIT;

	while ((n = getline(&line, &cap, stdin)) > 0) {
		static const char *const names[] = { "a" };
		struct span v[1];
		jv j;
		int same = 0, parses;

		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (strs) {
			buf_reset(&out);
			buf_reset(&ref);
			bus_str(&out, line);
			bus_json(&ref, jv_string(line));
			printf("%d %.*s\n", out.len == ref.len &&
			    memcmp(out.p, ref.p, out.len) == 0, (int)out.len,
			    out.p);
			continue;
		}
		if (ints) {
			int64_t x;

			if (span_int(line, (size_t)n, &x) == 0)
				printf("%lld\n", (long long)x);
			else
				puts("-");
			continue;
		}
		j = canon_parse(line, (size_t)n);
		parses = jv_is_valid(j);
		buf_reset(&out);
		if (parses && canon_dump(j, NULL, &out) == 0)
			same = out.len == (size_t)n &&
			    memcmp(out.p, line, (size_t)n) == 0;
		jv_free(j);
		printf("%d %d %s %d\n", span_canonical(line, (size_t)n), same,
		    n > 0 && line[0] == '{' ? (span_get(line, (size_t)n, names,
		    v, 1) == 0 ? "1" : "0") : "-", parses);
	}
	free(line);
	buf_free(&out);
	buf_free(&ref);
	return 0;
}
