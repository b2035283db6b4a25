#!/usr/bin/env bats
# ns-keygen: key files, did:key, the public part, and every refusal.

load helpers/common
bats_require_minimum_version 1.5.0

# Seeds and DIDs of the fixture keys; the DIDs were derived apart from
# this code (OpenSSL for the key, a separate base58btc encoder).
ALICE_SEED=0101010101010101010101010101010101010101010101010101010101010101
ALICE_DID=did:key:z6Mkon3Necd6NkkyfoGoHxid2znGc59LU3K7mubaRcFbLfLX
BOB_DID=did:key:z6Mko9hTggMwjSTEaJaPUfE6tqcy2xvU6BnNq3e3o8qVBiyH

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
}

# hex_b64url HEX: the bytes HEX stands for, in base64url without padding.
hex_b64url() {
	# shellcheck disable=SC2059
	printf "$(printf '%s' "$1" | sed 's/../\\x&/g')" |
		basenc --base64url -w0 | tr -d '='
}

# seed_of DID: the seed that t/fixtures/didkey-seeds.tsv gives for DID.
seed_of() {
	awk -F '\t' -v d="$1" '$2 == d { print $1 }' "$FIX/didkey-seeds.tsv"
}

# keyfile_with FILTER: alice's key file run through jq FILTER, mode 0600;
# prints its path.
keyfile_with() {
	local f="$BATS_TEST_TMPDIR/edited.key"
	jq -c "$1" "$(fixture_key alice)" >"$f"
	chmod 600 "$f"
	printf '%s\n' "$f"
}

@test "ns-keygen: -o - prints a new key file with every field" {
	run -0 --separate-stderr ns-keygen -o -
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.type == "northstar.key" and .version == 1'
	assert_jq '.did | test("^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$")'
	assert_jq '.publicKey | test("^[A-Za-z0-9_-]{43}$")'
	assert_jq '.seed | test("^[0-9a-f]{64}$")'
	assert_jq 'keys == ["did","publicKey","seed","type","version"]'
}

@test "ns-keygen: without -o it makes no key and prints usage (exit 2)" {
	run -2 --separate-stderr ns-keygen
	[ -z "$output" ]
	[[ ${stderr_lines[0]} == "ns-keygen: -o FILE needed"* ]]
	[[ ${stderr_lines[1]} == "usage: ns-keygen [-f] -o FILE"* ]]
	run -2 --separate-stderr ns-keygen --seed "$ALICE_SEED"
	[ -z "$output" ]
	[[ $stderr != *"$ALICE_SEED"* ]]
}

@test "ns-keygen: -o - never writes a secret to a terminal" {
	command -v script >/dev/null || skip "no script(1)"
	# script runs it with stdout on a pseudo-terminal, and exits with its
	# status
	run -2 script -qec "ns-keygen -o - --seed $ALICE_SEED" /dev/null
	[[ $output == *"ns-keygen: -o -: refusing to write a secret key to a terminal"* ]]
	[[ $output != *'"seed"'* ]]
	[[ $output != *"$ALICE_SEED"* ]]
	# into a pipe or a file it is the key file, and only that
	run -0 script -qec "ns-keygen -o - --seed $ALICE_SEED | jq -r .did" /dev/null
	[[ $output == *"$ALICE_DID"* ]]
	ns-keygen -o - >k.json
	assert_jq '.seed | test("^[0-9a-f]{64}$")' "$(cat k.json)"
}

@test "ns-keygen: fresh keys differ" {
	run -0 ns-keygen -o -
	local first=$output
	run -0 ns-keygen -o -
	[ "$(jq -r .seed <<<"$first")" != "$(jq -r .seed <<<"$output")" ]
	[ "$(jq -r .did <<<"$first")" != "$(jq -r .did <<<"$output")" ]
}

@test "ns-keygen: --seed is deterministic" {
	run -0 --separate-stderr ns-keygen -o - --seed "$ALICE_SEED"
	local first=$output
	run -0 --separate-stderr ns-keygen -o - --seed "$ALICE_SEED"
	[ "$output" = "$first" ]
	assert_jq ".seed == \"$ALICE_SEED\" and .did == \"$ALICE_DID\""
}

@test "ns-keygen: --seed - reads the seed from stdin" {
	run -0 --separate-stderr ns-keygen -o - --seed - <<<"$ALICE_SEED"
	assert_jq ".did == \"$ALICE_DID\""
	run -0 --separate-stderr ns-keygen -o - --seed - < <(printf %s "$ALICE_SEED")
	assert_jq ".did == \"$ALICE_DID\""
	run -2 --separate-stderr ns-keygen -o - --seed - < <(printf '%s\n\n' "$ALICE_SEED")
	[ -z "$output" ]
	run -2 --separate-stderr ns-keygen -o - --seed - </dev/null
	[[ $stderr == *"64 hex digits"* ]]
}

@test "ns-keygen: RFC 8032 seeds give the RFC public keys and their DIDs" {
	local n=0 seed pk did
	while IFS=$'\t' read -r seed pk; do
		run -0 --separate-stderr ns-keygen -o - --seed "$seed"
		assert_jq ".publicKey == \"$(hex_b64url "$pk")\""
		did=$(awk -F '\t' -v s="$seed" '$1 == s { print $2 }' \
			"$FIX/didkey-seeds.tsv")
		[ -n "$did" ]
		assert_jq ".did == \"$did\""
		n=$((n + 1))
	done < <(jq -r '.vectors[] | [.secret_key_seed_hex, .public_key_hex] | @tsv' \
		"$FIX/ed25519-rfc8032.json")
	[ "$n" -eq 5 ]
}

@test "ns-keygen: W3C did:key vectors round trip through a key file" {
	local n=0 did pk seed
	while IFS=$'\t' read -r did pk; do
		seed=$(seed_of "$did")
		[ -n "$seed" ]
		run -0 --separate-stderr ns-keygen --seed "$seed" -o "k$n.key"
		assert_jq ".did == \"$did\" and .publicKey == \"$(hex_b64url "$pk")\""
		run -0 --separate-stderr ns-keygen -p "k$n.key"
		assert_jq ".did == \"$did\" and .publicKey == \"$(hex_b64url "$pk")\""
		n=$((n + 1))
	done <"$FIX/didkey-vectors.tsv"
	[ "$n" -eq 5 ]
}

@test "ns-keygen: fixture keys load and match their seeds" {
	local name b
	for name in alice:01 bob:02 carol:03 node:04; do
		b=${name#*:}
		run -0 --separate-stderr ns-keygen -p "$(fixture_key "${name%:*}")"
		local pub=$output
		run -0 ns-keygen -o - --seed "$(printf "$b%.0s" {1..32})"
		assert_jq ".did == $(jq .did <<<"$pub")"
		assert_jq ".publicKey == $(jq .publicKey <<<"$pub")"
	done
	run -0 ns-keygen -p "$(fixture_key alice)"
	assert_jq ".did == \"$ALICE_DID\""
	run -0 ns-keygen -p "$(fixture_key bob)"
	assert_jq ".did == \"$BOB_DID\""
}

@test "ns-keygen: -o writes the key file with mode 0600 and prints the public part" {
	run -0 --separate-stderr ns-keygen --seed "$ALICE_SEED" -o a.key
	[ -z "$stderr" ]
	assert_jq "keys == [\"did\",\"publicKey\"] and .did == \"$ALICE_DID\""
	[ "$(stat -c %a a.key)" = 600 ]
	[ "$(cat a.key)" = "$(ns-keygen -o - --seed "$ALICE_SEED")" ]
	[ "$(tail -c 1 a.key | od -An -c | tr -d ' ')" = '\n' ]
	(umask 000 && ns-keygen -o b.key >/dev/null)
	[ "$(stat -c %a b.key)" = 600 ]
}

@test "ns-keygen: -o refuses to overwrite an existing file without -f" {
	echo precious >a.key
	run -2 --separate-stderr ns-keygen -o a.key
	[ -z "$output" ]
	[[ $stderr == "ns-keygen: a.key already exists"* ]]
	[[ $stderr == *"-f"* ]]
	[ "$(cat a.key)" = precious ]
}

@test "ns-keygen: -f overwrites with mode 0600 and leaves no temporary file" {
	echo precious >a.key
	chmod 644 a.key
	run -0 --separate-stderr ns-keygen -f --seed "$ALICE_SEED" -o a.key
	assert_jq ".did == \"$ALICE_DID\""
	[ "$(stat -c %a a.key)" = 600 ]
	assert_jq ".did == \"$ALICE_DID\"" "$(cat a.key)"
	[ -z "$(find . -name 'a.key?*')" ]
	run -0 ns-keygen -f -o fresh.key
	[ -f fresh.key ]
}

@test "ns-keygen: -o into a missing directory exits 2" {
	run -2 --separate-stderr ns-keygen -o nodir/a.key
	[[ $stderr == "ns-keygen: create nodir/a.key: No such file or directory" ]]
	run -2 --separate-stderr ns-keygen -f -o nodir/a.key
	[[ $stderr == "ns-keygen: create nodir/a.key."*": No such file or directory" ]]
}

@test "ns-keygen: -p on a 0644 key file exits 2 with readable by others" {
	local k
	k=$(fixture_key alice)
	chmod 644 "$k"
	run -2 --separate-stderr ns-keygen -p "$k"
	[ -z "$output" ]
	[[ $stderr == "ns-keygen: key file $k is readable by others (mode 0644); chmod 600 $k" ]]
	chmod 620 "$k"
	run -2 --separate-stderr ns-keygen -p "$k"
	[[ $stderr == *"(mode 0620)"* ]]
}

@test "ns-keygen: -p on a missing file exits 2" {
	run -2 --separate-stderr ns-keygen -p nosuch.key
	[ -z "$output" ]
	[ "$stderr" = "ns-keygen: open nosuch.key: No such file or directory" ]
}

@test "ns-keygen: -p on a directory exits 2" {
	mkdir d
	chmod 700 d
	run -2 --separate-stderr ns-keygen -p d
	[[ $stderr == *"not a regular file"* ]]
}

@test "ns-keygen: -p on a non-JSON file exits 2" {
	printf 'seed = 0101\n' >bad.key
	chmod 600 bad.key
	run -2 --separate-stderr ns-keygen -p bad.key
	[ "$stderr" = "ns-keygen: key file bad.key is not a JSON object" ]
	printf '[1]\n' >bad.key
	run -2 --separate-stderr ns-keygen -p bad.key
	[[ $stderr == *"not a JSON object"* ]]
	: >bad.key
	run -2 --separate-stderr ns-keygen -p bad.key
	[[ $stderr == *"not a JSON object"* ]]
	cat "$(fixture_key alice)" "$(fixture_key bob)" >bad.key
	run -2 --separate-stderr ns-keygen -p bad.key
	[[ $stderr == *"not a JSON object"* ]]
}

@test "ns-keygen: -p on a key file over 4 KiB exits 2" {
	keyfile_with ".pad = \"$(printf 'x%.0s' {1..4200})\"" >/dev/null
	run -2 --separate-stderr ns-keygen -p edited.key
	[[ $stderr == *"too big"* ]]
}

@test "ns-keygen: -p on a file with a wrong did exits 2" {
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with ".did = \"$BOB_DID\"")"
	[ -z "$output" ]
	[[ $stderr == *"did does not match seed" ]]
	[[ $stderr != *"$ALICE_SEED"* ]]
}

@test "ns-keygen: -p on a file with a wrong publicKey exits 2" {
	local bobpk
	bobpk=$(jq -r .publicKey "$FIX/keys/bob.key")
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with ".publicKey = \"$bobpk\"")"
	[[ $stderr == *"publicKey does not match seed" ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.publicKey += "="')"
	[[ $stderr == *"publicKey is not base64url"* ]]
}

@test "ns-keygen: -p names the reason an invalid did:key is refused" {
	local n=0 did why
	while IFS=$'\t' read -r did why; do
		run -2 --separate-stderr ns-keygen -p "$(keyfile_with ".did = \"$did\"")"
		[[ $stderr == *"did: "*"$why"* ]] || {
			echo "$did: $stderr" >&2
			return 1
		}
		n=$((n + 1))
	done <"$FIX/didkey-invalid.tsv"
	[ "$n" -ge 10 ]
}

@test "ns-keygen: -p accepts a key file with only type, version and seed" {
	run -0 --separate-stderr ns-keygen -p "$(keyfile_with '{type, version, seed}')"
	assert_jq ".did == \"$ALICE_DID\""
}

@test "ns-keygen: -p refuses a missing or malformed seed, type or version" {
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with 'del(.seed)')"
	[[ $stderr == *": no seed" ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.seed |= .[1:]')"
	[[ $stderr == *"seed is not 64 hex digits" ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.seed |= .[1:] + "g"')"
	[[ $stderr == *"seed is not 64 hex digits" ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.seed = 1')"
	[[ $stderr == *"seed is not a string" ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.type = "other"')"
	[[ $stderr == *"type is not"* ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.version = 2')"
	[[ $stderr == *"unsupported version"* ]]
	run -2 --separate-stderr ns-keygen -p "$(keyfile_with '.did = 7')"
	[[ $stderr == *"did is not a string" ]]
}

@test "ns-keygen: --seed with 63 hex digits or non-hex exits 2" {
	local s
	for s in "${ALICE_SEED:1}" "${ALICE_SEED}0" "${ALICE_SEED:1}g" \
	    "0x${ALICE_SEED:2}" "" "${ALICE_SEED:2} 1"; do
		run -2 --separate-stderr ns-keygen -o - --seed "$s"
		[ -z "$output" ]
		[ "$stderr" = "ns-keygen: --seed: want 64 hex digits (32 bytes)" ]
	done
}

@test "ns-keygen: --help prints usage on stdout and exits 0" {
	run -0 --separate-stderr ns-keygen --help
	[ -z "$stderr" ]
	[[ ${lines[0]} == "usage: ns-keygen [-f] -o FILE [--seed HEX64 | --seed -]" ]]
	[[ ${lines[1]} == *"ns-keygen -p FILE" ]]
	run -0 --separate-stderr ns-keygen -h
	[[ ${lines[0]} == "usage: ns-keygen"* ]]
}

@test "ns-keygen: --version prints the version" {
	run -0 --separate-stderr ns-keygen --version
	[[ $output =~ ^ns-keygen\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "ns-keygen: an unknown option exits 2 with usage on stderr" {
	run -2 --separate-stderr ns-keygen --bogus
	[ -z "$output" ]
	[[ $stderr == "ns-keygen: unknown option --bogus"* ]]
	[[ $stderr == *"usage: ns-keygen"* ]]
	run -2 --separate-stderr ns-keygen -z
	[[ $stderr == "ns-keygen: unknown option -z"* ]]
	run -2 --separate-stderr ns-keygen --seed
	[[ $stderr == "ns-keygen: option --seed needs an argument"* ]]
}

@test "ns-keygen: conflicting options and operands exit 2" {
	run -2 --separate-stderr ns-keygen -p "$(fixture_key alice)" -o x.key
	[[ $stderr == "ns-keygen: -p takes no other option"* ]]
	run -2 --separate-stderr ns-keygen -p "$(fixture_key alice)" --seed "$ALICE_SEED"
	[ -z "$output" ]
	run -2 --separate-stderr ns-keygen -f
	[[ $stderr == "ns-keygen: -f needs -o FILE"* ]]
	run -2 --separate-stderr ns-keygen -f -o -
	[[ $stderr == "ns-keygen: -f needs -o FILE"* ]]
	run -2 --separate-stderr ns-keygen extra
	[[ $stderr == "ns-keygen: unexpected argument"* ]]
	[ ! -e x.key ]
}
