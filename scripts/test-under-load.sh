#!/bin/sh
# test-under-load.sh [N]: `make test` N times (default 3) in a row, each on a fresh clone of
# this checkout's HEAD, while stress-ng keeps every core busy.  The suite must not depend on
# timing, so it must pass every time.  One line per run (commit, result, wall time, load) is
# appended to .cache/under-load.log and printed; the exit is non-zero if any run failed.
# The clone lives in .cache/under-load/<pid> and is removed afterwards; stress-ng is
# stopped by its PID, also on failure and Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
N=${1:-3}
CPUS=$(nproc)
WORK=$REPO/.cache/under-load/$$
LOG=$REPO/.cache/under-load.log
STRESS=""

cleanup() {
	[ -n "$STRESS" ] && kill "$STRESS" 2>/dev/null && wait "$STRESS" 2>/dev/null
	# an interrupted run's output is kept like a failed one's
	for f in "$WORK"/test-*.log; do
		[ -f "$f" ] && [ ! -f "$WORK/done-${f##*/}" ] && cp "$f" "$REPO/.cache/under-load-${head:-x}-${f##*-}"
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v stress-ng >/dev/null || scripts/deps.sh fresh
head=$(git rev-parse --short HEAD)
mkdir -p "$WORK"
stress-ng --cpu "$CPUS" --quiet &
STRESS=$!
failed=0
i=1
while [ "$i" -le "$N" ]; do
	rm -rf "$WORK/clone"
	git clone -q "$REPO" "$WORK/clone"
	t0=$(date +%s)
	if make -C "$WORK/clone" test >"$WORK/test-$i.log" 2>&1; then
		res=passed
	else
		res=FAILED
		failed=$((failed + 1))
		cp "$WORK/test-$i.log" "$REPO/.cache/under-load-$head-$i.log"
	fi
	touch "$WORK/done-test-$i.log"
	summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$WORK/test-$i.log" | tail -1 || true)
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	line="$(date -u +%FT%TZ) $head run $i/$N under stress-ng --cpu $CPUS: $res in $(($(date +%s) - t0)) s ($summary; load $load)"
	echo "$line" | tee -a "$LOG"
	i=$((i + 1))
done
[ "$failed" -eq 0 ]
