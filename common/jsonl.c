#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "buf.h"
#include "canon.h"
#include "jsonl.h"

jv
jsonl_get(jv obj, const char *key)
{
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return jv_invalid();
	jv v = jv_object_get(jv_copy(obj), jv_string(key));
	return v;
}

int
jsonl_has(jv obj, const char *key)
{
	return jsonl_kind(obj, key) != JV_KIND_INVALID;
}

jv_kind
jsonl_kind(jv obj, const char *key)
{
	jv v = jsonl_get(obj, key);
	jv_kind k = jv_get_kind(v);

	jv_free(v);
	return k;
}

const char *
jsonl_str(jv obj, const char *key)
{
	jv v = jsonl_get(obj, key);
	const char *s = NULL;

	/* obj keeps its own reference, so the pointer outlives v; a NUL
	 * inside would make C see a shorter string than JSON does */
	if (jv_get_kind(v) == JV_KIND_STRING && strlen(jv_string_value(v)) ==
	    (size_t)jv_string_length_bytes(jv_copy(v)))
		s = jv_string_value(v);
	jv_free(v);
	return s;
}

int
jsonl_int(jv obj, const char *key, int64_t *out)
{
	jv v = jsonl_get(obj, key);
	int rc = -1;

	if (jv_get_kind(v) == JV_KIND_NUMBER) {
		double d = jv_number_value(v);
		if (d == floor(d) && fabs(d) <= (double)JSONL_INT_MAX) {
			*out = (int64_t)d;
			rc = 0;
		}
	}
	jv_free(v);
	return rc;
}

int
jsonl_write(const char *s, size_t n)
{
	if (fwrite(s, 1, n, stdout) != n || putchar('\n') == EOF)
		return -1;
	return 0;
}

int
jsonl_emit(jv v)
{
	static struct buf out;
	int rc;

	buf_reset(&out);
	rc = canon_dump(v, NULL, &out);
	jv_free(v);
	if (rc != 0) {
		errno = EINVAL;
		return -1;
	}
	return jsonl_write(out.p, out.len);
}

void
jsonl_big_pipe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

int
jsonl_flush(void)
{
	return fflush(stdout) == EOF ? -1 : 0;
}

int64_t
jsonl_now_ms(void)
{
	const char *e = getenv("NS_NOW");
	struct timespec ts;

	if (e && *e)
		return strtoll(e, NULL, 10);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
