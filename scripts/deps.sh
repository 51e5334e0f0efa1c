#!/bin/sh
# deps.sh [GROUP...]: apt-install what spdlab needs and the machine lacks.
#   base        gcc and libc headers, OpenSSL, iproute2, patch, python3 with venv (always)
#   prometheus  Debian's prometheus and pushgateway packages, unpacked into .cache/
#   fuzz        clang and compiler-rt (the libFuzzer and ASan runtimes), for the harnesses
#   chromium    headless Chromium, for the HTML report test
#   docker      docker.io (dockerd, containerd, runc), for the docker target kind
#   qemu        QEMU and busybox for the qemu kind; Debian's kernel is fetched at provision
#   kernel      linux-source-6.1 and its build tools, the arm64 cross compiler and QEMU,
#               for kernel builds (kernels/) on x86_64 and arm64
#   ssh         OpenSSH server and client, dropbear, for the ssh kind and multi-host labs
#   fresh       debootstrap, for `make check-fresh`; stress-ng, to run the suite under load
#   bench       linux-perf, for the profiles `make bench` reports (what bounds a rate)
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# another apt run (a parallel build, unattended-upgrades) holds the lock: wait for it
APT_LOCK="-o DPkg::Lock::Timeout=600"

install() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "deps: installing$missing"
	apt-get $APT_LOCK update -qq
	apt-get $APT_LOCK install -y -qq --no-install-recommends $missing >/dev/null
}

# libc6-dev: gcc only recommends it; python3-venv: ensurepip; ca-certificates: pip's TLS
install gcc libc6-dev make patch libssl-dev iproute2 procps psmisc \
    python3 python3-venv ca-certificates

for group in "$@"; do
	case "$group" in
	base) ;;
	fuzz) install clang libclang-rt-14-dev ;;  # compiler-rt: libFuzzer, ASan runtimes
	chromium) install chromium fonts-dejavu-core ;;
	docker) install docker.io ;;
	qemu) install qemu-system-x86 busybox-static ;;
	kernel)
		install linux-source-6.1 bison flex bc libelf-dev xz-utils lz4 \
		    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm
		;;
	# python3-scapy, python3-cryptography: the traffic sender on a multi-host lab's hosts
	ssh) install openssh-server openssh-client dropbear-bin python3-scapy python3-cryptography ;;
	fresh) install debootstrap stress-ng ;;  # stress-ng: the suite is checked under load
	bench) install linux-perf ;;  # perf record: what bounds netkeyd's ESP input
	prometheus)
		if [ ! -x .cache/prometheus/usr/bin/promtool ]; then
			echo "deps: fetching Debian's prometheus package"
			mkdir -p .cache/deb
			[ -n "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null)" ] || apt-get $APT_LOCK update -qq
			(cd .cache/deb && rm -f prometheus_*.deb && apt-get $APT_LOCK download -qq prometheus)
			rm -rf .cache/prometheus
			dpkg -x .cache/deb/prometheus_*.deb .cache/prometheus
		fi
		if [ ! -x .cache/pushgateway/usr/bin/prometheus-pushgateway ]; then
			echo "deps: fetching Debian's prometheus-pushgateway package"
			mkdir -p .cache/deb
			(cd .cache/deb && rm -f prometheus-pushgateway_*.deb &&
			    apt-get $APT_LOCK download -qq prometheus-pushgateway)
			rm -rf .cache/pushgateway
			dpkg -x .cache/deb/prometheus-pushgateway_*.deb .cache/pushgateway
		fi
		;;
	*) echo "deps: unknown group '$group'" >&2; exit 2 ;;
	esac
done
