#!/bin/sh
# qemu-kernel.sh: Debian's stock kernel and an initramfs for the qemu target kind.
#   .cache/qemu/<kver>/vmlinuz          the kernel of Debian 12's linux-image-amd64
#   .cache/qemu/<kver>/initramfs.gz     busybox-static, pfkey_relay, spdlab_init (the network and
#                                       the relay, as on the built kernels), spdlab_flows, the IPsec
#                                       and virtio modules
#   .cache/qemu/current                 -> <kver>
# Needs: apt-get (download only), dpkg, busybox-static, gcc with a static libc.
# Idempotent: does nothing when the current kernel's initramfs is newer than its inputs.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=$ROOT/.cache/qemu
BUSYBOX=${BUSYBOX:-/bin/busybox}
mkdir -p "$CACHE" "$ROOT/.cache/deb"

make -s -C firmware/relay
RELAY=$ROOT/firmware/build/relay/pfkey_relay
SPDINIT=$ROOT/firmware/build/relay/init
FLOWS=$ROOT/firmware/build/relay/spdlab_flows

# The package linux-image-amd64 points at, unless PKG names one.
[ -n "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null)" ] || apt-get update -qq
PKG=${PKG:-$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')}
[ -n "$PKG" ] || { echo "qemu-kernel: no linux-image package found" >&2; exit 1; }
KVER=${PKG#linux-image-}
OUT=$CACHE/$KVER
if [ ! -f "$OUT/vmlinuz" ] || [ ! -d "$OUT/modules" ]; then
	echo "qemu-kernel: fetching $PKG"
	deb=$(ls "$ROOT/.cache/deb/${PKG}_"*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		(cd "$ROOT/.cache/deb" && apt-get download -qq "$PKG" 2>/dev/null)
		deb=$(ls "$ROOT/.cache/deb/${PKG}_"*.deb | head -1)
	fi
	rm -rf "$OUT.tmp"
	mkdir -p "$OUT.tmp"
	dpkg -x "$deb" "$OUT.tmp/pkg"
	mkdir -p "$OUT.tmp/modules"
	cp "$OUT.tmp/pkg/boot/vmlinuz-$KVER" "$OUT.tmp/vmlinuz"
	cp "$OUT.tmp/pkg/boot/config-$KVER" "$OUT.tmp/config"
	mv "$OUT.tmp/pkg/lib/modules/$KVER" "$OUT.tmp/modules/$KVER"
	rm -rf "$OUT.tmp/pkg" "$OUT"
	mv "$OUT.tmp" "$OUT"
fi

INITRD=$OUT/initramfs.gz
if [ -f "$INITRD" ] && [ "$INITRD" -nt "$RELAY" ] && [ "$INITRD" -nt "$SPDINIT" ] && \
    [ "$INITRD" -nt "$FLOWS" ] && \
    [ "$INITRD" -nt "$0" ]; then
	ln -sfn "$KVER" "$CACHE/current"
	exit 0
fi
echo "qemu-kernel: building the initramfs for $KVER"
T=$OUT/initramfs.tmp
rm -rf "$T"
mkdir -p "$T/bin" "$T/sbin" "$T/dev" "$T/proc" "$T/sys" "$T/tmp" "$T/lib/modules/$KVER"
cp "$BUSYBOX" "$T/bin/busybox"
for a in sh mount insmod modprobe depmod cat ls sleep echo poweroff dmesg; do
	ln -s busybox "$T/bin/$a"
done
ln -s ../bin/busybox "$T/sbin/modprobe"
cp "$RELAY" "$T/bin/pfkey_relay"
cp "$SPDINIT" "$T/bin/spdlab_init"
cp "$FLOWS" "$T/bin/spdlab_flows"
M=$OUT/modules/$KVER/kernel
for d in net/key net/xfrm net/ipv4 crypto lib/crypto arch/x86/crypto drivers/virtio \
    drivers/char/virtio_console.ko drivers/char/hw_random drivers/net/virtio_net.ko \
    drivers/net/net_failover.ko net/core/failover.ko; do
	[ -e "$M/$d" ] || continue
	mkdir -p "$T/lib/modules/$KVER/kernel/$(dirname "$d")"
	cp -r "$M/$d" "$T/lib/modules/$KVER/kernel/$d"
done
rm -rf "$T/lib/modules/$KVER/kernel/net/ipv4/netfilter"
cp "$OUT/modules/$KVER/modules.builtin" "$OUT/modules/$KVER/modules.order" \
    "$T/lib/modules/$KVER/" 2>/dev/null || true
"$BUSYBOX" depmod -b "$T" "$KVER"
cat >"$T/init" <<'INIT'
#!/bin/sh
# spdlab qemu guest: load af_key and friends; spdlab_init, as on the built kernels,
# sets up the network and keeps pfkey_relay running on the virtio-serial port.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_pci virtio_console virtio_rng virtio_net af_key esp4 xfrm_user drbg; do
	modprobe "$m" || echo "spdlab-init: modprobe $m failed"
done
exec /bin/spdlab_init
INIT
chmod 755 "$T/init"
(cd "$T" && find . | sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) >"$INITRD.tmp"
mv "$INITRD.tmp" "$INITRD"
rm -rf "$T"
ln -sfn "$KVER" "$CACHE/current"
echo "qemu-kernel: $INITRD ($(du -k "$INITRD" | cut -f1) KiB)"
