//! Device glue: our CUDA kernels' launches (with the `cuda` feature), and the
//! computations of our ops composed from candle's own, which run where our
//! CPU loops do not and serve as the references they are tested against.
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod reference;

/// Prepares a device for training: on CUDA, no per-buffer events and a
/// memory pool that keeps what it frees (`cuda::prepare`); nothing on the CPU.
pub fn prepare(device: &candle_core::Device) -> candle_core::Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(cuda_device) => cuda::prepare(cuda_device),
        _ => Ok(()),
    }
}

/// The device as a run records it: `cpu` or `cuda:N`.
pub fn name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The device as a run prints it once: its name, and on the CPU the model and kernel set.
pub fn describe(device: &candle_core::Device) -> String {
    match device {
        candle_core::Device::Cpu => format!("cpu, {}", crate::ops::kernels::simd::Machine::current()),
        _ => name(device),
    }
}
