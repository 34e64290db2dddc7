// Training-mode batch normalisation over NCHW, the CPU op of
// src/ops/kernels/batch_norm.rs in four kernels, with the statistics kept on
// the device: per-channel statistics, then normalise + affine (+ ReLU)
// forward; per-channel gradient sums, then the input gradient backward.
// `stats` is (2, C): the means, then the biased variances. `sums` is (2, C):
// sum(dy), then sum(dy x_hat), dy masked where y <= 0 with the fused ReLU.
//
// The reductions run one block per channel, each thread over a strided share
// of the channel's n * hw elements, in double as the CPU loop sums its lanes;
// then a tree over the block in shared memory (blockDim.x a power of two).
// The elementwise kernels use the CPU loop's float operations (_rn: no
// contraction into FMAs), so only the sums' order differs from the CPU's.

#include "reduce.cuh"

// Element `i` of channel `ch`'s n * hw elements.
__device__ __forceinline__ long channel_index(long i, int ch, int c, int hw) {
    return (i / hw * c + ch) * (long)hw + i % hw;
}

// One block per channel: mean, then the mean squared deviation from it (two
// passes, as the CPU op, for accuracy).
extern "C" __global__ void bn_stats_f32(const float* __restrict__ x, float* __restrict__ stats, int n, int c, int hw) {
    int ch = blockIdx.x;
    long m = (long)n * hw;
    double sum = 0.0;
    for (long i = threadIdx.x; i < m; i += blockDim.x) sum += x[channel_index(i, ch, c, hw)];
    float mean = (float)(block_sum(sum) / (double)m);
    double sq = 0.0;
    for (long i = threadIdx.x; i < m; i += blockDim.x) {
        float d = __fsub_rn(x[channel_index(i, ch, c, hw)], mean);
        sq += __fmul_rn(d, d);
    }
    double var = block_sum(sq) / (double)m;
    if (threadIdx.x == 0) {
        stats[ch] = mean;
        stats[c + ch] = (float)var;
    }
}

// y = x scale + shift, scale = gamma / sqrt(var + eps), shift = beta - mean scale; ReLU'd when `relu`.
extern "C" __global__ void bn_apply_f32(const float* __restrict__ x, const float* __restrict__ stats, const float* __restrict__ gamma,
                                        const float* __restrict__ beta, float* __restrict__ y, int n, int c, int hw, float eps, int relu) {
    long total = (long)n * c * hw;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ch = (int)(i / hw % c);
        float scale = __fdiv_rn(gamma[ch], __fsqrt_rn(__fadd_rn(stats[c + ch], eps)));
        float shift = __fsub_rn(beta[ch], __fmul_rn(stats[ch], scale));
        float v = __fadd_rn(__fmul_rn(x[i], scale), shift);
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// One block per channel: sum(dy) and sum(dy (x - mean)) / sqrt(var + eps).
extern "C" __global__ void bn_grad_sums_f32(const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ y,
                                            const float* __restrict__ stats, float* __restrict__ sums, int n, int c, int hw, float eps, int relu) {
    int ch = blockIdx.x;
    long m = (long)n * hw;
    float mean = stats[ch];
    float invstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(stats[c + ch], eps)));
    double sb = 0.0, sg = 0.0;
    for (long i = threadIdx.x; i < m; i += blockDim.x) {
        long j = channel_index(i, ch, c, hw);
        float d = (relu && !(y[j] > 0.0f)) ? 0.0f : dy[j];
        sb += d;
        sg += __fmul_rn(d, __fsub_rn(x[j], mean));
    }
    double dbeta = block_sum(sb);
    double dgamma = block_sum(sg) * invstd;
    if (threadIdx.x == 0) {
        sums[ch] = (float)dbeta;
        sums[c + ch] = (float)dgamma;
    }
}

// dx = gamma invstd (dy - dbeta / M - x_hat dgamma / M), M = n hw, dy masked as in bn_grad_sums_f32.
extern "C" __global__ void bn_grad_input_f32(const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ y,
                                             const float* __restrict__ stats, const float* __restrict__ gamma, const float* __restrict__ sums,
                                             float* __restrict__ dx, int n, int c, int hw, float eps, int relu) {
    long total = (long)n * c * hw;
    float m = (float)((long)n * hw);
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        int ch = (int)(i / hw % c);
        float mean = stats[ch];
        float invstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(stats[c + ch], eps)));
        float k = __fmul_rn(gamma[ch], invstd);
        float db = __fdiv_rn(sums[ch], m), dg = __fdiv_rn(sums[c + ch], m);
        float d = (relu && !(y[i] > 0.0f)) ? 0.0f : dy[i];
        float xhat_dg = __fmul_rn(__fmul_rn(__fsub_rn(x[i], mean), invstd), dg);
        dx[i] = __fmul_rn(k, __fsub_rn(__fsub_rn(d, db), xhat_dg));
    }
}
