# Loaded by every test file: programs under test first on PATH, fixtures,
# and a few assertions.
: "${NS_BIN:=$BATS_TEST_DIRNAME/../bin}"
export PATH="$NS_BIN:$BATS_TEST_DIRNAME/../share:$PATH"
FIX="$BATS_TEST_DIRNAME/fixtures"
export LC_ALL=C.UTF-8

# Copy a fixture key into the test's tmp dir with mode 0600 (git does not
# keep modes other than the executable bit) and print its path.
fixture_key() {
	local dst="$BATS_TEST_TMPDIR/$1.key"
	cp "$FIX/keys/$1.key" "$dst"
	chmod 600 "$dst"
	printf '%s\n' "$dst"
}

# assert_jq FILTER [JSON]: jq -e FILTER on $output (or the given text).
assert_jq() {
	local json="${2-$output}"
	if ! printf '%s\n' "$json" | jq -e "$1" >/dev/null; then
		echo "assert_jq failed: $1" >&2
		echo "on: ${json:0:2000}" >&2
		return 1
	fi
}

# assert_match REGEX [TEXT]
assert_match() {
	local text="${2-$output}"
	if ! [[ "$text" =~ $1 ]]; then
		echo "assert_match failed: /$1/" >&2
		echo "on: ${text:0:2000}" >&2
		return 1
	fi
}
