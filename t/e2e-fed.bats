#!/usr/bin/env bats
# Federation: several real nodes on 127.0.0.1, each a ring started by
# ns-node, talking over real WebSockets.

load helpers/common
load helpers/node
load helpers/nodes
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	CAROL=$(fixture_key carol)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	CAROL_DID=$(jq -r .did "$CAROL")
	AKID=${ALICE_DID#did:key:}
}

teardown() {
	local p
	for p in ${BG-}; do kill "$p" 2>/dev/null || true; done
	nodes_down
}

# seqs URL SPACE: the seqs the node at URL holds of SPACE
seqs() {
	ns-client -k "$ALICE" -u "$1" history "$2" 2>/dev/null | jq -r .seq | tr '\n' ' '
}

has_seq() {	# URL SPACE N
	ns-client -k "$ALICE" -u "$1" info "$2" 2>/dev/null | jq -e ".head >= $3" >/dev/null
}

@test "federation: users of B and C join A's channel; a beam from B reaches every node; its content stays on B" {
	node_up a
	node_up b
	node_up c
	run -0 ns-client -k "$ALICE" -u "$URL_a" create channel fed "Federation"
	S=channel/$AKID/fed
	run -0 ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$S"
	assert_jq '.seq == 2'
	run -0 ns-client -k "$CAROL" -u "$URL_c" join "northstar://$ADDR_a/$S"
	assert_jq '.seq == 3'
	# B and C keep a replica: pulled from seq 1, pushed from then on
	eventually 10 has_seq "$URL_b" "$S" 3
	eventually 10 has_seq "$URL_c" "$S" 3
	# a subscriber on every node
	for n in a b c; do
		u="URL_$n"
		ns-client -k "$CAROL" -u "${!u}" -t 30 subscribe "$S" --count 4 \
			>"$BATS_TEST_TMPDIR/sub.$n" 2>/dev/null 3>&- &
		BG="${BG-} $!"
	done
	for n in a b c; do
		eventually 10 grep -q head "$BATS_TEST_TMPDIR/sub.$n"
	done
	run -0 ns-client -k "$BOB" -u "$URL_b" beam "$S" '{"title":"from b"}'
	assert_jq '.seq == 4'
	P=$(jq -r .beam <<<"$output")
	for i in 1 2 3; do
		ns-client -k "$CAROL" -u "$URL_c" beam "$S" "{\"n\":$i}" >/dev/null
	done
	eventually 10 has_seq "$URL_a" "$S" 7
	eventually 10 has_seq "$URL_c" "$S" 7
	eventually 10 has_seq "$URL_b" "$S" 7
	# each subscriber got each envelope once, in order
	for n in a b c; do
		eventually 10 [ "$(jq -s '[.[] | select(.type == "envelope")] | length' "$BATS_TEST_TMPDIR/sub.$n")" = 4 ]
		[ "$(jq -c -s '[.[] | select(.type == "envelope") | .seq]' "$BATS_TEST_TMPDIR/sub.$n")" = "[4,5,6,7]" ]
	done
	# and every node's log verifies from seq 1, replicas included
	for n in a b c; do
		d="DIR_$n"
		ns-log -d "${!d}/log.db" verify >/dev/null
	done
	# every replica is the owner's log, byte for byte, and verifies
	owner=$(ns-client -k "$ALICE" -u "$URL_a" history "$S")
	for u in "$URL_b" "$URL_c"; do
		[ "$(ns-client -k "$ALICE" -u "$u" history "$S")" = "$owner" ]
	done
	printf '%s\n' "$owner" | ns-verify --from-start >/dev/null
	# the content stays on B: A and C fetch it from there
	run -0 ns-beam -d "$DIR_b/beams.db" list
	assert_jq ".beam == \"$P\""
	run -0 ns-beam -d "$DIR_a/beams.db" list
	[ -z "$output" ]
	run -0 ns-client -k "$ALICE" -u "$URL_a" get "$P"
	assert_jq '.title == "from b"'
	run -0 ns-client -k "$CAROL" -u "$URL_c" get "$P"
	assert_jq '.title == "from b"'
}

# fed3: nodes a, b, c; alice's channel S on a; bob on b and carol on c
# members, their replicas caught up.
fed3() {
	node_up a
	node_up b
	node_up c
	ns-client -k "$ALICE" -u "$URL_a" create channel fed >/dev/null
	S=channel/$AKID/fed
	ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$S" >/dev/null
	ns-client -k "$CAROL" -u "$URL_c" join "northstar://$ADDR_a/$S" >/dev/null
	eventually 10 has_seq "$URL_b" "$S" 3
	eventually 10 has_seq "$URL_c" "$S" 3
}

h() {
	openssl dgst -sha256 -binary | basenc --base64url | tr -d '='
}

# beam_req KEY SPACE NODE ADDRESS JSON: a space.beam request (id 1); its
# beam's path goes to $BATS_TEST_TMPDIR/path
beam_req() {
	local beam did ref path
	did=$(jq -r .did "$1")
	beam=$(ns-sign -k "$1" <<<"$5")
	path="beam/$(printf %s "$did" | h)/$(printf %s "$beam" | h)"
	printf '%s\n' "$path" >"$BATS_TEST_TMPDIR/path"
	ref=$(jq -nc --arg s "$2" --arg b "$path" --arg n "$3" --arg a "$4" \
		'{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a}' | ns-sign -k "$1")
	jq -nc --argjson e "$ref" --argjson b "$beam" \
		'{jsonrpc:"2.0",id:1,method:"space.beam",params:{event:$e,beam:$b}}'
}

@test "federation: with the owner node down a beam is unreachable at once, stays on B, and goes through when sent again" {
	node_up a
	node_up b
	ns-client -k "$ALICE" -u "$URL_a" create channel fed >/dev/null
	S=channel/$AKID/fed
	ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$S" >/dev/null
	eventually 10 has_seq "$URL_b" "$S" 2
	node_down a
	# the members still read from their replica
	run -0 ns-client -k "$BOB" -u "$URL_b" history "$S"
	[ "${#lines[@]}" -eq 2 ]
	req=$(beam_req "$BOB" "$S" "$DID_b" "$ADDR_b" '{"type":"beam","body":"while a is down"}')
	SECONDS=0
	run -1 --separate-stderr ns-client -k "$BOB" -u "$URL_b" -t 30 --raw rpc <<<"$req"
	assert_jq '.error.data.reason == "unreachable"'
	[ "$SECONDS" -lt 10 ]
	# the beam stays on its author's node
	run -0 ns-beam -d "$DIR_b/beams.db" list
	assert_jq ".beam == \"$(cat "$BATS_TEST_TMPDIR/path")\""
	node_again a
	# the same signed request again, once B's backoff lets it through
	resend() {
		ns-client -k "$BOB" -u "$URL_b" -t 30 --raw rpc <<<"$req" >"$BATS_TEST_TMPDIR/ans" 2>/dev/null
	}
	eventually 30 resend
	assert_jq '.result.seq == 3' "$(cat "$BATS_TEST_TMPDIR/ans")"
	# and once more: the same answer, nothing new
	resend
	assert_jq '.result.seq == 3' "$(cat "$BATS_TEST_TMPDIR/ans")"
	eventually 10 has_seq "$URL_b" "$S" 3
	[ "$(seqs "$URL_a" "$S")" = "1 2 3 " ]
}

@test "federation: a remote space that refuses a beam leaves nothing on the author's node" {
	node_up a
	node_up b
	ns-client -k "$ALICE" -u "$URL_a" create channel fed >/dev/null
	S=channel/$AKID/fed
	# a space B has never heard of, and no address: nothing kept
	run -1 --separate-stderr ns-client -k "$BOB" -u "$URL_b" --raw rpc <<<"$(beam_req "$BOB" "$S" "$DID_b" "$ADDR_b" '{"type":"beam","body":"where to?"}')"
	assert_jq '.error.data.reason == "not_found"'
	# B follows the space (carol joined through it); bob is no member
	ns-client -k "$CAROL" -u "$URL_b" join "northstar://$ADDR_a/$S" >/dev/null
	eventually 10 has_seq "$URL_b" "$S" 2
	run -1 --separate-stderr ns-client -k "$BOB" -u "$URL_b" --raw rpc <<<"$(beam_req "$BOB" "$S" "$DID_b" "$ADDR_b" '{"type":"beam","body":"not a member"}')"
	assert_jq '.error.data.reason == "forbidden"'
	run -0 ns-beam -d "$DIR_b/beams.db" list
	[ -z "$output" ]
}

@test "federation: a delete on the author's node reaches every member node; the content is gone everywhere" {
	fed3
	P=$(ns-client -k "$BOB" -u "$URL_b" beam "$S" '{"title":"soon gone"}' | jq -r .beam)
	eventually 10 has_seq "$URL_c" "$S" 4
	# copies fetched for readers on A and C
	run -0 ns-client -k "$ALICE" -u "$URL_a" get "$P"
	run -0 ns-client -k "$CAROL" -u "$URL_c" get "$P"
	run -0 ns-client -k "$BOB" -u "$URL_b" delete "$P"
	assert_jq ".spaces == [\"$S\"]"
	# the tombstone goes to A, which sequences it, and on to C
	eventually 20 has_seq "$URL_a" "$S" 5
	eventually 10 has_seq "$URL_c" "$S" 5
	for u in "$URL_a" "$URL_b" "$URL_c"; do
		run -1 --separate-stderr ns-client -k "$CAROL" -u "$u" get "$P"
		assert_jq '.data.reason == "gone" and .data.tombstone.beam == "'"$P"'"'
	done
	for d in "$DIR_a" "$DIR_b" "$DIR_c"; do
		[ "$(sqlite3 "$d/beams.db" "SELECT count(*) FROM beams")" = 0 ]
	done
}

@test "federation: a node that was down catches up on everything it missed" {
	fed3
	node_down c
	for n in 1 2 3; do
		ns-client -k "$BOB" -u "$URL_b" beam "$S" "{\"n\":$n}" >/dev/null
	done
	eventually 10 has_seq "$URL_a" "$S" 6
	node_again c
	eventually 20 has_seq "$URL_c" "$S" 6
	[ "$(ns-client -k "$ALICE" -u "$URL_c" history "$S")" = "$(ns-client -k "$ALICE" -u "$URL_a" history "$S")" ]
}

@test "federation: a dm reaches only the nodes its members live on" {
	node_up a
	node_up b
	node_up c
	ns-client -k "$ALICE" -u "$URL_a" create dm secret >/dev/null
	D=dm/$AKID/secret
	ns-client -k "$ALICE" -u "$URL_a" invite "$D" "$BOB_DID" >/dev/null
	run -0 ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$D"
	eventually 10 has_seq "$URL_b" "$D" 3
	run -1 --separate-stderr ns-client -k "$CAROL" -u "$URL_c" join "northstar://$ADDR_a/$D"
	assert_jq '.data.reason == "forbidden"'
	ns-client -k "$BOB" -u "$URL_b" beam "$D" '{"body":"between us"}' >/dev/null
	eventually 10 has_seq "$URL_a" "$D" 4
	sleep 2
	# C holds nothing of it, and may not pull it
	run -0 ns-log -d "$DIR_c/log.db" spaces
	[ -z "$output" ]
	WSC="$BATS_TEST_DIRNAME/helpers/wsc"
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$DIR_c/node.key" --role node --count 3 <<<"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node.sync\",\"params\":{\"space\":\"$D\",\"after\":0}}"
	assert_jq '.error.data.reason == "forbidden"' "${lines[2]}"
	# B, where bob lives, may
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$DIR_b/node.key" --role node --count 3 <<<"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"node.sync\",\"params\":{\"space\":\"$D\",\"after\":0}}"
	assert_jq '.result.envelopes | length == 4' "${lines[2]}"
}

@test "federation: a node submits only its own users' events; one that forges is cut off" {
	fed3
	WSC="$BATS_TEST_DIRNAME/helpers/wsc"
	# bob's signed ref naming B, handed to A by C
	req=$(beam_req "$BOB" "$S" "$DID_b" "$ADDR_b" '{"type":"beam","body":"not c'\''s"}' |
		jq -c '{jsonrpc, id, method: "node.submit", params: {event: .params.event}}')
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$DIR_c/node.key" --role node --count 3 <<<"$req"
	assert_jq '.error.data.reason == "forbidden"' "${lines[2]}"
	# by B it is fine
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$DIR_b/node.key" --role node --count 3 <<<"$req"
	assert_jq '.result.envelope.seq == 4' "${lines[2]}"
	# a node that broadcasts a forged envelope is dropped, and refused
	forged=$(ns-client -k "$ALICE" -u "$URL_a" history "$S" | tail -n 1 | jq -c '.seq = 5')
	# (B may use the new link to C for its own requests first: the
	# close is the last line, whatever came before it)
	run -0 "$WSC" -p "${ADDR_b##*:}" -k "$DIR_c/node.key" --role node --count 5 <<<"{\"jsonrpc\":\"2.0\",\"method\":\"node.broadcast\",\"params\":{\"envelope\":$forged}}"
	assert_jq '.wsc == "close" and .code == 1008' "${lines[-1]}"
	run -0 "$WSC" -p "${ADDR_b##*:}" -k "$DIR_c/node.key" --role node --count 5 </dev/null
	assert_jq '.wsc == "close" and .code == 1008' "${lines[-1]}"
	# A pushed seq 4 down the link B's key had open, which the test
	# closed: B has it from anti-entropy, every 10 s (AE_MS)
	eventually 30 has_seq "$URL_b" "$S" 4
	sleep 1
	[ "$(seqs "$URL_b" "$S")" = "1 2 3 4 " ]
}

@test "federation: a member node stopped while 1000 events go out has them all soon after it resumes" {
	fed3
	local pids p
	pids=$(pgrep -f -- "$DIR_c/")
	kill -STOP $pids
	seq 1 1000 | sed 's/.*/{"n":&}/' | ns-client -k "$ALICE" -u "$URL_a" beam "$S" >/dev/null
	eventually 10 has_seq "$URL_b" "$S" 1003
	kill -CONT $pids
	eventually 60 has_seq "$URL_c" "$S" 1003
	[ "$(ns-log -d "$DIR_c/log.db" history "$S" | tail -n 1)" = "$(ns-log -d "$DIR_a/log.db" history "$S" | tail -n 1)" ]
}

@test "federation: a node link that sends what no node would, or floods, is dropped and refused" {
	NS_MAX_NODE_RATE=100 node_up a
	WSC="$BATS_TEST_DIRNAME/helpers/wsc"
	ns-keygen -o "$BATS_TEST_TMPDIR/x.key" >/dev/null
	ns-keygen -o "$BATS_TEST_TMPDIR/y.key" >/dev/null
	# not JSON, from a node: its link goes, and it is refused a while
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$BATS_TEST_TMPDIR/x.key" --role node --count 5 --timeout 10 <<<'this is not json'
	assert_jq '.wsc == "close" and .code == 1008' "${lines[-1]}"
	grep -q "sent a message that is not JSON; the link is dropped" "$DIR_a/log"
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$BATS_TEST_TMPDIR/x.key" --role node --count 5 --timeout 10 </dev/null
	assert_jq '.wsc == "close" and .code == 1008' "${lines[-1]}"
	# a client sending the same gets an error and goes on
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$BATS_TEST_TMPDIR/y.key" --count 3 --timeout 10 <<<'this is not json'
	assert_jq '.error.data.reason == "parse_error"' "${lines[2]}"
	# 300 notifications in a burst, over 100 a second: dropped
	S=channel/$AKID/fed
	seq 1 300 | sed "s|.*|{\"jsonrpc\":\"2.0\",\"method\":\"node.head\",\"params\":{\"space\":\"$S\",\"head\":0,\"hash\":\"x\"}}|" >"$BATS_TEST_TMPDIR/flood"
	run -0 "$WSC" -p "${ADDR_a##*:}" -k "$BATS_TEST_TMPDIR/y.key" --role node --count 400 --timeout 10 <"$BATS_TEST_TMPDIR/flood"
	assert_jq '.wsc == "close" and .code == 1008' "${lines[-1]}"
	grep -q "more messages a second than a node may send" "$DIR_a/log"
	# the node serves on
	run -0 ns-client -k "$ALICE" -u "$URL_a" create channel after
}
