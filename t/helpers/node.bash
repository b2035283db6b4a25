# A real node for end-to-end tests: load after helpers/common.
#
#   node_start [NAME]  make a node in $BATS_TEST_TMPDIR/NAME (default
#                      "node") on a free port of 127.0.0.1, run it in the
#                      background and wait (10 s at most) until it listens;
#                      sets NODE_DIR, NODE_PID, NODE_DID and exports NS_URL.
#                      NS_ADDRESS in the environment becomes its address.
#   node_stop          stop it (SIGTERM, then SIGKILL after 10 s) and wait.
#
# Call node_stop from teardown.  The node's stderr is in $NODE_DIR/log.

# ns-node from PATH, else the script in the source tree, as a command
# line in NS_NODE (so that "$!" of a background run is ns-node itself).
ns_node_cmd() {
	local p
	p=$(command -v ns-node) || p=
	if [ -n "$p" ] && [ -x "$p" ]; then
		NS_NODE=("$p")
	else
		NS_NODE=(sh "$BATS_TEST_DIRNAME/../share/ns-node")
	fi
}

node_start() {
	local i=0
	ns_node_cmd
	NODE_DIR=$BATS_TEST_TMPDIR/${1:-node}
	NS_LISTEN=127.0.0.1:0 "${NS_NODE[@]}" init "$NODE_DIR" >/dev/null ||
		return 1
	"${NS_NODE[@]}" run "$NODE_DIR" 3>&- >>"$NODE_DIR/log" 2>&1 &
	NODE_PID=$!
	while [ ! -s "$NODE_DIR/run/port" ]; do
		if [ $i -ge 100 ] || ! kill -0 "$NODE_PID" 2>/dev/null; then
			echo "node_start: the node did not come up; its log:" >&2
			cat "$NODE_DIR/log" >&2
			node_stop
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	NS_URL="ws://127.0.0.1:$(cat "$NODE_DIR/run/port")/"
	export NS_URL
	NODE_DID=$("${NS_NODE[@]}" did "$NODE_DIR")
}

node_stop() {
	local i=0 p
	[ -n "${NODE_PID-}" ] || return 0
	kill -TERM "$NODE_PID" 2>/dev/null
	while kill -0 "$NODE_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$NODE_PID" 2>/dev/null || :
	wait "$NODE_PID" 2>/dev/null
	# Safety net: a stage that outlived ns-node (every stage's command
	# line names a file in NODE_DIR) would otherwise run on after the test.
	for p in $(pgrep -f -- "$NODE_DIR/"); do
		kill -KILL "$p" 2>/dev/null || :
	done
	NODE_PID=
	return 0
}
