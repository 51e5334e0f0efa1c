#!/bin/sh
# lab.sh up|down: the lab's switch namespace (a bridge) and the traffic host. Idempotent.
# Environment: SW BRIDGE TH TH_VETH TH_ADDR PLEN
set -eu

up() {
	[ -e "/run/netns/$SW" ] || ip netns add "$SW"
	ip -n "$SW" link set lo up
	ip -n "$SW" link show dev "$BRIDGE" >/dev/null 2>&1 ||
	    ip -n "$SW" link add "$BRIDGE" type bridge
	ip -n "$SW" link set dev "$BRIDGE" up
	[ -e "/run/netns/$TH" ] || ip netns add "$TH"
	ip -n "$TH" link set lo up
	if ! ip -n "$SW" link show dev "$TH_VETH" >/dev/null 2>&1; then
		ip -n "$TH" link del eth0 2>/dev/null || true
		ip -n "$SW" link add "$TH_VETH" type veth peer name eth0 netns "$TH"
	fi
	ip -n "$SW" link set dev "$TH_VETH" master "$BRIDGE" up
	ip -n "$TH" addr replace "$TH_ADDR/$PLEN" dev eth0
	ip -n "$TH" link set dev eth0 up
}

# Processes left in our namespaces are ours: stop them before the namespace goes.
drop() {
	[ -e "/run/netns/$1" ] || return 0
	pids=$(ip netns pids "$1" 2>/dev/null || true)
	[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
	ip netns del "$1"
}

down() {
	drop "$TH"
	drop "$SW"
}

case "${1:-}" in
up | down) "$1" ;;
*) echo "usage: lab.sh up|down" >&2; exit 2 ;;
esac
