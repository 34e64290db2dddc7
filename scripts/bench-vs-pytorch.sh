#!/usr/bin/env bash
# Our supernet step against the PyTorch peer on the same ENAS workload:
# alternately, three runs each, per space; prints the median images/s of each
# and their ratio, and peak RSS (ours from /proc, the peer's from GNU time).
#
#   scripts/bench-vs-pytorch.sh [micro|macro|both] [PEER_DIR]
#
# PEER_DIR holds enas_{micro,macro}_torch.py and {micro,macro}_arcs.txt
# (default ../shared/peer). Installs PyTorch (CPU wheel) from PyPI if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
spaces=${1:-both}
peer=${2:-../shared/peer}
runs=${RUNS:-3}
[ "$spaces" = both ] && spaces="micro macro"

if ! python3 -c "import torch" 2>/dev/null; then
    echo "installing PyTorch (CPU) from PyPI" >&2
    python3 -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
        || python3 -m pip install --quiet torch
fi
cargo build --release --quiet --bin enas
enas=${CARGO_TARGET_DIR:-target}/release/enas

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for space in $spaces; do
    arcs="$peer/${space}_arcs.txt"
    for i in $(seq "$runs"); do
        /usr/bin/time -f "%M" -o "$tmp/peer_rss" python3 -W ignore "$peer/enas_${space}_torch.py" --arcs "$arcs" \
            2>/dev/null | field images_per_s >>"$tmp/peer_$space"
        echo $(( $(cat "$tmp/peer_rss") / 1024 )) >>"$tmp/peer_rss_$space"
        out=$("$enas" bench supernet --space "$space" --arcs "$arcs" --json)
        echo "$out" | field images_per_s >>"$tmp/ours_$space"
        echo "$out" | field peak_rss_mb >>"$tmp/ours_rss_$space"
        echo "$space run $i: pytorch $(tail -1 "$tmp/peer_$space") img/s, enas $(tail -1 "$tmp/ours_$space") img/s" >&2
    done
    p=$(median <"$tmp/peer_$space"); o=$(median <"$tmp/ours_$space")
    pr=$(median <"$tmp/peer_rss_$space"); orss=$(median <"$tmp/ours_rss_$space")
    printf '%s: pytorch %.1f img/s (peak RSS %.0f MB), enas %.1f img/s (peak RSS %.0f MB), ratio %.2f (median of %d)\n' \
        "$space" "$p" "$pr" "$o" "$orss" "$(python3 -c "print($o / $p)")" "$runs"
done
