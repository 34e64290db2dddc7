// The window over NCHW planes every kernel here takes, field for field the
// `Geometry` of src/ops/device/cuda.rs and the geometry of src/ops/kernels/window.rs
// (TensorFlow 'SAME' or 'valid' padding as pad_top/pad_left). Pooling always
// has dilation 1 and does not read it.
#pragma once

struct Geometry {
    int n, c, h, w;      // input
    int k, stride, dilation, pad_top, pad_left;
    int out_h, out_w;
};
