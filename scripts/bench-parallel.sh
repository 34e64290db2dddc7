#!/usr/bin/env bash
# Multi-trial children in parallel against one at a time (issue 24,
# acceptance 4): MetaQNN's 60-model Fashion-MNIST search of BENCHMARKS.md
# (width 0.25, 2-epoch children on 5,000 training images, a 2,000-image
# validation split), with --parallel 1 (one child at a time in the driver's
# process, on every core) and --parallel 2 (two `enas child` processes, a
# core each). Prints each wall time, their ratio, and whether the children
# of the --parallel 2 run overlapped. Nothing else should run meanwhile.
#
#   scripts/bench-parallel.sh [OUT_DIR] [BUDGET]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-parallel}
budget=${2:-60}
if [ -z "${ENAS:-}" ]; then
    cargo build --release --quiet
fi
enas=${ENAS:-target/release/enas}
mkdir -p "$out"
for k in 1 2; do
    rm -rf "$out/p$k"
    start=$(date +%s.%N)
    $enas search --mode multi-trial --space metaqnn --strategy qlearning --budget "$budget" --width 0.25 --child-epochs 2 \
        --train-limit 5000 --valid-size 2000 --seed 0 --parallel "$k" --out "$out/p$k" --quiet >/dev/null
    echo "$start $(date +%s.%N)" > "$out/p$k.seconds"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
span = {k: [float(x) for x in open(f"{out}/p{k}.seconds").read().split()] for k in (1, 2)}
wall = {k: span[k][1] - span[k][0] for k in (1, 2)}
for k in (1, 2):
    t = [json.loads(l) for l in open(f"{out}/p{k}/search/trials.jsonl")]
    best = max(x["reward"] for x in t)
    busy = sum(x["finished"] - x["started"] for x in t if x.get("finished"))
    print(f"--parallel {k}: {len(t)} children, wall {wall[k]:.0f} s ({wall[k] / 60:.1f} min), child-seconds {busy:.0f}, best valid {best:.4f}")
t = [json.loads(l) for l in open(f"{out}/p2/search/trials.jsonl")]
overlaps = sum(1 for i, a in enumerate(t) for b in t[i + 1:] if a["started"] < b["finished"] and b["started"] < a["finished"])
print(f"--parallel 2 against 1: {wall[1] / wall[2]:.2f}x faster; {overlaps} pairs of children overlapped")
PY
