#!/usr/bin/env bats
# ns-log: spaces, sequencing, rules and storage, driven through --bus alone

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	export NS_NOW=1767225600000
	NODEK=$(fixture_key node)
	AK=$(fixture_key alice)
	BK=$(fixture_key bob)
	CK=$(fixture_key carol)
	NODE_DID=$(jq -r .did "$NODEK")
	A=$(jq -r .did "$AK")
	B=$(jq -r .did "$BK")
	C=$(jq -r .did "$CK")
	DB=$BATS_TEST_TMPDIR/log.db
	ADDR=127.0.0.1:7700
	CH="channel/${A#did:key:}/general"
	DM="dm/${A#did:key:}/secret"
	ST="stream/${A#did:key:}/live"
}

teardown() {
	local p
	for p in ${holder:-} ${pid:-}; do
		kill "$p" 2>/dev/null || true
	done
}

# The protocol's id: base64url(SHA-256(bytes)), 43 characters.
h() {
	openssl dgst -sha256 -binary | basenc --base64url | tr -d '='
}

# sign KEY JSON: the event signed by KEY, ts = $NS_NOW unless JSON has one.
sign() {
	ns-sign -k "$1" --ts "$NS_NOW" <<<"$2"
}

create() {	# KEY SPACE [RULES]
	sign "$1" "$(jq -nc --arg s "$2" --arg n "$NODE_DID" --arg a "$ADDR" \
	    --argjson r "${3:-null}" \
	    '{type:"space.create",space:$s,name:"Test space",node:$n,address:$a}
	     + if $r then {rules:$r} else {} end')"
}
join() {	# KEY SPACE
	sign "$1" "$(jq -nc --arg s "$2" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"space.join",space:$s,node:$n,address:$a}')"
}
leave() {	# KEY SPACE
	sign "$1" "$(jq -nc --arg s "$2" '{type:"space.leave",space:$s}')"
}
invite() {	# KEY SPACE MEMBER (also remove: TYPE=space.remove)
	sign "$1" "$(jq -nc --arg t "${TYPE:-space.invite}" --arg s "$2" \
	    --arg m "$3" '{type:$t,space:$s,member:$m}')"
}
rules() {	# KEY SPACE RULES
	sign "$1" "$(jq -nc --arg s "$2" --argjson r "$3" \
	    '{type:"space.rules",space:$s,rules:$r}')"
}
bpath() {	# DID N: the path of beam N by DID
	printf 'beam/%s/%s' "$(printf %s "$1" | h)" "$(printf 'beam %s' "$2" | h)"
}
ref() {		# KEY SPACE N
	local did; did=$(jq -r .did "$1")
	sign "$1" "$(jq -nc --arg s "$2" --arg b "$(bpath "$did" "$3")" \
	    --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a}')"
}
tomb() {	# KEY PATH
	sign "$1" "$(jq -nc --arg b "$2" '{type:"beam.tombstone",beam:$b}')"
}

# rq METHOD DID ID EVENT [PARAMS]: a request line on the bus.
rq() {
	jq -nc --arg m "$1" --arg d "$2" --argjson id "$3" --argjson e "$4" \
	    --argjson p "${5:-{\}}" \
	    '{m:$m,c:7,did:$d,role:"client",id:$id,p:({event:$e} + $p)}'
}
# rd METHOD DID ID PARAMS [ROLE]: a request without an event.
rd() {
	jq -nc --arg m "$1" --arg d "$2" --argjson id "$3" --argjson p "$4" \
	    --arg r "${5:-client}" '{m:$m,c:7,did:$d,role:$r,id:$id,p:$p}'
}

# bus [OPTION...]: ns-log --bus on the test's database, without the line
# it writes first at every start (it asks ns-serve for the subscriptions).
bus() {
	local rc=0
	ns-log --bus -k "$NODEK" -d "$DB" -a "$ADDR" "$@" >"$BATS_TEST_TMPDIR/bus.out" || rc=$?
	sed '1{/^{"resync":"subs"}$/d;}' "$BATS_TEST_TMPDIR/bus.out"
	return $rc
}

# jqt [JQ OPTIONS...] FILTER JSON: jq -e FILTER on JSON.
jqt() {
	local json=${!#}
	if ! printf '%s\n' "$json" | jq -e "${@:1:$#-1}" >/dev/null; then
		echo "jqt failed: ${*:1:$#-1}" >&2
		echo "on: ${json:0:2000}" >&2
		return 1
	fi
}

# The JSON-RPC message answering id, from $output.
ans() {
	printf '%s\n' "$output" |
	    jq -cR --argjson id "$1" 'fromjson? | select(.to == 7 and .msg.id == $id) | .msg'
}
reason() {
	ans "$1" | jq -r '.error.data.reason // "ok"'
}
pubs() {
	printf '%s\n' "$output" | jq -cR 'fromjson? | select(.pub)'
}

# A channel, a dm and a stream owned by alice.
make_spaces() {
	{
		rq space.create "$A" 1 "$(create "$AK" "$CH")"
		rq space.create "$A" 2 "$(create "$AK" "$DM")"
		rq space.create "$A" 3 "$(create "$AK" "$ST")"
	} >"$BATS_TEST_TMPDIR/spaces.in"
	run -0 bus <"$BATS_TEST_TMPDIR/spaces.in"
	[ "$(reason 1)$(reason 2)$(reason 3)" = okokok ]
}

@test "ns-log: --help, --version and usage errors" {
	run -0 ns-log --help
	assert_match '^usage: ns-log --bus'
	run -0 ns-log --version
	[ "$output" = "ns-log 0.1.0" ]
	run -2 ns-log
	run -2 ns-log --bus -d "$DB" -a "$ADDR"
	run -2 ns-log --bus -k "$NODEK" -d "$DB"
	run -2 ns-log --bus -k "$NODEK" -d "$DB" -a "$ADDR" --batch 0
	run -2 ns-log --bus -k "$NODEK" -d "$DB" -a "$ADDR" --sync sometimes
	run -2 ns-log --bus -k "$NODEK" -d "$DB" -a "bad address"
	run -2 ns-log -d "$DB" frobnicate
	run -2 ns-log -d "$DB" members
	run -2 ns-log -d "$DB" spaces --limit 3
}

@test "ns-log: setup failures exit 2" {
	chmod 644 "$NODEK"
	run -2 --separate-stderr bus </dev/null
	assert_match '^ns-log: ' "$stderr"
	chmod 600 "$NODEK"
	run -2 --separate-stderr ns-log --bus -k "$NODEK" -d "$BATS_TEST_TMPDIR/no/such/dir/log.db" -a "$ADDR" </dev/null
	assert_match 'log.db' "$stderr"
	run -2 --separate-stderr ns-log -d "$BATS_TEST_TMPDIR/none.db" spaces
	printf 'not a database, just text\n%.0s' {1..200} >"$BATS_TEST_TMPDIR/junk.db"
	run -2 --separate-stderr ns-log -d "$BATS_TEST_TMPDIR/junk.db" spaces
}

@test "ns-log: space.create answers the space and publishes a signed envelope" {
	ev=$(create "$AK" "$CH")
	run -0 --separate-stderr bus <<<"$(rq space.create "$A" 1 "$ev")"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 2 ]
	eid=$(printf %s "$ev" | h)
	jqt --arg ch "$CH" --arg a "$A" --arg addr "$ADDR" --arg eid "$eid" \
	    '.result == {id:$ch, type:"channel", name:"Test space", ownerDid:$a,
	     nodeAddress:$addr, address:("northstar://" + $addr + "/" + $ch),
	     seq:1, eventId:$eid} and .jsonrpc == "2.0"' "$(ans 1)"
	# the answer comes first, then the pub line
	jqt '.to == 7' "${lines[0]}"
	pub=${lines[1]}
	jqt --arg ch "$CH" --arg n "$NODE_DID" --argjson ev "$ev" \
	    '.pub == $ch and .msg.jsonrpc == "2.0" and .msg.method == "event" and
	     (.msg.params | .type == "envelope" and .space == $ch and .seq == 1 and
	      .prev == null and .node == $n and .ts == 1767225600000 and .event == $ev)' "$pub"
	env=$(jq -c .msg.params <<<"$pub")
	run -0 ns-verify <<<"$env"
	[ "$output" = "$env" ]
	# the stored envelope is the published one
	run -0 ns-log -d "$DB" history "$CH"
	[ "$output" = "$env" ]
	run -0 ns-log -d "$DB" spaces
	jqt --arg ch "$CH" --arg a "$A" --arg n "$NODE_DID" '. == {id:$ch,type:"channel",name:"Test space",ownerDid:$a,node:$n,head:1}' "$output"
}

@test "ns-log: space.create refusals: owner, node, address, conflict, name" {
	make_spaces
	other=$(create "$BK" "$CH")     # bob creating in alice's name
	nodeb=$(sign "$AK" "$(jq -nc --arg s "channel/${A#did:key:}/n2" --arg n "$B" --arg a "$ADDR" \
	    '{type:"space.create",space:$s,name:"x",node:$n,address:$a}')")
	addrb=$(sign "$AK" "$(jq -nc --arg s "channel/${A#did:key:}/n3" --arg n "$NODE_DID" \
	    '{type:"space.create",space:$s,name:"x",node:$n,address:"10.0.0.1:7700"}')")
	again=$(create "$AK" "$CH" '{"join":"invite"}')
	long=$(sign "$AK" "$(jq -nc --arg s "channel/${A#did:key:}/n4" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"space.create",space:$s,name:("x" * 201),node:$n,address:$a}')")
	badrules=$(create "$AK" "channel/${A#did:key:}/n5" '{"join":"maybe"}')
	noname=$(sign "$AK" "$(jq -nc --arg s "channel/${A#did:key:}/n6" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"space.create",space:$s,node:$n,address:$a}')")
	run -0 bus < <(
		rq space.create "$B" 1 "$other"
		rq space.create "$A" 2 "$nodeb"
		rq space.create "$A" 3 "$addrb"
		rq space.create "$A" 4 "$again"
		rq space.create "$A" 5 "$long"
		rq space.create "$A" 6 "$badrules"
		rq space.create "$A" 7 "$noname")
	[ "$(reason 1)" = forbidden ]
	[ "$(reason 2)" = bad_event ]
	[ "$(reason 3)" = bad_event ]
	[ "$(reason 4)" = conflict ]
	jqt '.error.code == -32006 and .error.data.reason == "conflict"' "$(ans 4)"
	[ "$(reason 5)" = bad_event ]
	[ "$(reason 6)" = bad_event ]
	[ "$(reason 7)" = bad_event ]
	[ -z "$(pubs)" ]
}

@test "ns-log: the chain: seq, prev and node over several appends" {
	make_spaces
	run -0 bus < <(
		rq space.join "$B" 10 "$(join "$BK" "$CH")"
		for i in 1 2 3 4 5; do rq log.append "$A" $((10 + i)) "$(ref "$AK" "$CH" $i)"; done
		rq log.append "$B" 20 "$(ref "$BK" "$CH" 1)")
	for i in 10 11 12 13 14 15 20; do [ "$(reason $i)" = ok ]; done
	jqt '.result.seq == 2' "$(ans 10)"
	jqt '.result.seq == 8' "$(ans 20)"
	jqt --arg b "$(bpath "$A" 3)" '.result.beam == $b and .result.seq == 5' "$(ans 13)"
	run -0 ns-log -d "$DB" history "$CH"
	[ "${#lines[@]}" -eq 8 ]
	envs=$output
	# prev of each is the hash of the one before; seq has no gaps
	prev=null
	for i in $(seq 0 7); do
		e=${lines[$i]}
		jqt --argjson s $((i + 1)) --argjson p "$prev" --arg n "$NODE_DID" \
		    '.seq == $s and .prev == $p and .node == $n' "$e"
		prev="\"$(ns-sign --canonical <<<"$e" | head -c -1 | h)\""
	done
	run -0 ns-verify <<<"$envs"
	run -0 ns-log -d "$DB" verify "$CH"
	jqt --arg ch "$CH" '. == {space:$ch,head:8,ok:true}' "$output"
	run -0 ns-log -d "$DB" verify
	[ "${#lines[@]}" -eq 3 ]
	jqt -s 'map(.ok) == [true,true,true]' "$output"
}

@test "ns-log: channel: a non-member may not post; after joining it may" {
	make_spaces
	run -0 bus < <(
		rq log.append "$B" 1 "$(ref "$BK" "$CH" 1)"
		rq space.join "$B" 2 "$(join "$BK" "$CH")"
		rq log.append "$B" 3 "$(ref "$BK" "$CH" 2)"
		rq space.join "$B" 4 "$(NS_NOW=1767225600001 join "$BK" "$CH")")
	[ "$(reason 1)" = forbidden ]
	jqt '.error.code == -32003' "$(ans 1)"
	[ "$(reason 2)" = ok ]
	[ "$(reason 3)" = ok ]
	[ "$(reason 4)" = forbidden ]   # already a member
	# a ref must name the author's own beam
	bad=$(sign "$BK" "$(jq -nc --arg s "$CH" --arg b "$(bpath "$A" 9)" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a}')")
	run -0 bus <<<"$(rq log.append "$B" 5 "$bad")"
	[ "$(reason 5)" = bad_event ]
	run -0 ns-log -d "$DB" members "$CH"
	jqt --arg a "$A" --arg b "$B" '.members == [$a,$b] and .invited == [] and .owner == $a' "$output"
}

@test "ns-log: dm: invite before join; strangers cannot read" {
	make_spaces
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$DM")"
		rq space.invite "$B" 2 "$(invite "$BK" "$DM" "$B")"
		rq space.invite "$A" 3 "$(invite "$AK" "$DM" "$B")"
		rq space.join "$B" 4 "$(join "$BK" "$DM")"
		rq log.append "$B" 5 "$(ref "$BK" "$DM" 1)"
		rd subscribe "$C" 6 "{\"space\":\"$DM\"}"
		rd space.history "$C" 7 "{\"space\":\"$DM\"}"
		rd space.members "$C" 8 "{\"space\":\"$DM\"}"
		rd subscribe "$B" 9 "{\"space\":\"$DM\"}"
		rd space.history "$B" 10 "{\"space\":\"$DM\"}"
		rd space.history "$NODE_DID" 11 "{\"space\":\"$DM\"}" node
		rd space.history "$C" 12 "{\"space\":\"$DM\"}" node
		rd space.info "$C" 13 "{\"space\":\"$DM\"}"
		rd space.info "$B" 14 "{\"space\":\"$DM\"}")
	[ "$(reason 1)" = forbidden ]
	[ "$(reason 2)" = forbidden ]
	[ "$(reason 3)" = ok ]
	[ "$(reason 4)" = ok ]
	[ "$(reason 5)" = ok ]
	[ "$(reason 6)" = forbidden ]
	[ "$(reason 7)" = forbidden ]
	[ "$(reason 8)" = forbidden ]
	[ "$(reason 9)" = ok ]
	jqt '.result.head == 4' "$(ans 10)"
	[ "$(reason 11)" = ok ]        # the node of a member
	[ "$(reason 12)" = forbidden ] # a node no member lives on
	# nothing derived from a members-only space reaches a stranger
	[ "$(reason 13)" = forbidden ]
	jqt --arg dm "$DM" '.result.id == $dm and .result.rules == {join:"invite",post:"members",read:"members"}' "$(ans 14)"
	# no sub line for the refused subscription
	[ "$(printf '%s\n' "$output" | jq -c 'select(.sub)' | wc -l)" -eq 1 ]
}

@test "ns-log: stream: only the owner posts" {
	make_spaces
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$ST")"
		rq log.append "$B" 2 "$(ref "$BK" "$ST" 1)"
		rq log.append "$A" 3 "$(ref "$AK" "$ST" 1)")
	[ "$(reason 1)" = ok ]
	[ "$(reason 2)" = forbidden ]
	[ "$(reason 3)" = ok ]
}

@test "ns-log: leave: a member leaves and may no longer post; the owner cannot" {
	make_spaces
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$CH")"
		rq space.leave "$B" 2 "$(leave "$BK" "$CH")"
		rq log.append "$B" 3 "$(ref "$BK" "$CH" 1)"
		rq space.leave "$A" 4 "$(leave "$AK" "$CH")"
		rq space.leave "$C" 5 "$(leave "$CK" "$CH")"
		rq space.join "$B" 6 "$(NS_NOW=1767225600001 join "$BK" "$CH")")
	[ "$(reason 1)" = ok ]
	[ "$(reason 2)" = ok ]
	jqt --arg ch "$CH" '.result | keys == ["eventId","seq","space"] and .seq == 3 and .space == $ch' "$(ans 2)"
	[ "$(reason 3)" = forbidden ]
	[ "$(reason 4)" = forbidden ]
	[ "$(reason 5)" = forbidden ]
	[ "$(reason 6)" = ok ]
	run -0 ns-log -d "$DB" verify "$CH"
}

@test "ns-log: remove: the owner removes a member or an invitation" {
	make_spaces
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$CH")"
		rq space.remove "$A" 2 "$(TYPE=space.remove invite "$AK" "$CH" "$B")"
		rq log.append "$B" 3 "$(ref "$BK" "$CH" 1)"
		rq space.remove "$C" 4 "$(TYPE=space.remove invite "$CK" "$CH" "$B")"
		rq space.remove "$A" 5 "$(TYPE=space.remove invite "$AK" "$CH" "$A")"
		rq space.invite "$A" 6 "$(invite "$AK" "$DM" "$C")"
		rq space.remove "$A" 7 "$(TYPE=space.remove invite "$AK" "$DM" "$C")"
		rq space.join "$C" 8 "$(join "$CK" "$DM")")
	[ "$(reason 1)" = ok ]
	[ "$(reason 2)" = ok ]
	[ "$(reason 3)" = forbidden ]
	[ "$(reason 4)" = forbidden ]
	[ "$(reason 5)" = forbidden ]
	[ "$(reason 6)" = ok ]
	[ "$(reason 7)" = ok ]
	[ "$(reason 8)" = forbidden ]
	run -0 ns-log -d "$DB" members "$DM"
	jqt --arg a "$A" '.members == [$a] and .invited == []' "$output"
	run -0 ns-log -d "$DB" verify
}

@test "ns-log: rules: the owner changes them; they apply at once" {
	make_spaces
	run -0 bus < <(
		rq space.rules "$B" 1 "$(rules "$BK" "$CH" '{"join":"invite"}')"
		rq space.rules "$A" 2 "$(rules "$AK" "$CH" '{"join":"invite"}')"
		rq space.join "$C" 3 "$(join "$CK" "$CH")"
		rq space.rules "$A" 4 "$(rules "$AK" "$CH" '{"read":"everyone"}')"
		rq space.rules "$A" 5 "$(rules "$AK" "$CH" '"open"')"
		rd space.info "$A" 6 "{\"space\":\"$CH\"}")
	[ "$(reason 1)" = forbidden ]
	[ "$(reason 2)" = ok ]
	[ "$(reason 3)" = forbidden ]
	[ "$(reason 4)" = bad_event ]
	[ "$(reason 5)" = bad_event ]
	jqt '.result.rules == {join:"invite",post:"members",read:"public"} and .result.head == 2' "$(ans 6)"
	# unknown rule members are ignored; absent ones take the defaults again
	run -0 bus < <(
		rq space.rules "$A" 7 "$(rules "$AK" "$CH" '{"post":"owner","colour":"red"}')"
		rd space.members "$A" 8 "{\"space\":\"$CH\"}")
	[ "$(reason 7)" = ok ]
	jqt '.result.rules == {join:"open",post:"owner",read:"public"}' "$(ans 8)"
	run -0 ns-log -d "$DB" verify "$CH"
}

@test "ns-log: a duplicate event gets the first answer and no new envelope" {
	make_spaces
	r=$(ref "$AK" "$CH" 1)
	c=$(create "$AK" "$CH")
	run -0 bus < <(
		rq log.append "$A" 1 "$r"
		rq log.append "$A" 2 "$r")
	[ "$(pubs | wc -l)" -eq 1 ]
	[ "$(ans 1 | jq -c .result)" = "$(ans 2 | jq -c .result)" ]
	run -0 bus < <(
		rq log.append "$A" 3 "$r"
		rq space.create "$A" 4 "$c")
	[ -z "$(pubs)" ]
	jqt '.result.seq == 2' "$(ans 3)"
	jqt '.result.seq == 1 and .result.name == "Test space"' "$(ans 4)"
	run -0 ns-log -d "$DB" spaces
	jqt -s --arg ch "$CH" 'map(select(.id == $ch)) | .[0].head == 2' "$output"
}

@test "ns-log: tombstones: by the ref's author, by another, for an unknown ref" {
	make_spaces
	p=$(bpath "$A" 1)
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$CH")"
		rq log.append "$A" 2 "$(ref "$AK" "$CH" 1)"
		rq log.append "$B" 3 "$(tomb "$BK" "$p")" "{\"space\":\"$CH\"}"
		rq log.append "$A" 4 "$(tomb "$AK" "$(bpath "$A" 2)")" "{\"space\":\"$CH\"}"
		rq log.append "$A" 5 "$(tomb "$AK" "$p")" "{\"space\":\"$DM\"}"
		rq log.append "$A" 6 "$(tomb "$AK" "$p")"
		jq -nc --argjson e "$(tomb "$AK" "$p")" --arg s "$CH" '{m:"log.append",p:{event:$e,space:$s}}')
	[ "$(reason 3)" = forbidden ]
	[ "$(reason 4)" = forbidden ]
	[ "$(reason 5)" = forbidden ]
	[ "$(reason 6)" = invalid_params ]
	# the request without c/id was sequenced but not answered
	[ "$(printf '%s\n' "$output" | jq -c 'select(.to)' | wc -l)" -eq 6 ]
	[ "$(pubs | wc -l)" -eq 3 ]
	jqt --arg p "$p" --arg ch "$CH" '.pub == $ch and .msg.params.seq == 4 and .msg.params.event.beam == $p and (.msg.params.event | has("space") | not)' "$(pubs | tail -n 1)"
	# a tombstone with a space member is malformed
	bad=$(sign "$AK" "$(jq -nc --arg b "$p" --arg s "$CH" '{type:"beam.tombstone",beam:$b,space:$s}')")
	run -0 bus <<<"$(rq log.append "$A" 8 "$bad" "{\"space\":\"$CH\"}")"
	[ "$(reason 8)" = bad_event ]
	run -0 ns-log -d "$DB" verify "$CH"
}

@test "ns-log: bad space ids are bad_event" {
	kid=${A#did:key:}
	for sp in "group/$kid/x" "channel/$kid" "channel/$kid/" "channel/$kid/." "channel/$kid/.." \
	    "channel/$kid/a b" "channel/$kid/a/b" "channel/${kid}x/y" "channel/z6Mk/y" "channel//y" \
	    "channel/$kid/$(printf 'a%.0s' {1..65})" "channel/did:key:$kid/y"; do
		run -0 bus <<<"$(rq space.create "$A" 1 "$(create "$AK" "$sp")")"
		[ "$(reason 1)" = bad_event ] || { echo "accepted: $sp"; false; }
	done
	run -0 bus <<<"$(rq space.create "$A" 1 "$(create "$AK" "stream/$kid/$(printf 'a%.0s' {1..64})")")"
	[ "$(reason 1)" = ok ]
	run -0 bus <<<"$(rq space.create "$A" 2 "$(create "$AK" "dm/$kid/A.b_c-9")")"
	[ "$(reason 2)" = ok ]
}

@test "ns-log: ts more than 5 minutes ahead is refused; less is fine" {
	make_spaces
	run -0 bus < <(
		rq log.append "$A" 1 "$(NS_NOW=$((NS_NOW + 300001)) ref "$AK" "$CH" 1)"
		rq log.append "$A" 2 "$(NS_NOW=$((NS_NOW + 300000)) ref "$AK" "$CH" 2)"
		rq log.append "$A" 3 "$(NS_NOW=1000 ref "$AK" "$CH" 3)")
	[ "$(reason 1)" = bad_event ]
	assert_match 'future' "$(ans 1 | jq -r .error.message)"
	[ "$(reason 2)" = ok ]
	[ "$(reason 3)" = ok ]
}

@test "ns-log: an event over 16 KiB is too_large; malformed events are bad_event" {
	make_spaces
	big=$(sign "$AK" "$(jq -nc --arg s "$CH" --arg b "$(bpath "$A" 1)" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a,pad:("x" * 16384)}')")
	run -0 bus < <(
		rq log.append "$A" 1 "$big"
		rq log.append "$A" 2 "$(jq -c 'del(.node)' <<<"$(ref "$AK" "$CH" 2)")"
		rq log.append "$A" 3 "$(jq -c '.type = "beam.like"' <<<"$(ref "$AK" "$CH" 2)")"
		rq log.append "$A" 4 "$(jq -c 'del(.sig)' <<<"$(ref "$AK" "$CH" 2)")"
		rq log.append "$A" 5 '"just a string"'
		rq space.join "$A" 6 "$(ref "$AK" "$CH" 2)"
		rq space.invite "$A" 7 "$(invite "$AK" "$CH" "did:key:zNotAKey")"
		rd space.create "$A" 8 '{}')
	[ "$(reason 1)" = too_large ]
	[ "$(reason 2)" = bad_event ]
	[ "$(reason 3)" = bad_event ]
	[ "$(reason 4)" = bad_sig ]
	[ "$(reason 5)" = invalid_params ]
	[ "$(reason 6)" = bad_event ]
	[ "$(reason 7)" = bad_event ]
	[ "$(reason 8)" = invalid_params ]
	[ -z "$(pubs)" ]
}

@test "ns-log: an unknown space is not_found" {
	make_spaces
	other="channel/${A#did:key:}/nowhere"
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$other")"
		rq log.append "$A" 2 "$(ref "$AK" "$other" 1)"
		rd space.history "$A" 3 "{\"space\":\"$other\"}"
		rd space.members "$A" 4 "{\"space\":\"$other\"}"
		rd space.info "$A" 5 "{\"space\":\"$other\"}"
		rd subscribe "$A" 6 "{\"space\":\"$other\"}"
		rd space.info "$A" 7 '{"space":"no/such"}'
		rd space.info "$A" 8 '{}')
	for i in 1 2 3 4 5 6; do [ "$(reason $i)" = not_found ]; done
	[ "$(reason 7)" = invalid_params ]
	[ "$(reason 8)" = invalid_params ]
	[ -z "$(printf '%s\n' "$output" | jq -c 'select(.sub)')" ]
	run -1 --separate-stderr ns-log -d "$DB" history "$other"
	assert_match 'no such space' "$stderr"
	run -1 ns-log -d "$DB" members "$other"
	run -1 ns-log -d "$DB" verify "$other"
}

@test "ns-log: subscribe writes the sub line before the result; unsubscribe" {
	make_spaces
	run -0 bus < <(
		rd subscribe "$B" 1 "{\"space\":\"$CH\"}"
		rq log.append "$A" 2 "$(ref "$AK" "$CH" 1)"
		rd unsubscribe "$B" 3 "{\"space\":\"$CH\"}")
	[ "${#lines[@]}" -eq 6 ]
	jqt --arg ch "$CH" '. == {sub:7,space:$ch}' "${lines[0]}"
	jqt --arg ch "$CH" '.msg.id == 1 and .msg.result == {space:$ch,head:1}' "${lines[1]}"
	jqt '.msg.id == 2' "${lines[2]}"
	jqt '.pub and .msg.params.seq == 2' "${lines[3]}"
	jqt --arg ch "$CH" '. == {unsub:7,space:$ch}' "${lines[4]}"
	jqt --arg ch "$CH" '.msg.id == 3 and .msg.result == {space:$ch}' "${lines[5]}"
}

@test "ns-log: lines of other stages pass unchanged and in order" {
	make_spaces
	cat >"$BATS_TEST_TMPDIR/in" <<-EOF
	{"m":"tick","now":1767225600000}
	$(rd space.info "$A" 1 "{\"space\":\"$CH\"}")
	{"to":3,"msg":{"jsonrpc":"2.0","id":1,"result":{}}}
	{"m":"beam.read","c":3,"id":9,"p":{"beam":"x"}}
	{"m":"space.info2","c":3,"id":9,"p":{}}
	{"m" : "space.info", "c":3, "id":10, "p":{}}
	{"pub":"x","msg":{"a":[1, 2 ,3]}}
	$(rd space.info "$A" 2 "{\"space\":\"$CH\"}")
	{"m":"conn.close","c":3}
	EOF
	run -0 --separate-stderr bus <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 9 ]
	mapfile -t in <"$BATS_TEST_TMPDIR/in"
	for i in 0 2 3 4 5 6 8; do [ "${lines[$i]}" = "${in[$i]}" ]; done
	jqt '.msg.id == 1' "${lines[1]}"
	jqt '.msg.id == 2' "${lines[7]}"
}

@test "ns-log: history pages with after, limit, next and head" {
	make_spaces
	run -0 bus < <(for i in $(seq 1 9); do rq log.append "$A" $i "$(ref "$AK" "$CH" $i)"; done)
	run -0 bus < <(
		rd space.history "$B" 1 "{\"space\":\"$CH\"}"
		rd space.history "$B" 2 "{\"space\":\"$CH\",\"after\":0,\"limit\":4}"
		rd space.history "$B" 3 "{\"space\":\"$CH\",\"after\":4,\"limit\":4}"
		rd space.history "$B" 4 "{\"space\":\"$CH\",\"after\":8,\"limit\":4}"
		rd space.history "$B" 5 "{\"space\":\"$CH\",\"after\":10}"
		rd space.history "$B" 6 "{\"space\":\"$CH\",\"limit\":0}"
		rd space.history "$B" 7 "{\"space\":\"$CH\",\"limit\":1001}"
		rd space.history "$B" 8 "{\"space\":\"$CH\",\"after\":-1}"
		rd space.history "$B" 9 "{\"space\":\"$CH\",\"after\":\"3\"}"
		rd space.history "$B" 10 "{\"space\":\"$CH\",\"limit\":1000}")
	jqt --arg ch "$CH" '.result | .space == $ch and .head == 10 and .next == null and
	    (.envelopes | map(.seq)) == [range(1;11)]' "$(ans 1)"
	jqt '.result | .head == 10 and .next == 4 and (.envelopes | map(.seq)) == [1,2,3,4]' "$(ans 2)"
	jqt '.result | .next == 8 and (.envelopes | map(.seq)) == [5,6,7,8]' "$(ans 3)"
	jqt '.result | .next == null and (.envelopes | map(.seq)) == [9,10]' "$(ans 4)"
	jqt '.result | .next == null and .envelopes == []' "$(ans 5)"
	for i in 6 7 8 9; do [ "$(reason $i)" = invalid_params ]; done
	[ "$(reason 10)" = ok ]
	# the envelopes are the stored ones, byte for byte
	[ "$(ans 2 | jq -c '.result.envelopes[]')" = "$(ns-log -d "$DB" history "$CH" --limit 4)" ]
	run -0 ns-log -d "$DB" history "$CH" --after 8
	[ "${#lines[@]}" -eq 2 ]
	run -0 ns-log -d "$DB" history --after 3 --limit 2 "$CH"
	jqt -s 'map(.seq) == [4,5]' "$output"
}

@test "ns-log: state survives a restart" {
	make_spaces
	r=$(ref "$AK" "$CH" 1)
	run -0 bus < <(
		rq space.join "$B" 1 "$(join "$BK" "$CH")"
		rq log.append "$A" 2 "$r")
	h2=$(pubs | tail -n 1 | jq -c .msg.params | ns-sign --canonical | head -c -1 | h)
	run -0 bus < <(
		rq log.append "$A" 3 "$r"
		rq log.append "$B" 4 "$(ref "$BK" "$CH" 1)"
		rq space.join "$B" 5 "$(NS_NOW=1767225600009 join "$BK" "$CH")"
		rq space.create "$A" 6 "$(create "$AK" "$CH")")
	jqt '.result.seq == 3' "$(ans 3)"
	jqt '.result.seq == 4' "$(ans 4)"
	[ "$(reason 5)" = forbidden ]
	[ "$(reason 6)" = ok ]
	jqt --arg h "$h2" '.msg.params.prev == $h and .msg.params.seq == 4' "$(pubs)"
	run -0 ns-log -d "$DB" verify
}

@test "ns-log: verify finds a tampered envelope and exits 1" {
	make_spaces
	run -0 bus < <(for i in 1 2 3; do rq log.append "$A" $i "$(ref "$AK" "$CH" $i)"; done)
	run -0 ns-log -d "$DB" verify
	cp "$DB" "$DB.orig"
	sqlite3 "$DB" "UPDATE envelopes SET body = replace(body, '\"seq\":3', '\"seq\":3,\"x\":1') WHERE seq = 3 AND space = '$CH'"
	run -1 --separate-stderr ns-log -d "$DB" verify
	assert_match "$CH: seq 3: " "$stderr"
	# the other spaces still verify
	[ "$(printf '%s\n' "$output" | jq -s 'length')" -eq 2 ]
	# a member slipped into the table, not into the log
	cp "$DB.orig" "$DB"
	rm -f "$DB-wal" "$DB-shm"
	sqlite3 "$DB" "INSERT INTO members VALUES ('$CH', '$C', '$NODE_DID', '$ADDR')"
	run -1 --separate-stderr ns-log -d "$DB" verify "$CH"
	assert_match 'stored members differ' "$stderr"
	# an envelope taken out of the chain
	cp "$DB.orig" "$DB"
	sqlite3 "$DB" "DELETE FROM envelopes WHERE seq = 2 AND space = '$CH'"
	run -1 --separate-stderr ns-log -d "$DB" verify "$CH"
	assert_match "seq 2: " "$stderr"
}

@test "ns-log: malformed bus lines are reported and skipped" {
	make_spaces
	{
		echo '{"m":"space.info","c":7,"id":1,"p":{"space":'
		echo '{"m":"space.info","c":7,"id":2,"p":{"space":"a","space":"b"}}'
		echo 'garbage'
		printf '%s\n' '{"m":"space.history","c":7,"id":3,"p":"x\u0000"}'
		echo '{"m":"space.info","c":"seven","id":4,"p":[]}'
		echo '{"m":"subscribe","c":7,"id":5,"p":{"space":7}}'
		echo '{"m":"space.join","c":7,"id":6,"did":"x"}'
		rd space.info "$A" 9 "{\"space\":\"$CH\"}"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr bus <"$BATS_TEST_TMPDIR/in"
	assert_match 'line 2: malformed space.info request' "$stderr"
	[ "$(reason 3)" = invalid_params ]
	[ "$(reason 5)" = invalid_params ]
	[ "$(reason 6)" = invalid_params ]
	[ "$(reason 9)" = ok ]
	printf '%s\n' "$output" | grep -qx garbage
}

@test "ns-log: group commit: 1000 appends in one go, 1000 answers in order" {
	make_spaces
	jq -nc --arg s "$CH" --arg n "$NODE_DID" --arg a "$ADDR" --arg h "$(printf %s "$A" | h)" \
	    'range(1000) | {type:"beam.ref",space:$s,node:$n,address:$a,
	     beam:("beam/" + $h + "/" + ("B" * 42) + "A"),n:.}' |
	    ns-sign -k "$AK" --ts "$NS_NOW" |
	    jq -c --arg d "$A" '{m:"log.append",c:7,did:$d,role:"client",id:(.n + 1),p:{event:.}}' \
	    >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr bus --batch 300 <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 2000 ]
	printf '%s\n' "$output" | jq -sc '[.[] | select(.to) | [.msg.id, .msg.result.seq]]' >"$BATS_TEST_TMPDIR/got"
	jq -e 'length == 1000 and . == [range(1000) | [. + 1, . + 2]]' "$BATS_TEST_TMPDIR/got"
	run -0 ns-log -d "$DB" verify "$CH"
	jqt '.head == 1001' "$output"
	# a history page stops near 512 KiB; "next" pages on without a gap
	hist() {
		jq -nc --arg d "$A" --arg s "$CH" --argjson a "$1" \
		    '{m:"space.history",c:7,did:$d,role:"client",id:1,p:{space:$s,after:$a,limit:1000}}' |
		    bus
	}
	p1=$(hist 0)
	n1=$(jq '.msg.result.envelopes | length' <<<"$p1")
	next=$(jq '.msg.result.next' <<<"$p1")
	[ "$n1" -lt 1000 ] && [ "$next" -eq "$n1" ]
	[ "${#p1}" -lt $((600 * 1024)) ]
	p2=$(hist "$next")
	jq -e --argjson n "$n1" '.msg.result.envelopes[0].seq == $n + 1' <<<"$p2"
}

@test "ns-log: requests of a batch that cannot commit get internal errors" {
	make_spaces
	lockdir=$BATS_TEST_TMPDIR/lock
	mkfifo "$lockdir.fifo"
	# hold the write lock from another connection
	sqlite3 "$DB" <"$lockdir.fifo" >/dev/null 3>&- &
	holder=$!
	exec 4>"$lockdir.fifo"
	# wait out the probe below should it hold the lock at that moment
	echo ".timeout 5000" >&4
	echo "BEGIN IMMEDIATE;" >&4
	deadline=$((SECONDS + 10))
	until ! sqlite3 "$DB" "BEGIN IMMEDIATE; ROLLBACK;" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { kill "$holder"; false; }
	done
	run -0 --separate-stderr bus < <(
		echo '{"m":"tick","now":1}'
		rq log.append "$A" 1 "$(ref "$AK" "$CH" 1)"
		rd space.info "$A" 2 "{\"space\":\"$CH\"}")
	echo "ROLLBACK;" >&4
	exec 4>&-
	wait "$holder" || true
	holder=
	[ "${lines[0]}" = '{"m":"tick","now":1}' ]
	[ "$(reason 1)" = internal ]
	[ "$(reason 2)" = internal ]
	[ -z "$(pubs)" ]
	assert_match 'locked' "$stderr"
	# and the node carries on once the lock is gone
	run -0 bus <<<"$(rq log.append "$A" 3 "$(ref "$AK" "$CH" 1)")"
	jqt '.result.seq == 2' "$(ans 3)"
}

@test "ns-log: members lists the nodes of the members" {
	make_spaces
	other=$(sign "$CK" "$(jq -nc --arg s "$CH" --arg n "$B" '{type:"space.join",space:$s,node:$n,address:"10.0.0.2:7700"}')")
	run -0 bus < <(
		rq space.join "$C" 1 "$other"
		rq log.append "$C" 2 "$other"
		rq space.join "$B" 3 "$(join "$BK" "$CH")"
		rd space.members "$A" 4 "{\"space\":\"$CH\"}")
	[ "$(reason 1)" = bad_event ]   # a join sent here must name this node
	[ "$(reason 2)" = ok ]          # as handed over by another node
	[ "$(reason 3)" = ok ]
	jqt --arg ch "$CH" --arg a "$A" --arg b "$B" --arg c "$C" --arg n "$NODE_DID" --arg addr "$ADDR" \
	    '.result == {space:$ch, owner:$a, members:[$a,$c,$b], invited:[],
	     rules:{join:"open",post:"members",read:"public"},
	     nodes:[{node:$n,address:$addr},{node:$b,address:"10.0.0.2:7700"}]}' "$(ans 4)"
}

@test "ns-log: an event whose sig member is spelled escaped is checked here" {
	make_spaces
	good=$(rules "$AK" "$CH" '{"read":"members"}')
	forged=$(jq -c '.rules.read = "public" | .SIGX = .sig | del(.sig)' <<<"$good")
	run -0 bus < <(
		rq space.rules "$A" 1 "$forged" | sed 's/"SIGX"/"\\u0073ig"/'
		rq space.rules "$B" 2 "$good" | sed 's/"sig"/"\\u0073ig"/'
		rq space.rules "$A" 3 "$good" | sed 's/"sig"/"\\u0073ig"/')
	[ "$(reason 1)" = bad_sig ]
	[ "$(reason 2)" = forbidden ]
	[ "$(reason 3)" = ok ]
}

@test "ns-log: answers leave at once, without waiting for more input" {
	make_spaces
	mkfifo "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
	ns-log --bus -k "$NODEK" -d "$DB" -a "$ADDR" <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" 3>&- &
	pid=$!
	exec 5>"$BATS_TEST_TMPDIR/in" 6<"$BATS_TEST_TMPDIR/out"
	# first of all, without input: the subscriptions ns-serve holds
	read -r -t 10 line <&6
	[ "$line" = '{"resync":"subs"}' ]
	rq log.append "$A" 1 "$(ref "$AK" "$CH" 1)" >&5
	read -r -t 10 line <&6
	jqt '.msg.id == 1 and .msg.result.seq == 2' "$line"
	read -r -t 10 line <&6
	jqt '.pub' "$line"
	echo '{"m":"tick","now":1}' >&5
	read -r -t 10 line <&6
	[ "$line" = '{"m":"tick","now":1}' ]
	exec 5>&-
	wait "$pid"
	pid=
	exec 6<&-
}

# Real beams, for space.beam: mkbeam KEY JSON; bpath_of BEAM; refto KEY
# SPACE PATH [NODE]; sbeam DID ID REF BEAM (a space.beam request, r = id).
mkbeam() {
	ns-sign -k "$1" --ts "$NS_NOW" <<<"$2"
}
bpath_of() {
	printf 'beam/%s/%s' "$(jq -j .author <<<"$1" | h)" "$(printf %s "$1" | h)"
}
refto() {
	sign "$1" "$(jq -nc --arg s "$2" --arg b "$3" --arg n "${4:-$NODE_DID}" --arg a "$ADDR" \
	    '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a}')"
}
sbeam() {
	jq -nc --arg d "$1" --argjson id "$2" --argjson e "$3" --argjson b "$4" \
	    '{m:"space.beam",c:7,r:$id,did:$d,role:"client",id:$id,p:{event:$e,beam:$b}}'
}
# rdc CONN METHOD DID ID PARAMS [ROLE]: a request from connection CONN
rdc() {
	jq -nc --argjson c "$1" --arg m "$2" --arg d "$3" --argjson id "$4" --argjson p "$5" \
	    --arg r "${6:-client}" '{m:$m,c:$c,r:$id,did:$d,role:$r,id:$id,p:$p}'
}
# line N FILTER: line N of $output satisfies FILTER
line() {
	jqt "$2" "${lines[$1]}"
}

@test "ns-log: space.beam sequences the ref, then hands the beam to ns-beam with the answer" {
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"hi"}')
	P=$(bpath_of "$beam")
	run -0 bus <<<"$(sbeam "$A" 1 "$(refto "$AK" "$CH" "$P")" "$beam")"
	[ "${#lines[@]}" -eq 2 ]
	[[ "${lines[0]}" == '{"m":"beam.store",'* ]]
	line 0 ".c == 7 and .r == 1 and .id == 1 and .did == \"$A\" and .role == \"client\""
	line 0 ".p.result.space == \"$CH\" and .p.result.seq == 2 and .p.result.beam == \"$P\" and (.p.result.eventId | length) == 43"
	[ "$(jq -c .p.beam <<<"${lines[0]}")" = "$beam" ]
	line 1 ".pub == \"$CH\" and .msg.params.seq == 2 and .msg.params.event.beam == \"$P\""
	# the same request again: stored again (in case ns-beam lost it), sequenced once
	run -0 bus <<<"$(sbeam "$A" 2 "$(refto "$AK" "$CH" "$P")" "$beam")"
	[ "${#lines[@]}" -eq 1 ]
	line 0 '.m == "beam.store" and .p.result.seq == 2'
}

@test "ns-log: a space.beam in canonical form and the same out of order hand on the same bytes" {
	# canonical text is hashed and handed on as it stands, anything else
	# is put in canonical form first: the two must not differ
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"hi \u00e9 \\u0001"}')
	P=$(bpath_of "$beam")
	ref=$(refto "$AK" "$CH" "$P")
	rev='to_entries | reverse | from_entries'
	run -0 bus < <(
		sbeam "$A" 1 "$ref" "$beam"
		sbeam "$A" 2 "$ref" "$beam" | jq -c ".p.beam |= ($rev) | .p.event |= ($rev)")
	[ "${#lines[@]}" -eq 3 ]
	[[ "${lines[0]}" == '{"m":"beam.store",'* ]]
	[[ "${lines[2]}" == '{"m":"beam.store",'* ]]
	[ "${lines[0]#*\"p\":}" = "${lines[2]#*\"p\":}" ]
	[ "$(jq -c .p.beam <<<"${lines[2]}")" = "$beam" ]
	line 2 ".r == 2 and .p.result.seq == 2 and .p.result.beam == \"$P\""
}

@test "ns-log: a refused space.beam leaves nothing stored and nothing for ns-beam" {
	make_spaces
	bb=$(mkbeam "$BK" '{"type":"beam","title":"spam"}')
	BP=$(bpath_of "$bb")
	other="channel/${B#did:key:}/nowhere"
	run -0 bus < <(
		sbeam "$B" 1 "$(refto "$BK" "$CH" "$BP")" "$bb"
		sbeam "$B" 2 "$(refto "$BK" "$DM" "$BP")" "$bb"
		rq space.join "$B" 3 "$(join "$BK" "$ST")"
		sbeam "$B" 4 "$(refto "$BK" "$ST" "$BP")" "$bb"
		sbeam "$B" 5 "$(refto "$BK" "$other" "$BP")" "$bb")
	[ "$(reason 1)" = forbidden ]
	[ "$(reason 2)" = forbidden ]
	[ "$(reason 4)" = forbidden ]
	[ "$(reason 5)" = not_found ]
	! printf '%s\n' "$output" | grep -q beam.store
	[ "$(pubs | wc -l)" -eq 1 ]	# the join only
}

@test "ns-log: space.beam checks the beam against its ref" {
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"hi"}')
	P=$(bpath_of "$beam")
	other=$(mkbeam "$AK" '{"type":"beam","title":"other"}')
	bobs=$(mkbeam "$BK" '{"type":"beam","title":"hi"}')
	big=$BATS_TEST_TMPDIR/big
	head -c 270000 /dev/zero | tr '\0' a >"$big"
	jq -nc --rawfile b "$big" '{type:"beam",body:$b}' | ns-sign -k "$AK" --ts "$NS_NOW" >"$big.beam"
	jq -nc --arg d "$A" --argjson e "$(refto "$AK" "$CH" "$(bpath_of "$(cat "$big.beam")")")" \
	    --slurpfile b "$big.beam" '{m:"space.beam",c:7,r:6,did:$d,role:"client",id:6,p:{event:$e,beam:$b[0]}}' >"$big.req"
	run -0 bus < <(
		sbeam "$A" 1 "$(refto "$AK" "$CH" "$P")" "$other"
		sbeam "$A" 2 "$(refto "$AK" "$CH" "$P")" "${beam/hi/ho}"
		sbeam "$A" 3 "$(refto "$AK" "$CH" "$(bpath_of "$bobs")")" "$bobs"
		sbeam "$A" 4 "$(refto "$AK" "$CH" "$P" "$B")" "$beam"
		sbeam "$A" 5 "$(join "$AK" "$CH")" "$beam"
		cat "$big.req"
		jq -nc --arg d "$A" --argjson e "$(refto "$AK" "$CH" "$P")" '{m:"space.beam",c:7,id:7,did:$d,role:"client",p:{event:$e,beam:"text"}}'
		sbeam "$A" 8 "$(refto "$AK" "$CH" "$P")" "$(jq -c '.ts = "soon"' <<<"$beam")")
	[ "$(reason 1)" = bad_event ]	# does not hash to the path
	jqt '.error.message | test("hash")' "$(ans 1)"
	[ "$(reason 2)" = bad_event ]	# a changed byte
	[ "$(reason 3)" = bad_event ]	# another author's beam
	[ "$(reason 4)" = bad_event ]	# stored on another node
	[ "$(reason 5)" = bad_event ]	# not a ref
	[ "$(reason 6)" = too_large ]
	[ "$(reason 7)" = invalid_params ]
	[ "$(reason 8)" = bad_event ]
	[ -z "$(pubs)" ]
	! printf '%s\n' "$output" | grep -q beam.store
}

@test "ns-log: a space.beam as ns-serve writes it gets the answers of the full parse" {
	# a canonical space.beam is decided from its text; the same requests
	# with their params out of order are parsed: both runs must write the
	# same bytes, whatever the verdict
	make_spaces
	cp "$DB" "$DB.0"
	beam=$(mkbeam "$AK" '{"type":"beam","title":"hi"}')
	P=$(bpath_of "$beam")
	other=$(mkbeam "$AK" '{"type":"beam","title":"other"}')
	bobs=$(mkbeam "$BK" '{"type":"beam","title":"bob"}')
	BP=$(bpath_of "$bobs")
	note=$(mkbeam "$AK" '{"type":"note","title":"not a beam"}')
	dmb=$(mkbeam "$AK" '{"type":"beam","title":"for the dm"}')
	soon=$(ns-sign -k "$AK" --ts $((NS_NOW + 600000)) <<<"$(jq -nc \
	    --arg s "$CH" --arg b "$P" --arg n "$NODE_DID" --arg a "$ADDR" \
	    '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a}')")
	gone=$(mkbeam "$AK" '{"type":"beam","title":"to be deleted"}')
	GP=$(bpath_of "$gone")
	# cb DID ID EVENT BEAM [IDTEXT]: the line as ns-serve writes it;
	# IDTEXT stands in for ,"id":ID (empty: a notification)
	cb() {
		printf '{"m":"space.beam","c":7,"r":%s,"did":"%s","role":"client"%s,"p":%s}\n' \
		    "$2" "$1" "${5-,\"id\":$2}" "$(jq -nc --argjson e "$3" \
		    --argjson b "$4" '{beam:$b,event:$e}' | ns-sign --canonical)"
	}
	{
		cb "$A" 1 "$(refto "$AK" "$CH" "$P")" "$beam"
		cb "$A" 2 "$(refto "$AK" "$CH" "$P")" "$beam"	# again
		cb "$B" 3 "$(refto "$BK" "$CH" "$BP")" "$bobs"	# not a member
		cb "$A" 4 "$(refto "$AK" "$CH" "$P")" "$other"	# wrong hash
		cb "$A" 5 "$(refto "$AK" "$CH" "$BP")" "$bobs"	# bob's beam
		cb "$A" 19 "$(refto "$AK" "$CH" "${P%/*}/${BP##*/}")" "$bobs"	# under alice's path
		cb "$A" 6 "$(refto "$AK" "$CH" "$P" "$B")" "$beam"	# another node
		cb "$A" 7 "$soon" "$beam"				# from the future
		cb "$A" 8 "$(refto "$AK" "channel/${A#did:key:}/none" "$P")" "$beam"
		cb "$A" 9 "$(refto "$AK" "$CH" "$(bpath_of "$note")")" "$note"
		cb "$A" 10 "$(refto "$AK" "$DM" "$(bpath_of "$dmb")")" "$dmb"
		cb "$A" 11 "$(refto "$AK" "$CH" "$GP")" "$gone"
		jq -nc --arg d "$A" --argjson t "$(tomb "$AK" "$GP")" \
		    '{m:"beam.delete",c:7,r:12,did:$d,role:"client",id:12,p:{event:$t}}'
		cb "$A" 13 "$(refto "$AK" "$CH" "$GP")" "$gone"	# deleted
		cb "$A" 14 "$(refto "$AK" "$ST" "$P")" "$beam"	# the owner's stream
		cb "$A" 15 "$(refto "$AK" "$CH" "$(bpath_of "$dmb")")" "$dmb" ',"id":"fifteen"'
		cb "$A" 16 "$(refto "$AK" "$CH" "$(bpath_of "$other")")" "$other" ''
		cb "$A" 17 "$(refto "$AK" "$ST" "$(bpath_of "$other")")" "$other" ',"id":null'
		cb "$A" 18 "$(refto "$AK" "$CH" "$P")" "$beam" ',"id":18,"x":1'
	} >"$BATS_TEST_TMPDIR/text.in"
	# the same requests, their params event first: not canonical
	jq -c 'if .m == "space.beam" then .p |= {event, beam} else . end' \
	    "$BATS_TEST_TMPDIR/text.in" >"$BATS_TEST_TMPDIR/parsed.in"
	! grep -q '"p":{"event"' "$BATS_TEST_TMPDIR/text.in"
	[ "$(grep -c '"p":{"event"' "$BATS_TEST_TMPDIR/parsed.in")" -eq 19 ]
	run -0 bus <"$BATS_TEST_TMPDIR/text.in"
	text=$output
	# answered by ns-beam once stored: seq in its space (a repeat keeps
	# its first), none for a beam held for another node
	[ "$(jq -r 'select(.m == "beam.store") | "\(.r):\(.p.result.seq)"' \
	    <<<"$text" | paste -sd' ')" = "1:2 2:2 null:null 10:2 11:3 14:2 15:5 16:6 17:3 18:2" ]
	[ "$(reason 3)$(reason 4)$(reason 5)$(reason 6)$(reason 7)$(reason 19)" = \
	    forbidden$(printf 'bad_event%.0s' 1 2 3 4 5) ]
	[ "$(reason 8)$(reason 9)$(reason 13)" = not_foundbad_eventgone ]
	cp "$DB.0" "$DB"
	run -0 bus <"$BATS_TEST_TMPDIR/parsed.in"
	[ "$output" = "$text" ]
}

@test "ns-log: a beam is read by its author and by readers of a space that refers to it" {
	make_spaces
	d=$(mkbeam "$AK" '{"type":"beam","body":"for members"}')
	DP=$(bpath_of "$d")
	c=$(mkbeam "$AK" '{"type":"beam","body":"for all"}')
	CP=$(bpath_of "$c")
	lone=$(bpath_of "$(mkbeam "$AK" '{"type":"beam","body":"never referred to"}')")
	get() {	# ID DID PATH [ROLE]
		rdc 7 beam.get "$2" "$1" "{\"beam\":\"$3\"}" "${4:-client}"
	}
	run -0 bus < <(
		sbeam "$A" 1 "$(refto "$AK" "$DM" "$DP")" "$d"
		sbeam "$A" 2 "$(refto "$AK" "$CH" "$CP")" "$c"
		get 3 "$B" "$DP"
		get 4 "$A" "$DP"
		get 5 "$NODE_DID" "$DP" node
		get 6 "$B" "$DP" node
		get 7 "$C" "$CP"
		get 8 "$A" "$lone"
		get 9 "$B" "$lone"
		get 10 "$B" "beam/x/y"
		rq space.invite "$A" 11 "$(invite "$AK" "$DM" "$B")"
		rq space.join "$B" 12 "$(join "$BK" "$DM")"
		get 13 "$B" "$DP")
	read_of() {
		printf '%s\n' "$output" | jq -c --argjson id "$1" 'select(.m == "beam.read" and .id == $id)'
	}
	[ "$(reason 3)" = not_found ]	# a stranger: no such beam
	read_of 4 | grep -q .		# the author
	read_of 5 | grep -q .		# the node a member lives on
	[ "$(reason 6)" = not_found ]	# another node
	read_of 7 | grep -q .		# anyone, through a public channel
	read_of 8 | grep -q .		# the author, even with no ref
	[ "$(reason 9)" = not_found ]
	[ "$(reason 10)" = invalid_params ]
	read_of 13 | grep -q .		# a member now
	jqt ".p == {beam:\"$DP\"} and .r == 13 and .c == 7" "$(read_of 13)"
}

@test "ns-log: beam.delete puts the tombstone into every space that refers to the beam, then buries it" {
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"hi"}')
	P=$(bpath_of "$beam")
	T=$(tomb "$AK" "$P")
	T2=$(sign "$AK" "$(jq -nc --arg b "$P" '{type:"beam.tombstone",beam:$b,ts:1767225600009}')")
	del() {	# DID ID TOMB
		jq -nc --arg d "$1" --argjson id "$2" --argjson t "$3" '{m:"beam.delete",c:7,r:$id,did:$d,role:"client",id:$id,p:{event:$t}}'
	}
	run -0 bus < <(
		sbeam "$A" 1 "$(refto "$AK" "$CH" "$P")" "$beam"
		sbeam "$A" 2 "$(refto "$AK" "$DM" "$P")" "$beam"
		del "$B" 3 "$(tomb "$BK" "$P")"
		del "$A" 4 "$T")
	[ "$(reason 3)" = forbidden ]
	bury=$(printf '%s\n' "$output" | jq -c 'select(.m == "beam.bury")')
	jqt ".id == 4 and .r == 4 and .p.spaces == [\"$CH\",\"$DM\"]" "$bury"
	[ "$(jq -c .p.event <<<"$bury")" = "$T" ]
	# the tombstones go out after the burial is asked for
	[ "$(pubs | jq -c 'select(.msg.params.event.type == "beam.tombstone") | .pub' | tr '\n' ' ')" = "\"$CH\" \"$DM\" " ]
	[[ "$(printf '%s\n' "$output" | tail -n 3 | head -n 1)" == '{"m":"beam.bury",'* ]]
	# again, or with another tombstone: the first one, and nothing new
	run -0 bus < <(del "$A" 5 "$T"; del "$A" 6 "$T2")
	[ -z "$(pubs)" ]
	for id in 5 6; do
		bury=$(printf '%s\n' "$output" | jq -c --argjson id $id 'select(.m == "beam.bury" and .id == $id)')
		jqt ".p.spaces == [\"$CH\",\"$DM\"]" "$bury"
		[ "$(jq -c .p.event <<<"$bury")" = "$T" ]
	done
	# a deleted beam does not come back
	run -0 bus <<<"$(sbeam "$A" 7 "$(refto "$AK" "$CH" "$P")" "$beam")"
	[ "$(reason 7)" = gone ]
	[ "$(ans 7 | jq -c .error.data.tombstone)" = "$T" ]
}

@test "ns-log: a beam referred to twice in a space has one ref there" {
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"twice"}')
	P=$(bpath_of "$beam")
	again=$(sign "$AK" "$(jq -nc --arg s "$CH" --arg b "$P" --arg n "$NODE_DID" \
	    --arg a "$ADDR" '{type:"beam.ref",space:$s,beam:$b,node:$n,address:$a,ts:1767225600009}')")
	run -0 bus < <(
		sbeam "$A" 1 "$(refto "$AK" "$CH" "$P")" "$beam"
		sbeam "$A" 2 "$again" "$beam"
		sbeam "$A" 3 "$(refto "$AK" "$DM" "$P")" "$beam")
	[ "$(printf '%s\n' "$output" | jq -r 'select(.m == "beam.store") | .p.result.seq' | tr '\n' ' ')" = "2 3 2 " ]
	[ "$(sqlite3 "$DB" "SELECT space FROM refs WHERE beam = '$P' ORDER BY space" | tr '\n' ' ')" = "$CH $DM " ]
	run -0 bus < <(jq -nc --arg d "$A" --argjson t "$(tomb "$AK" "$P")" \
		'{m:"beam.delete",c:7,r:4,did:$d,role:"client",id:4,p:{event:$t}}')
	line 0 ".m == \"beam.bury\" and .p.spaces == [\"$CH\",\"$DM\"]"
}

@test "ns-log: a subscription ends the moment its reader loses read access" {
	make_spaces
	ev() {	# an event request on connection 7, r = id
		rq "$1" "$2" "$3" "$4" | jq -c --argjson id "$3" '.r = $id'
	}
	run -0 bus < <(
		ev space.invite "$A" 1 "$(invite "$AK" "$DM" "$B")"
		ev space.join "$B" 2 "$(join "$BK" "$DM")"
		rdc 8 subscribe "$B" 3 "{\"space\":\"$DM\"}"
		rdc 9 subscribe "$A" 4 "{\"space\":\"$DM\"}"
		rdc 10 subscribe "$C" 5 "{\"space\":\"$CH\"}"
		rdc 11 subscribe "$B" 6 "{\"space\":\"$CH\"}"
		ev space.join "$B" 7 "$(join "$BK" "$CH")"
		TYPE=space.remove ev space.remove "$A" 8 "$(TYPE=space.remove invite "$AK" "$DM" "$B")"
		ev log.append "$A" 9 "$(ref "$AK" "$DM" 1)"
		ev space.rules "$A" 10 "$(rules "$AK" "$CH" '{"read":"members"}')"
		ev log.append "$A" 11 "$(ref "$AK" "$CH" 1)")
	[ "$(reason 8)" = ok ]
	[ "$(reason 10)" = ok ]
	# bob is cut off right after his removal, before the next envelope
	i=$(printf '%s\n' "${lines[@]}" | grep -n '"space.remove"' | grep pub | cut -d: -f1)
	line "$i" ". == {unsub:8,space:\"$DM\"}"
	line $((i + 1)) ".to == 8 and .msg == {jsonrpc:\"2.0\",method:\"unsubscribed\",params:{space:\"$DM\",reason:\"forbidden\",message:.msg.params.message}}"
	# carol is cut off the channel by the rules; bob, a member, is not
	printf '%s\n' "$output" | jq -e -s "map(select(.unsub)) == [{unsub:8,space:\"$DM\"},{unsub:10,space:\"$CH\"}]" >/dev/null
	i=$(printf '%s\n' "${lines[@]}" | grep -n '"space.rules"' | grep pub | cut -d: -f1)
	line "$i" ". == {unsub:10,space:\"$CH\"}"
	[ "$(printf '%s\n' "$output" | jq -c 'select(.msg.method == "unsubscribed") | .to' | tr '\n' ' ')" = "8 10 " ]
}

@test "ns-log: a closed connection's subscriptions are forgotten; restored ones are checked" {
	make_spaces
	run -0 bus < <(
		rq space.invite "$A" 1 "$(invite "$AK" "$DM" "$B")"
		rq space.join "$B" 2 "$(join "$BK" "$DM")"
		rdc 8 subscribe "$B" 3 "{\"space\":\"$DM\"}"
		echo '{"m":"conn.close","c":8,"did":"x","role":"client"}'
		TYPE=space.remove rq space.remove "$A" 4 "$(TYPE=space.remove invite "$AK" "$DM" "$B")")
	[ "$(reason 4)" = ok ]
	! printf '%s\n' "$output" | grep -q unsub
	# a new ns-log learns the subscriptions from ns-serve and ends those
	# that may no longer be read
	run -0 bus < <(
		jq -nc --arg b "$B" --arg dm "$DM" '{m:"sub.restore",c:20,did:$b,role:"client",p:{space:$dm}}'
		jq -nc --arg a "$A" --arg dm "$DM" '{m:"sub.restore",c:21,did:$a,role:"client",p:{space:$dm}}'
		rq space.rules "$A" 5 "$(rules "$AK" "$DM" '{"read":"members"}')")
	[ "${lines[0]}" = "{\"unsub\":20,\"space\":\"$DM\"}" ]
	line 1 '.to == 20 and .msg.method == "unsubscribed"'
	[ "$(printf '%s\n' "$output" | grep -c '"unsub":')" -eq 1 ]
}

@test "ns-log: unsubscribe takes only a space id; answers carry ns-serve's number" {
	run -0 bus < <(
		rdc 7 unsubscribe "$A" 1 '{"space":""}'
		rdc 7 unsubscribe "$A" 2 '{"space":"channel/../x"}'
		rdc 7 unsubscribe "$A" 3 "{\"space\":\"$CH\"}")
	[ "$(reason 1)" = invalid_params ]
	[ "$(reason 2)" = invalid_params ]
	[ "$(reason 3)" = ok ]
	line 0 '.to == 7 and .r == 1'
	line 2 ". == {unsub:7,space:\"$CH\"}"
	line 3 '.to == 7 and .r == 3 and .msg.id == 3'
}

@test "ns-log: deleting a beam no space refers to marks nothing deleted" {
	make_spaces
	beam=$(mkbeam "$AK" '{"type":"beam","title":"never beamed"}')
	P=$(bpath_of "$beam")
	run -0 bus < <(jq -nc --arg d "$A" --argjson t "$(tomb "$AK" "$P")" \
		'{m:"beam.delete",c:7,r:1,did:$d,role:"client",id:1,p:{event:$t}}')
	line 0 '.m == "beam.bury" and .p.spaces == []'
	# ns-beam answers not_found for it; the beam may still be beamed
	run -0 bus <<<"$(sbeam "$A" 2 "$(refto "$AK" "$CH" "$P")" "$beam")"
	line 0 '.m == "beam.store" and .p.result.seq == 2'
}

@test "ns-log: a schema version 4 database is upgraded; its events are kept, verify, and are found again" {
	# log-v4.db holds what log-v4.bus did to an empty database of
	# schema version 4: a channel made by alice on the fixture node, and
	# three beams
	cp "$BATS_TEST_DIRNAME/fixtures/log-v4.db" "$BATS_TEST_TMPDIR/v4.db"
	cp "$BATS_TEST_DIRNAME/fixtures/keys/node.key" "$BATS_TEST_TMPDIR/node.key"
	chmod 600 "$BATS_TEST_TMPDIR/node.key"
	run -0 ns-log -d "$BATS_TEST_TMPDIR/v4.db" verify
	assert_jq '.ok == true and .head == 4'
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/v4.db" 'PRAGMA user_version')" -ge 5 ]
	# the same requests again: each answered with its first seq, nothing new
	run -0 --separate-stderr ns-log --bus -k "$BATS_TEST_TMPDIR/node.key" \
		-d "$BATS_TEST_TMPDIR/v4.db" -a 127.0.0.1:7700 <"$BATS_TEST_DIRNAME/fixtures/log-v4.bus"
	printf '%s\n' "$output" | jq -e -s '[.[] | select(.msg.result.seq == 1)] | length == 1' >/dev/null
	[ "$(printf '%s\n' "$output" | jq -r 'select(.m == "beam.store") | .p.result.seq' | tr '\n' ' ')" = "2 3 4 " ]
	run -0 ns-log -d "$BATS_TEST_TMPDIR/v4.db" history "$(jq -r .p.event.space <"$BATS_TEST_DIRNAME/fixtures/log-v4.bus" | head -n 1)"
	[ "${#lines[@]}" -eq 4 ]
	# a beam's read rule still finds the space that refers to it, now by
	# the end of its path (schema version 6)
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/v4.db" 'SELECT count(*) FROM refs')" -eq 3 ]
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/v4.db" 'PRAGMA user_version')" -ge 6 ]
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/v4.db" "SELECT group_concat(name) FROM sqlite_master WHERE tbl_name = 'refs' AND type = 'index'")" = refs_tail ]
	P=$(sqlite3 "$BATS_TEST_TMPDIR/v4.db" 'SELECT beam FROM refs LIMIT 1')
	run -0 --separate-stderr ns-log --bus -k "$BATS_TEST_TMPDIR/node.key" \
		-d "$BATS_TEST_TMPDIR/v4.db" -a 127.0.0.1:7700 < <(
		rdc 7 beam.get "$(jq -r .did "$BATS_TEST_DIRNAME/fixtures/keys/bob.key")" 1 "{\"beam\":\"$P\"}")
	line 1 ".m == \"beam.read\" and .p.beam == \"$P\""
}
