#!/usr/bin/env bats
# common/canon through `ns-sign --canonical`: the RFC 8785 (JCS) bytes that
# get signed, and the strict parser in front of them.  The reference vectors
# in fixtures/jcs/ come from cyberphone/json-canonicalization (see README).

load helpers/common
bats_require_minimum_version 1.5.0

# jcs_vector NAME: input/NAME.json canonicalizes to output/NAME.json (which
# has no final newline; ns-sign ends each value with one) and to the bytes
# listed in outhex/NAME.txt.
jcs_vector() {
	local out="$BATS_TEST_TMPDIR/$1.out"

	ns-sign --canonical <"$FIX/jcs/input/$1.json" >"$out"
	{ cat "$FIX/jcs/output/$1.json"; printf '\n'; } | cmp - "$out"
	[ "$(head -c -1 "$out" | od -An -v -tx1 | tr -d ' \n')" = \
	    "$(tr -d ' \n' <"$FIX/jcs/outhex/$1.txt")" ]
}

# canonical TEXT EXPECTED: TEXT (one value) comes out as EXPECTED.
canonical() {
	printf '%s\n' "$1" >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	if [ "$output" != "$2" ]; then
		echo "in:   $1" >&2
		echo "got:  $output" >&2
		echo "want: $2" >&2
		return 1
	fi
	[ -z "$stderr" ]
}

# refused TEXT REGEX: TEXT is refused with exit 1, nothing on stdout and one
# line on stderr whose reason matches REGEX.
refused() {
	printf '%s\n' "$1" >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	if [ -n "$output" ]; then
		echo "in: $1; stdout: $output" >&2
		return 1
	fi
	[ "${#stderr_lines[@]}" -eq 1 ]
	assert_match "^ns-sign: line 1: .*($2)" "$stderr"
}

@test "canon: RFC 8785 vector arrays" {
	jcs_vector arrays
}

@test "canon: RFC 8785 vector french (no locale in key order)" {
	jcs_vector french
}

@test "canon: RFC 8785 vector structures" {
	jcs_vector structures
}

@test "canon: RFC 8785 vector unicode (no normalization)" {
	jcs_vector unicode
}

@test "canon: RFC 8785 vector values" {
	jcs_vector values
}

@test "canon: RFC 8785 vector weird (UTF-16 key order, DEL raw)" {
	jcs_vector weird
}

@test "canon: numbers follow ECMAScript formatting" {
	local in want note got n=0 bad=0

	grep -v '^#' "$FIX/jcs/numbers.tsv" | cut -f1 >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	while IFS=$'\t' read -r in want note; do
		[[ $in == \#* ]] && continue
		got=${lines[n]-}
		n=$((n + 1))
		if [ "$got" != "$want" ]; then
			echo "numbers.tsv: $in: got '$got', want '$want' $note" >&2
			bad=1
		fi
	done <"$FIX/jcs/numbers.tsv"
	[ "$bad" -eq 0 ]
	[ "${#lines[@]}" -eq "$n" ]
}

@test "canon: C0 controls are escaped as JCS says, in lower-case hex" {
	local in='"' c

	for c in $(seq 0 31); do
		in+=$(printf '\\u%04X' "$c")
	done
	in+='"'
	canonical "$in" '"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"'
	canonical '"q\"b\\s\/"' '"q\"b\\s/"'
}

@test "canon: DEL, U+2028, U+2029 and non-ASCII stay raw UTF-8" {
	canonical '"\u007f"' $'"\x7f"'
	canonical $'"\x7f"' $'"\x7f"'
	canonical '"\u2028\u2029"' $'"\xe2\x80\xa8\xe2\x80\xa9"'
	canonical '"\u00E9\u20ac\ud83d\ude00"' $'"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"'
	canonical '"\uFFFF"' $'"\xef\xbf\xbf"'
}

@test "canon: members sort by UTF-16 code units, astral keys before U+E000" {
	# Code point order would put U+1F600 last; UTF-16 order puts its
	# surrogates (D83D DE00) before E000 and FFFF.
	canonical '{"\ue000":1,"\ud83d\ude00":2}' $'{"\xf0\x9f\x98\x80":2,"\xee\x80\x80":1}'
	canonical '{"\uffff":5,"\ue000":1,"z":4,"\ud83d\ude00":2,"\u00e9":3}' \
	    $'{"z":4,"\xc3\xa9":3,"\xf0\x9f\x98\x80":2,"\xee\x80\x80":1,"\xef\xbf\xbf":5}'
	canonical '{"b":1,"a":2,"":3,"aa":4,"A":5,"a\u0000":6}' \
	    '{"":3,"A":5,"a":2,"a\u0000":6,"aa":4,"b":1}'
}

@test "canon: nested objects sort at every level, arrays keep their order" {
	canonical '{"b":{"d":[3,1,2],"c":{"z":[{"y":1,"x":2}],"a":null}},"a":[true,false]}' \
	    '{"a":[true,false],"b":{"c":{"a":null,"z":[{"x":2,"y":1}]},"d":[3,1,2]}}'
}

@test "canon: empty objects, arrays and strings" {
	canonical '{ }' '{}'
	canonical '[ ]' '[]'
	canonical '""' '""'
	canonical ' { "" : [ { } , [ ] ] } ' '{"":[{},[]]}'
}

@test "canon: pretty-printed input gives the same bytes as compact" {
	printf '{\n  "b": [1,\n    2],\n\t"a": "x"\r\n}\n{"b":[1,2],"a":"x"}\n' \
	    >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = '{"a":"x","b":[1,2]}' ]
	[ "${lines[1]}" = "${lines[0]}" ]
}

@test "canon: duplicate keys are refused, compared after unescaping" {
	refused '{"a":1,"a":2}' 'duplicate key "a"'
	refused '{"a":1,"\u0061":2}' 'duplicate key "a"'
	refused '{"x":{"é":1,"\u00e9":2}}' 'duplicate key "é"'
	canonical '{"a":{"a":1},"b":{"a":2}}' '{"a":{"a":1},"b":{"a":2}}'
}

@test "canon: lone surrogates are refused" {
	refused '"\ud800"' 'lone surrogate \\ud800'
	refused '"\udc00"' 'lone surrogate \\udc00'
	refused '"\ud800\u0041"' 'lone surrogate \\ud800'
	refused '"\ude00\ud83d"' 'lone surrogate \\ude00'
	refused '{"\uDBFF":1}' 'lone surrogate \\udbff'
}

@test "canon: invalid UTF-8 is refused" {
	refused $'"\xff"' 'invalid UTF-8'
	refused $'\xff' 'invalid UTF-8'
	refused $'"a\x80"' 'invalid UTF-8'
	refused $'"\xed\xa0\x80"' 'invalid UTF-8'	# encoded surrogate
	refused $'"\xf4\x90\x80\x80"' 'invalid UTF-8'	# above U+10FFFF
	refused $'"\xe2\x82"' 'invalid UTF-8'		# cut short
}

@test "canon: overlong UTF-8 is refused" {
	refused $'"\xc0\xaf"' 'invalid UTF-8'
	refused $'"\xe0\x80\xaf"' 'invalid UTF-8'
	refused $'"\xf0\x80\x80\xaf"' 'invalid UTF-8'
}

@test "canon: NaN and Infinity are refused" {
	refused 'NaN' 'NaN'
	refused '[Infinity]' 'Infinity'
	refused '{"n":-Infinity}' 'Infinity'
}

@test "canon: numbers that overflow are refused" {
	refused '1e400' 'out of range'
	refused '[-1.8e308]' 'out of range'
	refused "1$(printf '%0400d' 0)" 'out of range'
}

@test "canon: non-JSON numbers are refused" {
	refused '01' 'invalid number "01"'
	refused '+1' 'invalid number "\+1"'
	refused '.5' 'invalid number "\.5"'
	refused '1.' 'invalid number "1\."'
	refused '[1e]' 'invalid number "1e"'
	refused '-' 'invalid number'
	refused '0x10' 'invalid number "0x10"'
}

@test "canon: raw control characters and NUL bytes are refused" {
	refused $'"a\tb"' 'control character'
	printf '"a\0b"\n' >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	[ -z "$output" ]
	assert_match 'NUL' "$stderr"
}

@test "canon: truncated and malformed values are refused" {
	refused '[1,' 'truncated|end of input'
	refused '{"a":1' 'truncated|end of input'
	refused '"abc' 'truncated|end of input'
	refused '{"a" 1}' "expected ':'"
	refused '[1 2]' "expected ','"
	refused '{"a":1,}' 'expected member name'
	refused 'nul' 'invalid literal'
	refused '"\x41"' 'invalid escape'
}

@test "canon: nesting 64 deep is accepted, 65 refused" {
	local open close

	printf -v open '%64s' ''
	printf -v close '%64s' ''
	open=${open// /[}
	close=${close// /]}
	canonical "$open$close" "$open$close"
	refused "[$open$close]" 'nesting deeper than 64'
	refused "$(printf '{"a":%.0s' $(seq 65))1$(printf '}%.0s' $(seq 65))" \
	    'nesting deeper than 64'
}

@test "canon: a good value after a bad one is still printed" {
	printf '{"a":1,"a":2}\n{"b":1,"a":NaN}\n{"b":2,"a":1}\n"\\ud800"\n' \
	    >"$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr ns-sign --canonical <"$BATS_TEST_TMPDIR/in"
	[ "$output" = '{"a":1,"b":2}' ]
	[ "${#stderr_lines[@]}" -eq 3 ]
	assert_match '^ns-sign: line 1: duplicate key' "${stderr_lines[0]}"
	assert_match '^ns-sign: line 2: .*NaN' "${stderr_lines[1]}"
	assert_match '^ns-sign: line 4: lone surrogate' "${stderr_lines[2]}"
}

@test "canon: reasons quote at most a short excerpt of the input" {
	local key

	printf -v key '%300s' ''
	key=${key// /k}
	refused "{\"$key\":1,\"$key\":2}" 'duplicate key'
	[ "${#stderr}" -lt 120 ]
}
