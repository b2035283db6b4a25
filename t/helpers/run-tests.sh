#!/bin/sh
# Run the bats suite (or the files given) and end with one summary line
# "N passed, N failed, N skipped"; exit 1 if anything failed or a plan came
# up short.
cd "$(dirname "$0")/../.." || exit 2
[ $# -eq 0 ] && set -- t/*.bats
jobs=
if command -v parallel >/dev/null 2>&1 && [ "${NS_TEST_JOBS:-2}" -gt 1 ]; then
	jobs="--jobs ${NS_TEST_JOBS:-2} --no-parallelize-within-files"
fi
# shellcheck disable=SC2086
bats --tap $jobs "$@" 2>&1 | awk '
	{ print; fflush() }
	/^1\.\.[0-9]+/ { split($0, a, "\\.\\."); plan += a[2] }
	/^ok / { if ($0 ~ /# skip/) skipped++; else passed++ }
	/^not ok / { failed++ }
	END {
		short = plan - passed - failed - skipped
		if (short > 0) failed += short
		printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped
		exit failed > 0 || plan == 0
	}'
