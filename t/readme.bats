#!/usr/bin/env bats
# README.md: the "Using a node" walkthrough runs as written, command by
# command and in order, in bash, against a real node; each step's output is
# what the README says it is.

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

README=$BATS_TEST_DIRNAME/../README.md

setup() {
	unset NS_KEY NS_URL NS_NOW NS_ADDRESS
	mkdir -p "$BATS_TEST_TMPDIR/home" "$BATS_TEST_TMPDIR/steps"
}

teardown() {
	node_stop
}

# The indented block after "<!-- walkthrough -->", without its indent.
walkthrough() {
	awk '/^<!-- walkthrough -->$/ { on = 1; next }
	    on && /^    / { print substr($0, 5); seen = 1; next }
	    on && /^[ \t]*$/ { next }
	    on && seen { exit }' "$README"
}

# Split the walkthrough into commands, a line ending in | or \ going on
# into the next, as bash reads them: steps/N holds command N.
split_steps() {
	walkthrough | awk -v d="$BATS_TEST_TMPDIR/steps" '
	    { f = d "/" (cont ? n : ++n); print >>f; close(f)
	      line = $0; sub(/[ \t]+$/, "", line)
	      cont = line ~ /[|\\]$/ }
	    END { print n }'
}

# step PREFIX: the number of the command that starts with PREFIX.
step() {
	local f
	for f in "$BATS_TEST_TMPDIR"/steps/*; do
		if [[ $(head -n 1 "$f") == "$1"* ]]; then
			basename "$f"
			return
		fi
	done
	echo "step: no command starts with: $1" >&2
	return 1
}

# out N: what command N printed, without the background subscriber's lines.
out() {
	awk -v n="$1" '/^@@ / { on = ($2 == n); next } on' "$BATS_TEST_TMPDIR/out" |
	    grep -v '^{"seq":' || :
}

@test "readme: the walkthrough runs verbatim against a node" {
	local n i
	n=$(split_steps)
	[ "$n" -ge 10 ]
	# the two set-up lines: build, and the programs on PATH; the test has
	# built them already and puts them on PATH itself
	[[ $(cat "$BATS_TEST_TMPDIR/steps/1") == "make "* ]]
	[ "$(cat "$BATS_TEST_TMPDIR/steps/2")" = 'export PATH=$PWD/bin:$PWD/share:$PATH' ]
	{
		for i in $(seq 3 "$n"); do
			echo "echo '@@ $i'"
			cat "$BATS_TEST_TMPDIR/steps/$i"
		done
		echo "echo '@@ end'"
	} >"$BATS_TEST_TMPDIR/walk.sh"

	node_start
	cd "$BATS_TEST_TMPDIR/home"
	run -0 --separate-stderr env HOME="$BATS_TEST_TMPDIR/home" \
	    timeout -k 5 120 bash -e "$BATS_TEST_TMPDIR/walk.sh" 3>&-
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/out"
	[ -z "$stderr" ] || { echo "stderr: $stderr" >&2; return 1; }
	[[ $output == *"@@ end"* ]]

	# ns-keygen -o ~/alice.key: the public part, the key file 0600
	alice=$(out "$(step "ns-keygen -o ~/alice.key")")
	assert_jq '.did | test("^did:key:z6Mk")' "$alice"
	ALICE_DID=$(jq -r .did <<<"$alice")
	[ "$(stat -c %a "$BATS_TEST_TMPDIR/home/alice.key")" = 600 ]
	S="channel/${ALICE_DID#did:key:}/protocols"
	[ "$(out "$(step 'echo "$S"')")" = "$S" ]
	assert_jq ".type == \"beam\" and .title == \"On sovereign substrates\" and
	    .author == \"$ALICE_DID\"" "$(out "$(step 'ns-client get "$B"')")"
	[ "$(out "$(step 'ns-client history "$S" | ns-verify')")" = "the log verifies" ]
	[ -s "$BATS_TEST_TMPDIR/home/bob.key" ]
	assert_jq ".space == \"$S\" and .seq == 3" \
	    "$(out "$(step 'ns-client -k ~/bob.key join "$S"')")"
	assert_jq ".spaces == [\"$S\"] and (.beam | startswith(\"beam/\"))" \
	    "$(out "$(step 'ns-client delete "$B"')")"
	# the subscriber in the background: the whole log, each once, in order
	grep '^{"seq":' "$BATS_TEST_TMPDIR/out" | jq -e -s '. == [
	    {seq: 1, type: "space.create"}, {seq: 2, type: "beam.ref"},
	    {seq: 3, type: "space.join"}, {seq: 4, type: "beam.ref"},
	    {seq: 5, type: "beam.tombstone"}]' >/dev/null
	# and the beam is gone
	run -1 --separate-stderr ns-client -k "$BATS_TEST_TMPDIR/home/alice.key" get \
	    "$(out "$(step 'ns-client delete "$B"')" | jq -r .beam)"
	assert_jq '.data.reason == "gone"'
}
