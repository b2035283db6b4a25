#!/usr/bin/env bats
# Live streams on real nodes over real WebSockets: chunks pushed on the
# owner's node reach every watcher on every node once and in order, and
# nothing refused is relayed.  Chunks are made with ns-sign and sent with
# the test client wsc, so that the node, not a client, is what is tested.

load helpers/common
load helpers/node
load helpers/nodes
bats_require_minimum_version 1.5.0

WSC="$BATS_TEST_DIRNAME/helpers/wsc"

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	CAROL=$(fixture_key carol)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	AKID=${ALICE_DID#did:key:}
	BKID=${BOB_DID#did:key:}
	T=stream/$AKID/live
	BG=
}

teardown() {
	local p
	for p in ${BG-}; do kill "$p" 2>/dev/null || true; done
	nodes_down
}

# chunk KEY SPACE N [DATA [AUTHOR]]: a stream.chunk signed by KEY; with
# AUTHOR, that DID is put in after signing (a forgery)
chunk() {
	jq -nc --arg s "$2" --argjson n "$3" --arg d "${4:-aGVsbG8}" --arg a "$(jq -r .did "$1")" \
		'{type:"stream.chunk",space:$s,n:$n,data:$d,author:$a,ts:1764000000000}' |
		ns-sign -k "$1" | jq -c --arg a "${5-}" 'if $a != "" then .author = $a else . end'
}

# push_req ID CHUNK: a stream.push request
push_req() {
	jq -nc --argjson id "$1" --argjson c "$2" \
		'{jsonrpc:"2.0",id:$id,method:"stream.push",params:{chunk:$c}}'
}

# pushes KEY SPACE FROM TO: stream.push requests of chunks FROM..TO, each
# carrying its number as data
pushes() {
	local n
	for n in $(seq "$3" "$4"); do
		jq -nc --arg s "$2" --argjson n "$n" --arg a "$(jq -r .did "$1")" \
			'{type:"stream.chunk",space:$s,n:$n,data:($n | tostring),author:$a,ts:1764000000000}'
	done | ns-sign -k "$1" |
		jq -c '{jsonrpc:"2.0",id:.n,method:"stream.push",params:{chunk:.}}'
}

# rpc PORT KEY LINE...: raw requests as KEY's user, one answer each
rpc() {
	local port=$1 key=$2
	shift 2
	printf '%s\n' "$@" | "$WSC" -p "$port" -k "$key" --count $(($# + 2)) --timeout 20
}

# watch NAME PORT KEY SPACE SECONDS: a watcher in the background, its
# messages in $BATS_TEST_TMPDIR/NAME; waits until the watch is answered
watch() {
	local out=$BATS_TEST_TMPDIR/$1
	{ printf '%s\n' "{\"jsonrpc\":\"2.0\",\"id\":\"w\",\"method\":\"stream.watch\",\"params\":{\"space\":\"$4\"}}"
	  sleep "$5"; } |
		"$WSC" -p "$2" -k "$3" --timeout $(($5 + 5)) --quiet 100 >"$out" 2>&1 3>&- &
	BG="$BG $!"
	eventually 10 grep -q '"id":"w"' "$out"
}

# chunks_of NAME: the n of each chunk a watcher got, in order
chunks_of() {
	jq -r 'select(.method == "chunk") | .params.n' "$BATS_TEST_TMPDIR/$1" | tr '\n' ' '
}

@test "e2e stream: chunks pushed on A reach watchers on A, B and C once, in order" {
	node_up a
	node_up b
	node_up c
	run -0 ns-client -k "$ALICE" -u "$URL_a" create stream live
	run -0 ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$T"
	run -0 ns-client -k "$CAROL" -u "$URL_c" join "northstar://$ADDR_a/$T"
	eventually 10 sh -c "ns-client -k '$BOB' -u '$URL_c' info '$T' | jq -e '.head >= 3'"
	port_a=${ADDR_a##*:} port_b=${ADDR_b##*:} port_c=${ADDR_c##*:}
	watch wa "$port_a" "$CAROL" "$T" 12
	watch wb "$port_b" "$BOB" "$T" 12
	watch wc "$port_c" "$CAROL" "$T" 12
	# B and C are in the tree once their first join is answered
	eventually 10 sh -c "jq -e '.streams[0].parents | length >= 1' '$DIR_b/run/relay.stats'"
	eventually 10 sh -c "jq -e '.streams[0].parents | length >= 1' '$DIR_c/run/relay.stats'"
	pushes "$ALICE" "$T" 1 60 >"$BATS_TEST_TMPDIR/push"
	run -0 "$WSC" -p "$port_a" -k "$ALICE" --count 62 --timeout 20 <"$BATS_TEST_TMPDIR/push"
	[ "$(printf '%s\n' "$output" | jq -s '[.[] | select(.result.n)] | length')" -eq 60 ]
	want="$(seq 1 60 | tr '\n' ' ')"
	for w in wa wb wc; do
		eventually 10 sh -c "[ \"\$(jq -r 'select(.method == \"chunk\") | .params.n' '$BATS_TEST_TMPDIR/$w' | wc -l)\" -ge 60 ]"
		[ "$(chunks_of $w)" = "$want" ]
	done
	# every chunk as pushed, signature and all
	jq -c 'select(.method == "chunk") | .params' "$BATS_TEST_TMPDIR/wc" >"$BATS_TEST_TMPDIR/got"
	jq -c '.params.chunk' "$BATS_TEST_TMPDIR/push" | cmp - "$BATS_TEST_TMPDIR/got"
	# a late viewer asks for what it missed
	run -0 rpc "$port_b" "$CAROL" '{"jsonrpc":"2.0","id":1,"method":"stream.recent","params":{"space":"'"$T"'","after":50}}'
	assert_jq '.result.edge == 60 and ([.result.chunks[].n] == [range(51; 61)])' "${lines[2]}"
}

@test "e2e stream: refused pushes are relayed nowhere" {
	node_up a
	run -0 ns-client -k "$ALICE" -u "$URL_a" create stream live
	run -0 ns-client -k "$ALICE" -u "$URL_a" create channel chat
	run -0 ns-client -k "$BOB" -u "$URL_a" create stream bobs
	port=${ADDR_a##*:}
	watch w "$port" "$CAROL" "$T" 6
	big=$(head -c 50000 /dev/zero | basenc --base64url | tr -d '=\n')
	run -0 rpc "$port" "$BOB" \
		"$(push_req 1 "$(chunk "$BOB" "$T" 1)")" \
		"$(push_req 2 "$(chunk "$BOB" "$T" 1 aGVsbG8 "$ALICE_DID")")" \
		"$(push_req 3 "$(chunk "$BOB" "stream/$AKID/nowhere" 1)")" \
		"$(push_req 4 "$(chunk "$BOB" "stream/$BKID/bobs" 1 "$big")")" \
		"$(push_req 5 "$(chunk "$BOB" "stream/$BKID/bobs" 1 '' | jq -c '.n = 0')")" \
		"$(push_req 6 "$(chunk "$BOB" "stream/$BKID/bobs" 1 | jq -c '.data = "b"')")"
	reason() { printf '%s\n' "$output" | jq -r -s --argjson id "$1" 'map(select(.id == $id))[0].error.data.reason'; }
	[ "$(reason 1)" = forbidden ]	# not the owner
	[ "$(reason 2)" = forbidden ]	# the owner's name on bob's chunk: not his to push
	[ "$(reason 3)" = not_found ]
	[ "$(reason 4)" = too_large ]
	[ "$(reason 5)" = bad_event ]
	[ "$(reason 6)" = bad_sig ]
	# the owner: a channel is no stream; a number pushed already is refused
	run -0 rpc "$port" "$ALICE" \
		"$(push_req 1 "$(chunk "$ALICE" "channel/$AKID/chat" 1)")" \
		"$(push_req 2 "$(chunk "$ALICE" "$T" 1 b25l)")" \
		"$(push_req 3 "$(chunk "$ALICE" "$T" 1 dHdv)")" \
		"$(push_req 4 "$(chunk "$ALICE" "$T" 2 dHdv)")"
	[ "$(reason 1)" = forbidden ]
	printf '%s\n' "$output" | jq -e -s 'map(select(.id == 2))[0].result.n == 1' >/dev/null
	printf '%s\n' "$output" | jq -e -s 'map(select(.id == 3))[0].error | .data.reason == "conflict" and .data.edge == 1' >/dev/null
	# after the node restarted, a chunk it numbered but no longer holds
	# is taken once more (it may not have gone out), then refused again
	node_down a
	node_again a
	port=${ADDR_a##*:}
	run -0 rpc "$port" "$ALICE" "$(push_req 5 "$(chunk "$ALICE" "$T" 2 dHdv)")" \
		"$(push_req 7 "$(chunk "$ALICE" "$T" 2 dHdv)")" \
		"$(push_req 6 "$(chunk "$ALICE" "$T" 3 dGhyZWU)")"
	printf '%s\n' "$output" | jq -e -s 'map(select(.id == 5))[0].result.n == 2' >/dev/null
	[ "$(reason 7)" = conflict ]
	printf '%s\n' "$output" | jq -e -s 'map(select(.id == 6))[0].result.n == 3' >/dev/null
	# the watcher (on the node before its restart) saw the two good chunks
	[ "$(jq -r 'select(.method == "chunk") | .params.data' "$BATS_TEST_TMPDIR/w" | tr '\n' ' ')" = "b25l dHdv " ]
	# and recent holds nothing refused
	run -0 rpc "$port" "$CAROL" '{"jsonrpc":"2.0","id":1,"method":"stream.recent","params":{"space":"'"$T"'"}}'
	assert_jq '[.result.chunks[].data] == ["dHdv", "dGhyZWU"]' "${lines[2]}"
}

@test "e2e stream: a watch needs the read rule, and ends when read access does" {
	node_up a
	run -0 ns-client -k "$ALICE" -u "$URL_a" create stream live
	port=${ADDR_a##*:}
	watch w "$port" "$CAROL" "$T" 8
	run -0 rpc "$port" "$ALICE" "$(push_req 1 "$(chunk "$ALICE" "$T" 1)")"
	eventually 5 grep -q '"method":"chunk"' "$BATS_TEST_TMPDIR/w"
	# members only from now on: carol, no member, is cut off with a reason
	run -0 ns-client -k "$ALICE" -u "$URL_a" rpc <<<"$(jq -nc --arg s "$T" \
		'{type:"space.rules",space:$s,rules:{read:"members"}}' | ns-sign -k "$ALICE" |
		jq -c '{jsonrpc:"2.0",id:1,method:"space.rules",params:{event:.}}')"
	eventually 5 grep -q '"method":"unwatched"' "$BATS_TEST_TMPDIR/w"
	run -0 rpc "$port" "$ALICE" "$(push_req 2 "$(chunk "$ALICE" "$T" 2)")"
	sleep 0.5
	[ "$(chunks_of w)" = "1 " ]
	assert_jq '.params.space == "'"$T"'" and .params.reason == "forbidden"' \
		"$(grep '"unwatched"' "$BATS_TEST_TMPDIR/w")"
	# and a new watch, or recent chunks, are refused
	run -0 rpc "$port" "$CAROL" \
		'{"jsonrpc":"2.0","id":1,"method":"stream.watch","params":{"space":"'"$T"'"}}' \
		'{"jsonrpc":"2.0","id":2,"method":"stream.recent","params":{"space":"'"$T"'"}}'
	[ "$(printf '%s\n' "$output" | jq -r 'select(.id == 1 or .id == 2) | .error.data.reason' | tr '\n' ' ')" = "forbidden forbidden " ]
	# relay methods are a node's, not a client's
	run -0 rpc "$port" "$CAROL" '{"jsonrpc":"2.0","id":1,"method":"relay.join","params":{"space":"'"$T"'","address":"127.0.0.1:1"}}'
	assert_jq '.error.data.reason == "method_not_found"' "${lines[2]}"
}

@test "e2e stream: a relay that forges chunks is cut off, and its chunks go nowhere" {
	node_up a
	node_up b
	run -0 ns-client -k "$ALICE" -u "$URL_a" create stream live
	run -0 ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$T"
	eventually 10 sh -c "ns-client -k '$BOB' -u '$URL_b' info '$T' | jq -e '.head >= 2'"
	port_b=${ADDR_b##*:}
	watch w "$port_b" "$BOB" "$T" 10
	# carol's key poses as a node and sends B a chunk in alice's name
	forged=$(chunk "$CAROL" "$T" 1 Zm9yZ2Vk "$ALICE_DID")
	run -0 "$WSC" -p "$port_b" -k "$CAROL" --role node --count 3 --timeout 10 \
		<<<"$(jq -nc --argjson c "$forged" '{jsonrpc:"2.0",method:"relay.chunk",params:{chunk:$c}}')"
	assert_jq '.wsc == "close" and .code == 1008' "${lines[2]}"
	grep -q "relayed" "$DIR_b/log"
	# the owner's real chunk still comes through
	run -0 rpc "${ADDR_a##*:}" "$ALICE" "$(push_req 1 "$(chunk "$ALICE" "$T" 1 cmVhbA)")"
	eventually 10 grep -q '"method":"chunk"' "$BATS_TEST_TMPDIR/w"
	[ "$(jq -r 'select(.method == "chunk") | .params.data' "$BATS_TEST_TMPDIR/w")" = cmVhbA ]
}

@test "e2e stream: bytes piped into ns-client stream push on A come out of stream watch on A, B and C, byte for byte" {
	node_up a
	node_up b
	node_up c
	run -0 ns-client -k "$ALICE" -u "$URL_a" create stream live
	run -0 ns-client -k "$BOB" -u "$URL_b" join "northstar://$ADDR_a/$T"
	run -0 ns-client -k "$CAROL" -u "$URL_c" join "northstar://$ADDR_a/$T"
	eventually 10 sh -c "ns-client -k '$BOB' -u '$URL_c' info '$T' | jq -e '.head >= 3'"
	head -c 600000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	for n in a b c; do
		u="URL_$n"
		timeout 60 ns-client -k "$CAROL" -u "${!u}" stream watch "$T" \
			>"$BATS_TEST_TMPDIR/out.$n" 2>"$BATS_TEST_TMPDIR/err.$n" 3>&- &
		BG="$BG $!"
	done
	# B and C are in the tree once their first join is answered
	eventually 10 sh -c "jq -e '.streams[0].parents | length >= 1' '$DIR_b/run/relay.stats' >/dev/null"
	eventually 10 sh -c "jq -e '.streams[0].parents | length >= 1' '$DIR_c/run/relay.stats' >/dev/null"
	eventually 10 sh -c "jq -e '.streams[0].watchers == 1' '$DIR_a/run/relay.stats' >/dev/null"
	run -0 timeout 60 ns-client -k "$ALICE" -u "$URL_a" stream push "$T" --chunk 8192 <"$BATS_TEST_TMPDIR/in"
	for n in a b c; do
		eventually 20 sh -c "[ \$(stat -c %s '$BATS_TEST_TMPDIR/out.$n') -ge 600000 ]"
		cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out.$n"
	done
	# each viewer node took each of the 74 chunks once, skipping none
	# (its stats file is rewritten every second)
	for n in b c; do
		d="DIR_$n"
		eventually 5 sh -c "jq -e '.streams[0] | .in == 74 and .skipped == 0' '${!d}/run/relay.stats' >/dev/null"
	done
}
