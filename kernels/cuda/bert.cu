// The non-GEMM kernels of Sousuo's CUDA BERT forward pass (the GEMMs go through cuBLAS).
//
// Activations are packed (no padding): row r of a [tokens x width] matrix is one token of one
// sequence; `offsets[s]` is the first row of sequence s and `lens[s]` its length. Storage is
// f16 (as raw 16-bit words, so NVRTC needs no headers), arithmetic is f32. Each kernel has a
// CPU twin in `kernels/src/ops.rs` (see docs/gpu.md for the pairs).

typedef unsigned short half_t;

__device__ __forceinline__ float h2f(half_t h) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ half_t f2h(float f) {
    half_t h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v, float* shared32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    float t = lane < warps ? shared32[lane] : 0.0f;
    return warp_sum(t);
}

// LayerNorm of one row held in `row` (f32, shared memory), written as f16 to `out`.
__device__ void layer_norm_row(const float* row, int h, const float* gamma, const float* beta, float eps,
                               half_t* out, float* shared32) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) s += row[i];
    float mean = block_sum(s, shared32) / h;
    float d2 = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float d = row[i] - mean;
        d2 += d * d;
    }
    float inv = rsqrtf(block_sum(d2, shared32) / h + eps);
    for (int i = threadIdx.x; i < h; i += blockDim.x) out[i] = f2h((row[i] - mean) * inv * gamma[i] + beta[i]);
}

// One block per token: word + position + token-type-0 embeddings, then LayerNorm.
// Twin: the embedding sum in encoder/src/native.rs + ops::layer_norm.
extern "C" __global__ void embed_layer_norm(const unsigned int* ids, const unsigned int* positions,
                                            const half_t* word, const half_t* position, const half_t* type0,
                                            const float* gamma, const float* beta, half_t* out, int h, float eps) {
    extern __shared__ float row[];
    __shared__ float shared32[32];
    int t = blockIdx.x;
    size_t w = (size_t)ids[t] * h, p = (size_t)positions[t] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) row[i] = h2f(word[w + i]) + h2f(position[p + i]) + h2f(type0[i]);
    __syncthreads();
    layer_norm_row(row, h, gamma, beta, eps, out + (size_t)t * h, shared32);
}

// x[r, c] += bias[c] over a [rows x cols] matrix. Twin: ops::add_bias.
extern "C" __global__ void add_bias(half_t* x, const float* bias, int cols, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        x[i] = f2h(h2f(x[i]) + bias[i % cols]);
}

// x[r, c] = gelu(x[r, c] + bias[c]), the erf GELU. Twin: ops::bias_gelu.
extern "C" __global__ void bias_gelu(half_t* x, const float* bias, int cols, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        float v = h2f(x[i]) + bias[i % cols];
        x[i] = f2h(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}

// One block per row: out = LayerNorm(x + bias + residual). `out` may equal `residual`.
// Twin: ops::bias_residual_layer_norm.
extern "C" __global__ void bias_residual_layer_norm(const half_t* x, const half_t* residual, const float* bias,
                                                    const float* gamma, const float* beta, half_t* out, int h,
                                                    float eps) {
    extern __shared__ float row[];
    __shared__ float shared32[32];
    size_t base = (size_t)blockIdx.x * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) row[i] = h2f(x[base + i]) + bias[i] + h2f(residual[base + i]);
    __syncthreads();
    layer_norm_row(row, h, gamma, beta, eps, out + base, shared32);
}

// Fused self-attention, tiled as in FlashAttention. qkv is [tokens x 3h] (query, key, value
// blocks, biases added); ctx is [tokens x h]. Grid: (query tiles, heads, sequences); each
// thread owns one query row, its scaled query and its output accumulator in registers
// (ATT_HEAD_DIM floats each: the host prepends the model's head width as a #define before
// compiling). The block walks its sequence's keys in tiles of ATT_TILE rows staged in shared
// memory, read once per block and broadcast to every thread; per tile a thread scores the
// keys, rescales its accumulator once (online softmax: running max m, running sum l), and
// adds the weighted values. Twin: the per-head matmul + ops::softmax + matmul in
// encoder/src/native.rs.
#ifndef ATT_HEAD_DIM
#define ATT_HEAD_DIM 32
#endif
#define ATT_TILE 32
extern "C" __global__ void attention(const half_t* qkv, half_t* ctx, const int* offsets, const int* lens, int h,
                                     float scale) {
    __shared__ float ks[ATT_TILE][ATT_HEAD_DIM];
    __shared__ float vs[ATT_TILE][ATT_HEAD_DIM];
    int head = blockIdx.y, seq = blockIdx.z;
    int len = lens[seq], off = offsets[seq];
    int first = blockIdx.x * blockDim.x;
    if (first >= len) return;  // the whole block leaves together
    int query = first + threadIdx.x;
    bool live = query < len;
    size_t stride = 3 * (size_t)h;
    float q[ATT_HEAD_DIM], acc[ATT_HEAD_DIM];
    const half_t* qrow = qkv + (size_t)(off + (live ? query : first)) * stride + head * ATT_HEAD_DIM;
#pragma unroll
    for (int d = 0; d < ATT_HEAD_DIM; ++d) {
        q[d] = h2f(qrow[d]) * scale;
        acc[d] = 0.0f;
    }
    float m = -1e30f, l = 0.0f;
    for (int t = 0; t < len; t += ATT_TILE) {
        int n = min(ATT_TILE, len - t);
        __syncthreads();  // the previous tile is consumed
        for (int e = threadIdx.x; e < ATT_TILE * ATT_HEAD_DIM; e += blockDim.x) {
            int j = e / ATT_HEAD_DIM, d = e - j * ATT_HEAD_DIM;
            float kv = 0.0f, vv = 0.0f;
            if (j < n) {
                const half_t* row = qkv + (size_t)(off + t + j) * stride + head * ATT_HEAD_DIM + d;
                kv = h2f(row[h]);
                vv = h2f(row[2 * h]);
            }
            ks[j][d] = kv;
            vs[j][d] = vv;
        }
        __syncthreads();
        float s[ATT_TILE];
        float tmax = -1e30f;
#pragma unroll
        for (int j = 0; j < ATT_TILE; ++j) {
            float dot = 0.0f;
#pragma unroll
            for (int d = 0; d < ATT_HEAD_DIM; ++d) dot += q[d] * ks[j][d];
            s[j] = j < n ? dot : -1e30f;
            tmax = fmaxf(tmax, s[j]);
        }
        float mn = fmaxf(m, tmax);
        float corr = __expf(m - mn);
        l *= corr;
#pragma unroll
        for (int d = 0; d < ATT_HEAD_DIM; ++d) acc[d] *= corr;
#pragma unroll
        for (int j = 0; j < ATT_TILE; ++j) {
            float p = j < n ? __expf(s[j] - mn) : 0.0f;
            l += p;
#pragma unroll
            for (int d = 0; d < ATT_HEAD_DIM; ++d) acc[d] += p * vs[j][d];
        }
        m = mn;
    }
    if (!live) return;
    half_t* out = ctx + (size_t)(off + query) * h + head * ATT_HEAD_DIM;
    float inv = 1.0f / l;
#pragma unroll
    for (int d = 0; d < ATT_HEAD_DIM; ++d) out[d] = f2h(acc[d] * inv);
}

// One block per sequence: the mean of its rows (or its first row, when `cls` is set),
// L2-normalised, as f32. Twin: ops::mean_pool_l2.
extern "C" __global__ void pool_l2(const half_t* x, const int* offsets, const int* lens, float* out, int h, int cls) {
    extern __shared__ float row[];
    __shared__ float shared32[32];
    int s = blockIdx.x, off = offsets[s], len = cls ? 1 : lens[s];
    float sq = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float acc = 0.0f;
        for (int r = 0; r < len; ++r) acc += h2f(x[(size_t)(off + r) * h + i]);
        acc /= (float)(len > 0 ? len : 1);
        row[i] = acc;
        sq += acc * acc;
    }
    float inv = 1.0f / fmaxf(sqrtf(block_sum(sq, shared32)), 1e-12f);
    for (int i = threadIdx.x; i < h; i += blockDim.x) out[(size_t)s * h + i] = row[i] * inv;
}
