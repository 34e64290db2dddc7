// One SGD step with momentum (heavy-ball or Nesterov) and weight decay, in
// place, in the same float operations and order as the CPU loop of
// src/ops/kernels/sgd.rs (explicit _rn intrinsics: no contraction into FMAs), so a GPU
// step equals a CPU step bit for bit. The velocity is updated first, then the
// weight reads it:
//   g' = g + wd w             (L2 decay; skipped when decoupled)
//   v  = mu v + g'
//   w  = w - lr u,  u = g' + mu v (Nesterov), v (heavy ball), g' (no momentum)
//   w  = w - (lr wd) w_old    (decoupled decay; lr wd rounded once, on the host)

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
