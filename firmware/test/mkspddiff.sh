#!/bin/sh
# mkspddiff.sh NAME [asan]: build/NAME/spd_diff[-asan], the differential
# test of the SPD's indexes against the walks (test/spd_diff.c), compiled
# with NAME's patched sys/<tree>/key.c.
set -eu
cd "$(dirname "$0")/.."
name=${1:?usage: mkspddiff.sh NAME [asan]}
san=${2:-}
case "$san" in
"" | asan) ;;
*) echo "usage: mkspddiff.sh NAME [asan]" >&2; exit 2 ;;
esac
./mkbuild.sh "$name"
tree=$(awk -v n="$name" '$1 !~ /^#/ && $1 == n { print $2 }' builds.conf)
src=build/$name/src
bin=build/$name/spd_diff${san:+-$san}
# Up to date if neither the harness nor the build's sources changed.
stamp=$(cat test/spd_diff.c test/mkspddiff.sh fuzz/fuzz_common.[ch] \
    $(find "$src" -type f -name '*.[ch]' | sort) | sha256sum | cut -c1-16)
if [ -x "$bin" ] && [ "$(cat "$bin.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi
CC=${CC:-cc}
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -I$src/include -Ifuzz"
if [ "$san" = asan ]; then
	CFLAGS="$CFLAGS -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
else
	CFLAGS="$CFLAGS -O2"
fi
[ "$tree" = netkey ] && CFLAGS="$CFLAGS -DSPD_DIFF_NETKEY"
lib=$(ls $src/src/*.c | grep -v -e '/main\.c$' -e '/admin\.c$')
# shellcheck disable=SC2086
$CC $CFLAGS -DNETKEYD_BUILD="\"$name\"" -DNETKEYD_TREE="\"$tree\"" \
    -DSPD_DIFF_KEY_C="\"$PWD/$src/sys/$tree/key.c\"" \
    -o "$bin.tmp" test/spd_diff.c $lib fuzz/fuzz_common.c -lcrypto
mv "$bin.tmp" "$bin"
echo "$stamp" > "$bin.stamp"
echo "firmware: built $bin"
