#!/usr/bin/env bats
# ns-verify: the signature gate, alone and in --bus mode

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	NODE=$(fixture_key node)
	ALICE_DID=$(jq -r .did "$ALICE")
	NODE_DID=$(jq -r .did "$NODE")
	SIGNED=$(ns-sign -k "$ALICE" --ts 1700000000000 <<<'{"type":"beam","title":"hello","body":"world"}')
}

# Sign as the node: "node" is the signer when there is no "author".
node_sign() {
	local obj; obj=$(cat)
	local canon sig
	canon=$(jq -c 'del(.sig)' <<<"$obj" | ns-sign --canonical | head -c -1)
	sig=$(printf '%s' "$canon" | ns-sign -k "$NODE" --raw)
	jq -c --arg s "$sig" '. + {sig:$s}' <<<"$obj"
}

mkenv() {
	jq -cn --argjson seq "$1" --argjson prev "$2" --argjson ev "$3" --arg node "$NODE_DID" \
		'{type:"envelope",space:"channel/z/x",seq:$seq,prev:$prev,event:$ev,node:$node,ts:1}' | node_sign
}

@test "ns-verify: a good object passes unchanged, exit 0" {
	run -0 --separate-stderr ns-verify <<<"$SIGNED"
	[ "$output" = "$SIGNED" ]
	[ -z "$stderr" ]
}

@test "ns-verify: one changed byte in body, author or sig fails with exit 1" {
	body=${SIGNED/world/worle}
	other=$(jq -c --arg d "$(jq -r .did "$FIX/keys/bob.key")" '.author = $d' <<<"$SIGNED")
	s=$(jq -r .sig <<<"$SIGNED")
	c=${s:10:1}; [ "$c" = A ] && r=B || r=A
	sig=$(jq -c --arg s "${s:0:10}$r${s:11}" '.sig = $s' <<<"$SIGNED")
	for bad in "$body" "$other" "$sig"; do
		run -1 --separate-stderr ns-verify <<<"$bad"
		[ -z "$output" ]
		assert_match 'ns-verify: line 1: signature does not verify' "$stderr"
	done
}

@test "ns-verify: bad lines are reported with their line number, good ones pass" {
	printf '%s\n' "$SIGNED" 'garbage' "${SIGNED/hello/HELLO}" '{"type":"x"}' "$SIGNED" >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	assert_match 'line 2: ' "$stderr"
	assert_match 'line 3: signature does not verify' "$stderr"
	assert_match 'line 4: missing sig' "$stderr"
	run -1 ns-verify -q <"$BATS_TEST_TMPDIR/in"
}

@test "ns-verify: malformed signer and signature fields get reasons" {
	run -1 --separate-stderr ns-verify <<<"$(jq -c '.author = "did:key:zQ3s"' <<<"$SIGNED")"
	assert_match 'line 1: ' "$stderr"
	run -1 --separate-stderr ns-verify <<<"$(jq -c '.author = 5' <<<"$SIGNED")"
	assert_match 'not a string' "$stderr"
	run -1 --separate-stderr ns-verify <<<"$(jq -c '.sig = "abc"' <<<"$SIGNED")"
	assert_match 'not base64url of 64 bytes' "$stderr"
	run -1 --separate-stderr ns-verify <<<"$(jq -c 'del(.author)' <<<"$SIGNED")"
	assert_match 'missing author' "$stderr"
	run -1 --separate-stderr ns-verify <<<"$(jq -c '.author = "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc"' <<<"$SIGNED")"
	assert_match 'not an Ed25519 key' "$stderr"
}

@test "ns-verify: a pretty-printed object passes as one canonical line" {
	run -0 ns-verify < <(jq . <<<"$SIGNED")
	[ "${#lines[@]}" -eq 1 ]
	[ "$output" = "$SIGNED" ]
}

@test "ns-verify: envelopes: node signature, inner event and hash chain" {
	e1=$(mkenv 1 null "$SIGNED")
	h1=$(ns-sign --canonical <<<"$e1" | head -c -1 | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')
	e2=$(mkenv 2 "\"$h1\"" "$SIGNED")
	run -0 --separate-stderr ns-verify <<<"$e1
$e2"
	[ "${#lines[@]}" -eq 2 ]
	# a wrong prev breaks the chain
	bad=$(mkenv 2 '"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"' "$SIGNED")
	run -1 --separate-stderr ns-verify <<<"$e1
$bad"
	assert_match 'line 2: hash chain broken' "$stderr"
	# a forged inner event fails even though the node signed it
	forged=$(mkenv 1 null "${SIGNED/world/w0rld}")
	run -1 --separate-stderr ns-verify <<<"$forged"
	assert_match 'event signature does not verify' "$stderr"
	# a changed envelope member
	run -1 --separate-stderr ns-verify <<<"$(jq -c '.seq = 3' <<<"$e2")"
	assert_match 'envelope signature does not verify' "$stderr"
	# seq 1 with a prev
	run -1 --separate-stderr ns-verify <<<"$(mkenv 1 '"x"' "$SIGNED")"
	assert_match 'prev null' "$stderr"
}

@test "ns-verify: -j 2 gives the same output, in order, as one thread" {
	for i in $(seq 1 300); do
		printf '{"type":"beam","n":%d}\n' "$i"
	done | ns-sign -k "$ALICE" --ts 1 >"$BATS_TEST_TMPDIR/in"
	sed -i '150s/"n":150/"n":151/' "$BATS_TEST_TMPDIR/in"
	run -1 ns-verify -q -j 1 <"$BATS_TEST_TMPDIR/in"
	one=$output
	run -1 ns-verify -q -j 2 <"$BATS_TEST_TMPDIR/in"
	[ "$output" = "$one" ]
	[ "${#lines[@]}" -eq 299 ]
}

@test "ns-verify: --bus passes good requests and foreign lines unchanged" {
	ev=$(ns-sign -k "$ALICE" <<<'{"type":"space.join","space":"channel/z/x"}')
	req=$(jq -c --arg d "$ALICE_DID" --argjson ev "$ev" -n '{m:"space.join",c:3,did:$d,role:"client",id:9,p:{event:$ev}}')
	printf '%s\n' "$req" '{"to":3,"msg":{"a":1}}' '{"m":"tick","now":1}' >"$BATS_TEST_TMPDIR/in"
	run -0 ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "$output" = "$(cat "$BATS_TEST_TMPDIR/in")" ]
}

@test "ns-verify: --bus answers a forged event with bad_sig to its sender" {
	ev=$(ns-sign -k "$ALICE" <<<'{"type":"space.join","space":"channel/z/x"}')
	ev=${ev/space.join/space.leave}
	req=$(jq -c --arg d "$ALICE_DID" --argjson ev "$ev" -n '{m:"space.join",c:3,did:$d,role:"client",id:"q1",p:{event:$ev}}')
	run -0 --separate-stderr ns-verify --bus <<<"$req"
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.to == 3 and .msg.id == "q1" and .msg.error.code == -32002 and .msg.error.data.reason == "bad_sig"'
	[[ "$output" == '{"to":3,"msg":'* ]]
}

@test "ns-verify: --bus refuses a client submitting another author's event" {
	ev=$(ns-sign -k "$ALICE" <<<'{"type":"space.join","space":"channel/z/x"}')
	req=$(jq -c --arg d "$(jq -r .did "$FIX/keys/bob.key")" --argjson ev "$ev" -n '{m:"space.join",c:4,did:$d,role:"client",id:1,p:{event:$ev}}')
	run -0 --separate-stderr ns-verify --bus <<<"$req"
	assert_jq '.msg.error.data.reason == "forbidden"'
}

@test "ns-verify: --bus drops a bad notification and checks envelopes" {
	e1=$(mkenv 1 null "${SIGNED/world/w0rld}")
	n=$(jq -c --arg d "$NODE_DID" --argjson e "$e1" -n '{m:"node.broadcast",c:5,did:$d,role:"node",p:{envelope:$e}}')
	run -0 --separate-stderr ns-verify --bus <<<"$n"
	[ -z "$output" ]
	r=$(jq -c --arg d "$NODE_DID" --argjson e "$e1" -n '{m:"node.sync",c:5,did:$d,role:"node",id:2,p:{envelopes:[$e]}}')
	run -0 --separate-stderr ns-verify --bus <<<"$r"
	assert_jq '.msg.error.data.reason == "bad_sig"'
}

@test "ns-verify: usage" {
	run -0 ns-verify --help
	assert_match 'usage: ns-verify'
	run -2 ns-verify --nope
	run -2 ns-verify -j 1000
	run -2 ns-verify extra
	run -2 --separate-stderr ns-verify --raw not-a-did AAAA </dev/null
}
