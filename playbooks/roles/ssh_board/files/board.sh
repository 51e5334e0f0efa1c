#!/bin/sh
# board.sh setup|start|stop DIR [ARGS]: a board's side of one ssh target.
# Plain POSIX sh (Linux, NetBSD, FreeBSD, busybox); every step is idempotent.
set -eu

cmd=${1:-} dir=${2:-}
[ $# -ge 2 ] && shift 2
case "$dir" in
*/spdlab-*) ;;
*) echo "board.sh: $dir: not a spdlab folder" >&2; exit 2 ;;
esac

build() {	# CC
	command -v "$1" >/dev/null 2>&1 ||
	    { echo "no C compiler ($1) on this board to build pfkey_relay" >&2; exit 1; }
	(cd "$dir" && "$1" -O2 -o pfkey_relay pfkey_relay.c)
}

# Unpack what spdlab sent, build the relay unless the static one fits, check PF_KEY.
setup() {	# MODE CC PREBUILT
	(cd "$dir" && tar -xf board.tar && rm -f board.tar)
	if [ "$3" = True ]; then chmod 0755 "$dir/pfkey_relay"; else build "$2"; fi
	if [ -f "$dir/netkeyd-static" ]; then
		chmod 0755 "$dir/netkeyd-static"
		mv -f "$dir/netkeyd-static" "$dir/netkeyd"
	fi
	[ "$1" != kernel ] || pfkey
}

pfkey() {
	if [ "$(uname -s)" = Linux ]; then
		modprobe af_key 2>/dev/null || true
	fi
	"$dir/pfkey_relay" -t >/dev/null 2>&1 && return 0
	echo "this kernel has no PF_KEY (Linux: CONFIG_NET_KEY, module af_key):" \
	    "$("$dir/pfkey_relay" -t 2>&1 | tail -n 1)" >&2
	exit 1
}

# PIDs of processes whose command line holds $1 (POSIX ps; busybox lacks -A).
pids_of() {
	{ ps -A -o pid= -o args= 2>/dev/null || ps -o pid= -o args=; } |
	    grep -F -- "$1" | grep -v -e grep -e board.sh | awk '{ print $1 }'
}

ours() {
	[ -f "$dir/netkeyd.pid" ] || return 1
	pid=$(cat "$dir/netkeyd.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && ps -p "$pid" -o args= 2>/dev/null | grep -qF -- "$dir/control.sock"
}

start() {	# TICK_MS IDLE_TICKS
	if ! ours; then
		rm -f "$dir/control.sock" "$dir/admin.sock" "$dir/netkeyd.pid"
		# --daemon returns once the sockets are bound; stdio off the task's pipes
		if ! "$dir/netkeyd" --control "$dir/control.sock" \
		    --admin "$dir/admin.sock" --log "$dir/netkeyd.log" \
		    --pidfile "$dir/netkeyd.pid" --tick-ms "$1" \
		    --flow-idle-ticks "$2" --daemon \
		    </dev/null >"$dir/netkeyd.start" 2>&1; then
			cat "$dir/netkeyd.start" >&2
			exit 1
		fi
	fi
	"$dir/pfkey_relay" -t -u "$dir/control.sock"
	echo "pid $(cat "$dir/netkeyd.pid")"
}

stop() {
	[ -d "$dir" ] || return 0
	pids=$(pids_of "$dir/")
	if [ -n "$pids" ]; then
		kill -TERM $pids 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			left=$(pids_of "$dir/")
			[ -n "$left" ] || break
			sleep 1
		done
		[ -z "$left" ] || kill -KILL $left 2>/dev/null || true
	fi
	rm -rf "$dir"
}

case "$cmd" in
setup | start | stop) "$cmd" "$@" ;;
*) echo "usage: board.sh setup|start|stop DIR [ARGS]" >&2; exit 2 ;;
esac
