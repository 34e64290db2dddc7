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
