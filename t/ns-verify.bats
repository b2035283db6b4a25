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

# mkenv SEQ PREV EVENT: an envelope of $SPACE (default channel/z/x).
mkenv() {
	jq -cn --argjson seq "$1" --argjson prev "$2" --argjson ev "$3" --arg node "$NODE_DID" \
		--arg s "${SPACE:-channel/z/x}" \
		'{type:"envelope",space:$s,seq:$seq,prev:$prev,event:$ev,node:$node,ts:1}' | node_sign
}

# envhash ENVELOPE: its id, the prev of the envelope after it.
envhash() {
	ns-sign --canonical <<<"$1" | head -c -1 | openssl dgst -sha256 -binary |
	    basenc --base64url | tr -d '='
}

# mklog SPACE N: envelopes 1 to N of SPACE, chained, one per line.
mklog() {
	local prev=null e i
	for i in $(seq 1 "$2"); do
		e=$(SPACE=$1 mkenv "$i" "$prev" "$SIGNED")
		printf '%s\n' "$e"
		prev="\"$(envhash "$e")\""
	done
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

@test "ns-verify: a DID checked once is not taken for another spelled almost like it" {
	# the good object first, so its DID is the last one decoded
	{
		printf '%s\n' "$SIGNED"
		jq -c --arg d "${ALICE_DID}x" '.author = $d' <<<"$SIGNED"
		jq -c --arg d "${ALICE_DID%?}" '.author = $d' <<<"$SIGNED"
		jq -c --arg d "did:key:z${ALICE_DID#did:key:z}0" '.author = $d' <<<"$SIGNED"
		printf '%s\n' "$SIGNED"
	} >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/in"
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 2 ]
	assert_match 'line 2: ' "$stderr"
	assert_match 'line 3: ' "$stderr"
	assert_match 'line 4: invalid base58btc character' "$stderr"
	[[ "$stderr" != *"line 5"* ]]
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

@test "ns-verify: a whole log passes; an envelope missing from the middle fails" {
	mklog channel/z/x 8 >"$BATS_TEST_TMPDIR/log"
	run -0 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/log"
	[ "${#lines[@]}" -eq 8 ]
	[ -z "$stderr" ]
	# every envelope verifies and every prev that can be checked matches,
	# but 4 to 6 are gone: the one after the hole passes, the log fails
	sed '4,6d' "$BATS_TEST_TMPDIR/log" >"$BATS_TEST_TMPDIR/holed"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/holed"
	[ "${#lines[@]}" -eq 5 ]
	[ "$stderr" = "ns-verify: line 4: channel/z/x: seq 4 to 6 missing" ]
	printf '%s\n' "$output" | jq -e -s 'map(.seq) == [1,2,3,7,8]' >/dev/null
	# one missing
	sed '5d' "$BATS_TEST_TMPDIR/log" >"$BATS_TEST_TMPDIR/holed"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/holed"
	[ "$stderr" = "ns-verify: line 5: channel/z/x: seq 5 missing" ]
	run -1 ns-verify -q <"$BATS_TEST_TMPDIR/holed"
	# the last one missing cannot be seen: the log simply ends earlier
	run -0 ns-verify <<<"$(head -n 7 "$BATS_TEST_TMPDIR/log")"
}

@test "ns-verify: a repeated or out-of-order seq fails and is left out" {
	mklog channel/z/x 3 >"$BATS_TEST_TMPDIR/log"
	mapfile -t e <"$BATS_TEST_TMPDIR/log"
	run -1 --separate-stderr ns-verify <<<"${e[0]}
${e[1]}
${e[1]}
${e[2]}"
	[ "${#lines[@]}" -eq 3 ]
	[ "$stderr" = "ns-verify: line 3: channel/z/x: seq 2 again" ]
	run -1 --separate-stderr ns-verify <<<"${e[0]}
${e[2]}
${e[1]}"
	[ "${#lines[@]}" -eq 2 ]
	assert_match "line 2: channel/z/x: seq 2 missing" "$stderr"
	assert_match "line 3: channel/z/x: seq 2 after seq 3: out of order" "$stderr"
	# another envelope with a seq that is taken: a fork
	fork=$(mkenv 2 "$(jq .prev <<<"${e[1]}")" "$(ns-sign -k "$ALICE" --ts 1 <<<'{"type":"beam","n":2}')")
	run -1 --separate-stderr ns-verify <<<"${e[0]}
${e[1]}
$fork"
	[ "$stderr" = "ns-verify: line 3: channel/z/x: a second envelope at seq 2" ]
}

@test "ns-verify: two spaces interleaved are checked each on its own" {
	mklog channel/z/a 4 >"$BATS_TEST_TMPDIR/a"
	mklog dm/z/b 4 >"$BATS_TEST_TMPDIR/b"
	paste -d '\n' "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" >"$BATS_TEST_TMPDIR/ab"
	run -0 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/ab"
	[ "${#lines[@]}" -eq 8 ]
	[ -z "$stderr" ]
	# b loses its seq 3 (line 6): only b fails, at its seq 4 (line 7)
	sed '6d' "$BATS_TEST_TMPDIR/ab" >"$BATS_TEST_TMPDIR/holed"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/holed"
	[ "${#lines[@]}" -eq 7 ]
	[ "$stderr" = "ns-verify: line 7: dm/z/b: seq 3 missing" ]
	# a's seq 2 with b's seq 1 as prev: the chains do not mix
	swapped=$(SPACE=channel/z/a mkenv 2 "\"$(envhash "$(head -n 1 "$BATS_TEST_TMPDIR/b")")\"" "$SIGNED")
	run -1 --separate-stderr ns-verify <<<"$(sed -n 1,2p "$BATS_TEST_TMPDIR/ab")
$swapped"
	assert_match "line 3: hash chain broken" "$stderr"
}

@test "ns-verify: a log from seq 5 gets a notice and passes; --from-start fails it" {
	mklog channel/z/x 8 | tail -n 4 >"$BATS_TEST_TMPDIR/page"
	run -0 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/page"
	[ "${#lines[@]}" -eq 4 ]
	[ "$stderr" = "ns-verify: line 1: channel/z/x: the log starts at seq 5: checked from there on" ]
	run -0 --separate-stderr ns-verify -q <"$BATS_TEST_TMPDIR/page"
	[ -z "$stderr" ]
	# from there on it is checked as ever
	run -1 --separate-stderr ns-verify <<<"$(sed 2d "$BATS_TEST_TMPDIR/page")"
	assert_match "line 2: channel/z/x: seq 6 missing" "$stderr"
	# the whole log asked for
	run -1 --separate-stderr ns-verify --from-start <"$BATS_TEST_TMPDIR/page"
	[ "${#lines[@]}" -eq 4 ]
	[ "$stderr" = "ns-verify: line 1: channel/z/x: seq 1 to 4 missing" ]
	run -0 ns-verify -s <<<"$(mklog channel/z/x 2)"
}

@test "ns-verify: every envelope of a space is signed by the same node" {
	e1=$(mkenv 1 null "$SIGNED")
	e2=$(jq -cn --arg p "$(envhash "$e1")" --arg a "$ALICE_DID" --argjson ev "$SIGNED" \
	    '{type:"envelope",space:"channel/z/x",seq:2,prev:$p,event:$ev,node:$a,ts:1}' |
	    NODE=$ALICE node_sign)
	run -0 ns-verify <<<"$e2"
	run -1 --separate-stderr ns-verify <<<"$e1
$e2"
	[ "${#lines[@]}" -eq 1 ]
	[ "$stderr" = "ns-verify: line 2: channel/z/x: seq 2 is signed by another node than seq 1" ]
}

@test "ns-verify: a forged envelope in its place is reported once" {
	mklog channel/z/x 4 | jq -c 'if .seq == 2 then .ts = 2 else . end' >"$BATS_TEST_TMPDIR/log"
	run -1 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/log"
	[ "${#lines[@]}" -eq 3 ]
	[ "$stderr" = "ns-verify: line 2: envelope signature does not verify" ]
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

# busreq METHOD DID ROLE ID EVENT: a request line carrying EVENT.
busreq() {
	jq -cn --arg m "$1" --arg d "$2" --arg r "$3" --argjson id "$4" --argjson e "$5" \
	    '{m:$m,c:3,did:$d,role:$r,id:$id,p:{event:$e}}'
}

# raw_sign KEY JSON: JSON signed by KEY as it is, whatever its author.
raw_sign() {
	local sig
	sig=$(jq -c 'del(.sig)' <<<"$2" | ns-sign --canonical | head -c -1 |
	    ns-sign -k "$1" --raw)
	jq -c --arg s "$sig" '. + {sig: $s}' <<<"$2"
}

@test "ns-verify: --bus answers a malformed event bad_event, a bad signature bad_sig" {
	leave='{"type":"space.leave","space":"channel/z/x"}'
	{
		# the shape is wrong: bad_event, whatever the signature
		busreq space.leave "$ALICE_DID" client 1 "$(ns-sign -k "$ALICE" <<<'{"type":"space.leave","space":"channel/z/x","ts":1.5}')"
		busreq space.leave "$ALICE_DID" client 2 "$(ns-sign -k "$ALICE" <<<'{"type":"space.leave","space":"channel/z/x","ts":"1"}')"
		busreq space.leave "$ALICE_DID" client 3 "$(ns-sign -k "$ALICE" <<<'{"space":"channel/z/x"}')"
		busreq space.leave "$ALICE_DID" client 4 "$(raw_sign "$ALICE" '{"type":"space.leave","author":"alice","ts":1}')"
		busreq space.leave "$ALICE_DID" client 5 "$(raw_sign "$ALICE" '{"type":"space.leave","author":5,"ts":1}')"
		busreq space.leave "$ALICE_DID" client 6 "$(raw_sign "$ALICE" '{"type":"space.leave","ts":1}')"
		busreq space.leave "$ALICE_DID" client 7 "$(raw_sign "$ALICE" '{"type":7,"author":"'"$ALICE_DID"'","ts":1}')"
		busreq space.leave "$ALICE_DID" client 8 "$(ns-sign -k "$ALICE" <<<'{"type":"space.leave","ts":-1}')"
		# well formed, but the signature or its signer is not good: bad_sig
		busreq space.leave "$ALICE_DID" client 9 "$(ns-sign -k "$ALICE" <<<"$leave" | sed 's/channel/chanel/')"
		busreq space.leave "$ALICE_DID" client 10 "$(ns-sign -k "$ALICE" <<<"$leave" | jq -c '.sig = "abc"')"
		busreq space.leave "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme" client 11 \
		    "$(raw_sign "$ALICE" '{"type":"space.leave","author":"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme","ts":1}')"
		# not an object at all
		jq -cn --arg d "$ALICE_DID" '{m:"space.leave",c:3,did:$d,role:"client",id:12,p:{event:"sig"}}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 12 ]
	printf '%s\n' "$output" | jq -e -s '
	    map({key: (.msg.id | tostring), value: .msg.error}) | from_entries as $e |
	    ([range(1;9) | tostring | $e[.] | .code == -32009 and .data.reason == "bad_event"] | all) and
	    ([range(9;12) | tostring | $e[.] | .code == -32002 and .data.reason == "bad_sig"] | all) and
	    $e["12"].data.reason == "invalid_params" and
	    ($e["1"].message | test("ts")) and ($e["3"].message | test("type")) and
	    ($e["4"].message | test("did:key")) and ($e["9"].message | test("does not verify"))' >/dev/null
}

@test "ns-verify: --bus checks the same bytes whether an event comes canonical or not" {
	# canonical text has its signed bytes cut out of it, any other is
	# printed in canonical form first: the verdicts must agree
	ev=$(ns-sign -k "$ALICE" <<<'{"type":"space.join","space":"channel/z/x","note":"\u00e9\\u0001"}')
	rev='to_entries | reverse | from_entries'
	{
		busreq space.join "$ALICE_DID" client 1 "$ev"
		busreq space.join "$ALICE_DID" client 2 "$(jq -c "$rev" <<<"$ev")"
		# a byte changed before the sig, and after it
		busreq space.join "$ALICE_DID" client 3 "${ev/channel/chanel}"
		busreq space.join "$ALICE_DID" client 4 "${ev/space.join/space.jain}"
		busreq space.join "$ALICE_DID" client 5 "$(jq -c "$rev" <<<"${ev/channel/chanel}")"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 5 ]
	[ "${lines[0]}" = "$(sed -n 1p "$BATS_TEST_TMPDIR/in")" ]
	[ "${lines[1]}" = "$(sed -n 2p "$BATS_TEST_TMPDIR/in")" ]
	for i in 2 3 4; do
		assert_jq ".msg.id == $((i + 1)) and .msg.error.data.reason == \"bad_sig\"" "${lines[i]}"
	done
	# a node's answer is checked on the event in its result, whatever
	# else its params carry
	forged=$(jq -c --arg s "$(jq -r .sig <<<"$ev")" '.sig = $s' <<<"${ev/channel/chanel}")
	jq -cn --arg d "$NODE_DID" --argjson y "$ev" --argjson x "$forged" \
	    '{m:"rpc.response",c:3,r:5,did:$d,role:"node",p:{event:$y,id:1,jsonrpc:"2.0",result:{event:$x}}}' >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[[ "$output" != *'"m":"rpc.response"'* ]]
	[[ "$output" == *'"m":"peer.bad"'* ]]
}

@test "ns-verify: --bus gives a client's space.beam the verdicts of any other request" {
	# a canonical space.beam event is checked on its text as it stands:
	# every verdict must be the one the full parse gives
	ref='{"type":"beam.ref","space":"channel/z/x","beam":"beam/a/b","note":"\u00e9\\u0001"}'
	ev=$(ns-sign -k "$ALICE" <<<"$ref")
	sig=$(jq -r .sig <<<"$ev")
	rev='to_entries | reverse | from_entries'
	beamreq() {	# DID ROLE ID EVENT
		jq -cn --arg d "$1" --arg r "$2" --argjson id "$3" --argjson e "$4" \
		    '{m:"space.beam",c:1796010617000001,r:$id,did:$d,role:$r,id:$id,p:{beam:{title:"t"},event:$e}}'
	}
	{
		beamreq "$ALICE_DID" client 1 "$ev"
		beamreq "$ALICE_DID" client 2 "$(jq -c "$rev" <<<"$ev")"
		beamreq "$ALICE_DID" node 3 "$ev"
		# a byte changed before the sig, and after it; a sig of other bytes
		beamreq "$ALICE_DID" client 4 "${ev/beam\/a/beam\/c}"
		beamreq "$ALICE_DID" client 5 "${ev/channel/chanel}"
		c=A; [ "${sig:10:1}" != A ] || c=B
		beamreq "$ALICE_DID" client 6 "$(jq -c --arg s "${sig:0:10}$c${sig:11}" '.sig = $s' <<<"$ev")"
		beamreq "$ALICE_DID" client 7 "$(jq -c '.sig = "abc"' <<<"$ev")"
		# someone else's event; a bad shape
		beamreq "$(jq -r .did "$FIX/keys/bob.key")" client 8 "$ev"
		beamreq "$ALICE_DID" client 9 "$(jq -c '.ts = -1' <<<"$ev")"
		beamreq "$ALICE_DID" client 10 "$(jq -c '.type = 7' <<<"$ev")"
		beamreq "$ALICE_DID" client 11 "$(jq -c '.author = "alice"' <<<"$ev")"
		# no "sig" in the line at all: ns-log checks it
		beamreq "$ALICE_DID" client 12 "$(jq -c 'del(.sig)' <<<"$ev")"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 12 ]
	for i in 0 1 2 11; do
		[ "${lines[i]}" = "$(sed -n "$((i + 1))p" "$BATS_TEST_TMPDIR/in")" ]
	done
	printf '%s\n' "$output" | sed -n 4,11p | jq -e -s '
	    map({key: (.msg.id | tostring), value: .msg.error}) | from_entries as $e |
	    ([range(4;8) | tostring | $e[.] | .code == -32002 and .data.reason == "bad_sig"] | all) and
	    $e["4"].message == "signature does not verify" and
	    $e["8"].data.reason == "forbidden" and
	    ([range(9;12) | tostring | $e[.] | .data.reason == "bad_event"] | all)' >/dev/null
}

@test "ns-verify: --bus answers a malformed envelope bad_event, a forged one bad_sig" {
	e1=$(mkenv 1 null "$SIGNED")
	{
		for env in "$(jq -c '.seq = 0' <<<"$e1" | node_sign)" \
		    "$(mkenv 1 null "$(jq -c '.ts = 0.5' <<<"$SIGNED")")" \
		    "$(jq -c '.ts = 2' <<<"$e1")" \
		    "$(mkenv 1 null "${SIGNED/world/w0rld}")"; do
			jq -cn --arg d "$NODE_DID" --argjson e "$env" \
			    '{m:"node.sync",c:5,did:$d,role:"node",id:0,p:{envelopes:[$e]}}'
		done
	} | jq -c '.id = input_line_number' >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	# each answered, and the node that sent it reported to ns-gossip
	[ "${#lines[@]}" -eq 8 ]
	assert_jq '.msg.id == 1 and .msg.error.data.reason == "bad_event"' "${lines[0]}"
	assert_jq '.msg.id == 2 and .msg.error.data.reason == "bad_event"' "${lines[2]}"
	assert_jq '.msg.id == 3 and .msg.error.data.reason == "bad_sig"' "${lines[4]}"
	assert_jq '.msg.id == 4 and .msg.error.data.reason == "bad_sig"' "${lines[6]}"
	for i in 1 3 5 7; do
		assert_jq ".m == \"peer.bad\" and .p.node == \"$NODE_DID\"" "${lines[i]}"
	done
}

@test "ns-verify: --bus: a node connection may submit only its own events, but by node.submit" {
	local m i=0
	for m in space.create space.join space.leave space.invite space.remove \
	    space.rules space.beam beam.delete; do
		i=$((i + 1))
		busreq "$m" "$NODE_DID" node "$i" "$SIGNED"
	done >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 8 ]
	printf '%s\n' "$output" | jq -e -s 'map(.msg.error) | length == 8 and
	    all(.code == -32003 and .data.reason == "forbidden" and
	        .message == "a connection may only submit its own events")' >/dev/null
	# its own events pass, and so does a user's event in node.submit
	own=$(ns-sign -k "$NODE" <<<'{"type":"space.join","space":"channel/z/x"}')
	{
		busreq space.join "$NODE_DID" node 1 "$own"
		busreq node.submit "$NODE_DID" node 2 "$SIGNED"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "$output" = "$(cat "$BATS_TEST_TMPDIR/in")" ]
	# a client may not use node.submit to pass another author's event
	run -0 --separate-stderr ns-verify --bus <<<"$(busreq node.submit "$NODE_DID" client 3 "$SIGNED")"
	assert_jq '.msg.error.data.reason == "forbidden"'
}

@test "ns-verify: --bus drops a bad notification and checks envelopes" {
	e1=$(mkenv 1 null "${SIGNED/world/w0rld}")
	n=$(jq -c --arg d "$NODE_DID" --argjson e "$e1" -n '{m:"node.broadcast",c:5,did:$d,role:"node",p:{envelope:$e}}')
	run -0 --separate-stderr ns-verify --bus <<<"$n"
	assert_jq ".m == \"peer.bad\" and .p.node == \"$NODE_DID\""
	# with ns-serve's number, it is ended without an answer
	run -0 --separate-stderr ns-verify --bus <<<"$(jq -c '.r = 9' <<<"$n")"
	[ "${lines[0]}" = '{"to":5,"r":9}' ]
	r=$(jq -c --arg d "$NODE_DID" --argjson e "$e1" -n '{m:"node.sync",c:5,did:$d,role:"node",id:2,p:{envelopes:[$e]}}')
	run -0 --separate-stderr ns-verify --bus <<<"$r"
	assert_jq '.msg.error.data.reason == "bad_sig"' "${lines[0]}"
	# a node's answer: the envelopes in its result are checked too
	good=$(mkenv 1 null "$SIGNED")
	for e in "$e1" "$good"; do
		jq -c --arg d "$NODE_DID" --argjson e "$e" -n \
		    '{m:"rpc.response",c:5,r:3,did:$d,role:"node",p:{id:"g:1",jsonrpc:"2.0",result:{envelopes:[$e]}}}'
	done >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-verify --bus <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = '{"to":5,"r":3}' ]
	assert_jq '.m == "peer.bad"' "${lines[1]}"
	[ "${lines[2]}" = "$(sed -n 2p "$BATS_TEST_TMPDIR/in")" ]
}

@test "ns-verify: usage" {
	run -0 ns-verify --help
	assert_match 'usage: ns-verify'
	run -2 ns-verify --nope
	run -2 ns-verify -j 1000
	run -2 ns-verify extra
	run -2 --separate-stderr ns-verify --bus --from-start </dev/null
	run -2 --separate-stderr ns-verify -s --raw "$ALICE_DID" AAAA </dev/null
	run -2 --separate-stderr ns-verify --raw not-a-did AAAA </dev/null
}
