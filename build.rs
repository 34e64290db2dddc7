//! With the `cuda` feature, compiles kernels/*.cu to PTX in OUT_DIR for the
//! ops to load (`NVCC`: the compiler, default `nvcc` on PATH;
//! `CUDA_COMPUTE_CAP`: the target, default 90). Without it, does nothing.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=kernels/geometry.cuh");
    println!("cargo:rerun-if-changed=kernels/reduce.cuh");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    for name in ["batch_norm", "depthwise", "pool", "sgd"] {
        let src = format!("kernels/{name}.cu");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", &format!("-arch=sm_{cap}"), "-O3", "-o"])
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {nvcc} for {src}: {e} (scripts/check-kernels.sh installs one; point NVCC at it)"));
        assert!(status.success(), "{nvcc} failed on {src}");
    }
}
