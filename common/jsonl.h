/* JSON lines: kind-checked getters for untrusted objects, and output of
 * one compact line per value. */
#ifndef NS_JSONL_H
#define NS_JSONL_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

/* Largest safe integer, 2^53 - 1: the doubles from -JSONL_INT_MAX to
 * JSONL_INT_MAX stand each for one integer only.  2^53 itself does not
 * (9007199254740993 parses to it), so it is refused. */
#define JSONL_INT_MAX 9007199254740991LL

/* Getters: obj is borrowed and may be any kind (non-objects read as empty).
 * jsonl_str returns NULL when key is absent, not a string, or a string with
 * a NUL byte inside ("\u0000"), so that C string functions see all of it;
 * the pointer lives as long as obj does. */
const char *jsonl_str(jv obj, const char *key);
/* 0 and *out set, or -1 if absent, not a number, not integral or beyond
 * +-JSONL_INT_MAX. */
int jsonl_int(jv obj, const char *key, int64_t *out);
/* The member (owned), or jv_invalid() when obj is not an object or has
 * no such key. */
jv jsonl_get(jv obj, const char *key);
int jsonl_has(jv obj, const char *key);
/* Kind of the member, JV_KIND_INVALID when absent. */
jv_kind jsonl_kind(jv obj, const char *key);

/* Output to stdout.  jsonl_write writes n bytes plus '\n'; jsonl_emit
 * writes the canonical (RFC 8785) form of v, consuming it.  Both return 0,
 * or -1 (errno set; for jsonl_emit, EINVAL if v cannot be serialized). */
int jsonl_write(const char *s, size_t n);
int jsonl_emit(jv v);
/* If fd is a pipe, ask for a 1 MiB buffer (or what the system allows), so
 * a stage that writes a whole batch at once does not stall on a full pipe
 * while its reader is busy.  Best effort: errors are ignored. */
void jsonl_big_pipe(int fd);
/* Flush stdout; 0 or -1 with errno. */
int jsonl_flush(void);

/* Milliseconds since the epoch, or $NS_NOW when set (for reproducible
 * output in tests). */
int64_t jsonl_now_ms(void);

#endif
