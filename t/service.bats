#!/usr/bin/env bats
# share/service/: the systemd unit's exposure, what make install puts
# where, and the runit and s6 scripts.

load helpers/common
bats_require_minimum_version 1.5.0

setup() {
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	SVC=$ROOT/share/service
	T=$BATS_TEST_TMPDIR
}

@test "service: systemd-analyze security rates the unit under 2.0" {
	command -v systemd-analyze >/dev/null ||
		skip "systemd-analyze is not installed (Debian package systemd)"
	run systemd-analyze security --offline=yes "$SVC/northstar.service"
	score=$(sed -n 's/.*Overall exposure level for northstar.service: \([0-9.]*\).*/\1/p' <<<"$output")
	[ -n "$score" ] || skip "systemd-analyze security --offline cannot run here: ${output:0:200}"
	echo "# exposure $score" >&3
	awk -v s="$score" 'BEGIN { exit !(s < 2.0) }'
	# and it knows every setting
	! grep -q "Unknown key" <<<"$output"
}

@test "service: make install DESTDIR=... PREFIX=/usr puts units naming the installed ns-node; uninstall takes them away" {
	run -0 make -C "$ROOT" --no-print-directory install DESTDIR="$T/dest" PREFIX=/usr
	share=$T/dest/usr/share/northstar/service
	unit=$share/northstar.service
	[ -f "$unit" ]
	[ "$(grep '^ExecStart=' "$unit")" = "ExecStart=/usr/bin/ns-node run /var/lib/northstar" ]
	! grep -q /usr/local "$unit"
	for f in runit/northstar/run runit/northstar/finish runit/northstar/log/run \
	    s6/northstar/run s6/northstar/finish s6/northstar/log/run; do
		[ -x "$share/$f" ]
		! grep -q /usr/local "$share/$f"
	done
	grep -q 'exec chpst -u northstar /usr/bin/ns-node run /var/lib/northstar' "$share/runit/northstar/run"
	grep -q 'exec s6-setuidgid northstar /usr/bin/ns-node run /var/lib/northstar' "$share/s6/northstar/run"
	run -0 "$T/dest/usr/bin/ns-node" --help
	assert_match "ns-node run DIR"
	run -0 "$T/dest/usr/bin/ns-node" --version
	run -0 make -C "$ROOT" --no-print-directory uninstall DESTDIR="$T/dest" PREFIX=/usr
	run -0 find "$T/dest" ! -type d
	[ -z "$output" ]
	[ ! -e "$T/dest/usr/share/northstar" ]
}

@test "service: runit's finish takes the service down after exit 1 or 2, not otherwise" {
	mkdir "$T/bin" "$T/sv"
	printf '#!/bin/sh\necho "sv $*" >>"%s/sv.calls"\n' "$T" >"$T/bin/sv"
	chmod 755 "$T/bin/sv"
	cd "$T/sv"
	for rc in 1 2; do
		rm -f "$T/sv.calls"
		PATH=$T/bin:$PATH run -0 "$SVC/runit/northstar/finish" "$rc" 0
		[ "$(cat "$T/sv.calls")" = "sv down ." ]
		assert_match "ns-node exited $rc: not restarting"
	done
	for args in "0 0" "-1 15" "111 0"; do
		rm -f "$T/sv.calls"
		# shellcheck disable=SC2086
		PATH=$T/bin:$PATH run -0 "$SVC/runit/northstar/finish" $args
		[ ! -e "$T/sv.calls" ]
	done
}

@test "service: s6's finish exits 125 (do not restart) after exit 1 or 2, else 0" {
	run -125 "$SVC/s6/northstar/finish" 1 0
	run -125 "$SVC/s6/northstar/finish" 2 0
	run -0 "$SVC/s6/northstar/finish" 0 0
	run -0 "$SVC/s6/northstar/finish" 256 15
}

@test "service: runit and s6 each log through a log/ service into /var/log/northstar" {
	for f in runit/northstar/log/run s6/northstar/log/run \
	    runit/northstar/run runit/northstar/finish s6/northstar/run s6/northstar/finish; do
		[ -x "$SVC/$f" ]
		sh -n "$SVC/$f"
	done
	grep -q '^exec svlogd -tt /var/log/northstar$' "$SVC/runit/northstar/log/run"
	grep -q '^exec s6-log .* /var/log/northstar$' "$SVC/s6/northstar/log/run"
	grep -q '^# .*/var/log/northstar/current' "$SVC/runit/northstar/log/run"
	grep -q '^# .*/var/log/northstar/current' "$SVC/s6/northstar/log/run"
}
