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
	run -0 ns-client -k "$BOB" -u "$URL_b" beam "$S" '{"title":"from b"}'
	assert_jq '.seq == 4'
	P=$(jq -r .beam <<<"$output")
	eventually 10 has_seq "$URL_a" "$S" 4
	eventually 10 has_seq "$URL_c" "$S" 4
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
