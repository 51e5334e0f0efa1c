#!/bin/sh
# campaign.sh HARNESS RUNS [SECS]: run build/fuzz/fuzz_HARNESS for RUNS
# executions (ASan+UBSan, value profile), or SECS seconds if that comes
# first (0: no limit), from its corpus, then minimize what it found back
# into fuzz/corpus/HARNESS.  Run from firmware/.  The log, with libFuzzer's
# final stats, is appended to build/fuzz/campaign-HARNESS.log; a crash
# leaves build/fuzz/crash-HARNESS-* and a non-zero exit.  An interrupted
# run (libFuzzer's exit 72) still has its corpus minimized.
set -u
h=$1
runs=$2
secs=${3:-0}
bin=build/fuzz/fuzz_$h
seeds=fuzz/corpus/$h
work=build/fuzz/campaign-$h
log=build/fuzz/campaign-$h.log
mkdir -p "$work" "$seeds"
echo "campaign: $h to $runs executions (limit ${secs}s), log $log"
echo "== campaign $h runs=$runs secs=$secs start $(date -u +%FT%TZ)" >>"$log"
"$bin" -runs="$runs" -max_total_time="$secs" -use_value_profile=1 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$h-" \
    "$work" "$seeds" >>"$log" 2>&1
rc=$?
echo "== campaign $h exit $rc end $(date -u +%FT%TZ)" >>"$log"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 72 ]; then
	echo "campaign: $h failed (exit $rc), see $log" >&2
	tail -40 "$log" >&2
	exit 1
fi
# -merge=1 keeps the smallest set of inputs with the campaign's coverage.
set -e
min=build/fuzz/min-$h
rm -rf "$min"
mkdir -p "$min"
"$bin" -merge=1 -use_value_profile=1 "$min" "$seeds" "$work" >>"$log" 2>&1
rm -rf "$seeds"
mv "$min" "$seeds"
grep -E 'stat::number_of_executed_units|^#[0-9]+.*cov: ' "$log" | tail -2
echo "campaign: $h corpus $(ls "$seeds" | wc -l) inputs in $seeds"
