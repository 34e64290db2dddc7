#!/usr/bin/env bash
# Stub shared libraries for linking the `cuda` feature where no CUDA driver or
# libraries are installed: every symbol candle and cudarc import, as an empty
# function, in libraries with the real sonames (libcuda.so.1, libcublas.so.13,
# libcurand.so.10). The CUDA runtime comes real from the nvcc wheel. Prints the
# directory. Never run anything linked here without the real libraries.
set -euo pipefail
dir="${TMPDIR:-/tmp}/enas-cuda-stubs"
mkdir -p "$dir"
here=$(cd "$(dirname "$0")" && pwd)
gen() { # name soversion symbol-regex
    { grep -E "$3" "$here/cuda-symbols.txt" || true; } | sed 's/.*/void &(void) {}/' > "$dir/$1.c"
    gcc -shared -fPIC -o "$dir/lib$1.so" -Wl,-soname,"lib$1.so.$2" "$dir/$1.c"
}
gen cuda 1 '^cu[A-Z]'
gen cublas 13 '^cublas[A-Z]'
gen cublasLt 13 '^cublasLt'
gen curand 10 '^curand'
gen nvrtc 13 '^nvrtc'
rt=$(compgen -G "${ENAS_NVCC_DIR:-$HOME/.cache/enas-nvcc}/venv/lib/python3*/site-packages/nvidia/cu13/lib/libcudart.so.13" | head -1)
ln -sf "$rt" "$dir/libcudart.so"
echo "$dir"
