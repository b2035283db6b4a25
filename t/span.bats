#!/usr/bin/env bats
# common/span: JSON spans checked without building values.  A stage that
# stores a bus line's text as it stands (ns-beam's beam.store) relies on
# span_canonical never calling text canonical that canon_dump would print
# differently, and on span_get refusing what canon_parse refuses.

load helpers/common
bats_require_minimum_version 1.5.0

SPANCHECK="$BATS_TEST_DIRNAME/helpers/spancheck"

# check TEXT EXPECTED: spancheck's four numbers for TEXT
check() {
	run -0 "$SPANCHECK" <<<"$1"
	if [ "$output" != "$2" ]; then
		echo "in:   $1" >&2
		echo "got:  $output" >&2
		echo "want: $2" >&2
		return 1
	fi
}

# corpus FILE: every value inside the fixtures (as jq prints them, and in
# canonical form), and a list of hard cases, one per line
corpus() {
	{
		for f in "$FIX"/jcs/input/*.json "$FIX"/log-v4.bus; do
			jq -c '..' "$f"
		done
		for f in "$FIX"/jcs/output/*.json; do
			cat "$f"
			echo
		done
	} >"$BATS_TEST_TMPDIR/jq"
	ns-sign --canonical <"$BATS_TEST_TMPDIR/jq" >"$BATS_TEST_TMPDIR/canon"
	cat "$BATS_TEST_TMPDIR/jq" "$BATS_TEST_TMPDIR/canon" - >"$1" <<'EOF'
{"a":1,"b":2}
{"b":1,"a":2}
{"a":1,"a":2}
{"a":1, "b":2}
{"":1,"a":{"":[]}}
{"aa":1,"a":2}
{"a":1,"aa":2}
"a\/b"
"a/b"
"\u00e9"
"é"
"\u001f"
"\u001F"
"\n"
"\u000a"
"\b\f\n\r\t\"\\"
"\ud83d\ude00"
"😀"
"\ud83d"
1.5
1e2
-0
0
-1
123456789012345
1234567890123456
007
[1,2,[3,{"x":null}]]
[true,false,null]
[ ]
[]
{}
"	"
{"é":1}
EOF
}

@test "span: never calls text canonical that canon_dump prints otherwise" {
	corpus "$BATS_TEST_TMPDIR/all"
	"$SPANCHECK" <"$BATS_TEST_TMPDIR/all" >"$BATS_TEST_TMPDIR/out"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" -eq "$(wc -l <"$BATS_TEST_TMPDIR/all")" ]
	# canonical by span, yet not what canon_dump prints: never
	run paste -d ' ' "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/all"
	bad=$(grep -c '^1 0 ' <<<"$output" || true)
	[ "$bad" -eq 0 ] || { grep '^1 0 ' <<<"$output" >&2; false; }
	# and it does not give up on the node's own objects: every value of
	# the recorded bus lines, in canonical form, is taken as it stands
	jq -c '..' "$FIX/log-v4.bus" | ns-sign --canonical | "$SPANCHECK" >"$BATS_TEST_TMPDIR/bus"
	[ -s "$BATS_TEST_TMPDIR/bus" ]
	run grep -vc '^1 1 ' "$BATS_TEST_TMPDIR/bus"
	[ "$output" = 0 ]
}

@test "span: the hard cases one by one" {
	check '{"a":1,"b":2}' '1 1 1 1'
	check '{"b":1,"a":2}' '0 0 1 1'       # out of order
	check '{"a":1, "b":2}' '0 0 1 1'      # whitespace
	check '{"a":1,"aa":2}' '1 1 1 1'      # a prefix sorts first
	check '{"aa":1,"a":2}' '0 0 1 1'
	check '"a\/b"' '0 0 - 1'              # JCS writes / as it is
	check '"\u00e9"' '0 0 - 1'            # and é as UTF-8
	check '"é"' '1 1 - 1'
	check '"\u001f"' '1 1 - 1'
	check '"\u001F"' '0 0 - 1'            # hex in lower case
	check '"\u000a"' '0 0 - 1'            # \n has a short form
	check '"\b\f\n\r\t\"\\"' '1 1 - 1'
	check '"😀"' '1 1 - 1'
	check '"\ud83d\ude00"' '0 0 - 1'
	check '1.5' '0 1 - 1'                 # canonical, but not taken
	check '1e2' '0 0 - 1'
	check '-0' '0 0 - 1'
	check '123456789012345' '1 1 - 1'
	check '1234567890123456' '0 1 - 1'    # past 15 digits: not taken
	check '[]' '1 1 - 1'
	check '[ ]' '0 0 - 1'
	check '{"é":1}' '0 1 1 1'             # non-ASCII names: not taken
}

@test "span: span_get refuses what canon_parse refuses" {
	for bad in '{' '{"a"}' '{"a":}' '{"a":1,}' '{"a":1}}' '{"a":01}' \
	    '{"a":"x' '{"a":"\x"}' '{"a":"\ud83d"}' '{"a":"\udc00"}' \
	    '{"a":tru}' '{"a":[1,]}' '{"a":1.}' '{"a":.5}' '{"a":+1}' \
	    '{"a":1e}' '{a:1}' "{\"a\":\"$(printf '\001')\"}" \
	    "{\"a\":\"$(printf '\300\200')\"}" \
	    "{\"a\":\"$(printf '\355\240\200')\"}" \
	    "{\"a\":\"$(printf '\364\220\200\200')\"}" '{"a":1} x'; do
		run -0 "$SPANCHECK" <<<"$bad"
		[[ "$output" == *" 0 0" ]] || {
			echo "in: $bad; got: $output" >&2
			false
		}
	done
	check '{ "a" : [ 1 , 2.5e-3 , "\/" ] } ' '0 0 1 1'
	# nesting past CANON_DEPTH_MAX
	deep=$(printf '{"a":%.0s' $(seq 70))1$(printf '}%.0s' $(seq 70))
	run -0 "$SPANCHECK" <<<"$deep"
	[ "$output" = "0 0 0 0" ]
}

@test "span: span_int takes the integers jsonl_int takes" {
	# ns-serve's connection numbers have 16 digits: a stage's fast path
	# must take them (ns-beam's beam.store fell back to full parsing)
	run -0 "$SPANCHECK" --int <<'EOF2'
0
-0
7
-42
1796010617000001
9007199254740991
-9007199254740991
9007199254740992
10000000000000000
01
1.0
1e3
+1
-
 1

"1"
EOF2
	[ "$output" = "$(printf '%s\n' 0 0 7 -42 1796010617000001 \
	    9007199254740991 -9007199254740991 - - - - - - - - - -)" ]
}

@test "span: a string's first special byte is found wherever it sits" {
	# the scanners take plain bytes eight at a time: put each kind of
	# special byte at every offset of strings longer and shorter than that
	: >"$BATS_TEST_TMPDIR/in"
	: >"$BATS_TEST_TMPDIR/want"
	for n in $(seq 0 19); do
		pre=$(printf "%${n}s" '' | tr ' ' a)
		while IFS='|' read -r special want; do
			s="\"$pre$(printf "$special")bcdefghijklmnop\""
			printf '%s\n{"a":%s}\n' "$s" "$s" >>"$BATS_TEST_TMPDIR/in"
			printf '%s\n%s\n' "$want" "${want% - *} ${want: -1} ${want: -1}" >>"$BATS_TEST_TMPDIR/want"
		done <<'KINDS'
\\"|1 1 - 1
\\n|1 1 - 1
\\u0041|0 0 - 1
\303\251|1 1 - 1
\001|0 0 - 0
\177|1 1 - 1
\377|0 0 - 0
"x|0 0 - 0
KINDS
	done
	"$SPANCHECK" <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out"
	diff "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/out"
}

@test "span: bus_str writes a string as bus_json does, special or not" {
	# stages write DIDs, space ids and paths without making a value;
	# anything that needs an escape, or is not UTF-8, takes bus_json
	printf '%b\n' 'did:key:z6Mkon3Necd6NkkyfoGoHxid2znGc59LU3K7mubaRcFbLfLX' \
	    '' 'a"b' 'a\\b' 'tab\there' 'caf\303\251' 'del\177' 'bad\377byte' \
	    '\001' >"$BATS_TEST_TMPDIR/in"
	run -0 "$SPANCHECK" --str <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 9 ]
	for l in "${lines[@]}"; do
		[ "${l%% *}" = 1 ]
	done
	[ "${lines[0]}" = '1 "did:key:z6Mkon3Necd6NkkyfoGoHxid2znGc59LU3K7mubaRcFbLfLX"' ]
	[ "${lines[1]}" = '1 ""' ]
	[ "${lines[2]}" = '1 "a\"b"' ]
	[ "${lines[3]}" = '1 "a\\b"' ]
	[ "${lines[4]}" = '1 "tab\there"' ]
	[ "${lines[5]}" = "1 \"café\"" ]
	[ "${lines[8]}" = '1 "\u0001"' ]
}
