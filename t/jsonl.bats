#!/usr/bin/env bats
# common/jsonl: the getters every program reads untrusted JSON with.  A
# string with a NUL inside is no string (C would see a shorter one), and an
# integer is one only within +-(2^53 - 1).  Driven through ns-sign,
# ns-verify and ns-log.

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	export NS_NOW=1767225600000
	ALICE=$(fixture_key alice)
	NODEK=$(fixture_key node)
	ALICE_DID=$(jq -r .did "$ALICE")
	NODE_DID=$(jq -r .did "$NODEK")
	CH="channel/${ALICE_DID#did:key:}/general"
}

# raw_sign KEY JSON: JSON with a sig by KEY over its canonical form, made
# without ns-sign's checks of the author.
raw_sign() {
	local sig
	sig=$(jq -c 'del(.sig)' <<<"$2" | ns-sign --canonical | head -c -1 |
	    ns-sign -k "$1" --raw)
	jq -c --arg s "$sig" '. + {sig: $s}' <<<"$2"
}

@test "jsonl: an author with \\u0000 and junk after alice's DID is not alice" {
	obj=$(jq -cn --arg a "$ALICE_DID" '{type:"beam",author:($a + "\u0000junk"),ts:1}')
	# ns-sign does not take it for the key's DID
	run -1 --separate-stderr ns-sign -k "$ALICE" <<<"$obj"
	[ -z "$output" ]
	assert_match "author" "$stderr"
	# signed by alice over every byte, it still does not verify as hers
	signed=$(raw_sign "$ALICE" "$obj")
	[[ $signed == *'\u0000junk'* ]]
	run -1 --separate-stderr ns-verify <<<"$signed"
	[ -z "$output" ]
	assert_match "line 1: signer DID is not a string" "$stderr"
	# the same without the junk verifies: the NUL alone was the trouble
	run -0 ns-verify <<<"$(raw_sign "$ALICE" "$(jq -c --arg a "$ALICE_DID" '.author = $a' <<<"$obj")")"
}

@test "jsonl: a bus DID with \\u0000 inside is no DID to ns-verify --bus" {
	ev=$(ns-sign -k "$ALICE" <<<"{\"type\":\"space.leave\",\"space\":\"$CH\"}")
	req=$(jq -cn --arg d "$ALICE_DID" --argjson e "$ev" \
	    '{m:"space.leave",c:3,did:($d + "\u0000x"),role:"client",id:1,p:{event:$e}}')
	run -0 --separate-stderr ns-verify --bus <<<"$req"
	assert_jq '.msg.error.data.reason == "forbidden"'
}

@test "jsonl: ns-log refuses a space id with \\u0000 inside" {
	db=$BATS_TEST_TMPDIR/log.db
	req=$(jq -cn --arg d "$ALICE_DID" --arg s "$CH" \
	    '{m:"space.info",c:7,did:$d,role:"client",id:1,p:{space:($s + "\u0000")}}')
	run -0 --separate-stderr ns-log --bus -k "$NODEK" -d "$db" -a 127.0.0.1:7700 <<<"$req"
	assert_jq '.to == 7 and .msg.error.data.reason == "invalid_params"'
}

@test "jsonl: integers end at 2^53 - 1: --ts, ts, seq and after" {
	# ns-sign --ts takes the largest safe integer and no more
	run -0 ns-sign -k "$ALICE" --ts 9007199254740991 <<<'{"type":"x"}'
	assert_jq '.ts == 9007199254740991'
	run -0 ns-verify <<<"$output"
	run -2 --separate-stderr ns-sign -k "$ALICE" --ts 9007199254740992 <<<'{"type":"x"}'
	assert_match "ts" "$stderr"

	# 9007199254740993 parses to 2^53: not an integer any program takes
	ev=$(ns-sign -k "$ALICE" <<<"{\"type\":\"space.leave\",\"space\":\"$CH\",\"ts\":9007199254740993}")
	req=$(jq -cn --arg d "$ALICE_DID" --argjson e "$ev" \
	    '{m:"space.leave",c:3,did:$d,role:"client",id:1,p:{event:$e}}')
	run -0 --separate-stderr ns-verify --bus <<<"$req"
	assert_jq '.msg.error.data.reason == "bad_event"'
	assert_jq '.msg.error.message | test("ts")'

	# an envelope at seq 2^53
	env=$(raw_sign "$NODEK" "$(jq -cn --argjson e "$(ns-sign -k "$ALICE" <<<'{"type":"x"}')" \
	    --arg n "$NODE_DID" --arg s "$CH" \
	    '{type:"envelope",space:$s,seq:9007199254740992,prev:"AAAA",event:$e,node:$n,ts:1}')")
	run -1 --separate-stderr ns-verify <<<"$env"
	assert_match "seq is not a positive integer" "$stderr"

	# a history page after 2^53
	db=$BATS_TEST_TMPDIR/log.db
	create=$(ns-sign -k "$ALICE" <<<"$(jq -cn --arg s "$CH" --arg n "$NODE_DID" \
	    '{type:"space.create",space:$s,name:"x",node:$n,address:"127.0.0.1:7700"}')")
	{
		jq -cn --arg d "$ALICE_DID" --argjson e "$create" \
		    '{m:"space.create",c:7,did:$d,role:"client",id:1,p:{event:$e}}'
		for a in 9007199254740991 9007199254740992 9007199254740993; do
			printf '{"m":"space.history","c":7,"did":"%s","role":"client","id":"%s","p":{"space":"%s","after":%s}}\n' \
			    "$ALICE_DID" "$a" "$CH" "$a"
		done
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-log --bus -k "$NODEK" -d "$db" -a 127.0.0.1:7700 <"$BATS_TEST_TMPDIR/in"
	printf '%s\n' "$output" | jq -e -s 'map(select(.to == 7) | .msg) |
	    (map(select(.id == "9007199254740991"))[0].result.envelopes == []) and
	    (map(select(.id == "9007199254740992"))[0].error.data.reason == "invalid_params") and
	    (map(select(.id == "9007199254740993"))[0].error.data.reason == "invalid_params")' >/dev/null
}
