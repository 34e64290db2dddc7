//! Ops candle lacks or does slowly, as custom ops with backward: depthwise
//! convolution, padded pooling, training-mode batch norm and convolution with
//! a fused input ReLU (5x5 by Winograd), and training ops that fuse a chain of
//! these so its intermediates stay out of candle's graph (`conv_bn`,
//! `sep_bn`, `reduce_bn`, `add_bn`).
//!
//! Three floors: `kernels` (one op each: CPU loops compiled for every kernel
//! set and picked at run time, `kernels::simd`; CUDA launches), `fused`
//! (training ops built from the kernels) and `device` (the CUDA glue, and the
//! same computations composed from candle's ops for devices our loops do not
//! run on). `storage` and `profile` are the ground floor they all stand on.
//! This file is only the face.
pub mod device;
pub mod fused;
pub mod kernels;
pub mod profile;
pub mod storage;

pub use device::reference;
pub use fused::{add_bn_train, conv_bn_taped, conv_bn_train, reduce_bn_taped, reduce_bn_train, sep_conv_bn_taped, sep_conv_bn_train, sep_params, sum_bn_taped};
pub use fused::{ConvBnTape, ReduceBnTape, SepHalf, SepTape, SumBnTape};
pub use kernels::{accumulate, batch_norm, conv, depthwise, pool, sgd, simd, subsample};
pub use kernels::{add_into, sum_of};
pub use kernels::{avg_pool2d, max_pool2d, pool2d, pool2d_grad, PoolKind};
pub use kernels::{batch_norm_relu_train, batch_norm_train, BatchStats};
pub use kernels::{conv2d_same, depthwise_conv2d, relu_depthwise_conv2d, subsample2, Window};
pub use kernels::{sgd_velocity, sgd_weight, SgdStep};
pub use storage::channel_blocks;
pub(crate) use storage::{filled, tensor as storage_tensor, with_f32};
