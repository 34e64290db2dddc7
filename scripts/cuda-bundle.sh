#!/usr/bin/env bash
# Builds the `enas` binary and the GPU tests (tests/cuda.rs) with the `cuda`
# feature on this machine, which has neither a GPU nor libcuda: the linker is
# given stub libraries (scripts/cuda-stubs.sh) under the real libraries'
# sonames, and the machine with the GPU loads its own. Strips and packs both,
# with the peer workloads, into gpu/ (git-ignored) for scripts/gpu-run.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
ENAS_SKIP_CUDA_CHECK=1 scripts/check-kernels.sh >/dev/null   # installs nvcc if missing
nvcc=$(compgen -G "${ENAS_NVCC_DIR:-$HOME/.cache/enas-nvcc}/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc" | head -1)
bin=$(dirname "$nvcc")
stubs=$(scripts/cuda-stubs.sh)
export PATH="$bin:$PATH" NVCC="$nvcc" CUDA_ROOT="$(dirname "$bin")" CUDA_PATH="$(dirname "$bin")" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# RUSTFLAGS replaces .cargo/config.toml's flags, so its baseline target is
# repeated here (the plain x86-64 CPU with v2's features, not x86-64-v2's
# tuning: .cargo/config.toml says why).
export RUSTFLAGS="-L$stubs -C target-cpu=x86-64 -C target-feature=+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cmpxchg16b" CARGO_TARGET_DIR="${ENAS_CUDA_TARGET:-target/cuda-bundle}"
cargo build --release --locked --features cuda --bin enas
test=$(cargo test --release --locked --features cuda --test cuda --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
mkdir -p gpu
grep -qx '/gpu/' "$(git rev-parse --git-dir)/info/exclude" 2>/dev/null || { mkdir -p "$(git rev-parse --git-dir)/info"; echo '/gpu/' >> "$(git rev-parse --git-dir)/info/exclude"; }
for pair in "$CARGO_TARGET_DIR/release/enas:enas" "$test:cuda_tests"; do
    strip -o "gpu/${pair##*:}" "${pair%%:*}"
    xz -T0 -6 -f "gpu/${pair##*:}"
done
cp ../shared/peer/enas_micro_torch.py ../shared/peer/enas_macro_torch.py ../shared/peer/micro_arcs.txt ../shared/peer/macro_arcs.txt gpu/
chmod u+w gpu/*
cp scripts/gpu-run.sh scripts/bench_peer_cuda.py scripts/bench_retrain_torch.py gpu/
ls -la gpu
