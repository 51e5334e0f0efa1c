#!/bin/sh
# qemu_board.sh OUT: the initramfs of a Linux af_key board for the ssh kind's tests.
#   OUT/board-initramfs.gz   busybox, Debian's dropbear with its libraries, the IPsec,
#                            crypto, virtio and virtio-net modules of .cache/qemu/current
# The keys go in a second archive per board (Linux unpacks concatenated archives), so
# this one is built once. The init loads af_key, brings eth0 up on QEMU's user network
# (10.0.2.15) and runs dropbear on port 22 in the foreground.
# Needs: scripts/qemu-kernel.sh run first, busybox-static, dropbear-bin.
set -eu
OUT=${1:?usage: qemu_board.sh OUT}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
K=$ROOT/.cache/qemu/current
KVER=$(basename "$(readlink -f "$K")")
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -f "$OUT/board-initramfs.gz" ] && [ "$OUT/board-initramfs.gz" -nt "$0" ] && exit 0
T=$OUT/board.tmp
rm -rf "$T"
mkdir -p "$T/bin" "$T/sbin" "$T/usr/bin" "$T/usr/sbin" "$T/dev" "$T/proc" "$T/sys" \
    "$T/tmp" "$T/root/.ssh" "$T/etc/dropbear" "$T/var/log" "$T/lib/modules/$KVER"
cp "$BUSYBOX" "$T/bin/busybox"
"$BUSYBOX" --list-full | while read -r a; do
	[ -e "$T/$a" ] || ln -s /bin/busybox "$T/$a"
done
cp /usr/sbin/dropbear "$T/usr/sbin/dropbear"
for lib in $(ldd /usr/sbin/dropbear | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
	mkdir -p "$T$(dirname "$lib")"
	cp -L "$lib" "$T$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$T/etc/passwd"
printf 'root:x:0:\n' >"$T/etc/group"
printf '/bin/sh\n' >"$T/etc/shells"
M=$K/modules/$KVER/kernel
for d in net/key net/xfrm net/ipv4 crypto lib/crypto arch/x86/crypto drivers/virtio \
    drivers/net/virtio_net.ko drivers/net/net_failover.ko net/core/failover.ko \
    drivers/char/hw_random; do
	[ -e "$M/$d" ] || continue
	mkdir -p "$T/lib/modules/$KVER/kernel/$(dirname "$d")"
	cp -r "$M/$d" "$T/lib/modules/$KVER/kernel/$d"
done
rm -rf "$T/lib/modules/$KVER/kernel/net/ipv4/netfilter"
cp "$K/modules/$KVER/modules.builtin" "$K/modules/$KVER/modules.order" \
    "$T/lib/modules/$KVER/" 2>/dev/null || true
"$BUSYBOX" depmod -b "$T" "$KVER"
cat >"$T/init" <<'INIT'
#!/bin/sh
# spdlab ssh board: Linux with af_key, reached only by dropbear on QEMU's user network.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
for m in virtio_pci virtio_net virtio_rng af_key esp4 xfrm_user drbg; do
	modprobe "$m" || echo "board-init: modprobe $m failed"
done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
# QEMU hands forwarded connections over from their real source: answer through it
ip route add default via 10.0.2.2
echo "board-init: kernel $(cat /proc/sys/kernel/osrelease), dropbear on 10.0.2.15:22"
export HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin
while :; do
	/usr/sbin/dropbear -F -E -s -p 22 -r /etc/dropbear/dropbear_ed25519_host_key
	echo "board-init: dropbear exited $?, restarting"
	sleep 1
done
INIT
chmod 755 "$T/init"
(cd "$T" && find . | sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) \
    >"$OUT/board-initramfs.gz.tmp"
mv "$OUT/board-initramfs.gz.tmp" "$OUT/board-initramfs.gz"
rm -rf "$T"
