#!/usr/bin/env bats
# share/doc/protocol.md: its worked examples are what the code produces,
# byte for byte, and every signed object in them verifies.

load helpers/common
bats_require_minimum_version 1.5.0

SPEC="$BATS_TEST_DIRNAME/../share/doc/protocol.md"

setup() {
	mkdir -p "$BATS_TEST_TMPDIR/keys"
	for k in alice bob node; do
		cp "$FIX/keys/$k.key" "$BATS_TEST_TMPDIR/keys/"
		chmod 600 "$BATS_TEST_TMPDIR/keys/$k.key"
	done
}

# the text of section 15 after its heading and introduction
examples_in_spec() {
	sed -n '/^### 15\.1 /,$p' "$SPEC" | trim
}

# drop trailing blank lines
trim() {
	awk 'NF { last = NR } { l[NR] = $0 } END { for (i = 1; i <= last; i++) print l[i] }'
}

@test "spec: section 15 is exactly what share/doc/examples.sh prints" {
	sh "$BATS_TEST_DIRNAME/../share/doc/examples.sh" "$BATS_TEST_TMPDIR/keys" | trim >"$BATS_TEST_TMPDIR/gen"
	examples_in_spec >"$BATS_TEST_TMPDIR/doc"
	diff -u "$BATS_TEST_TMPDIR/doc" "$BATS_TEST_TMPDIR/gen"
}

@test "spec: every signed object in the examples verifies" {
	# each json example line; signed objects may sit in params of a message
	awk '/^```json example/ { on = 1; next } /^```/ { on = 0 } on' "$SPEC" >"$BATS_TEST_TMPDIR/blocks"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/blocks")" -ge 15 ]
	jq -c '.. | objects | select(has("sig"))' "$BATS_TEST_TMPDIR/blocks" >"$BATS_TEST_TMPDIR/signed"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/signed")" -ge 10 ]
	# once each: an envelope shown twice is a repeated seq
	run -0 --separate-stderr ns-verify < <(awk '!seen[$0]++' "$BATS_TEST_TMPDIR/signed")
	[ -z "$stderr" ]
	# and the envelopes, as a stream, form one hash chain
	jq -c '.. | objects | select(.type? == "envelope")' "$BATS_TEST_TMPDIR/blocks" | awk '!seen[$0]++' >"$BATS_TEST_TMPDIR/envs"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/envs")" -eq 3 ]
	run -0 ns-verify <"$BATS_TEST_TMPDIR/envs"
}

@test "spec: every error code in the table is the code the node uses" {
	for r in parse_error invalid_request method_not_found invalid_params internal unauthenticated bad_sig forbidden not_found gone conflict too_large busy bad_event unreachable; do
		grep -q "| \`$r\` |" "$SPEC" || { echo "missing $r"; return 1; }
		code=$(grep "| \`$r\` |" "$SPEC" | sed 's/^| \(-[0-9]*\) .*/\1/')
		grep -q "{ $code, \"$r\" }" "$BATS_TEST_DIRNAME/../common/bus.c" || { echo "$r: $code not in common/bus.c"; return 1; }
	done
}
