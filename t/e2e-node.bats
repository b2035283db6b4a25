#!/usr/bin/env bats
# One real node (ns-node run) on 127.0.0.1, driven by ns-client over real
# WebSockets: the flows of the product page.

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	CAROL=$(fixture_key carol)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	AKID=${ALICE_DID#did:key:}
	export NS_KEY=$ALICE
	node_start
}

teardown() {
	for p in ${BG_PIDS-}; do kill "$p" 2>/dev/null; done
	node_stop
}

# wait_lines FILE N: until FILE has N lines, 10 s at most
wait_lines() {
	local i=0
	while [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -lt "$2" ]; do
		[ $i -ge 100 ] && { echo "wait_lines $1: $(wc -l <"$1") of $2" >&2; return 1; }
		sleep 0.1
		i=$((i + 1))
	done
}

@test "e2e: create, beam, and two subscribers each get the event once, signed and sequenced" {
	run -0 ns-client create channel protocols "Protocols"
	assert_jq ".id == \"channel/$AKID/protocols\" and .ownerDid == \"$ALICE_DID\" and .seq == 1"
	S=channel/$AKID/protocols
	ns-client -k "$BOB" -t 20 subscribe "$S" --count 2 >"$BATS_TEST_TMPDIR/bob" 3>&- &
	BG_PIDS="$!"
	ns-client -k "$CAROL" -t 20 subscribe "$S" --count 2 >"$BATS_TEST_TMPDIR/carol" 3>&- &
	BG_PIDS="$BG_PIDS $!"
	wait_lines "$BATS_TEST_TMPDIR/bob" 1
	wait_lines "$BATS_TEST_TMPDIR/carol" 1
	run -0 ns-client beam "$S" '{"title":"On sovereign substrates","body":"Email is older than most platforms"}'
	assert_jq '.seq == 2 and (.eventId | length) == 43 and (.beam | startswith("beam/"))'
	eid=$(jq -r .eventId <<<"$output")
	run -0 ns-client beam "$S" '{"title":"second"}'
	for who in bob carol; do
		wait_lines "$BATS_TEST_TMPDIR/$who" 3
		# the subscribe result, then each envelope exactly once, in order
		run -0 jq -sc '[.[] | select(.type == "envelope") | .seq]' "$BATS_TEST_TMPDIR/$who"
		[ "$output" = "[2,3]" ]
		jq -c 'select(.type == "envelope")' "$BATS_TEST_TMPDIR/$who" >"$BATS_TEST_TMPDIR/$who.env"
		run -0 --separate-stderr ns-verify <"$BATS_TEST_TMPDIR/$who.env"
		assert_jq ".event.author == \"$ALICE_DID\" and .node == \"$NODE_DID\"" "${lines[0]}"
	done
	# the event id the author got is the id of the event everyone received
	got=$(jq -c 'select(.seq == 2) | .event' "$BATS_TEST_TMPDIR/bob.env" | ns-sign --canonical | head -c -1 |
		openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')
	[ "$got" = "$eid" ]
}

@test "e2e: history survives a node restart and its chain verifies" {
	ns-client create channel keep >/dev/null
	S=channel/$AKID/keep
	for n in 1 2 3; do ns-client beam "$S" "{\"n\":$n}" >/dev/null; done
	run -0 ns-client history "$S"
	before=$output
	[ "${#lines[@]}" -eq 4 ]
	node_stop
	# same directory, same key, same database
	"${NS_NODE[@]}" run "$NODE_DIR" 3>&- >>"$NODE_DIR/log" 2>&1 &
	NODE_PID=$!
	i=0
	while [ ! -s "$NODE_DIR/run/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	export NS_URL="ws://127.0.0.1:$(cat "$NODE_DIR/run/port")/"
	run -0 ns-client history "$S"
	[ "$output" = "$before" ]
	printf '%s\n' "$output" | ns-verify >/dev/null
	run -0 ns-log -d "$NODE_DIR/log.db" verify "$S"
	run -0 ns-client beam "$S" '{"n":4}'
	assert_jq '.seq == 5'
}

@test "e2e: a beam lives on the author's node; delete leaves a tombstone everyone sees" {
	ns-client create channel del >/dev/null
	S=channel/$AKID/del
	ns-client -k "$BOB" join "$S" >/dev/null
	path=$(ns-client beam "$S" '{"title":"to be deleted"}' | jq -r .beam)
	run -0 ns-client -k "$BOB" get "$path"
	assert_jq '.title == "to be deleted"'
	run -0 ns-beam -d "$NODE_DIR/beams.db" get "$path"
	ns-client -k "$BOB" -t 20 subscribe "$S" --count 1 >"$BATS_TEST_TMPDIR/sub" 3>&- &
	BG_PIDS=$!
	wait_lines "$BATS_TEST_TMPDIR/sub" 1
	# only the author may delete
	run -1 --separate-stderr ns-client -k "$BOB" delete "$path"
	assert_match 'forbidden' "$stderr"
	run -0 ns-client delete "$path"
	assert_jq ".spaces == [\"$S\"]"
	wait_lines "$BATS_TEST_TMPDIR/sub" 2
	run -0 jq -c 'select(.type == "envelope") | .event' "$BATS_TEST_TMPDIR/sub"
	assert_jq ".type == \"beam.tombstone\" and .beam == \"$path\" and .author == \"$ALICE_DID\""
	run -1 --separate-stderr ns-client -k "$BOB" get "$path"
	assert_match 'gone' "$stderr"
	run -1 ns-beam -d "$NODE_DIR/beams.db" get "$path"
	! sqlite3 "$NODE_DIR/beams.db" "select body from beams" | grep -q 'to be deleted'
}

@test "e2e: a dm is for members only; the owner invites" {
	ns-client create dm talk >/dev/null
	S=dm/$AKID/talk
	ns-client beam "$S" '{"body":"secret"}' >/dev/null
	run -1 --separate-stderr ns-client -k "$BOB" history "$S"
	assert_match 'forbidden' "$stderr"
	run -1 --separate-stderr ns-client -k "$BOB" subscribe "$S" --count 1
	assert_match 'forbidden' "$stderr"
	run -1 --separate-stderr ns-client -k "$BOB" join "$S"
	assert_match 'forbidden' "$stderr"
	run -0 ns-client invite "$S" "$BOB_DID"
	run -0 ns-client -k "$BOB" join "$S"
	run -0 ns-client -k "$BOB" history "$S"
	[ "$(jq -s 'map(select(.seq == 2))[0].event.type' <<<"$output")" = '"beam.ref"' ]
	run -0 ns-client -k "$BOB" beam "$S" '{"body":"hi alice"}'
	# carol, never invited, still cannot read
	run -1 ns-client -k "$CAROL" history "$S"
	run -0 ns-client members "$S"
	assert_jq ".members | sort == ([\"$ALICE_DID\",\"$BOB_DID\"] | sort)"
}

@test "e2e: a stream has one writer" {
	ns-client create stream live >/dev/null
	S=stream/$AKID/live
	run -0 ns-client -k "$BOB" join "$S"
	run -1 --separate-stderr ns-client -k "$BOB" beam "$S" '{"t":1}'
	assert_match 'forbidden' "$stderr"
	run -0 ns-client beam "$S" '{"t":2}'
	run -0 ns-client -k "$BOB" history "$S"
}

@test "e2e: a replayed event is deduplicated, not sequenced twice" {
	ns-client create channel dedup >/dev/null
	S=channel/$AKID/dedup
	ev=$(jq -cn --arg s "$S" '{type:"space.join",space:$s,node:"x",address:"y"}')
	# bob's join, signed once, submitted twice in raw mode
	ns-client -k "$BOB" info "$S" >/dev/null
	node_addr=$(ns-client info "$S" | jq -r .nodeAddress)
	join=$(jq -cn --arg s "$S" --arg n "$NODE_DID" --arg a "$node_addr" \
		'{type:"space.join",space:$s,node:$n,address:$a}' | ns-sign -k "$BOB")
	req1=$(jq -cn --argjson e "$join" '{jsonrpc:"2.0",id:1,method:"space.join",params:{event:$e}}')
	req2=$(jq -cn --argjson e "$join" '{jsonrpc:"2.0",id:2,method:"space.join",params:{event:$e}}')
	run -0 ns-client -k "$BOB" --raw rpc <<<"$req1
$req2"
	[ "$(printf '%s\n' "$output" | jq -s '[.[] | select(.result) | .result.seq] | unique | length')" -eq 1 ]
	run -0 ns-client history "$S"
	[ "${#lines[@]}" -eq 2 ]
}
