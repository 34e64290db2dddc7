#!/usr/bin/env bash
# Compiles every CUDA kernel in kernels/ to PTX for sm_90 and sm_80 with all
# warnings as errors, so a kernel that does not compile fails CI, then
# type-checks the crate and its tests with the `cuda` feature (no GPU or
# libcuda needed for either; ENAS_SKIP_CUDA_CHECK=1 skips the second). There is no
# CUDA toolkit from Debian here: nvcc 13.0 comes from PyPI into a virtual
# environment under $ENAS_NVCC_DIR (default ~/.cache/enas-nvcc), once.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${ENAS_NVCC_DIR:-$HOME/.cache/enas-nvcc}"
nvcc="$dir/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc"
if ! compgen -G "$nvcc" >/dev/null; then
    echo "check-kernels: installing nvcc 13.0 from PyPI into $dir"
    mkdir -p "$dir"
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv "$dir/venv" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then s=(); else s=(sudo); fi
        "${s[@]}" apt-get update -qq
        "${s[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
        rm -rf "$dir/venv"
        python3 -m venv "$dir/venv"
    fi
    "$dir/venv/bin/pip" install -q --disable-pip-version-check \
        "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
        "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*"
fi
nvcc=$(compgen -G "$nvcc" | head -1)

out="${TMPDIR:-/tmp}/enas-ptx.$$"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
failed=0
count=0
for cu in kernels/*.cu; do
    for arch in 90 80; do
        count=$((count + 1))
        if ! "$nvcc" --ptx -arch="sm_$arch" -O3 --Werror all-warnings -o "$out/$(basename "${cu%.cu}").sm_$arch.ptx" "$cu"; then
            echo "check-kernels: $cu does not compile for sm_$arch" >&2
            failed=1
        fi
    done
done
if [ "$count" -eq 0 ]; then
    echo "check-kernels: no kernels/*.cu found" >&2
    exit 1
fi
[ "$failed" -eq 0 ] || exit 1
echo "check-kernels: $count PTX builds ok ($(ls kernels/*.cu | wc -l) kernel files x sm_90, sm_80) with $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"

if [ "${ENAS_SKIP_CUDA_CHECK:-0}" != 1 ]; then
    bin=$(dirname "$nvcc")
    PATH="$bin:$PATH" NVCC="$nvcc" CUDA_ROOT="$(dirname "$bin")" CUDA_PATH="$(dirname "$bin")" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" \
        cargo check --release --locked --features cuda --tests --benches --quiet
    echo "check-kernels: cargo check --features cuda (library, binary, tests and benches) ok"
fi
