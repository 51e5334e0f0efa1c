#!/bin/sh
# mkbuild.sh NAME [asan|static]: copy the sources and NAME's tree into
# build/NAME/src, apply its patch series in order, and compile.
# asan: build/NAME/netkeyd-asan (ASan+UBSan); static: build/NAME/netkeyd-static
# (-static, libcrypto.a), the binary a FROM scratch container image runs.
set -eu
cd "$(dirname "$0")"
name=${1:?usage: mkbuild.sh NAME [asan|static]}
san=${2:-}
case "$san" in
"" | asan | static) ;;
*) echo "usage: mkbuild.sh NAME [asan|static]" >&2; exit 2 ;;
esac
# A lab file's own builds: $SPDLAB_BUILDS_CONF, else the run's builds.conf; their
# patches are paths (a word with a '/'), the others names of patches/.
extra=${SPDLAB_BUILDS_CONF:-${SPDLAB_RUN:+$SPDLAB_RUN/builds.conf}}
line=$(awk -v n="$name" '$1 !~ /^#/ && $1 == n' builds.conf)
if [ -z "$line" ] && [ -n "$extra" ] && [ -f "$extra" ]; then
	line=$(awk -v n="$name" '$1 !~ /^#/ && $1 == n' "$extra")
fi
if [ -z "$line" ]; then
	echo "firmware: unknown build '$name'. Known builds are:" \
	    $(awk '$1 !~ /^#/ && NF { print $1 }' builds.conf) >&2
	exit 2
fi
tree=$(echo "$line" | awk '{ print $2 }')
pfile() {
	case $1 in
	*/*) echo "$1" ;;
	*) echo "patches/$1.patch" ;;
	esac
}
# Words from the third on are patches, except `@flags` (declarations for the orchestrator).
patches=$(echo "$line" | awk '{ s = ""; for (i = 3; i <= NF; i++) if ($i !~ /^@/) s = s (s == "" ? "" : " ") $i; print s }')
[ -d "sys/$tree" ] || { echo "firmware: build '$name': no tree sys/$tree" >&2; exit 2; }

out=build/$name
src=$out/src${san:+-$san}
bin=$out/netkeyd
[ "$san" = asan ] && bin=$out/netkeyd-asan
[ "$san" = static ] && bin=$out/netkeyd-static
# Up to date if nothing that goes into this binary changed since it was built.
stamp=$({ echo "$line"; cat builds.conf mkbuild.sh src/*.c include/*.h sys/$tree/*.c \
    $(for p in $patches; do pfile "$p"; done); } 2>/dev/null | sha256sum | cut -c1-16)
if [ -x "$bin" ] && [ "$(cat "$bin.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi
rm -rf "$src.tmp"
mkdir -p "$src.tmp/sys"
cp -R src include "$src.tmp/"
cp -R "sys/$tree" "$src.tmp/sys/"
for p in $patches; do
	f=$(pfile "$p")
	[ -f "$f" ] || { echo "firmware: build '$name': no patch $f" >&2; exit 2; }
	if ! patch -p1 --batch --forward --quiet -d "$src.tmp" < "$f"; then
		echo "firmware: build '$name': patch $p does not apply" >&2
		exit 1
	fi
done
rm -rf "$src"
mv "$src.tmp" "$src"
# sha256 of each patch, for the versions header of a run.
: > "$out/patches.sha256"
for p in $patches; do
	sha256sum "$(pfile "$p")" >> "$out/patches.sha256"
done
# The binary names each patch: a path by its file name.
patches=$(for p in $patches; do basename "$p" .patch; done | tr '\n' ' ' | sed 's/ $//')

CC=${CC:-cc}
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -I$src/include"
ldflags=
if [ "$san" = asan ]; then
	CFLAGS="$CFLAGS -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
else
	CFLAGS="$CFLAGS -O2"
fi
# ld warns about dlopen/getaddrinfo inside libcrypto.a: netkeyd never calls them
[ "$san" = static ] && ldflags=-static
$CC $CFLAGS $ldflags \
    -DNETKEYD_BUILD="\"$name\"" -DNETKEYD_TREE="\"$tree\"" \
    -DNETKEYD_PATCHES="\"$patches\"" \
    -o "$bin.tmp" $src/src/*.c $src/sys/$tree/*.c -lcrypto
mv "$bin.tmp" "$bin"
echo "$stamp" > "$bin.stamp"
echo "firmware: built $bin (tree $tree${patches:+, patches $patches})"
