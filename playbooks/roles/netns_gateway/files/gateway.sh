#!/bin/sh
# gateway.sh net|start|stop|down: one netns gateway. Every step is idempotent.
# Environment: NS SW BRIDGE VETH ADDR PLEN TDIR BIN TICK_MS IDLE PY READY TIMEOUT
set -eu

net() {
	[ -e "/run/netns/$NS" ] || ip netns add "$NS"
	ip -n "$NS" link set lo up
	if ! ip -n "$SW" link show dev "$VETH" >/dev/null 2>&1; then
		ip -n "$NS" link del eth0 2>/dev/null || true
		ip -n "$SW" link add "$VETH" type veth peer name eth0 netns "$NS"
	fi
	ip -n "$SW" link set dev "$VETH" master "$BRIDGE" up
	ip -n "$NS" addr replace "$ADDR/$PLEN" dev eth0
	ip -n "$NS" link set dev eth0 up
}

# Our netkeyd: the pidfile's process, if its command line names our control socket.
ours() {
	[ -f "$TDIR/netkeyd.pid" ] || return 1
	pid=$(cat "$TDIR/netkeyd.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
	    grep -qF -- "$TDIR/control.sock"
}

start() {
	mkdir -p "$TDIR"
	if ! ours; then
		rm -f "$TDIR/control.sock" "$TDIR/admin.sock" "$TDIR/netkeyd.pid"
		[ -x "$BIN" ] || { echo "$BIN: no such firmware build" >&2; exit 1; }
		# stdio off the task's pipes, or ansible would wait for the daemon to exit
		if ! ip netns exec "$NS" "$BIN" --control "$TDIR/control.sock" \
		    --admin "$TDIR/admin.sock" --log "$TDIR/netkeyd.log" \
		    --pidfile "$TDIR/netkeyd.pid" --tick-ms "$TICK_MS" \
		    --flow-idle-ticks "$IDLE" --esp "$ADDR" --natt "$ADDR" --daemon \
		    </dev/null >"$TDIR/netkeyd.start" 2>&1; then
			cat "$TDIR/netkeyd.start" >&2
			exit 1
		fi
	fi
	"$PY" "$READY" "$TDIR/control.sock" --timeout "$TIMEOUT"
	echo "pid $(cat "$TDIR/netkeyd.pid")"
}

# Alive and not a zombie (an exited daemon waits for init to reap it).
running() {
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# Stop every process in the namespace (ours by construction), then the pidfile's.
stop() {
	pids=""
	[ -e "/run/netns/$NS" ] && pids=$(ip netns pids "$NS" 2>/dev/null || true)
	if ours; then pids="$pids $pid"; fi
	if [ -n "$(echo $pids)" ]; then
		kill -TERM $pids 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			alive=""
			for p in $pids; do running "$p" && alive=1; done
			[ -n "$alive" ] || break
			sleep 0.05
		done
		kill -KILL $pids 2>/dev/null || true
	fi
	rm -f "$TDIR/control.sock" "$TDIR/admin.sock" "$TDIR/netkeyd.pid"
}

down() {
	stop
	ip -n "$SW" link del dev "$VETH" 2>/dev/null || true
	[ -e "/run/netns/$NS" ] && ip netns del "$NS"
	return 0
}

case "${1:-}" in
net | start | stop | down) "$1" ;;
*) echo "usage: gateway.sh net|start|stop|down" >&2; exit 2 ;;
esac
