#!/bin/sh
# deps.sh [GROUP...]: apt-install what spdlab needs and the machine lacks.
#   base        compilers, iproute2, patch (always)
#   prometheus  Debian's prometheus and pushgateway packages, unpacked into .cache/
#   fuzz        clang, for the libFuzzer harnesses
#   chromium    headless Chromium, for the HTML report test
#   docker      docker.io (dockerd, containerd, runc), for the docker target kind
#   qemu        QEMU and busybox for the qemu kind; Debian's kernel is fetched at provision
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

install() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "deps: installing$missing"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install gcc make patch libssl-dev iproute2 procps psmisc

for group in "$@"; do
	case "$group" in
	base) ;;
	fuzz) install clang ;;
	chromium) install chromium fonts-dejavu-core ;;
	docker) install docker.io ;;
	qemu) install qemu-system-x86 busybox-static ;;
	prometheus)
		if [ ! -x .cache/prometheus/usr/bin/promtool ]; then
			echo "deps: fetching Debian's prometheus package"
			mkdir -p .cache/deb
			[ -n "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null)" ] || apt-get update -qq
			(cd .cache/deb && rm -f prometheus_*.deb && apt-get download -qq prometheus)
			rm -rf .cache/prometheus
			dpkg -x .cache/deb/prometheus_*.deb .cache/prometheus
		fi
		if [ ! -x .cache/pushgateway/usr/bin/prometheus-pushgateway ]; then
			echo "deps: fetching Debian's prometheus-pushgateway package"
			mkdir -p .cache/deb
			(cd .cache/deb && rm -f prometheus-pushgateway_*.deb &&
			    apt-get download -qq prometheus-pushgateway)
			rm -rf .cache/pushgateway
			dpkg -x .cache/deb/prometheus-pushgateway_*.deb .cache/pushgateway
		fi
		;;
	*) echo "deps: unknown group '$group'" >&2; exit 2 ;;
	esac
done
