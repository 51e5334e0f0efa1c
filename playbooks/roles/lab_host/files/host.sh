#!/bin/sh
# host.sh down DIR: remove one run's part of a lab host. Every process whose command line
# names DIR (netkeyd, the relays, the traffic sender), every process in and then each
# namespace listed in DIR/namespaces (written before any was made), then DIR. Idempotent;
# prints what it could not remove. Runs from a file or on stdin (`sh -s down DIR`).
set -u

cmd=${1:-} dir=${2:-}
case "$dir" in
*/spdlab-*) ;;
*) echo "host.sh: $dir: not a spdlab folder" >&2; exit 2 ;;
esac
[ "$cmd" = down ] || { echo "usage: host.sh down DIR" >&2; exit 2; }
[ -d "$dir" ] || exit 0

# PIDs whose command line names the folder, but this script and the shell that ran it.
pids_of() {
	ps -A -o pid= -o args= | grep -F -- "$dir/" | awk -v a=$$ -v b=$PPID \
	    '$1 != a && $1 != b && $2 != "grep" && $2 != "awk" { print $1 }'
}

stop() {	# PIDS
	[ -n "$1" ] || return 0
	kill -TERM $1 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		left=""
		for p in $1; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
		[ -n "$left" ] || return 0
		sleep 0.1
	done
	kill -KILL $left 2>/dev/null || true
}

stop "$(pids_of)"
namespaces=$(cat "$dir/namespaces" 2>/dev/null || true)
for ns in $namespaces; do
	[ -e "/run/netns/$ns" ] || continue
	stop "$(ip netns pids "$ns" 2>/dev/null || true)"
	ip netns del "$ns" 2>/dev/null || echo "namespace $ns: could not be removed"
done
rm -rf "$dir" || echo "$dir: could not be removed"
