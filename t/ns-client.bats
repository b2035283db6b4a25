#!/usr/bin/env bats
# ns-client: log in to a node, send requests, print JSON lines.  The tests
# that talk to a node start a real one with ns-node (helpers/node.bash).

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	export NS_KEY=$ALICE
	unset NS_URL NS_NOW NS_ADDRESS
	BG_PIDS=
}

teardown() {
	local p
	for p in $BG_PIDS; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	node_stop
}

# wait_lines FILE N: until FILE has N lines (10 s at most).
wait_lines() {
	local i=0
	while [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -lt "$2" ]; do
		[ $i -ge 100 ] && { echo "wait_lines: $1 has fewer than $2 lines" >&2; return 1; }
		sleep 0.1
		i=$((i + 1))
	done
}

# wait_exit PID: until PID is gone (10 s at most); returns its status.
wait_exit() {
	local i=0
	while kill -0 "$1" 2>/dev/null; do
		[ $i -ge 100 ] && { echo "wait_exit: $1 still runs" >&2; return 124; }
		sleep 0.1
		i=$((i + 1))
	done
	wait "$1"
}

# assert_jqs FILTER: jq -e -s FILTER on the lines of $output.
assert_jqs() {
	if ! printf '%s\n' "$output" | jq -e -s "$1" >/dev/null; then
		echo "assert_jqs failed: $1" >&2
		echo "on: ${output:0:2000}" >&2
		return 1
	fi
}

# new_space TYPE UNIQUEID: create it as alice, print its id.
new_space() {
	ns-client create "$1" "$2" | jq -r .id
}

@test "ns-client: --help prints the synopsis on stdout and exits 0" {
	run -0 --separate-stderr ns-client --help
	assert_match "usage: ns-client"
	assert_match "subscribe SPACE"
	[ -z "$stderr" ]
	run -0 ns-client --version
	[ "$output" = "ns-client 0.1.0" ]
}

@test "ns-client: usage errors exit 2 with a message on stderr" {
	run -2 --separate-stderr ns-client frobnicate
	[ -z "$output" ]
	assert_match "unknown command" "$stderr"
	run -2 --separate-stderr ns-client create channel
	assert_match "wrong number of arguments" "$stderr"
	run -2 --separate-stderr ns-client create room x
	assert_match "channel, dm or stream" "$stderr"
	run -2 --separate-stderr ns-client info nospace
	run -2 --separate-stderr ns-client info a/b/c --after 3
	assert_match "history only" "$stderr"
	run -2 --separate-stderr ns-client -t zero login
	run -2 --separate-stderr ns-client -u http://127.0.0.1/ login
	run -2 --separate-stderr ns-client beam a/b/c '[1]'
	run -2 --separate-stderr ns-client invite a/b/c did:key:nope
	run -2 --separate-stderr ns-client --bogus
	run -2 --separate-stderr ns-client subscribe a/b/c northstar://h:1/a/b/c
	assert_match "a/b/c given twice" "$stderr"
}

@test "ns-client: a missing key file exits 2" {
	run -2 --separate-stderr ns-client -k "$BATS_TEST_TMPDIR/none.key" \
	    -u ws://127.0.0.1:1/ login
	[ -z "$output" ]
	assert_match "^ns-client: open .*none.key: No such file" "$stderr"
}

@test "ns-client: a key file others can read exits 2" {
	chmod 644 "$ALICE"
	run -2 --separate-stderr ns-client -u ws://127.0.0.1:1/ login
	assert_match "readable by others" "$stderr"
}

@test "ns-client: a refused connection says so and how to start a node (exit 2)" {
	SECONDS=0
	run -2 --separate-stderr ns-client -t 20 -u ws://127.0.0.1:1/ login
	[ "$SECONDS" -lt 5 ]
	[ -z "$output" ]
	[ "$stderr" = "ns-client: ws://127.0.0.1:1/: connection refused: is the node running? start it with: ns-node run DIR" ]
}

@test "ns-client: a host name that does not resolve is named as such (exit 2)" {
	SECONDS=0
	run -2 --separate-stderr ns-client -t 20 -u ws://no-such-node.invalid:7700/ login
	[ "$SECONDS" -lt 15 ]
	[ -z "$output" ]
	# host not found, or, with no DNS at hand, the lookup failed
	assert_match "^ns-client: ws://no-such-node.invalid:7700/: (host not found|host name lookup failed): check the host name in the URL" "$stderr"
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "ns-client: a server that never answers times out with 2" {
	command -v python3 >/dev/null || skip "no python3"
	# accepts TCP connections and says nothing
	python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print(s.getsockname()[1], flush=True)
conns = []
deadline = time.time() + 20
while time.time() < deadline:
    s.settimeout(deadline - time.time())
    try:
        conns.append(s.accept())
    except OSError:
        break
' 3>&- >"$BATS_TEST_TMPDIR/port" &
	BG_PIDS="$BG_PIDS $!"
	wait_lines "$BATS_TEST_TMPDIR/port" 1
	SECONDS=0
	run -2 --separate-stderr ns-client -t 1 \
	    -u "ws://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")/" login
	[ "$SECONDS" -lt 5 ]
	assert_match "timeout" "$stderr"
}

@test "ns-client: login prints the user's DID and the node's" {
	node_start
	run -0 --separate-stderr ns-client login
	assert_jq ".did == \"$ALICE_DID\""
	assert_jq ".node == \"$NODE_DID\" and .role == \"client\""
	run -0 --separate-stderr ns-client --node "$NODE_DID" login
}

@test "ns-client: --node with another DID refuses the node (exit 2)" {
	node_start
	run -2 --separate-stderr ns-client --node "$BOB_DID" login
	[ -z "$output" ]
	[ "$stderr" = "ns-client: $NS_URL: the node is $NODE_DID, not $BOB_DID: is this the URL of that node?" ]
}

@test "ns-client: a refused login gives the node's reason and asks about the key" {
	node_start
	# a login stamped in 1970 is outside the node's 5 minutes
	NS_NOW=1000 run -2 --separate-stderr ns-client login
	[ -z "$output" ]
	assert_match "^ns-client: $NS_URL: login refused: unauthenticated: .+: is this machine's clock right\?$" "$stderr"
}

@test "ns-client: a node naming another address is refused without --any-address" {
	NS_ADDRESS=node.example:7700 node_start
	run -2 --separate-stderr ns-client login
	assert_match "calls itself node.example:7700" "$stderr"
	run -0 --separate-stderr ns-client --any-address login
	assert_jq ".did == \"$ALICE_DID\""
}

@test "ns-client: create prints the space" {
	node_start
	local keyid=${ALICE_DID#did:key:}
	run -0 --separate-stderr ns-client create channel general "General chat"
	assert_jq ".id == \"channel/$keyid/general\""
	assert_jq '.type == "channel" and .name == "General chat" and .seq == 1'
	assert_jq ".ownerDid == \"$ALICE_DID\""
	assert_jq ".nodeAddress + \"/\" == \"${NS_URL#ws://}\""
	assert_jq ".address == \"northstar://\" + .nodeAddress + \"/\" + .id"
	assert_jq '.eventId | test("^[A-Za-z0-9_-]{43}$")'
	# the same space again is a conflict: exit 1, error object and message
	run -1 --separate-stderr ns-client create channel general
	assert_jq '.data.reason == "conflict"'
	assert_match "^ns-client: space.create: conflict" "$stderr"
}

@test "ns-client: beam prints its path and eventId" {
	node_start
	S=$(new_space channel beams)
	run -0 --separate-stderr ns-client beam "$S" '{"title":"hi","body":"there"}'
	assert_jq '.eventId | test("^[A-Za-z0-9_-]{43}$")'
	assert_jq ".space == \"$S\" and .seq == 2"
	assert_jq '.beam | test("^beam/[A-Za-z0-9_-]{43}/[A-Za-z0-9_-]{43}$")'
	P=$(jq -r .beam <<<"$output")
	run -0 --separate-stderr ns-client get "$P"
	assert_jq ".type == \"beam\" and .title == \"hi\" and .author == \"$ALICE_DID\""
	run -0 --separate-stderr ns-client --raw info "$S"
	assert_jq '.jsonrpc == "2.0" and .result.head == 2'
}

@test "ns-client: history prints every envelope, --after and --limit" {
	node_start
	S=$(new_space channel hist)
	for i in 1 2 3; do
		ns-client beam "$S" "{\"n\":$i}" >/dev/null
	done
	run -0 --separate-stderr ns-client history "$S"
	[ "${#lines[@]}" -eq 4 ]
	assert_jqs '[.[].seq] == [1,2,3,4]'
	assert_jqs '.[0].event.type == "space.create" and
	    ([.[1:][].event.type] | unique) == ["beam.ref"]'
	assert_jqs 'all(.[]; .type == "envelope")'
	run -0 --separate-stderr ns-client history "$S" --after 2
	assert_jqs '[.[].seq] == [3,4]'
	run -0 --separate-stderr ns-client history "$S" --after 1 --limit 2
	assert_jqs '[.[].seq] == [2,3]'
}

@test "ns-client: subscribe --count 2 gets the beams another user makes" {
	node_start
	S=$(new_space channel live)
	ns-client -k "$BOB" join "$S" >/dev/null
	ns-client subscribe "$S" --count 2 3>&- >"$BATS_TEST_TMPDIR/sub" \
	    2>"$BATS_TEST_TMPDIR/sub.err" &
	SUB=$!
	BG_PIDS="$BG_PIDS $SUB"
	wait_lines "$BATS_TEST_TMPDIR/sub" 1 # the subscribe result
	ns-client -k "$BOB" beam "$S" '{"body":"one"}' >/dev/null
	ns-client -k "$BOB" beam "$S" '{"body":"two"}' >/dev/null
	wait_exit "$SUB"
	run -0 cat "$BATS_TEST_TMPDIR/sub"
	[ "${#lines[@]}" -eq 3 ]
	assert_jq ".space == \"$S\" and .head == 2" "${lines[0]}"
	assert_jq ".type == \"envelope\" and .seq == 3 and
	    .event.type == \"beam.ref\" and .event.author == \"$BOB_DID\"" "${lines[1]}"
	assert_jq '.seq == 4' "${lines[2]}"
}

@test "ns-client: subscribe --from 1 prints the whole log, then what comes, each once in order" {
	node_start
	S=$(new_space channel tail)
	# 249 beams: with the space.create, history spans three pages of 100
	for i in $(seq 1 249); do printf '{"n":%d}\n' "$i"; done |
	    ns-client beam "$S" >/dev/null
	# more beams go in while the subscriber reads the history
	for i in $(seq 250 449); do printf '{"n":%d}\n' "$i"; done >"$BATS_TEST_TMPDIR/more"
	ns-client -k "$BOB" join "$S" >/dev/null
	ns-client -k "$BOB" beam "$S" --window 1 <"$BATS_TEST_TMPDIR/more" 3>&- \
	    >"$BATS_TEST_TMPDIR/during" &
	WRITER=$!
	BG_PIDS="$BG_PIDS $WRITER"
	wait_lines "$BATS_TEST_TMPDIR/during" 5
	# 1 create + 249 + 1 join + 200 during + 3 after = 454 envelopes
	ns-client -t 60 subscribe --from 1 "$S" --count 454 3>&- \
	    >"$BATS_TEST_TMPDIR/sub" 2>"$BATS_TEST_TMPDIR/sub.err" &
	SUB=$!
	BG_PIDS="$BG_PIDS $SUB"
	wait_exit "$WRITER"
	wait_lines "$BATS_TEST_TMPDIR/sub" 452
	for i in 1 2 3; do ns-client beam "$S" "{\"after\":$i}" >/dev/null; done
	wait_exit "$SUB"
	run -0 cat "$BATS_TEST_TMPDIR/sub"
	[ "${#lines[@]}" -eq 455 ]
	assert_jq ".space == \"$S\" and (.head | type) == \"number\"" "${lines[0]}"
	printf '%s\n' "${lines[@]:1}" | jq -e -s '
	    map(.seq) == [range(1; 455)] and
	    .[0].event.type == "space.create" and
	    .[-1].event.type == "beam.ref"' >/dev/null
	[ ! -s "$BATS_TEST_TMPDIR/sub.err" ]
	# what it printed is the log: ns-verify finds it whole from seq 1
	printf '%s\n' "${lines[@]:1}" | ns-verify --from-start >/dev/null
}

@test "ns-client: subscribe --from SEQ starts at SEQ, also past the head" {
	node_start
	S=$(new_space channel from)
	for i in 1 2 3 4 5; do printf '{"n":%d}\n' "$i"; done | ns-client beam "$S" >/dev/null
	run -0 --separate-stderr ns-client -t 2 subscribe --from 4 "$S"
	[ "${#lines[@]}" -eq 4 ]
	printf '%s\n' "${lines[@]:1}" | jq -e -s 'map(.seq) == [4,5,6]' >/dev/null
	# from beyond the head: nothing old, the new ones from SEQ on
	ns-client -t 20 subscribe --from 8 "$S" --count 1 3>&- >"$BATS_TEST_TMPDIR/sub" &
	SUB=$!
	BG_PIDS="$BG_PIDS $SUB"
	wait_lines "$BATS_TEST_TMPDIR/sub" 1
	ns-client beam "$S" '{"n":7}' >/dev/null
	ns-client beam "$S" '{"n":8}' >/dev/null
	wait_exit "$SUB"
	run -0 cat "$BATS_TEST_TMPDIR/sub"
	[ "${#lines[@]}" -eq 2 ]
	assert_jq '.seq == 8 and .event.type == "beam.ref"' "${lines[1]}"
	run -2 --separate-stderr ns-client history "$S" --from 1
	assert_match "for subscribe only" "$stderr"
	run -2 --separate-stderr ns-client subscribe "$S" --from 0
}

@test "ns-client: a dm is closed to the uninvited, open after an invite" {
	node_start
	S=$(new_space dm secret)
	ns-client beam "$S" '{"body":"for bob only"}' >/dev/null
	run -1 --separate-stderr ns-client -k "$BOB" history "$S"
	assert_jq '.data.reason == "forbidden"'
	assert_match "^ns-client: space.history: forbidden" "$stderr"
	run -1 --separate-stderr ns-client -k "$BOB" join "$S"
	assert_jq '.data.reason == "forbidden"'

	run -0 --separate-stderr ns-client invite "$S" "$BOB_DID"
	assert_jq ".space == \"$S\" and .seq == 3"
	run -0 --separate-stderr ns-client -k "$BOB" join "$S"
	assert_jq '.seq == 4'
	run -0 --separate-stderr ns-client -k "$BOB" history "$S"
	assert_jqs 'map(.event.type) == ["space.create","beam.ref",
	    "space.invite","space.join"]'
	run -0 --separate-stderr ns-client members "$S"
	assert_jq ".members | index(\"$BOB_DID\") != null"
}

@test "ns-client: delete sends a tombstone the subscribers see; get is gone" {
	node_start
	S=$(new_space channel del)
	P=$(ns-client beam "$S" '{"body":"oops"}' | jq -r .beam)
	ns-client subscribe "$S" --count 1 3>&- >"$BATS_TEST_TMPDIR/sub" &
	SUB=$!
	BG_PIDS="$BG_PIDS $SUB"
	wait_lines "$BATS_TEST_TMPDIR/sub" 1
	run -1 --separate-stderr ns-client -k "$BOB" delete "$P"
	run -0 --separate-stderr ns-client delete "$P"
	assert_jq ".beam == \"$P\" and .spaces == [\"$S\"]"
	wait_exit "$SUB"
	assert_jq ".event.type == \"beam.tombstone\" and .event.beam == \"$P\"" \
	    "$(sed -n 2p "$BATS_TEST_TMPDIR/sub")"
	run -1 --separate-stderr ns-client get "$P"
	assert_jq '.data.reason == "gone" and .data.tombstone.type == "beam.tombstone"'
	assert_match "^ns-client: beam.get: gone" "$stderr"
}

@test "ns-client: rpc prints whole messages; a bad method exits 1" {
	node_start
	S=$(new_space channel raw)
	run -1 --separate-stderr ns-client rpc <<-EOF
	{"method":"space.info","params":{"space":"$S"}}
	{"jsonrpc":"2.0","id":"x","method":"no.such.method","params":{}}
	EOF
	# answers come in the order the node sends them
	[ "${#lines[@]}" -eq 2 ]
	assert_jqs "map(select(.id == 1))[0].result.id == \"$S\""
	assert_jqs 'map(select(.id == "x"))[0].error.data.reason == "method_not_found"'
	assert_match "no.such.method: method_not_found" "$stderr"
	# no command is rpc too
	run -0 --separate-stderr ns-client <<<"{\"method\":\"space.info\",\"params\":{\"space\":\"$S\"}}"
	assert_jq '.result.head == 1'
}

@test "ns-client: beams on stdin give their results in order, 16 or 256 in flight" {
	node_start
	S=$(new_space channel bulk)
	for i in $(seq 1 200); do
		printf '{"n":%d}\n' "$i"
	done >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-client beam "$S" --window 16 <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 200 ]
	assert_jqs '[.[].seq] == [range(2; 202)]'
	run -0 --separate-stderr ns-client history "$S" --after 1
	assert_jqs '[.[].event.beam] | length == 200'
	# the default window, 256: as many as the node takes at once
	for i in $(seq 201 800); do
		printf '{"n":%d}\n' "$i"
	done >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-client beam "$S" <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 600 ]
	assert_jqs '[.[].seq] == [range(202; 802)]'
}

@test "ns-client: a bad line among the beams is an error line in its place" {
	node_start
	S=$(new_space channel mixed)
	run -1 --separate-stderr ns-client beam "$S" <<-'EOF'
	{"n":1}
	[2]
	{
	  "n": 3
	}
	EOF
	[ "${#lines[@]}" -eq 3 ]
	assert_jq '.seq == 2' "${lines[0]}"
	assert_jq '.error == "bad_input" and .line == 2' "${lines[1]}"
	assert_jq '.seq == 3' "${lines[2]}"
	assert_match "line 2" "$stderr"
}
