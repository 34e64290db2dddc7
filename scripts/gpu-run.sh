#!/usr/bin/env bash
# On a machine with a GPU, from the bundle scripts/cuda-bundle.sh made:
#   bash gpu/gpu-run.sh STAGE...   (stages: tests, bench, benchmacro, profile, search, retrain)
# tests: tests/cuda.rs; bench: `enas bench supernet` on CUDA and the peer moved to
# CUDA (scripts/bench_peer_cuda.py), alternately, REPS times (default 3); search:
# one ENAS micro search epoch at the paper's sizes on CIFAR-10-shaped random data;
# retrain: the final retrain's step (15 x 36, batch 144) for one CIFAR-10 epoch's
# 347 steps, ours and the PyTorch peer (scripts/bench_retrain_torch.py: eager f32,
# eager AMP bf16, torch.compile AMP), alternately, REPS times; the projected
# 630-epoch time is 630 x 347 x 144 / images_per_s.
# Logs and JSON go to $OUT (default gpu/out).
set -u
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)/out}; mkdir -p "$OUT"
cd "$(dirname "$0")"
t0=$(date +%s)
# Unpacked every time, so a new bundle never runs an old binary.
xz -dkf enas.xz cuda_tests.xz 2>/dev/null || python3 -c "import lzma,shutil
for f in ['enas','cuda_tests']: shutil.copyfileobj(lzma.open(f+'.xz'), open(f,'wb'))" || exit 1
chmod +x enas cuda_tests
libdir=""
for n in libcublas.so.13 libcurand.so.10; do
  p=$(find / -xdev -name "$n" 2>/dev/null | head -1); [ -n "$p" ] && libdir="$libdir:$(dirname "$p")"
done
export LD_LIBRARY_PATH="${libdir#:}:${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
ldd ./enas | grep -E "cuda|cublas|curand" 
for stage in "$@"; do case $stage in
tests) ./cuda_tests --test-threads=1 2>&1 | tee $OUT/tests.log | tail -30 ;;
bench) for r in $(seq "${REPS:-3}"); do
    ./enas bench supernet --device cuda --space micro --arcs micro_arcs.txt --batch 160 --steps 50 --warmup 5 --json | tail -1 | tee -a $OUT/bench.jsonl
    python3 bench_peer_cuda.py --peer enas_micro_torch.py --space micro --arcs micro_arcs.txt --batch 160 --steps 50 --warmup 5 | tee -a $OUT/bench.jsonl
  done ;;
benchmacro) for r in $(seq "${REPS:-3}"); do
    ./enas bench supernet --device cuda --space macro --arcs macro_arcs.txt --batch 128 --steps 50 --warmup 5 --json | tail -1 | tee -a $OUT/bench.jsonl
    python3 bench_peer_cuda.py --peer enas_macro_torch.py --space macro --arcs macro_arcs.txt --batch 128 --steps 50 --warmup 5 | tee -a $OUT/bench.jsonl
  done ;;
profile) ./enas bench supernet --device cuda --space micro --arcs micro_arcs.txt --batch 160 --steps 20 --warmup 3 2>&1 | tail -30 ;;
search) python3 - <<'PY'
import numpy as np, os
d = "/tmp/c10/cifar-10-batches-bin"; os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    rec = rng.integers(0, 256, size=(10000, 3073), dtype=np.uint8); rec[:, 0] %= 10
    rec.tofile(os.path.join(d, name))
PY
    s=$(date +%s); rm -rf /tmp/run
    ./enas search --device cuda --dataset cifar10 --data-dir /tmp/c10 --space micro --preset paper --search-epochs 1 --out /tmp/run --json 2>&1 | tail -5 | tee $OUT/search.log
    echo "search epoch wall: $(( $(date +%s) - s )) s" | tee -a $OUT/search.log
    cp /tmp/run/search/*.jsonl $OUT/ 2>/dev/null ;;
retrain) for r in $(seq "${REPS:-3}"); do
    ./enas bench retrain --device cuda --steps 347 --warmup 5 --json | tail -1 | tee -a $OUT/retrain.jsonl
    for mode in f32 bf16 compile; do
      python3 bench_retrain_torch.py --mode $mode --steps 100 --warmup 10 | tee -a $OUT/retrain.jsonl
    done
  done
  python3 -c "
import json
for l in open('$OUT/retrain.jsonl'):
    r = json.loads(l); print(r.get('mode', 'enas'), round(r['images_per_s'], 1), 'img/s; 630 epochs:', round(630 * 347 * 144 / r['images_per_s'] / 3600, 2), 'h')
" ;;
esac; echo "[$stage done at +$(( $(date +%s) - t0 )) s]"; done
