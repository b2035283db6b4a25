# Several real nodes on 127.0.0.1 for federation tests: load after
# helpers/common and helpers/node.
#
#   node_up NAME   make and run a node in $BATS_TEST_TMPDIR/NAME on a free
#                  port; sets URL_NAME, ADDR_NAME (host:port), DID_NAME,
#                  PID_NAME, DIR_NAME.  NS_* settings in the environment go
#                  into its config.
#   node_down NAME stop it (SIGTERM, then SIGKILL after 10 s).
#   node_kill NAME kill -9 the node and every stage of it.
#   node_again NAME run a stopped node again on its own port.
#   nodes_down     stop every node started (from teardown).
#   eventually SECONDS CMD...  run CMD every 0.2 s until it succeeds.

node_up() {
	local name=$1 dir=$BATS_TEST_TMPDIR/$1
	ns_node_cmd
	NS_LISTEN=${NS_LISTEN:-127.0.0.1:0} "${NS_NODE[@]}" init "$dir" >/dev/null ||
		return 1
	printf -v "DIR_$name" %s "$dir"
	NODES="${NODES-} $name"
	node_again "$name"
}

node_again() {
	local name=$1 dir=$BATS_TEST_TMPDIR/$1 i=0 pid port
	ns_node_cmd
	"${NS_NODE[@]}" run "$dir" 3>&- >>"$dir/log" 2>&1 &
	pid=$!
	printf -v "PID_$name" %s "$pid"
	while [ ! -s "$dir/run/port" ]; do
		if [ $i -ge 100 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "node_up $name: the node did not come up; its log:" >&2
			cat "$dir/log" >&2
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	port=$(cat "$dir/run/port")
	printf -v "URL_$name" 'ws://127.0.0.1:%s/' "$port"
	printf -v "ADDR_$name" '127.0.0.1:%s' "$port"
	printf -v "DID_$name" %s "$("${NS_NODE[@]}" did "$dir")"
	# a restart keeps the port: the config names it from now on
	sed -i "s/^NS_LISTEN=.*/NS_LISTEN='127.0.0.1:$port'/" "$dir/config"
}

node_down() {
	local v="PID_$1" i=0 pid p
	pid=${!v-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$pid" 2>/dev/null || :
	wait "$pid" 2>/dev/null
	for p in $(pgrep -f -- "$BATS_TEST_TMPDIR/$1/"); do
		kill -KILL "$p" 2>/dev/null || :
	done
	printf -v "PID_$1" %s ""
}

node_kill() {
	local v="PID_$1" pid p
	pid=${!v-}
	for p in $pid $(pgrep -f -- "$BATS_TEST_TMPDIR/$1/"); do
		kill -KILL "$p" 2>/dev/null || :
	done
	wait "$pid" 2>/dev/null
	printf -v "PID_$1" %s ""
}

nodes_down() {
	local n
	for n in ${NODES-}; do
		node_down "$n"
	done
}

eventually() {
	local n=$(($1 * 5))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" 2>/dev/null && return 0
		sleep 0.2
		n=$((n - 1))
	done
	echo "eventually: never: $*" >&2
	return 1
}
