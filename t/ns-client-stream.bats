#!/usr/bin/env bats
# ns-client stream push and stream watch: a live stream's bytes, pushed as
# signed chunks and written out by watchers, against real nodes
# (helpers/nodes.bash).

load helpers/common
load helpers/node
load helpers/nodes
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	CAROL=$(fixture_key carol)
	ALICE_DID=$(jq -r .did "$ALICE")
	AKID=${ALICE_DID#did:key:}
	export NS_KEY=$ALICE
	unset NS_URL NS_NOW NS_ADDRESS
	T=stream/$AKID/live
	BG=
}

teardown() {
	local p
	for p in $BG; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	nodes_down
}

# bg CMD...: run CMD in the background with the caller's stdin (not
# /dev/null), its pid in $! and in BG
bg() {
	"$@" 3>&- 5>&- <&0 &
	BG="$BG $!"
}

# wait_exit PID [SECONDS]: until PID is gone (default 20 s); its status
wait_exit() {
	local i=0 n=$((${2:-20} * 10))
	while kill -0 "$1" 2>/dev/null; do
		[ $i -ge $n ] && { echo "wait_exit: $1 still runs" >&2; return 124; }
		sleep 0.1
		i=$((i + 1))
	done
	wait "$1"
}

# fifo: $BATS_TEST_TMPDIR/fifo, held open for writing on fd 5 (opened
# read-write, so that neither side waits for the other); closing fd 5 is
# the reader's end of input.  bg closes fd 5 in what it starts.
fifo() {
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	exec 5<>"$BATS_TEST_TMPDIR/fifo"
}

# edge_is N: the node has chunks up to N of $T (for eventually)
edge_is() {
	ns-client rpc <<<"{\"method\":\"stream.recent\",\"params\":{\"space\":\"$T\",\"limit\":0}}" |
		jq -e ".result.edge == $1" >/dev/null
}

# exits STATUS PID [SECONDS]: PID ends (in 20 s by default) with STATUS
# (not under run: a subshell cannot wait for the test's children)
exits() {
	local st=0
	wait_exit "$2" "${3:-20}" || st=$?
	[ "$st" -eq "$1" ] || { echo "exits: $2 ended with $st, not $1" >&2; return 1; }
}

# size_is FILE BYTES: FILE has BYTES bytes (for eventually)
size_is() {
	[ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -eq "$2" ]
}

# watcher NAME ARG...: ns-client -v stream watch ARG... in the background,
# its bytes in $BATS_TEST_TMPDIR/NAME, its stderr in NAME.err, its pid in
# W_NAME; waits (10 s at most) until the watch is made
watcher() {
	local name=$1 out=$BATS_TEST_TMPDIR/$1
	shift
	bg ns-client -v stream watch "$@" >"$out" 2>"$out.err"
	printf -v "W_$name" %s "$!"
	eventually 10 grep -q "watching" "$out.err"
}

@test "ns-client stream: --help names both commands and their options" {
	run -0 --separate-stderr ns-client --help
	assert_match "stream push SPACE"
	assert_match "stream watch SPACE"
	assert_match "--chunk BYTES"
	assert_match "--flush MS"
	assert_match "--retry SEC"
	[ -z "$stderr" ]
}

@test "ns-client stream: usage errors exit 2 before any connection" {
	export NS_URL=ws://127.0.0.1:1/
	run -2 --separate-stderr ns-client stream push
	[ -z "$output" ]
	assert_match "stream push: wrong number of arguments" "$stderr"
	run -2 --separate-stderr ns-client stream watch
	assert_match "stream watch: wrong number of arguments" "$stderr"
	run -2 --separate-stderr ns-client stream
	assert_match "stream: want push or watch" "$stderr"
	run -2 --separate-stderr ns-client stream tail "$T"
	assert_match "want push or watch" "$stderr"
	run -2 --separate-stderr ns-client stream push "$T" "$T"
	# not a stream
	run -2 --separate-stderr ns-client stream push "channel/$AKID/chat"
	assert_match "not a stream's id" "$stderr"
	run -2 --separate-stderr ns-client stream watch "stream/z6Mknot-a-key/x"
	run -2 --separate-stderr ns-client stream watch "stream/$AKID/a/b"
	# --chunk: 1 to 48876 raw bytes, so that a chunk stays within 64 KiB
	for c in 0 48877 49152 -1 1k ""; do
		run -2 --separate-stderr ns-client stream push "$T" --chunk "$c"
		assert_match "^ns-client: --chunk: want a number from 1 to 48876" "$stderr"
	done
	run -2 --separate-stderr ns-client stream push "$T" --flush soon
	run -2 --separate-stderr ns-client stream push "$T" --retry -1
	run -2 --separate-stderr ns-client stream push "$T" --window 65
	assert_match "from 1 to 64" "$stderr"
	# options of the other command
	run -2 --separate-stderr ns-client stream watch "$T" --chunk 100
	assert_match "for stream push only" "$stderr"
	run -2 --separate-stderr ns-client stream push "$T" --after 3
	assert_match "stream watch and history only" "$stderr"
	run -2 --separate-stderr ns-client stream push "$T" --count 3
	run -2 --separate-stderr ns-client stream watch "$T" --window 3
	run -2 --separate-stderr ns-client --raw stream watch "$T"
	run -2 --separate-stderr ns-client stream watch "$T" --after x
	run -2 --separate-stderr ns-client subscribe "$T" --chunk 5
}

@test "ns-client stream: a watcher gets a few hundred KB pushed live, byte for byte" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	head -c 400000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	watcher w "$T"
	run -0 --separate-stderr timeout 30 ns-client stream push "$T" <"$BATS_TEST_TMPDIR/in"
	[ -z "$output" ]
	[ -z "$stderr" ]
	eventually 10 size_is "$BATS_TEST_TMPDIR/w" 400000
	# a watch ends with SIGTERM, status 0
	kill -TERM "$W_w"
	exits 0 "$W_w"
	cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/w"
	run ! grep -q "lost\|dropped" "$BATS_TEST_TMPDIR/w.err"
}

@test "ns-client stream: watch --after replays the chunks the node holds, --count stops it" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	# 100 chunks of 3000 bytes: within the 256 a node keeps
	head -c 300000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr timeout 30 ns-client -v stream push "$T" --chunk 3000 <"$BATS_TEST_TMPDIR/in"
	assert_match "100 chunks \(1 to 100\), 300000 bytes pushed" "$stderr"
	timeout 30 ns-client stream watch "$T" --after 0 --count 100 | cmp - "$BATS_TEST_TMPDIR/in"
	# from the middle: chunks 91 to 100
	timeout 30 ns-client stream watch "$T" --after 90 --count 10 >"$BATS_TEST_TMPDIR/tail"
	tail -c 30000 "$BATS_TEST_TMPDIR/in" | cmp - "$BATS_TEST_TMPDIR/tail"
	# a second push goes on from the node's edge
	printf 'more' | timeout 30 ns-client stream push "$T"
	run -0 --separate-stderr timeout 30 ns-client stream watch "$T" --after 100 --count 1
	[ "$output" = more ]
	# without --count, -t ends the watch: status 0
	run -0 --separate-stderr timeout 30 ns-client -t 1 stream watch "$T"
	[ -z "$output" ]
}

@test "ns-client stream: a part chunk goes after --flush, before stdin ends" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	watcher w "$T" --count 1
	# three bytes, and stdin stays open
	fifo
	bg ns-client stream push "$T" --flush 50 <"$BATS_TEST_TMPDIR/fifo"
	printf abc >&5
	exits 0 "$W_w" 10
	[ "$(cat "$BATS_TEST_TMPDIR/w")" = abc ]
	exec 5>&-
}

@test "ns-client stream: only the owner pushes; another user's push exits 1" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	run -1 --separate-stderr timeout 30 ns-client -k "$BOB" stream push "$T" <<<"not bob's"
	[ -z "$output" ]
	assert_match "^ns-client: stream.push: forbidden: only the stream's owner pushes" "$stderr"
	# nothing reached the stream
	run -0 --separate-stderr timeout 30 ns-client -t 1 stream watch "$T" --after 0
	[ -z "$output" ]
	# a stream that does not exist: the node says so, exit 1
	run -1 --separate-stderr timeout 30 ns-client stream push "stream/$AKID/none" </dev/null
	assert_match "not_found" "$stderr"
	run -1 --separate-stderr timeout 30 ns-client stream watch "stream/$AKID/none"
	assert_match "^ns-client: stream.watch: not_found" "$stderr"
}

@test "ns-client stream: a watch the node ends (read access gone) exits 1" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	watcher w -k "$CAROL" "$T"
	printf one | timeout 30 ns-client stream push "$T"
	eventually 10 size_is "$BATS_TEST_TMPDIR/w" 3
	# members only from now on: carol is no member
	jq -nc --arg s "$T" '{type:"space.rules",space:$s,rules:{read:"members"}}' |
		ns-sign -k "$ALICE" | jq -c '{method:"space.rules",params:{event:.}}' |
		ns-client rpc >/dev/null
	exits 1 "$W_w" 10
	grep -q "watch ended by the node" "$BATS_TEST_TMPDIR/w.err"
	[ "$(cat "$BATS_TEST_TMPDIR/w")" = one ]
}

@test "ns-client stream: a watcher on another node gets every byte" {
	node_up a
	node_up b
	ns-client -u "$URL_a" create stream live >/dev/null
	ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$T" >/dev/null
	eventually 10 sh -c "ns-client -k '$BOB' -u '$URL_b' info '$T' | jq -e '.head >= 2'"
	watcher w -k "$BOB" -u "$URL_b" "$T"
	# B is in the tree once the owner node has answered its join
	eventually 10 sh -c "jq -e '.streams[0].parents | length >= 1' '$DIR_b/run/relay.stats'"
	head -c 200000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	timeout 30 ns-client -u "$URL_a" stream push "$T" <"$BATS_TEST_TMPDIR/in"
	eventually 15 size_is "$BATS_TEST_TMPDIR/w" 200000
	cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/w"
}

@test "ns-client stream: the pusher outlives a node restart; no byte is lost or doubled" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	for p in A B C; do
		head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/$p"
	done
	watcher before "$T"
	fifo
	bg ns-client -v stream push "$T" <"$BATS_TEST_TMPDIR/fifo" 2>"$BATS_TEST_TMPDIR/push.err"
	PUSH=$!
	# A goes out while the node runs; the watcher then has all of it
	cat "$BATS_TEST_TMPDIR/A" >&5
	eventually 10 size_is "$BATS_TEST_TMPDIR/before" 100000
	node_down a
	# the watcher's connection went with the node: exit 2
	exits 2 "$W_before" 10
	# B is read while the node is down, C once it is back
	cat "$BATS_TEST_TMPDIR/B" >&5
	sleep 0.5
	node_again a 5>&-
	watcher after "$T" --after 0
	cat "$BATS_TEST_TMPDIR/C" >&5
	exec 5>&-
	exits 0 "$PUSH" 30
	grep -q "connecting again" "$BATS_TEST_TMPDIR/push.err"
	grep -q "logged in again" "$BATS_TEST_TMPDIR/push.err"
	eventually 10 size_is "$BATS_TEST_TMPDIR/after" 200000
	kill -TERM "$W_after"
	exits 0 "$W_after"
	# the watchers before and after, one after the other, have every byte
	# once: the node kept its numbers across the restart, not the chunks
	cat "$BATS_TEST_TMPDIR/A" "$BATS_TEST_TMPDIR/B" "$BATS_TEST_TMPDIR/C" >"$BATS_TEST_TMPDIR/all"
	cat "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after" | cmp - "$BATS_TEST_TMPDIR/all"
	assert_match "chunks 1\.\.[0-9]+ were lost" "$(cat "$BATS_TEST_TMPDIR/after.err")"
}

@test "ns-client stream: a pusher whose node stays away gives up after --retry (exit 2)" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	fifo
	bg ns-client stream push "$T" --retry 2 <"$BATS_TEST_TMPDIR/fifo" 2>"$BATS_TEST_TMPDIR/push.err"
	PUSH=$!
	printf 'x' >&5
	eventually 10 edge_is 1
	node_down a
	printf 'y' >&5
	exits 2 "$PUSH" 15
	exec 5>&-
	assert_match "gave up after 2 s" "$(cat "$BATS_TEST_TMPDIR/push.err")"
}

@test "ns-client stream: on a busy node chunks wait their turn; none is lost or out of order" {
	# a share of 2 requests for alice while bob keeps the node busy
	NS_MAX_DID_INFLIGHT=2 node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	S=$(ns-client -k "$BOB" create channel c | jq -r .id)
	for i in $(seq 1 20000); do
		echo "{\"method\":\"space.info\",\"params\":{\"space\":\"$S\"}}"
	done >"$BATS_TEST_TMPDIR/flood"
	bg ns-client -q -k "$BOB" rpc --window 8 <"$BATS_TEST_TMPDIR/flood" >/dev/null
	sleep 0.5
	head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr timeout 60 ns-client -v stream push "$T" --chunk 4000 <"$BATS_TEST_TMPDIR/in"
	assert_match "25 chunks \(1 to 25\), 100000 bytes pushed" "$stderr"
	# the node did say busy, and every chunk waited it out
	assert_match ", [1-9][0-9]* busy answers" "$stderr"
	timeout 30 ns-client stream watch "$T" --after 0 --count 25 | cmp - "$BATS_TEST_TMPDIR/in"
}

@test "ns-client stream: a second pusher's chunk number is a conflict: exit 1" {
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	fifo
	bg ns-client stream push "$T" <"$BATS_TEST_TMPDIR/fifo" 2>"$BATS_TEST_TMPDIR/push.err"
	PUSH=$!
	printf one >&5
	eventually 10 edge_is 1
	# another pusher, same owner, takes chunk 2 first
	printf two | timeout 30 ns-client stream push "$T"
	printf three >&5
	exits 1 "$PUSH" 10
	exec 5>&-
	assert_match "^ns-client: stream.push: conflict" "$(cat "$BATS_TEST_TMPDIR/push.err")"
	[ "$(timeout 30 ns-client stream watch "$T" --after 0 --count 2)" = onetwo ]
}

# A TCP proxy to port $1 that prints its own port, and that, while the
# file $2/hold exists, passes nothing from the node to the client; when
# $2/cut appears it closes every connection and forgets both files.
PROXY='
import os, socket, sys, threading, time
port, d = int(sys.argv[1]), sys.argv[2]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
print(ls.getsockname()[1], flush=True)
conns = []
def pipe(a, b, down):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            if down and os.path.exists(d + "/hold"):
                continue
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def cutter():
    while True:
        time.sleep(0.05)
        if os.path.exists(d + "/cut"):
            for s in conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            os.unlink(d + "/cut")
            os.unlink(d + "/hold")
threading.Thread(target=cutter, daemon=True).start()
ls.settimeout(60)
while True:
    try:
        c, _ = ls.accept()
    except OSError:
        break
    s = socket.create_connection(("127.0.0.1", port))
    conns += [c, s]
    threading.Thread(target=pipe, args=(c, s, False), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c, True), daemon=True).start()
'

@test "ns-client stream: chunks the node took but never answered are sent again, and count as in" {
	command -v python3 >/dev/null || skip "no python3"
	node_up a
	export NS_URL=$URL_a
	ns-client create stream live >/dev/null
	bg python3 -c "$PROXY" "${ADDR_a##*:}" "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/proxy.port"
	eventually 10 test -s "$BATS_TEST_TMPDIR/proxy.port"
	watcher w "$T"
	fifo
	bg ns-client -v -u "ws://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/proxy.port")/" \
	    --any-address stream push "$T" --chunk 1000 \
	    <"$BATS_TEST_TMPDIR/fifo" 2>"$BATS_TEST_TMPDIR/push.err"
	PUSH=$!
	eventually 10 grep -q "pushing from chunk 1 on" "$BATS_TEST_TMPDIR/push.err"
	# five chunks reach the node, and no answer reaches the pusher
	touch "$BATS_TEST_TMPDIR/hold"
	head -c 5000 /dev/urandom >"$BATS_TEST_TMPDIR/A"
	cat "$BATS_TEST_TMPDIR/A" >&5
	eventually 10 edge_is 5
	touch "$BATS_TEST_TMPDIR/cut"
	eventually 10 grep -q "logged in again" "$BATS_TEST_TMPDIR/push.err"
	head -c 5000 /dev/urandom >"$BATS_TEST_TMPDIR/B"
	cat "$BATS_TEST_TMPDIR/B" >&5
	exec 5>&-
	exits 0 "$PUSH" 30
	# the five went again, the node said conflict, and that was that
	assert_match "10 chunks \(1 to 10\), 10000 bytes pushed; 1 reconnects, 5 chunks sent again" \
	    "$(cat "$BATS_TEST_TMPDIR/push.err")"
	eventually 10 size_is "$BATS_TEST_TMPDIR/w" 10000
	cat "$BATS_TEST_TMPDIR/A" "$BATS_TEST_TMPDIR/B" | cmp - "$BATS_TEST_TMPDIR/w"
	run ! grep -q "lost" "$BATS_TEST_TMPDIR/w.err"
}
