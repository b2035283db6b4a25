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

# req METHOD ID PARAMS: a request of alice's client on connection 5, as
# ns-log sends it on (ns-serve's number r is the id here)
req() {
	jq -nc --arg m "$1" --argjson id "$2" --argjson p "$3" --arg d "$ALICE_DID" \
		'{m:$m,c:5,r:$id,did:$d,role:"client",id:$id,p:$p}'
}

# store ID BEAM [SPACE]: ns-log sequenced the ref as seq 2 of SPACE
store() {
	local path
	path=$(beam_path "$2")
	req beam.store "$1" "$(jq -nc --argjson b "$2" --arg s "${3:-channel/x/one}" --arg p "$path" \
		'{beam:$b,result:{space:$s,seq:2,eventId:"e",beam:$p}}')"
}

read_beam() {
	req beam.read "$1" "$(jq -nc --arg p "$2" '{beam:$p}')"
}

# bury ID TOMBSTONE SPACES-JSON
bury() {
	req beam.bury "$1" "$(jq -nc --argjson t "$2" --argjson s "${3:-[\"channel/x/one\"]}" '{event:$t,spaces:$s}')"
}

stage() {
	ns-beam --bus -d "$DB" -n "$NODE_DID" -a "$ADDR" "$@"
}

# error_is ID REASON: the one output line answers request ID with REASON
error_is() {
	[ "${#lines[@]}" -eq 1 ]
	assert_jq ".to == 5 and .r == $1 and .msg.id == $1 and .msg.error.data.reason == \"$2\""
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

@test "ns-beam: beam.store keeps the beam and answers the result ns-log made" {
	run -0 --separate-stderr stage <<<"$(store 7 "$BEAM")"
	[ "${#lines[@]}" -eq 1 ]
	[ -z "$stderr" ]
	assert_jq ".to == 5 and .r == 7 and .msg.id == 7 and .msg.result == {space:\"channel/x/one\",seq:2,eventId:\"e\",beam:\"$P\"}"
	run -0 ns-beam -d "$DB" list
	assert_jq ".beam == \"$P\" and .author == \"$ALICE_DID\" and .ts == 1700000000000 and .size == ${#BEAM}"
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
}

@test "ns-beam: the same beam twice, and in a second space, is fine" {
	{ store 1 "$BEAM"; store 2 "$BEAM"; store 3 "$BEAM" channel/x/two; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 3 ]
	for i in 0 1 2; do
		assert_jq ".msg.id == $((i + 1)) and .msg.result.beam == \"$P\"" "${lines[i]}"
	done
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 1 ]
}

@test "ns-beam: a pretty-printed beam is stored by its canonical bytes" {
	pretty=$(store 1 "$BEAM" | jq -c '.p.beam |= (to_entries | reverse | from_entries)')
	run -0 stage <<<"$pretty"
	assert_jq '.msg.result.seq == 2'
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
}

@test "ns-beam: a line in canonical form is stored as it stands, answered as any other" {
	# the form ns-log writes (result members in order): taken without a
	# parse; the same request with its result out of order takes the
	# general path, and both must come out the same
	sorted='.p.result |= (to_entries | sort_by(.key) | from_entries)'
	{
		store 1 "$BEAM" | jq -c "$sorted"
		store 1 "$BEAM" channel/x/two
		store 2 "$BEAM" channel/x/three | jq -c "$sorted | .id = \"x\\u0079\" | .r = 2"
		store 3 "$BEAM" channel/x/four | jq -c "$sorted | del(.id)"
		store 4 "$BEAM" channel/x/five | jq -c "$sorted" |
		    sed 's/"id":4,/"id":12345678901234567890,/'
		# a result that names another path: the beam's own bytes
		# decide where it goes, on either path
		store 5 "$BEAM" channel/x/six | jq -c "$sorted | .p.result.beam = \"${P%?}A\""
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 6 ]
	want="{\"beam\":\"$P\",\"eventId\":\"e\",\"seq\":2,\"space\":\"channel/x/one\"}"
	[ "${lines[0]}" = "{\"to\":5,\"r\":1,\"msg\":{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":$want}}" ]
	[ "${lines[1]}" = "${lines[0]/one/two}" ]
	assert_jq '.r == 2 and .msg.id == "xy" and .msg.result.space == "channel/x/three"' "${lines[2]}"
	[ "${lines[3]}" = '{"to":5,"r":3}' ]
	# past 15 digits: the general path, which reads numbers as doubles
	[[ "${lines[4]}" == *'"r":4,"msg":{"id":12345678901234567000,'* ]]
	run -0 ns-beam -d "$DB" list
	[ "${#lines[@]}" -eq 1 ]
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
	# the first space in the beam's row, the others in refs
	run sqlite3 "$DB" 'SELECT ref FROM beams'
	[ "$output" = channel/x/one ]
	run sqlite3 "$DB" 'SELECT space FROM refs ORDER BY space'
	[ "$output" = "$(printf 'channel/x/%s\n' five four six three two)" ]
	run sqlite3 "$DB" 'SELECT DISTINCT path FROM refs'
	[ "$output" = "$P" ]
}

@test "ns-beam: beam.store of a beam over 256 KiB or malformed is refused, nothing kept" {
	big=$BATS_TEST_TMPDIR/big
	head -c 270000 /dev/zero | tr '\0' a >"$big"
	jq -nc --rawfile b "$big" '{type:"beam",body:$b}' | ns-sign -k "$ALICE" --ts 1700000000000 >"$big.beam"
	jq -nc --slurpfile b "$big.beam" --arg d "$ALICE_DID" \
		'{m:"beam.store",c:5,r:7,did:$d,role:"client",id:7,p:{beam:$b[0],result:{space:"channel/x/one",seq:2}}}' >"$big.req"
	run -0 stage <"$big.req"
	error_is 7 too_large
	run -0 stage <<<"$(req beam.store 8 '{"beam":{}}')"
	error_is 8 internal
	run -0 ns-beam -d "$DB" list
	[ -z "$output" ]
}

@test "ns-beam: beam.read answers the beam, not_found, invalid_params" {
	stage <<<"$(store 1 "$BEAM")" >/dev/null
	run -0 stage <<<"$(read_beam 7 "$P")"
	[ "${#lines[@]}" -eq 1 ]
	assert_jq '.to == 5 and .r == 7 and .msg.jsonrpc == "2.0" and .msg.id == 7'
	[ "$(jq -c .msg.result.beam <<<"$output")" = "$BEAM" ]
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	run -0 stage <<<"$(read_beam 8 "$other")"
	error_is 8 not_found
	for bad in '"beam/x/y"' '42' "\"${P}A\"" "\"${P/beam/maeb}\"" "\"${P}\\u0000x\""; do
		run -0 stage <<<"$(req beam.read 9 "{\"beam\":$bad}")"
		error_is 9 invalid_params
	done
}

@test "ns-beam: a store and a read in the same batch see each other" {
	{ store 1 "$BEAM"; read_beam 2 "$P"; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	assert_jq '.msg.id == 1 and .msg.result.seq == 2' "${lines[0]}"
	assert_jq '.msg.id == 2 and .msg.result.beam.title == "hello"' "${lines[1]}"
}

@test "ns-beam: beam.read of a damaged stored beam is internal" {
	stage <<<"$(store 1 "$BEAM")" >/dev/null
	command -v sqlite3 >/dev/null || skip "no sqlite3 shell"
	sqlite3 "$DB" "UPDATE beams SET body = replace(body, 'world', 'worle')"
	run -0 --separate-stderr stage <<<"$(read_beam 7 "$P")"
	error_is 7 internal
	assert_match 'does not hash to its path' "$stderr"
}

@test "ns-beam: beam.bury drops the content, keeps the tombstone, answers the spaces" {
	stage <<<"$(store 1 "$BEAM")" >/dev/null
	T=$(mktomb "$ALICE" "$P")
	run -0 --separate-stderr stage <<<"$(bury 7 "$T" '["channel/x/one","channel/x/two"]')"
	[ "${#lines[@]}" -eq 1 ]
	assert_jq ".to == 5 and .msg.id == 7 and .msg.result == {beam:\"$P\",spaces:[\"channel/x/one\",\"channel/x/two\"]}"
	# the content is gone, the tombstone answers
	run -0 stage <<<"$(read_beam 8 "$P")"
	error_is 8 gone
	assert_jq '.msg.error.code == -32005'
	[ "$(jq -c .msg.error.data.tombstone <<<"$output")" = "$T" ]
	# and the beam cannot come back
	run -0 stage <<<"$(store 9 "$BEAM")"
	error_is 9 gone
	[ "$(jq -c .msg.error.data.tombstone <<<"$output")" = "$T" ]
	run -0 ns-beam -d "$DB" list
	[ -z "$output" ]
	# again: the same answer, the first tombstone kept
	T2=$(mktomb "$ALICE" "$P" 1700000000009)
	run -0 stage <<<"$(bury 10 "$T2")"
	assert_jq '.msg.result.beam == "'"$P"'"'
	run -0 stage <<<"$(read_beam 11 "$P")"
	[ "$(jq -c .msg.error.data.tombstone <<<"$output")" = "$T" ]
}

@test "ns-beam: beam.bury by another author is forbidden; of a beam not here, not_found unless a space held it" {
	stage <<<"$(store 1 "$BEAM")" >/dev/null
	run -0 stage <<<"$(bury 7 "$(mktomb "$BOB" "$P")" '[]')"
	error_is 7 forbidden
	other=$(beam_path "$(mkbeam "$ALICE" '{"type":"beam","title":"never"}')")
	run -0 stage <<<"$(bury 8 "$(mktomb "$ALICE" "$other")" '[]')"
	error_is 8 not_found
	run -0 stage <<<"$(read_beam 9 "$P")"
	assert_jq '.msg.result.beam.title == "hello"'
	# a beam beamed through another node: its tombstone is kept here too
	run -0 stage <<<"$(bury 10 "$(mktomb "$ALICE" "$other")")"
	assert_jq '.msg.result.spaces == ["channel/x/one"]'
	run -0 stage <<<"$(read_beam 11 "$other")"
	error_is 11 gone
}

@test "ns-beam: other lines pass byte for byte and in order, between answers" {
	{
		printf '%s\n' '{"m":"tick","now":1767225600000}'
		store 1 "$BEAM"
		printf '%s\n' '{"m":"space.create","c":5,"p":{"b":1,"a":"\u00e9 x"}}'
		printf '%s\n' '{"m":"beam.stores","c":5,"id":2,"p":{}}'
		read_beam 3 "$P"
		printf '%s\n' '{"m":"beam.get","c":5,"id":4,"p":{}}'
		printf '%s\n' '{"to":5,"msg":{"z":1,  "a":[1,2.50]}}'
		printf '%s\n' '{"pub":"channel/x/one","msg":{}}'
		printf '%s\n' '{"m":"space.beam","p":{"event":{}}}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 9 ]
	mapfile -t want <"$BATS_TEST_TMPDIR/in"
	for i in 0 2 3 5 6 7 8; do
		[ "${lines[i]}" = "${want[i]}" ]
	done
	assert_jq '.msg.id == 1 and .msg.result.seq == 2' "${lines[1]}"
	assert_jq '.msg.id == 3 and .msg.result.beam.title == "hello"' "${lines[4]}"
}

@test "ns-beam: malformed lines are reported and do not stop the stage" {
	{
		printf '%s\n' 'garbage'
		printf '%s\n' '{"m":"beam.store","c":5,"id":1,"p":{"event":'
		printf '%s\n' '{"m":"beam.store","c":5,"id":1,"id":2,"p":{}}'
		printf '%s\n' '{"m":"beam.read","c":5,"id":3,"p":{"beam":"\ud800"}}'
		printf '%s\n' '{"m":"beam.bury","c":5,"id":4,"p":5}'
		printf '%s\n' '{"m":"beam.read","c":"x","id":[1],"p":{"beam":{"a":1}}}'
		printf '%s\n' '{"m":"beam.read","p":{"beam":null}}'
		printf '%s\n' '{"m":"beam.store","c":5,"id":5,"p":{"beam":{"type":"beam","ts":1e400}}}'
		printf '%s\n' '[1,2]'
		printf '%s\n' '{"m":"tick","now":2}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	# a value that is not ours passes, whatever it is
	[ "${lines[0]}" = garbage ]
	# (a bus line is one value: a cut one does not parse)
	assert_match 'ns-beam: line 2: not a valid request' "$stderr"
	assert_match 'ns-beam: line 3: not a valid request' "$stderr"
	assert_match 'ns-beam: line 4: not a valid request' "$stderr"
	assert_match 'ns-beam: line 8: not a valid request' "$stderr"
	assert_jq '.msg.id == 4 and .msg.error.data.reason == "internal"' "${lines[-3]}"
	[ "${lines[-2]}" = '[1,2]' ]
	[ "${lines[-1]}" = '{"m":"tick","now":2}' ]
}

@test "ns-beam: a request without an id is done without an answer" {
	n=$(store 1 "$BEAM" | jq -c 'del(.id)')
	{ echo "$n"; read_beam 2 "$P" | jq -c 'del(.id)'; } >"$BATS_TEST_TMPDIR/in"
	run -0 stage <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = '{"to":5,"r":1}' ]
	[ "${lines[1]}" = '{"to":5,"r":2}' ]
	run -0 ns-beam -d "$DB" get "$P"
}

@test "ns-beam: stored beams survive a restart" {
	stage --sync normal <<<"$(store 1 "$BEAM")" >/dev/null
	run -0 stage <<<"$(read_beam 2 "$P")"
	[ "$(jq -c .msg.result.beam <<<"$output")" = "$BEAM" ]
	stage <<<"$(bury 3 "$(mktomb "$ALICE" "$P")")" >/dev/null
	run -0 stage <<<"$(read_beam 4 "$P")"
	error_is 4 gone
}

@test "ns-beam: many requests in batches of one and of many" {
	for i in $(seq 1 20); do
		store "$i" "$(mkbeam "$ALICE" "{\"type\":\"beam\",\"n\":$i}")"
		printf '%s\n' "{\"m\":\"tick\",\"now\":$i}"
	done >"$BATS_TEST_TMPDIR/in"
	run -0 stage --batch 1 <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 40 ]
	assert_jq '.msg.id == 20' "${lines[38]}"
	rm -f "$DB"*
	run -0 stage --batch 7 <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 40 ]
	for i in $(seq 0 19); do
		assert_jq ".msg.id == $((i + 1))" "${lines[2 * i]}"
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
	{ echo '{"m":"tick","now":1}'; store 7 "$BEAM"; read_beam 8 "$P"; echo '{"m":"tick","now":2}'; } >&5
	wait_for "$T/stage.out" '"now":2'
	printf '%s\n' 'ROLLBACK;' >&4
	exec 4>&-
	wait "$LOCKER"
	store 9 "$BEAM" >&5
	exec 5>&-
	wait "$STAGE"
	mapfile -t lines <"$T/stage.out"
	[ "${#lines[@]}" -eq 6 ]
	[ "${lines[1]}" = '{"m":"tick","now":1}' ]
	assert_jq '.r == 7 and .msg.id == 7 and .msg.error.data.reason == "internal"' "${lines[2]}"
	assert_jq '.msg.id == 8 and .msg.error.data.reason == "internal"' "${lines[3]}"
	[ "${lines[4]}" = '{"m":"tick","now":2}' ]
	assert_jq '.msg.id == 9 and .msg.result.seq == 2' "${lines[5]}"
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
	{ store 1 "$BEAM"; store 2 "$BEAM" channel/x/two; } | stage >/dev/null
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
	run -0 stage <<<"$(read_beam 3 "$P")"
	error_is 3 gone
}

@test "ns-beam: beam.drop keeps a beam while any space refers to it, in either order" {
	hold() {	# hold ID SPACE: kept while another node's SPACE decides
		req beam.store "$1" "$(jq -nc --argjson b "$BEAM" --arg s "$2" \
		    '{beam:$b,hold:true,space:$s}')"
	}
	drop() {	# drop SPACE: that space refused the ref
		jq -nc --arg p "$P" --arg s "$1" '{m:"beam.drop",p:{beam:$p,space:$s}}'
	}
	for order in "a b" "b a"; do
		rm -f "$DB"*
		{ hold 1 channel/x/a; hold 2 channel/x/b; store 3 "$BEAM" channel/x/c; } | stage >/dev/null
		set -- $order
		drop "channel/x/$1" | stage >/dev/null
		run -0 ns-beam -d "$DB" get "$P"
		drop channel/x/c | stage >/dev/null
		run -0 ns-beam -d "$DB" get "$P"
		drop "channel/x/$2" | stage >/dev/null
		run -1 ns-beam -d "$DB" get "$P"
		# and what refers to nothing is gone from refs too
		run -0 sqlite3 "$DB" 'SELECT count(*) FROM refs'
		[ "$output" = 0 ]
	done
	# a space named again is kept once, in the row or in refs
	rm -f "$DB"*
	{ hold 1 channel/x/a; hold 2 channel/x/b; } | stage >/dev/null
	drop channel/x/a | stage >/dev/null
	hold 3 channel/x/b | stage >/dev/null
	run -0 sqlite3 "$DB" "SELECT (SELECT count(*) FROM beams WHERE ref IS NOT NULL) + (SELECT count(*) FROM refs)"
	[ "$output" = 1 ]
	drop channel/x/b | stage >/dev/null
	run -1 ns-beam -d "$DB" get "$P"
}

@test "ns-beam: a database from before refs moved into the beam's row works as it did" {
	# schema version 2: every ref in refs
	sqlite3 "$DB" <<-EOF
		CREATE TABLE beams (path TEXT PRIMARY KEY, author TEXT NOT NULL,
		    ts INTEGER NOT NULL, body TEXT NOT NULL,
		    cached INTEGER NOT NULL DEFAULT 0);
		CREATE TABLE tombstones (path TEXT PRIMARY KEY,
		    author TEXT NOT NULL, body TEXT NOT NULL);
		CREATE TABLE refs (path TEXT NOT NULL, space TEXT NOT NULL,
		    PRIMARY KEY (path, space)) WITHOUT ROWID;
		INSERT INTO beams (path, author, ts, body) VALUES
		    ('$P', '$ALICE_DID', 1700000000000, '$BEAM');
		INSERT INTO refs VALUES ('$P', 'channel/x/a'), ('$P', 'channel/x/b');
		PRAGMA user_version = 2;
	EOF
	jq -nc --arg p "$P" '{m:"beam.drop",p:{beam:$p,space:"channel/x/a"}}' | stage >/dev/null
	run -0 sqlite3 "$DB" 'PRAGMA user_version'
	[ "$output" = 3 ]
	run -0 ns-beam -d "$DB" get "$P"
	[ "$output" = "$BEAM" ]
	store 1 "$BEAM" channel/x/c | stage >/dev/null
	run -0 --separate-stderr ns-beam -d "$DB" delete <<<"$(mktomb "$ALICE" "$P")"
	assert_jq '.spaces == ["channel/x/b","channel/x/c"]'
}

@test "ns-beam: list prints nothing for an empty store" {
	stage </dev/null
	run -0 --separate-stderr ns-beam -d "$DB" list
	[ -z "$output" ]
	[ -z "$stderr" ]
}

@test "ns-beam: a bus line over 4 MiB is skipped whole, and the lines after it go on" {
	{
		printf '{"m":"beam.read","c":5,"id":1,"p":{"beam":"'
		head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' a
		printf '"}}\n'
		printf '%s\n' '{"m":"tick","now":2}'
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr stage <"$BATS_TEST_TMPDIR/in"
	assert_match 'ns-beam: line 1: value too large' "$stderr"
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = '{"m":"tick","now":2}' ]
}
