#!/usr/bin/env bats
# A world of bad input against one real node: each gets a JSON-RPC error or
# a closed connection, and the node stays up with nothing lost.

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

WSC="$BATS_TEST_DIRNAME/helpers/wsc"

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	export NS_KEY=$ALICE
	node_start
	PORT=$(cat "$NODE_DIR/run/port")
	ns-client create channel abuse >/dev/null
	S=channel/${ALICE_DID#did:key:}/abuse
	ns-client beam "$S" '{"title":"before"}' >/dev/null
}

teardown() {
	node_stop
}

# the node still serves, and the space holds what it held plus new beams
still_serving() {
	run -0 ns-client beam "$S" '{"title":"after"}'
	run -0 ns-client history "$S"
	printf '%s\n' "$output" | ns-verify >/dev/null
	[ "$(printf '%s\n' "$output" | jq -r '.seq' | tr '\n' ' ')" = "$1" ]
	ns-log -d "$NODE_DIR/log.db" verify >/dev/null
}

# rpc LINE...: send raw lines as alice after login; print what comes back
rpc() {
	printf '%s\n' "$@" | "$WSC" -p "$PORT" -k "$ALICE" --count $(($# + 2)) --timeout 10
}

@test "e2e abuse: frames that are not JSON-RPC get errors and the connection lives on" {
	run -0 rpc 'not json at all' '[1,2,3]' '{"jsonrpc":"2.0","id":1}' '{"a":1,"a":2}' \
		'{"jsonrpc":"2.0","id":9,"method":"space.info","params":{"space":"'"$S"'"}}'
	[ "${#lines[@]}" -eq 7 ]
	assert_jq '.error.data.reason == "parse_error" and .id == null' "${lines[2]}"
	assert_jq '.error.data.reason == "invalid_request"' "${lines[3]}"
	assert_jq '.error.data.reason == "invalid_request"' "${lines[4]}"
	assert_jq '.error.data.reason == "parse_error"' "${lines[5]}"
	assert_jq ".id == 9 and .result.id == \"$S\"" "${lines[6]}"
	still_serving "1 2 3 "
}

@test "e2e abuse: unknown methods and wrong params" {
	run -1 --separate-stderr ns-client --raw rpc <<<'{"jsonrpc":"2.0","id":1,"method":"space.explode","params":{}}
{"jsonrpc":"2.0","id":2,"method":"space.beam","params":[1]}
{"jsonrpc":"2.0","id":3,"method":"space.beam","params":{}}
{"jsonrpc":"2.0","id":4,"method":"space.history","params":{"space":5}}
{"jsonrpc":"2.0","id":5,"method":"space.history","params":{"space":"'"$S"'","limit":-1}}
{"jsonrpc":"2.0","id":6,"method":"beam.get","params":{"beam":"../../etc/passwd"}}
{"jsonrpc":"2.0","id":7,"method":"node.sync","params":{"space":"'"$S"'","after":0}}
{"jsonrpc":"2.0","id":8,"method":"space.history","params":{"space":"channel/'"${BOB_DID#did:key:}"'/x"}}'
	reasons=$(printf '%s\n' "$output" | jq -rs 'sort_by(.id) | map(.error.data.reason) | join(" ")')
	[ "$reasons" = "method_not_found invalid_params invalid_params invalid_params invalid_params invalid_params method_not_found not_found" ] ||
		{ echo "$reasons"; return 1; }
	still_serving "1 2 3 "
}

@test "e2e abuse: forged signatures and other authors' events are refused" {
	node_addr=$(ns-client info "$S" | jq -r .nodeAddress)
	join=$(jq -cn --arg s "$S" --arg n "$NODE_DID" --arg a "$node_addr" \
		'{type:"space.join",space:$s,node:$n,address:$a}' | ns-sign -k "$BOB")
	forged=${join/space.join/space.leave}
	run -1 --separate-stderr ns-client -k "$BOB" --raw rpc <<<"$(jq -cn --argjson e "$forged" '{jsonrpc:"2.0",id:1,method:"space.leave",params:{event:$e}}')"
	assert_jq '.error.data.reason == "bad_sig"'
	# bob's genuine event, submitted by alice's connection
	run -1 --separate-stderr ns-client --raw rpc <<<"$(jq -cn --argjson e "$join" '{jsonrpc:"2.0",id:1,method:"space.join",params:{event:$e}}')"
	assert_jq '.error.data.reason == "forbidden"'
	# a member name escaped to dodge a quick look is still checked
	esc=$(sed 's/"sig"/"\\u0073ig"/' <<<"$(jq -cn --argjson e "$forged" '{jsonrpc:"2.0",id:1,method:"space.leave",params:{event:$e}}')")
	run -1 --separate-stderr ns-client -k "$BOB" --raw rpc <<<"$esc"
	assert_jq '.error.data.reason == "bad_sig"'
	run -0 ns-client members "$S"
	assert_jq ".members == [\"$ALICE_DID\"]"
	still_serving "1 2 3 "
}

@test "e2e abuse: a beam by a non-member and a stranger reading a dm are refused" {
	run -1 --separate-stderr ns-client -k "$BOB" beam "$S" '{"title":"not a member"}'
	assert_jq '.data.reason == "forbidden"'
	ns-client create dm private >/dev/null
	D=dm/${ALICE_DID#did:key:}/private
	ns-client beam "$D" '{"body":"for members"}' >/dev/null
	run -1 --separate-stderr ns-client -k "$BOB" history "$D"
	assert_jq '.data.reason == "forbidden"'
	run -1 --separate-stderr ns-client -k "$BOB" members "$D"
	run -1 --separate-stderr ns-client -k "$BOB" beam "$D" '{"body":"let me in"}'
	run -0 ns-client history "$D"
	[ "${#lines[@]}" -eq 2 ]
	still_serving "1 2 3 "
}

@test "e2e abuse: a beam whose content does not match its ref is refused" {
	path=$(ns-client beam "$S" '{"title":"real"}' | jq -r .beam)
	# same ref, other content: the hash gives it away
	req=$(ns-client --raw rpc <<<'{"jsonrpc":"2.0","id":1,"method":"beam.get","params":{"beam":"'"$path"'"}}' | jq -c .result.beam)
	fake=$(jq -c '.title = "fake"' <<<"$req" | ns-sign -k "$ALICE")
	ref=$(ns-client history "$S" | jq -c 'select(.seq == 3) | .event')
	run -1 --separate-stderr ns-client --raw rpc <<<"$(jq -cn --argjson e "$ref" --argjson b "$fake" '{jsonrpc:"2.0",id:1,method:"space.beam",params:{event:$e,beam:$b}}')"
	assert_jq '.error.data.reason == "bad_event"'
	still_serving "1 2 3 4 "
}

@test "e2e abuse: bad logins: wrong nonce, another node, replayed login" {
	run -0 "$WSC" -p "$PORT" -k "$ALICE" --count 3 --nonce AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA </dev/null
	assert_jq '.error.data.reason == "unauthenticated"' "${lines[1]}"
	run -0 "$WSC" -p "$PORT" -k "$ALICE" --count 3 --node "$BOB_DID" </dev/null
	assert_jq '.error.data.reason == "unauthenticated"' "${lines[1]}"
	run -0 "$WSC" -p "$PORT" -k "$ALICE" --count 2 --print-login "$BATS_TEST_TMPDIR/login" </dev/null
	assert_jq '.result.did' "${lines[1]}"
	run -0 "$WSC" -p "$PORT" --count 2 <"$BATS_TEST_TMPDIR/login"
	assert_jq '.error.data.reason == "unauthenticated"' "${lines[1]}"
	# and nothing works without a login
	run -0 "$WSC" -p "$PORT" --count 2 <<<'{"jsonrpc":"2.0","id":1,"method":"space.info","params":{"space":"'"$S"'"}}'
	assert_jq '.error.data.reason == "unauthenticated"' "${lines[1]}"
	still_serving "1 2 3 "
}

@test "e2e abuse: oversize and binary frames close the connection" {
	run -0 "$WSC" -p "$PORT" -k "$ALICE" --count 5 --big 2000000 </dev/null
	has=$(printf '%s\n' "$output" | jq -s 'map(select(.wsc == "close")) | .[0].code')
	[ "$has" = 1009 ]
	run -0 "$WSC" -p "$PORT" -k "$ALICE" --count 5 --binary <<<'{"jsonrpc":"2.0","id":1,"method":"space.info","params":{}}'
	has=$(printf '%s\n' "$output" | jq -s 'map(select(.wsc == "close")) | .[0].code')
	[ "$has" = 1003 ]
	still_serving "1 2 3 "
}

@test "e2e abuse: 2,000 connections opened and dropped; the node stays up" {
	run -0 "$WSC" -p "$PORT" --churn 2000 --timeout 120
	assert_jq '.n == 2000'
	still_serving "1 2 3 "
	# every stage is still the first one: nothing crashed
	! grep -q 'exited with status' "$NODE_DIR/log"
}
