#!/usr/bin/env bats
# ns-sign: signing JSON objects (canonical form cases are in canon.bats)

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$FIX/keys/bob.key")
}

hex2bin() { printf '%s' "$1" | xxd -r -p; }
b64url_hex() { printf '%s' "$1" | xxd -r -p | basenc --base64url | tr -d '=\n'; }

@test "ns-sign: RFC 8032 vectors sign to the published signatures (--raw)" {
	n=$(jq '.vectors | length' "$FIX/ed25519-rfc8032.json")
	[ "$n" -eq 5 ]
	for i in $(seq 0 $((n - 1))); do
		v=$(jq -c ".vectors[$i]" "$FIX/ed25519-rfc8032.json")
		seed=$(jq -r .secret_key_seed_hex <<<"$v")
		ns-keygen --seed "$seed" -o "$BATS_TEST_TMPDIR/k$i" >/dev/null
		want=$(b64url_hex "$(jq -r .signature_hex <<<"$v")")
		got=$(hex2bin "$(jq -r .message_hex <<<"$v")" | ns-sign -k "$BATS_TEST_TMPDIR/k$i" --raw)
		[ "$got" = "$want" ] || { echo "vector $i: $got != $want"; return 1; }
	done
}

@test "ns-sign: adds author, ts and sig; output is one canonical line" {
	run -0 --separate-stderr ns-sign -k "$ALICE" --ts 1700000000000 <<<'{"type":"beam","title":"hi"}'
	assert_jq ".author == \"$ALICE_DID\" and .ts == 1700000000000 and (.sig | test(\"^[A-Za-z0-9_-]{86}$\"))"
	[ "$(printf '%s\n' "$output" | ns-sign --canonical)" = "$output" ]
}

@test "ns-sign: output verifies and is deterministic" {
	a=$(ns-sign -k "$ALICE" --ts 5 <<<'{"type":"x","n":1}')
	b=$(ns-sign -k "$ALICE" --ts 5 <<<'{"n":1,"type":"x"}')
	[ "$a" = "$b" ]
	run -0 ns-verify <<<"$a"
	[ "$output" = "$a" ]
}

@test "ns-sign: the signature covers the canonical bytes without sig" {
	signed=$(ns-sign -k "$ALICE" --ts 7 <<<'{"type":"x","b":[1,2],"a":"é"}')
	sig=$(jq -r .sig <<<"$signed")
	jq -c 'del(.sig)' <<<"$signed" | ns-sign --canonical | head -c -1 >"$BATS_TEST_TMPDIR/m"
	run -0 ns-verify --raw "$ALICE_DID" "$sig" <"$BATS_TEST_TMPDIR/m"
	printf ' ' >>"$BATS_TEST_TMPDIR/m"
	run -1 ns-verify --raw "$ALICE_DID" "$sig" <"$BATS_TEST_TMPDIR/m"
}

@test "ns-sign: keeps ts and a matching author, replaces an old sig" {
	run -0 ns-sign -k "$ALICE" <<<"{\"type\":\"x\",\"ts\":42,\"author\":\"$ALICE_DID\",\"sig\":\"old\"}"
	assert_jq '.ts == 42 and .sig != "old"'
	printf '%s\n' "$output" | ns-verify >/dev/null
}

@test "ns-sign: NS_NOW fixes the time stamp" {
	run -0 env NS_NOW=1234 ns-sign -k "$ALICE" <<<'{"type":"x"}'
	assert_jq '.ts == 1234'
}

@test "ns-sign: another author is refused, the next value still signed" {
	run -1 --separate-stderr ns-sign -k "$ALICE" <<<"{\"type\":\"x\",\"author\":\"$BOB_DID\"}
{\"type\":\"y\"}"
	assert_match 'line 1: author is another DID'  "$stderr"
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ]
	assert_jq '.type == "y"'
}

@test "ns-sign: bad input gets a line number and reason, good input goes on" {
	printf '%s\n' '{"type":"a"}' 'not json' '[1,2]' '{"a":1,"a":2}' '{"type":"b"' '{"type":"c"}' >"$BATS_TEST_TMPDIR/in"
	printf '\xff\xfe\n{"type":"d"}\n' >>"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-sign -k "$ALICE" <"$BATS_TEST_TMPDIR/in"
	[ "$(printf '%s\n' "$output" | jq -r .type | tr '\n' ' ')" = "a c d " ]
	assert_match 'ns-sign: line 2: ' "$stderr"
	assert_match 'ns-sign: line 3: not a JSON object' "$stderr"
	assert_match 'ns-sign: line 4: duplicate key' "$stderr"
	assert_match 'ns-sign: line 5: truncated' "$stderr"
	assert_match 'ns-sign: line 7: .*UTF-8' "$stderr"
}

@test "ns-sign: pretty-printed values are read whole" {
	run -0 ns-sign -k "$ALICE" --ts 1 <<<'{
  "type": "beam",
  "body": "two\nlines"
}
{"type":"second"}'
	[ "${#lines[@]}" -eq 2 ]
	assert_jq '.body == "two\nlines"' "${lines[0]}"
}

@test "ns-sign: a value over --max-size is refused, the next one signed" {
	big=$(head -c 3000 /dev/zero | tr '\0' a)
	run -1 --separate-stderr ns-sign -k "$ALICE" --max-size 1000 <<<"{\"type\":\"x\",\"b\":\"$big\"}
{\"type\":\"small\"}"
	assert_match 'line 1: value too large' "$stderr"
	assert_jq '.type == "small"'
}

@test "ns-sign: key file readable by others is refused with exit 2" {
	chmod 644 "$ALICE"
	run -2 --separate-stderr ns-sign -k "$ALICE" <<<'{"type":"x"}'
	assert_match 'readable by others' "$stderr"
	[ -z "$output" ]
}

@test "ns-sign: missing key file and usage errors exit 2" {
	run -2 --separate-stderr ns-sign -k "$BATS_TEST_TMPDIR/none" </dev/null
	assert_match 'ns-sign: .*No such file' "$stderr"
	run -2 ns-sign </dev/null
	run -2 ns-sign -k "$ALICE" --canonical </dev/null
	run -2 ns-sign --bogus </dev/null
	run -2 ns-sign -k "$ALICE" --ts soon </dev/null
	run -0 ns-sign --help
	assert_match 'usage: ns-sign'
	run -0 ns-sign --version
	assert_match '^ns-sign [0-9]'
}

@test "ns-sign: empty input exits 0 with no output" {
	run -0 ns-sign -k "$ALICE" </dev/null
	[ -z "$output" ]
}
