#!/usr/bin/env bats
# ns-node, the supervisor: one run per directory, stages that die with it,
# settings checked before anything starts, private files, status, and the
# ring wired in RING order.  Real nodes on 127.0.0.1 (helpers/node.bash).

load helpers/common
load helpers/node
bats_require_minimum_version 1.5.0

setup() {
	ALICE=$(fixture_key alice)
	export NS_KEY=$ALICE
	T=$BATS_TEST_TMPDIR
	ns_node_cmd
}

teardown() {
	node_stop
	for p in ${LEFT_PIDS-}; do kill -KILL "$p" 2>/dev/null || :; done
}

# gone PID: PID has exited (a zombie that nobody reaps counts as gone)
gone() {
	kill -0 "$1" 2>/dev/null || return 0
	[ "$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" = Z ]
}

# wait_gone PID...: until every PID is gone, 15 s at most in all
wait_gone() {
	local i=0 p
	for p in "$@"; do
		while ! gone "$p"; do
			if [ $i -ge 150 ]; then
				echo "pid $p still runs: $(tr '\0' ' ' <"/proc/$p/cmdline")" >&2
				return 1
			fi
			sleep 0.1
			i=$((i + 1))
		done
	done
}

# wait_new FILE OLD: until FILE holds something other than OLD, 10 s at most
wait_new() {
	local i=0
	while [ "$(cat "$1" 2>/dev/null)" = "$2" ] || [ ! -s "$1" ]; do
		[ $i -ge 100 ] && { echo "$1 still holds $2" >&2; return 1; }
		sleep 0.1
		i=$((i + 1))
	done
}

# rerun: ns-node run NODE_DIR again, in the background, until it serves
# (20 s at most: it may first wait out what a dead node left)
rerun() {
	local i=0
	"${NS_NODE[@]}" run "$NODE_DIR" 3>&- >>"$NODE_DIR/log" 2>&1 &
	NODE_PID=$!
	until [ "$(cat "$NODE_DIR/run/pid" 2>/dev/null)" = "$NODE_PID" ] &&
	    [ -s "$NODE_DIR/run/port" ]; do
		if [ $i -ge 200 ] || ! kill -0 "$NODE_PID" 2>/dev/null; then
			echo "the node did not come up again; its log:" >&2
			cat "$NODE_DIR/log" >&2
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	NS_URL="ws://127.0.0.1:$(cat "$NODE_DIR/run/port")/"
	export NS_URL
}

stage_pids() {
	local s
	for s in serve verify log beam relay gossip; do cat "$NODE_DIR/run/$s.pid"; done
}

# what a refused run must leave alone (the stats files change
# every second by itself)
snapshot() {
	(cd "$NODE_DIR" && stat -c '%n %i %y %s %a' config node.key lock run/* |
		grep -v 'serve\.stats\|gossip\.stats\|relay\.stats')
}

@test "ns-node: a second run on a running node is refused in one line, exit 2, touching nothing" {
	node_start
	dir=$(cd "$NODE_DIR" && pwd -P)
	before=$(snapshot)
	run -2 --separate-stderr "${NS_NODE[@]}" run "$NODE_DIR"
	[ -z "$output" ]
	[ "$stderr" = "ns-node: $dir: a node is running there already (pid $NODE_PID)" ]
	[ "$(snapshot)" = "$before" ]
	# the first node still restarts a stage that dies, and serves
	old=$(cat "$NODE_DIR/run/verify.pid")
	kill -KILL "$old"
	wait_new "$NODE_DIR/run/verify.pid" "$old"
	run -0 ns-client -t 10 create channel still
}

@test "ns-node: its stages die with a supervisor killed by SIGKILL, and a new run serves" {
	node_start
	# the stages, the per-stage loops and the watcher
	pids="$(stage_pids) $(cat "$NODE_DIR"/run/*.loop "$NODE_DIR/run/watch.pid")"
	[ "$(echo $pids | wc -w)" -eq 13 ]
	old=$NODE_PID
	kill -KILL "$NODE_PID"
	wait "$NODE_PID" || :
	wait_gone $pids
	grep -q "the supervisor (pid $old) is gone; stopping its stages" "$NODE_DIR/log"
	rerun
	run -0 ns-client -t 10 create channel again
	for p in $(stage_pids); do
		[[ " $pids " != *" $p "* ]]
	done
}

@test "ns-node: a new run stops the stages a dead node left behind, then serves" {
	node_start
	stages=$(stage_pids)
	loops=$(cat "$NODE_DIR"/run/*.loop)
	# the watcher first, then the supervisor: nothing stops the stages now
	kill -KILL "$(cat "$NODE_DIR/run/watch.pid")"
	wait_gone "$(cat "$NODE_DIR/run/watch.pid")"
	kill -KILL "$NODE_PID"
	wait "$NODE_PID" || :
	LEFT_PIDS="$stages $loops"
	sleep 0.5
	for p in $stages; do ! gone "$p"; done
	rerun
	wait_gone $stages $loops
	grep -q "waiting for what is left of a node that died" "$NODE_DIR/log"
	run -0 ns-client -t 10 create channel again
}

@test "ns-node: init refuses each bad setting in one line naming it, exit 2, and makes nothing" {
	long="ws://$(printf 'a%.0s' $(seq 300))"
	while IFS= read -r kv; do
		run -2 --separate-stderr env "$kv" "${NS_NODE[@]}" init "$T/n"
		[ -z "$output" ] || { echo "$kv: $output"; return 1; }
		[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$kv: $stderr"; return 1; }
		[[ "$stderr" == "ns-node: ${kv%%=*}="*": must be "* ]] ||
			{ echo "$kv: $stderr"; return 1; }
		[ "${#stderr}" -lt 220 ]
		[ ! -e "$T/n" ]
	done <<EOF
NS_LISTEN=7724
NS_LISTEN=127.0.0.1:65536
NS_LISTEN=127.0.0.1:
NS_LISTEN=:7700
NS_LISTEN=::1:7700
NS_LISTEN=[::1]7700
NS_LISTEN=a b:7700
NS_ADDRESS=node.example.org
NS_ADDRESS=node example.org:7700
NS_ADDRESS=node.example.org:0
NS_ADDRESS=node.example.org:70000
NS_ADDRESS=ws://node"example
NS_ADDRESS=ws://node'example
NS_ADDRESS=http://node.example.org/
NS_ADDRESS=ws://
NS_ADDRESS=$long
NS_SYNC=bogus
NS_SYNC=FULL
NS_VERIFY_JOBS=65
NS_VERIFY_JOBS=-1
NS_VERIFY_JOBS=two
NS_MAX_CONN=0
NS_MAX_CONN=1000001
NS_MAX_INFLIGHT=0
NS_MAX_INFLIGHT=4097
NS_MAX_DID_INFLIGHT=0
NS_MAX_DID_INFLIGHT=65537
NS_MAX_DID_CONN=0
NS_MAX_DID_CONN=1e6
EOF
	run -2 --separate-stderr env NS_SYNC=bogus "${NS_NODE[@]}" init "$T/n"
	[ "$stderr" = "ns-node: NS_SYNC=bogus: must be full or normal" ]
}

@test "ns-node: init writes the settings it is given, and the serve limits' defaults" {
	NS_LISTEN='[::1]:0' NS_ADDRESS='wss://node.example.org/ns?a=$HOME&b' \
	NS_SYNC=normal NS_VERIFY_JOBS=0 NS_MAX_CONN=1000000 NS_MAX_DID_CONN=007 \
	    run -0 --separate-stderr "${NS_NODE[@]}" init "$T/n"
	assert_jq '.did | startswith("did:key:z6Mk")'
	run -0 sh -c '. "$1/config" && echo "$NS_LISTEN|$NS_ADDRESS|$NS_SYNC|$NS_VERIFY_JOBS|$NS_MAX_CONN|$NS_MAX_INFLIGHT|$NS_MAX_DID_INFLIGHT|$NS_MAX_DID_CONN"' sh "$T/n"
	[ "$output" = '[::1]:0|wss://node.example.org/ns?a=$HOME&b|normal|0|1000000|256|64|7' ]
	# each setting is explained where it is set
	for v in NS_MAX_INFLIGHT NS_MAX_DID_INFLIGHT NS_MAX_DID_CONN; do
		grep -B1 "^$v=" "$T/n/config" | head -n 1 | grep -q '^#'
	done
	run -0 "${NS_NODE[@]}" --help
	assert_match "NS_MAX_DID_INFLIGHT"
	assert_match "ns-node status DIR"
}

@test "ns-node: run refuses a bad config in one line naming file and setting, exit 2, before starting anything" {
	NS_LISTEN=127.0.0.1:0 "${NS_NODE[@]}" init "$T/n" >/dev/null
	dir=$(cd "$T/n" && pwd -P)
	cp "$T/n/config" "$T/config.good"
	for kv in NS_SYNC=bogus NS_LISTEN=7724 NS_MAX_INFLIGHT=0 "NS_ADDRESS='a b:1'"; do
		cp "$T/config.good" "$T/n/config"
		echo "$kv" >>"$T/n/config"
		run -2 --separate-stderr "${NS_NODE[@]}" run "$T/n"
		[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$kv: $stderr"; return 1; }
		var=${kv%%=*}
		[[ "$stderr" == "ns-node: $dir/config: $var="*": must be "* ]] ||
			{ echo "$kv: $stderr"; return 1; }
		[ ! -e "$T/n/run" ] && [ ! -e "$T/n/lock" ] && [ ! -e "$T/n/log.db" ]
	done
}

@test "ns-node: a stage that fails at start stops the node; no serving line follows its message" {
	NS_LISTEN=127.0.0.1:0 "${NS_NODE[@]}" init "$T/n" >/dev/null
	# ns-beam cannot open a directory as its database: exit 2 at once
	mkdir "$T/n/beams.db"
	run -1 --separate-stderr timeout 60 "${NS_NODE[@]}" run "$T/n"
	at=$(grep -n "beam exited 2 at start: a configuration error; stopping the node" <<<"$stderr" | cut -d: -f1)
	[ -n "$at" ] || { echo "$stderr"; return 1; }
	! tail -n +"$at" <<<"$stderr" | grep -q "serving"
	! grep -q "^usage:" <<<"$stderr"
	[ "${#stderr_lines[@]}" -lt 10 ]
	! grep -q "^ns-node: stopped" <<<"$stderr"
}

@test "ns-node: the serve limits and --stats go only to an ns-serve that lists them" {
	real=$(command -v ns-serve)
	mkdir "$T/fake"
	# an ns-serve that lists the newer options and records its arguments,
	# then runs the real one without the options it may not know
	cat >"$T/fake/ns-serve" <<EOF
#!/bin/sh
if [ "\$1" = --help ]; then
	"$real" --help
	echo "      --max-inflight N"
	echo "      --max-did-inflight N"
	echo "      --max-did-conn N"
	echo "      --max-node-rate N"
	echo "      --stats FILE"
	exit 0
fi
echo "\$*" >>"$T/serve.args"
i=\$#
while [ \$i -gt 0 ]; do
	a=\$1
	shift
	i=\$((i - 1))
	case \$a in
	--max-inflight|--max-did-inflight|--max-did-conn|--max-node-rate|--stats)
		shift
		i=\$((i - 1))
		continue ;;
	esac
	set -- "\$@" "\$a"
done
exec "$real" "\$@"
EOF
	chmod 755 "$T/fake/ns-serve"
	NS_BIN=$T/fake NS_MAX_INFLIGHT=7 NS_MAX_DID_INFLIGHT=9 NS_MAX_DID_CONN=5 node_start
	dir=$(cd "$NODE_DIR" && pwd -P)
	grep -q -- "--max-inflight 7 --max-did-inflight 9 --max-did-conn 5 --max-node-rate 20000 --stats $dir/run/serve.stats" "$T/serve.args"
	run -0 ns-client -t 10 create channel limits
	node_stop
	# the real ns-serve gets them if it lists them, else not
	node_start real
	args=$(tr '\0' ' ' <"/proc/$(cat "$NODE_DIR/run/serve.pid")/cmdline")
	for o in --max-inflight --max-did-inflight --max-did-conn --max-node-rate --stats; do
		if ns-serve --help | grep -q -- "$o "; then
			[[ "$args" == *" $o "* ]]
		else
			[[ "$args" != *" $o "* ]]
		fi
	done
}

@test "ns-node: under umask 000 the node directory and every file in it are private" {
	umask 000
	"${NS_NODE[@]}" init "$T/n" >/dev/null
	[ "$(stat -c %a "$T/n")" = 700 ]
	[ "$(stat -c %a "$T/n/config")" = 600 ]
	[ "$(stat -c %a "$T/n/node.key")" = 600 ]
	node_start
	S=$(ns-client -t 10 create channel private | jq -r .id)
	ns-client -t 10 beam "$S" '{"title":"private"}' >/dev/null
	[ -e "$NODE_DIR/log.db" ] && [ -e "$NODE_DIR/beams.db" ]
	run -0 find "$NODE_DIR" -perm /077
	[ -z "$output" ] || { ls -laR "$NODE_DIR"; return 1; }
	# run makes a loosened directory private again
	node_stop
	chmod 755 "$NODE_DIR"
	chmod 644 "$NODE_DIR/config" "$NODE_DIR/log.db" "$NODE_DIR/beams.db"
	rerun
	run -0 find "$NODE_DIR" -perm /077
	[ -z "$output" ] || { ls -laR "$NODE_DIR"; return 1; }
	node_stop
	# and refuses to run where it cannot
	mkdir "$T/nochmod"
	printf '#!/bin/sh\nexit 1\n' >"$T/nochmod/chmod"
	chmod 755 "$T/nochmod/chmod"
	PATH=$T/nochmod:$PATH run -2 --separate-stderr "${NS_NODE[@]}" run "$NODE_DIR"
	assert_match "cannot make it private" "$stderr"
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ ! -e "$NODE_DIR/run/port" ]
}

@test "ns-node: status prints up, stages, restarts and counts; exit 1 when stopped, 2 elsewhere" {
	node_start
	port=$(cat "$NODE_DIR/run/port")
	run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
	assert_jq ".up == true and .pid == $NODE_PID and .did == \"$NODE_DID\""
	assert_jq ".listen == \"127.0.0.1:$port\" and .address == \"127.0.0.1:$port\""
	assert_jq '.uptime >= 0 and .uptime < 600'
	assert_jq '(.stages | keys) == ["beam","gossip","log","relay","serve","verify"]'
	for s in serve verify log beam; do
		assert_jq ".stages.$s == {\"pid\":$(cat "$NODE_DIR/run/$s.pid"),\"restarts\":0}"
	done
	assert_jq '.spaces == 0 and .beams == 0'
	S=$(ns-client -t 10 create channel counted | jq -r .id)
	ns-client -t 10 beam "$S" '{"title":"one"}' >/dev/null
	old=$(cat "$NODE_DIR/run/verify.pid")
	kill -KILL "$old"
	wait_new "$NODE_DIR/run/verify.pid" "$old"
	run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
	assert_jq '.spaces == 1 and .beams == 1'
	assert_jq ".stages.verify.restarts == 1 and .stages.verify.pid == $(cat "$NODE_DIR/run/verify.pid")"
	assert_jq '.stages.serve.restarts == 0'
	if ! ns-serve --help | grep -q -- '--stats '; then
		# connections come from ns-serve's stats file, when it is fresh
		# and from the ns-serve that runs now
		assert_jq '.connections == null'
		spid=$(cat "$NODE_DIR/run/serve.pid")
		echo "{\"pid\":$spid,\"started\":1,\"clients\":3,\"nodes\":1,\"subs\":2,\"inflight\":0}" >"$NODE_DIR/run/serve.stats"
		run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
		assert_jq '.connections == {"clients":3,"nodes":1,"subs":2,"inflight":0}'
		touch -d '-1 minute' "$NODE_DIR/run/serve.stats"
		run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
		assert_jq '.connections == null'
		echo "{\"pid\":1,\"started\":1,\"clients\":3,\"nodes\":1,\"subs\":2,\"inflight\":0}" >"$NODE_DIR/run/serve.stats"
		run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
		assert_jq '.connections == null'
	else
		run -0 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
		assert_jq '.connections.clients >= 0'
	fi
	node_stop
	run -1 --separate-stderr "${NS_NODE[@]}" status "$NODE_DIR"
	assert_jq '.up == false and .pid == null and .stages == null and .uptime == null'
	assert_jq ".did == \"$NODE_DID\" and .listen == \"127.0.0.1:0\" and .spaces == 1 and .beams == 1"
	mkdir "$T/empty"
	run -2 --separate-stderr "${NS_NODE[@]}" status "$T/empty"
	assert_match "not a node directory" "$stderr"
	run -2 --separate-stderr "${NS_NODE[@]}" status "$T/nothing"
	run -2 --separate-stderr "${NS_NODE[@]}" status
}

@test "ns-node: the ring is wired in RING order, one fifo per stage named after it" {
	node_start
	dir=$(cd "$NODE_DIR" && pwd -P)
	ring=$(sed -n 's/^RING="\(.*\)"$/\1/p' "$BATS_TEST_DIRNAME/../share/ns-node")
	[ -n "$ring" ]
	set -- $ring
	first=$1
	while [ $# -gt 0 ]; do
		next=${2:-$first}
		pid=$(cat "$NODE_DIR/run/$1.pid")
		[ -p "$NODE_DIR/run/$1.fifo" ]
		[ "$(readlink "/proc/$pid/fd/0")" = "$dir/run/$1.fifo" ]
		[ "$(readlink "/proc/$pid/fd/1")" = "$dir/run/$next.fifo" ]
		[ "$(cat "/proc/$pid/comm")" = "ns-$1" ]
		shift
	done
}

@test "ns-node: nodes started together on port 0 each serve on a port of their own, kept across a serve restart" {
	local n pids=() ports
	for n in 1 2 3 4 5 6 7 8; do
		NS_LISTEN=127.0.0.1:0 "${NS_NODE[@]}" init "$T/n$n" >/dev/null
	done
	for n in 1 2 3 4 5 6 7 8; do
		"${NS_NODE[@]}" run "$T/n$n" 3>&- >"$T/n$n/log" 2>&1 &
		pids+=("$!")
	done
	LEFT_PIDS="${pids[*]}"
	for n in 1 2 3 4 5 6 7 8; do
		i=0
		until [ -s "$T/n$n/run/port" ]; do
			[ $i -lt 150 ] || { cat "$T/n$n/log" >&2; false; }
			sleep 0.1
			i=$((i + 1))
		done
	done
	ports=$(cat "$T"/n*/run/port | sort -u | wc -l)
	[ "$ports" -eq 8 ]
	# every node names itself by the port it got
	for n in 1 2 3 4 5 6 7 8; do
		p=$(cat "$T/n$n/run/port")
		run -0 ns-client -u "ws://127.0.0.1:$p/" login
		assert_jq ".node == \"$("${NS_NODE[@]}" did "$T/n$n")\""
		grep -q "address 127.0.0.1:$p)" "$T/n$n/log"
	done
	# a restarted ns-serve binds the same port
	p=$(cat "$T/n1/run/port")
	old=$(cat "$T/n1/run/serve.pid")
	kill -KILL "$old"
	wait_new "$T/n1/run/serve.pid" "$old"
	i=0
	until ns-client -t 2 -u "ws://127.0.0.1:$p/" login >/dev/null 2>&1; do
		[ $i -lt 50 ] || false
		sleep 0.2
		i=$((i + 1))
	done
	for pid in "${pids[@]}"; do kill -TERM "$pid"; done
	wait_gone "${pids[@]}"
}
