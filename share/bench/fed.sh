#!/bin/sh
# make bench-fed, and the last part of make bench: the figures of
# federation on a network of real nodes, and of the broadcast simulated
# over far more nodes than one machine runs.
#
#   1. N nodes (ns-node init, ns-node run) on 127.0.0.1; alice creates a
#      channel on node 0, the owner; user i joins it through node i, so
#      every node keeps a replica.
#   2. broadcast: alice publishes on node 0, one subscriber on every other
#      node; latency from publish to delivery on every node.
#   3. failure: the same while ten member nodes are killed (kill -9);
#      the survivors must end with the owner's log, and the ten, run
#      again, must catch up; every log.db must verify.
#   4. resources of the publish phases: CPU seconds and PSS per node.
#   5. ns-gossip sim at 1000 and 10000 nodes, with and without failures.
#
# Figures and goals are reported, a missed goal is not an error: the exit
# status is 1 only on real trouble (an event lost or duplicated, a replica
# that does not converge, a log that does not verify), 2 when the bench
# cannot run.
#   NS_BIN             directory of the programs under test
#   NS_LIB             libns.a for the bench tools (default: obj/ or obj-san/)
#   BENCH_FED_NODES    nodes (default 50)
#   BENCH_FED_EVENTS   events of each publish phase (default 200)
#   BENCH_FED_RATE     events per second (default 20)
#   BENCH_FED_KILL     member nodes killed in the failure phase (default 10)
#   BENCH_FED_SUMMARY  a file to append the summary lines to (run.sh's)
#   BENCH_FED_KEEP     1: keep the nodes' directories (logs) after the run
# NS_SYNC and the other NS_* node settings in the environment go into
# every node's config.  Everything runs on 127.0.0.1; every process
# started here is stopped on exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${NS_BIN:=$root/bin}"
PATH=$NS_BIN:$PATH
export PATH
NN=${BENCH_FED_NODES:-50}
EV=${BENCH_FED_EVENTS:-200}
RATE=${BENCH_FED_RATE:-20}
KILL=${BENCH_FED_KILL:-10}
NODE="sh $root/share/ns-node"
UP_S=60		# most time for the nodes to come up, or to come back
CONVERGE_S=60	# most time for replicas to reach the owner's head
DRAIN_S=45	# most time the load tool waits for late deliveries

# the physical path: ns-node resolves its directory so, and the nodes'
# processes are told apart by it
tmp=$(mktemp -d)
tmp=$(cd "$tmp" && pwd -P)
summary=$tmp/summary
: >"$summary"
trouble=0
NODES_STARTED=

say() { printf '%s\n' "$*"; }
die() { printf 'bench-fed: %s\n' "$*" >&2; exit 2; }
now() { date +%s.%N; }
since() { echo "$1 $(now)" | awk '{ printf "%.1f", $2 - $1 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
sum_line() { printf '  %-44s %-28s %s\n' "$1" "$2" "$3" >>"$summary"; }
goal_le() { awk "BEGIN { exit !($1 <= $2) }" && echo met || echo MISSED; }
goal_lt() { awk "BEGIN { exit !($1 < $2) }" && echo met || echo MISSED; }
goal_ge() { awk "BEGIN { exit !($1 >= $2) }" && echo met || echo MISSED; }
# min, median and max of the numbers on stdin, with FORMAT for each
mmm() {
	sort -n | awk -v f="$1" '{ v[NR] = $1 }
	END {
		if (NR == 0) { print "none"; exit }
		printf f " / " f " / " f "\n", v[1], v[int((NR + 1) / 2)], v[NR]
	}'
}
# indices FIRST LAST: the numbers FIRST to LAST, or nothing
indices() { [ "$1" -gt "$2" ] || seq "$1" "$2"; }

# --- the nodes --------------------------------------------------------------

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

# node_kill I...: kill -9 each node I and every process of it at once.
# They are all stopped first: killed one by one, the node's watcher would
# see its ns-node die and start stopping the stages cleanly.
node_kill() {
	procs >"$tmp/procs"
	pids=
	for i in "$@"; do
		pids="$pids $(awk -v n="$i" '$1 == n { printf " %s", $2 }' "$tmp/procs")"
	done
	# shellcheck disable=SC2086
	kill -STOP $pids 2>/dev/null || :
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || :
	for i in "$@"; do
		# shellcheck disable=SC2046
		kill -KILL $(strays "$(dir_of "$i")") 2>/dev/null || :
		wait "$(pid_of "$i")" 2>/dev/null || :
		eval "PID_$i="
	done
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

cleanup() {
	set +e
	[ -z "${FAN_PID:-}" ] || kill -TERM "$FAN_PID" 2>/dev/null
	nodes_stop
	if [ "${BENCH_FED_KEEP:-0}" = 1 ]; then
		echo "bench-fed: the nodes' directories are kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# --- what the nodes hold, and what they use --------------------------------

# env_at I SEQ: the envelope SEQ of the space in node I's log.db, or nothing
env_at() {
	ns-log -d "$(dir_of "$1")/log.db" history "$SPACE" --after $(($2 - 1)) \
	    --limit 1 2>/dev/null || :
}

# head_of I: the head node I serves (ns-client info), or -1
head_of() {
	ns-client -q -t 10 -k "$ALICE" -u "$(url_of "$1")" info "$SPACE" \
	    2>/dev/null | jq -r '.head // -1' 2>/dev/null || echo -1
}

# converge SECONDS SEQ I...: wait until each node I holds the owner's
# envelope SEQ and nothing after it (its head is SEQ, its last envelope the
# owner's).  Sets CONV_S (seconds it took) and LATE (the nodes that did
# not make it).
converge() {
	# (the shell has no local variables: cv_ names are this function's)
	cv_seq=$2 cv_t0=$(now) cv_end=$(($(date +%s) + $1))
	shift 2
	cv_want=$(env_at 0 "$cv_seq")
	[ -n "$cv_want" ] || die "the owner has no envelope $cv_seq"
	LATE="$*"
	while :; do
		cv_left=
		for cv_i in $LATE; do
			[ "$(ns-log -d "$(dir_of "$cv_i")/log.db" history \
			    "$SPACE" --after $((cv_seq - 1)) 2>/dev/null)" = \
			    "$cv_want" ] || cv_left="$cv_left $cv_i"
		done
		LATE=${cv_left# }
		CONV_S=$(since "$cv_t0")
		[ -n "$LATE" ] && [ "$(date +%s)" -lt "$cv_end" ] || break
		sleep 0.2
	done
}

# cpu FILE: "NODE TICKS" for every running node: user and system time of
# its processes, their reaped children's included
cpu() {
	procs >"$tmp/procs"
	# shellcheck disable=SC2046
	cat $(awk '{ printf "/proc/%s/stat ", $2 }' "$tmp/procs") 2>/dev/null |
		awk 'FNR == NR { node[$2] = $1; next }
		($1 in node) { t[node[$1]] += $14 + $15 + $16 + $17 }
		END { for (n in t) print n, t[n] }' "$tmp/procs" - >"$1"
}

# cpu_report LABEL BEFORE AFTER SECONDS NODES: CPU seconds per node over a
# phase, the owner apart from the members
cpu_report() {
	awk -v hz="$HZ" -v nodes=" $5 " 'FNR == NR { a[$1] = $2; next }
	(index(nodes, " " $1 " ") && ($1 in a)) { print $1, ($2 - a[$1]) / hz }' \
	    "$2" "$3" >"$tmp/cpu.d"
	owner=$(awk '$1 == 0 { printf "%.2f", $2 }' "$tmp/cpu.d")
	members=$(awk '$1 != 0 { print $2 }' "$tmp/cpu.d" | mmm %.2f)
	total=$(awk '{ s += $2 } END { printf "%.1f", s }' "$tmp/cpu.d")
	share=$(calc "%.0f" "$total / $4 / $CORES * 100")
	say "    CPU s per node over the $(calc %.0f "$4") s of $1: owner $owner, members min/median/max $members;"
	say "    all nodes together $total s = $share% of the machine's $CORES cores (all $NN nodes share them)"
	sum_line "CPU per member node, $1" "$members s" "(min/median/max; owner $owner s; $CORES cores for all)"
}

# pss_report: proportional memory of each node (all its processes), KiB
pss_report() {
	procs >"$tmp/procs"
	# shellcheck disable=SC2046
	grep -H '^Pss:' $(awk '{ printf "/proc/%s/smaps_rollup ", $2 }' \
	    "$tmp/procs") 2>/dev/null |
		awk -F'[/: ]+' 'FNR == NR { node[$2] = $1; next }
		($3 in node) { k[node[$3]] += $6 }
		END { for (n in k) print n, k[n] }' "$tmp/procs" - >"$tmp/pss"
	owner=$(awk '$1 == 0 { printf "%.1f", $2 / 1024 }' "$tmp/pss")
	members=$(awk '$1 != 0 { print $2 / 1024 }' "$tmp/pss" | mmm %.1f)
	total=$(awk '{ s += $2 } END { printf "%.0f", s / 1024 }' "$tmp/pss")
	nproc=$(wc -l <"$tmp/procs")
	say "    MiB PSS per node after the broadcast: owner $owner, members min/median/max $members;"
	say "    all $NN nodes $total MiB, $nproc processes (PSS shares the libraries' pages among all of them:"
	say "    a node alone, as in make bench's footprint, counts more)"
	sum_line "PSS per member node" "$members MiB" "(min/median/max; owner $owner MiB)"
}

# relays: RELAYS, the member nodes with children in the space's tier tree
# (ns-gossip tree, the nodes' own rule), in tree order; the tree goes to
# $tmp/tree as "NODE PARENT CHILDREN" lines (PARENT - for the owner)
relays() {
	for i in $(indices 0 $((NN - 1))); do
		eval "echo \"\$DID_$i $i\""
	done >"$tmp/dids"
	for i in $MEMBERS; do eval "echo \"\$DID_$i\""; done |
		jq -R . | jq -s -c --arg s "$SPACE" --arg o "$DID_0" \
		'{space: $s, owner: $o, nodes: .}' | ns-gossip tree >"$tmp/tree.json" ||
		die "ns-gossip tree failed"
	jq -r '[.node, (.parent // "-"), (.children | length)] | @tsv' \
	    "$tmp/tree.json" | awk 'FNR == NR { n[$1] = $2; next }
	{ print n[$1], ($2 in n ? n[$2] : "-"), $3 }' "$tmp/dids" - >"$tmp/tree"
	RELAYS=$(awk '$1 != 0 && $3 > 0 { printf "%s ", $1 }' "$tmp/tree")
}

# orphans NODE...: the live nodes that lose the push when NODEs are down
# (a dead node above them in the tree)
orphans() {
	awk -v dead=" $* " '{ parent[$1] = $2 }
	END {
		for (n in parent) {
			if (index(dead, " " n " ")) continue
			for (p = parent[n]; p != "-" && p != ""; p = parent[p])
				if (index(dead, " " p " ")) { printf "%s ", n; break }
		}
	}' "$tmp/tree"
}

HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

# --- the load tool ----------------------------------------------------------

# fan NAME FIRST_ID SUBSCRIBER_NODES...: publish EV beams of alice on node 0
# at RATE/s, one subscriber on each node named, in the background; its
# JSON line goes to $tmp/NAME.out.  Sets FAN_PID and FAN_T0.
fan() {
	name=$1 first=$2
	shift 2
	"$tmp/gen-beams" "$ALICE" "$SPACE" "$DID_0" "127.0.0.1:$PORT_0" \
	    "$EV" "$first" >"$tmp/$name.beams" || die "gen-beams failed"
	ports=
	for i in "$@"; do
		ports="$ports,$(port_of "$i")"
	done
	FAN_T0=$(now)
	timeout -k 5 $((EV / RATE + DRAIN_S + 90)) "$tmp/fanout" -p "$PORT_0" \
	    -P "${ports#,}" -n $# -k "$ALICE" -s "$SPACE" -r "$RATE" \
	    -f "$tmp/$name.beams" -t 60 -w "$DRAIN_S" >"$tmp/$name.out" \
	    2>"$tmp/$name.err" &
	FAN_PID=$!
}

# fan_wait NAME: wait for the load tool; 1 when it failed
fan_wait() {
	rc=0
	wait "$FAN_PID" || rc=$?
	FAN_PID=
	if [ $rc -ne 0 ] || [ ! -s "$tmp/$1.out" ]; then
		say "    the load tool failed (status $rc):"
		sed 's/^/      /' "$tmp/$1.err" | head -5
		return 1
	fi
	FAN=$(cat "$tmp/$1.out")
}

j() { echo "$FAN" | jq -r ".$1"; }

# fan_notes: what else the load tool saw
fan_notes() {
	[ "$(j dropped)" = 0 ] || say "    the nodes closed $(j dropped) subscriber connections"
	[ "$(j unknown)" = 0 ] || say "    $(j unknown) event notifications for beams this run did not send"
}

# fan_trouble NODES...: events missing or duplicated on the subscribers
# (on nodes NODES..., in -P order) after the drain, or refused by the owner
fan_trouble() {
	if [ "$(j missing)" != 0 ] || [ "$(j duplicates)" != 0 ] ||
	    [ "$(j refused)" != 0 ] || [ "$(j acked)" != "$EV" ]; then
		say "    TROUBLE: $(j missing) deliveries missing, $(j duplicates) duplicated; $(j acked) of $EV acknowledged, $(j refused) refused"
		echo "$FAN" | jq -r '.per_port_missing | to_entries[] |
		    select(.value > 0) | "\(.key) \(.value)"' |
		while read -r k m; do
			i=$(echo "$@" | awk -v k=$((k + 1)) '{ print $k }')
			say "      node $i (port $(port_of "$i")): $m missing"
		done | head -10
		sed 's/^/      fanout: /' "$tmp/$FAN_NAME.err" | head -5
		sum_line "" "TROUBLE: $(j missing) missing, $(j duplicates) duplicates" ""
		trouble=1
	fi
}

# show_logs I...: the last lines of each node's log, as evidence
show_logs() {
	for i in "$@"; do
		say "      node $i ($(dir_of "$i")/log), last lines:"
		tail -n 8 "$(dir_of "$i")/log" | sed 's/^/        /'
	done
}

# --- set-up -----------------------------------------------------------------

[ "$NN" -ge 3 ] 2>/dev/null || die "BENCH_FED_NODES must be 3 or more"
if [ "$KILL" -gt $(((NN - 1) / 2)) ]; then
	KILL=$(((NN - 1) / 2))
	say "(only $KILL member nodes are killed: half of the $((NN - 1)) members at most)"
fi
for p in ns-serve ns-client ns-log ns-keygen ns-gossip jq; do
	command -v "$p" >/dev/null || die "$p is missing: run make first"
done
lib=${NS_LIB:-}
san=
case $NS_BIN in
*bin-san|*bin-san/)
	: "${lib:=$root/obj-san/libns.a}"
	san="-fsanitize=address,undefined" ;;
esac
: "${lib:=$root/obj/libns.a}"
[ -r "$lib" ] || die "$lib is missing: run make first"
for t in gen-beams fanout; do
	# shellcheck disable=SC2086
	cc -O2 -D_GNU_SOURCE -I"$root/common" $san -o "$tmp/$t" \
	    "$here/$t.c" "$lib" -lwebsockets -ljq -lsodium -lcrypto -lm -pthread ||
		die "cannot build $t"
done
# N nodes' links to each other, and the load tool's connections to them
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
	ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null || :
fi

ALICE=$tmp/alice.key
cp "$root/t/fixtures/keys/alice.key" "$ALICE"
chmod 600 "$ALICE"

say "federation: $NN nodes on 127.0.0.1, $CORES cores for all of them; $EV events at $RATE/s per phase"
t0=$(now)
for i in $(indices 0 $((NN - 1))); do
	node_init "$i"
done
for i in $(indices 0 $((NN - 1))); do
	node_run "$i"
done
# shellcheck disable=SC2046
wait_up $(indices 0 $((NN - 1)))
MEMBERS=$(indices 1 $((NN - 1)) | tr '\n' ' ')
say "    $NN nodes up in $(since "$t0") s"
[ "$PORT_RACES" = 0 ] ||
	sum_line "nodes started twice: port taken" "$PORT_RACES" "(the port was taken; see above)"

# alice's channel on node 0; user i joins it through node i
t0=$(now)
ns-client -q -t 30 -k "$ALICE" -u "$(url_of 0)" create channel fed \
    >/dev/null || die "cannot create the channel on node 0"
SPACE=channel/$(jq -r '.did | ltrimstr("did:key:")' "$ALICE")/fed
for i in $MEMBERS; do
	ns-keygen -o "$tmp/u$i.key" >/dev/null || die "ns-keygen failed"
	if ! ns-client -q -t 30 -k "$tmp/u$i.key" -u "$(url_of "$i")" \
	    join "northstar://127.0.0.1:$PORT_0/$SPACE" >/dev/null \
	    2>"$tmp/join.err"; then
		say "    user $i cannot join through node $i: $(head -c 300 "$tmp/join.err")"
		show_logs "$i"
		die "the joins failed"
	fi
done
say "    channel $SPACE on node 0, $((NN - 1)) users joined through their nodes in $(since "$t0") s"
H=$(head_of 0)
[ "$H" -gt 0 ] || die "the owner does not answer info"
# shellcheck disable=SC2086
converge "$CONVERGE_S" "$H" $MEMBERS
if [ -n "$LATE" ]; then
	say "    TROUBLE: after $CONV_S s, nodes $LATE do not have the owner's head $H:"
	# shellcheck disable=SC2046
	show_logs $(echo "$LATE" | cut -d' ' -f1-3)
	exit 1
fi
bad=
for i in $MEMBERS; do
	h=$(head_of "$i")
	[ "$h" = "$H" ] || bad="$bad $i:$h"
done
[ -z "$bad" ] || die "nodes serve another head than the owner's $H (node:head):$bad"
say "    every replica at the owner's head $H $CONV_S s after the last join"

# --- broadcast --------------------------------------------------------------

echo
say "broadcast: alice publishes on node 0, a subscriber on each of the $((NN - 1)) other nodes"
FAN_NAME=bcast
cpu "$tmp/cpu.0"
t0=$(now)
# shellcheck disable=SC2086
fan bcast 1 $MEMBERS
if fan_wait bcast; then
	wall=$(echo "$t0 $(now)" | awk '{ print $2 - $1 }')
	cpu "$tmp/cpu.1"
	say "broadcast to $((NN - 1)) nodes: publish to delivery p50 $(j p50_ms) ms, p99 $(j p99_ms) ms, max $(j max_ms) ms (goal p99 < 500 ms)"
	say "    owner's acknowledgement p50 $(j ack_p50_ms) ms, p99 $(j ack_p99_ms) ms; delivered $(j delivered) of $(j expected), missing $(j missing), duplicates $(j duplicates)"
	say "    slowest event per node $(echo "$FAN" | jq -r '.per_port_max_ms[]' | mmm %.0f) ms (min/median/max); set-up $(j setup_s) s"
	fan_notes
	if [ "$(j delivered)" = 0 ]; then met="MISSED (nothing delivered)"; else met=$(goal_lt "$(j p99_ms)" 500); fi
	sum_line "broadcast to $((NN - 1)) nodes, publish to delivery" \
	    "p50 $(j p50_ms) ms, p99 $(j p99_ms) ms" "[goal p99 < 500 ms] $met"
	sum_line "  owner's acknowledgement" "p50 $(j ack_p50_ms) ms, p99 $(j ack_p99_ms) ms" ""
	sum_line "  delivered" "$(j delivered) of $(j expected)" "missing $(j missing), duplicates $(j duplicates)"
	# shellcheck disable=SC2086
	fan_trouble $MEMBERS
	# shellcheck disable=SC2086
	cpu_report "the broadcast" "$tmp/cpu.0" "$tmp/cpu.1" "$wall" "0 $MEMBERS"
	pss_report
else
	sum_line "broadcast to $((NN - 1)) nodes" "failed" ""
	trouble=1
fi
H=$(head_of 0)
# shellcheck disable=SC2086
converge "$CONVERGE_S" "$H" $MEMBERS
if [ -n "$LATE" ]; then
	say "    TROUBLE: $CONV_S s after the broadcast, nodes $LATE do not have the owner's head $H"
	# shellcheck disable=SC2046
	show_logs $(echo "$LATE" | cut -d' ' -f1-3)
	trouble=1
fi

# --- failure ----------------------------------------------------------------

# Which nodes die matters: a leaf of the tier tree takes only itself
# down, a relay (a node with children) the push to its whole subtree, whose
# nodes then depend on announcements and anti-entropy.  The tree follows
# the node DIDs, new at every run, so a choice by number would test the
# repair only by chance: up to half the killed nodes are relays (all of
# them, with fewer), the others leaves spread over the members.
relays
nrelay=$(echo "$RELAYS" | wc -w)
krelay=$(((KILL + 1) / 2))
[ "$krelay" -le "$nrelay" ] || krelay=$nrelay
DEAD=$(for i in $RELAYS; do echo "$i"; done | head -n "$krelay" | tr '\n' ' ')
leaves=$(for i in $MEMBERS; do
	case " $RELAYS " in *" $i "*) ;; *) printf '%s ' "$i" ;; esac
done)
DEAD=$(echo "$DEAD$(echo "$leaves" | awk -v k=$((KILL - krelay)) '{
	for (i = 0; i < k; i++) printf "%d ", $(1 + int(i * NF / k)) }')" |
	tr ' ' '\n' | sed '/^$/d' | sort -n | tr '\n' ' ')
DEAD=${DEAD% }
SURV=$(for i in $MEMBERS; do
	case " $DEAD " in *" $i "*) ;; *) printf '%s ' "$i" ;; esac
done)
nsurv=$(echo "$SURV" | wc -w)
echo
say "failure: $EV more events; after $((3 * RATE)) of them, kill -9 of $KILL member nodes ($DEAD),"
say "    $krelay of them relays in the tier tree (of $nrelay: ${RELAYS% }), $(orphans $DEAD | wc -w) live nodes under them; a subscriber on each of the $nsurv others"
FAN_NAME=fail
target=$((H + EV))
cpu "$tmp/cpu.2"
t0=$(now)
# shellcheck disable=SC2086
fan fail $((EV + 1)) $SURV
# about 3 s in: when the owner has sequenced 3 s worth of events
kill_at=$((H + 3 * RATE))
deadline=$(($(date +%s) + 90))
until [ -n "$(env_at 0 "$kill_at")" ] || [ "$(date +%s)" -ge "$deadline" ]; do
	sleep 0.1
done
# shellcheck disable=SC2086
node_kill $DEAD
say "    killed at seq $(ns-log -d "$(dir_of 0)/log.db" history "$SPACE" --after $((kill_at - 1)) | tail -n 1 | jq -r .seq), $(since "$FAN_T0") s after the load tool started"
# the survivors reach the owner's last envelope
until [ -n "$(env_at 0 "$target")" ] || [ "$(date +%s)" -ge "$deadline" ]; do
	sleep 0.1
done
[ -n "$(env_at 0 "$target")" ] || say "    the owner did not sequence all $EV events"
# shellcheck disable=SC2086
converge "$CONVERGE_S" "$target" $SURV
surv_s=$CONV_S surv_late=$LATE
if fan_wait fail; then
	wall=$(echo "$t0 $(now)" | awk '{ print $2 - $1 }')
	cpu "$tmp/cpu.3"
	say "failure, $nsurv surviving nodes: publish to delivery p50 $(j p50_ms) ms, p99 $(j p99_ms) ms, max $(j max_ms) ms"
	say "    owner's acknowledgement p50 $(j ack_p50_ms) ms, p99 $(j ack_p99_ms) ms; delivered $(j delivered) of $(j expected), missing $(j missing), duplicates $(j duplicates)"
	fan_notes
	# the slowest event of each survivor: those under a dead relay get
	# the events by repair, the others should not notice
	echo "$FAN" | jq -r --arg s "$SURV" '[($s | split(" ") |
	    map(select(. != ""))), .per_port_max_ms] | transpose[] |
	    "\(.[0]) \(.[1])"' >"$tmp/slowest"
	orph=$(orphans $DEAD)
	awk -v o=" $orph " 'index(o, " " $1 " ")' "$tmp/slowest" >"$tmp/slow.o"
	awk -v o=" $orph " '!index(o, " " $1 " ")' "$tmp/slowest" >"$tmp/slow.r"
	say "    slowest event per node: under a dead relay ($(wc -l <"$tmp/slow.o") nodes) $(cut -d' ' -f2 "$tmp/slow.o" | mmm %.0f) ms,"
	say "    the others ($(wc -l <"$tmp/slow.r") nodes) $(cut -d' ' -f2 "$tmp/slow.r" | mmm %.0f) ms (min/median/max)"
	sum_line "failure, delivery on the $nsurv survivors" \
	    "p50 $(j p50_ms) ms, p99 $(j p99_ms) ms" "max $(j max_ms) ms"
	sum_line "  slowest event, nodes under a dead relay" \
	    "$(cut -d' ' -f2 "$tmp/slow.o" | mmm %.0f) ms" "(min/median/max over $(wc -l <"$tmp/slow.o") nodes)"
	sum_line "  slowest event, the other survivors" \
	    "$(cut -d' ' -f2 "$tmp/slow.r" | mmm %.0f) ms" "(min/median/max over $(wc -l <"$tmp/slow.r") nodes)"
	# shellcheck disable=SC2086
	fan_trouble $SURV
	# shellcheck disable=SC2086
	cpu_report "the failure phase" "$tmp/cpu.2" "$tmp/cpu.3" "$wall" "0 $SURV"
else
	sum_line "failure phase" "failed" ""
	trouble=1
fi
if [ -n "$surv_late" ]; then
	say "    TROUBLE: $surv_s s after the owner's last event, survivors $surv_late do not have it"
	# shellcheck disable=SC2046
	show_logs $(echo "$surv_late" | cut -d' ' -f1-3)
	sum_line "survivors converge" "TROUBLE: $(echo "$surv_late" | wc -w) did not" ""
	trouble=1
else
	say "survivors: all $nsurv hold the owner's log $surv_s s after its last event"
	sum_line "survivors converged, after the owner's last" "$surv_s s" "(bound $CONVERGE_S s)"
fi

# the ten again, on their own directories and ports
t0=$(now)
for i in $DEAD; do
	node_run "$i"
done
# shellcheck disable=SC2086
wait_up $DEAD
up_s=$(since "$t0")
# shellcheck disable=SC2086
converge "$CONVERGE_S" "$target" $DEAD
catch_s=$(since "$t0")
if [ -n "$LATE" ]; then
	say "    TROUBLE: $catch_s s after the restart, nodes $LATE have not caught up"
	# shellcheck disable=SC2046
	show_logs $(echo "$LATE" | cut -d' ' -f1-3)
	sum_line "restarted nodes catch up" "TROUBLE: $(echo "$LATE" | wc -w) did not" ""
	trouble=1
else
	say "restart: the $KILL killed nodes up again in $up_s s, all caught up $catch_s s after the restart"
	sum_line "killed nodes caught up, after their restart" "$catch_s s" "(bound $CONVERGE_S s; $up_s s to start)"
fi

# every node serves the owner's head, and every log verifies
bad='' unverified=''
for i in $(indices 0 $((NN - 1))); do
	h=$(head_of "$i")
	[ "$h" = "$target" ] || bad="$bad $i:$h"
	ns-log -d "$(dir_of "$i")/log.db" verify >/dev/null 2>"$tmp/verify.err" ||
		unverified="$unverified $i($(head -c 200 "$tmp/verify.err"))"
done
if [ -n "$bad" ] || [ -n "$unverified" ]; then
	[ -z "$bad" ] || say "    TROUBLE: nodes serving another head than $target (node:head):$bad"
	[ -z "$unverified" ] || say "    TROUBLE: logs that do not verify:$unverified"
	sum_line "every node's head and log" "TROUBLE" ""
	trouble=1
else
	say "    every node serves head $target and its log.db verifies"
	sum_line "every node's head and ns-log verify" "$NN of $NN" ""
fi
nodes_stop

# --- simulation -------------------------------------------------------------

echo
say "simulation (ns-gossip sim, 100 events, seeds 1-3; worst of the seeds):"
for n in 1000 10000; do
	hops_goal=$(awk -v n="$n" 'BEGIN { l = log(n) / log(10); c = int(l); if (c < l - 1e-9) c++; print c + 2 }')
	for f in 0 0.2; do
		for s in 1 2 3; do
			ns-gossip sim --nodes "$n" --fail "$f" --seed "$s" ||
				die "ns-gossip sim failed"
		done >"$tmp/sim"
		w=$(jq -s -r '[(map(.delivered_push) | min), (map(.delivered_repair) | min),
		    (map(.payload_per_node_event) | max),
		    (map(.payload_per_node_event * .nodes / (.nodes - .failed)) | max),
		    (map(.hops_max) | max), (map(.latency_max_ms) | max),
		    (map(.failed) | add / length)] | @tsv' "$tmp/sim")
		# shellcheck disable=SC2086
		set -- $w
		push=$(calc %.2f "$1 * 100") rep=$(calc %.2f "$2 * 100")
		live=$(calc %.3f "$4")
		label="sim $n nodes, $(calc %.0f "$f * 100")% failed"
		say "$label ($(calc %.0f "$7") down on average): delivered $push% after the push, $rep% after repair (goal 100%);"
		say "    payload copies per node per event $3 ($live per live node); hops to the last node $5 (goal <= $hops_goal); last delivery $6 ms after its event"
		sum_line "$label: delivered" "$rep% after repair" "[goal 100%] $(goal_ge "$2" 1) (push $push%)"
		if [ "$f" = 0.2 ]; then
			sum_line "$label: payload copies" "$3 per node per event" "[goal <= 1.3] $(goal_le "$3" 1.3) ($live per live node)"
		else
			sum_line "$label: payload copies" "$3 per node per event" ""
		fi
		sum_line "$label: hops to the last" "$5" "[goal <= $hops_goal] $(goal_le "$5" "$hops_goal")"
	done
done

# run.sh prints these lines in its own summary
if [ -n "${BENCH_FED_SUMMARY:-}" ]; then
	cat "$summary" >>"$BENCH_FED_SUMMARY"
else
	echo
	echo "summary ($NN nodes on $CORES cores; goals in brackets):"
	cat "$summary"
fi
exit $trouble
