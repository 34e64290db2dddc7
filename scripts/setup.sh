#!/usr/bin/env bash
# Installs what a fresh Debian machine with Rust lacks, then builds the release
# binary. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
# Fashion-MNIST, the default dataset, as Debian packages it.
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# The CUDA kernels compile as C++ for the emulated kernel tests.
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# Headless Chromium opens report.html in the report test.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Python writes Fashion-MNIST as image folders (scripts/idx-to-folder.py) and runs ONNX Runtime in the tests.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
# A one-node Slurm cluster runs multi-trial children as array jobs in tests/slurm.rs.
for daemon in slurmctld slurmd munged sbatch; do
    command -v "$daemon" >/dev/null 2>&1 || { missing+=(slurmctld slurmd munge slurm-client); break; }
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) and run this again" >&2
    exit 1
fi

# rustfmt and clippy check the house style and lints in CI (.ci/run); rustup's minimal profile lacks them.
for tool in fmt clippy; do
    component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            echo "setup: installing $component"
            rustup component add "$component"
        else
            echo "setup: cargo $tool not found; install $component (rustup component add $component) and run this again" >&2
            exit 1
        fi
    fi
done

# ONNX Runtime checks the files `enas export` writes (tests/export.rs): from PyPI into a virtual
# environment of its own, used only by the tests.
venv=${ENAS_VENV:-$HOME/.cache/enas-venv}
if ! "$venv/bin/python" -c "import onnxruntime, numpy" >/dev/null 2>&1; then
    echo "setup: installing onnxruntime into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime numpy
fi

cargo build --release --locked
echo "setup: done; the binary is $(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/enas"
