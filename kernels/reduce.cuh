// A block's sum of one double per thread, in shared memory the launch sizes
// at blockDim.x doubles (blockDim.x a power of two); every thread gets the total.
#pragma once

extern __shared__ double block_partial[];

__device__ __forceinline__ double block_sum(double v) {
    block_partial[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) block_partial[threadIdx.x] += block_partial[threadIdx.x + s];
        __syncthreads();
    }
    double total = block_partial[0];
    __syncthreads();
    return total;
}
