#!/bin/sh
# gateways.sh net|start|down LIST: every netns gateway of LIST in one go. Idempotent.
# LIST: one gateway a line, tab-separated: NAME NS VETH ADDR TDIR BIN TICK_MS IDLE.
# Environment: SW BRIDGE PLEN PY READY TIMEOUT
# A gateway that fails is named on stderr as "failed NAME: why" (the driver reports it as
# that target's failure); the others go on, and the exit status is 1 if any failed.
# Namespaces and the switch's veths are made by one `ip -batch` each; what needs the
# gateway's own namespace (lo, eth0's address) is one `ip -n NS -batch` per gateway, and
# one pfkey_ready.py waits for every control socket at once.
set -eu
LIST=${2:?usage: gateways.sh net|start|down LIST}
HERE=$(dirname "$0")
TAB=$(printf '\t')
FAILS=$(mktemp)
trap 'rm -f "$FAILS"' EXIT

# Also from a subshell ($(each ...)): the file, not a variable, keeps the count.
fail() {
	echo "failed $1: $2" >&2
	echo "$1" >>"$FAILS"
}

each() {
	while IFS=$TAB read -r NAME NS VETH ADDR TDIR BIN TICK_MS IDLE; do
		[ -n "$NAME" ] || continue
		"$@"
	done <"$LIST"
}

# The one-gateway script, for a gateway the batch could not finish (its error, by name).
one() {
	NS=$NS SW=$SW BRIDGE=$BRIDGE VETH=$VETH ADDR=$ADDR PLEN=$PLEN TDIR=$TDIR BIN=$BIN \
	    TICK_MS=$TICK_MS IDLE=$IDLE PY=$PY READY=$READY TIMEOUT=$TIMEOUT \
	    sh "$HERE/gateway.sh" "$@"
}

net_batch() {
	old=" $(ip netns list | awk '{ print $1 }' | tr '\n' ' ') "
	each netns_line | ip -force -batch - >/dev/null 2>&1 || true
	have=" $(ip -n "$SW" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' |
	    tr '\n' ' ') "
	each veth_lines | ip -n "$SW" -force -batch - >/dev/null 2>&1 || true
	each net_inside
}

netns_line() { [ -e "/run/netns/$NS" ] || echo "netns add $NS"; }

# A veth whose switch end is missing is made again (its eth0 end may be a leftover).
veth_lines() {
	case $have in
	*" $VETH "*) ;;
	*)
		case $old in
		*" $NS "*) ip -n "$NS" link del eth0 2>/dev/null || true ;;
		esac
		echo "link add $VETH type veth peer name eth0 netns $NS"
		;;
	esac
	echo "link set dev $VETH master $BRIDGE up"
}

net_inside() {
	if ! printf 'link set lo up\naddr replace %s/%s dev eth0\nlink set dev eth0 up\n' \
	    "$ADDR" "$PLEN" | ip -n "$NS" -batch - >/dev/null 2>&1; then
		err=$(one net 2>&1) || fail "$NAME" "$(echo "$err" | tail -n 1)"
	fi
}

# Our netkeyd: the pidfile's process, if its command line names our control socket.
ours() {
	[ -f "$TDIR/netkeyd.pid" ] || return 1
	pid=$(cat "$TDIR/netkeyd.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
	    grep -qF -- "$TDIR/control.sock"
}

spawn() {
	mkdir -p "$TDIR"
	ours && { echo "$TDIR/control.sock"; return 0; }
	rm -f "$TDIR/control.sock" "$TDIR/admin.sock" "$TDIR/netkeyd.pid"
	if ! [ -x "$BIN" ]; then
		fail "$NAME" "$BIN: no such firmware build"
		return 0
	fi
	# stdio off the task's pipes, or ansible would wait for the daemon to exit
	if ! ip netns exec "$NS" "$BIN" --control "$TDIR/control.sock" \
	    --admin "$TDIR/admin.sock" --log "$TDIR/netkeyd.log" \
	    --pidfile "$TDIR/netkeyd.pid" --tick-ms "$TICK_MS" \
	    --flow-idle-ticks "$IDLE" --esp "$ADDR" --natt "$ADDR" --daemon \
	    </dev/null >"$TDIR/netkeyd.start" 2>&1; then
		fail "$NAME" "$(tail -n 1 "$TDIR/netkeyd.start")"
		return 0
	fi
	echo "$TDIR/control.sock"
}

# Every daemon first, then one wait for all their control sockets.
start() {
	socks=$(each spawn)
	[ -n "$socks" ] || return 0
	# shellcheck disable=SC2086 # one argument per socket path (no blanks in run paths)
	if ! out=$("$PY" "$READY" --timeout "$TIMEOUT" $socks 2>&1); then
		each not_ready "$out"
	fi
}

not_ready() {
	line=$(printf '%s\n' "$1" | grep -F -- "$TDIR/control.sock:" | head -n 1) || true
	[ -z "$line" ] || fail "$NAME" "$line"
}

pids_of() {
	[ -e "/run/netns/$NS" ] && ip netns pids "$NS" 2>/dev/null || true
	if ours; then echo "$pid"; fi
}

running() {
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# Every gateway's processes get SIGTERM at once, then one wait, then SIGKILL.
down() {
	pids=$(each pids_of)
	if [ -n "$(echo $pids)" ]; then
		kill -TERM $pids 2>/dev/null || true
		for _ in $(seq 40); do
			alive=""
			for p in $pids; do running "$p" && { alive=1; break; }; done
			[ -n "$alive" ] || break
			sleep 0.05
		done
		kill -KILL $pids 2>/dev/null || true
	fi
	each forget
	each down_lines sw | ip -n "$SW" -force -batch - >/dev/null 2>&1 || true
	each down_lines ns | ip -force -batch - >/dev/null 2>&1 || true
}

forget() { rm -f "$TDIR/control.sock" "$TDIR/admin.sock" "$TDIR/netkeyd.pid"; }

down_lines() {
	case $1 in
	sw) echo "link del dev $VETH" ;;
	ns) [ -e "/run/netns/$NS" ] && echo "netns del $NS" || true ;;
	esac
}

case "${1:-}" in
net) net_batch ;;
start) start ;;
down) down ;;
*) echo "usage: gateways.sh net|start|down LIST" >&2; exit 2 ;;
esac
[ ! -s "$FAILS" ]
