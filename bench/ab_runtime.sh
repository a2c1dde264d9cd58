#!/bin/bash
# Paired A/B of tick-to-order latency: bench_runtime on two checkouts by turns, medians of N runs each.
#
#   bash bench/ab_runtime.sh N DIR_A DIR_B     e.g.  git worktree add /tmp/base HEAD~1 --detach
#                                                     bash bench/ab_runtime.sh 3 /tmp/base .
#
# The machine is shared and noisy (one run's p50 can move 2x); only runs interleaved in one
# script compare. SECS (default 30) sets each run's measured seconds; EXTRA adds bench_runtime
# arguments. Prints, per checkout: median p50 and p99 (each run's value in brackets) and the
# median of each hop's p50.
set -euo pipefail
N=$1; shift
out=$(mktemp -d /tmp/ab_runtime.XXXXXX)
for i in $(seq 1 "$N"); do
  for d in "$@"; do
    name=$(basename "$(cd "$d" && pwd)")
    (cd "$d" && python -m bench.bench_runtime --skip scale --phases staggered --repeat 1 \
        --seconds "${SECS:-30}" ${EXTRA:-} --json "$out/$name-$i.json" > "$out/$name-$i.txt" 2>&1) \
      || echo "run $i in $d failed: see $out/$name-$i.txt"
  done
done
python3 - "$out" "$@" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
for d in sys.argv[2:]:
    name = os.path.basename(os.path.abspath(d))
    runs = [json.load(open(f))["latency"]["staggered"] for f in sorted(glob.glob(f"{out}/{name}-*.json"))]
    if not runs:
        print(f"{name}: no run finished")
        continue
    p50, p99 = [r["p50_ms"] for r in runs], [r["p99_ms"] for r in runs]
    print(f"{name:12s} p50 {statistics.median(p50):6.1f} ms ({' '.join(f'{x:.1f}' for x in p50)})"
          f"   p99 {statistics.median(p99):6.1f} ms ({' '.join(f'{x:.1f}' for x in p99)})")
    for stage in runs[0]["stages_ms"]:
        values = [r["stages_ms"][stage]["p50"] for r in runs if r["stages_ms"][stage]["p50"] is not None]
        if values:
            print(f"    {statistics.median(values):6.2f} ms  {stage}")
PY
echo "(runs kept in $out)"
