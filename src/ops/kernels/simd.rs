//! The kernel sets: every hand-written CPU loop of ours is compiled once per
//! set (`dispatch`), and one set is picked when the program starts: the best
//! this CPU runs, or the one `ENAS_ISA` names. So one binary, built for the
//! x86-64-v2 baseline, runs on any x86-64 machine at that machine's best.
//!
//! The loops are written once over pulp's `Simd` trait (the crate `gemm`
//! already uses to pick its own kernels at run time) or as plain loops that
//! the compiler vectorises at the width of the set they are inlined into.
//! Within one set the results are the same bits run to run; between sets only
//! the sums that reduce across vector lanes differ (the 1x1 convolution's
//! weight gradient), docs/DESIGN.md says why.
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that picks a kernel set.
pub const ENV: &str = "ENAS_ISA";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSet {
    /// What the build targets, nothing more (x86-64-v2: 4-lane SSE, no FMA).
    Baseline,
    /// AVX2 and FMA (x86-64-v3): sixteen 8-lane registers.
    Avx2,
    /// AVX-512 F, BW, CD, DQ and VL (x86-64-v4): thirty-two 16-lane registers.
    Avx512,
    /// NEON (aarch64): thirty-two 4-lane registers.
    Neon,
}

const ALL: [KernelSet; 4] = [KernelSet::Baseline, KernelSet::Avx2, KernelSet::Avx512, KernelSet::Neon];

impl KernelSet {
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Baseline => "baseline",
            KernelSet::Avx2 => "avx2",
            KernelSet::Avx512 => "avx512",
            KernelSet::Neon => "neon",
        }
    }

    /// A set by its name; `native` is the best this CPU runs.
    pub fn parse(name: &str) -> Option<KernelSet> {
        match name.trim().to_ascii_lowercase().as_str() {
            "native" => Some(KernelSet::detected()),
            other => ALL.into_iter().find(|k| k.name() == other),
        }
    }

    /// Whether this CPU (and this build's architecture) runs the set.
    pub fn available(self) -> bool {
        match self {
            KernelSet::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx2 => pulp::x86::V3::is_available(),
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512 => pulp::x86::V4::is_available(),
            #[cfg(target_arch = "aarch64")]
            KernelSet::Neon => pulp::aarch64::Neon::is_available(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best set this CPU runs.
    pub fn detected() -> KernelSet {
        [KernelSet::Avx512, KernelSet::Neon, KernelSet::Avx2].into_iter().find(|k| k.available()).unwrap_or(KernelSet::Baseline)
    }

    /// Every set this CPU runs, the baseline first.
    pub fn available_sets() -> Vec<KernelSet> {
        ALL.into_iter().filter(|k| k.available()).collect()
    }
}

impl std::fmt::Display for KernelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const UNSET: u8 = u8::MAX;
static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);

/// The set `ENAS_ISA` names (unset or empty: the best this CPU runs), made
/// the active one; an error in one line when the name is unknown or this CPU
/// cannot run the set.
pub fn init_from_env() -> Result<KernelSet, String> {
    let asked = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let set = match asked {
        None => KernelSet::detected(),
        Some(name) => KernelSet::parse(&name).ok_or_else(|| {
            let names: Vec<_> = ALL.iter().map(|k| k.name()).collect();
            format!("{ENV}={name}: not a kernel set (one of {}, or native)", names.join(", "))
        })?,
    };
    set_active(set)?;
    Ok(set)
}

/// Makes `set` the one our loops run with, or says why this CPU cannot run
/// it. For start-up and for tests: an op already running on another thread
/// may finish with either set.
pub fn set_active(set: KernelSet) -> Result<(), String> {
    if !set.available() {
        return Err(format!(
            "{ENV}={}: this CPU cannot run that kernel set (it runs {})",
            set.name(),
            KernelSet::available_sets().iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        ));
    }
    ACTIVE.store(set as u8, Ordering::Relaxed);
    Ok(())
}

/// The set our loops run with: chosen by `init_from_env` on first use.
#[inline]
pub fn active() -> KernelSet {
    match ACTIVE.load(Ordering::Relaxed) {
        UNSET => init_from_env().unwrap_or_else(|e| panic!("{e}")),
        v => ALL[v as usize],
    }
}

/// The kernels the `gemm` crate (candle's matrix products, and ours for the
/// k x k convolutions) picks on this CPU: it chooses for itself, AVX-512 only
/// when this build has the `gemm-avx512` feature.
pub fn gemm_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "gemm-avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// `S`'s vector at `s[at..]`, unaligned; the caller has checked the bounds.
///
/// # Safety
/// `at + S::F32_LANES <= s.len()`.
#[inline(always)]
pub(crate) unsafe fn load<S: pulp::Simd>(s: &[f32], at: usize) -> S::f32s {
    debug_assert!(at + S::F32_LANES <= s.len());
    // SAFETY: in bounds (the caller's promise); f32s is plain f32 lanes.
    unsafe { (s.as_ptr().add(at) as *const S::f32s).read_unaligned() }
}

/// Stores `v` at `d[at..]`, unaligned; the caller has checked the bounds.
///
/// # Safety
/// `at + S::F32_LANES <= d.len()`.
#[inline(always)]
pub(crate) unsafe fn store<S: pulp::Simd>(d: &mut [f32], at: usize, v: S::f32s) {
    debug_assert!(at + S::F32_LANES <= d.len());
    // SAFETY: as in `load`.
    unsafe { (d.as_mut_ptr().add(at) as *mut S::f32s).write_unaligned(v) }
}

/// Runs plain loops compiled for the active kernel set, for the compiler to
/// vectorise at its width: call it as `vectorize(#[inline(always)] || ...)`
/// with everything the closure calls `#[inline(always)]`, or the loops are
/// compiled for the baseline alone. Leaf loops call it (per plane or image,
/// inside the worker threads' tasks), as a target feature does not reach
/// through rayon's calls.
#[inline(always)]
pub fn vectorize<R>(f: impl FnMut() -> R) -> R {
    dispatch(Loops(f))
}

/// A closure as a pulp kernel, called through `FnMut`: called through
/// `FnOnce`, a closure runs in a shim of rustc's that is not inlined into the
/// kernel set's function, and its loops lose the set's instructions.
struct Loops<F>(F);

impl<R, F: FnMut() -> R> pulp::WithSimd for Loops<F> {
    type Output = R;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, _: S) -> R {
        (self.0)()
    }
}

/// Runs `op` compiled for the active kernel set: its body, and everything it
/// inlines, with that set's instructions enabled (see `vectorize`).
#[inline(always)]
pub fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    match active() {
        // SAFETY (each arm): `set_active` admits a set only where the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx512 => pulp::Simd::vectorize(unsafe { pulp::x86::V4::new_unchecked() }, op),
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx2 => pulp::Simd::vectorize(unsafe { pulp::x86::V3::new_unchecked() }, op),
        #[cfg(target_arch = "aarch64")]
        KernelSet::Neon => pulp::Simd::vectorize(unsafe { pulp::aarch64::Neon::new_unchecked() }, op),
        _ => pulp::Simd::vectorize(pulp::Scalar::new(), op),
    }
}

/// The CPU a run or benchmark ran on and the kernels it used, as recorded
/// beside its results (`config.json`, `report.md`, `enas bench`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// Our kernel set.
    pub kernels: String,
    /// gemm's own choice (`gemm_kernels`).
    pub gemm: String,
}

impl Machine {
    pub fn current() -> Machine {
        Machine {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernels: active().name().to_string(),
            gemm: gemm_kernels().to_string(),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} cores), kernel set {}, gemm {}", self.cpu, self.cores, self.kernels, self.gemm)
    }
}

/// The CPU's model name as Linux reports it, else the architecture.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            matches!(key.trim(), "model name" | "Model" | "Hardware").then(|| value.trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
