// Max and average pooling, NCHW, any kernel, stride and padding (the window of
// src/ops/kernels/window.rs). Average pooling divides by the pixels inside the image,
// excluding padding, as TensorFlow (and so ENAS) does. Backward passes gather
// from the outputs whose window covers each input pixel (no atomics); max
// pooling recomputes each window's first maximum, as the forward picks it.

#include "geometry.cuh"

__device__ __forceinline__ int window_argmax(const float* xp, const Geometry& g, int oy, int ox) {
    int best = -1;
    float best_v = 0.0f;
    for (int ky = 0; ky < g.k; ++ky) {
        int iy = oy * g.stride + ky - g.pad_top;
        if (iy < 0 || iy >= g.h) continue;
        for (int kx = 0; kx < g.k; ++kx) {
            int ix = ox * g.stride + kx - g.pad_left;
            if (ix < 0 || ix >= g.w) continue;
            float v = xp[iy * g.w + ix];
            if (best < 0 || v > best_v) {
                best = iy * g.w + ix;
                best_v = v;
            }
        }
    }
    return best;
}

__device__ __forceinline__ int window_count(const Geometry& g, int oy, int ox) {
    int y0 = max(oy * g.stride - g.pad_top, 0), y1 = min(oy * g.stride - g.pad_top + g.k, g.h);
    int x0 = max(ox * g.stride - g.pad_left, 0), x1 = min(ox * g.stride - g.pad_left + g.k, g.w);
    return max(y1 - y0, 0) * max(x1 - x0, 0);
}

// is_max: 1 for max pooling, 0 for average. One thread per output element.
extern "C" __global__ void pool_fwd_f32(const float* __restrict__ x, float* __restrict__ y, Geometry g, int is_max) {
    long total = (long)g.n * g.c * g.out_h * g.out_w;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ox = i % g.out_w;
        int oy = (i / g.out_w) % g.out_h;
        long plane = i / ((long)g.out_w * g.out_h);
        const float* xp = x + plane * g.h * g.w;
        if (is_max) {
            int at = window_argmax(xp, g, oy, ox);
            y[i] = at < 0 ? 0.0f : xp[at];
        } else {
            float acc = 0.0f;
            for (int ky = 0; ky < g.k; ++ky) {
                int iy = oy * g.stride + ky - g.pad_top;
                if (iy < 0 || iy >= g.h) continue;
                for (int kx = 0; kx < g.k; ++kx) {
                    int ix = ox * g.stride + kx - g.pad_left;
                    if (ix >= 0 && ix < g.w) acc += xp[iy * g.w + ix];
                }
            }
            int cnt = window_count(g, oy, ox);
            y[i] = cnt > 0 ? acc / cnt : 0.0f;
        }
    }
}

// One thread per input element: the sum over the outputs whose window covers it.
extern "C" __global__ void pool_bwd_f32(const float* __restrict__ x, const float* __restrict__ gy,
                                        float* __restrict__ gx, Geometry g, int is_max) {
    long total = (long)g.n * g.c * g.h * g.w;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ix = i % g.w;
        int iy = (i / g.w) % g.h;
        long plane = i / ((long)g.w * g.h);
        const float* xp = x + plane * g.h * g.w;
        const float* gp = gy + plane * g.out_h * g.out_w;
        float acc = 0.0f;
        for (int ky = 0; ky < g.k; ++ky) {
            int ty = iy + g.pad_top - ky;
            if (ty < 0 || ty % g.stride != 0) continue;
            int oy = ty / g.stride;
            if (oy >= g.out_h) continue;
            for (int kx = 0; kx < g.k; ++kx) {
                int tx = ix + g.pad_left - kx;
                if (tx < 0 || tx % g.stride != 0) continue;
                int ox = tx / g.stride;
                if (ox >= g.out_w) continue;
                if (is_max) {
                    if (window_argmax(xp, g, oy, ox) == iy * g.w + ix) acc += gp[oy * g.out_w + ox];
                } else {
                    int cnt = window_count(g, oy, ox);
                    if (cnt > 0) acc += gp[oy * g.out_w + ox] / cnt;
                }
            }
        }
        gx[i] = acc;
    }
}
