// Depthwise 2-D convolution, NCHW, one k x k filter per channel (weight
// (C, 1, k, k)), TensorFlow 'SAME' padding given as pad_top/pad_left, stride
// and dilation as the CPU op in src/ops/kernels/depthwise.rs. With `relu` set the
// input is ReLU(x): applied on read in the forward, as a mask in the backward.

#include "geometry.cuh"

__device__ __forceinline__ float relu_if(float v, int relu) {
    return relu ? fmaxf(v, 0.0f) : v;
}

// One thread per output element.
extern "C" __global__ void depthwise_fwd_f32(const float* __restrict__ x, const float* __restrict__ wt,
                                             float* __restrict__ y, Geometry g, int relu) {
    long total = (long)g.n * g.c * g.out_h * g.out_w;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ox = i % g.out_w;
        int oy = (i / g.out_w) % g.out_h;
        long plane = i / ((long)g.out_w * g.out_h);
        int ch = plane % g.c;
        const float* xp = x + plane * g.h * g.w;
        const float* wp = wt + (long)ch * g.k * g.k;
        float acc = 0.0f;
        for (int ky = 0; ky < g.k; ++ky) {
            int iy = oy * g.stride + ky * g.dilation - g.pad_top;
            if (iy < 0 || iy >= g.h) continue;
            for (int kx = 0; kx < g.k; ++kx) {
                int ix = ox * g.stride + kx * g.dilation - g.pad_left;
                if (ix < 0 || ix >= g.w) continue;
                acc += wp[ky * g.k + kx] * relu_if(xp[iy * g.w + ix], relu);
            }
        }
        y[i] = acc;
    }
}

// Gradient of the input: one thread per input element gathers every output
// whose window covers it (no atomics).
extern "C" __global__ void depthwise_bwd_input_f32(const float* __restrict__ gy, const float* __restrict__ wt,
                                                   const float* __restrict__ x, float* __restrict__ gx, Geometry g,
                                                   int relu) {
    long total = (long)g.n * g.c * g.h * g.w;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ix = i % g.w;
        int iy = (i / g.w) % g.h;
        long plane = i / ((long)g.w * g.h);
        int ch = plane % g.c;
        if (relu && x[i] <= 0.0f) {
            gx[i] = 0.0f;
            continue;
        }
        const float* gp = gy + plane * g.out_h * g.out_w;
        const float* wp = wt + (long)ch * g.k * g.k;
        float acc = 0.0f;
        for (int ky = 0; ky < g.k; ++ky) {
            int ty = iy + g.pad_top - ky * g.dilation;
            if (ty < 0 || ty % g.stride != 0) continue;
            int oy = ty / g.stride;
            if (oy >= g.out_h) continue;
            for (int kx = 0; kx < g.k; ++kx) {
                int tx = ix + g.pad_left - kx * g.dilation;
                if (tx < 0 || tx % g.stride != 0) continue;
                int ox = tx / g.stride;
                if (ox >= g.out_w) continue;
                acc += wp[ky * g.k + kx] * gp[oy * g.out_w + ox];
            }
        }
        gx[i] = acc;
    }
}

// Gradient of the weight: one block per (channel, tap), its threads sum over
// images and output positions, then reduce in shared memory.
extern "C" __global__ void depthwise_bwd_weight_f32(const float* __restrict__ x, const float* __restrict__ gy,
                                                    float* __restrict__ gw, Geometry g, int relu) {
    extern __shared__ float partial[];
    int tap = blockIdx.x % (g.k * g.k);
    int ch = blockIdx.x / (g.k * g.k);
    int ky = tap / g.k, kx = tap % g.k;
    long per_image = (long)g.out_h * g.out_w;
    long total = (long)g.n * per_image;
    float acc = 0.0f;
    for (long i = threadIdx.x; i < total; i += blockDim.x) {
        int img = i / per_image;
        int o = i % per_image;
        int oy = o / g.out_w, ox = o % g.out_w;
        int iy = oy * g.stride + ky * g.dilation - g.pad_top;
        int ix = ox * g.stride + kx * g.dilation - g.pad_left;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
        long plane = (long)img * g.c + ch;
        acc += gy[plane * per_image + o] * relu_if(x[plane * g.h * g.w + iy * g.w + ix], relu);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) gw[(long)ch * g.k * g.k + tap] = partial[0];
}
