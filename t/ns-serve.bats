#!/usr/bin/env bats
# ns-serve: login, the JSON-RPC to bus mapping, lines from the bus, limits,
# dialing another node, shutdown.  Clients are t/helpers/wsc.

load helpers/common
bats_require_minimum_version 1.5.0

WSC="$BATS_TEST_DIRNAME/helpers/wsc"

setup_file() {
	if [ ! -x "$WSC" ] || [ "$WSC.c" -nt "$WSC" ]; then
		make -s -C "$BATS_TEST_DIRNAME/.." testhelpers >&2
	fi
}

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
	NODE_KEY=$(fixture_key node)
	ALICE_KEY=$(fixture_key alice)
	BOB_KEY=$(fixture_key bob)
	CAROL_KEY=$(fixture_key carol)
	NODE_DID=$(jq -r .did "$NODE_KEY")
	ALICE_DID=$(jq -r .did "$ALICE_KEY")
	CAROL_DID=$(jq -r .did "$CAROL_KEY")
	PIDS=()
}

teardown() {
	local p
	exec 5>&- 6>&- 7>&- 8<&- 2>/dev/null || true
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	# a sanitizer build reports leaks and errors at exit, on stderr
	if grep -l 'Sanitizer\|runtime error' ./*.err 2>/dev/null; then
		cat ./*.err >&2
		return 1
	fi
}

# wait_until SECONDS CMD...: run CMD every 0.1 s until it succeeds.
wait_until() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	echo "wait_until timed out: $*" >&2
	return 1
}

# has_line FILE FILTER: some JSON line of FILE satisfies the jq FILTER.
has_line() {
	[ -f "$1" ] && jq -c "select($2)" "$1" 2>/dev/null | grep -q .
}

# count_lines FILE FILTER: how many JSON lines of FILE satisfy FILTER.
count_lines() {
	jq -c "select($2)" "$1" | wc -l
}

# start_serve NAME [OPTION...]: an ns-serve reading NAME.in (a fifo held
# open on fd 5, or 6 for a second server), writing NAME.out and NAME.err;
# sets PORT (and NAME_PORT) and SERVE_PID.
start_serve() {
	local name=$1 key=$NODE_KEY
	shift
	if [ "${1-}" = --key ]; then
		key=$2
		shift 2
	fi
	mkfifo "$name.in"
	ns-serve -k "$key" -l 127.0.0.1:0 --port-file "$name.port" --first-id 1 "$@" \
	    <"$name.in" >"$name.out" 2>"$name.err" 3>&- 5>&- 6>&- &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
	if [ "$name" = b ]; then
		exec 6>"$name.in"
	else
		exec 5>"$name.in"
	fi
	wait_until 10 test -s "$name.port"
	PORT=$(cat "$name.port")
	printf -v "${name}_PORT" '%s' "$PORT"
}

# exits PID: wait (at most 10 s) for the server PID to end; its status must
# be 0.
exits_0() {
	wait_until 10 gone "$1"
	wait "$1"
}

gone() {
	! kill -0 "$1" 2>/dev/null
}

# bus LINE...: write lines to the server's stdin.
bus() {
	printf '%s\n' "$@" >&5
}

# reqs METHOD ID...: a JSON-RPC request of METHOD with empty params for
# each ID, one per line.
reqs() {
	local m=$1 i
	shift
	for i in "$@"; do
		printf '{"jsonrpc":"2.0","id":%d,"method":"%s","params":{}}\n' "$i" "$m"
	done
}

# end_req METHOD ID [RESULT]: the ring ends the request of METHOD with ID
# that a.out shows, answering RESULT when given.
end_req() {
	local c r
	c=$(jq -r "select(.m == \"$1\" and .id == $2) | .c" a.out)
	r=$(jq -r "select(.m == \"$1\" and .id == $2) | .r" a.out)
	if [ -n "${3-}" ]; then
		bus "{\"to\":$c,\"r\":$r,\"msg\":{\"id\":$2,\"jsonrpc\":\"2.0\",\"result\":$3}}"
	else
		bus "{\"to\":$c,\"r\":$r}"
	fi
}

# client NAME [WSC OPTION...]: a background wsc writing NAME.out, stdin
# from /dev/null.  Neither it nor a server may hold the bus fifos open, or
# a server would never see EOF.
client() {
	local name=$1
	shift
	client_from /dev/null "$name" "$@"
}

# client_from FILE NAME [WSC OPTION...]: the same, its stdin from FILE.
client_from() {
	local in=$1 name=$2
	shift 2
	"$WSC" -p "$PORT" "$@" <"$in" >"$name.out" 2>"$name.err" 3>&- 5>&- 6>&- &
	PIDS+=("$!")
}

@test "ns-serve: --help prints the usage on stdout and exits 0" {
	run -0 --separate-stderr ns-serve --help
	assert_match '^usage: ns-serve -k NODEKEY'
	[ -z "$stderr" ]
	run -0 ns-serve --version
	[ "$output" = "ns-serve 0.1.0" ]
}

@test "ns-serve: bad usage exits 2" {
	run -2 --separate-stderr ns-serve
	assert_match 'NODEKEY is required' "$stderr"
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" --max-conn 0
	assert_match 'max-conn' "$stderr"
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" -l nocolon
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" -l 127.0.0.1:99999
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" -l node.example:7700 </dev/null
	assert_match 'listen node.example:7700: not a numeric address' "$stderr"
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" --bogus
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" extra
}

@test "ns-serve: an unreadable key exits 2" {
	run -2 --separate-stderr ns-serve -k nonexistent.key </dev/null
	assert_match '^ns-serve: .*nonexistent.key' "$stderr"
	chmod 644 "$NODE_KEY"
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" </dev/null
}

@test "ns-serve: a port in use exits 2 naming the address" {
	start_serve a
	run -2 --separate-stderr ns-serve -k "$NODE_KEY" -l "127.0.0.1:$PORT" </dev/null
	[ "$stderr" = "ns-serve: listen 127.0.0.1:$PORT: Address already in use" ]
}

@test "ns-serve: says where it listens on stderr" {
	start_serve a
	wait_until 5 grep -q "^ns-serve: listening on 127.0.0.1:$PORT\$" a.err
}

@test "ns-serve: the challenge is signed by the node and names it" {
	start_serve a
	run -0 "$WSC" -p "$PORT" --count 1 </dev/null
	assert_jq '.jsonrpc == "2.0" and .method == "auth.challenge" and (has("id") | not)'
	assert_jq '.params | keys == ["address","node","nonce","sig","ts","type"]'
	assert_jq ".params.type == \"auth.challenge\" and .params.node == \"$NODE_DID\""
	assert_jq ".params.address == \"127.0.0.1:$PORT\""
	assert_jq '.params.nonce | test("^[A-Za-z0-9_-]{43}$")'
	assert_jq '.params.ts | type == "number"'
	local first=$output
	jq -c .params <<<"$first" | ns-verify -q
	# each connection gets its own nonce
	run -0 "$WSC" -p "$PORT" --count 1 </dev/null
	[ "$(jq -r .params.nonce <<<"$output")" != "$(jq -r .params.nonce <<<"$first")" ]
}

@test "ns-serve: -a sets the address in the challenge" {
	start_serve a -a node.example:7700
	run -0 "$WSC" -p "$PORT" --count 1 </dev/null
	assert_jq '.params.address == "node.example:7700"'
}

@test "ns-serve: login answers did, role, node and puts conn.open on the bus" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 2 </dev/null
	[ "${#lines[@]}" -eq 2 ]
	assert_jq "select(.id == \"login\") | .result == {did: \"$ALICE_DID\", role: \"client\", node: \"$NODE_DID\"}" "${lines[1]}"
	wait_until 5 has_line a.out ".m == \"conn.open\" and .c == 1 and .did == \"$ALICE_DID\" and .role == \"client\""
	# first the news that earlier connections are gone, then the login
	assert_match '^\{"m":"conn.reset","first":1\}$' "$(head -n 1 a.out)"
	assert_match '^\{"m":"conn.open","c":1,"did":"[^"]+","role":"client"\}$' "$(sed -n 2p a.out)"
	wait_until 5 has_line a.out ". == {m: \"conn.close\", c: 1, did: \"$ALICE_DID\", role: \"client\"}"
}

# login_fails WSC-OPTION... : the login is refused with unauthenticated,
# and a fresh challenge follows.
login_fails() {
	local opened
	opened=$(grep -c conn.open a.out || true)
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 3 "$@" </dev/null
	[ "${#lines[@]}" -eq 3 ]
	assert_jq '.id == "login" and .error.code == -32001 and .error.data.reason == "unauthenticated"' "${lines[1]}"
	assert_jq '.method == "auth.challenge"' "${lines[2]}"
	[ "$(jq -r .params.nonce <<<"${lines[0]}")" != "$(jq -r .params.nonce <<<"${lines[2]}")" ]
	[ "$(grep -c conn.open a.out || true)" -eq "$opened" ]
}

@test "ns-serve: login with a wrong nonce is unauthenticated" {
	start_serve a
	login_fails --nonce AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
	assert_jq '.error.message | test("nonce")' "${lines[1]}"
}

@test "ns-serve: login naming another node is unauthenticated" {
	start_serve a
	login_fails --node "$CAROL_DID"
	assert_jq '.error.message | test("node")' "${lines[1]}"
}

@test "ns-serve: login naming another address is unauthenticated" {
	start_serve a
	login_fails --address 127.0.0.1:1
	assert_jq '.error.message | test("address")' "${lines[1]}"
}

@test "ns-serve: login with a bad signature is unauthenticated" {
	start_serve a
	login_fails --bad-sig
	assert_jq '.error.message | test("signature")' "${lines[1]}"
}

@test "ns-serve: login with a stale or future ts is unauthenticated" {
	start_serve a
	local now
	now=$(($(date +%s) * 1000))
	login_fails --ts $((now - 330000))
	assert_jq '.error.message | test("ts")' "${lines[1]}"
	login_fails --ts $((now + 330000))
	assert_jq '.error.message | test("ts")' "${lines[1]}"
}

@test "ns-serve: the login ts may be 5 minutes off the clock, not more" {
	export NS_NOW=1767225600000
	start_serve a
	run -0 "$WSC" -p "$PORT" --count 1 </dev/null
	assert_jq ".params.ts == $NS_NOW"
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 2 --ts $((NS_NOW + 300000)) </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 2 --ts $((NS_NOW - 300000)) </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
	login_fails --ts $((NS_NOW + 300001))
	login_fails --ts $((NS_NOW - 300001))
}

@test "ns-serve: login with another role is unauthenticated" {
	start_serve a
	login_fails --role admin
	assert_jq '.error.message | test("role")' "${lines[1]}"
}

@test "ns-serve: a login replayed on another connection is unauthenticated" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 2 --print-login login.json </dev/null
	assert_jq '.result.did' "${lines[1]}"
	run -0 "$WSC" -p "$PORT" --count 2 <login.json
	assert_jq '.error.data.reason == "unauthenticated" and .id == "login"' "${lines[1]}"
	[ "$(count_lines a.out '.m == "conn.open"')" -eq 1 ]
}

@test "ns-serve: a second login after a good one is an invalid request" {
	start_serve a
	# after a success a second login is an invalid request
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 3 <<<'{"jsonrpc":"2.0","id":2,"method":"auth.login","params":{}}'
	assert_jq '.result.role == "client"' "${lines[1]}"
	assert_jq '.id == 2 and .error.data.reason == "invalid_request"' "${lines[2]}"
}

@test "ns-serve: the third failed login closes the connection with 1008" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --nonce x --count 9 <<'EOF'
{"jsonrpc":"2.0","id":2,"method":"auth.login","params":{"type":"auth.login"}}
{"jsonrpc":"2.0","id":3,"method":"auth.login","params":[]}
EOF
	[ "${#lines[@]}" -eq 7 ]
	assert_jq '.id == 2 and .error.data.reason == "unauthenticated"' "${lines[3]}"
	assert_jq '.id == 3 and .error.data.reason == "unauthenticated"' "${lines[5]}"
	assert_jq '.wsc == "close" and .code == 1008' "${lines[6]}"
}

@test "ns-serve: before login every method is unauthenticated" {
	start_serve a
	run -0 "$WSC" -p "$PORT" --count 2 <<<'{"jsonrpc":"2.0","id":1,"method":"space.info","params":{"space":"x"}}'
	assert_jq '.id == 1 and .error.code == -32001 and .error.data.reason == "unauthenticated"' "${lines[1]}"
	! grep -q space.info a.out
}

@test "ns-serve: a connection that does not log in is closed with 1008" {
	start_serve a --login-timeout 1
	run -0 "$WSC" -p "$PORT" --count 5 --timeout 5 </dev/null
	[ "${#lines[@]}" -eq 2 ]
	assert_jq '.wsc == "close" and .code == 1008' "${lines[1]}"
}

@test "ns-serve: a logged-in connection outlives the login timeout" {
	start_serve a --login-timeout 1
	client c1 -k "$ALICE_KEY" --count 3 --timeout 10
	wait_until 5 has_line a.out '.m == "conn.open"'
	sleep 1.5
	bus '{"to":1,"msg":{"still":"here"}}'
	wait_until 5 has_line c1.out '.still == "here"'
	! has_line c1.out '.wsc == "close"'
}

@test "ns-serve: a frame that is not JSON is a parse error and the connection stays" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 5 <<'EOF'
not json
{"a":1,"a":2}
[{"jsonrpc":"2.0","id":1,"method":"space.info"}]
{"jsonrpc":"2.0","id":4,"method":"space.info","params":{"space":"s"}}
EOF
	assert_jq '.id == null and .error.code == -32700 and .error.data.reason == "parse_error"' "${lines[2]}"
	assert_jq '.error.message | length > 0' "${lines[2]}"
	assert_jq '.id == null and .error.code == -32700' "${lines[3]}"
	assert_jq '.id == null and .error.code == -32600 and .error.data.reason == "invalid_request"' "${lines[4]}"
	wait_until 5 has_line a.out '.m == "space.info" and .id == 4'
}

@test "ns-serve: not JSON-RPC is an invalid request, with the id when it has one" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 6 <<'EOF'
{"id":1,"method":"space.info"}
{"jsonrpc":"2.0","id":"x","method":7}
"just a string"
{"jsonrpc":"2.0","id":{"o":1},"method":"space.info"}
EOF
	assert_jq '.id == 1 and .error.data.reason == "invalid_request"' "${lines[2]}"
	assert_jq '.id == "x" and .error.data.reason == "invalid_request"' "${lines[3]}"
	assert_jq '.id == null and .error.data.reason == "invalid_request"' "${lines[4]}"
	assert_jq '.id == null and .error.data.reason == "invalid_request"' "${lines[5]}"
}

@test "ns-serve: unknown methods and node methods from clients are method_not_found" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 5 <<'EOF'
{"jsonrpc":"2.0","id":1,"method":"log.append","params":{}}
{"jsonrpc":"2.0","id":2,"method":"node.submit","params":{}}
{"jsonrpc":"2.0","id":3,"method":"space.info","params":[1]}
EOF
	assert_jq '.id == 1 and .error.code == -32601 and .error.data.reason == "method_not_found"' "${lines[2]}"
	assert_jq '.id == 2 and .error.code == -32601' "${lines[3]}"
	assert_jq '.id == 3 and .error.code == -32602 and .error.data.reason == "invalid_params"' "${lines[4]}"
	sleep 0.2
	! grep -q 'log.append\|node.submit\|"id":3' a.out
}

@test "ns-serve: a request becomes one bus line: m, c, r, did, role, id, p" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --fragment 7 --nl '<NL>' <<'EOF'
{"params":{"space":"channel/x/y","b":[1,2],"a":"é"},"method":"space.info","id":"r-1","jsonrpc":"2.0"}
{"jsonrpc":"2.0","method":"unsubscribe"}
{"jsonrpc":"2.0",<NL> "id": 9 , "method":"space.members"}<NL>
EOF
	wait_until 5 has_line a.out '.m == "space.members"'
	local did=$ALICE_DID
	grep -qxF "{\"m\":\"space.info\",\"c\":1,\"r\":1,\"did\":\"$did\",\"role\":\"client\",\"id\":\"r-1\",\"p\":{\"a\":\"é\",\"b\":[1,2],\"space\":\"channel/x/y\"}}" a.out
	grep -qxF "{\"m\":\"unsubscribe\",\"c\":1,\"r\":2,\"did\":\"$did\",\"role\":\"client\",\"p\":{}}" a.out
	grep -qxF "{\"m\":\"space.members\",\"c\":1,\"r\":3,\"did\":\"$did\",\"role\":\"client\",\"id\":9,\"p\":{}}" a.out
}

@test "ns-serve: a node-role login may use node methods, and its responses reach the bus" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$CAROL_KEY" --role node <<'EOF'
{"jsonrpc":"2.0","id":1,"method":"node.sync","params":{"space":"s","after":0}}
{"jsonrpc":"2.0","id":5,"result":{"envelope":{}}}
EOF
	assert_jq '.result.role == "node"' "${lines[1]}"
	wait_until 5 has_line a.out '.m == "rpc.response"'
	has_line a.out ".m == \"node.sync\" and .role == \"node\" and .did == \"$CAROL_DID\" and .id == 1"
	grep -qxF "{\"m\":\"rpc.response\",\"c\":1,\"r\":2,\"did\":\"$CAROL_DID\",\"role\":\"node\",\"p\":{\"id\":5,\"jsonrpc\":\"2.0\",\"result\":{\"envelope\":{}}}}" a.out
}

@test "ns-serve: responses from clients are ignored" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" <<'EOF'
{"jsonrpc":"2.0","id":5,"result":{}}
{"jsonrpc":"2.0","id":6,"method":"space.info","params":{}}
EOF
	wait_until 5 has_line a.out '.m == "space.info"'
	! has_line a.out '.m == "rpc.response"'
}

@test "ns-serve: a to line is delivered as it is; lines for gone connections are dropped" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 3
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"to":99,"msg":{"x":1}}' '{"to":1,"msg":{"b":1,  "a":[2]}}'
	wait_until 5 has_line c1.out '.b == 1'
	grep -qxF '{"b":1,  "a":[2]}' c1.out
}

@test "ns-serve: pub reaches each subscriber once, and not after unsub" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 5
	wait_until 5 has_line a.out '.m == "conn.open" and .c == 1'
	client c2 -k "$BOB_KEY" --count 4
	wait_until 5 has_line a.out '.m == "conn.open" and .c == 2'
	client c3 -k "$CAROL_KEY" --count 3
	wait_until 5 has_line a.out '.m == "conn.open" and .c == 3'
	bus '{"sub":1,"space":"channel/k/one"}' '{"sub":1,"space":"channel/k/one"}' \
	    '{"sub":2,"space":"channel/k/one"}' '{"sub":3,"space":"channel/k/two"}' \
	    '{"pub":"channel/k/one","msg":{"n":1}}' \
	    '{"unsub":2,"space":"channel/k/one"}' \
	    '{"pub":"channel/k/one","msg":{"n":2}}' \
	    '{"pub":"channel/k/none","msg":{"n":3}}' \
	    '{"to":1,"msg":{"end":1}}' '{"to":2,"msg":{"end":2}}' '{"to":3,"msg":{"end":3}}'
	wait_until 5 has_line c1.out '.end'
	wait_until 5 has_line c2.out '.end'
	wait_until 5 has_line c3.out '.end'
	[ "$(count_lines c1.out '.n == 1')" -eq 1 ]
	[ "$(count_lines c1.out '.n == 2')" -eq 1 ]
	[ "$(count_lines c2.out '.n == 1')" -eq 1 ]
	[ "$(count_lines c2.out '.n')" -eq 1 ]
	[ "$(count_lines c3.out '.n')" -eq 0 ]
}

@test "ns-serve: connection ids start from the start time, so a restart never reuses one" {
	mkfifo x.in
	exec 7<>x.in
	ns-serve -k "$NODE_KEY" -l 127.0.0.1:0 --port-file x.port <x.in >x.out 2>x.err 3>&- 5>&- 6>&- &
	PIDS+=("$!")
	wait_until 5 test -s x.port
	t0=$(date +%s)
	"$WSC" -p "$(cat x.port)" -k "$ALICE_KEY" --count 2 </dev/null >/dev/null
	wait_until 5 has_line x.out '.m == "conn.open"'
	c=$(jq -s 'map(select(.m == "conn.open"))[0].c' x.out)
	[ "$c" -ge $(((t0 - 5) * 1000000)) ] && [ "$c" -le $(((t0 + 5) * 1000000)) ]
	exec 7>&-
}

@test "ns-serve: a subscribe over 256 per connection is refused at once" {
	start_serve a
	mkfifo c1.in
	client_from c1.in c1 -k "$ALICE_KEY" --count 4 --timeout 20
	exec 8>c1.in
	wait_until 5 has_line a.out '.m == "conn.open"'
	for i in $(seq 1 256); do
		printf '{"sub":1,"space":"channel/z/s%d"}\n' "$i"
	done >&5
	# stdin is handled in order: once the mark arrives, the subs are in
	bus '{"to":1,"msg":{"mark":1}}'
	wait_until 5 has_line c1.out '.mark == 1'
	echo '{"jsonrpc":"2.0","id":"s","method":"subscribe","params":{"space":"channel/z/one-more"}}' >&8
	exec 8>&-
	wait_until 5 has_line c1.out '.id == "s"'
	has_line c1.out '.id == "s" and .error.data.reason == "too_large"'
	! has_line a.out '.m == "subscribe"'
}

@test "ns-serve: a close line closes the connection with its code after what is queued" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 9
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"to":1,"msg":{"last":1}}' '{"close":1,"code":4001,"reason":"bye now"}'
	wait_until 5 has_line c1.out '.wsc == "close"'
	has_line c1.out '.last == 1'
	has_line c1.out '.code == 4001 and .reason == "bye now"'
	wait_until 5 has_line a.out '.m == "conn.close" and .c == 1'
}

@test "ns-serve: a message over --max-msg is closed with 1009" {
	start_serve a --max-msg 1024
	run -0 "$WSC" -p "$PORT" --count 5 --big 2000 </dev/null
	assert_jq '.wsc == "close" and .code == 1009' "${lines[1]}"
	# in fragments too
	run -0 "$WSC" -p "$PORT" --count 5 --big 2000 --fragment 100 </dev/null
	assert_jq '.wsc == "close" and .code == 1009' "${lines[1]}"
	# exactly at the limit is fine (and a string is invalid_request)
	run -0 "$WSC" -p "$PORT" --count 2 --big 1024 --fragment 100 </dev/null
	assert_jq '.error.data.reason == "invalid_request"' "${lines[1]}"
}

@test "ns-serve: a binary frame is closed with 1003" {
	start_serve a
	run -0 "$WSC" -p "$PORT" --count 5 --binary <<<'{"jsonrpc":"2.0","id":1,"method":"x"}'
	assert_jq '.wsc == "close" and .code == 1003' "${lines[1]}"
}

@test "ns-serve: invalid UTF-8 is closed with 1007" {
	start_serve a
	run -0 "$WSC" -p "$PORT" --count 5 < <(printf '"\xff\xfe"\n')
	assert_jq '.wsc == "close" and .code == 1007' "${lines[1]}"
}

@test "ns-serve: connections over --max-conn are closed with 1013" {
	start_serve a --max-conn 2
	client c1 --count 9
	client c2 --count 9
	wait_until 5 has_line c1.out '.method == "auth.challenge"'
	wait_until 5 has_line c2.out '.method == "auth.challenge"'
	run -0 "$WSC" -p "$PORT" --count 5 </dev/null
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.wsc == "close" and .code == 1013' "${lines[0]}"
}

@test "ns-serve: a reader too slow for --max-queue is closed" {
	start_serve a --max-queue 65536
	client slow -k "$ALICE_KEY" --stall --timeout 30
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"sub":1,"space":"s"}'
	local blob i
	blob=$(head -c 30000 /dev/zero | tr '\0' x)
	for i in $(seq 600); do
		printf '{"pub":"s","msg":{"n":%d,"pad":"%s"}}\n' "$i" "$blob"
	done >&5
	wait_until 15 has_line a.out '.m == "conn.close" and .c == 1'
	grep -q 'connection 1: over 65536 unsent bytes' a.err
	# the server is still fine
	run -0 "$WSC" -p "$PORT" -k "$BOB_KEY" --count 2 </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
}

@test "ns-serve: a request that came back round is answered method_not_found" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 3
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"m":"tick","now":1}' '{"m":"conn.open","c":1,"did":"x","role":"client"}' \
	    "{\"m\":\"space.info\",\"c\":1,\"did\":\"$ALICE_DID\",\"role\":\"client\",\"p\":{}}" \
	    "{\"m\":\"space.info\",\"c\":1,\"did\":\"$ALICE_DID\",\"role\":\"client\",\"id\":\"q\",\"p\":{}}"
	wait_until 5 has_line c1.out '.id == "q"'
	has_line c1.out '.id == "q" and .error.code == -32601 and (.error.message | test("no stage handled space.info"))'
	[ "$(count_lines c1.out '.error')" -eq 1 ]
	! grep -q 'unknown' a.err
}

@test "ns-serve: unknown bus lines are reported briefly and dropped" {
	start_serve a
	local junk
	junk=$(head -c 500 /dev/zero | tr '\0' q)
	bus "{\"what\":\"$junk\"}" 'not even json'
	wait_until 5 grep -q 'not even json' a.err
	grep 'unknown bus line' a.err | awk 'length > 140 { exit 1 }'
	run -0 "$WSC" -p "$PORT" --count 1 </dev/null
}

@test "ns-serve: an over-long bus line is skipped, the next one works" {
	start_serve a --max-msg 1024
	client c1 -k "$ALICE_KEY" --count 3
	wait_until 5 has_line a.out '.m == "conn.open"'
	local blob
	blob=$(head -c 20000 /dev/zero | tr '\0' x)
	blob=$(head -c $((4 * 1024 * 1024 + 10)) /dev/zero | tr '\0' x)
	bus "{\"to\":1,\"msg\":{\"big\":\"$blob\"}}" '{"to":1,"msg":{"small":1}}'
	wait_until 5 has_line c1.out '.small == 1'
	! has_line c1.out '.big'
	grep -q 'bus line over' a.err
}

ticks_at_least() {
	[ "$(grep -c '"m":"tick"' a.out)" -ge "$1" ]
}

@test "ns-serve: ticks come every --tick ms" {
	start_serve a --tick 100
	wait_until 5 ticks_at_least 3
	assert_jq '.now | type == "number"' "$(grep -m1 tick a.out)"
	grep -qx '{"m":"tick","now":[0-9]*}' a.out
}

@test "ns-serve: 2000 connections come and go and the server still serves" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 3 --timeout 60
	wait_until 5 has_line a.out '.m == "conn.open"'
	run -0 "$WSC" -p "$PORT" --churn 1000 --timeout 60
	local rss1 rss2
	rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status")
	run -0 "$WSC" -p "$PORT" --churn 1000 --timeout 60
	assert_jq '.n == 1000'
	rss2=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status")
	echo "rss $rss1 -> $rss2 kB" >&2
	# (a sanitizer build keeps freed memory in quarantine)
	if ! grep -qa __asan_init "$(command -v ns-serve)"; then
		[ $((rss2 - rss1)) -lt 2048 ]
	fi
	bus '{"to":1,"msg":{"alive":1}}'
	wait_until 5 has_line c1.out '.alive == 1'
	run -0 "$WSC" -p "$PORT" -k "$BOB_KEY" --count 2 </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
}

@test "ns-serve: stdin EOF closes connections with 1001 and exits 0" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 9
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"to":1,"msg":{"before":"eof"}}'
	exec 5>&-
	exits_0 "$SERVE_PID"
	wait_until 5 has_line c1.out '.wsc == "close"'
	has_line c1.out '.before == "eof"'
	has_line c1.out '.code == 1001'
	has_line a.out '.m == "conn.close" and .c == 1'
}

@test "ns-serve: SIGTERM closes connections with 1001 and exits 0" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 9
	wait_until 5 has_line a.out '.m == "conn.open"'
	kill -TERM "$SERVE_PID"
	exits_0 "$SERVE_PID"
	wait_until 5 has_line c1.out '.wsc == "close" and .code == 1001'
}

@test "ns-serve: dial logs in to another node; both sides see role node" {
	start_serve b --key "$CAROL_KEY"
	start_serve a
	bus "{\"dial\":\"ws://127.0.0.1:$b_PORT/\",\"node\":\"$CAROL_DID\"}"
	wait_until 10 has_line a.out '.m == "conn.open"'
	has_line a.out ". == {m: \"conn.open\", c: 1, did: \"$CAROL_DID\", role: \"node\", url: \"ws://127.0.0.1:$b_PORT/\"}"
	wait_until 5 has_line b.out ". == {m: \"conn.open\", c: 1, did: \"$NODE_DID\", role: \"node\"}"
	# a request from a to b, and b's answer back as rpc.response
	bus '{"to":1,"msg":{"jsonrpc":"2.0","id":5,"method":"node.head","params":{"space":"s"}}}'
	wait_until 5 has_line b.out ".m == \"node.head\" and .did == \"$NODE_DID\" and .role == \"node\" and .id == 5"
	printf '%s\n' '{"to":1,"msg":{"jsonrpc":"2.0","id":5,"result":{"ok":true}}}' >&6
	wait_until 5 has_line a.out ".m == \"rpc.response\" and .did == \"$CAROL_DID\" and .p.result.ok"
	# and b may call a over the same connection
	printf '%s\n' '{"to":1,"msg":{"jsonrpc":"2.0","id":6,"method":"node.sync","params":{}}}' >&6
	wait_until 5 has_line a.out ".m == \"node.sync\" and .c == 1 and .role == \"node\" and .did == \"$CAROL_DID\""
}

@test "ns-serve: dial to the wrong node or nowhere is conn.fail" {
	start_serve b --key "$CAROL_KEY"
	start_serve a
	bus "{\"dial\":\"127.0.0.1:$b_PORT\",\"node\":\"$ALICE_DID\"}"
	wait_until 10 has_line a.out ".m == \"conn.fail\" and .url == \"127.0.0.1:$b_PORT\""
	has_line a.out '.m == "conn.fail" and (.reason | test("another node"))'
	! has_line b.out '.m == "conn.open"'
	exec 6>&-
	exits_0 "${PIDS[0]}"
	bus "{\"dial\":\"ws://127.0.0.1:$b_PORT/\"}" '{"dial":"ftp://x/"}' \
	    '{"dial":"wss://127.0.0.1:1/"}'
	wait_until 10 has_line a.out ".m == \"conn.fail\" and .url == \"ws://127.0.0.1:$b_PORT/\""
	wait_until 10 has_line a.out '.m == "conn.fail" and .url == "ftp://x/"'
	wait_until 10 has_line a.out '.m == "conn.fail" and .url == "wss://127.0.0.1:1/" and (.reason | test("--wss-dial"))'
	! has_line a.out '.m == "conn.open"'
}

all_requests() {
	[ "$(grep -c '"m":"space.info"' a.out)" -eq "$1" ]
}

@test "ns-serve: a stalled stdout pauses reading but not serving, and loses nothing" {
	local n=4000 pad
	mkfifo a.in a.outfifo
	exec 7<>a.outfifo		# open, but nobody reads yet
	ns-serve -k "$NODE_KEY" -l 127.0.0.1:0 --port-file a.port --max-inflight 4096 \
	    --max-did-inflight 4096 <a.in >a.outfifo 2>a.err 3>&- 5>&- 6>&- 7>&- &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
	exec 5>a.in
	wait_until 10 test -s a.port
	PORT=$(cat a.port)
	pad=$(head -c 3000 /dev/zero | tr '\0' p)
	awk -v n="$n" -v pad="$pad" 'BEGIN { for (i = 1; i <= n; i++)
	    printf "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"space.info\",\"params\":{\"space\":\"%s\"}}\n", i, pad }' >reqs
	"$WSC" -p "$PORT" -k "$ALICE_KEY" --timeout 60 <reqs >c1.out 2>c1.err 3>&- 5>&- 6>&- 7>&- &
	PIDS+=("$!")
	wait_until 20 grep -q 'reading paused' a.err
	# the loop still serves: a login while stdout is stuck
	run -0 "$WSC" -p "$PORT" -k "$BOB_KEY" --count 2 --timeout 5 </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
	# now read: every request arrives, in order
	# (a reader is there before fd 7 goes: a fifo with no reader at all
	# is a reader that went away, and ns-serve would exit)
	exec 8<a.outfifo
	cat <&8 >a.out 3>&- 5>&- 7>&- &
	PIDS+=("$!")
	exec 7>&- 8<&-
	wait_until 30 all_requests "$n"
	grep -q 'reading resumed' a.err
	[ "$(jq -c 'select(.m == "space.info") | .id' a.out | awk '$1 != NR { bad = 1 } END { print NR, bad + 0 }')" = "$n 0" ]
	exec 5>&-
	exits_0 "$SERVE_PID"
}

@test "ns-serve: a full stdout pipe is not written again until it has room" {
	command -v strace >/dev/null || skip "strace is not installed"
	local n=3000 pad spid i
	mkfifo a.in a.outfifo
	exec 7<>a.outfifo		# open, but nobody reads
	# (the leak checker of a sanitizer build does not work under ptrace)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	    strace -f -qq -e trace=write -o a.strace ns-serve -k "$NODE_KEY" \
	    -l 127.0.0.1:0 --port-file a.port --max-inflight 4096 \
	    --max-did-inflight 4096 <a.in >a.outfifo 2>a.err 3>&- 5>&- 6>&- 7>&- &
	PIDS+=("$!")
	exec 5>a.in
	wait_until 10 test -s a.port
	PORT=$(cat a.port)
	spid=$(pgrep -P "${PIDS[0]}" ns-serve)
	PIDS+=("$spid")
	pad=$(head -c 3000 /dev/zero | tr '\0' p)
	awk -v n="$n" -v pad="$pad" 'BEGIN { for (i = 1; i <= n; i++)
	    printf "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"space.info\",\"params\":{\"space\":\"%s\"}}\n", i, pad }' >reqs
	"$WSC" -p "$PORT" -k "$ALICE_KEY" --timeout 60 <reqs >c1.out 2>c1.err 3>&- 5>&- 6>&- 7>&- &
	PIDS+=("$!")
	# the pipe fills at 1 MiB, reading pauses at 8 MiB behind: every
	# request in between is a line for a full pipe
	wait_until 30 grep -q 'reading paused' a.err
	# and while the pipe stays full, time passes without a write to it
	for i in 1 2 3 4 5; do
		bus '{"to":99,"msg":{}}'
		sleep 0.1
	done
	i=$(grep -c '^[0-9]* *write(1, .*EAGAIN' a.strace || true)
	[ "$i" -le 2 ] || { echo "$i writes to a full stdout failed" >&2; false; }
}

# pubs N: N pub lines for space s, {"n":I,"pad":...} with pads of 40
# bytes, 1000 bytes and every BIG-th (50th) BIGLEN (70000) bytes, so that
# frames of every header length follow each other.
pubs() {
	local i p40 p1k p70k
	p40=$(head -c 40 /dev/zero | tr '\0' a)
	p1k=$(head -c 1000 /dev/zero | tr '\0' b)
	p70k=$(head -c "${BIGLEN:-70000}" /dev/zero | tr '\0' c)
	for i in $(seq "$1"); do
		if [ $((i % ${BIG:-50})) -eq 0 ]; then
			printf '{"pub":"s","msg":{"n":%d,"pad":"%s"}}\n' "$i" "$p70k"
		elif [ $((i % 2)) -eq 0 ]; then
			printf '{"pub":"s","msg":{"n":%d,"pad":"%s"}}\n' "$i" "$p1k"
		else
			printf '{"pub":"s","msg":{"n":%d,"pad":"%s"}}\n' "$i" "$p40"
		fi
	done
}

# in_order FILE N: FILE has the N messages of pubs N, each once, in order,
# whole.
in_order() {
	[ "$(jq -r 'select(.n) | "\(.n) \(.pad | length)"' "$1" | awk -v n="$2" '
	    { want = $1 % '"${BIG:-50}"' == 0 ? '"${BIGLEN:-70000}"' : $1 % 2 == 0 ? 1000 : 40
	      if ($1 != NR || $2 != want) bad++ }
	    END { print NR == n && !bad ? "ok" : "bad " NR " " bad + 0 }')" = ok ]
}

@test "ns-serve: while stdout is backed up, each of many subscribers gets every pub once, in order" {
	local n=300 subs=20 pad i
	mkfifo a.in a.outfifo
	exec 7<>a.outfifo		# open, but nobody reads
	ns-serve -k "$NODE_KEY" -l 127.0.0.1:0 --port-file a.port --first-id 1 \
	    --max-inflight 4096 --max-did-inflight 4096 --max-did-conn 64 \
	    --stats a.stats --tick 50 <a.in >a.outfifo 2>a.err 3>&- 5>&- 6>&- 7>&- &
	PIDS+=("$!")
	exec 5>a.in
	wait_until 10 test -s a.port
	PORT=$(cat a.port)
	for i in $(seq "$subs"); do
		"$WSC" -p "$PORT" -k "$ALICE_KEY" --count $((n + 2)) --timeout 60 \
		    </dev/null >"s$i.out" 2>"s$i.err" 3>&- 5>&- 6>&- 7>&- &
		PIDS+=("$!")
	done
	wait_until 20 jq -e ".clients == $subs" a.stats
	# a client floods stdout until reading pauses (ids 1..20 are the
	# subscribers)
	pad=$(head -c 3000 /dev/zero | tr '\0' p)
	awk -v pad="$pad" 'BEGIN { for (i = 1; i <= 4000; i++)
	    printf "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"space.info\",\"params\":{\"space\":\"%s\"}}\n", i, pad }' >reqs
	"$WSC" -p "$PORT" -k "$BOB_KEY" --timeout 60 <reqs >f.out 2>f.err 3>&- 5>&- 6>&- 7>&- &
	PIDS+=("$!")
	wait_until 30 grep -q 'reading paused' a.err
	{
		for i in $(seq "$subs"); do
			printf '{"sub":%d,"space":"s"}\n' "$i"
		done
		pubs "$n"
	} >&5
	for i in $(seq "$subs"); do
		wait_until 30 in_order "s$i.out" "$n"
	done
	# stdout was behind all along
	! grep -q 'reading resumed' a.err
}

# A subscriber with a small receive buffer that reads nothing until the
# file "go" exists, then prints each text message as a line until N have
# come (the first is the challenge).  It does not log in: a bus sub line
# subscribes any connection past its opening handshake.
SLOW_SUB='
import base64, os, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
    "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
buf = buf[buf.index(b"\r\n\r\n") + 4:]
open("ready", "w").close()
while not os.path.exists("go"):
    time.sleep(0.05)
out, got = sys.stdout.buffer, 0
while got < n:
    while True:
        if len(buf) >= 2:
            l, h = buf[1] & 127, 2
            if l == 126 and len(buf) >= 4:
                l, h = int.from_bytes(buf[2:4], "big"), 4
            elif l == 127 and len(buf) >= 10:
                l, h = int.from_bytes(buf[2:10], "big"), 10
            if l < 126 or h > 2:
                if len(buf) >= h + l:
                    break
        d = s.recv(1 << 16)
        if not d:
            sys.exit(1)
        buf += d
    if buf[0] & 15 == 1:
        out.write(buf[h:h + l] + b"\n")
        got += 1
    buf = buf[h + l:]
out.flush()
'

@test "ns-serve: a subscriber that stops reading and goes on gets every pub once, in order" {
	command -v python3 >/dev/null || skip "no python3"
	local n=100
	start_serve a --max-queue 67108864 --login-timeout 120
	python3 -c "$SLOW_SUB" "$PORT" "$((n + 2))" >s.out 2>s.err 3>&- 5>&- 6>&- &
	PIDS+=("$!")
	wait_until 10 test -e ready
	bus '{"sub":1,"space":"s"}'
	# frames of 3 MB among small ones: more than a socket takes at once,
	# so writes end inside frames and go on from there
	BIG=20 BIGLEN=3000000 pubs "$n" >&5
	bus '{"to":1,"msg":{"end":1}}'
	sleep 0.5
	touch go
	wait_until 60 has_line s.out '.end'
	BIG=20 BIGLEN=3000000 in_order s.out "$n"
}

@test "ns-serve: RFC 6455 faults are answered with a close frame that names them" {
	start_serve a
	# a client frame without a mask (5.1)
	run -0 "$WSC" -p "$PORT" --count 5 --unmasked <<<'{"jsonrpc":"2.0","id":1,"method":"space.info"}'
	assert_jq '.wsc == "close" and .code == 1002 and (.reason | test("unmasked"))' "${lines[1]}"
	# a ping over 125 bytes (5.5)
	run -0 "$WSC" -p "$PORT" --count 5 --ping 200 </dev/null
	assert_jq '.wsc == "close" and .code == 1002 and (.reason | test("125"))' "${lines[1]}"
	# a ping within the limit is answered, and the connection lives on
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 3 --ping 100 <<<'{"jsonrpc":"2.0","id":1,"method":"nope"}'
	assert_jq '.result.role == "client"' "${lines[1]}"
	assert_jq '.id == 1 and .error.data.reason == "method_not_found"' "${lines[2]}"
	# an oversize message in fragments is closed before it is all read
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 5 --big 1100000 --fragment 65536 </dev/null
	assert_jq '.wsc == "close" and .code == 1009' "${lines[2]}"
	# plain HTTP gets an HTTP answer, not a dropped connection
	exec 4<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&4
	read -r -t 5 status <&4
	exec 4<&-
	[[ "$status" == "HTTP/1.1 426 Upgrade Required"* ]]
}

@test "ns-serve: an id comes back exactly as sent, or the request is invalid_request" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" <<'EOF2'
{"jsonrpc":"2.0","id":9007199254740993,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":1.5,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":1e2,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":-0,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":true,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":"space.info\u0000","method":"space.info\u0000","params":{}}
{"jsonrpc":"2.0","id":9007199254740991,"method":"space.info","params":{}}
{"jsonrpc":"2.0","id":-42,"method":"space.members","params":{}}
{"jsonrpc":"2.0","\u0069d":"esc","method":"space.history","params":{}}
EOF2
	# six refused with id null, the NUL method refused by name
	[ "$(printf '%s\n' "${lines[@]}" | jq -s 'map(select(.error.data.reason == "invalid_request" and .id == null)) | length')" = 6 ]
	printf '%s\n' "${lines[@]}" | jq -e -s 'map(select(.id == "space.info\u0000")) | .[0].error.data.reason == "method_not_found"' >/dev/null
	wait_until 5 has_line a.out '.m == "space.history"'
	grep -q '"m":"space.info","c":1,"r":[0-9]*,"did":"[^"]*","role":"client","id":9007199254740991,' a.out
	grep -q '"m":"space.members","c":1,"r":[0-9]*,"did":"[^"]*","role":"client","id":-42,' a.out
	has_line a.out '.m == "space.history" and .id == "esc"'
	[ "$(count_lines a.out '.m == "space.info"')" -eq 1 ]
}

@test "ns-serve: a request in canonical form gets the answer any other form gets" {
	# canonical text is taken apart without parsing it: every check must
	# still be made
	start_serve a
	local l256 l257
	l256=$(printf 'x%.0s' $(seq 256))
	l257=x$l256
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" <<EOF2
{"id":1,"jsonrpc":"2.0","method":"nope","params":{}}
{"id":2,"jsonrpc":"1.0","method":"space.info","params":{}}
{"id":3,"jsonrpc":"2.0","method":"space.info","params":[]}
{"id":true,"jsonrpc":"2.0","method":"space.info","params":{}}
{"id":"$l257","jsonrpc":"2.0","method":"space.info","params":{}}
{"id":4,"jsonrpc":"2.0","method":"node.head","params":{}}
{"id":5,"jsonrpc":"2.0","method":"auth.login","params":{}}
{"id":6,"jsonrpc":"2.0","params":{}}
{"id":"$l256","jsonrpc":"2.0","method":"space.members","params":{"space":"x"}}
{"id":null,"jsonrpc":"2.0","method":"space.history","params":{"a":[1,"é"]}}
{"id":-7,"jsonrpc":"2.0","method":"space.info"}
{"id":9,"jsonrpc":"2.0","method":"space.beam","params":{},"x":1}
{"jsonrpc":"2.0","method":"space.join","params":{"space":"y"}}
EOF2
	err() {	# ID REASON
		printf '%s\n' "${lines[@]}" | jq -e -s --argjson id "$1" --arg r "$2" \
		    'map(select(.id == $id and .error.data.reason == $r)) | length == 1' >/dev/null
	}
	err 1 method_not_found
	err 2 invalid_request
	err 3 invalid_params
	err 4 method_not_found
	err 6 invalid_request
	# id true and the 257-byte id: refused with id null
	[ "$(printf '%s\n' "${lines[@]}" | jq -s 'map(select(.id == null and .error.data.reason == "invalid_request")) | length')" = 2 ]
	# logged in already: auth.login is not a method of a session
	printf '%s\n' "${lines[@]}" | jq -e -s 'map(select(.id == 5)) | length == 1 and .[0].error != null' >/dev/null
	wait_until 5 has_line a.out '.m == "space.join"'
	has_line a.out ".m == \"space.members\" and .id == \"$l256\" and .p == {space:\"x\"}"
	grep -q '"m":"space.history",.*"id":null,"p":{"a":\[1,"é"\]}}$' a.out
	has_line a.out '.m == "space.info" and .id == -7 and .p == {}'
	has_line a.out '.m == "space.beam" and .id == 9 and .p == {}'
	has_line a.out '.m == "space.join" and (has("id") | not) and .p == {space:"y"}'
	[ "$(count_lines a.out '.m == "space.info"')" -eq 1 ]
}

@test "ns-serve: params that grow past the limit in canonical form are too_large" {
	start_serve a --max-msg 20000
	local nums
	nums=$(yes 1e20 | head -n 3000 | paste -sd, -)
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 3 <<<"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"space.info\",\"params\":{\"n\":[$nums]}}"
	assert_jq '.id == 1 and .error.data.reason == "too_large"' "${lines[2]}"
	! has_line a.out '.m == "space.info"'
}

@test "ns-serve: a connection has at most --max-inflight requests in the node" {
	start_serve a --max-inflight 2
	client c1 -k "$ALICE_KEY" --count 9 --timeout 20
	wait_until 5 has_line a.out '.m == "conn.open"'
	pkill -f -- "-p $PORT -k $ALICE_KEY --count 9" || true
	printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"space.info","params":{}}' \
	    '{"jsonrpc":"2.0","id":2,"method":"space.info","params":{}}' \
	    '{"jsonrpc":"2.0","id":3,"method":"space.info","params":{}}' \
	    '{"jsonrpc":"2.0","method":"space.info","params":{}}' \
	    '{"jsonrpc":"2.0","id":5,"method":"space.info","params":{}}' >reqs
	client_from reqs c2 -k "$BOB_KEY" --timeout 20 --count 5
	wait_until 5 has_line a.out '.m == "space.info" and .id == 2'
	sleep 0.3
	[ "$(count_lines a.out '.m == "space.info"')" -eq 2 ]
	# an answer ends request 1 and frees its slot; a bare end frees one too
	local c r1 r2
	c=$(jq -r 'select(.m == "space.info" and .id == 1) | .c' a.out)
	r1=$(jq -r 'select(.m == "space.info" and .id == 1) | .r' a.out)
	bus "{\"to\":$c,\"r\":$r1,\"msg\":{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{}}}"
	wait_until 5 has_line a.out '.m == "space.info" and .id == 3'
	r2=$(jq -r 'select(.m == "space.info" and .id == 2) | .r' a.out)
	bus "{\"to\":$c,\"r\":$r2}"
	wait_until 5 has_line a.out '.m == "space.info" and (has("id") | not)'
	[ "$(count_lines a.out '.m == "space.info"')" -eq 4 ]
	has_line c2.out '.id == 1 and .result == {}'
	# an answer for a request that is not in the node goes nowhere
	bus "{\"to\":$c,\"r\":$r1,\"msg\":{\"id\":1,\"again\":true}}"
	sleep 0.3
	! has_line c2.out '.again'
}

@test "ns-serve: a connection has at most 16 requests with large answers in the node" {
	start_serve a
	# 20 history pages, then a small request behind them
	{ reqs space.history $(seq 1 20); reqs space.info 21; } >reqs
	client_from reqs c -k "$BOB_KEY" --timeout 20 --count 21
	wait_until 5 has_line a.out '.m == "space.history" and .id == 16'
	sleep 0.3
	[ "$(count_lines a.out '.m == "space.history"')" -eq 16 ]
	! has_line a.out '.m == "space.info"'
	# each page answered lets one more in, and the small one after them
	local i
	for i in 1 2 3 4 5; do
		end_req space.history "$i" '{}'
	done
	wait_until 5 has_line a.out '.m == "space.info" and .id == 21'
	[ "$(count_lines a.out '.m == "space.history"')" -eq 20 ]
	has_line c.out '.id == 5 and .result == {}'
}

@test "ns-serve: small requests fill all --max-inflight slots, large ones at most 16" {
	start_serve a --max-inflight 300
	reqs space.info $(seq 1 301) >reqs
	client_from reqs c -k "$BOB_KEY" --timeout 20 --count 301
	wait_until 5 has_line a.out '.m == "space.info" and .id == 300'
	sleep 0.3
	[ "$(count_lines a.out '.m == "space.info"')" -eq 300 ]
	! has_line a.out '.id == 301'
	end_req space.info 123
	wait_until 5 has_line a.out '.m == "space.info" and .id == 301'
}

@test "ns-serve: a DID's busy connections share --max-inflight; idle ones take nothing" {
	start_serve a --max-inflight 4
	# bob's first connection, idle: the second has all 4
	client idle -k "$BOB_KEY" --count 9 --timeout 20
	wait_until 5 has_line a.out '.m == "conn.open"'
	reqs space.info 1 2 3 4 5 >reqs1
	client_from reqs1 c1 -k "$BOB_KEY" --timeout 20 --count 9
	wait_until 5 has_line a.out '.m == "space.info" and .id == 4'
	sleep 0.3
	[ "$(count_lines a.out '.m == "space.info"')" -eq 4 ]
	# a third with a request in the node: two busy connections, 2 each
	reqs space.info 11 12 13 >reqs2
	client_from reqs2 c2 -k "$BOB_KEY" --timeout 20 --count 9
	wait_until 5 has_line a.out '.m == "space.info" and .id == 12'
	sleep 0.3
	[ "$(count_lines a.out '.m == "space.info" and .id > 10')" -eq 2 ]
	# the second ends two of its four: still at its share of 2, paused
	end_req space.info 1
	end_req space.info 2
	sleep 0.3
	! has_line a.out '.id == 5'
	# the third idle again: the second may have 4 once one more ends
	end_req space.info 11
	end_req space.info 12
	wait_until 5 has_line a.out '.m == "space.info" and .id == 13'
	end_req space.info 13
	end_req space.info 3
	wait_until 5 has_line a.out '.m == "space.info" and .id == 5'
}

@test "ns-serve: one DID over --max-did-inflight is answered busy with a retry hint" {
	start_serve a --max-inflight 4 --max-did-inflight 3
	# alone on the node, alice is held back only by her connections' shares
	reqs space.info 1 2 >reqs0
	client_from reqs0 c0 -k "$ALICE_KEY" --timeout 20 --count 9
	wait_until 5 has_line a.out '.m == "space.info" and .id == 2'
	reqs space.info 3 4 >reqs1
	client_from reqs1 c1 -k "$ALICE_KEY" --timeout 20 --count 9
	wait_until 5 has_line a.out '.m == "space.info" and .id == 4'
	# once carol uses the node too, alice gets her share and no more
	reqs space.info 9 >reqs9
	client_from reqs9 c9 -k "$CAROL_KEY" --timeout 20 --count 9
	wait_until 5 has_line a.out ".m == \"space.info\" and .did == \"$CAROL_DID\""
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 4 < <(reqs space.info 5 6)
	assert_jq '.id == 5 and .error.code == -32008 and .error.data.reason == "busy" and .error.data.retryAfter > 0' "${lines[2]}"
	assert_jq '.id == 6 and .error.data.reason == "busy"' "${lines[3]}"
	[ "$(count_lines a.out '.m == "space.info"')" -eq 5 ]
	! grep -q busy c0.out c1.out c9.out
}

@test "ns-serve: a request the node never finishes is answered internal after --request-timeout" {
	start_serve a --request-timeout 1
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 3 --timeout 10 <<<'{"jsonrpc":"2.0","id":"slow","method":"space.info","params":{}}'
	assert_jq '.id == "slow" and .error.data.reason == "internal"' "${lines[2]}"
	grep -q 'timed out' a.err
}

@test "ns-serve: a DID has at most --max-did-conn connections" {
	start_serve a --max-did-conn 1
	client c1 -k "$ALICE_KEY" --count 9 --timeout 20
	wait_until 5 has_line a.out '.m == "conn.open"'
	run -0 "$WSC" -p "$PORT" -k "$ALICE_KEY" --count 5 </dev/null
	assert_jq '.id == "login" and .error.data.reason == "busy"' "${lines[1]}"
	assert_jq '.wsc == "close" and .code == 1013' "${lines[2]}"
	run -0 "$WSC" -p "$PORT" -k "$BOB_KEY" --count 2 </dev/null
	assert_jq '.result.role == "client"' "${lines[1]}"
}

@test "ns-serve: a node connection reads but submits only through node.submit" {
	start_serve a
	run -0 "$WSC" -p "$PORT" -k "$CAROL_KEY" --role node --count 4 <<'EOF2'
{"jsonrpc":"2.0","id":1,"method":"space.beam","params":{}}
{"jsonrpc":"2.0","id":2,"method":"space.create","params":{}}
EOF2
	assert_jq '.id == 1 and .error.data.reason == "method_not_found" and (.error.message | test("node.submit"))' "${lines[2]}"
	assert_jq '.id == 2 and .error.data.reason == "method_not_found"' "${lines[3]}"
	! has_line a.out '.m == "space.beam" or .m == "space.create"'
}

@test "ns-serve: resync lists every subscription for the stage that lost them" {
	start_serve a
	client c1 -k "$ALICE_KEY" --count 9 --timeout 20
	wait_until 5 has_line a.out '.m == "conn.open"'
	bus '{"sub":1,"space":"channel/a/b"}' '{"sub":1,"space":"dm/c/d"}' '{"resync":"subs"}'
	wait_until 5 has_line a.out '.m == "sub.restore" and .p.space == "dm/c/d"'
	has_line a.out ". == {m: \"sub.restore\", c: 1, did: \"$ALICE_DID\", role: \"client\", p: {space: \"channel/a/b\"}}"
}

@test "ns-serve: --stats keeps a file of connection counts" {
	start_serve a --stats a.stats --tick 100
	client c1 -k "$ALICE_KEY" --count 9 --timeout 20
	wait_until 5 has_line a.out '.m == "conn.open"'
	wait_until 5 has_line a.stats '.clients == 1'
	assert_jq ".pid == $SERVE_PID and .nodes == 0 and .subs == 0 and (.started | type == \"number\")" "$(cat a.stats)"
}

@test "ns-serve: the opening handshake answers RFC 6455's example key with its accept key" {
	start_serve a
	exec 4<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' >&4
	local head="" line
	while IFS= read -r -t 5 line <&4; do
		line=${line%$'\r'}
		[ -z "$line" ] && break
		head+="$line"$'\n'
	done
	exec 4<&-
	[[ "$head" == "HTTP/1.1 101 Switching Protocols"* ]]
	[[ "$head" == *"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="* ]]
}
