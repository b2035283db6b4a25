#!/usr/bin/env bats
# ns-beam: the beam store, as a ring stage (--bus) and as a command

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	BOB=$(fixture_key bob)
	NODE=$(fixture_key node)
	ALICE_DID=$(jq -r .did "$ALICE")
	BOB_DID=$(jq -r .did "$BOB")
	NODE_DID=$(jq -r .did "$NODE")
	ADDR=127.0.0.1:7700
	DB=$BATS_TEST_TMPDIR/beams.db
	BEAM=$(mkbeam "$ALICE" '{"type":"beam","title":"hello","body":"world"}')
	P=$(beam_path "$BEAM")
	REF=$(mkref "$ALICE" "$P" channel/x/one)
}

# base64url(SHA-256(stdin)), unpadded
b64h() {
	openssl dgst -sha256 -binary | basenc --base64url | tr -d '='
}

# The path of a signed beam (one canonical line, as ns-sign writes it).
beam_path() {
	local author
	author=$(jq -r .author <<<"$1")
	printf 'beam/%s/%s\n' "$(printf %s "$author" | b64h)" "$(printf %s "$1" | b64h)"
}

mkbeam() {
	ns-sign -k "$1" --ts 1700000000000 <<<"$2"
}

# mkref KEY PATH SPACE [NODE_DID [ADDRESS]]
mkref() {
	jq -nc --arg p "$2" --arg s "$3" --arg n "${4:-$NODE_DID}" --arg a "${5:-$ADDR}" \
		'{type:"beam.ref",space:$s,beam:$p,node:$n,address:$a}' |
		ns-sign -k "$1" --ts 1700000000001
}

mktomb() {
	jq -nc --arg p "$2" '{type:"beam.tombstone",beam:$p}' | ns-sign -k "$1" --ts "${3:-1700000000002}"
}

# req METHOD ID PARAMS: a bus request from alice's client on connection 5
req() {
	jq -nc --arg m "$1" --argjson id "$2" --argjson p "$3" --arg d "$ALICE_DID" \
		'{m:$m,c:5,did:$d,role:"client",id:$id,p:$p}'
}

space_beam() {	# space_beam ID REF BEAM
	req space.beam "$1" "$(jq -nc --argjson r "$2" --argjson b "$3" '{event:$r,beam:$b}')"
}

beam_get() {
	req beam.get "$1" "$(jq -nc --arg p "$2" '{beam:$p}')"
}

beam_delete() {
	req beam.delete "$1" "$(jq -nc --argjson t "$2" '{event:$t}')"
}

stage() {
	ns-beam --bus -d "$DB" -n "$NODE_DID" -a "$ADDR" "$@"
}

# error_is ID REASON: the one output line answers request ID with REASON
error_is() {
	[ "${#lines[@]}" -eq 1 ]
	assert_jq ".to == 5 and .msg.id == $1 and .msg.error.data.reason == \"$2\""
}

@test "ns-beam: --help, --version and usage errors" {
	run -0 ns-beam --help
	assert_match '^usage: ns-beam --bus'
	run -0 ns-beam --version
	[ "$output" = "ns-beam 0.1.0" ]
	run -2 ns-beam list
	run -2 ns-beam --bus -d "$DB" -a "$ADDR"
	run -2 ns-beam --bus -d "$DB" -n "$NODE_DID"
	run -2 --separate-stderr ns-beam --bus -d "$DB" -n did:key:nope -a "$ADDR"
	assert_match 'ns-beam: -n: ' "$stderr"
	run -2 ns-beam --bus -d "$DB" -n "$NODE_DID" -a "$ADDR" list
	run -2 ns-beam -d "$DB" frobnicate
	run -2 ns-beam -d "$DB" get
	run -2 ns-beam -d "$DB" list extra
	run -2 ns-beam -d "$DB" --sync sometimes list
	run -2 ns-beam -d "$DB" --batch 0 put
	run -2 ns-beam -d "$DB" -n "$NODE_DID" put
	run -2 ns-beam --bogus
}

@test "ns-beam: an unopenable database exits 2" {
	run -2 --separate-stderr ns-beam --bus -d /nonexistent/dir/x.db -n "$NODE_DID" -a "$ADDR" </dev/null
	assert_match '^ns-beam: ' "$stderr"
	run -2 --separate-stderr ns-beam -d "$BATS_TEST_TMPDIR/none.db" list
}

@test "ns-beam: space.beam stores the beam and becomes a log.append for the same request" {
	run -0 --separate-stderr stage <<<"$(space_beam 7 "$REF" "$BEAM")"
	[ "${#lines[@]}" -eq 1 ]
	[ -z "$stderr" ]
	assert_jq '.m == "log.append"'
	assert_jq ".c == 5 and .did == \"$ALICE_DID\" and .role == \"client\" and .id == 7"
	assert_jq "(.p | keys) == [\"event\"]"
	[ "$(jq -c .p.event <<<"$output")" = "$(jq -c . <<<"$REF")" ]
	# the routing member comes first, for the next stage's prefix check
	[[ "$output" == '{"m":"log.append",'* ]]
	run -0 ns-beam -d "$DB" list
	assert_jq ".beam == \"$P\" and .author == \"$ALICE_DID\" and .ts == 1700000000000 and .size == ${#BEAM}"
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
}

@test "ns-beam: the same beam twice, and in a second space, is fine" {
	ref2=$(mkref "$ALICE" "$P" channel/x/two)
	{ space_beam 1 "$REF" "$BEAM"; space_beam 2 "$REF" "$BEAM"; space_beam 3 "$ref2" "$BEAM"; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 3 ]
	for i in 0 1 2; do
		assert_jq ".m == \"log.append\" and .id == $((i + 1))" "${lines[i]}"
	done
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 1 ]
}

@test "ns-beam: a pretty-printed beam in the request is stored by its canonical bytes" {
	pretty=$(jq -n --argjson r "$REF" --argjson b "$BEAM" --arg d "$ALICE_DID" \
		'{m:"space.beam",c:5,did:$d,role:"client",id:1,p:{beam:$b,event:$r}}' | jq -c '.p.beam |= (to_entries | reverse | from_entries)')
	run -0 stage <<<"$pretty"
	assert_jq '.m == "log.append"'
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
}

@test "ns-beam: a beam that does not hash to the ref's path is bad_event" {
	other=$(mkbeam "$ALICE" '{"type":"beam","title":"other"}')
	run -0 stage <<<"$(space_beam 7 "$REF" "$other")"
	error_is 7 bad_event
	assert_jq '.msg.error.code == -32009 and (.msg.error.message | test("hash"))'
	# a changed byte in the beam, its signature untouched
	run -0 stage <<<"$(space_beam 8 "$REF" "${BEAM/world/worle}")"
	error_is 8 bad_event
	run -0 ns-beam -d "$DB" list
	[ -z "$output" ]
}

@test "ns-beam: a beam by another author than the ref's is bad_event" {
	bobs=$(mkbeam "$BOB" '{"type":"beam","title":"hello","body":"world"}')
	ref=$(mkref "$ALICE" "$(beam_path "$bobs")" channel/x/one)
	run -0 stage <<<"$(space_beam 7 "$ref" "$bobs")"
	error_is 7 bad_event
	assert_jq '.msg.error.message | test("author")'
	# and a ref whose path names alice but a beam of bob's with her hash
	ah=$(printf %s "$ALICE_DID" | b64h)
	ref=$(mkref "$ALICE" "beam/$ah/$(printf %s "$bobs" | b64h)" channel/x/one)
	run -0 stage <<<"$(space_beam 8 "$ref" "$bobs")"
	error_is 8 bad_event
}

@test "ns-beam: a ref naming another node or address is bad_event" {
	ref=$(mkref "$ALICE" "$P" channel/x/one "$BOB_DID")
	run -0 stage <<<"$(space_beam 7 "$ref" "$BEAM")"
	error_is 7 bad_event
	ref=$(mkref "$ALICE" "$P" channel/x/one "$NODE_DID" 127.0.0.1:7701)
	run -0 stage <<<"$(space_beam 8 "$ref" "$BEAM")"
	error_is 8 bad_event
	run -0 ns-beam -d "$DB" list
	[ -z "$output" ]
}

@test "ns-beam: malformed refs and beams are bad_event, missing params invalid_params" {
	notref=$(jq -c '.type = "space.join"' <<<"$REF")
	nopath=$(jq -c '.beam = "beam/short/x"' <<<"$REF")
	nospace=$(jq -c 'del(.space)' <<<"$REF")
	notbeam=$(jq -c '.type = "note"' <<<"$BEAM")
	nots=$(jq -c '.ts = "soon"' <<<"$BEAM")
	{
		space_beam 1 "$notref" "$BEAM"
		space_beam 2 "$nopath" "$BEAM"
		space_beam 3 "$nospace" "$BEAM"
		space_beam 4 "$REF" "$notbeam"
		space_beam 5 "$REF" "$nots"
		req space.beam 6 "$(jq -nc --argjson r "$REF" '{event:$r}')"
		req space.beam 7 "$(jq -nc --argjson r "$REF" '{event:$r,beam:"text"}')"
		req space.beam 8 '{"event":[],"beam":{}}'
		printf '%s\n' "{\"m\":\"space.beam\",\"c\":5,\"id\":9}"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 9 ]
	for i in 1 2 3 4 5; do
		assert_jq ".msg.id == $i and .msg.error.data.reason == \"bad_event\"" "${lines[i - 1]}"
	done
	for i in 6 7 8 9; do
		assert_jq ".msg.id == $i and .msg.error.data.reason == \"invalid_params\"" "${lines[i - 1]}"
	done
}

@test "ns-beam: a beam over 256 KiB is too_large" {
	# big values go through files: they do not fit on a command line
	big=$BATS_TEST_TMPDIR/big
	head -c 270000 /dev/zero | tr '\0' a >"$big"
	jq -nc --rawfile b "$big" '{type:"beam",body:$b}' | ns-sign -k "$ALICE" --ts 1700000000000 >"$big.beam"
	ref=$(mkref "$ALICE" "$(beam_path "$(cat "$big.beam")")" channel/x/one)
	jq -nc --argjson r "$ref" --slurpfile b "$big.beam" --arg d "$ALICE_DID" \
		'{m:"space.beam",c:5,did:$d,role:"client",id:7,p:{event:$r,beam:$b[0]}}' >"$big.req"
	run -0 stage <"$big.req"
	error_is 7 too_large
	assert_jq '.msg.error.code == -32007'
	# just under the limit is fine
	head -c 261000 /dev/zero | tr '\0' a >"$big"
	jq -nc --rawfile b "$big" '{type:"beam",body:$b}' | ns-sign -k "$ALICE" --ts 1700000000000 >"$big.beam"
	[ "$(($(wc -c <"$big.beam") - 1))" -le 262144 ]
	ref=$(mkref "$ALICE" "$(beam_path "$(cat "$big.beam")")" channel/x/one)
	jq -nc --argjson r "$ref" --slurpfile b "$big.beam" --arg d "$ALICE_DID" \
		'{m:"space.beam",c:5,did:$d,role:"client",id:8,p:{event:$r,beam:$b[0]}}' >"$big.req"
	run -0 stage <"$big.req"
	assert_jq '.m == "log.append" and .id == 8'
}

@test "ns-beam: beam.get answers the beam, not_found, invalid_params" {
	stage <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	run -0 stage <<<"$(beam_get 7 "$P")"
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.to == 5 and .msg.jsonrpc == "2.0" and .msg.id == 7'
	[ "$(jq -c .msg.result.beam <<<"$output")" = "$BEAM" ]
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	run -0 stage <<<"$(beam_get 8 "$other")"
	error_is 8 not_found
	for bad in '"beam/x/y"' '42' "\"${P}A\"" "\"${P/beam/maeb}\"" "\"${P}\\u0000x\""; do
		run -0 stage <<<"$(req beam.get 9 "{\"beam\":$bad}")"
		error_is 9 invalid_params
	done
	run -0 stage <<<'{"m":"beam.get","c":5,"id":10}'
	error_is 10 invalid_params
}

@test "ns-beam: a beam and a get in the same batch see each other" {
	{ space_beam 1 "$REF" "$BEAM"; beam_get 2 "$P"; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	assert_jq '.m == "log.append"' "${lines[0]}"
	assert_jq '.msg.id == 2 and .msg.result.beam.title == "hello"' "${lines[1]}"
}

@test "ns-beam: beam.get of a damaged stored beam is internal" {
	stage <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	command -v sqlite3 >/dev/null || skip "no sqlite3 shell"
	sqlite3 "$DB" "UPDATE beams SET body = replace(body, 'world', 'worle')"
	run -0 --separate-stderr stage <<<"$(beam_get 7 "$P")"
	error_is 7 internal
	assert_match 'does not hash to its path' "$stderr"
	run -1 --separate-stderr ns-beam -d "$DB" get "$P"
	[ -z "$output" ]
}

@test "ns-beam: beam.delete by the author answers the spaces and appends the tombstone to each" {
	ref2=$(mkref "$ALICE" "$P" channel/x/two)
	{ space_beam 1 "$REF" "$BEAM"; space_beam 2 "$ref2" "$BEAM"; } | stage >/dev/null
	T=$(mktomb "$ALICE" "$P")
	run -0 --separate-stderr stage <<<"$(beam_delete 7 "$T")"
	[ "${#lines[@]}" -eq 3 ]
	assert_jq ".to == 5 and .msg.id == 7 and .msg.result.beam == \"$P\"" "${lines[0]}"
	assert_jq '.msg.result.spaces == ["channel/x/one","channel/x/two"]' "${lines[0]}"
	for i in 1 2; do
		l=${lines[i]}
		[[ "$l" == '{"m":"log.append",'* ]]
		assert_jq 'has("c") or has("id") or has("did") or has("role") | not' "$l"
		assert_jq "(.p | keys) == [\"event\",\"space\"]" "$l"
		[ "$(jq -c .p.event <<<"$l")" = "$T" ]
	done
	assert_jq '.p.space == "channel/x/one"' "${lines[1]}"
	assert_jq '.p.space == "channel/x/two"' "${lines[2]}"
	# the content is gone, the tombstone answers
	run -0 stage <<<"$(beam_get 8 "$P")"
	error_is 8 gone
	assert_jq '.msg.error.code == -32005'
	[ "$(jq -c .msg.error.data.tombstone <<<"$output")" = "$T" ]
	# and the beam cannot come back
	run -0 stage <<<"$(space_beam 9 "$REF" "$BEAM")"
	error_is 9 gone
	[ "$(jq -c .msg.error.data.tombstone <<<"$output")" = "$T" ]
	run -0 ns-beam -d "$DB" list
	[ -z "$output" ]
}

@test "ns-beam: a repeated delete gets the same answer and resends the first tombstone" {
	stage <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	T=$(mktomb "$ALICE" "$P")
	T2=$(mktomb "$ALICE" "$P" 1700000000009)
	run -0 stage <<<"$(beam_delete 7 "$T")"
	first=${lines[0]}
	{ beam_delete 7 "$T"; beam_delete 8 "$T2"; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 4 ]
	[ "${lines[0]}" = "$first" ]
	assert_jq '.msg.id == 8 and .msg.result.spaces == ["channel/x/one"]' "${lines[2]}"
	[ "$(jq -c .p.event <<<"${lines[1]}")" = "$T" ]
	[ "$(jq -c .p.event <<<"${lines[3]}")" = "$T" ]
}

@test "ns-beam: beam.delete by another DID is forbidden, of an unknown beam not_found" {
	stage <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	run -0 stage <<<"$(beam_delete 7 "$(mktomb "$BOB" "$P")")"
	error_is 7 forbidden
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	run -0 stage <<<"$(beam_delete 8 "$(mktomb "$ALICE" "$other")")"
	error_is 8 not_found
	run -0 stage <<<"$(beam_get 9 "$P")"
	assert_jq '.msg.result.beam.title == "hello"'
	# once deleted, someone else's tombstone is still refused
	stage <<<"$(beam_delete 10 "$(mktomb "$ALICE" "$P")")" >/dev/null
	run -0 stage <<<"$(beam_delete 11 "$(mktomb "$BOB" "$P")")"
	error_is 11 forbidden
}

@test "ns-beam: malformed tombstones are bad_event or invalid_params" {
	stage <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	T=$(mktomb "$ALICE" "$P")
	{
		beam_delete 1 "$(jq -c '.type = "beam.ref"' <<<"$T")"
		beam_delete 2 "$(jq -c '.beam = "beam/a/b"' <<<"$T")"
		beam_delete 3 "$(jq -c 'del(.author)' <<<"$T")"
		req beam.delete 4 '{"event":"tombstone"}'
		req beam.delete 5 '{}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 5 ]
	for i in 1 2 3; do
		assert_jq ".msg.id == $i and .msg.error.data.reason == \"bad_event\"" "${lines[i - 1]}"
	done
	for i in 4 5; do
		assert_jq ".msg.id == $i and .msg.error.data.reason == \"invalid_params\"" "${lines[i - 1]}"
	done
	run -0 ns-beam -d "$DB" get "$P"
}

@test "ns-beam: other lines pass byte for byte and in order, between answers" {
	{
		printf '%s\n' '{"m":"tick","now":1767225600000}'
		space_beam 1 "$REF" "$BEAM"
		printf '%s\n' '{"m":"space.create","c":5,"p":{"b":1,"a":"\u00e9 x"}}'
		printf '%s\n' '{"m":"space.beams","c":5,"id":2,"p":{}}'
		beam_get 3 "$P"
		printf '%s\n' '{"m":"beam.getter","c":5,"id":4}'
		printf '%s\n' '{"to":5,"msg":{"z":1,  "a":[1,2.50]}}'
		printf '%s\n' '{"pub":"channel/x/one","msg":{}}'
		printf '%s\n' '{"m":"log.append","p":{"event":{}}}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 9 ]
	mapfile -t want <"$BATS_TEST_TMPDIR/in"
	for i in 0 2 3 5 6 7 8; do
		[ "${lines[i]}" = "${want[i]}" ]
	done
	assert_jq '.m == "log.append" and .id == 1' "${lines[1]}"
	assert_jq '.msg.id == 3 and .msg.result.beam.title == "hello"' "${lines[4]}"
}

@test "ns-beam: malformed lines are reported and do not stop the stage" {
	{
		printf '%s\n' 'garbage'
		printf '%s\n' '{"m":"space.beam","c":5,"id":1,"p":{"event":'
		printf '%s\n' '{"m":"space.beam","c":5,"id":1,"id":2,"p":{}}'
		printf '%s\n' '{"m":"beam.get","c":5,"id":3,"p":{"beam":"\ud800"}}'
		printf '%s\n' '{"m":"beam.delete","c":5,"id":4,"p":5}'
		printf '%s\n' '{"m":"beam.get","c":"x","id":[1],"p":{"beam":{"a":1}}}'
		printf '%s\n' '{"m":"beam.get","p":{"beam":null}}'
		printf '%s\n' '{"m":"space.beam","c":5,"id":5,"p":{"event":{"type":"beam.ref"},"beam":{"type":"beam","ts":1e400}}}'
		printf '%s\n' '{"m":"space.beam","c":5,"id":6,"p":{"event":{"type":"beam.ref","beam":7,"node":[],"address":{}},"beam":{}}}'
		printf '%s\n' '[1,2]'
		printf '%s\n' '{"m":"tick","now":2}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	# a value that is not ours passes, whatever it is
	[ "${lines[0]}" = garbage ]
	assert_match 'ns-beam: line 2: truncated' "$stderr"
	assert_match 'ns-beam: line 3: not a valid request' "$stderr"
	assert_match 'ns-beam: line 4: not a valid request' "$stderr"
	assert_match 'ns-beam: line 8: not a valid request' "$stderr"
	assert_jq '.msg.id == 4 and .msg.error.data.reason == "invalid_params"' "${lines[-4]}"
	assert_jq '.msg.id == 6 and .msg.error.data.reason == "bad_event"' "${lines[-3]}"
	[ "${lines[-2]}" = '[1,2]' ]
	[ "${lines[-1]}" = '{"m":"tick","now":2}' ]
}

@test "ns-beam: notifications are handled without an answer" {
	n=$(jq -nc --argjson r "$REF" --argjson b "$BEAM" '{m:"space.beam",p:{event:$r,beam:$b}}')
	{ echo "$n"; jq -nc --arg p "$P" '{m:"beam.get",p:{beam:$p}}'; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.m == "log.append" and (has("c") or has("id") | not)'
	run -0 ns-beam -d "$DB" get "$P"
}

@test "ns-beam: stored beams survive a restart" {
	stage --sync normal <<<"$(space_beam 1 "$REF" "$BEAM")" >/dev/null
	run -0 stage <<<"$(beam_get 2 "$P")"
	[ "$(jq -c .msg.result.beam <<<"$output")" = "$BEAM" ]
	stage <<<"$(beam_delete 3 "$(mktomb "$ALICE" "$P")")" >/dev/null
	run -0 stage <<<"$(beam_get 4 "$P")"
	error_is 4 gone
}

@test "ns-beam: many requests in batches of one and of many" {
	for i in $(seq 1 20); do
		b=$(mkbeam "$ALICE" "{\"type\":\"beam\",\"n\":$i}")
		space_beam "$i" "$(mkref "$ALICE" "$(beam_path "$b")" channel/x/one)" "$b"
		printf '%s\n' "{\"m\":\"tick\",\"now\":$i}"
	done >"$BATS_TEST_TMPDIR/in"
	run -0 stage --batch 1 <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 40 ]
	assert_jq '.id == 20' "${lines[38]}"
	rm -f "$DB"*
	run -0 stage --batch 7 <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 40 ]
	for i in $(seq 0 19); do
		assert_jq ".m == \"log.append\" and .id == $((i + 1))" "${lines[2 * i]}"
		[ "${lines[2 * i + 1]}" = "{\"m\":\"tick\",\"now\":$((i + 1))}" ]
	done
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 20 ]
}

# wait_for FILE TEXT: poll (at most 10 s) until FILE contains TEXT
wait_for() {
	for _ in $(seq 1 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

@test "ns-beam: a batch that cannot commit is answered internal, other lines pass" {
	command -v sqlite3 >/dev/null || skip "no sqlite3 shell"
	T=$BATS_TEST_TMPDIR
	mkfifo "$T/stage.in" "$T/sql"
	stage <"$T/stage.in" >"$T/stage.out" 2>"$T/stage.err" 3>&- &
	STAGE=$!
	exec 5>"$T/stage.in"
	echo '{"m":"tick","now":0}' >&5
	wait_for "$T/stage.out" '"now":0'
	# another writer holds the database past the stage's busy timeout
	sqlite3 "$DB" <"$T/sql" >"$T/sql.out" 3>&- &
	LOCKER=$!
	exec 4>"$T/sql"
	printf '%s\n' 'BEGIN IMMEDIATE;' "SELECT 'locked';" >&4
	wait_for "$T/sql.out" locked
	{ echo '{"m":"tick","now":1}'; space_beam 7 "$REF" "$BEAM"; beam_get 8 "$P"; echo '{"m":"tick","now":2}'; } >&5
	wait_for "$T/stage.out" '"now":2'
	printf '%s\n' 'ROLLBACK;' >&4
	exec 4>&-
	wait "$LOCKER"
	space_beam 9 "$REF" "$BEAM" >&5
	exec 5>&-
	wait "$STAGE"
	mapfile -t lines <"$T/stage.out"
	[ "${#lines[@]}" -eq 6 ]
	[ "${lines[1]}" = '{"m":"tick","now":1}' ]
	assert_jq '.msg.id == 7 and .msg.error.data.reason == "internal"' "${lines[2]}"
	assert_jq '.msg.id == 8 and .msg.error.data.reason == "internal"' "${lines[3]}"
	[ "${lines[4]}" = '{"m":"tick","now":2}' ]
	assert_jq '.m == "log.append" and .id == 9' "${lines[5]}"
	assert_match 'locked' "$(cat "$T/stage.err")"
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 1 ]
}

@test "ns-beam: put stores signed beams and refuses bad ones by line" {
	b2=$(mkbeam "$BOB" '{"type":"beam","title":"bob"}')
	forged=${BEAM/world/worle}
	unsigned='{"type":"beam","author":"'$ALICE_DID'","ts":1}'
	note=$(mkbeam "$ALICE" '{"type":"note"}')
	printf '%s\n' "$BEAM" "$forged" "$unsigned" "$note" 'nonsense' '[1]' >"$BATS_TEST_TMPDIR/in"
	jq . <<<"$b2" >>"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-beam -d "$DB" put <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "{\"beam\":\"$P\"}" ]
	[ "${lines[1]}" = "{\"beam\":\"$(beam_path "$b2")\"}" ]
	assert_match 'line 2: signature does not verify' "$stderr"
	assert_match 'line 3: beam has no sig' "$stderr"
	assert_match 'line 4: beam type' "$stderr"
	assert_match 'line 5: ' "$stderr"
	assert_match 'line 6: not a JSON object' "$stderr"
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 2 ]
	run -0 ns-beam -d "$DB" get "$P" "$(beam_path "$b2")"
	[ "${lines[0]}" = "$BEAM" ]
	[ "${lines[1]}" = "$b2" ]
	# all good: exit 0; the same beam again is fine
	run -0 ns-beam -d "$DB" put <<<"$BEAM"
	[ "$output" = "{\"beam\":\"$P\"}" ]
}

@test "ns-beam: get reports missing, malformed and deleted paths, exit 1" {
	ns-beam -d "$DB" put <<<"$BEAM" >/dev/null
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	run -1 --separate-stderr ns-beam -d "$DB" get "$other" beam/x "$P"
	[ "${#lines[@]}" -eq 1 ]
	[ "$output" = "$BEAM" ]
	assert_match "$other: not found" "$stderr"
	assert_match 'beam/x: not a beam path' "$stderr"
	T=$(mktomb "$ALICE" "$P")
	run -0 ns-beam -d "$DB" delete <<<"$T"
	run -1 --separate-stderr ns-beam -d "$DB" get "$P"
	[ "$(jq -c .tombstone <<<"$output")" = "$T" ]
	assert_match "$P: deleted" "$stderr"
}

@test "ns-beam: delete checks the signature and the author, prints the spaces" {
	ref2=$(mkref "$ALICE" "$P" channel/x/two)
	{ space_beam 1 "$REF" "$BEAM"; space_beam 2 "$ref2" "$BEAM"; } | stage >/dev/null
	T=$(mktomb "$ALICE" "$P")
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	printf '%s\n' "$(mktomb "$BOB" "$P")" "${T/1700000000002/1700000000003}" \
		"$(mktomb "$ALICE" "$other")" "$REF" >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-beam -d "$DB" delete <"$BATS_TEST_TMPDIR/in"
	[ -z "$output" ]
	assert_match 'line 1: only the beam.s author may delete it' "$stderr"
	assert_match 'line 2: signature does not verify' "$stderr"
	assert_match 'line 3: no such beam' "$stderr"
	assert_match 'line 4: event is not a beam.tombstone' "$stderr"
	run -0 ns-beam -d "$DB" get "$P"
	run -0 --separate-stderr ns-beam -d "$DB" delete <<<"$T"
	assert_jq ".beam == \"$P\" and .spaces == [\"channel/x/one\",\"channel/x/two\"]"
	run -0 ns-beam -d "$DB" delete <<<"$T"
	assert_jq '.spaces | length == 2'
	run -0 stage <<<"$(beam_get 3 "$P")"
	error_is 3 gone
}

@test "ns-beam: list prints nothing for an empty store" {
	stage </dev/null
	run -0 --separate-stderr ns-beam -d "$DB" list
	[ -z "$output" ]
	[ -z "$stderr" ]
}
