//! Device glue: our CUDA kernels' launches (with the `cuda` feature), and the
//! computations of our ops composed from candle's own, which run where our
//! CPU loops do not and serve as the references they are tested against.
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod reference;
