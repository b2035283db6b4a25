# The nodes of bench-fed and bench-relay, sourced by fed.sh and relay.sh:
# node i lives in $tmp/n$i.  The sourcing script sets tmp, NODE (how to
# run ns-node), UP_S, and say and die; NS_* settings for ns-node init come
# from the environment.

# --- the nodes --------------------------------------------------------------

# Node i lives in $tmp/n$i; its ns-node's pid is PID_i, its port PORT_i.
dir_of() { echo "$tmp/n$1"; }
pid_of() { eval "echo \${PID_$1:-}"; }
port_of() { eval "echo \${PORT_$1:-}"; }
url_of() { echo "ws://127.0.0.1:$(port_of "$1")/"; }

# node_init I: a new node directory on a free port of 127.0.0.1
node_init() {
	NS_LISTEN=127.0.0.1:0 NS_ADDRESS='' $NODE init "$(dir_of "$1")" \
	    >/dev/null || die "ns-node init failed for node $1"
}

# node_run I: run node I in the background, its log in DIR/log
node_run() {
	d=$(dir_of "$1")
	# the nodes' stdin is not ours to share
	$NODE run "$d" </dev/null >>"$d/log" 2>&1 &
	eval "PID_$1=\$!"
	NODES_STARTED=1
}

# stages_up I: every stage of node I runs
stages_up() {
	d=$(dir_of "$1")
	for s in serve verify log beam relay gossip; do
		[ -s "$d/run/$s.pid" ] &&
			kill -0 "$(cat "$d/run/$s.pid")" 2>/dev/null || return 1
	done
}

# wait_up I...: wait until each node I serves (UP_S at most); the first
# time, learn its port and pin it in its config, so a restart keeps it
wait_up() {
	deadline=$(($(date +%s) + UP_S))
	for i in "$@"; do
		d=$(dir_of "$i")
		# the port read as part of the test: a file seen a moment ago
		# may be gone (a restart clears what the killed run left)
		until port=$(cat "$d/run/port" 2>/dev/null) &&
		    [ -n "$port" ] && stages_up "$i"; do
			if ! kill -0 "$(pid_of "$i")" 2>/dev/null &&
			    port_lost "$i"; then
				node_run "$i"
				continue
			fi
			if [ "$(date +%s)" -ge "$deadline" ] ||
			    ! kill -0 "$(pid_of "$i")" 2>/dev/null; then
				tail -n 20 "$d/log" >&2
				die "node $i did not come up"
			fi
			sleep 0.1
		done
		old=$(port_of "$i")
		if [ -z "$old" ]; then
			eval "PORT_$i=$port"
			sed -i "s/^NS_LISTEN=.*/NS_LISTEN='127.0.0.1:$port'/" \
			    "$d/config"
			eval "DID_$i=\$($NODE did \"\$d\")"
		elif [ "$old" != "$port" ]; then
			die "node $i came back on port $port, not $old"
		fi
	done
}

# port_lost I: node I stopped at its first start because the port it was
# to listen on was taken.  ns-node has ns-serve bind port 0 itself, so
# nodes started together no longer race for a port; should one still lose
# it, say so, and let it try again, twice at most.
port_lost() {
	[ -z "$(port_of "$1")" ] &&
		grep -q 'Address already in use' "$(dir_of "$1")/log" || return 1
	pl_n=0
	eval "pl_n=\${LOST_$1:-0}"
	[ "$pl_n" -lt 2 ] || return 1
	eval "LOST_$1=$((pl_n + 1))"
	say "    node $1: $(grep -m 1 'Address already in use' "$(dir_of "$1")/log") (another node's port); starting it again"
	PORT_RACES=$((PORT_RACES + 1))
	wait "$(pid_of "$1")" 2>/dev/null || :
}
PORT_RACES=0
