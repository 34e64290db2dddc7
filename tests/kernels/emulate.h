// Lets the CUDA kernels in kernels/ compile as plain C++ so their index
// arithmetic can be checked on a machine without a GPU: one thread per block,
// blocks run one after another (tests/kernels_emulated.rs).
#pragma once
#include <algorithm>
#include <cmath>
using std::max;
using std::min;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__
#define __syncthreads() ((void)0)
struct Dim { unsigned x = 0, y = 0, z = 0; };
inline Dim blockIdx, threadIdx, blockDim, gridDim;
// Round-to-nearest float arithmetic, as the kernels spell it to keep the
// compiler from contracting into FMAs.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
