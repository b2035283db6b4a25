#!/usr/bin/env bats
# kill -9 of any one stage during a burst of 2,000 beams: no acknowledged
# event is lost, and the node serves again by itself.

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	ALICE_DID=$(jq -r .did "$ALICE")
	export NS_KEY=$ALICE
	node_start
	ns-client create channel burst >/dev/null
	S=channel/${ALICE_DID#did:key:}/burst
	seq 1 2000 | awk '{ printf "{\"title\":\"burst %d\"}\n", $1 }' >"$BATS_TEST_TMPDIR/beams"
}

teardown() {
	[ -n "${CLIENT_PID-}" ] && kill "$CLIENT_PID" 2>/dev/null
	node_stop
}

# burst_and_kill STAGE: beam 2,000 times; kill -9 STAGE once 300 are
# acknowledged, while the other 1,700 are still being sent
burst_and_kill() {
	local stage=$1 i=0 old
	mkfifo "$BATS_TEST_TMPDIR/in"
	ns-client -t 8 beam "$S" <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/acks" 2>"$BATS_TEST_TMPDIR/client.err" 3>&- &
	CLIENT_PID=$!
	exec 5>"$BATS_TEST_TMPDIR/in"
	head -n 400 "$BATS_TEST_TMPDIR/beams" >&5
	while [ "$(wc -l <"$BATS_TEST_TMPDIR/acks")" -lt 300 ]; do
		[ $i -ge 200 ] && { echo "no acks"; cat "$BATS_TEST_TMPDIR/client.err"; return 1; }
		sleep 0.05
		i=$((i + 1))
	done
	old=$(cat "$NODE_DIR/run/$stage.pid")
	kill -KILL "$old"
	tail -n +401 "$BATS_TEST_TMPDIR/beams" >&5 2>/dev/null || :
	exec 5>&-
	# the client ends: done, timed out, or its connection dropped
	i=0
	while kill -0 "$CLIENT_PID" 2>/dev/null; do
		[ $i -ge 300 ] && { kill "$CLIENT_PID"; break; }
		sleep 0.1
		i=$((i + 1))
	done
	wait "$CLIENT_PID" || :
	CLIENT_PID=
	# the supervisor restarted the stage by itself
	i=0
	while [ "$(cat "$NODE_DIR/run/$stage.pid" 2>/dev/null)" = "$old" ]; do
		[ $i -ge 100 ] && { echo "$stage was not restarted"; return 1; }
		sleep 0.1
		i=$((i + 1))
	done
	grep -q "$stage exited" "$NODE_DIR/log"
}

# every acknowledged beam is in the history at the seq it was given
check_nothing_lost() {
	local i=0
	# serving again (ns-serve may still be coming back)
	until ns-client -t 3 beam "$S" '{"title":"after"}' >"$BATS_TEST_TMPDIR/after" 2>/dev/null; do
		[ $i -ge 30 ] && { echo "the node does not serve again"; cat "$NODE_DIR/log"; return 1; }
		sleep 0.5
		i=$((i + 1))
	done
	ns-client history "$S" >"$BATS_TEST_TMPDIR/history"
	jq -r 'select(.event.type == "beam.ref") | "\(.seq) \(.event.beam)"' "$BATS_TEST_TMPDIR/history" | sort >"$BATS_TEST_TMPDIR/have"
	jq -r 'select(.seq) | "\(.seq) \(.beam)"' "$BATS_TEST_TMPDIR/acks" | sort >"$BATS_TEST_TMPDIR/acked"
	acked=$(wc -l <"$BATS_TEST_TMPDIR/acked")
	[ "$acked" -ge 300 ]
	echo "# $acked acknowledged before and after the kill" >&3
	lost=$(comm -23 "$BATS_TEST_TMPDIR/acked" "$BATS_TEST_TMPDIR/have" | wc -l)
	[ "$lost" -eq 0 ] || { echo "$lost of $acked acknowledged beams lost"; return 1; }
	# no seq twice, no gap, and the chain verifies
	jq -s '[.[].seq] | . == [range(1; length + 1)]' "$BATS_TEST_TMPDIR/history" | grep -qx true
	ns-verify <"$BATS_TEST_TMPDIR/history" >/dev/null
	ns-log -d "$NODE_DIR/log.db" verify "$S" >/dev/null
}

@test "e2e crash: kill -9 ns-log mid-burst loses no acknowledged beam" {
	burst_and_kill log
	check_nothing_lost
}

@test "e2e crash: kill -9 ns-beam mid-burst loses no acknowledged beam" {
	burst_and_kill beam
	check_nothing_lost
}

@test "e2e crash: kill -9 ns-verify mid-burst loses no acknowledged beam" {
	burst_and_kill verify
	check_nothing_lost
}

@test "e2e crash: kill -9 ns-serve mid-burst loses no acknowledged beam" {
	burst_and_kill serve
	check_nothing_lost
}
