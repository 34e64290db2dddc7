//! Training ops that run a chain of kernels as one op, so the chain's
//! intermediates stay out of candle's graph (whose backward would give each
//! a zeroed gradient and an add per edge, on the calling thread alone).
pub mod add_bn;
pub mod conv_bn;
pub mod reduce_bn;
pub mod sep_bn;

pub use add_bn::{add_bn_train, sum_bn_taped, SumBnTape};
pub use conv_bn::{conv_bn_taped, conv_bn_train, ConvBnTape};
pub use reduce_bn::{reduce_bn_taped, reduce_bn_train, ReduceBnTape};
pub use sep_bn::{sep_conv_bn_taped, sep_conv_bn_train, sep_params, SepHalf, SepTape};
