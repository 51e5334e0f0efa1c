#!/bin/sh
# deps.sh [GROUP...]: apt-install what spdlab needs and the machine lacks.
#   base        compilers, iproute2, patch (always)
#   prometheus  Debian's prometheus package, unpacked into .cache/prometheus
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

base="gcc make patch libssl-dev iproute2 procps psmisc"
missing=""
for p in $base; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

for group in "$@"; do
	case "$group" in
	base) ;;
	prometheus)
		if [ ! -x .cache/prometheus/usr/bin/promtool ]; then
			echo "deps: fetching Debian's prometheus package"
			mkdir -p .cache/deb
			[ -n "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null)" ] || apt-get update -qq
			(cd .cache/deb && rm -f prometheus_*.deb && apt-get download -qq prometheus)
			rm -rf .cache/prometheus
			dpkg -x .cache/deb/prometheus_*.deb .cache/prometheus
		fi
		;;
	*) echo "deps: unknown group '$group'" >&2; exit 2 ;;
	esac
done
