// One SGD step with momentum (heavy-ball or Nesterov) and weight decay, in
// place, in the same float operations and order as the CPU loop of
// src/ops/kernels/sgd.rs (explicit _rn intrinsics: no contraction into FMAs), so a GPU
// step equals a CPU step bit for bit. The velocity is updated first, then the
// weight reads it:
//   g' = g + wd w             (L2 decay; skipped when decoupled)
//   v  = mu v + g'
//   w  = w - lr u,  u = g' + mu v (Nesterov), v (heavy ball), g' (no momentum)
//   w  = w - (lr wd) w_old    (decoupled decay; lr wd rounded once, on the host)

#include "reduce.cuh"

__device__ __forceinline__ float decayed(float g, float w, float wd, int decoupled) {
    return (wd > 0.0f && !decoupled) ? __fadd_rn(g, __fmul_rn(w, wd)) : g;
}

extern "C" __global__ void sgd_velocity_f32(float* __restrict__ v, const float* __restrict__ g, const float* __restrict__ w,
                                            long n, float mu, float wd, int decoupled) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        v[i] = __fadd_rn(__fmul_rn(v[i], mu), decayed(g[i], w[i], wd, decoupled));
    }
}

// momentum: 0 for plain SGD (v is not read).
extern "C" __global__ void sgd_weight_f32(float* __restrict__ w, const float* __restrict__ g, const float* __restrict__ v,
                                          long n, float lr, float mu, float wd, float lr_wd, int decoupled, int momentum, int nesterov) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float w0 = w[i];
        float gd = decayed(g[i], w0, wd, decoupled);
        float u = !momentum ? gd : nesterov ? __fadd_rn(gd, __fmul_rn(v[i], mu)) : v[i];
        float next = __fsub_rn(w0, __fmul_rn(u, lr));
        if (wd > 0.0f && decoupled) next = __fsub_rn(next, __fmul_rn(w0, lr_wd));
        w[i] = next;
    }
}

// The step over every variable at once, with gradient clipping by the global
// norm on the device (no read-back): a table of entries uploaded once a step,
// then three launches in all, whatever the number of variables.
struct SgdEntry {
    float* w;
    const float* g;
    float* v;  // read and written only with momentum
    long long n;
};

// One block per entry: the sum of its gradient's squares, in double.
extern "C" __global__ void grad_sq_sums_f32(const SgdEntry* __restrict__ entries, double* __restrict__ partial) {
    SgdEntry e = entries[blockIdx.x];
    double s = 0.0;
    for (long long i = threadIdx.x; i < e.n; i += blockDim.x) {
        double g = e.g[i];
        s += g * g;
    }
    double total = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// One block: the factor every gradient is scaled by, max_norm / (norm + 1e-6)
// where the global norm exceeds max_norm > 0, else 1 (as train::clip_grad_norm).
extern "C" __global__ void clip_coefficient_f32(const double* __restrict__ partial, int count, double max_norm, float* __restrict__ coef) {
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    double norm = sqrt(block_sum(s));
    if (threadIdx.x == 0) coef[0] = (max_norm > 0.0 && norm > max_norm) ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
}

// Entry blockIdx.y, its elements over blockIdx.x: g' = g coef, then
// sgd_velocity_f32 and sgd_weight_f32's operations on g' in one pass.
extern "C" __global__ void sgd_all_f32(const SgdEntry* __restrict__ entries, const float* __restrict__ coef, float lr, float mu, float wd,
                                       float lr_wd, int decoupled, int momentum, int nesterov) {
    SgdEntry e = entries[blockIdx.y];
    float k = coef[0];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < e.n; i += (long long)gridDim.x * blockDim.x) {
        float w0 = e.w[i];
        float gd = decayed(__fmul_rn(e.g[i], k), w0, wd, decoupled);
        float v = 0.0f;
        if (momentum) {
            v = __fadd_rn(__fmul_rn(e.v[i], mu), gd);
            e.v[i] = v;
        }
        float u = !momentum ? gd : nesterov ? __fadd_rn(gd, __fmul_rn(v, mu)) : v;
        float next = __fsub_rn(w0, __fmul_rn(u, lr));
        if (wd > 0.0f && decoupled) next = __fsub_rn(next, __fmul_rn(w0, lr_wd));
        e.w[i] = next;
    }
}
