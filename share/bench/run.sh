#!/bin/sh
# make bench: throughput, latency and footprint figures.  Every throughput
# is printed as a ratio to a reference measured in the same run (the raw
# single-core libsodium Ed25519 rates), because shared machines are noisy;
# latency and memory goals are absolute.  A missed goal is reported, not an
# error: the exit status is 1 only on real trouble (lost, refused or
# duplicated events), 2 when the bench cannot run at all.
#   NS_BIN          directory of the programs under test
#   NS_LIB          libns.a to link the bench tools with (default: the
#                   obj/ or obj-san/ beside NS_BIN)
#   BENCH_N         events for the sign/verify figures (default 50000)
#   BENCH_INGEST    signed beams per client connection, 4 connections
#                   (default 10000)
#   BENCH_ROUNDS    rounds of each ingest that has a goal, each on a new
#                   node; the goal is judged on their median (default 3)
#   BENCH_FANOUT_S  seconds of publishing, to 100 subscribers at 500
#                   events/s and to 500 at 100 events/s (default 4)
#   BENCH_BLAST     events of the fan-out blast to 100 subscribers
#                   (default 3000)
#   BENCH_ACK       beams sent one at a time for the acknowledgement
#                   latency (default 2000)
#   BENCH_PARTS     which parts to run, of: sign ingest footprint fanout
#                   blast ack fairness fed relay (default all of them)
#   BENCH_FED_*     the federation figures: see fed.sh
#   BENCH_RELAY_*   the live stream figures: see relay.sh
# Everything runs on 127.0.0.1; every node and client started here is
# stopped on exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${NS_BIN:=$root/bin}"
PATH=$NS_BIN:$PATH
export PATH
N=${BENCH_N:-50000}
IN=${BENCH_INGEST:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
FS=${BENCH_FANOUT_S:-4}
BLAST=${BENCH_BLAST:-3000}
ACKN=${BENCH_ACK:-2000}
PARTS=${BENCH_PARTS:-sign ingest footprint fanout blast ack fairness fed relay}
# the paced fan-out: SUBSCRIBERS:EVENTS_PER_S, as the goals are set
FANOUTS="100:500 500:100"
tmp=$(mktemp -d)
summary=$tmp/summary
stop_note=
trouble=0
NODE_PID='' NODE_DIR=''

say() { printf '%s\n' "$*"; }
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
die() { printf 'bench: %s\n' "$*" >&2; exit 2; }
now() { date +%s.%N; }
rate() { echo "$1 $2 $3" | awk '{ printf "%.0f", $1 / ($3 - $2) }'; }
ratio() { echo "$1 $2" | awk '{ printf "%.2f", $1 / $2 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
sum_line() { printf '  %-44s %-28s %s\n' "$1" "$2" "$3" >>"$summary"; }
goal_ge() { awk "BEGIN { exit !($1 >= $2) }" && echo met || echo MISSED; }
goal_lt() { awk "BEGIN { exit !($1 < $2) }" && echo met || echo MISSED; }

cleanup() {
	set +e
	# the clients of an interrupted ingest (timeout passes SIGTERM on)
	if [ -s "$tmp/bg" ]; then
		for p in $(cat "$tmp/bg"); do
			kill -TERM "$p" 2>/dev/null
		done
	fi
	node_stop
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the node ------------------------------------------------------------

# Every process of the running node: ns-node, its supervising shells and
# the stages (every descendant of ns-node).
node_pids() {
	[ -n "$NODE_PID" ] || return 0
	ps -e -o pid=,ppid= | awk -v root="$NODE_PID" '
	{ parent[$1] = $2 }
	END {
		want[root] = 1
		do {
			more = 0
			for (p in parent)
				if (!(p in want) && (parent[p] in want)) {
					want[p] = 1
					more = 1
				}
		} while (more)
		for (p in want)
			print p
	}'
}

# node_start NAME: a fresh node in $tmp/NAME on a free port of 127.0.0.1;
# NS_SYNC and NS_VERIFY_JOBS in the environment go into its config.  Sets
# NODE_DIR, NODE_PID, NODE_DID, PORT.
node_start() {
	NODE_DIR=$tmp/$1
	# the fan-out's subscribers all log in with one key: let them
	NS_MAX_DID_CONN=${NS_MAX_DID_CONN:-2048} \
	NS_LISTEN=127.0.0.1:0 NS_ADDRESS='' sh "$root/share/ns-node" init \
	    "$NODE_DIR" >/dev/null || die "ns-node init failed"
	sh "$root/share/ns-node" run "$NODE_DIR" >"$NODE_DIR/log" 2>&1 &
	NODE_PID=$!
	i=0
	until [ -s "$NODE_DIR/run/port" ] && stages_up; do
		if [ $i -ge 100 ] || ! kill -0 "$NODE_PID" 2>/dev/null; then
			cat "$NODE_DIR/log" >&2
			die "the node did not come up"
		fi
		sleep 0.1
		i=$((i + 1))
	done
	PORT=$(cat "$NODE_DIR/run/port")
	NODE_DID=$(sh "$root/share/ns-node" did "$NODE_DIR")
	NS_URL=ws://127.0.0.1:$PORT/
	export NS_URL
}

STAGES="serve verify log beam relay gossip"
stages_up() {
	for s in $STAGES; do
		[ -s "$NODE_DIR/run/$s.pid" ] &&
			kill -0 "$(cat "$NODE_DIR/run/$s.pid")" 2>/dev/null ||
			return 1
	done
}

# Stop the node (SIGTERM to ns-node, which stops its stages), at most 20 s,
# then SIGKILL whatever of it is left.  Sets STOP_S.
node_stop() {
	[ -n "$NODE_PID" ] || return 0
	pids=$(node_pids)
	t0=$(now)
	kill -TERM "$NODE_PID" 2>/dev/null || :
	i=0
	while kill -0 "$NODE_PID" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	for p in $pids; do
		# only what still belongs to this node (its command line names
		# the node directory): a pid may have been reused meanwhile
		if grep -q -- "$NODE_DIR" "/proc/$p/cmdline" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null || :
		fi
	done
	wait "$NODE_PID" 2>/dev/null || :
	STOP_S=$(echo "$t0 $(now)" | awk '{ printf "%.1f", $2 - $1 }')
	NODE_PID=
}

# Proportional memory of the whole node, in KiB; the per-program sums go
# to $tmp/pss as "NAME KIB" lines.
node_pss() {
	: >"$tmp/pss"
	total=0
	for p in $(node_pids); do
		kib=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" \
		    2>/dev/null) || kib=
		[ -n "$kib" ] || continue
		name=$(cat "/proc/$p/comm" 2>/dev/null) || name='?'
		echo "$name $kib" >>"$tmp/pss"
		total=$((total + kib))
	done
	echo "$total"
}

pss_detail() {
	awk '{ k[$1] += $2; n[$1]++ }
	END {
		split("ns-serve ns-verify ns-beam ns-log sh", order, " ")
		for (i = 1; i <= 5; i++)
			seen[order[i]] = 1
		for (p in k)
			if (!(p in seen))
				order[++i] = p
		sep = "MiB PSS: "
		for (j = 1; j <= i; j++) {
			p = order[j]
			if (!(p in k))
				continue
			printf "%s%s %.1f", sep, (n[p] > 1 ? n[p] " x " p : p),
			    k[p] / 1024
			sep = ", "
		}
		printf "\n"
	}' "$tmp/pss"
}

# CPU clock ticks used so far by each stage: "serve T verify T ...".
stage_ticks() {
	for s in $STAGES; do
		p=$(cat "$NODE_DIR/run/$s.pid")
		printf '%s %s ' "$s" "$(awk '{ print $14 + $15 }' \
		    "/proc/$p/stat" 2>/dev/null || echo 0)"
	done
	echo
}

# Busy and iowait ticks of the whole machine: "BUSY IOWAIT".
machine_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $6; exit }' \
	    /proc/stat
}

HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

# The space.beam requests of one client into $tmp/beams.K (ids from FIRST).
gen() {	# FILE N FIRST
	"$tmp/gen-beams" "$tmp/k" "$SPACE" "$NODE_DID" "127.0.0.1:$PORT" \
	    "$2" "$3" >"$1" || die "gen-beams failed"
}

create_channel() {
	ns-client -q -t 30 -k "$tmp/k" create channel bench >/dev/null ||
		die "cannot create the bench channel"
	SPACE=channel/$(jq -r .did "$tmp/k" | sed 's/^did:key://')/bench
}

# ingest LABEL PER_CLIENT CONNS GOAL: CONNS connections each send
# PER_CLIENT pre-signed beams, at most 256 unanswered (the load tool with
# no subscribers, one process a connection: about half the CPU of
# ns-client rpc, which shares the machine with the node); prints the rate
# as a ratio to the raw verify rate and where the CPU went.  Sets
# INGEST_RATIO.
ingest() {
	label=$1 per=$2 conns=$3 goal=$4
	ks=$(seq 0 $((conns - 1)))
	for k in $ks; do
		gen "$tmp/beams.$k" "$per" $((k * per + 1))
	done
	rm -f "$tmp"/out.* "$tmp"/err.*
	total=$((conns * per))
	# this machine's speed drifts: the reference is measured again just
	# before and just after the run, and their mean taken
	rv0=$("$tmp/sodium-rate" 300 0.5 | jq .verify_per_s)
	b0=$(stage_ticks)
	m0=$(machine_ticks)
	t0=$(now)
	(
		for k in $ks; do
			timeout -k 5 240 "$tmp/fanout" -p "$PORT" -k "$tmp/k" \
			    -s "$SPACE" -n 0 -W 256 -f "$tmp/beams.$k" -w 30 \
			    >"$tmp/out.$k" 2>"$tmp/err.$k" &
			echo $! >>"$tmp/bg"
		done
		wait
		times >"$tmp/times"
	)
	: >"$tmp/bg"
	t1=$(now)
	m1=$(machine_ticks)
	b1=$(stage_ticks)
	rv1=$("$tmp/sodium-rate" 300 0.5 | jq .verify_per_s)
	RVI=$(echo "$rv0 $rv1" | awk '{ printf "%.0f", ($1 + $2) / 2 }')
	ok=$(cat "$tmp"/out.* | jq -s 'map(.acked) | add // 0')
	bad=$((total - ok))
	r=$(rate "$ok" "$t0" "$t1")
	INGEST_RATIO=$(ratio "$r" "$RVI")
	say "ingest ($label): $r beams/s = $INGEST_RATIO x raw single-core verify (goal $goal)"
	say "    raw verify around the run: $rv0/s before, $rv1/s after"
	wall=$(echo "$t0 $t1" | awk '{ print $2 - $1 }')
	# % of one core: each stage, the clients together, the machine
	cli=$(awk 'NR == 2 {
		s = 0
		for (i = 1; i <= NF; i++) {
			f = $i; sub(/s$/, "", f); split(f, a, "m")
			s += a[1] * 60 + a[2]
		}
		print s
	}' "$tmp/times")
	echo "$b0" >"$tmp/ticks"
	echo "$b1" >>"$tmp/ticks"
	echo "$m0 $m1 $cli $wall $HZ $CORES $conns" >>"$tmp/ticks"
	awk -v ok="$ok" -v total="$total" -v rv="$RVI" '
	NR == 1 { ns = NF / 2; for (i = 1; i <= ns; i++) { name[i] = $(2 * i - 1); t0[i] = $(2 * i) } }
	NR == 2 { for (i = 1; i <= ns; i++) t1[i] = $(2 * i) }
	NR == 3 {
		hz = $7; w = $6; cores = $8; conns = $9
		for (i = 1; i <= ns; i++) {
			pc[i] = (t1[i] - t0[i]) / hz / w * 100
			node += pc[i]
			if (pc[i] > top) { top = pc[i]; topn = name[i] }
		}
		busy = ($3 - $1) / hz / w * 100
		iow = ($4 - $2) / hz / w * 100
		clip = $5 / w * 100
		other = busy - node - clip
		if (other < 0) other = 0
		printf "    %d of %d acknowledged in %.2f s; CPU in %% of one core: ", ok, total, w
		for (i = 1; i <= ns; i++)
			printf "ns-%s %.0f, ", name[i], pc[i]
		printf "%d load tools %.0f together;\n", conns, clip
		if (ok > 0) {
			printf "    CPU per beam in microseconds: "
			for (i = 1; i <= ns; i++)
				printf "ns-%s %.0f, ", name[i], pc[i] * w / 100 / ok * 1e6
			printf "the node %.0f (a raw verify: %.0f)\n", node * w / 100 / ok * 1e6, 1e6 / rv
		}
		printf "    machine (%d cores): busy %.0f, of which not this bench %.0f; iowait %.0f\n", cores, busy, other, iow
		if (top >= 85)
			printf "    bottleneck: ns-%s is CPU-bound\n", topn
		else if (busy >= 90 * cores)
			printf "    bottleneck: the machine is saturated\n"
		else
			printf "    bottleneck: no process is CPU-bound (busiest: ns-%s at %.0f%%): the ring waits (commits, pipe hops)\n", topn, top
		if (clip / conns >= 85)
			printf "    the load tool is a bottleneck (%.0f%% of a core each)\n", clip / conns
	}' "$tmp/ticks"
	# an idle node should use next to no CPU
	b0=$(stage_ticks)
	sleep 1
	b1=$(stage_ticks)
	printf '%s\n%s\n' "$b0" "$b1" | awk -v hz="$HZ" '
	NR == 1 { for (i = 1; i <= NF / 2; i++) t0[i] = $(2 * i) }
	NR == 2 {
		for (i = 1; i <= NF / 2; i++) {
			pc = ($(2 * i) - t0[i]) / hz * 100
			if (pc >= 10)
				printf "    ns-%s used %.0f%% of a core in the idle second after the run\n", $(2 * i - 1), pc
		}
	}'
	if [ "$bad" -ne 0 ]; then
		say "    TROUBLE: $bad of $total beams not acknowledged:"
		cat "$tmp"/out.* | jq -c '{acked, refused, sent}' |
			head -4 | sed 's/^/      /'
		cat "$tmp"/err.* | head -3 | sed 's/^/      /'
		trouble=1
	fi
}

# --- set-up ---------------------------------------------------------------

lib=${NS_LIB:-}
san=
case $NS_BIN in
*bin-san|*bin-san/)
	: "${lib:=$root/obj-san/libns.a}"
	san="-fsanitize=address,undefined" ;;
esac
: "${lib:=$root/obj/libns.a}"
[ -r "$lib" ] || die "$lib is missing: run make first"
cc -O2 -o "$tmp/sodium-rate" "$here/sodium-rate.c" -lsodium ||
	die "cannot build sodium-rate"
for t in gen-beams fanout; do
	# shellcheck disable=SC2086
	cc -O2 -D_GNU_SOURCE -I"$root/common" $san -o "$tmp/$t" \
	    "$here/$t.c" "$lib" -lwebsockets -ljq -lsodium -lcrypto -lm -pthread ||
		die "cannot build $t"
done
# 500 subscribers and the node's side of them: well over 1024 descriptors
# shellcheck disable=SC3045
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
	ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null || :
fi

# --- the reference --------------------------------------------------------

ref=$("$tmp/sodium-rate" 300 1)
RS=$(echo "$ref" | jq .sign_per_s)
RV=$(echo "$ref" | jq .verify_per_s)
echo "reference: raw libsodium, one core, 300-byte messages: sign $RS/s, verify $RV/s"
sum_line "reference" "sign $RS/s, verify $RV/s" "(raw libsodium, one core)"

# --- signing and verifying ------------------------------------------------

cp "$root/t/fixtures/keys/alice.key" "$tmp/k"
chmod 600 "$tmp/k"
WSC=$root/t/helpers/wsc
[ -x "$WSC" ] || die "$WSC is missing: run make testhelpers first"

if want sign; then
awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"type\":\"beam\",\"title\":\"bench %d\",\"body\":\"%s\"}\n", i,
		    "Email is older than most platforms, and it still works: one protocol, many hosts, no owner."
}' >"$tmp/events"

t0=$(now); ns-sign -k "$tmp/k" <"$tmp/events" >"$tmp/signed"; t1=$(now)
s=$(rate "$N" "$t0" "$t1")
echo "ns-sign:        $s events/s = $(ratio "$s" "$RS") x raw sign"
sum_line "ns-sign" "$(ratio "$s" "$RS") x raw sign" ""
bytes=$(head -1 "$tmp/signed" | wc -c)
echo "                (signed events are $bytes bytes)"

for j in 1 2; do
	t0=$(now); ns-verify -j $j <"$tmp/signed" >/dev/null; t1=$(now)
	v=$(rate "$N" "$t0" "$t1")
	echo "ns-verify -j $j:  $v events/s = $(ratio "$v" "$RV") x raw single-core verify"
	sum_line "ns-verify -j $j" "$(ratio "$v" "$RV") x raw verify" ""
done
rm -f "$tmp/events" "$tmp/signed"
fi

# --- ingest -----------------------------------------------------------------

if want ingest; then
echo
echo "ingest: pre-signed beams, 256 unanswered at most on each connection, counted when acknowledged (after commit)"
for cfg in "4 connections, sync full, 1 verify thread|4|full|1|0.55" \
    "1 connection, sync full, 1 verify thread|1|full|1|0.41" \
    "4 connections, NS_VERIFY_JOBS=0: $CORES verify threads|4|full|0|-" \
    "4 connections, NS_SYNC=normal|4|normal|1|-"; do
	IFS='|' read -r label conns sync jobs goal <<EOF
$cfg
EOF
	# the machine's speed swings by a third within seconds, on a scale
	# of one round: a goal is judged on the median of a few rounds,
	# each on a new node and each against its own reference
	n=1
	[ "$goal" = - ] || n=$ROUNDS
	ratios=
	for round in $(seq 1 "$n"); do
		NS_SYNC=$sync NS_VERIFY_JOBS=$jobs \
		    node_start "ingest-$conns-$sync-$jobs-$round"
		create_channel
		[ "$n" -eq 1 ] || echo "round $round of $n:"
		ingest "$label" "$IN" "$conns" "$goal"
		node_stop
		[ "${STOP_S%.*}" -lt 3 ] || stop_note=$STOP_S
		ratios="$ratios $INGEST_RATIO"
	done
	[ "$goal" = - ] && continue
	med=$(printf '%s\n' $ratios | sort -n | awk '{ v[NR] = $1 }
	    END { print v[int((NR + 1) / 2)] }')
	echo "ingest ($label): median of $n rounds $med x raw verify (rounds:$ratios)"
	sum_line "ingest ($label)" "$med x raw verify" \
	    "[goal $goal] $(goal_ge "$med" "$goal") (rounds:$ratios)"
done
fi

# --- footprint, then fan-out on the same node -------------------------------

if want footprint || want fanout || want blast || want ack; then
echo
node_start footprint
sleep 0.5
create_channel
fi
first=100001

if want footprint; then
idle=$(node_pss)
idle_mib=$(calc "%.1f" "$idle / 1024")
echo "footprint idle: $idle_mib MiB PSS, all $(wc -l <"$tmp/pss") processes of the node (goal < 13 MiB)"
echo "    $(pss_detail)"
sum_line "footprint idle" "$idle_mib MiB PSS" \
    "[goal < 13 MiB] $(goal_lt "$idle_mib" 13)"
ingest "4 x 5000 on the footprint node" 5000 4 -
sleep 0.5
after=$(node_pss)
after_mib=$(calc "%.1f" "$after / 1024")
echo "footprint after 20000 events: $after_mib MiB PSS"
echo "    $(pss_detail)"
sum_line "footprint after 20000" "$after_mib MiB PSS" ""
fi

if want fanout; then
echo
echo "fan-out: paced publishing for $FS s, latency from publish (request written) to receipt on every subscriber"
for nr in $FANOUTS; do
	n=${nr%:*} RATE=${nr#*:}
	events=$((RATE * FS))
	gen "$tmp/fan.$n" "$events" "$first"
	first=$((first + events))
	sp=$(cat "$NODE_DIR/run/serve.pid")
	c0=$(awk '{ print $14 + $15 }' "/proc/$sp/stat")
	m0=$(machine_ticks)
	t0=$(now)
	rc=0
	timeout -k 5 120 "$tmp/fanout" -p "$PORT" -k "$tmp/k" -s "$SPACE" \
	    -n "$n" -r "$RATE" -f "$tmp/fan.$n" -w 15 >"$tmp/fan.out" \
	    2>"$tmp/fan.err" || rc=$?
	t1=$(now)
	m1=$(machine_ticks)
	c1=$(awk '{ print $14 + $15 }' "/proc/$sp/stat" 2>/dev/null || echo "$c0")
	if [ $rc -ne 0 ] || [ ! -s "$tmp/fan.out" ]; then
		say "fan-out $n subscribers: the load tool failed (status $rc):"
		sed 's/^/    /' "$tmp/fan.err" | head -5
		sum_line "fan-out $n" "failed" ""
		trouble=1
		continue
	fi
	o=$(cat "$tmp/fan.out")
	j() { echo "$o" | jq -r ".$1"; }
	p50=$(j p50_ms) p99=$(j p99_ms) del=$(j delivered) exp=$(j expected)
	dup=$(j duplicates)
	echo "fan-out $n subscribers, $RATE events/s: p50 $p50 ms, p99 $p99 ms (goal p99 < 50 ms); delivered $del of $exp, duplicates $dup"
	w=$(echo "$t0 $t1" | awk '{ print $2 - $1 }')
	serve_pc=$(echo "$c0 $c1 $w $HZ" |
	    awk '{ printf "%.0f", ($2 - $1) / $4 / $3 * 100 }')
	mach_pc=$(echo "$m0 $m1 $w $HZ" |
	    awk '{ printf "%.0f", ($3 - $1) / $6 / $5 * 100 }')
	echo "    max $(j max_ms) ms; acknowledgement p50 $(j ack_p50_ms) ms, p99 $(j ack_p99_ms) ms ($(j acked) acked, $(j refused) refused); set-up $(j setup_s) s"
	echo "    CPU in % of one core over $(calc "%.1f" "$w") s: ns-serve $serve_pc; load tool $(calc "%.0f" "$(j cpu_s) / $w * 100"); machine ($CORES cores) $mach_pc"
	if [ "$mach_pc" -ge $((90 * CORES)) ]; then
		echo "    the machine was saturated: the load tool shares its $CORES cores with the node"
	fi
	[ "$(j dropped)" = 0 ] || echo "    the node closed $(j dropped) subscriber connections"
	[ "$(j unknown)" = 0 ] || echo "    $(j unknown) event notifications for beams this run did not send"
	if [ "$del" = 0 ]; then
		met="MISSED (nothing delivered)"
	else
		met=$(goal_lt "$p99" 50)
	fi
	sum_line "fan-out $n at $RATE/s" "p50 $p50 ms, p99 $p99 ms" "[goal p99 < 50 ms] $met"
	if [ "$del" != "$exp" ] || [ "$dup" != 0 ] || [ "$(j refused)" != 0 ]; then
		say "    TROUBLE: $(j missing) deliveries missing, $dup duplicated, $(j refused) beams refused"
		sum_line "" "TROUBLE: $(j missing) missing, $dup duplicates" ""
		trouble=1
	fi
done

fi

# The blast: one publisher as fast as the answers come (256 requests
# unanswered at most), 100 subscribers.  The node's CPU (every process of
# it, from /proc) from the first request to the last delivery, per
# delivered message.
if want blast; then
echo
echo "fan-out blast: $BLAST events as fast as acknowledged, 100 subscribers"
gen "$tmp/blast" "$BLAST" "$first"
sp=$(cat "$NODE_DIR/run/serve.pid")
c0=$(awk '{ print $14 + $15 }' "/proc/$sp/stat")
rc=0
timeout -k 5 180 "$tmp/fanout" -p "$PORT" -k "$tmp/k" -s "$SPACE" -n 100 \
    -W 256 -f "$tmp/blast" -w 15 -c "$(node_pids | paste -s -d, -)" \
    >"$tmp/fan.out" 2>"$tmp/fan.err" || rc=$?
c1=$(awk '{ print $14 + $15 }' "/proc/$sp/stat" 2>/dev/null || echo "$c0")
if [ $rc -ne 0 ] || [ ! -s "$tmp/fan.out" ]; then
	say "fan-out blast: the load tool failed (status $rc):"
	sed 's/^/    /' "$tmp/fan.err" | head -5
	sum_line "fan-out blast 100" "failed" ""
	trouble=1
else
	o=$(cat "$tmp/fan.out")
	j() { echo "$o" | jq -r ".$1"; }
	del=$(j delivered) exp=$(j expected) dup=$(j duplicates)
	dis=$(j disordered)
	us=$(calc "%.2f" "$(j node_cpu_s) / ($del > 0 ? $del : 1) * 1e6")
	serve_us=$(calc "%.2f" "($c1 - $c0) / $HZ / ($del > 0 ? $del : 1) * 1e6")
	echo "fan-out blast: $(calc "%.0f" "$del / $(j run_s)") messages/s delivered; node CPU $us us per delivered message (goal <= 4.6)"
	echo "    delivered $del of $exp, duplicates $dup, out of order $dis; ns-serve $serve_us us per message (set-up included); load tool $(calc "%.0f" "$(j cpu_s) / $(j run_s) * 100")% of a core"
	[ "$(j dropped)" = 0 ] || echo "    the node closed $(j dropped) subscriber connections"
	if [ "$del" = 0 ]; then
		met="MISSED (nothing delivered)"
	else
		met=$(goal_lt "$us" 4.6001)
	fi
	sum_line "fan-out blast 100, CPU per delivery" "$us us (ns-serve $serve_us)" "[goal <= 4.6 us] $met"
	if [ "$del" != "$exp" ] || [ "$dup" != 0 ] || [ "$dis" != 0 ] ||
	    [ "$(j refused)" != 0 ]; then
		say "    TROUBLE: $(j missing) deliveries missing, $dup duplicated, $dis out of order, $(j refused) beams refused"
		sum_line "" "TROUBLE: blast $(j missing) missing, $dup duplicates, $dis out of order" ""
		trouble=1
	fi
fi
first=$((first + BLAST))
fi

# One beam at a time, each sent when the one before is acknowledged (so
# after its commit): the latency a user feels when posting.
if want ack; then
echo
gen "$tmp/ack" "$ACKN" "$first"
first=$((first + ACKN))
timeout -k 5 300 "$WSC" -p "$PORT" -k "$tmp/k" --rtt --timeout 100 \
    <"$tmp/ack" >"$tmp/ack.out" 2>/dev/null || :
n_ok=$(jq -s '[.[] | select(.ok == true)] | length' "$tmp/ack.out")
ap50=$(jq -s '[.[] | select(.wsc == "rtt") | .ms] | sort | .[length / 2 | floor]' "$tmp/ack.out")
ap99=$(jq -s '[.[] | select(.wsc == "rtt") | .ms] | sort | .[(length * 99 / 100 | floor) - 1]' "$tmp/ack.out")
echo "acknowledgement, one beam at a time (sync full): p50 $ap50 ms, p99 $ap99 ms; $n_ok of $ACKN acknowledged"
if [ "$n_ok" != "$ACKN" ]; then
	say "    TROUBLE: $((ACKN - n_ok)) beams not acknowledged"
	trouble=1
fi
sum_line "acknowledgement, one beam at a time" "p50 $ap50 ms, p99 $ap99 ms" \
    "[goal p99 < 4.2 ms] $(goal_lt "$ap99" 4.2)"
fi
node_stop

# --- fairness ---------------------------------------------------------------

# One user floods from 4 connections, 1000 requests each all sent at once
# (history pages of 100 envelopes); meanwhile another user's requests, one
# at a time, must still be answered quickly.
if want fairness; then
echo
echo "fairness: one DID floods from 4 connections; another's requests one at a time"
node_start fair
NS_KEY=$tmp/k ns-client create channel fair >/dev/null
FSPACE=$(NS_KEY=$tmp/k ns-client info "channel/$(jq -r '.did | ltrimstr("did:key:")' "$tmp/k")/fair" | jq -r .id)
seq 1 100 | sed 's/.*/{"n":&}/' | NS_KEY=$tmp/k ns-client beam "$FSPACE" >/dev/null
ns-keygen -o "$tmp/k2" >/dev/null
for c in 1 2 3 4; do
	seq 1 1000 | awk -v s="$FSPACE" '{ printf "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"space.history\",\"params\":{\"space\":\"%s\",\"limit\":1000}}\n", $1, s }' >"$tmp/flood.$c"
	timeout -k 5 120 "$WSC" -p "$PORT" -k "$tmp/k" --count 1002 --timeout 100 \
	    <"$tmp/flood.$c" >"$tmp/flood.$c.out" 2>/dev/null &
	echo $! >>"$tmp/bg"
done
sleep 0.2
seq 1 300 | awk -v s="$FSPACE" '{ printf "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"space.info\",\"params\":{\"space\":\"%s\"}}\n", $1, s }' |
    timeout -k 5 120 "$WSC" -p "$PORT" -k "$tmp/k2" --rtt --timeout 100 >"$tmp/rtt" 2>/dev/null || true
busy=0 pages=0
for c in 1 2 3 4; do
	wait "$(sed -n "${c}p" "$tmp/bg")" 2>/dev/null || true
	pages=$((pages + $(jq -s '[.[] | select(.result.envelopes)] | length' "$tmp/flood.$c.out")))
	busy=$((busy + $(jq -s '[.[] | select(.error.data.reason == "busy")] | length' "$tmp/flood.$c.out")))
done
: >"$tmp/bg"
fp50=$(jq -s '[.[] | select(.wsc == "rtt") | .ms] | sort | .[length / 2 | floor]' "$tmp/rtt")
fp99=$(jq -s '[.[] | select(.wsc == "rtt") | .ms] | sort | .[(length * 99 / 100 | floor) - 1]' "$tmp/rtt")
n_rtt=$(jq -s '[.[] | select(.wsc == "rtt")] | length' "$tmp/rtt")
echo "fairness: the other user's requests p50 $fp50 ms, p99 $fp99 ms ($n_rtt answered); flood: $pages pages served, $busy answered busy"
if [ "$n_rtt" != 300 ] || [ $((pages + busy)) != 4000 ]; then
	say "    TROUBLE: $n_rtt of 300 requests answered; $((pages + busy)) of 4000 flooding requests answered"
	trouble=1
fi
sum_line "fairness, other user while one floods" "p50 $fp50 ms, p99 $fp99 ms" "[goal p99 < 100 ms] $(goal_lt "$fp99" 100)"
node_stop
fi

# --- federation -------------------------------------------------------------

# fed.sh starts its own nodes, and writes its summary lines into ours
if want fed; then
echo
rc=0
NS_BIN=$NS_BIN NS_LIB=${NS_LIB:-} BENCH_FED_SUMMARY=$summary \
    sh "$here/fed.sh" || rc=$?
case $rc in
0) ;;
1) trouble=1 ;;
*)
	sum_line "federation" "could not run (status $rc)" ""
	trouble=1 ;;
esac
fi

# so does relay.sh, last: a live stream over real nodes
if want relay; then
echo
rc=0
NS_BIN=$NS_BIN BENCH_RELAY_SUMMARY=$summary sh "$here/relay.sh" || rc=$?
case $rc in
0) ;;
1) trouble=1 ;;
*)
	sum_line "live streams" "could not run (status $rc)" ""
	trouble=1 ;;
esac
fi

echo
echo "summary (ratios to this run's raw libsodium rates; goals in brackets):"
cat "$summary"
[ -z "$stop_note" ] || echo "  (note: stopping a node took $stop_note s; ns-node waits 5 s for its stages to see EOF)"
exit $trouble
