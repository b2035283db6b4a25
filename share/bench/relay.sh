#!/bin/sh
# make bench-relay, and the very last part of make bench: the figures of a
# live stream relayed over real nodes, with relays killed under it and its
# owner node restarted, and of the same relay simulated over more nodes.
#
#   1. N nodes (ns-node init, ns-node run) on 127.0.0.1, NS_RELAY_FANOUT in
#      every config; alice creates a stream on node 0, the owner node; user
#      i joins it through node i and watches there twice: ns-client stream
#      watch (the bytes, to a file) and a WebSocket client that stamps the
#      receipt of every chunk (the timing).  Every viewer node has a parent
#      in its relay.stats before anything is pushed.
#   2. calm: alice pushes random bytes at the stream's rate with ns-client
#      stream push, paced in blocks of one chunk; no failure.  Each
#      viewer's longest wait between two chunks here is its baseline.
#   3. failure: the same for longer, while relays (viewer nodes with
#      children) are killed with kill -9, one at a time, each once the
#      tree has mended from the one before (no survivor names a dead node
#      as its parent any more).
#   4. owner restart: the same again, while the owner node is stopped
#      (SIGTERM to its ns-node) and run again on its directory and port;
#      the pusher connects again and sends what was not in.
#   5. ns-relay sim over as many nodes, and over 1000, with relays killed.
#
# Each phase checks that every surviving viewer's output is byte-identical
# to the bytes pushed (cmp), and counts the chunks each viewer's stamping
# client did not get.  Figures: chunks lost; the longest time a viewer went
# without a chunk, calm, and in the 10 s after each kill, against its calm
# baseline and the chunk interval; latency from the chunk's creation (its
# ts, the pusher's clock, the same machine's) to its receipt, over every
# viewer and over the deepest ones; chunks sent per chunk pushed per viewer
# (relay.stats "sent": two parents make it about 2); CPU of all the nodes
# per relayed Mbit/s, and the owner node's.
#
# Figures and goals are reported, a missed goal is not an error: the exit
# status is 1 only on real trouble (a surviving viewer's bytes differ from
# the bytes pushed, a chunk lost, the push failed, viewers that do not
# resume after the owner's restart), 2 when the bench cannot run.
#   NS_BIN                 directory of the programs under test
#   BENCH_RELAY_NODES      nodes, the owner's included (default 30)
#   BENCH_RELAY_FANOUT     NS_RELAY_FANOUT of every node (default 4)
#   BENCH_RELAY_KBPS       the stream's rate in kbit/s (default 2000)
#   BENCH_RELAY_CHUNK_MS   the chunk interval: a chunk of KBPS * MS / 8
#                          bytes every MS ms (default 100)
#   BENCH_RELAY_SECONDS    seconds of the failure phase (default 30)
#   BENCH_RELAY_KILL       relays killed in it, one at a time (default 3)
#   BENCH_RELAY_CALM       seconds of the calm phase (default 15)
#   BENCH_RELAY_RESTART    seconds of the owner-restart phase (default 10)
#   BENCH_RELAY_SUMMARY    a file to append the summary lines to (run.sh's)
#   BENCH_RELAY_KEEP       1: keep the nodes' directories (logs) after the run
# NS_SYNC and the other NS_* node settings in the environment go into
# every node's config.  Everything runs on 127.0.0.1; every process
# started here is stopped on exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${NS_BIN:=$root/bin}"
PATH=$NS_BIN:$PATH
export PATH
NN=${BENCH_RELAY_NODES:-30}
FANOUT=${BENCH_RELAY_FANOUT:-4}
KBPS=${BENCH_RELAY_KBPS:-2000}
CMS=${BENCH_RELAY_CHUNK_MS:-100}
SECS=${BENCH_RELAY_SECONDS:-30}
KILL=${BENCH_RELAY_KILL:-3}
CALM=${BENCH_RELAY_CALM:-15}
RSECS=${BENCH_RELAY_RESTART:-10}
WSC=$root/t/helpers/wsc
NODE="sh $root/share/ns-node"
UP_S=60		# most time for the nodes to come up, or to come back
TREE_S=60	# most time for every viewer node to have a parent
DRAIN_S=20	# most time for the viewers' last bytes after a push ends
SETTLE_S=15	# most time for the tree to mend after a kill
WINDOW_MS=10000	# the window after a kill whose gaps are the kill's

# the physical path: ns-node resolves its directory so, and the nodes'
# processes are told apart by it
tmp=$(mktemp -d)
tmp=$(cd "$tmp" && pwd -P)
summary=$tmp/summary
: >"$summary"
: >"$tmp/bg"
trouble=0
NODES_STARTED=

say() { printf '%s\n' "$*"; }
die() { printf 'bench-relay: %s\n' "$*" >&2; exit 2; }
now() { date +%s.%N; }
ms() { date +%s%3N; }
since() { echo "$1 $(now)" | awk '{ printf "%.1f", $2 - $1 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
sum_line() { printf '  %-44s %-28s %s\n' "$1" "$2" "$3" >>"$summary"; }
goal_le() { awk "BEGIN { exit !($1 <= $2) }" && echo met || echo MISSED; }
# min, median and max of the numbers on stdin, with FORMAT for each
mmm() {
	sort -n | awk -v f="$1" '{ v[NR] = $1 }
	END {
		if (NR == 0) { print "none"; exit }
		printf f " / " f " / " f "\n", v[1], v[int((NR + 1) / 2)], v[NR]
	}'
}
# pct P: the P-th percentile of the numbers on stdin (nearest rank), or -
pct() {
	sort -n | awk -v p="$1" '{ v[NR] = $1 }
	END {
		if (NR == 0) { print "-"; exit }
		r = int(NR * p / 100); if (r < NR * p / 100) r++; if (r < 1) r = 1
		print v[r]
	}'
}
# indices FIRST LAST: the numbers FIRST to LAST, or nothing
indices() { [ "$1" -gt "$2" ] || seq "$1" "$2"; }
# without LIST WORD...: the words of LIST that are not among WORDs
without() {
	wo_l=$1
	shift
	for wo_w in $wo_l; do
		case " $* " in *" $wo_w "*) ;; *) printf '%s ' "$wo_w" ;; esac
	done
}

# --- the nodes --------------------------------------------------------------

# every node relays with fan-out FANOUT
NS_RELAY_FANOUT=$FANOUT
export NS_RELAY_FANOUT
. "$here/nodes.sh"

# procs: "NODE PID" for every process of every running node: its ns-node
# and all that descends from it (the supervising shells and the stages)
procs() {
	for i in $(indices 0 $((NN - 1))); do
		p=$(pid_of "$i")
		[ -z "$p" ] || echo "$i $p"
	done >"$tmp/roots"
	ps -e -o pid=,ppid= | awk 'FNR == NR { root[$2] = $1; next }
	{ kids[$2] = kids[$2] " " $1 }
	END {
		for (r in root) {
			n = 1; stack[1] = r
			while (n > 0) {
				p = stack[n--]
				print root[r], p
				k = split(kids[p], c, " ")
				for (j = 1; j <= k; j++)
					stack[++n] = c[j]
			}
		}
	}' "$tmp/roots" -
}

# strays DIR: pids of processes whose stdin is in DIR (a node's stages read
# their fifo, its shells the lock), however they lost their ns-node
strays() {
	# shellcheck disable=SC2012
	ls -l /proc/[0-9]*/fd/0 2>/dev/null |
		awk -v d="$1/" 'index($NF, d) == 1 { split($(NF - 2), a, "/"); print a[3] }'
}

# cpu FILE: "NODE TICKS" for every running node: user and system time of
# its processes, their reaped children's included; and "machine TICKS",
# the busy time of the whole machine
cpu() {
	awk '/^cpu / { print "machine", $2 + $3 + $4 + $7 + $8 + $9; exit }' \
	    /proc/stat >"$1.m"
	procs >"$tmp/procs"
	# shellcheck disable=SC2046
	cat $(awk '{ printf "/proc/%s/stat ", $2 }' "$tmp/procs") 2>/dev/null |
		awk 'FNR == NR { node[$2] = $1; next }
		($1 in node) { t[node[$1]] += $14 + $15 + $16 + $17 }
		END { for (n in t) print n, t[n] }' "$tmp/procs" - >"$1"
	cat "$1.m" >>"$1"
	rm -f "$1.m"
	# this bench's own clients: the processes it started that are no
	# node (watchers, stamping watchers, pusher, pacer)
	ps -o pid= --ppid $$ | awk 'FNR == NR { node[$2] = 1; next }
	    !($1 in node) { printf "/proc/%s/stat\n", $1 }' "$tmp/roots" - |
		xargs cat 2>/dev/null |
		awk '{ t += $14 + $15 + $16 + $17 } END { print "clients", t + 0 }' >>"$1"
}

# node_kill I: kill -9 node I and every process of it at once.  They are
# all stopped first: killed one by one, the node's watcher would see its
# ns-node die and start stopping the stages cleanly.  What they used of
# the CPU, and the node's last relay.stats, are kept in $tmp/cpu.dead and
# $tmp/stats.dead.
node_kill() {
	procs >"$tmp/procs"
	pids=$(awk -v n="$1" '$1 == n { printf " %s", $2 }' "$tmp/procs")
	# shellcheck disable=SC2086
	kill -STOP $pids 2>/dev/null || :
	# shellcheck disable=SC2046
	cat $(for p in $pids; do printf '/proc/%s/stat ' "$p"; done) 2>/dev/null |
		awk -v n="$1" '{ t += $14 + $15 + $16 + $17 } END { print n, t + 0 }' \
		>>"$tmp/cpu.dead"
	cp "$(dir_of "$1")/run/relay.stats" "$tmp/stats.dead.$1" 2>/dev/null || :
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || :
	# shellcheck disable=SC2046
	kill -KILL $(strays "$(dir_of "$1")") 2>/dev/null || :
	wait "$(pid_of "$1")" 2>/dev/null || :
	eval "PID_$1="
}

# node_stop I: SIGTERM to node I's ns-node, as a service manager stops it;
# 20 s for it to stop, then SIGKILL whatever is left of it.  Sets STOP_S.
node_stop() {
	ns_t0=$(now)
	procs >"$tmp/procs"
	ns_pids=$(awk -v n="$1" '$1 == n { printf " %s", $2 }' "$tmp/procs")
	ns_p=$(pid_of "$1")
	ns_d=$(dir_of "$1")
	kill -TERM "$ns_p" 2>/dev/null || :
	ns_n=0
	while kill -0 "$ns_p" 2>/dev/null && [ $ns_n -lt 200 ]; do
		sleep 0.1
		ns_n=$((ns_n + 1))
	done
	# what is left of it: an argument names its directory, or its stdin
	# is in it (a pid may have been reused)
	for ns_q in $ns_pids $(strays "$ns_d"); do
		if tr '\0' '\n' 2>/dev/null <"/proc/$ns_q/cmdline" |
		    grep -q -x -F -e "$ns_d" -e "$ns_d/" ||
		    tr '\0' '\n' 2>/dev/null <"/proc/$ns_q/cmdline" |
		    grep -q -F -- "$ns_d/" ||
		    readlink "/proc/$ns_q/fd/0" 2>/dev/null | grep -q -F -- "$ns_d/"; then
			kill -KILL "$ns_q" 2>/dev/null || :
		fi
	done
	wait "$ns_p" 2>/dev/null || :
	eval "PID_$1="
	STOP_S=$(since "$ns_t0")
}

# nodes_stop: SIGTERM to every ns-node at once, 20 s for them to stop, then
# SIGKILL whatever is left of any node
nodes_stop() {
	[ -n "$NODES_STARTED" ] || return 0
	pids=$(procs | awk '{ print $2 }')
	for i in $(indices 0 $((NN - 1))); do
		p=$(pid_of "$i")
		[ -z "$p" ] || kill -TERM "$p" 2>/dev/null || :
	done
	n=0
	for i in $(indices 0 $((NN - 1))); do
		p=$(pid_of "$i")
		[ -n "$p" ] || continue
		while kill -0 "$p" 2>/dev/null && [ $n -lt 200 ]; do
			sleep 0.1
			n=$((n + 1))
		done
	done
	for p in $pids $(strays "$tmp"); do
		# only what still belongs to a node: stdin in $tmp, or the
		# command line naming it (a pid may have been reused)
		if grep -q -a -F -- "$tmp/" "/proc/$p/cmdline" 2>/dev/null ||
		    readlink "/proc/$p/fd/0" 2>/dev/null | grep -q -F -- "$tmp/"; then
			kill -KILL "$p" 2>/dev/null || :
		fi
	done
	for i in $(indices 0 $((NN - 1))); do
		p=$(pid_of "$i")
		[ -z "$p" ] || wait "$p" 2>/dev/null || :
	done
	NODES_STARTED=
}

# bg_stop PID...: SIGTERM to the clients started here that still run, and
# wait for them (a pid whose parent is not this shell is no longer ours)
bg_stop() {
	for p in "$@"; do
		[ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = $$ ] &&
			kill -TERM "$p" 2>/dev/null || :
	done
	for p in "$@"; do
		wait "$p" 2>/dev/null || :
	done
}

cleanup() {
	set +e
	# the clients first (pusher, pacer, watchers): they would only see
	# their nodes go
	# shellcheck disable=SC2046
	bg_stop $(cat "$tmp/bg")
	nodes_stop
	if [ "${BENCH_RELAY_KEEP:-0}" = 1 ]; then
		echo "bench-relay: the nodes' directories are kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# show_logs I...: the last lines of each node's log, as evidence
show_logs() {
	for i in "$@"; do
		say "      node $i ($(dir_of "$i")/log), last lines:"
		tail -n 8 "$(dir_of "$i")/log" | sed 's/^/        /'
	done
}

# mawk fills its buffer before it looks at a line, unless told: the last
# chunk of a phase would wait for the next one
AWK_LINES=
! awk -W version 2>&1 | grep -q mawk || AWK_LINES="-W interactive"
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

# --- the relay's state --------------------------------------------------------

# stats NODE...: $STATS (default $tmp/stats), a line per node that has
# the stream in its relay.stats: "NODE PARENTS CHILDREN IN DUPLICATES SENT
# SKIPPED EDGE DELIVERED", PARENTS the parents' node numbers joined by
# commas (- for none, ? for a DID that is no node here)
stats() {
	: "${STATS:=$tmp/stats}"
	st_f=
	for st_i in "$@"; do
		[ ! -s "$(dir_of "$st_i")/run/relay.stats" ] ||
			st_f="$st_f $(dir_of "$st_i")/run/relay.stats"
	done
	: >"$STATS"
	[ -n "$st_f" ] || return 0
	# shellcheck disable=SC2086
	jq -r --arg s "$SPACE" '(input_filename |
	    capture("/n(?<i>[0-9]+)/run/relay.stats$").i) as $i |
	    .streams[] | select(.space == $s) |
	    [$i, (.parents | join(",")), .children, .in, .duplicates,
	     .sent, .skipped, .edge, .delivered] | @tsv' $st_f 2>/dev/null |
		awk -F '\t' 'FNR == NR { split($0, d, " "); node[d[1]] = d[2]; next }
		{
			k = split($2, p, ","); s = ""
			for (j = 1; j <= k; j++)
				s = s (j > 1 ? "," : "") (p[j] in node ? node[p[j]] : "?")
			$2 = (s == "" ? "-" : s)
			print
		}' "$tmp/dids" - >"$STATS" || :
}

# counters FILE NODE...: "NODE IN DUPLICATES SENT SKIPPED" now, for each
# live NODE and each dead one as it was last seen (stats.dead.NODE)
counters() {
	cn_f=$1
	shift
	stats "$@"
	awk '{ print $1, $4, $5, $6, $7 }' "$tmp/stats" >"$cn_f"
	for cn_i in $DEAD; do
		[ -s "$tmp/stats.dead.$cn_i" ] || continue
		jq -r --arg s "$SPACE" --arg i "$cn_i" '.streams[] |
		    select(.space == $s) |
		    "\($i) \(.in) \(.duplicates) \(.sent) \(.skipped)"' \
		    "$tmp/stats.dead.$cn_i" >>"$cn_f" 2>/dev/null || :
	done
}

# expected_tree NODE...: $tmp/tree, "NODE INDEX PARENTS" for each viewer
# NODE, its place in the tree the owner node computes for them all
# (ns-relay tree, the same code), PARENTS as stats gives them
expected_tree() {
	for et_i in "$@"; do
		eval "echo \"\$DID_$et_i\""
	done | jq -R . | jq -s -c --arg s "$SPACE" --arg o "$DID_0" \
	    '{space: $s, owner: $o, nodes: .}' |
		ns-relay tree --fanout "$FANOUT" >"$tmp/tree.json" ||
		die "ns-relay tree failed"
	jq -r 'select(.index > 0) | [.node, .index, (.parents | join(","))] |
	    @tsv' "$tmp/tree.json" |
		awk -F '\t' 'FNR == NR { split($0, d, " "); node[d[1]] = d[2]; next }
		{
			k = split($3, p, ","); s = ""
			for (j = 1; j <= k; j++)
				s = s (j > 1 ? "," : "") (p[j] in node ? node[p[j]] : "?")
			print node[$1], $2, s
		}' "$tmp/dids" - >"$tmp/tree"
}

# misplaced: how many viewer nodes in $tmp/stats have other parents than
# $tmp/tree gives them (in either order)
misplaced() {
	awk 'function key(s,   p, k) {
		k = split(s, p, ",")
		return (k == 2 && p[1] + 0 > p[2] + 0) ? p[2] "," p[1] : s
	}
	FNR == NR { want[$1] = key($3); next }
	($1 in want) { seen[$1] = 1; if (key($2) != want[$1]) n++ }
	END { for (v in want) if (!(v in seen)) n++; print n + 0 }' \
	    "$tmp/tree" "$tmp/stats"
}

# depths FILE: $tmp/depth, "NODE DEPTH" for the viewer nodes of FILE's
# "NODE PARENTS ..." lines, the depth one more than the shallower
# parent's (the owner node's is 0)
depths() {
	awk '{ par[$1] = $2 }
	END {
		d[0] = 0
		for (round = 0; round < 64; round++) {
			more = 0
			for (i in par) {
				k = split(par[i], p, ","); m = -1
				for (j = 1; j <= k; j++)
					if ((p[j] in d) && (m < 0 || d[p[j]] + 1 < m))
						m = d[p[j]] + 1
				if (m >= 0 && (!(i in d) || m < d[i])) { d[i] = m; more = 1 }
			}
			if (!more) break
		}
		for (i in par)
			print i, ((i in d) ? d[i] : -1)
	}' "$1" >"$tmp/depth"
}

# trace_start NODE...: every 0.5 s, the stats of each NODE with the
# wall-clock ms in front, into $tmp/trace: what the relays did, as
# evidence when a viewer stalls.  Sets TRACE_PID.
trace_start() {
	(
		STATS=$tmp/stats.trace
		while :; do
			tr_t=$(ms)
			stats "$@"
			sed "s/^/$tr_t /" "$STATS" >>"$tmp/trace"
			sleep 0.5
		done
	) &
	TRACE_PID=$!
	echo "$!" >>"$tmp/bg"
}

# trace_show T0 NODE...: each NODE's relay.stats as traced from T0 on,
# where they changed
trace_show() {
	ts_t0=$1
	shift
	for ts_i in "$@"; do
		say "      node $ts_i from the stop on (ms, parents, children, in, duplicates, sent, skipped, edge, delivered):"
		awk -v n="$ts_i" -v t0="$ts_t0" '$2 == n && $1 >= t0 - 1000 {
			k = $3
			for (j = 4; j <= NF; j++) k = k " " $j
			if (k != last) printf "        %+d: %s\n", $1 - t0, k
			last = k
		}' "$tmp/trace" | tail -n 12
	done
}

# --- the clients --------------------------------------------------------------

# stamp_start I: user i's stamping watcher on node I, for the whole run:
# wsc --stamp logs in and sends stream.watch; awk keeps of each chunk
# notification "RECEIPT_MS N TS" in $tmp/stamp.I (the chunk's data would
# be megabytes), of any other message its first 300 bytes
stamp_start() {
	mkfifo "$tmp/stamp.$1.fifo"
	# shellcheck disable=SC2086
	awk $AWK_LINES '/"method":"chunk"/ {
		n = substr($0, index($0, "\"n\":") + 4)
		t = substr($0, index($0, "\"ts\":") + 5)
		match(n, /^[0-9]+/); n = substr(n, 1, RLENGTH)
		match(t, /^[0-9]+/); t = substr(t, 1, RLENGTH)
		print $1, n, t
		fflush()
		next
	}
	{ print substr($0, 1, 300); fflush() }' <"$tmp/stamp.$1.fifo" \
	    >"$tmp/stamp.$1" &
	echo "$!" >>"$tmp/bg"
	jq -nc --arg s "$SPACE" \
	    '{jsonrpc: "2.0", id: "w", method: "stream.watch", params: {space: $s}}' |
		"$WSC" -p "$(port_of "$1")" -k "$tmp/u$1.key" --stamp \
		    --quiet 100000000 --timeout 100000 >"$tmp/stamp.$1.fifo" \
		    2>"$tmp/stamp.$1.err" &
	eval "STAMP_$1=\$!"
	echo "$!" >>"$tmp/bg"
}

# watch_start PHASE I...: ns-client stream watch of user i on node I, its
# bytes in $tmp/out.PHASE.I; waits until each watch is made (30 s)
watch_start() {
	ws_p=$1
	shift
	for ws_i in "$@"; do
		ns-client -v -k "$tmp/u$ws_i.key" -u "$(url_of "$ws_i")" \
		    stream watch "$SPACE" >"$tmp/out.$ws_p.$ws_i" \
		    2>"$tmp/out.$ws_p.$ws_i.err" &
		eval "WATCH_$ws_i=\$!"
		echo "$!" >>"$tmp/bg"
	done
	ws_end=$(($(date +%s) + 30))
	for ws_i in "$@"; do
		until grep -q 'watching' "$tmp/out.$ws_p.$ws_i.err"; do
			if [ "$(date +%s)" -ge "$ws_end" ] ||
			    ! kill -0 "$(eval "echo \$WATCH_$ws_i")" 2>/dev/null; then
				sed 's/^/      /' "$tmp/out.$ws_p.$ws_i.err" | head -5
				show_logs "$ws_i"
				die "the watch on node $ws_i did not start"
			fi
			sleep 0.1
		done
	done
}

# watch_stop I...: end the ns-client watches
watch_stop() {
	ws_pids=
	for ws_i in "$@"; do
		ws_pids="$ws_pids $(eval "echo \${WATCH_$ws_i:-}")"
		eval "WATCH_$ws_i="
	done
	# shellcheck disable=SC2086
	bg_stop $ws_pids
}

# pace FILE: FILE's bytes on stdout in blocks of CB bytes, block k at
# k * CMS ms from the start (late blocks go at once, so the rate holds on
# average); stops when the reader does
pace() {
	exec 7<"$1"
	pc_n=$(($(stat -c %s "$1") / CB))
	pc_t0=$(date +%s%N)
	pc_k=0
	while [ $pc_k -lt $pc_n ]; do
		dd bs="$CB" count=1 iflag=fullblock <&7 2>/dev/null || exit 0
		pc_k=$((pc_k + 1))
		pc_d=$(((pc_t0 + pc_k * CMS * 1000000 - $(date +%s%N)) / 1000000))
		[ $pc_d -le 0 ] ||
			sleep "$((pc_d / 1000)).$(printf %03d $((pc_d % 1000)))"
	done
	exec 7<&-
}

# push_start PHASE SECONDS: $tmp/in.PHASE, SECONDS of random bytes at the
# stream's rate, pushed by alice through node 0 in the background.  Sets
# PUSH_PID, PACE_PID, PUSH_T0 (ms).
push_start() {
	head -c $((SECS_CHUNKS_PER_S * $2 * CB)) /dev/urandom >"$tmp/in.$1"
	rm -f "$tmp/push.fifo"
	mkfifo "$tmp/push.fifo"
	PUSH_T0=$(ms)
	ns-client -v -k "$ALICE" -u "$(url_of 0)" stream push "$SPACE" \
	    --chunk "$CB" --flush $((CMS / 2)) --retry 60 \
	    <"$tmp/push.fifo" >"$tmp/push.$1.out" 2>"$tmp/push.$1.err" &
	PUSH_PID=$!
	echo "$!" >>"$tmp/bg"
	pace "$tmp/in.$1" >"$tmp/push.fifo" &
	PACE_PID=$!
	echo "$!" >>"$tmp/bg"
}

# push_wait PHASE: wait for the pusher; 1 when it failed.  Sets PUSH_S
# (seconds from the start to its exit), FIRST and LAST (the chunk numbers
# it pushed).
push_wait() {
	pw_rc=0
	wait "$PUSH_PID" || pw_rc=$?
	wait "$PACE_PID" 2>/dev/null || :
	PUSH_S=$(calc %.1f "($(ms) - $PUSH_T0) / 1000")
	# "stream S: N chunks (A to B), X bytes pushed; ..."
	FIRST=$(sed -n 's/.* chunks (\([0-9]*\) to \([0-9]*\)).*/\1/p' "$tmp/push.$1.err" | tail -n 1)
	LAST=$(sed -n 's/.* chunks (\([0-9]*\) to \([0-9]*\)).*/\2/p' "$tmp/push.$1.err" | tail -n 1)
	if [ $pw_rc -ne 0 ] || [ -z "$FIRST" ] || [ -z "$LAST" ]; then
		say "    TROUBLE: the push failed (status $pw_rc):"
		sed 's/^/      /' "$tmp/push.$1.err" | tail -n 5
		trouble=1
		return 1
	fi
	PUSH_NOTE=$(sed -n 's/.*bytes pushed; //p' "$tmp/push.$1.err" | tail -n 1)
}

# drain PHASE I...: wait (DRAIN_S at most) until each viewer's output has
# every byte pushed
drain() {
	dr_p=$1
	shift
	dr_want=$(stat -c %s "$tmp/in.$dr_p")
	dr_end=$(($(date +%s) + DRAIN_S))
	for dr_i in "$@"; do
		while [ "$(stat -c %s "$tmp/out.$dr_p.$dr_i")" -lt "$dr_want" ] &&
		    [ "$(date +%s)" -lt "$dr_end" ]; do
			sleep 0.2
		done
	done
}

# same PHASE I...: cmp each viewer's output with the bytes pushed.  Sets
# SAME (how many are identical) and DIFFER ("NODE:BYTES" of the others)
same() {
	sm_p=$1
	shift
	SAME=0 DIFFER=
	for sm_i in "$@"; do
		if cmp -s "$tmp/in.$sm_p" "$tmp/out.$sm_p.$sm_i"; then
			SAME=$((SAME + 1))
			# megabytes each: only those that differ are kept
			rm -f "$tmp/out.$sm_p.$sm_i"
		else
			DIFFER="$DIFFER $sm_i:$(stat -c %s "$tmp/out.$sm_p.$sm_i")"
		fi
	done
}

# timing PHASE KILLS I...: from the stamping watchers' logs of viewers I,
# for the chunks FIRST to LAST: $tmp/view.PHASE, a line per viewer "NODE
# GOT LOST DUPLICATES DISORDERED LONGEST_GAP_MS GAP_AFTER_KILL_1 ...";
# $tmp/lat.PHASE, "NODE LATENCY_MS" per chunk received.  KILLS are the
# wall-clock ms of the kills, whose windows are WINDOW_MS long; a gap is
# the kill's when it ends in the kill's window.
timing() {
	tm_p=$1 tm_k=$2
	shift 2
	for tm_i in "$@"; do
		awk -v i="$tm_i" '$2 ~ /^[0-9]+$/ && NF == 3 { print i, $0 }' \
		    "$tmp/stamp.$tm_i"
	done | awk -v a="$FIRST" -v b="$LAST" -v kills="$tm_k" -v w="$WINDOW_MS" \
	    -v lat="$tmp/lat.$tm_p" '
	BEGIN { nk = split(kills, kt, " ") }
	$3 < a || $3 > b { next }
	{
		v = $1; t = $2; n = $3
		if (!(v in got)) { order[++nv] = v; got[v] = 0; gap[v] = 0 }
		if ((v, n) in seen) { dup[v]++; next }
		seen[v, n] = 1
		got[v]++
		if ((v in last) && n < last[v]) bad[v]++
		if (!(v in last) || n > last[v]) last[v] = n
		if (v in prev) {
			g = t - prev[v]
			if (g > gap[v]) gap[v] = g
			for (k = 1; k <= nk; k++)
				if (t > kt[k] && t <= kt[k] + w && g > kg[v, k])
					kg[v, k] = g
		}
		prev[v] = t
		print v, t - $4 > lat
	}
	END {
		for (j = 1; j <= nv; j++) {
			v = order[j]
			printf "%s %d %d %d %d %d", v, got[v], b - a + 1 - got[v], dup[v], bad[v], gap[v]
			for (k = 1; k <= nk; k++)
				printf " %d", kg[v, k]
			printf "\n"
		}
	}'  >"$tmp/view.$tm_p"
	# a viewer that got nothing has no line
	for tm_i in "$@"; do
		grep -q "^$tm_i " "$tmp/view.$tm_p" ||
			echo "$tm_i 0 $((LAST - FIRST + 1)) 0 0 0" >>"$tmp/view.$tm_p"
	done
	[ -e "$tmp/lat.$tm_p" ] || : >"$tmp/lat.$tm_p"
}

# lost PHASE: LOST, the (viewer, chunk) pairs missing; LOST_AT, the
# viewers missing some, "NODE:COUNT"
lost() {
	LOST=$(awk '{ s += $3 } END { print s + 0 }' "$tmp/view.$1")
	LOST_AT=$(awk '$3 > 0 { printf " %s:%s", $1, $3 }' "$tmp/view.$1")
	DUPS=$(awk '{ s += $4 + $5 } END { print s + 0 }' "$tmp/view.$1")
}

# check PHASE I...: cmp, lost chunks and the watchers' own word on them;
# trouble when a viewer's bytes differ or a chunk is lost
check() {
	ck_p=$1
	shift
	same "$ck_p" "$@"
	lost "$ck_p"
	ck_n=$#
	ck_said=$(cat "$tmp"/out."$ck_p".*.err 2>/dev/null | grep -c 'lost' || :)
	say "    output byte-identical to the input (cmp) on $SAME of $ck_n viewers; chunks lost $LOST of $(((LAST - FIRST + 1) * ck_n)) ($((LAST - FIRST + 1)) to each)"
	if [ -n "$DIFFER" ] || [ "$LOST" != 0 ] || [ "$DUPS" != 0 ]; then
		[ -z "$DIFFER" ] || say "    TROUBLE: outputs that differ (node:bytes, of $(stat -c %s "$tmp/in.$ck_p")):$DIFFER"
		[ "$LOST" = 0 ] || say "    TROUBLE: chunks missing at the stamping watchers (node:count):$LOST_AT"
		[ "$DUPS" = 0 ] || say "    TROUBLE: $DUPS chunks delivered twice or out of order"
		[ "$ck_said" = 0 ] || {
			say "    the ns-client watchers said $ck_said times that chunks were lost (how many said what):"
			cat "$tmp"/out."$ck_p".*.err | sed -n 's/.*: \(chunks* [0-9.]* w[a-z]* lost\).*/\1/p' |
				sort | uniq -c | sort -rn | head -n 4 | sed 's/^ */      /'
		}
		trouble=1
	fi
}

# sent_figures PHASE CHUNKS VIEWERS: what the nodes sent over the phase,
# from relay.stats ($tmp/cnt.PHASE.0 before, .1 after), for CHUNKS pushed
# and VIEWERS viewer nodes (on average).  Sets SENT (chunks sent to
# children by all nodes), PER (that per chunk pushed and viewer node),
# INPER (copies taken in per chunk and viewer node), SKIPPED (gaps given up)
sent_figures() {
	awk 'FNR == NR { in0[$1] = $2; d0[$1] = $3; s0[$1] = $4; k0[$1] = $5; next }
	{
		# a counter that went down is one that started again
		si = $4 - s0[$1]; if (si < 0) si = $4; sent += si
		r = $2 + $3 - in0[$1] - d0[$1]; if (r < 0) r = $2 + $3
		if ($1 != 0) got += r
		sk = $5 - k0[$1]; if (sk < 0) sk = $5; skip += sk
	}
	END { print sent + 0, got + 0, skip + 0 }' "$tmp/cnt.$1.0" "$tmp/cnt.$1.1" 	    >"$tmp/sent"
	read -r SENT sf_got SKIPPED <"$tmp/sent"
	PER=$(calc %.2f "$SENT / $2 / $3")
	INPER=$(calc %.2f "$sf_got / $2 / $3")
}

# cpu_figures PHASE SECONDS VIEWERS: CPU of every node's processes over the
# phase ($tmp/cpu.PHASE.0 before, .1 after, and $tmp/cpu.dead for the
# nodes killed meanwhile, until their kill), to VIEWERS viewer nodes (on
# average).  Sets CPU_TOTAL and CPU_OWNER (seconds), RELAYED (Mbit/s to
# viewer nodes), CPU_PER (% of a core per relayed Mbit/s), CPU_OWNER_PER
# (the owner node's, per pushed Mbit/s)
cpu_figures() {
	awk 'FNR == NR { a[$1] = $2; next } { b[$1] = $2 }
	END { for (n in b) if (n in a) print n, b[n] - a[n] }' \
	    "$tmp/cpu.$1.0" "$tmp/cpu.$1.1" "$tmp/cpu.dead" |
		awk -v hz="$HZ" '{ print $1, $2 / hz }' >"$tmp/cpu.all"
	grep -v -e '^machine ' -e '^clients ' "$tmp/cpu.all" >"$tmp/cpu.d" || :
	cf_busy=$(awk '$1 == "machine" { print $2 }' "$tmp/cpu.all")
	cf_cli=$(awk '$1 == "clients" { print $2 }' "$tmp/cpu.all")
	CPU_TOTAL=$(awk '{ s += $2 } END { printf "%.1f", s }' "$tmp/cpu.d")
	CPU_OWNER=$(awk '$1 == 0 { printf "%.2f", $2 }' "$tmp/cpu.d")
	RELAYED=$(calc %.1f "$MBPS * $3")
	CPU_PER=$(calc %.1f "$CPU_TOTAL / $2 / $RELAYED * 100")
	CPU_OWNER_PER=$(calc %.1f "$CPU_OWNER / $2 / $MBPS * 100")
	say "    CPU of all the nodes over the $2 s: $CPU_TOTAL s ($(calc %.0f "$CPU_TOTAL / $2 / $CORES * 100")% of the $CORES cores), $RELAYED Mbit/s relayed to viewer nodes:"
	say "    $CPU_PER% of a core per relayed Mbit/s; the owner node $CPU_OWNER s, $CPU_OWNER_PER% of a core per pushed Mbit/s;"
	say "    viewer nodes $(awk '$1 != 0 { print $2 }' "$tmp/cpu.d" | mmm %.2f) CPU s each (min/median/max); the machine was busy"
	say "    $(calc %.0f "$cf_busy / $2 / $CORES * 100")% of the time: the nodes $(calc %.0f "$CPU_TOTAL / $2 / $CORES * 100")%, this bench's clients $(calc %.0f "$cf_cli / $2 / $CORES * 100")%, whatever else runs here $(calc %.0f "($cf_busy - $CPU_TOTAL - $cf_cli) / $2 / $CORES * 100")%"
}

# --- set-up -------------------------------------------------------------------

for v in NN FANOUT KBPS CMS SECS KILL CALM RSECS; do
	val=''
	eval "val=\$$v"
	case $val in ''|*[!0-9]*) die "BENCH_RELAY_* settings are whole numbers ($v=$val)" ;; esac
done
[ "$NN" -ge 3 ] || die "BENCH_RELAY_NODES must be 3 or more"
[ "$CMS" -ge 10 ] && [ "$CMS" -le 1000 ] && [ $((1000 % CMS)) = 0 ] ||
	die "BENCH_RELAY_CHUNK_MS must divide 1000, from 10 to 1000"
SECS_CHUNKS_PER_S=$((1000 / CMS))
CB=$((KBPS * CMS / 8))
[ "$CB" -ge 1 ] && [ "$CB" -le 48876 ] ||
	die "a chunk of $CB bytes ($KBPS kbit/s every $CMS ms): want 1 to 48876"
[ "$KILL" -le $(((NN - 1) / 3)) ] || KILL=$(((NN - 1) / 3))
for p in ns-node ns-client ns-keygen ns-relay jq; do
	[ "$p" = ns-node ] || command -v "$p" >/dev/null ||
		die "$p is missing: run make first"
done
ns-client --help 2>&1 | grep -q 'stream push' ||
	die "this ns-client has no stream push"
[ -x "$WSC" ] || die "$WSC is missing: make testhelpers"
# N nodes' links to each other, and the watchers' connections to them
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
	ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null || :
fi

ALICE=$tmp/alice.key
cp "$root/t/fixtures/keys/alice.key" "$ALICE"
chmod 600 "$ALICE"
MBPS=$(calc %.3f "$KBPS / 1000")

say "relay: $NN nodes on 127.0.0.1, NS_RELAY_FANOUT=$FANOUT, $CORES cores for all of them;"
say "    a $KBPS kbit/s stream: a chunk of $CB bytes every $CMS ms"
t0=$(now)
for i in $(indices 0 $((NN - 1))); do
	node_init "$i"
done
for i in $(indices 0 $((NN - 1))); do
	node_run "$i"
done
# shellcheck disable=SC2046
wait_up $(indices 0 $((NN - 1)))
VIEWERS=$(indices 1 $((NN - 1)) | tr '\n' ' ')
for i in $(indices 0 $((NN - 1))); do
	eval "echo \"\$DID_$i $i\""
done >"$tmp/dids"
say "    $NN nodes up in $(since "$t0") s"

# alice's stream on node 0; user i joins it through node i
t0=$(now)
ns-client -q -t 30 -k "$ALICE" -u "$(url_of 0)" create stream live \
    >/dev/null || die "cannot create the stream on node 0"
SPACE=stream/$(jq -r '.did | ltrimstr("did:key:")' "$ALICE")/live
for i in $VIEWERS; do
	ns-keygen -o "$tmp/u$i.key" >/dev/null || die "ns-keygen failed"
	if ! ns-client -q -t 30 -k "$tmp/u$i.key" -u "$(url_of "$i")" \
	    join "northstar://127.0.0.1:$PORT_0/$SPACE" >/dev/null \
	    2>"$tmp/join.err"; then
		say "    user $i cannot join through node $i: $(head -c 300 "$tmp/join.err")"
		show_logs "$i"
		die "the joins failed"
	fi
done
say "    stream $SPACE on node 0, $((NN - 1)) users joined through their nodes in $(since "$t0") s"

# the stamping watchers, one per viewer node for the whole run: they keep
# each node in the tree between the phases
t0=$(now)
for i in $VIEWERS; do
	stamp_start "$i"
done
end=$(($(date +%s) + TREE_S))
while :; do
	stats $VIEWERS
	orphans=$(awk '$2 != "-" { print $1 }' "$tmp/stats" |
	    sort -n | tr '\n' ' ')
	orphans=$(without "$VIEWERS" $orphans)
	[ -n "$orphans" ] && [ "$(date +%s)" -lt "$end" ] || break
	sleep 0.5
done
if [ -n "$orphans" ]; then
	say "    viewer nodes without a parent after $TREE_S s: $orphans"
	for i in $(echo "$orphans" | cut -d' ' -f1-2); do
		head -n 3 "$tmp/stamp.$i" | sed "s/^/      node $i watcher: /"
	done
	# shellcheck disable=SC2046
	show_logs $(echo "$orphans" | cut -d' ' -f1-2)
	die "the relay tree did not form"
fi
tree_s=$(since "$t0")
# then the tree that the owner node computes for all of them, with the
# attachments of the trees that were while the nodes came gone (a parent
# forgets a child silent for 6 s): until then a node may send to more
# children than the tree gives it
# shellcheck disable=SC2086
expected_tree $VIEWERS
end=$(($(date +%s) + TREE_S))
while :; do
	stats 0 $VIEWERS
	wrong=$(misplaced)
	extra=$(awk '{ c += $3; if ($1 != 0 && $2 != "-") p += split($2, x, ",") }
	    END { print c - p }' "$tmp/stats")
	{ [ "$wrong" -gt 0 ] || [ "$extra" -gt 0 ]; } &&
		[ "$(date +%s)" -lt "$end" ] || break
	sleep 0.5
done
settled_s=$(since "$t0")
[ "$wrong" = 0 ] ||
	say "    $wrong viewer nodes with other parents than ns-relay tree gives them, after $settled_s s"
[ "$extra" -le 0 ] ||
	say "    $extra children attached beyond the tree's, after $settled_s s"
# shellcheck disable=SC2086
stats $VIEWERS
awk '{ print $1, $3 }' "$tmp/tree" >"$tmp/tree.p"
depths "$tmp/tree.p"
DEEP=$(awk '{ print $2 }' "$tmp/depth" | sort -n | tail -n 1)
DEEPEST=$(awk -v d="$DEEP" '$2 == d { printf "%s ", $1 }' "$tmp/depth")
two=$(awk '$2 ~ /,/' "$tmp/stats" | wc -l)
say "    every viewer node with a parent $tree_s s after the watches, the tree settled after $settled_s s: $two of $((NN - 1)) with two parents;"
say "    depth (hops from the owner node by the nearer parent) $(awk '{ print $2 }' "$tmp/depth" | mmm %d) (min/median/max); deepest: ${DEEPEST% }"
sum_line "live stream, $KBPS kbit/s, $((NN - 1)) viewer nodes" "tree depth $DEEP, fan-out $FANOUT" "($two of $((NN - 1)) with two parents; $CMS ms chunks)"

# --- calm ---------------------------------------------------------------------

echo
say "calm: alice pushes $CALM s of random bytes, nothing fails; one ns-client watch on each of the $((NN - 1)) viewer nodes"
DEAD=
# shellcheck disable=SC2086
watch_start calm $VIEWERS
sleep 1.2	# the relay.stats of the moment
# shellcheck disable=SC2086
counters "$tmp/cnt.calm.0" 0 $VIEWERS
cpu "$tmp/cpu.calm.0"
push_start calm "$CALM"
if push_wait calm; then
	cpu "$tmp/cpu.calm.1"
	# shellcheck disable=SC2086
	drain calm $VIEWERS
	# shellcheck disable=SC2086
	watch_stop $VIEWERS
	sleep 1.2
	# shellcheck disable=SC2086
	counters "$tmp/cnt.calm.1" 0 $VIEWERS
	say "    $((LAST - FIRST + 1)) chunks ($FIRST to $LAST) pushed in $PUSH_S s; $PUSH_NOTE"
	# shellcheck disable=SC2086
	timing calm "" $VIEWERS
	# shellcheck disable=SC2086
	check calm $VIEWERS
	p50=$(awk '{ print $2 }' "$tmp/lat.calm" | pct 50)
	p99=$(awk '{ print $2 }' "$tmp/lat.calm" | pct 99)
	gapmax=$(awk '{ print $6 }' "$tmp/view.calm" | sort -n | tail -n 1)
	say "    latency from the chunk's creation to its receipt, every viewer: p50 $p50 ms, p99 $p99 ms"
	say "    longest wait between two chunks per viewer $(awk '{ print $6 }' "$tmp/view.calm" | mmm %d) ms (min/median/max; the chunk interval is $CMS ms)"
	sum_line "calm, $CALM s: lost chunks" "$LOST" "[goal 0] $(goal_le "$LOST" 0); $SAME of $((NN - 1)) outputs identical"
	sum_line "  latency, push to every viewer" "p50 $p50 ms, p99 $p99 ms" ""
	sum_line "  longest gap, any viewer" "$gapmax ms" "(chunk interval $CMS ms)"
	sent_figures calm $((LAST - FIRST + 1)) $((NN - 1))
	say "    $PER chunks sent per chunk per viewer node; copies taken in per chunk per viewer node $INPER"
	sum_line "  bytes sent per byte pushed, per viewer" "$PER" "[two parents: about 2]"
	: >"$tmp/cpu.dead"
	cpu_figures calm "$PUSH_S" $((NN - 1))
	sum_line "  CPU per relayed Mbit/s, all nodes" "$CPU_PER% of a core" "(owner node $CPU_OWNER_PER% per pushed Mbit/s)"
else
	# shellcheck disable=SC2086
	watch_stop $VIEWERS
	sum_line "calm phase" "push failed" ""
	: >"$tmp/view.calm"
fi

# --- failure ------------------------------------------------------------------

echo
say "failure: $SECS s more; kill -9 of $KILL relays (viewer nodes with children), one at a time, each once no"
say "    survivor names the one before as its parent"
# shellcheck disable=SC2086
watch_start kill $VIEWERS
sleep 1.2
# shellcheck disable=SC2086
counters "$tmp/cnt.kill.0" 0 $VIEWERS
cpu "$tmp/cpu.kill.0"
: >"$tmp/cpu.dead"
push_start kill "$SECS"
end_ms=$((PUSH_T0 + SECS * 1000))
next_ms=$((PUSH_T0 + 3000))
KILLS='' KILLED=0 SETTLES='' live_s=0
while [ "$KILLED" -lt "$KILL" ] && kill -0 "$PUSH_PID" 2>/dev/null; do
	while [ "$(ms)" -lt "$next_ms" ] && kill -0 "$PUSH_PID" 2>/dev/null; do
		sleep 0.1
	done
	# a kill this late would end its window after the stream
	[ $((end_ms - $(ms))) -ge 4000 ] || break
	# shellcheck disable=SC2046
	stats $(without "$VIEWERS" $DEAD)
	victim=$(sort -k3,3nr -k1,1n "$tmp/stats" | awk '$3 > 0 { print $1; exit }')
	if [ -z "$victim" ]; then
		say "    no live viewer node has children: no more kills"
		break
	fi
	kids=$(awk -v v="$victim" '$1 == v { print $3 }' "$tmp/stats")
	under=$(awk -v v="$victim" '{ k = split($2, p, ",");
	    for (j = 1; j <= k; j++) if (p[j] == v) n++ } END { print n + 0 }' "$tmp/stats")
	node_kill "$victim"
	kt=$(ms)
	DEAD="$DEAD $victim"
	KILLS="$KILLS $kt"
	KILLED=$((KILLED + 1))
	live_s=$(calc %.3f "$live_s + ($kt - $PUSH_T0) / 1000")
	# its own watchers lost their node
	bg_stop "$(eval "echo \$WATCH_$victim")" "$(eval "echo \$STAMP_$victim")"
	eval "WATCH_$victim="
	# mended: no survivor names a dead node as a parent, every one has one
	while :; do
		sleep 0.5
		# shellcheck disable=SC2046
		stats $(without "$VIEWERS" $DEAD)
		left=$(awk -v dead=" $DEAD " '{ k = split($2, p, ",")
		    if ($2 == "-") { n++; next }
		    for (j = 1; j <= k; j++) if (index(dead, " " p[j] " ")) { n++; next } }
		    END { print n + 0 }' "$tmp/stats")
		[ "$left" -gt 0 ] && [ $(($(ms) - kt)) -lt $((SETTLE_S * 1000)) ] || break
	done
	settle=$(calc %.1f "($(ms) - $kt) / 1000")
	SETTLES="$SETTLES $settle"
	say "    $(calc %.1f "($kt - $PUSH_T0) / 1000") s: killed node $victim ($kids children attached, parent of $under); mended after $settle s$([ "$left" = 0 ] || echo ", $left nodes still name a dead parent")"
	next_ms=$(($(ms) + 1000))
done
SURV=$(without "$VIEWERS" $DEAD)
nsurv=$(echo "$SURV" | wc -w)
if push_wait kill; then
	cpu "$tmp/cpu.kill.1"
	# shellcheck disable=SC2086
	drain kill $SURV
	# shellcheck disable=SC2086
	watch_stop $SURV
	sleep 1.2
	# shellcheck disable=SC2086
	counters "$tmp/cnt.kill.1" 0 $SURV
	chunks=$((LAST - FIRST + 1))
	say "    $chunks chunks ($FIRST to $LAST) pushed in $PUSH_S s; $PUSH_NOTE"
	# shellcheck disable=SC2086
	timing kill "$KILLS" $SURV
	# shellcheck disable=SC2086
	check kill $SURV
	sum_line "failure, $SECS s, $KILLED relays killed: lost" "$LOST chunks" "[goal 0] $(goal_le "$LOST" 0); $SAME of $nsurv outputs identical"

	# gaps: the longest wait per viewer, in the windows after the kills,
	# and that over the same viewer's calm longest
	gapmax=$(awk '{ print $6 }' "$tmp/view.kill" | sort -n | tail -n 1)
	say "    longest wait between two chunks per viewer $(awk '{ print $6 }' "$tmp/view.kill" | mmm %d) ms (min/median/max); chunk interval $CMS ms"
	k=0
	for kt in $KILLS; do
		k=$((k + 1))
		say "    in the $((WINDOW_MS / 1000)) s after kill $k: longest per viewer $(awk -v c=$((6 + k)) '{ print $c }' "$tmp/view.kill" | mmm %d) ms"
	done
	awk 'FNR == NR { base[$1] = $6; next }
	{
		m = 0
		for (c = 7; c <= NF; c++) if ($c > m) m = $c
		print $1, m, ($1 in base ? base[$1] : 0), m - ($1 in base ? base[$1] : 0)
	}' "$tmp/view.calm" "$tmp/view.kill" >"$tmp/excess"
	killgap=$(awk '{ print $2 }' "$tmp/excess" | sort -n | tail -n 1)
	worst=$(sort -k4,4n "$tmp/excess" | tail -n 1)
	# shellcheck disable=SC2086
	set -- $worst
	excess=${4:-0}
	# none waited longer than in the calm: 0
	[ "$excess" -gt 0 ] 2>/dev/null || excess=0
	say "    after a kill, the worst viewer beyond its own calm longest: node ${1:-?}, ${2:-?} ms against ${3:-?} ms calm: $excess ms more"
	sum_line "  longest gap, any viewer, whole phase" "$gapmax ms" "(chunk interval $CMS ms)"
	sum_line "  longest gap in the 10 s after a kill" "$killgap ms" "(chunk interval $CMS ms)"
	sum_line "  same, beyond the viewer's calm longest" "$excess ms" "[goal <= $CMS ms] $(goal_le "$excess" "$CMS") (node ${1:-?}: ${2:-?} vs ${3:-?} ms)"

	# latency, over every viewer and over the deepest
	p50=$(awk '{ print $2 }' "$tmp/lat.kill" | pct 50)
	p99=$(awk '{ print $2 }' "$tmp/lat.kill" | pct 99)
	deep_live=$(without "$DEEPEST" $DEAD)
	dp50=$(awk -v d=" $deep_live " 'index(d, " " $1 " ") { print $2 }' "$tmp/lat.kill" | pct 50)
	dp99=$(awk -v d=" $deep_live " 'index(d, " " $1 " ") { print $2 }' "$tmp/lat.kill" | pct 99)
	say "    latency from the chunk's creation to its receipt: every viewer p50 $p50 ms, p99 $p99 ms;"
	say "    the deepest (depth $DEEP: ${deep_live% }) p50 $dp50 ms, p99 $dp99 ms"
	sum_line "  latency, push to every viewer" "p50 $p50 ms, p99 $p99 ms" ""
	sum_line "  latency, push to the deepest (depth $DEEP)" "p50 $dp50 ms, p99 $dp99 ms" "($(echo "$deep_live" | wc -w) nodes)"

	# chunks sent by all nodes, per chunk pushed and per viewer node
	# alive (on average over the push); CPU per relayed Mbit/s
	vavg=$(calc %.2f "$nsurv + $live_s / $PUSH_S")
	sent_figures kill "$chunks" "$vavg"
	say "    chunks sent to children by all nodes $SENT for $chunks pushed to $vavg viewer nodes (on average):"
	say "    $PER sent per chunk per viewer node; copies taken in per chunk per viewer node $INPER; gaps given up $SKIPPED"
	sum_line "  bytes sent per byte pushed, per viewer" "$PER" "[two parents: about 2] ($(calc %.1f "$SENT / $chunks") for $vavg viewers)"
	cpu_figures kill "$PUSH_S" "$vavg"
	sum_line "  CPU per relayed Mbit/s, all nodes" "$CPU_PER% of a core" "($RELAYED Mbit/s relayed; $CPU_TOTAL CPU s in $PUSH_S s)"
	sum_line "  CPU of the owner node per pushed Mbit/s" "$CPU_OWNER_PER% of a core" ""
else
	# shellcheck disable=SC2086
	watch_stop $SURV
	sum_line "failure phase" "push failed" ""
fi

# --- owner restart ------------------------------------------------------------

echo
say "owner restart: $RSECS s more, to the $nsurv surviving viewer nodes; the owner node is stopped"
say "    (SIGTERM to its ns-node) and run again while alice pushes"
# shellcheck disable=SC2086
watch_start restart $SURV
: >"$tmp/trace"
# shellcheck disable=SC2086
trace_start 0 $SURV
push_start restart "$RSECS"
stop_at=$((PUSH_T0 + RSECS * 400))
while [ "$(ms)" -lt "$stop_at" ]; do
	sleep 0.1
done
down_ms=$(ms)
node_stop 0
node_run 0
wait_up 0
up_ms=$(ms)
say "    $(calc %.1f "($down_ms - $PUSH_T0) / 1000") s: the owner node stopped in $STOP_S s; up again $(calc %.1f "($up_ms - $down_ms) / 1000") s after the SIGTERM"
if push_wait restart; then
	# shellcheck disable=SC2086
	drain restart $SURV
	# shellcheck disable=SC2086
	watch_stop $SURV
	say "    $((LAST - FIRST + 1)) chunks ($FIRST to $LAST) pushed in $PUSH_S s; $PUSH_NOTE"
	# shellcheck disable=SC2086
	timing restart "$down_ms" $SURV
	# shellcheck disable=SC2086
	check restart $SURV
	# resumed: a chunk received after the owner came back
	stalled=
	for i in $SURV; do
		awk -v t="$up_ms" -v a="$FIRST" -v b="$LAST" \
		    'NF == 3 && $1 > t && $2 >= a && $2 <= b { f = 1 } END { exit !f }' \
		    "$tmp/stamp.$i" || stalled="$stalled $i"
	done
	bg_stop "$TRACE_PID"
	if [ -n "$stalled" ]; then
		say "    TROUBLE: viewers that got no chunk after the owner came back:$stalled"
		# shellcheck disable=SC2046,SC2086
		trace_show "$down_ms" 0 $(echo $stalled | cut -d' ' -f1-3)
		trouble=1
	fi
	rgap=$(awk '{ print $6 }' "$tmp/view.restart" | sort -n | tail -n 1)
	say "    longest wait between two chunks per viewer $(awk '{ print $6 }' "$tmp/view.restart" | mmm %d) ms (min/median/max), the owner down $(calc %.1f "($up_ms - $down_ms) / 1000") s"
	sum_line "owner restart: lost" "$LOST chunks" "[goal 0] $(goal_le "$LOST" 0); $SAME of $nsurv outputs identical"
	sum_line "  longest gap, any viewer" "$rgap ms" "(owner down $(calc %.1f "($up_ms - $down_ms) / 1000") s)"
	sum_line "  viewers resumed after the restart" "$((nsurv - $(echo "$stalled" | wc -w))) of $nsurv" ""
else
	bg_stop "$TRACE_PID"
	# shellcheck disable=SC2086
	watch_stop $SURV
	sum_line "owner restart" "push failed" ""
fi
# shellcheck disable=SC2046
bg_stop $(cat "$tmp/bg")
: >"$tmp/bg"
nodes_stop

# --- simulation ---------------------------------------------------------------

echo
say "simulation (ns-relay sim, a chunk every $CMS ms, as above):"
for cfg in "$((NN - 1)) $FANOUT $KILL" "1000 8 10"; do
	# shellcheck disable=SC2086
	set -- $cfg
	ns-relay sim --nodes "$1" --fanout "$2" --kill "$3" --interval "$CMS" \
	    >"$tmp/sim" || die "ns-relay sim failed"
	w=$(jq -r '[.survivors, .lost, .longest_gap_ms, .p50_ms, .p99_ms,
	    .copies_per_viewer_chunk, .chunks, .fetches] | @tsv' "$tmp/sim")
	# shellcheck disable=SC2086
	set -- $cfg $w
	label="sim $1 nodes, fan-out $2, $3 killed"
	say "$label: lost $5 (goal 0), longest gap $6 ms, p50 $7 ms, p99 $8 ms;"
	say "    copies per viewer per chunk $9; $4 survivors, ${10} chunks, ${11} fetches"
	sum_line "$label: lost" "$5" "[goal 0] $(goal_le "$5" 0); longest gap $6 ms"
	sum_line "  latency; copies per viewer per chunk" "p50 $7 ms, p99 $8 ms" "$9 copies"
done

# run.sh prints these lines in its own summary
if [ -n "${BENCH_RELAY_SUMMARY:-}" ]; then
	cat "$summary" >>"$BENCH_RELAY_SUMMARY"
else
	echo
	echo "summary ($NN nodes on $CORES cores, $KBPS kbit/s in $CMS ms chunks; goals in brackets):"
	cat "$summary"
fi
exit $trouble
