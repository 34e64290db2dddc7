#!/usr/bin/env bash
# The controller against random search (its control) on the same search
# budget (issue 22, acceptance 4): for each controller and seed, the `quick`
# preset's search and derive on Fashion-MNIST; seed 0 of each is a whole
# `enas train` run, so it has the quick retrain's test accuracy too. Prints a
# Markdown table of the derived cells' shared-weight accuracy (and the
# uniform draws' and policy samples' means on the same supernet).
#
#   scripts/search-vs-random.sh [OUT_DIR] [CONTROLLERS] [SEEDS]
#
# OUT_DIR defaults to runs/search-vs-random, CONTROLLERS to "ppo random",
# SEEDS to "0 1 2". Runs already there are continued (--resume), finished
# ones only read, so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/search-vs-random}
controllers=${2:-ppo random}
seeds=${3:-0 1 2}
# ENAS=path runs another binary (a copy frozen while the tree changes).
if [ -z "${ENAS:-}" ]; then
    cargo build --release --quiet
fi
enas=${ENAS:-target/release/enas}
mkdir -p "$out"
for c in $controllers; do
    for s in $seeds; do
        dir=$out/$c-$s
        resume=()
        [ -e "$dir/command.txt" ] && resume=(--resume)
        if [ "$s" = 0 ]; then
            $enas train --dataset fashion-mnist --preset quick --controller "$c" --seed "$s" --out "$dir" --quiet "${resume[@]}" >/dev/null
        else
            [ -e "$dir/derive/derive.json" ] && continue
            $enas search --dataset fashion-mnist --preset quick --controller "$c" --seed "$s" --out "$dir" --quiet "${resume[@]}" >/dev/null
            $enas derive --run "$dir" --quiet >/dev/null
        fi
    done
done
python3 - "$out" $controllers -- $seeds <<'PY'
import json, os, sys, statistics
out = sys.argv[1]
rest = sys.argv[2:]
controllers, seeds = rest[:rest.index("--")], rest[rest.index("--") + 1:]
print("| controller | seed | derived: shared-weight valid acc | uniform draws' mean | policy samples' mean | test acc after the quick retrain |")
print("| --- | --- | --- | --- | --- | --- |")
for c in controllers:
    derived = []
    for s in seeds:
        d = json.load(open(f"{out}/{c}-{s}/derive/derive.json"))
        policy = [x["valid_accuracy"] for x in d["candidates"] if x["source"] == "policy"]
        summary = f"{out}/{c}-{s}/retrain/summary.json"
        test = f"{100 * json.load(open(summary))['test_accuracy']:.2f}%" if os.path.exists(summary) else ""
        pm = f"{statistics.mean(policy):.4f}" if policy else "(no policy)"
        print(f"| {c} | {s} | {d['valid_accuracy']:.4f} | {d['uniform_mean']:.4f} | {pm} | {test} |")
        derived.append(d["valid_accuracy"])
    sd = statistics.stdev(derived) if len(derived) > 1 else 0.0
    print(f"| {c} | mean | {statistics.mean(derived):.4f} ± {sd:.4f} (sd) | | | |")
PY
