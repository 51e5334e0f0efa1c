#!/bin/sh
# qemu-kernel.sh: Debian's stock kernel and an initramfs for the qemu target kind.
#   .cache/qemu/<kver>/vmlinuz          the kernel of Debian 12's linux-image-amd64
#   .cache/qemu/<kver>/initramfs.gz     busybox-static, pfkey_relay, the IPsec and virtio modules
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
if [ -f "$INITRD" ] && [ "$INITRD" -nt "$RELAY" ] && [ "$INITRD" -nt "$0" ]; then
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
M=$OUT/modules/$KVER/kernel
for d in net/key net/xfrm net/ipv4 crypto lib/crypto arch/x86/crypto drivers/virtio \
    drivers/char/virtio_console.ko drivers/char/hw_random; do
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
# spdlab qemu guest: load af_key and friends, then relay PF_KEY over virtio-serial.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_pci virtio_console virtio_rng af_key esp4 xfrm_user drbg; do
	modprobe "$m" || echo "spdlab-init: modprobe $m failed"
done
port=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	for n in /sys/class/virtio-ports/*/name; do
		[ "$(cat "$n" 2>/dev/null)" = spdlab.pfkey ] || continue
		port=/dev/$(basename "$(dirname "$n")")
	done
	[ -n "$port" ] && [ -c "$port" ] && break
	sleep 0.5
done
echo "spdlab-init: kernel $(cat /proc/sys/kernel/osrelease), port ${port:-none}"
[ -n "$port" ] || { echo "spdlab-init: no spdlab.pfkey port"; poweroff -f; }
while :; do
	/bin/pfkey_relay "$port"
	echo "spdlab-init: pfkey_relay exited $?, restarting"
	sleep 1
done
INIT
chmod 755 "$T/init"
(cd "$T" && find . | sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) >"$INITRD.tmp"
mv "$INITRD.tmp" "$INITRD"
rm -rf "$T"
ln -sfn "$KVER" "$CACHE/current"
echo "qemu-kernel: $INITRD ($(du -k "$INITRD" | cut -f1) KiB)"
