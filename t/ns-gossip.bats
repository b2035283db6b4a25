#!/usr/bin/env bats
# ns-gossip: the ring's link to other nodes, driven through --bus alone
# (bus lines in, the lines for ns-serve out, no network); the tier tree it
# pushes on; and the simulation of a broadcast over many nodes.

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	export NS_NOW=1767225600000
	T=$BATS_TEST_TMPDIR
	SP=channel/z6MkOwnerUser/general
	OWNER=did:key:z6MkOwnerNode
	B=did:key:z6MkNodeB
	C=did:key:z6MkNodeC
	D=did:key:z6MkNodeD
	E=did:key:z6MkNodeE
	OA=10.0.0.1:7700
	BA=10.0.0.2:7700
	CA=10.0.0.3:7700
	DA=10.0.0.4:7700
	EA=10.0.0.5:7700
}

bus() {
	ns-gossip --bus "$@"
}

# tick MS: a tick MS after $NS_NOW
tick() {
	printf '{"m":"tick","now":%s}\n' "$((NS_NOW + $1))"
}

# nd DID ADDRESS: {"node","address"}
nd() {
	jq -nc --arg n "$1" --arg a "$2" '{node:$n,address:$a}'
}

# link CONN DID [URL]: ns-serve's conn.open for a node (URL: a dial of ours)
link() {
	jq -nc --argjson c "$1" --arg d "$2" --arg u "${3-}" \
	    '{m:"conn.open",c:$c,did:$d,role:"node"} + if $u != "" then {url:$u} else {} end'
}

unlink_() {	# CONN DID: conn.close
	jq -nc --argjson c "$1" --arg d "$2" '{m:"conn.close",c:$c,did:$d,role:"node"}'
}

# send DID ADDRESS ID: a stage's peer.send of a node.submit (empty DID,
# ADDRESS or ID: left out)
send() {
	jq -nc --arg n "$1" --arg a "$2" --arg id "$3" \
	    '{m:"peer.send",p:((if $n != "" then {node:$n} else {} end) +
	      (if $a != "" then {address:$a} else {} end) +
	      {msg:({jsonrpc:"2.0",method:"node.submit",params:{n:$id}} +
	        if $id != "" then {id:$id} else {} end)})}'
}

# dialfail URL DID REASON: ns-serve's conn.fail
dialfail() {
	jq -nc --arg u "$1" --arg n "$2" --arg r "$3" '{m:"conn.fail",url:$u,node:$n,reason:$r}'
}

# push SEQ TO-ARRAY LAZY-ARRAY: ns-log's gossip.push of envelope SEQ of
# $SP (or $PSP), owned by $OWNER
push() {
	jq -nc --argjson seq "$1" --argjson to "$2" --argjson lazy "$3" \
	    --arg s "${PSP:-$SP}" --argjson o "$(nd "$OWNER" "$OA")" \
	    '{m:"gossip.push",p:{space:$s,seq:$seq,hash:("h" + ($seq | tostring)),
	      owner:$o,to:$to,lazy:$lazy,
	      envelope:{type:"envelope",space:$s,seq:$seq,sig:"x"}}}'
}

# follow SPACE OWNER ADDRESS HEAD [NODES-ARRAY]: ns-log's gossip.follow
follow() {
	jq -nc --arg s "$1" --argjson o "$(nd "$2" "$3")" --argjson h "$4" \
	    --argjson nodes "${5:-[]}" \
	    '{m:"gossip.follow",p:{space:$s,owner:$o,head:$h,
	      hash:(if $h > 0 then "hash" + ($h | tostring) else "" end),nodes:$nodes}}'
}

# page CONN R ID HEAD THEIRS APPLIED NEXT: a sync page as ns-log passes it on
page() {
	jq -nc --argjson c "$1" --argjson r "$2" --arg id "$3" --arg s "$SP" \
	    --argjson h "$4" --argjson t "$5" --argjson a "$6" --argjson n "$7" \
	    --arg d "$OWNER" \
	    '{m:"rpc.response",c:$c,r:$r,did:$d,role:"node",
	      p:{id:$id,result:{space:$s,head:$h,theirs:$t,applied:$a,next:$n}}}'
}

# sel FILTER: the output lines (one compact JSON each) FILTER selects
sel() {
	printf '%s\n' "$output" | jq -c "select($1)" 2>/dev/null
}

# count FILTER: how many output lines FILTER selects
count() {
	printf '%s\n' "$output" | jq -c "select($1)" 2>/dev/null | wc -l
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

# live FILE: run the stage with --stats $T/stats on FILE and a marker
# line; once the marker came out, copy the stats file to $T/stats.seen
# (the stage removes it at the end of its input).  Output in $T/out,
# standard error in $T/err.
# shellcheck disable=SC2094 # $T/out is read while the stage writes it
live() {
	rm -f "$T/out" "$T/stats" "$T/stats.seen"
	{
		cat "$1"
		echo '{"m":"mark"}'
		for _ in $(seq 1 100); do
			grep -q '"mark"' "$T/out" 2>/dev/null && break
			sleep 0.1
		done
		cp "$T/stats" "$T/stats.seen" 2>/dev/null || :
	} | bus --stats "$T/stats" >"$T/out" 2>"$T/err"
}

@test "ns-gossip: --help, --version and usage errors" {
	run -0 ns-gossip --help
	assert_match '^usage: ns-gossip --bus \[--stats FILE\]'
	assert_match 'ns-gossip tree \[--fanout K\]'
	assert_match 'ns-gossip sim '
	run -0 ns-gossip -h
	assert_match '^usage: ns-gossip'
	run -0 ns-gossip --version
	[ "$output" = "ns-gossip 0.1.0" ]
	run -2 --separate-stderr ns-gossip
	assert_match '^usage: ns-gossip' "$stderr"
	[ -z "$output" ]
	run -2 ns-gossip --bogus
	run -2 ns-gossip --bus extra
	run -2 ns-gossip --bus --stats
	run -2 ns-gossip frobnicate
	run -2 ns-gossip tree extra </dev/null
	run -2 ns-gossip tree --stats "$T/s" </dev/null
	run -2 ns-gossip --stats "$T/s" </dev/null
	run -2 ns-gossip tree --fanout 0 </dev/null
	run -2 ns-gossip tree --fanout 65 </dev/null
	run -2 ns-gossip tree --fanout x </dev/null
}

@test "ns-gossip: it starts with log.follows, and the other lines pass unchanged and in order" {
	cat >"$T/in" <<-EOF
	$(tick 0)
	{"m":"space.beam","c":3,"r":40,"did":"$B","role":"client","id":7,"p":{"event":{"a":1}}}
	{"to":3,"r":40,"msg":{"id":7,"jsonrpc":"2.0","result":{}}}
	{"to":3,"msg":{"jsonrpc":"2.0","method":"event","params":{}}}
	{"pub":"$SP","msg":{"a":[1, 2 ,3]}}
	{"m":"conn.open","c":4,"did":"$B","role":"client"}
	{"m" : "gossip.push", "p":{}}
	{"m":"gossip","p":{}}
	{"m":"peers.list","p":{}}
	{"m":"rpc.response","c":4,"r":41,"did":"$B","role":"node","p":{"id":"beam:1","result":{}}}
	{"m":"conn.close","c":4,"did":"$B","role":"client"}
	{"dial":"ws://$BA/"}
	garbage
	[1,2]
	{"m":"conn.reset","first":1767225600000000}
	$(tick 1000)
	EOF
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	[ "${lines[0]}" = '{"m":"log.follows"}' ]
	mapfile -t in <"$T/in"
	[ "${#lines[@]}" -eq $((${#in[@]} + 1)) ]
	for i in "${!in[@]}"; do
		[ "${lines[$((i + 1))]}" = "${in[$i]}" ]
	done
}

@test "ns-gossip: gossip.push sends node.broadcast to each child, dialing when there is no link" {
	{
		# C dialed this node: a link without url
		link 200 "$C"
		push 5 "[$(nd "$B" "$BA"),$(nd "$C" "ws://$CA/")]" "[]"
		# the dial of B went through
		link 100 "$B" "ws://$BA/"
		push 6 "[$(nd "$B" "$BA"),$(nd "$C" "$CA")]" "[]"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	# B: dialed once, with its DID; its broadcast waits for the link
	[ "$(count 'has("dial")')" -eq 1 ]
	assert_jq ". == {dial:\"ws://$BA/\",node:\"$B\"}" "$(sel 'has("dial")')"
	# C: on its own link at once
	n=$(index '.to == 200 and .msg.params.envelope.seq == 5')
	assert_jq ".msg == {jsonrpc:\"2.0\",method:\"node.broadcast\",params:{envelope:{type:\"envelope\",space:\"$SP\",seq:5,sig:\"x\"}}}" "${lines[$n]}"
	# B's seq 5 goes out when its link opens, before the conn.open line
	# passes on, then seq 6 on the same link
	a=$(index '.to == 100 and .msg.params.envelope.seq == 5')
	o=$(index '.m == "conn.open" and .c == 100')
	b=$(index '.to == 100 and .msg.params.envelope.seq == 6')
	[ "$a" -lt "$o" ] && [ "$o" -lt "$b" ]
	[ "$(count '.to == 200')" -eq 2 ]
	[ "$(count '.to == 100')" -eq 2 ]
	[ "$(count '.msg.method == "node.head"')" -eq 0 ]
}

@test "ns-gossip: the lazy nodes of a push hear of the head at the next tick only" {
	{
		link 300 "$D"
		push 7 "[]" "[$(nd "$D" "$DA"),$(nd "$E" "$EA")]"
		echo '{"m":"after.push"}'
		tick 1000
		tick 2000
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	p=$(index '.m == "after.push"')
	# nothing before the tick; then, before the tick passes on, D on
	# its link, and a dial of E, whose node.head waits for the link
	[ "$p" -eq 2 ]
	assert_jq ".to == 300 and .msg == {jsonrpc:\"2.0\",method:\"node.head\",params:{hash:\"h7\",head:7,space:\"$SP\"}}" "${lines[$((p + 1))]}"
	assert_jq ". == {dial:\"ws://$EA/\",node:\"$E\"}" "${lines[$((p + 2))]}"
	[ "${lines[$((p + 3))]}" = "$(tick 1000)" ]
	# once only: the second tick announces nothing
	[ "$(count '.msg.method == "node.head"')" -eq 1 ]
	[ "$(count 'has("dial")')" -eq 1 ]
}

@test "ns-gossip: the lazy nodes of every push before a tick are announced to, each once" {
	{
		link 300 "$D"
		link 301 "$E"
		push 7 "[]" "[$(nd "$D" "$DA")]"
		push 8 "[]" "[$(nd "$E" "$EA")]"
		push 9 "[]" "[$(nd "$E" "$EA")]"
		tick 1000
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	# the newest head, to D and to E, once each: D was named by the
	# first push only
	[ "$(count '.msg.method == "node.head"')" -eq 2 ]
	[ "$(count '.to == 300 and .msg.params.head == 9')" -eq 1 ]
	[ "$(count '.to == 301 and .msg.params.head == 9')" -eq 1 ]
}

@test "ns-gossip: gossip.follow pulls from the owner page by page, each page ended" {
	{
		follow "$SP" "$OWNER" "$OA" 0
		link 100 "$OWNER" "ws://$OA/"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	assert_jq ". == {dial:\"ws://$OA/\",node:\"$OWNER\"}" "$(sel 'has("dial")')"
	s1=$(sel '.to == 100')
	assert_jq ".msg.method == \"node.sync\" and .msg.params == {after:0,limit:1000,space:\"$SP\"} and (.msg.id | startswith(\"g:\"))" "$s1"
	id1=$(jq -r .msg.id <<<"$s1")
	# three pages of 1000, 1000 and 500; each is answered for ns-serve
	{
		cat "$T/in"
		page 100 9 "$id1" 1000 2500 1000 1000
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	[ -z "$stderr" ]
	[ "$(count '.to == 100 and .r == 9')" -eq 1 ]
	assert_jq '. == {to:100,r:9}' "$(sel '.to == 100 and .r == 9')"
	s2=$(sel '.to == 100 and .msg.params.after == 1000')
	assert_jq ".msg.method == \"node.sync\" and .msg.params == {after:1000,limit:1000,space:\"$SP\"}" "$s2"
	id2=$(jq -r .msg.id <<<"$s2")
	[ "$id2" != "$id1" ]
	{
		cat "$T/in2"
		page 100 10 "$id2" 2000 2500 1000 2000
	} >"$T/in3"
	run -0 --separate-stderr bus <"$T/in3"
	id3=$(sel '.to == 100 and .msg.params.after == 2000' | jq -r .msg.id)
	{
		cat "$T/in3"
		page 100 11 "$id3" 2500 2500 500 null
		# not ours: on, as it came
		page 100 12 "log:1.1" 1 1 1 null
		# ours but no longer awaited: ended all the same
		page 100 13 "$id1" 2500 2500 0 null
	} >"$T/in4"
	run -0 --separate-stderr bus <"$T/in4"
	[ -z "$stderr" ]
	# the last page ends it: three node.sync in all
	[ "$(count '.msg.method == "node.sync"')" -eq 3 ]
	for r in 9 10 11 13; do
		[ "$(count ". == {to:100,r:$r}")" -eq 1 ]
	done
	[ "$(sel '.r == 12')" = "$(page 100 12 "log:1.1" 1 1 1 null)" ]
}

@test "ns-gossip: a page that applied nothing ends the pull; theirs above head asks on" {
	{
		follow "$SP" "$OWNER" "$OA" 3
		link 100 "$OWNER" "ws://$OA/"
	} >"$T/in"
	run -0 bus <"$T/in"
	id1=$(sel '.msg.method == "node.sync"' | jq -r .msg.id)
	assert_jq '.msg.params.after == 3' "$(sel '.msg.method == "node.sync"')"
	# next set, but nothing applied (the owner sent what did not fit)
	{ cat "$T/in"; page 100 9 "$id1" 3 50 0 1003; } >"$T/in2"
	run -0 bus <"$T/in2"
	[ "$(count '.msg.method == "node.sync"')" -eq 1 ]
	# next null, but the owner is further on than this page went
	{ cat "$T/in"; page 100 9 "$id1" 40 50 37 null; } >"$T/in3"
	run -0 bus <"$T/in3"
	[ "$(count '.msg.method == "node.sync"')" -eq 2 ]
	assert_jq '.msg.params.after == 40' "$(sel '.msg.method == "node.sync" and .msg.params.after != 3')"
}

@test "ns-gossip: gossip.behind pulls from the node named, gossip.ahead tells it the head" {
	{
		link 200 "$C"
		echo "{\"m\":\"gossip.behind\",\"p\":{\"space\":\"$SP\",\"head\":5,\"node\":\"$C\"}}"
		# a pull is under way: no second one
		echo "{\"m\":\"gossip.behind\",\"p\":{\"space\":\"$SP\",\"head\":5,\"node\":\"$C\"}}"
		echo "{\"m\":\"gossip.ahead\",\"p\":{\"space\":\"channel/z6MkOther/x\",\"head\":9,\"hash\":\"h9\",\"node\":\"$C\"}}"
		tick 14999
		echo "{\"m\":\"gossip.behind\",\"p\":{\"space\":\"$SP\",\"head\":5,\"node\":\"$C\"}}"
		# its time is up: the pull is asked again
		tick 15000
		echo "{\"m\":\"gossip.behind\",\"p\":{\"space\":\"$SP\",\"head\":6,\"node\":\"$C\"}}"
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	[ "$(count '.msg.method == "node.sync"')" -eq 2 ]
	syncs=$(sel '.msg.method == "node.sync"' | jq -sc 'map([.to, .msg.params.after, .msg.params.limit, .msg.params.space])')
	[ "$syncs" = "[[200,5,1000,\"$SP\"],[200,6,1000,\"$SP\"]]" ]
	assert_jq '.to == 200 and .msg == {jsonrpc:"2.0",method:"node.head",params:{hash:"h9",head:9,space:"channel/z6MkOther/x"}}' "$(sel '.msg.method == "node.head"')"
	[ "$(count '.msg.method == "node.head"')" -eq 1 ]
}

@test "ns-gossip: peer.send goes on a link, waits while ns-serve dials, or fails" {
	{
		link 200 "$C"
		link 201 "$C"
		send "$C" "" log:1
		send "$B" "$BA" log:2
		send "$B" "$BA" ""
		echo '{"m":"between"}'
		link 100 "$B" "ws://$BA/"
		send "$B" "" log:3
		# a node known by DID only, and a client connection, are no links
		send "$D" "" log:4
		echo "{\"m\":\"conn.open\",\"c\":400,\"did\":\"$E\",\"role\":\"client\"}"
		send "$E" "" log:5
		send "" "" log:6
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	# on the newest link, canonical, as the message it was
	assert_jq '. == {to:201,msg:{id:"log:1",jsonrpc:"2.0",method:"node.submit",params:{n:"log:1"}}}' "$(sel '.to == 201')"
	[ "${lines[3]}" = '{"to":201,"msg":{"id":"log:1","jsonrpc":"2.0","method":"node.submit","params":{"n":"log:1"}}}' ]
	# B: one dial; both messages wait, then go in order before conn.open
	assert_jq ". == {dial:\"ws://$BA/\",node:\"$B\"}" "$(sel 'has("dial")')"
	w=$(index '.m == "between"')
	o=$(index '.m == "conn.open" and .c == 100')
	[ "$(index '.to == 100')" -eq $((o - 2)) ]
	assert_jq '.msg.id == "log:2"' "${lines[$((o - 2))]}"
	assert_jq '.msg.params.n == "" and (.msg | has("id") | not)' "${lines[$((o - 1))]}"
	[ "$w" -lt $((o - 2)) ]
	assert_jq '.to == 100 and .msg.id == "log:3"' "${lines[$((o + 1))]}"
	# no address, no link: peer.fail at once
	assert_jq ".p.id == \"log:4\" and .p.node == \"$D\" and .p.reason == \"no address known\"" "$(sel '.p.id == "log:4"')"
	assert_jq ".m == \"peer.fail\" and .p.node == \"$E\" and .p.reason == \"no address known\"" "$(sel '.p.id == "log:5"')"
	assert_jq '.m == "peer.fail" and .p.node == null and .p.address == null' "$(sel '.p.id == "log:6"')"
	[ "$(count '.m == "peer.fail"')" -eq 3 ]
	[ "$(count 'has("dial")')" -eq 1 ]
}

@test "ns-gossip: a message for an address alone dials it, then uses the node's link" {
	{
		send "" "$BA" log:1
		link 100 "$B" "ws://$BA/"
		send "" "$BA" log:2
		send "$B" "$BA" log:3
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	assert_jq ". == {dial:\"ws://$BA/\"}" "$(sel 'has("dial")')"
	[ "$(count 'has("dial")')" -eq 1 ]
	[ "$(sel '.to == 100' | jq -r .msg.id | tr '\n' ' ')" = "log:1 log:2 log:3 " ]
}

@test "ns-gossip: a failed dial fails what waited, then backoff fails at once" {
	{
		send "$B" "$BA" log:1
		send "$B" "$BA" ""
		send "$B" "$BA" log:2
		dialfail "ws://$BA/" "$B" "connection refused"
		send "$B" "$BA" log:3
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	assert_match "node $B \\($BA\\): connection refused; next try in [12]s" "$stderr"
	f=$(index '.m == "conn.fail"')
	# the two with an id, with node, address and reason, before the
	# conn.fail line passes on; the one without an id silently
	assert_jq ". == {m:\"peer.fail\",p:{id:\"log:1\",node:\"$B\",address:\"$BA\",reason:\"connection refused\"}}" "${lines[$((f - 2))]}"
	assert_jq ". == {m:\"peer.fail\",p:{id:\"log:2\",node:\"$B\",address:\"$BA\",reason:\"connection refused\"}}" "${lines[$((f - 1))]}"
	# while it backs off: no dial, a peer.fail that says so
	[ "$(count 'has("dial")')" -eq 1 ]
	r=$(sel '.p.id == "log:3"' | jq -r .p.reason)
	assert_match '^unreachable \(1 failures, next try in [12]s\): connection refused$' "$r"
	[ "$(count '.m == "peer.fail"')" -eq 3 ]
}

@test "ns-gossip: backoff doubles from 1 s to 5 min, jittered 75-125%, and a link ends it" {
	url=ws://$BA/
	for k in $(seq 1 12); do
		send "$B" "$BA" "log:$k"
		dialfail "$url" "$B" "connection refused"
		send "$B" "$BA" "wait:$k"
		# past any backoff (375 s at most)
		tick $((k * 400000))
	done >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	# a dial each time the backoff was over, never while it lasted
	[ "$(count 'has("dial")')" -eq 12 ]
	for k in $(seq 1 12); do
		assert_jq '.p.reason == "connection refused"' "$(sel ".p.id == \"log:$k\"")"
		r=$(sel ".p.id == \"wait:$k\"" | jq -r .p.reason)
		[[ "$r" =~ ^unreachable\ \(([0-9]+)\ failures,\ next\ try\ in\ ([0-9]+)s\) ]]
		[ "${BASH_REMATCH[1]}" -eq "$k" ]
		base=$((1000 << (k - 1)))
		[ $base -le 300000 ] || base=300000
		s=${BASH_REMATCH[2]}
		lo=$(((base * 3 / 4 + 999) / 1000))
		hi=$(((base * 3 / 4 + base / 2 + 999) / 1000))
		if [ "$s" -lt $lo ] || [ "$s" -gt $hi ]; then
			echo "failure $k: next try in ${s}s, not $lo to $hi" >&2
			false
		fi
	done
	# a link resets it: the next failure backs off 1 s again
	{
		cat "$T/in"
		send "$B" "$BA" log:up
		link 100 "$B" "$url"
		unlink_ 100 "$B"
		send "$B" "$BA" log:13
		dialfail "$url" "$B" "timed out"
		send "$B" "$BA" wait:13
	} >"$T/in2"
	run -0 --separate-stderr bus <"$T/in2"
	assert_jq '.to == 100' "$(sel '.msg.id == "log:up"')"
	assert_match '^unreachable \(1 failures, next try in [12]s\): timed out$' "$(sel '.p.id == "wait:13"' | jq -r .p.reason)"
}

@test "ns-gossip: --stats holds the peers' states after a tick" {
	{
		link 200 "$C"
		send "$C" "" ""
		send "$C" "" ""
		send "$B" "$BA" log:1
		dialfail "ws://$BA/" "$B" "connection refused"
		send "$D" "$DA" ""
		follow "$SP" "$OWNER" "$OA" 0
		follow channel/z6MkOther/x "$E" "$EA" 0
		# B backs off for 750 ms at least
		tick 500
	} >"$T/in"
	live "$T/in"
	[ -s "$T/stats.seen" ]
	[ ! -e "$T/stats" ]	# removed at the end
	s=$(cat "$T/stats.seen")
	assert_jq '(keys | sort) == ["followed","nodes","peers","pid","started","up"]' "$s"
	assert_jq ".started == $NS_NOW and (.pid | type) == \"number\" and .pid > 1" "$s"
	assert_jq '.followed == 2 and .peers == 5 and .up == 1' "$s"
	assert_jq '[.nodes[] | keys == ["address","failures","lastError","links","node","sent","state"]] | all' "$s"
	assert_jq ".nodes | map(select(.node == \"$C\"))[0] == {node:\"$C\",address:null,state:\"up\",links:1,failures:0,sent:2,lastError:null}" "$s"
	assert_jq ".nodes | map(select(.node == \"$B\"))[0] == {node:\"$B\",address:\"$BA\",state:\"backoff\",links:0,failures:1,sent:0,lastError:\"connection refused\"}" "$s"
	assert_jq ".nodes | map(select(.node == \"$D\"))[0] | .state == \"dialing\" and .address == \"$DA\" and .links == 0" "$s"
	assert_jq ".nodes | map(select(.node == \"$OWNER\"))[0].state == \"dialing\"" "$s"
	# refused, and the file is rewritten at a later tick
	{
		cat "$T/in"
		echo "{\"m\":\"peer.bad\",\"p\":{\"node\":\"$C\",\"reason\":\"forged\"}}"
		tick 2000
	} >"$T/in2"
	live "$T/in2"
	assert_jq ".up == 0 and (.nodes | map(select(.node == \"$C\"))[0] | .state == \"refused\" and .links == 0 and .lastError == \"forged\")" "$(cat "$T/stats.seen")"
}

@test "ns-gossip: a peer with no link, dial or message is forgotten after 10 minutes unused" {
	{
		link 200 "$C"
		send "$C" "" ""
		unlink_ 200 "$C"
		send "$B" "$BA" log:1
		dialfail "ws://$BA/" "$B" "connection refused"
		send "$D" "$DA" ""	# dialing, and no answer comes
		tick 500
		tick $((9 * 60 * 1000))
	} >"$T/in"
	live "$T/in"
	assert_jq '.peers == 3 and ([.nodes[].node] | sort) == ["'"$B"'","'"$C"'","'"$D"'"]' "$(cat "$T/stats.seen")"
	{
		cat "$T/in"
		tick $((10 * 60 * 1000 + 1000))
	} >"$T/in2"
	live "$T/in2"
	# B and C go; D stays while its dial is out
	assert_jq '.peers == 1 and [.nodes[].node] == ["'"$D"'"] and .nodes[0].state == "dialing"' "$(cat "$T/stats.seen")"
	# and a node wanted again is dialed afresh
	{
		cat "$T/in2"
		send "$B" "$BA" log:2
	} >"$T/in3"
	run -0 --separate-stderr bus <"$T/in3"
	[ "$(count 'has("dial")')" -eq 3 ]
	[ "$(count '.m == "peer.fail"')" -eq 1 ]
}

@test "ns-gossip: peer.bad closes the node's links and refuses it for 10 minutes" {
	{
		link 200 "$C"
		link 201 "$C" "ws://$CA/"
		link 300 "$D"
		send "$B" "$BA" log:1
		echo "{\"m\":\"peer.bad\",\"p\":{\"node\":\"$C\",\"reason\":\"sent an envelope that does not follow the owner's chain\"}}"
		echo "{\"m\":\"peer.bad\",\"p\":{\"node\":\"$B\",\"reason\":\"bad page\"}}"
		echo '{"m":"after.bad"}'
		link 202 "$C"
		send "$C" "$CA" log:2
		echo "{\"m\":\"peer.fail\",\"p\":{\"id\":\"beam:1\",\"node\":\"$C\",\"address\":\"$CA\",\"reason\":\"x\"}}"
		tick 599999
		link 203 "$C"
		tick 600000
		link 204 "$C"
		send "$C" "$CA" log:3
		send "$D" "" log:4
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	assert_match "node $C refused for 10 min: sent an envelope" "$stderr"
	# its links are closed, the other node's are not
	assert_jq '. == {close:200,code:1008,reason:"forged data"}' "$(sel '.close == 200')"
	assert_jq '. == {close:201,code:1008,reason:"forged data"}' "$(sel '.close == 201')"
	[ "$(count '.close == 300')" -eq 0 ]
	# what waited for B fails
	assert_jq ".p.id == \"log:1\" and .p.node == \"$B\" and .p.reason == \"refused: it sent forged data\"" "$(sel '.p.id == "log:1"')"
	# a link it opens meanwhile is closed, and messages for it fail
	assert_jq '. == {close:202,code:1008,reason:"refused for a while"}' "$(sel '.close == 202')"
	assert_jq '. == {close:203,code:1008,reason:"refused for a while"}' "$(sel '.close == 203')"
	assert_jq ".p.reason == \"the node is refused for a while: it sent forged data\"" "$(sel '.p.id == "log:2"')"
	[ "$(count 'has("close")')" -eq 4 ]
	# a peer.fail reaching ns-gossip was nobody's: dropped
	[ "$(count '.p.id == "beam:1"')" -eq 0 ]
	# ten minutes on, it is a peer like any other
	assert_jq '.to == 204' "$(sel '.msg.id == "log:3"')"
	assert_jq '.to == 300' "$(sel '.msg.id == "log:4"')"
	[ "$(count '.m == "conn.open"')" -eq 6 ]
}

@test "ns-gossip: conn.close drops one link, conn.reset all of them" {
	{
		send "$C" "$CA" log:0
		link 200 "$C" "ws://$CA/"
		link 201 "$C"
		unlink_ 201 "$C"
		send "$C" "" log:1
		# a client's conn.close is no link's
		echo "{\"m\":\"conn.close\",\"c\":200,\"did\":\"$C\",\"role\":\"client\"}"
		send "$C" "" log:2
		unlink_ 200 "$C"
		# no link left: dialed again at the address it had
		send "$C" "" log:3
		link 202 "$C"
		echo '{"m":"conn.reset","first":1767225600000000}'
		send "$C" "" log:4
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	for i in 0 1 2; do
		assert_jq '.to == 200' "$(sel ".msg.id == \"log:$i\"")"
	done
	assert_jq '.to == 202' "$(sel '.msg.id == "log:3"')"
	# after the reset no link is left: a third dial, and log:4 waits
	[ "$(count '.msg.id == "log:4"')" -eq 0 ]
	[ "$(count '.m == "peer.fail"')" -eq 0 ]
	[ "$(count ". == {dial:\"ws://$CA/\",node:\"$C\"}")" -eq 3 ]
	r=$(index '.m == "conn.reset"')
	assert_jq ". == {dial:\"ws://$CA/\",node:\"$C\"}" "${lines[$((r + 1))]}"
	[ "$(count '.m == "conn.reset" or .m == "conn.open" or .m == "conn.close"')" -eq 7 ]
}

@test "ns-gossip: a node's links beyond 4 are closed" {
	{
		for c in 200 201 202 203 204; do
			link "$c" "$C"
		done
		send "$C" "" log:1
		tick 1000
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ "$(count '.close')" -eq 1 ]
	assert_jq '. == {close:204,code:1008,reason:"too many links from one node"}' "$(sel '.close')"
	assert_jq '.to != 204' "$(sel '.msg.id == "log:1"')"
	live "$T/in"
	assert_jq '.nodes[0].links == 4' "$(cat "$T/stats.seen")"
}

@test "ns-gossip: anti-entropy sends node.head to the owner of each followed space every 10 s" {
	O2=did:key:z6MkOtherOwner
	SP2=channel/z6MkOther/x
	{
		link 100 "$OWNER"
		link 110 "$O2"
		link 200 "$C"
		follow "$SP" "$OWNER" "$OA" 4 "[$(nd "$C" "$CA")]"
		follow "$SP2" "$O2" "10.0.0.9:7700" 0
		# a space pushed but not followed has no anti-entropy
		PSP=channel/z6MkMine/x push 1 "[]" "[]"
		tick 1000
		tick 9999
		echo '{"m":"ae.due"}'
		tick 10000
		tick 15000
		echo '{"m":"ae.again"}'
		tick 20000
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	d=$(index '.m == "ae.due"')
	a=$(index '.m == "ae.again"')
	heads() {	# FROM TO: the node.head lines between, as [to, params]
		local i
		for ((i = $1; i < $2; i++)); do
			jq -c 'select(.msg.method == "node.head") | [.to, .msg.params]' <<<"${lines[$i]}"
		done | sort
	}
	[ -z "$(heads 0 "$d")" ]
	want=$(printf '%s\n' \
	    "[100,{\"hash\":\"hash4\",\"head\":4,\"space\":\"$SP\"}]" \
	    "[110,{\"hash\":\"\",\"head\":0,\"space\":\"$SP2\"}]" \
	    "[200,{\"hash\":\"hash4\",\"head\":4,\"space\":\"$SP\"}]" | sort)
	[ "$(heads "$d" "$a")" = "$want" ]
	[ "$(heads "$a" "${#lines[@]}")" = "$want" ]
	# the pulls of the follows went to the owners at once
	[ "$(count '.msg.method == "node.sync"')" -eq 2 ]
	assert_jq '.msg.params.after == 4' "$(sel '.to == 100 and .msg.method == "node.sync"')"
}

@test "ns-gossip: gossip.unfollow ends the anti-entropy of a space" {
	{
		link 100 "$OWNER"
		follow "$SP" "$OWNER" "$OA" 2
		echo "{\"m\":\"gossip.unfollow\",\"p\":{\"space\":\"$SP\"}}"
		tick 10000
		tick 20000
	} >"$T/in"
	run -0 --separate-stderr bus <"$T/in"
	[ -z "$stderr" ]
	[ "$(count '.msg.method == "node.head"')" -eq 0 ]
	[ "$(count '.m | tostring | startswith("gossip.")')" -eq 0 ]
}

# sha_order SPACE DID...: the DIDs sorted by SHA-256(SPACE || DID)
sha_order() {
	local sp=$1 d
	shift
	for d in "$@"; do
		printf '%s %s\n' "$(printf '%s%s' "$sp" "$d" | sha256sum | cut -d' ' -f1)" "$d"
	done | LC_ALL=C sort | cut -d' ' -f2
}

@test "ns-gossip tree: 25 nodes with fan-out 10, in SHA-256(space || DID) order" {
	dids=()
	for i in $(seq 1 25); do dids+=("did:key:z6MkMember$i"); done
	jq -nc --arg s "$SP" --arg o "$OWNER" '$ARGS.positional as $n |
	    {space:$s,owner:$o,nodes:([$o] + $n + [$n[3]])}' --args "${dids[@]}" >"$T/in"
	run -0 --separate-stderr ns-gossip tree <"$T/in"
	[ -z "$stderr" ]
	# the owner once, each member once: 26 lines, indices 0 to 25
	[ "${#lines[@]}" -eq 26 ]
	for i in $(seq 0 25); do
		assert_jq ".index == $i and .space == \"$SP\"" "${lines[$i]}"
	done
	assert_jq ".node == \"$OWNER\" and .depth == 0 and .parent == null" "${lines[0]}"
	mapfile -t want < <(sha_order "$SP" "${dids[@]}")
	for i in $(seq 1 25); do
		[ "$(jq -r .node <<<"${lines[$i]}")" = "${want[$((i - 1))]}" ]
	done
	# the owner's children are 1..10, those of 1 are 11..20, of 2 21..25
	[ "$(jq -c .children <<<"${lines[0]}")" = "$(printf '%s\n' "${want[@]:0:10}" | jq -Rsc 'split("\n")[:-1]')" ]
	[ "$(jq -c .children <<<"${lines[1]}")" = "$(printf '%s\n' "${want[@]:10:10}" | jq -Rsc 'split("\n")[:-1]')" ]
	[ "$(jq -c .children <<<"${lines[2]}")" = "$(printf '%s\n' "${want[@]:20:5}" | jq -Rsc 'split("\n")[:-1]')" ]
	for i in $(seq 1 10); do
		assert_jq ".depth == 1 and .parent == \"$OWNER\"" "${lines[$i]}"
	done
	for i in $(seq 11 20); do
		assert_jq ".depth == 2 and .parent == \"${want[0]}\" and .children == []" "${lines[$i]}"
	done
	for i in $(seq 21 25); do
		assert_jq ".depth == 2 and .parent == \"${want[1]}\" and .children == []" "${lines[$i]}"
	done
	for i in $(seq 3 10); do
		assert_jq '.children == []' "${lines[$i]}"
	done
	# --fanout 10 is the default; the order depends on the space
	run -0 ns-gossip tree --fanout 10 <"$T/in"
	[ "${#lines[@]}" -eq 26 ]
	[ "$(jq -r .node <<<"${lines[1]}")" = "${want[0]}" ]
	jq -c '.space = "channel/z6MkOther/x"' "$T/in" >"$T/in2"
	run -0 ns-gossip tree <"$T/in2"
	mapfile -t want2 < <(sha_order channel/z6MkOther/x "${dids[@]}")
	[ "${want2[*]}" != "${want[*]}" ]
	[ "$(jq -r .node <<<"${lines[1]}")" = "${want2[0]}" ]
}

@test "ns-gossip tree: --fanout K, objects as nodes, and a malformed line exits 1" {
	jq -nc --arg s "$SP" --arg o "$OWNER" \
	    '{space:$s,owner:$o,nodes:[{node:"did:key:a",address:"h:1"},"did:key:b","did:key:c",{node:"did:key:d"}]}' >"$T/in"
	run -0 ns-gossip tree --fanout 2 <"$T/in"
	[ "${#lines[@]}" -eq 5 ]
	assert_jq '.children | length == 2' "${lines[0]}"
	assert_jq '.children | length == 2' "${lines[1]}"
	assert_jq '.children | length == 0' "${lines[2]}"
	for i in 3 4; do
		assert_jq ".depth == 2 and .parent == $(jq .node <<<"${lines[1]}")" "${lines[$i]}"
	done
	{
		cat "$T/in"
		echo '{"space":"x","nodes":[]}'
		echo '{"space":"x","owner":"o","nodes":"no"}'
		echo '{"space":"x","owner":"o","nodes":[]'
		jq -nc '{space:"x",owner:"o",nodes:[]}'
	} >"$T/in2"
	run -1 --separate-stderr ns-gossip tree --fanout 2 <"$T/in2"
	assert_match '^ns-gossip: line 2: want \{"space","owner","nodes":\[\.\.\.\]\}' "$stderr"
	assert_match 'line 3: ' "$stderr"
	assert_match 'line 4: ' "$stderr"
	# the good lines are still printed
	[ "${#lines[@]}" -eq 6 ]
	assert_jq '. == {space:"x",node:"o",index:0,depth:0,parent:null,children:[]}' "${lines[5]}"
	run -0 ns-gossip tree </dev/null
	[ -z "$output" ]
}

@test "ns-gossip sim: one JSON line; without failures every node has everything" {
	for n in 100 1000; do
		run -0 --separate-stderr ns-gossip sim --nodes $n --fail 0
		[ -z "$stderr" ]
		[ "${#lines[@]}" -eq 1 ]
		assert_jq "(keys | sort) == [\"delivered_push\",\"delivered_repair\",\"duplicates_per_node_event\",\"events\",\"failed\",\"fanout\",\"heads_per_node_event\",\"hops_max\",\"latency_max_ms\",\"lazy\",\"loss\",\"nodes\",\"payload_per_node_event\",\"pulls_per_node_event\",\"seed\"]"
		assert_jq ".nodes == $n and .failed == 0 and .events == 100 and .fanout == 10 and .lazy == 2 and .loss == 0 and .seed == 1"
		assert_jq '.delivered_repair == 1 and .delivered_push > 0.99'
		# ceil(log10 N) + 2
		max=$(awk -v n=$n 'BEGIN { l = log(n) / log(10); c = int(l); if (c < l - 1e-9) c++; print c + 2 }')
		assert_jq ".hops_max >= 1 and .hops_max <= $max"
		assert_jq '.payload_per_node_event < 1.5 and .heads_per_node_event < 1.5'
	done
}

@test "ns-gossip sim: with a fifth of the nodes down the repair still reaches every live node" {
	for n in 100 1000; do
		run -0 ns-gossip sim --nodes $n --fail 0.2 --seed 1
		[ "${#lines[@]}" -eq 1 ]
		assert_jq ".nodes == $n and .failed > 0 and .failed < $n * 0.3"
		assert_jq '.delivered_repair == 1 and .delivered_push < 1'
		assert_jq '.latency_max_ms <= 32000'
	done
	run -0 ns-gossip sim --nodes 200 --fail 0.2 --loss 0.05 --seed 4 --events 20 --fanout 4 --lazy 3 --interval 100
	assert_jq '.nodes == 200 and .events == 20 and .fanout == 4 and .lazy == 3 and .loss == 0.05 and .seed == 4'
	assert_jq '.delivered_repair > .delivered_push and .delivered_repair > 0.9'
}

@test "ns-gossip sim: the same seed gives the same line" {
	run -0 ns-gossip sim --nodes 500 --fail 0.2 --seed 7
	first=$output
	run -0 ns-gossip sim --nodes 500 --fail 0.2 --seed 7
	[ "$output" = "$first" ]
	run -0 ns-gossip sim --nodes 500 --fail 0.2 --seed 8
	[ "$output" != "$first" ]
}

@test "ns-gossip sim: bad options exit 2" {
	for a in "--nodes 1" "--nodes x" "--nodes 1000001" "--fail 1" "--fail -0.1" "--fail x" \
	    "--loss 1" "--loss y" "--seed -1" "--events 0" "--events 100001" "--fanout 0" \
	    "--fanout 65" "--lazy 17" "--interval 0" "--bogus" "extra" "--nodes"; do
		# shellcheck disable=SC2086
		run -2 --separate-stderr ns-gossip sim $a
		[ -z "$output" ]
		assert_match 'usage: ns-gossip sim|--' "$stderr"
	done
}
