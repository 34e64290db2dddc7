#!/usr/bin/env bash
# Our supernet step against the PyTorch peer on the same ENAS workload:
# alternately, three runs each, per space; prints the median images/s of each
# and their ratio, and peak RSS (ours from /proc, the peer's from GNU time).
#
#   scripts/bench-vs-pytorch.sh [--isa native|avx2|avx512] [micro|macro|both] [PEER_DIR]
#
# --isa restricts both sides to one instruction set, so the AVX2 comparison
# can be run on a machine with AVX-512: ours by ENAS_ISA (our kernels) and a
# build without gemm's AVX-512 kernels (gemm has no switch at run time);
# PyTorch by ATEN_CPU_CAPABILITY (its own kernels), ONEDNN_MAX_CPU_ISA
# (oneDNN's convolutions) and MKL_ENABLE_INSTRUCTIONS (MKL's matrix
# products). native (the default) lets each pick the best the CPU has.
#
# PEER_DIR holds enas_{micro,macro}_torch.py and {micro,macro}_arcs.txt
# (default ../shared/peer). Installs PyTorch (CPU) from PyPI if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
isa=native
if [ "${1:-}" = --isa ]; then
    isa=${2:?--isa needs native, avx2 or avx512}
    shift 2
fi
spaces=${1:-both}
peer=${2:-../shared/peer}
runs=${RUNS:-3}
[ "$spaces" = both ] && spaces="micro macro"

ours_env=() peer_env=() features=()
case "$isa" in
    native) ;;
    avx2)
        ours_env=(ENAS_ISA=avx2)
        features=(--no-default-features)
        peer_env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)
        ;;
    avx512)
        ours_env=(ENAS_ISA=avx512)
        peer_env=(ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512)
        ;;
    *) echo "bench-vs-pytorch: --isa $isa: expected native, avx2 or avx512" >&2; exit 2 ;;
esac

if ! python3 -c "import torch" 2>/dev/null; then
    echo "installing PyTorch (CPU) from PyPI" >&2
    python3 -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
        || python3 -m pip install --quiet torch
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build --release --quiet --bin enas ${features[@]+"${features[@]}"}
# The binary is copied out: a build with other features writes the same path.
cp "${CARGO_TARGET_DIR:-target}/release/enas" "$tmp/enas"
enas="$tmp/enas"
peer_cap=$(env ${peer_env[@]+"${peer_env[@]}"} python3 -W ignore -c "import torch; print(torch.backends.cpu.get_cpu_capability())" 2>/dev/null || echo unknown)
echo "isa $isa: pytorch's CPU capability $peer_cap" >&2

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }

for space in $spaces; do
    arcs="$peer/${space}_arcs.txt"
    for i in $(seq "$runs"); do
        env ${peer_env[@]+"${peer_env[@]}"} /usr/bin/time -f "%M" -o "$tmp/peer_rss" python3 -W ignore "$peer/enas_${space}_torch.py" --arcs "$arcs" \
            2>/dev/null | field "['images_per_s']" >>"$tmp/peer_$space"
        echo $(( $(cat "$tmp/peer_rss") / 1024 )) >>"$tmp/peer_rss_$space"
        out=$(env ${ours_env[@]+"${ours_env[@]}"} "$enas" bench supernet --space "$space" --arcs "$arcs" --json)
        echo "$out" | field "['images_per_s']" >>"$tmp/ours_$space"
        echo "$out" | field "['peak_rss_mb']" >>"$tmp/ours_rss_$space"
        kernels=$(echo "$out" | field "['machine']['kernels'] + ', gemm ' + d['machine']['gemm']")
        echo "$space run $i: pytorch $(tail -1 "$tmp/peer_$space") img/s, enas $(tail -1 "$tmp/ours_$space") img/s (kernels $kernels)" >&2
    done
    p=$(median <"$tmp/peer_$space"); o=$(median <"$tmp/ours_$space")
    pr=$(median <"$tmp/peer_rss_$space"); orss=$(median <"$tmp/ours_rss_$space")
    printf '%s [%s]: pytorch %.1f img/s (peak RSS %.0f MB), enas %.1f img/s (peak RSS %.0f MB), ratio %.2f (median of %d)\n' \
        "$space" "$isa" "$p" "$pr" "$o" "$orss" "$(python3 -c "print($o / $p)")" "$runs"
done
