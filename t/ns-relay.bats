#!/usr/bin/env bats
# ns-relay: live streams, driven through --bus alone (bus lines in, the
# lines for the stages after it out, no network): pushes on the owner node,
# the relay tree, chunks from parents delivered once and in order, gaps
# fetched and skipped on the relay's own clock; the tree it prints and the
# simulation.  Tests that need time to pass feed the stage through a fifo.

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	T=$BATS_TEST_TMPDIR
	# the ids of our requests come from the clock: fixed, unless a test
	# needs time to pass (live)
	export NS_NOW=1767225600000
	AK=$(fixture_key alice)
	BK=$(fixture_key bob)
	A=$(jq -r .did "$AK")		# the stream's owner
	BOB=$(jq -r .did "$BK")
	S=stream/${A#did:key:}/live
	NODE=did:key:z6MkThisNode	# the node under test
	NA=10.0.0.1:7700
	O=did:key:z6MkOwnerNode	# the stream's node, when this one views
	OA=10.0.0.9:7700
	P=did:key:z6MkParentP
	PA=10.0.0.2:7700
	C=did:key:z6MkChildC
	CA=10.0.0.3:7700
	D=did:key:z6MkChildD
	DA=10.0.0.4:7700
	V=did:key:z6MkViewer	# a client watching
}

teardown() {
	if [ -n "${RPID-}" ]; then
		kill "$RPID" 2>/dev/null || :
		wait "$RPID" 2>/dev/null || :
	fi
}

bus() {
	ns-relay --bus -n "$NODE" -a "$NA" "$@"
}

# chunk N [DATA [KEY [AUTHOR [SPACE]]]]: a stream.chunk, signed (by alice,
# of $S, unless said otherwise)
chunk() {
	jq -nc --argjson n "$1" --arg d "${2-aGVsbG8}" --arg a "${4:-$A}" \
	    --arg s "${5:-$S}" \
	    '{type:"stream.chunk",space:$s,n:$n,data:$d,author:$a}' |
		ns-sign -k "${3:-$AK}" --ts 1767225600000
}

# push R CHUNK: ns-log's relay.push of the owner's stream.push (request R
# of connection 5)
push() {
	jq -nc --argjson r "$1" --arg d "$A" --argjson c "$2" \
	    '{m:"relay.push",c:5,r:$r,did:$d,role:"client",id:$r,p:{chunk:$c}}'
}

# watch CONN R OWNED [restore]: ns-log's relay.watch of $S (or $WS) for a
# reader on CONN; OWNED true: this node is the stream's, false: $O is
watch() {
	jq -nc --argjson c "$1" --argjson r "$2" --argjson o "$3" \
	    --arg v "$V" --arg s "${WS:-$S}" --arg n "$NODE" --arg na "$NA" \
	    --arg on "$O" --arg oa "$OA" --arg restore "${4-}" \
	    '{m:"relay.watch",c:$c,r:$r,did:$v,role:"client"} +
	     (if $restore == "" then {id:$r} else {} end) +
	     {p:({space:$s,node:(if $o then $n else $on end),
	          address:(if $o then $na else $oa end),owned:$o} +
	         if $restore == "" then {} else {restore:true} end)}'
}

# node_req METHOD DID ADDRESS R [ID]: a checked request of another node
# (relay.admit, relay.child) on connection 100
node_req() {
	jq -nc --arg m "$1" --arg d "$2" --arg a "$3" --argjson r "$4" \
	    --arg s "$S" --arg id "${5-}" \
	    '{m:$m,c:100,r:$r,did:$d,role:"node"} +
	     (if $id == "" then {id:$r} else {id:$id} end) +
	     {p:{space:$s,address:$a}}'
}

# rchunk DID R CHUNK: relay.chunk from node DID, a notification
rchunk() {
	jq -nc --arg d "$1" --argjson r "$2" --argjson c "$3" \
	    '{m:"relay.chunk",c:100,r:$r,did:$d,role:"node",p:{chunk:$c}}'
}

# resp DID R ID RESULT: ns-serve's rpc.response from node DID
resp() {
	jq -nc --arg d "$1" --argjson r "$2" --arg id "$3" --argjson res "$4" \
	    '{m:"rpc.response",c:100,r:$r,did:$d,role:"node",
	      p:{id:$id,jsonrpc:"2.0",result:$res}}'
}

# joined DID R ID PARENT-DID...: the owner node's answer to a relay.join
joined() {
	local d=$1 r=$2 id=$3
	shift 3
	resp "$d" "$r" "$id" "$(jq -nc --arg s "$S" '{space:$s,edge:0,index:3,
	    parents:[$ARGS.positional[] | {node:.,address:("addr-" + .)}]}' \
	    --args "$@")"
}

# reads METHOD R [AFTER [LIMIT]]: relay.recent or relay.gap for $S
reads() {
	jq -nc --arg m "$1" --argjson r "$2" --arg s "$S" --arg af "${3-}" \
	    --arg l "${4-}" \
	    '{m:$m,c:6,r:$r,did:"did:key:z6MkViewer",role:"client",id:$r,
	      p:({space:$s} + (if $af != "" then {after:($af|tonumber)} else {} end) +
	        (if $l != "" then {limit:($l|tonumber)} else {} end))}'
}

# sel FILTER: the output lines FILTER selects, compact
sel() {
	printf '%s\n' "$output" | jq -c "select($1)" 2>/dev/null
}

count() {
	sel "$1" | wc -l
}

# index FILTER: the index in lines[] of the first line FILTER selects
index() {
	local i
	for i in "${!lines[@]}"; do
		if jq -e "$1" <<<"${lines[$i]}" >/dev/null 2>&1; then
			echo "$i"
			return 0
		fi
	done
	echo "no line: $1" >&2
	return 1
}

# pubs: the n of each chunk published, in order, on one line
pubs() {
	sel '.pub' | jq -r '.msg.params.n' | tr '\n' ' '
}

# peer_sends METHOD: the peer.send lines whose message has METHOD
peer_sends() {
	sel ".m == \"peer.send\" and .p.msg.method == \"$1\""
}

# --- a stage that lives while time passes ---------------------------------

# start ARGS...: ns-relay --bus on the fifo $T/fifo, its own clock running;
# output in $T/out, standard error in $T/err
start() {
	unset NS_NOW
	mkfifo "$T/fifo"
	ns-relay --bus -n "$NODE" -a "$NA" "$@" <"$T/fifo" >"$T/out" 2>"$T/err" 3>&- &
	RPID=$!
	exec {FEED}>"$T/fifo"
}

feed() {
	printf '%s\n' "$@" >&"$FEED"
}

# stop: end of input; the stage exits 0
stop() {
	exec {FEED}>&-
	wait "$RPID"
	RPID=
	output=$(cat "$T/out")
	mapfile -t lines <"$T/out"
}

# now: milliseconds
now() {
	date +%s%3N
}

# seen FILTER: the complete lines of $T/out so far that FILTER selects
seen() {
	jq -cR "fromjson? | select($1)" "$T/out"
}

# await FILTER [N [MS]]: wait until N lines (1) of $T/out match FILTER,
# for MS milliseconds at most (5000); output and lines as they are then
await() {
	local n=${2:-1} end=$(($(now) + ${3:-5000}))
	until [ "$(seen "$1" | wc -l)" -ge "$n" ]; do
		if [ "$(now)" -gt "$end" ]; then
			echo "await: no $n lines $1 in:" >&2
			cut -c 1-300 "$T/out" >&2
			cat "$T/err" >&2
			return 1
		fi
		sleep 0.02
	done
	output=$(cat "$T/out")
	mapfile -t lines <"$T/out"
}

# mark NAME: a line that passes; once it came out, all before it was read
mark() {
	feed "{\"m\":\"mark\",\"n\":\"$1\"}"
	await ".m == \"mark\" and .n == \"$1\""
}

# --- options ----------------------------------------------------------------

@test "ns-relay: --help, --version and usage errors" {
	run -0 --separate-stderr ns-relay --help
	assert_match '^usage: ns-relay --bus -n NODE_DID -a ADDRESS \[--fanout F\]'
	assert_match 'ns-relay tree \[--fanout F\]'
	assert_match 'ns-relay sim \[--nodes N\]'
	[ -z "$stderr" ]
	run -0 ns-relay -h
	assert_match '^usage: ns-relay'
	run -0 ns-relay --version
	[ "$output" = "ns-relay 0.1.0" ]
	run -2 --separate-stderr ns-relay
	assert_match '^usage: ns-relay' "$stderr"
	[ -z "$output" ]
	run -2 --separate-stderr ns-relay --bus
	assert_match '^ns-relay: --bus needs -n NODE_DID and -a ADDRESS' "$stderr"
	run -2 ns-relay --bus -n "$NODE"
	run -2 ns-relay --bus -a "$NA"
	run -2 ns-relay --bus -n "$NODE" -a "$NA" extra
	run -2 ns-relay --bogus
	run -2 ns-relay frobnicate
	run -2 ns-relay tree extra </dev/null
	# the stage's options are the stage's only
	run -2 ns-relay tree --stats "$T/s" </dev/null
	run -2 ns-relay tree --state "$T/s" </dev/null
	run -2 ns-relay tree -n "$NODE" </dev/null
	run -2 ns-relay -a "$NA" tree </dev/null
	[ ! -e "$T/s" ]
	run -2 --separate-stderr ns-relay --bus -n "$NODE" -a "$NA" --fanout 3 </dev/null
	assert_match '^ns-relay: --fanout: not a number from 4 to 64: 3' "$stderr"
	run -2 ns-relay --bus -n "$NODE" -a "$NA" --fanout 65 </dev/null
	run -2 ns-relay tree --fanout x </dev/null
	run -2 ns-relay --bus -n "$NODE" -a "$NA" --stats </dev/null
	run -2 ns-relay sim --nodes 0
	run -2 ns-relay sim --fanout 65
	run -2 --separate-stderr ns-relay sim --kill 30
	assert_match 'kill must be below --nodes' "$stderr"
	run -2 ns-relay sim --bogus
	run -2 ns-relay sim extra
	run -2 ns-relay sim --interval 0
}

# --- the stage: what is not its own ---------------------------------------

@test "ns-relay: it starts with a resync of the subscriptions, and the other lines pass unchanged and in order" {
	cat >"$T/in" <<-EOF
	{"m":"tick","now":1767225600000}
	{"m":"space.beam","c":3,"r":40,"did":"$BOB","role":"client","id":7,"p":{"event":{"a":1}}}
	{"to":3,"r":40,"msg":{"id":7,"jsonrpc":"2.0","result":{}}}
	{"pub":"chunk:$S","msg":{"a":[1, 2 ,3]}}
	{"sub":3,"space":"chunk:$S"}
	{"unsub":3,"space":"chunk:$S"}
	{"m":"conn.open","c":4,"did":"$BOB","role":"client"}
	{"m" : "relay.push", "p":{}}
	{"m":"relay.join","c":4,"r":41,"did":"$P","role":"node","id":1,"p":{"space":"$S"}}
	{"m":"relay.attach","c":4,"r":42,"did":"$P","role":"node","id":2,"p":{"space":"$S"}}
	{"m":"relay.fetch","c":4,"r":43,"did":"$P","role":"node","id":3,"p":{"space":"$S"}}
	{"m":"relay.pushed","p":{}}
	{"m":"stream.push","c":4,"r":44,"did":"$A","role":"client","id":4,"p":{}}
	{"m":"rpc.response","c":4,"r":45,"did":"$P","role":"node","p":{"id":"log:1.1","result":{}}}
	{"m":"peer.fail","p":{"id":"beam:1","node":"$P","address":"$PA","reason":"x"}}
	{"m":"peer.send","p":{"node":"$P","msg":{}}}
	{"m":"conn.close","c":4,"did":"$BOB","role":"client"}
	{"dial":"ws://$PA/"}
	garbage
	[1,2]
	{"m":"conn.reset","first":1767225600000000}
	EOF
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	[ "${lines[0]}" = '{"resync":"subs"}' ]
	mapfile -t in <"$T/in"
	[ "${#lines[@]}" -eq $((${#in[@]} + 1)) ]
	for i in "${!in[@]}"; do
		[ "${lines[$((i + 1))]}" = "${in[$i]}" ]
	done
}

# --- the owner node ---------------------------------------------------------

@test "ns-relay: relay.push on the owner node answers {space,n}, and publishes only once a watch exists" {
	c1=$(chunk 1) c2=$(chunk 2 d29ybGQ) c3=$(chunk 3)
	{
		push 1 "$c1"
		watch 6 2 true
		push 3 "$c2"
		push 4 "$c3"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	assert_jq ". == {to:5,r:1,msg:{id:1,jsonrpc:\"2.0\",result:{space:\"$S\",n:1}}}" "$(sel '.r == 1')"
	assert_jq ". == {to:6,r:2,msg:{id:2,jsonrpc:\"2.0\",result:{space:\"$S\",edge:1}}}" "$(sel '.r == 2')"
	assert_jq '.msg.result == {space:"'"$S"'",n:2}' "$(sel '.r == 3')"
	assert_jq '.msg.result.n == 3' "$(sel '.r == 4')"
	# chunk 1 went out before anyone watched: 2 is published at once,
	# before its answer, as the chunk it was, canonical
	[ "$(count '.pub')" -eq 2 ]
	p=$(index '.pub')
	[ "$p" -lt "$(index '.r == 3')" ]
	[ "${lines[$p]}" = "{\"pub\":\"chunk:$S\",\"msg\":{\"jsonrpc\":\"2.0\",\"method\":\"chunk\",\"params\":$c2}}" ]
	# the owner node joins nobody
	[ "$(count '.m == "peer.send"')" -eq 0 ]
}

@test "ns-relay: the first chunk pushed is the edge, whatever its number" {
	{
		watch 6 1 true
		push 2 "$(chunk 7)"
		push 3 "$(chunk 8)"
	} >"$T/in"
	run -0 bus <"$T/in"
	[ "$(pubs)" = "7 8 " ]
}

@test "ns-relay: refused pushes are answered with their reason, and nothing is published" {
	good=$(chunk 1)
	big=$(chunk 2 "$(head -c 65536 /dev/zero | tr '\0' A)")
	{
		watch 6 1 true
		# by bob, in alice's stream
		push 10 "$(chunk 1 aGk "$BK" "$BOB")"
		# alice's, tampered after signing
		push 11 "$(jq -c '.data = "dGFtcGVyZWQ"' <<<"$good")"
		# claims alice, signed by bob
		push 12 "$(jq -c --arg sig "$(chunk 1 aGVsbG8 "$BK" "$BOB" | jq -r .sig)" '.sig = $sig' <<<"$good")"
		push 13 "$(jq -nc --arg s "$S" --arg a "$A" '{type:"stream.chonk",space:$s,n:1,data:"aGk",author:$a}' | ns-sign -k "$AK")"
		push 14 "$(jq -nc --arg s "$S" --arg a "$A" '{type:"stream.chunk",space:$s,data:"aGk",author:$a}' | ns-sign -k "$AK")"
		push 15 "$(chunk 0)"
		push 16 "$(chunk -3)"
		push 17 "$(jq -nc --arg s "$S" --arg a "$A" '{type:"stream.chunk",space:$s,n:1,data:5,author:$a}' | ns-sign -k "$AK")"
		push 18 "$(jq -nc --arg s "$S" --arg a "$A" '{type:"stream.chunk",space:$s,n:1.5,data:"aGk",author:$a}' | ns-sign -k "$AK")"
		push 19 "$big"
		push 20 "$(chunk 1 aGk "$AK" "$A" channel/z6MkX/general)"
		push 21 "$good"
		push 22 "$good"
		push 23 "$(chunk 3)"
		push 24 "$(chunk 2)"
		push 25 "$(chunk 1)"
	} >"$T/in"
	[ "$(printf %s "$big" | wc -c)" -gt 65536 ]
	run -0 --separate-stderr bus <"$T/in"
	reason() {
		sel ".r == $1" | jq -r '.msg.error.data.reason'
	}
	[ "$(reason 10)" = forbidden ]
	[ "$(reason 11)" = bad_sig ]
	[ "$(reason 12)" = bad_sig ]
	for r in 13 14 15 16 17 18 20; do
		[ "$(reason $r)" = bad_event ]
	done
	[ "$(reason 19)" = too_large ]
	assert_jq '.msg.error.message == "a chunk is at most 65536 bytes"' "$(sel '.r == 19')"
	assert_jq '.msg.result.n == 1' "$(sel '.r == 21')"
	# again: in already; a number below the highest: refused, with the edge
	assert_jq '.msg.error == {code:-32006,message:"that chunk number was pushed already",data:{edge:1,reason:"conflict"}}' "$(sel '.r == 22')"
	# a number that skips one: refused, with the edge; then the next
	assert_jq '.msg.error.data == {edge:1,reason:"bad_event"}' "$(sel '.r == 23')"
	assert_jq '.msg.result.n == 2' "$(sel '.r == 24')"
	assert_jq '.msg.error.data == {edge:2,reason:"conflict"}' "$(sel '.r == 25')"
	# every request answered once; only the good ones published
	for r in $(seq 10 25); do
		[ "$(count ".to == 5 and .r == $r")" -eq 1 ]
	done
	[ "$(pubs)" = "1 2 " ]
	[ "$(count '.m == "peer.send"')" -eq 0 ]
}

@test "ns-relay: --state keeps the owned streams' edges: after a restart, numbers pushed before go out again once, and no further" {
	{
		push 1 "$(chunk 1)"
		push 2 "$(chunk 2)"
		push 7 "$(chunk 3)"
		# a stream viewed here is not this node's to number
		WS=stream/${BOB#did:key:}/other watch 6 3 false
		rchunk "$P" 4 "$(chunk 1 aGk "$BK" "$BOB" "stream/${BOB#did:key:}/other")"
	} >"$T/in"
	run -0 --separate-stderr bus --state "$T/state" <"$T/in"
	[ -z "$stderr" ]
	[ "$(pubs)" = "1 " ]
	[ "$(cat "$T/state")" = "{\"space\":\"$S\",\"edge\":3}" ]
	[ ! -e "$T/state.tmp" ]
	{
		node_req relay.admit "$C" "$CA" 11
		node_req relay.child "$C" "$CA" 12
		push 3 "$(chunk 3)"
		push 4 "$(chunk 2)"
		push 8 "$(chunk 3)"
		watch 6 5 true
		push 6 "$(chunk 4)"
	} >"$T/in2"
	run -0 bus --state "$T/state" <"$T/in2"
	# numbered before the restart, but not held any more (the node went
	# down before it sent them on, maybe): taken again and sent on, once
	assert_jq '.msg.result.n == 3' "$(sel '.r == 3')"
	assert_jq '.msg.result.n == 2' "$(sel '.r == 4')"
	assert_jq '.msg.error.data == {edge:3,reason:"conflict"}' "$(sel '.r == 8')"
	[ "$(peer_sends relay.chunk | jq -c '.p.msg.params.chunk.n' | tr '\n' ' ')" = "3 2 4 " ]
	# a watcher starts at the edge: 4 comes at once, and only 4
	assert_jq '.msg.result.edge == 3' "$(sel '.r == 5')"
	assert_jq '.msg.result.n == 4' "$(sel '.r == 6')"
	[ "$(pubs)" = "4 " ]
	[ "$(cat "$T/state")" = "{\"space\":\"$S\",\"edge\":4}" ]
	# without --state, nothing is kept
	run -0 bus <"$T/in2"
	assert_jq '.msg.result.n == 3' "$(sel '.r == 3')"
}

@test "ns-relay: relay.admit places each viewer node as ns-relay tree does, with two parents" {
	vs=()
	for i in $(seq 1 11); do vs+=("did:key:z6MkViewerNode$i"); done
	{
		# twice: the second round sees all eleven
		for round in 1 2; do
			for i in "${!vs[@]}"; do
				node_req relay.admit "${vs[$i]}" "10.1.0.$i:7700" $((round * 100 + i))
			done
		done
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	# the first viewer, alone: index 1 and one parent, the owner node
	assert_jq ". == {to:100,r:100,msg:{id:100,jsonrpc:\"2.0\",result:{space:\"$S\",edge:0,index:1,parents:[{node:\"$NODE\",address:\"$NA\"}]}}}" "$(sel '.r == 100')"
	answers=$(sel '.r >= 200' | jq -c '.msg.result')
	jq -nc --arg s "$S" --arg o "$NODE" '{space:$s,owner:$o,nodes:$ARGS.positional}' \
	    --args "${vs[@]}" >"$T/tree.in"
	run -0 ns-relay tree <"$T/tree.in"
	tree=$output
	[ "$(jq -s length <<<"$tree")" -eq 12 ]
	for i in "${!vs[@]}"; do
		a=$(sed -n "$((i + 1))p" <<<"$answers")
		want=$(jq -c --arg d "${vs[$i]}" 'select(.node == $d)' <<<"$tree")
		# same index, same parents, with the viewers' addresses
		[ "$(jq .index <<<"$a")" = "$(jq .index <<<"$want")" ]
		[ "$(jq -c '[.parents[].node]' <<<"$a")" = "$(jq -c .parents <<<"$want")" ]
		for p in $(jq -r '.parents[] | .node + "=" + .address' <<<"$a"); do
			d=${p%=*} addr=${p#*=}
			if [ "$d" = "$NODE" ]; then
				[ "$addr" = "$NA" ]
			else
				for j in "${!vs[@]}"; do
					[ "${vs[$j]}" != "$d" ] || [ "$addr" = "10.1.0.$j:7700" ]
				done
			fi
		done
	done
	# fan-out 8: index 1 under the owner alone, 2..4 under the owner and 1,
	# the rest under two viewers
	assert_jq '.index == 1 and (.parents | length) == 1' "$(jq -c 'select(.index == 1)' <<<"$answers")"
	for i in 2 3 4; do
		assert_jq ".parents[0].node == \"$NODE\" and (.parents | length) == 2 and .parents[1].node != \"$NODE\"" \
		    "$(jq -c "select(.index == $i)" <<<"$answers")"
	done
	for i in $(seq 5 11); do
		assert_jq "(.parents | length) == 2 and (.parents | map(.node) | index(\"$NODE\")) == null" \
		    "$(jq -c "select(.index == $i)" <<<"$answers")"
	done
}

@test "ns-relay: a child attached with relay.child gets each chunk pushed, as relay.chunk in a peer.send" {
	c1=$(chunk 1) c2=$(chunk 2)
	{
		push 1 "$c1"
		node_req relay.admit "$C" "$CA" 12
		node_req relay.child "$C" "$CA" 2
		push 3 "$c2"
		node_req relay.admit "$D" "$DA" 14
		node_req relay.child "$D" "$DA" 4
		push 5 "$(chunk 3)"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	assert_jq ". == {to:100,r:2,msg:{id:2,jsonrpc:\"2.0\",result:{space:\"$S\",edge:1}}}" "$(sel '.r == 2')"
	# none for chunk 1: nobody was attached
	s=$(index '.m == "peer.send"')
	[ "$s" -gt "$(index '.r == 2')" ]
	[ "${lines[$s]}" = "{\"m\":\"peer.send\",\"p\":{\"node\":\"$C\",\"address\":\"$CA\",\"msg\":{\"jsonrpc\":\"2.0\",\"method\":\"relay.chunk\",\"params\":{\"chunk\":$c2}}}}" ]
	[ "$(peer_sends relay.chunk | jq -c '[.p.node, .p.msg.params.chunk.n]' | tr '\n' ' ')" = "[\"$C\",2] [\"$C\",3] [\"$D\",3] " ]
}

@test "ns-relay: relay.recent and relay.gap return the kept chunks, the last 256 at most" {
	jq -nc --arg s "$S" --arg a "$A" \
	    'range(1; 301) | {type:"stream.chunk",space:$s,n:.,data:"aGk",author:$a}' |
		ns-sign -k "$AK" --ts 1767225600000 >"$T/chunks"
	[ "$(wc -l <"$T/chunks")" -eq 300 ]
	{
		jq -c --arg d "$A" '{m:"relay.push",c:5,r:(1000 + input_line_number),did:$d,
		    role:"client",id:(1000 + input_line_number),p:{chunk:.}}' "$T/chunks"
		reads relay.recent 1
		reads relay.recent 2 290
		reads relay.recent 3 0 256
		reads relay.recent 4 10 5
		reads relay.gap 5 0
		reads relay.gap 6 298
		reads relay.recent 7 300
		reads relay.recent 8 "" 0
		reads relay.gap 9 "" 3
		jq -nc '{m:"relay.recent",c:6,r:10,did:"did:key:z6MkViewer",role:"client",id:10,p:{space:"stream/z6MkNobody/x"}}'
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	ns() {
		sel ".to == 6 and .r == $1" | jq -c '[.msg.result.chunks[].n] | if length > 2 then [.[0], .[-1], length] else . end'
	}
	assert_jq ".msg.result.space == \"$S\" and .msg.result.edge == 300" "$(sel '.to == 6 and .r == 1')"
	# no after: the last 16 (recent) or 64 (gap)
	[ "$(ns 1)" = "[285,300,16]" ]
	[ "$(ns 2)" = "[291,300,10]" ]
	# 300 pushed, 256 kept
	[ "$(ns 3)" = "[45,300,256]" ]
	[ "$(ns 4)" = "[45,49,5]" ]
	[ "$(ns 5)" = "[45,108,64]" ]
	[ "$(ns 6)" = "[299,300]" ]
	[ "$(ns 7)" = "[]" ]
	[ "$(ns 8)" = "[]" ]
	[ "$(ns 9)" = "[298,300,3]" ]
	# the chunks as they were pushed
	[ "$(sel '.to == 6 and .r == 6' | jq -c '.msg.result.chunks[1]')" = "$(sed -n 300p "$T/chunks")" ]
	assert_jq '.msg.result == {space:"stream/z6MkNobody/x",edge:0,chunks:[]}' "$(sel '.to == 6 and .r == 10')"
}

@test "ns-relay: at most 16 gap fetches a second are answered per stream, the others busy" {
	start
	for n in 1 2 3; do feed "$(push $((1000 + n)) "$(chunk $n)")"; done
	await '.to == 5 and .r == 1003'
	# 40 nodes that all miss the same chunks ask at once
	for r in $(seq 1 40); do reads relay.gap "$r" 0; done >"$T/gaps"
	feed "$(cat "$T/gaps")"
	await '.to == 6' 40
	local filled busy
	filled=$(seen '.to == 6 and (.msg.result.chunks | length) == 3' | wc -l)
	busy=$(seen '.to == 6 and .msg.error.data.reason == "busy" and .msg.error.data.retryAfter == 300' | wc -l)
	[ $((filled + busy)) -eq 40 ]
	# in one second 16; two if the batch crossed into the next one
	[ "$filled" -ge 16 ] && [ "$filled" -le 32 ]
	# a second later the stream's node answers again
	sleep 1.1
	feed "$(reads relay.gap 41 0)"
	await '.to == 6 and .r == 41'
	stop
	assert_jq '(.msg.result.chunks | length) == 3' "$(sel '.to == 6 and .r == 41')"
}

@test "ns-relay: an answer of kept chunks fits in a message: about 512 KiB of chunks at most" {
	# 64 chunks near the 64 KiB limit
	data=$(head -c 65000 /dev/zero | tr '\0' A)
	jq -nc --arg s "$S" --arg a "$A" --arg d "$data" \
	    'range(1; 65) | {type:"stream.chunk",space:$s,n:.,data:$d,author:$a}' |
		ns-sign -k "$AK" --ts 1767225600000 |
		jq -c --arg d "$A" '{m:"relay.push",c:5,r:(1000 + input_line_number),did:$d,
		    role:"client",id:(1000 + input_line_number),p:{chunk:.}}' >"$T/in"
	{
		reads relay.gap 1 0
		reads relay.recent 2 "" 256
		reads relay.gap 3 8
	} >>"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	for r in 1 2 3; do
		a=$(sel ".to == 6 and .r == $r")
		# within a WebSocket message (1 MiB), the bus line included
		[ "${#a}" -lt 1048576 ]
		assert_jq '.msg.result.edge == 64 and (.msg.result.chunks | length) >= 7' "$a"
	done
	# from where they were asked, in order, with no hole
	assert_jq '[.msg.result.chunks[].n] == [range(1; 1 + (.msg.result.chunks | length))]' "$(sel '.to == 6 and .r == 1')"
	assert_jq '.msg.result.chunks[0].n == 9' "$(sel '.to == 6 and .r == 3')"
	# the last ones, when no after is given
	assert_jq '.msg.result.chunks[-1].n == 64' "$(sel '.to == 6 and .r == 2')"
}

# --- a viewer node ----------------------------------------------------------

@test "ns-relay: the first watch on a viewer node joins the tree; the owner's answer attaches it to its parents" {
	watch 6 1 false >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	assert_jq ". == {to:6,r:1,msg:{id:1,jsonrpc:\"2.0\",result:{space:\"$S\",edge:0}}}" "$(sel '.r == 1')"
	# one join, to the owner node, before the watch is answered
	[ "$(peer_sends relay.join | wc -l)" -eq 1 ]
	j=$(peer_sends relay.join)
	assert_jq ".p.node == \"$O\" and .p.address == \"$OA\" and .p.msg.params == {space:\"$S\",address:\"$NA\"} and .p.msg.jsonrpc == \"2.0\" and (.p.msg.id | startswith(\"relay:\"))" "$j"
	[ "$(index '.m == "peer.send"')" -lt "$(index '.r == 1')" ]
	id=$(jq -r .p.msg.id <<<"$j")
	{
		cat "$T/in"
		joined "$O" 9 "$id" "$O" "$P"
		watch 7 2 false
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	[ -z "$stderr" ]
	# joined: a second watcher joins nothing
	[ "$(peer_sends relay.join | wc -l)" -eq 1 ]
	assert_jq '.msg.result.edge == 0' "$(sel '.r == 2')"
	# the answer is taken and its request ended
	[ "$(count '.m == "rpc.response"')" -eq 0 ]
	assert_jq '. == {to:100,r:9}' "$(sel '.r == 9')"
	[ "$(peer_sends relay.attach | jq -c '[.p.node, .p.address, .p.msg.params]' | tr '\n' ' ')" = \
	    "[\"$O\",\"addr-$O\",{\"address\":\"$NA\",\"space\":\"$S\"}] [\"$P\",\"addr-$P\",{\"address\":\"$NA\",\"space\":\"$S\"}] " ]
	# a restored watch is not answered, and a known one not counted twice
	{
		cat "$T/in"
		watch 6 3 false restore
	} >"$T/in3"
	run -0 bus <"$T/in3"
	assert_jq '. == {to:6,r:3}' "$(sel '.r == 3')"
}

@test "ns-relay: an answer to a request of ours from another node than the one asked is not taken" {
	watch 6 1 false >"$T/in"
	run -0 bus <"$T/in"
	id=$(peer_sends relay.join | jq -r .p.msg.id)
	{
		watch 6 1 false
		# D answers the join meant for the owner node: far ahead, and
		# itself as the parent
		resp "$D" 8 "$id" "$(jq -nc --arg s "$S" --arg d "$D" '{space:$s,edge:1000000,index:1,parents:[{node:$d,address:"d:1"}]}')"
		rchunk "$P" 10 "$(chunk 1)"
		# the owner node's answer is still awaited, and taken
		joined "$O" 9 "$id" "$O" "$P"
		rchunk "$P" 11 "$(chunk 2)"
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	[ -z "$stderr" ]
	assert_jq '. == {to:100,r:8}' "$(sel '.r == 8')"
	[ "$(peer_sends relay.attach | jq -r .p.node | tr '\n' ' ')" = "$O $P " ]
	[ "$(pubs)" = "1 2 " ]
}

@test "ns-relay: chunks from parents reach the watchers once and in order, and go on to the children" {
	{
		watch 6 1 false
		node_req relay.child "$C" "$CA" 2
		rchunk "$P" 10 "$(chunk 2)"
		rchunk "$O" 11 "$(chunk 2)"
		rchunk "$O" 12 "$(chunk 1)"
		rchunk "$P" 13 "$(chunk 1)"
		rchunk "$P" 14 "$(chunk 3)"
		rchunk "$O" 15 "$(chunk 3)"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	[ "$(pubs)" = "1 2 3 " ]
	# 1 and 2 together, when 1 came
	p=$(index '.pub')
	assert_jq '.msg.params.n == 2' "${lines[$((p + 1))]}"
	[ "$p" -lt "$(index '.r == 12')" ]
	[ "$p" -gt "$(index '.r == 11')" ]
	# each relay.chunk ended, none answered
	for r in $(seq 10 15); do
		[ "$(count ". == {to:100,r:$r}")" -eq 1 ]
	done
	# to the child, each once, as it came
	[ "$(peer_sends relay.chunk | jq -c '[.p.node, .p.msg.params.chunk.n]' | tr '\n' ' ')" = "[\"$C\",2] [\"$C\",1] [\"$C\",3] " ]
	[ "$(count '.m == "peer.bad"')" -eq 0 ]
}

@test "ns-relay: a parent that relays a forged chunk is reported, and the chunk goes nowhere" {
	good=$(chunk 1)
	{
		watch 6 1 false
		node_req relay.child "$C" "$CA" 2
		rchunk "$P" 10 "$(jq -c '.data = "Zm9yZ2Vk"' <<<"$good")"
		rchunk "$D" 11 "$(chunk 1 aGk "$BK" "$BOB")"
		# a stream nobody here watches: ignored, not reported
		rchunk "$D" 12 "$(chunk 1 aGk "$BK" "$BOB" "stream/${BOB#did:key:}/other")"
		rchunk "$O" 13 "$good"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	assert_match "ns-relay: node $P relayed " "$stderr"
	[ "$(count '.m == "peer.bad"')" -eq 2 ]
	b=$(sel ".m == \"peer.bad\" and .p.node == \"$P\"")
	assert_jq '(.p | keys) == ["node","reason"] and (.p.reason | type) == "string"' "$b"
	jq -e --arg why "a chunk not by the stream's owner" '.p.reason == $why' <<<"$(sel ".m == \"peer.bad\" and .p.node == \"$D\"")"
	[ "$(count '.r == 10 or .r == 11 or .r == 12')" -eq 3 ]
	# only the good one is delivered and relayed
	[ "$(pubs)" = "1 " ]
	[ "$(peer_sends relay.chunk | wc -l)" -eq 1 ]
	assert_jq ".p.msg.params.chunk == $good" "$(peer_sends relay.chunk)"
}

@test "ns-relay: a node that neither watches nor relays a stream takes none of its chunks" {
	{
		rchunk "$P" 10 "$(chunk 1)"
		watch 6 1 true
		rchunk "$P" 11 "$(chunk 2)"
	} >"$T/in"
	run -0 bus <"$T/in"
	[ "$(count '.pub')" -eq 0 ]
	[ "$(count '.m == "peer.bad"')" -eq 0 ]
	[ "$(count '. == {to:100,r:10}')" -eq 1 ]
}

@test "ns-relay: the last watcher of a viewer node going makes it leave, through the owner and its parents" {
	watch 6 1 false >"$T/in"
	run -0 bus <"$T/in"
	id=$(peer_sends relay.join | jq -r .p.msg.id)
	{
		watch 6 1 false
		watch 7 2 false
		joined "$O" 9 "$id" "$O" "$P"
		echo "{\"unsub\":6,\"space\":\"chunk:$S\"}"
		echo '{"m":"after.unsub"}'
		echo "{\"m\":\"conn.close\",\"c\":7,\"did\":\"$V\",\"role\":\"client\"}"
		rchunk "$P" 10 "$(chunk 1)"
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	[ -z "$stderr" ]
	# one watcher left after the unsub: nobody told
	u=$(index '.m == "after.unsub"')
	[ "$(peer_sends relay.leave | wc -l)" -eq 3 ]
	[ "$(index '.p.msg.method == "relay.leave"')" -gt "$u" ]
	[ "$(peer_sends relay.leave | jq -c '[.p.node, .p.msg.params]' | sort | tr '\n' ' ')" = \
	    "$(printf '%s\n' "[\"$O\",{\"space\":\"$S\"}]" "[\"$O\",{\"space\":\"$S\"}]" "[\"$P\",{\"space\":\"$S\"}]" | sort | tr '\n' ' ')" ]
	assert_jq ".p.address == \"$OA\"" "$(peer_sends relay.leave | head -n 1)"
	# the unsub and conn.close lines go on; nothing is delivered after
	[ "$(count '.unsub == 6')" -eq 1 ]
	[ "$(count '.m == "conn.close"')" -eq 1 ]
	[ "$(count '.pub')" -eq 0 ]
	# an unsub of another key, or of another connection, changes nothing
	{
		watch 6 1 false
		echo "{\"unsub\":6,\"space\":\"$S\"}"
		echo "{\"unsub\":8,\"space\":\"chunk:$S\"}"
		echo "{\"m\":\"conn.close\",\"c\":9,\"did\":\"$V\",\"role\":\"client\"}"
		rchunk "$P" 10 "$(chunk 1)"
	} >"$T/in3"
	run -0 bus <"$T/in3"
	[ "$(peer_sends relay.leave | wc -l)" -eq 0 ]
	[ "$(pubs)" = "1 " ]
	# the owner node leaves nothing
	{
		watch 6 1 true
		echo "{\"m\":\"conn.close\",\"c\":6,\"did\":\"$V\",\"role\":\"client\"}"
	} >"$T/in4"
	run -0 bus <"$T/in4"
	[ "$(count '.m == "peer.send"')" -eq 0 ]
}

@test "ns-relay: conn.reset ends every watch: a viewer node leaves, the owner node publishes no more" {
	watch 6 1 false >"$T/in"
	run -0 bus <"$T/in"
	id=$(peer_sends relay.join | jq -r .p.msg.id)
	{
		watch 6 1 false
		watch 7 2 false
		joined "$O" 9 "$id" "$O" "$P"
		echo '{"m":"conn.reset","first":1767225600000000}'
		rchunk "$P" 10 "$(chunk 1)"
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	[ -z "$stderr" ]
	[ "$(count '.m == "conn.reset"')" -eq 1 ]
	[ "$(index '.p.msg.method == "relay.leave"')" -lt "$(index '.m == "conn.reset"')" ]
	[ "$(peer_sends relay.leave | jq -r .p.node | sort | tr '\n' ' ')" = "$(printf '%s\n' "$O" "$O" "$P" | sort | tr '\n' ' ')" ]
	[ "$(count '.pub')" -eq 0 ]
	{
		watch 6 1 true
		push 2 "$(chunk 1)"
		echo '{"m":"conn.reset","first":1767225600000000}'
		push 3 "$(chunk 2)"
		# a watch after the reset counts
		watch 8 4 true
		push 5 "$(chunk 3)"
	} >"$T/in3"
	run -0 bus <"$T/in3"
	[ "$(pubs)" = "1 3 " ]
}

@test "ns-relay: relay.leave drops a viewer from the owner's tree and a child from its parent" {
	{
		node_req relay.admit "$C" "$CA" 1
		node_req relay.admit "$D" "$DA" 2
		node_req relay.child "$C" "$CA" 3
		jq -nc --arg d "$C" --arg s "$S" '{m:"relay.leave",c:100,r:4,did:$d,role:"node",id:"relay:9.9",p:{space:$s}}'
		push 5 "$(chunk 1)"
		node_req relay.admit "$D" "$DA" 6
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	assert_jq ". == {to:100,r:4,msg:{id:\"relay:9.9\",jsonrpc:\"2.0\",result:{space:\"$S\"}}}" "$(sel '.r == 4')"
	[ "$(peer_sends relay.chunk | wc -l)" -eq 0 ]
	# D is alone now: index 1
	assert_jq '.msg.result.index == 1' "$(sel '.r == 6')"
}

@test "ns-relay: a child past twice the fan-out is refused busy; the owner node takes only viewers it placed" {
	{
		watch 6 1 false
		for i in 1 2 3 4 5 6 7 8 9; do
			node_req relay.child "did:key:z6MkKid$i" "10.2.0.$i:7700" $((10 + i))
		done
		# one it has: refreshed
		node_req relay.child did:key:z6MkKid1 10.2.0.1:7700 20
	} >"$T/in"
	run -0 --separate-stderr bus --fanout 4 <"$T/in"
	for r in 11 12 13 14 15 16 17 18 20; do
		assert_jq '.msg.result.space == "'"$S"'"' "$(sel ".r == $r")"
	done
	assert_jq '.msg.error.data.reason == "busy"' "$(sel '.r == 19')"
	# the owner node: a node that did not join is no child of it
	{
		watch 6 1 true
		node_req relay.child did:key:z6MkKid1 10.2.0.1:7700 11
		node_req relay.admit did:key:z6MkKid2 10.2.0.2:7700 12
		node_req relay.child did:key:z6MkKid2 10.2.0.2:7700 13
	} >"$T/in2"
	run -0 bus --fanout 4 <"$T/in2"
	assert_jq '.msg.error.data.reason == "forbidden"' "$(sel '.r == 11')"
	assert_jq '.msg.result.space == "'"$S"'"' "$(sel '.r == 13')"
}

# --- time -------------------------------------------------------------------

@test "ns-relay: a gap is fetched from a parent after 300 ms, and the answer fills it" {
	start
	feed "$(watch 6 1 false)"
	await '.p.msg.method == "relay.join"'
	id=$(seen '.p.msg.method == "relay.join"' | jq -r .p.msg.id)
	feed "$(joined "$O" 9 "$id" "$O" "$P")"
	await '.p.msg.method == "relay.attach"' 2
	c2=$(rchunk "$P" 10 "$(chunk 2)")
	t0=$(now)
	feed "$c2"
	mark a
	if [ $(($(now) - t0)) -lt 250 ]; then
		[ "$(seen '.p.msg.method == "relay.fetch"' | wc -l)" -eq 0 ]
	fi
	await '.p.msg.method == "relay.fetch"' 1 3000
	t1=$(now)
	[ $((t1 - t0)) -ge 300 ]
	f=$(seen '.p.msg.method == "relay.fetch"' | head -n 1)
	assert_jq "(.p.node == \"$O\" or .p.node == \"$P\") and .p.address == (\"addr-\" + .p.node) and .p.msg.params == {space:\"$S\",after:0} and (.p.msg.id | startswith(\"relay:\"))" "$f"
	[ "$(seen '.pub' | wc -l)" -eq 0 ]
	from=$(jq -r .p.node <<<"$f")
	fid=$(jq -r .p.msg.id <<<"$f")
	feed "$(resp "$from" 11 "$fid" "$(jq -nc --arg s "$S" --argjson c1 "$(chunk 1)" --argjson c2 "$(chunk 2)" '{space:$s,edge:2,chunks:[$c1,$c2]}')")"
	await '.pub' 2
	stop
	[ "$(pubs)" = "1 2 " ]
	assert_jq '. == {to:100,r:11}' "$(sel '.r == 11')"
	[ "$(count '.m == "peer.bad"')" -eq 0 ]
}

@test "ns-relay: a gap not filled in 3 s is skipped; joins and attaches are repeated every 2 s" {
	start
	feed "$(watch 6 1 false)"
	await '.p.msg.method == "relay.join"'
	id=$(seen '.p.msg.method == "relay.join"' | jq -r .p.msg.id)
	feed "$(joined "$O" 9 "$id" "$O" "$P")"
	feed "$(rchunk "$P" 10 "$(chunk 1)")"
	await '.pub'
	c3=$(rchunk "$P" 11 "$(chunk 3)") c4=$(rchunk "$P" 12 "$(chunk 4)")
	t0=$(now)
	feed "$c3" "$c4"
	mark a
	await '.pub' 3 6000
	t1=$(now)
	[ $((t1 - t0)) -ge 3000 ]
	# fetched every 300 ms meanwhile, from a parent, in vain
	n=$(seen '.p.msg.method == "relay.fetch"' | wc -l)
	[ "$n" -ge 3 ] && [ "$n" -le 11 ]
	seen '.p.msg.method == "relay.fetch"' | jq -e --arg o "$O" --arg p "$P" \
	    '.p.msg.params.after == 1 and (.p.node == $o or .p.node == $p)' >/dev/null
	# and the next one comes at once
	feed "$(rchunk "$O" 13 "$(chunk 5)")"
	await '.pub' 4 1000
	# beats: joins to the owner node, attaches to both parents
	[ "$(seen '.p.msg.method == "relay.join" and .p.node == "'"$O"'"' | wc -l)" -ge 2 ]
	[ "$(seen '.p.msg.method == "relay.attach" and .p.node == "'"$P"'"' | wc -l)" -ge 2 ]
	stop
	[ "$(pubs)" = "1 3 4 5 " ]
}

@test "ns-relay: a parent gone quiet shows in the owner's edge at the next join, and the owner node fills the gap" {
	start
	feed "$(watch 6 1 false)"
	await '.p.msg.method == "relay.join"'
	id=$(seen '.p.msg.method == "relay.join"' | jq -r .p.msg.id)
	feed "$(joined "$O" 9 "$id" "$P")"
	feed "$(rchunk "$P" 10 "$(chunk 1)")"
	await '.pub'
	# P sends nothing more; the next beat's join answer says the owner
	# is at 3
	await '.p.msg.method == "relay.join"' 2 3000
	id=$(seen '.p.msg.method == "relay.join"' | tail -n 1 | jq -r .p.msg.id)
	feed "$(resp "$O" 11 "$id" "$(jq -nc --arg s "$S" --arg p "$P" \
	    '{space:$s,edge:3,index:3,parents:[{node:$p,address:("addr-" + $p)}]}')")"
	t0=$(now)
	# fetched from the parent first, then from the owner node too
	await '.p.msg.method == "relay.fetch" and .p.node == "'"$O"'"' 1 3000
	[ $(($(now) - t0)) -ge 1200 ]
	[ "$(seen '.p.msg.method == "relay.fetch" and .p.node == "'"$P"'"' | wc -l)" -ge 1 ]
	f=$(seen '.p.msg.method == "relay.fetch" and .p.node == "'"$O"'"' | head -n 1)
	assert_jq ".p.address == \"$OA\" and .p.msg.params == {space:\"$S\",after:1}" "$f"
	feed "$(resp "$O" 12 "$(jq -r .p.msg.id <<<"$f")" "$(jq -nc --arg s "$S" \
	    --argjson c2 "$(chunk 2)" --argjson c3 "$(chunk 3)" '{space:$s,edge:3,chunks:[$c2,$c3]}')")"
	await '.pub' 3
	stop
	[ "$(pubs)" = "1 2 3 " ]
	[ "$(count '.m == "peer.bad"')" -eq 0 ]
}

@test "ns-relay: a jump in the chunk numbers is skipped in 3 s, however far, and the stage goes on" {
	c1=$(chunk 1) cj=$(chunk 1000000000000000) cn=$(chunk 1000000000000001)
	start --stats "$T/stats"
	# on a viewer node: the owner pushes numbers without gaps, but
	# what reaches a viewer may skip (a chunk no parent could give)
	feed "$(watch 6 1 false)" "$(rchunk "$P" 2 "$c1")"
	await '.pub'
	t0=$(now)
	feed "$(rchunk "$P" 3 "$cj")"
	await '.pub' 2 6000
	[ $(($(now) - t0)) -ge 3000 ]
	mark a
	feed "$(rchunk "$P" 4 "$cn")"
	await '.pub' 3 1000
	end=$(($(now) + 3000))
	until jq -e '.streams[0].delivered == 1000000000000001' "$T/stats" >/dev/null 2>&1; do
		[ "$(now)" -lt "$end" ]
		sleep 0.05
	done
	assert_jq '.streams[0].skipped == 999999999999998' "$(cat "$T/stats")"
	stop
	[ "$(pubs)" = "1 1000000000000000 1000000000000001 " ]
}

@test "ns-relay: a viewer or child not heard from for 6 s is gone" {
	c1=$(chunk 1) c2=$(chunk 2) c3=$(chunk 3)
	start
	feed "$(node_req relay.admit "$C" "$CA" 1)" "$(node_req relay.child "$C" "$CA" 2)" \
	    "$(push 3 "$c1")"
	await '.p.msg.method == "relay.chunk"'
	sleep 4
	# D comes, C stays silent
	feed "$(node_req relay.admit "$D" "$DA" 4)" "$(node_req relay.child "$D" "$DA" 5)" \
	    "$(push 6 "$c2")"
	await '.p.msg.method == "relay.chunk"' 3
	sleep 2.5
	feed "$(push 7 "$c3")" "$(node_req relay.admit "$D" "$DA" 8)"
	await '.r == 8'
	stop
	[ "$(peer_sends relay.chunk | jq -c '[.p.node, .p.msg.params.chunk.n]' | tr '\n' ' ')" = "[\"$C\",1] [\"$C\",2] [\"$D\",2] [\"$D\",3] " ]
	# two viewers, then D alone
	assert_jq '.msg.result.index == 1' "$(sel '.r == 1')"
	[ "$(sel '.r == 4' | jq '.msg.result.index')" -ge 1 ]
	[ "$(sel '.r == 4' | jq '.msg.result.parents | length')" -ge 1 ]
	assert_jq ".msg.result.index == 1 and .msg.result.parents == [{node:\"$NODE\",address:\"$NA\"}]" "$(sel '.r == 8')"
}

@test "ns-relay: --stats holds the streams' states while it runs, and is removed at the end" {
	start --stats "$T/stats"
	feed "$(watch 6 1 true)" "$(push 2 "$(chunk 1)")" "$(node_req relay.admit "$C" "$CA" 5)" \
	    "$(node_req relay.child "$C" "$CA" 3)" \
	    "$(push 4 "$(chunk 2)")"
	await '.r == 4'
	end=$(($(now) + 3000))
	until [ -s "$T/stats" ] && jq -e '.streams[0].edge == 2' "$T/stats" >/dev/null 2>&1; do
		[ "$(now)" -lt "$end" ]
		sleep 0.05
	done
	s=$(cat "$T/stats")
	assert_jq "(keys | sort) == [\"pid\",\"streams\"] and .pid == $RPID" "$s"
	assert_jq '.streams | length == 1' "$s"
	assert_jq ".streams[0] == {space:\"$S\",owned:true,edge:2,delivered:2,watchers:1,viewers:1,children:1,parents:[],in:2,duplicates:0,sent:1,skipped:0}" "$s"
	stop
	[ ! -e "$T/stats" ]
}

# --- tree ---------------------------------------------------------------------

# sha_order SPACE DID...: the DIDs sorted by SHA-256(SPACE || DID)
sha_order() {
	local sp=$1 d
	shift
	for d in "$@"; do
		printf '%s %s\n' "$(printf '%s%s' "$sp" "$d" | sha256sum | cut -d' ' -f1)" "$d"
	done | LC_ALL=C sort | cut -d' ' -f2
}

# check_tree FANOUT N: the tree of N viewers with fan-out FANOUT, in tree
# order; parents floor((i-1)/k) and the next, two distinct, children
# consistent with parents, at most FANOUT each, depth within log_k(N) + 1
check_tree() {
	local f=$1 n=$2 k=$(($1 / 2))
	jq -nc --arg s "$S" --arg o "$NODE" --argjson n "$n" \
	    '{space:$s,owner:$o,nodes:[range(1; $n + 1) | "did:key:z6MkV\(.)"]}' >"$T/tree.in"
	run -0 --separate-stderr ns-relay tree --fanout "$f" <"$T/tree.in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq $((n + 1)) ]
	printf '%s\n' "${lines[@]}" | jq -se --argjson k "$k" --argjson f "$f" --arg o "$NODE" --arg s "$S" '
	    . as $t | (map({key: .node, value: .index}) | from_entries) as $ix |
	    def depth(i): if i == 0 then 0 else 1 + depth(((i - 1) / $k | floor)) end;
	    (length - 1) as $n |
	    all(.[]; .space == $s) and
	    ([.[].index] == [range(0; $n + 1)]) and
	    (.[0] | .node == $o and .parents == []) and
	    all(.[1:][]; . as $l |
	        ((($l.index - 1) / $k | floor)) as $p0 |
	        ($l.parents | map($ix[.])) as $ps |
	        $ps[0] == $p0 and
	        (if $l.index == 1 then $ps == [0]
	         else ($ps | length) == 2 and $ps[1] == $p0 + 1 end)) and
	    all(.[]; (.children | length) <= $f) and
	    all(.[]; . as $l | .children == [$t[] | select(.parents | index($l.node)) | .node]) and
	    ([range(1; $n + 1) | depth(.)] | max) <= (($n | log) / ($k | log) | ceil) + 1
	' >/dev/null
	# in SHA-256(space || DID) order
	if [ "$n" -le 100 ]; then
		mapfile -t want < <(sha_order "$S" $(jq -r '.nodes[]' "$T/tree.in"))
		for i in $(seq 1 "$n"); do
			[ "$(jq -r .node <<<"${lines[$i]}")" = "${want[$((i - 1))]}" ]
		done
	fi
}

@test "ns-relay tree: every viewer node has two distinct parents, no node more children than the fan-out, and depth grows like log" {
	check_tree 8 100
	check_tree 4 30
	check_tree 16 1000
	check_tree 64 200
	check_tree 9 50
	# with fan-out 8 the owner has the first 4 viewers, a viewer up to 8
	check_tree 8 40
	assert_jq '.children | length == 4' "${lines[0]}"
	assert_jq '.children | length == 7' "${lines[1]}"
	assert_jq '.children | length == 8' "${lines[2]}"
}

@test "ns-relay tree: the owner and repeated nodes counted once, objects as nodes, and a malformed line exits 1" {
	jq -nc --arg s "$S" --arg o "$NODE" \
	    '{space:$s,owner:$o,nodes:[$o,{node:"did:key:a",address:"h:1"},"did:key:b","did:key:b",{node:"did:key:c"},5,{}]}' >"$T/in"
	run -0 ns-relay tree <"$T/in"
	[ "${#lines[@]}" -eq 4 ]
	assert_jq ".node == \"$NODE\" and .index == 0 and .parents == [] and (.children | length) == 3" "${lines[0]}"
	assert_jq ".index == 1 and .parents == [\"$NODE\"]" "${lines[1]}"
	assert_jq ".index == 2 and .parents == [\"$NODE\", $(jq .node <<<"${lines[1]}")]" "${lines[2]}"
	{
		cat "$T/in"
		echo '{"space":"x","nodes":[]}'
		echo '{"space":"x","owner":"o","nodes":"no"}'
		echo '{"space":"x","owner":"o","nodes":[]'
		jq -nc '{space:"x",owner:"o",nodes:[]}'
	} >"$T/in2"
	run -1 --separate-stderr ns-relay tree <"$T/in2"
	assert_match '^ns-relay: line 2: want \{"space","owner","nodes":\[\.\.\.\]\}' "$stderr"
	assert_match 'line 3: ' "$stderr"
	assert_match 'line 4: ' "$stderr"
	# the good lines are still printed
	[ "${#lines[@]}" -eq 5 ]
	assert_jq '. == {space:"x",node:"o",index:0,parents:[],children:[]}' "${lines[4]}"
	run -0 ns-relay tree </dev/null
	[ -z "$output" ]
}

# --- sim --------------------------------------------------------------------

@test "ns-relay sim: one JSON line of figures; the same options give the same line" {
	run -0 --separate-stderr ns-relay sim
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '(keys | sort) == ["chunks","copies_per_viewer_chunk","fanout","fetches","interval_ms","killed","longest_gap_ms","lost","nodes","p50_ms","p99_ms","seed","survivors"]'
	assert_jq '.nodes == 30 and .fanout == 8 and .killed == 3 and .interval_ms == 40 and .seed == 1'
	# 750 chunks (30 s), or more: kills come 10 s apart, once the tree
	# has mended from the one before
	assert_jq '.chunks >= 750'
	assert_jq '.survivors >= 27 and .survivors < 30 and .lost == 0'
	# from each chunk's push to its delivery: a few hops of 2 to 20 ms
	assert_jq '.p50_ms > 0 and .p50_ms < 200 and .p99_ms >= .p50_ms and .p99_ms < 1000'
	assert_jq '.longest_gap_ms >= 40 and .longest_gap_ms < 3000'
	# two parents: about two copies of each chunk per viewer
	assert_jq '.copies_per_viewer_chunk > 1.5 and .copies_per_viewer_chunk <= 2.5'
	first=$output
	run -0 ns-relay sim
	[ "$output" = "$first" ]
	run -0 ns-relay sim --seed 2
	[ "$output" != "$first" ]
	assert_jq '.seed == 2'
	run -0 ns-relay sim --nodes 50 --fanout 4 --kill 0 --chunks 100 --interval 20 --seed 7
	assert_jq '.nodes == 50 and .fanout == 4 and .killed == 0 and .chunks == 100 and .interval_ms == 20 and .seed == 7'
	assert_jq '.survivors == 50 and .lost == 0'
}

@test "ns-relay sim: relays killed one after another lose no chunk" {
	for k in 1 2 3 5; do
		for seed in 1 2 3; do
			run -0 ns-relay sim --kill $k --seed $seed
			assert_jq ".killed == $k and .lost == 0"
		done
	done
	run -0 ns-relay sim --nodes 300 --kill 5
	assert_jq '.lost == 0 and .survivors == 295'
	# each kill a node of its own, even when there are more kills than
	# relaying nodes to choose from
	for seed in 1 2 3; do
		run -0 ns-relay sim --nodes 12 --kill 6 --seed $seed
		assert_jq '.killed == 6 and .survivors == 6'
	done
}

@test "ns-relay: a push is in --state by the time it is answered" {
	start --state "$T/state"
	feed "$(push 1 "$(chunk 1)")" "$(push 2 "$(chunk 2)")"
	await '.r == 2'
	# the stage still runs: only the push itself can have written it
	[ "$(cat "$T/state")" = "{\"space\":\"$S\",\"edge\":2}" ]
	kill -KILL "$RPID"
	wait "$RPID" || :
	RPID=
	exec {FEED}>&-
	# a relay started on that state knows the edge
	run -0 bus --state "$T/state" <<<"$(jq -nc --arg s "$S" '{m:"relay.recent",c:5,r:3,id:3,p:{space:$s,limit:0}}')"
	assert_jq '.msg.result.edge == 2' "$(sel '.r == 3')"
}
