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

// Fused self-attention for short sequences. qkv is [tokens x 3h] (query, key, value blocks,
// biases added); ctx is [tokens x h]. Grid: (query groups, heads, sequences); each warp owns
// one query row: its scores over all keys of its sequence live in shared memory (max_len
// floats per warp), softmax with warp reductions, then lane d accumulates output dims d,
// d+32, ... Twin: the per-head matmul + ops::softmax + matmul in encoder/src/native.rs.
extern "C" __global__ void attention(const half_t* qkv, half_t* ctx, const int* offsets, const int* lens, int h,
                                     int head_dim, int max_len, float scale) {
    extern __shared__ float smem[];
    int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int head = blockIdx.y, seq = blockIdx.z;
    int len = lens[seq], off = offsets[seq];
    int query = blockIdx.x * warps + warp;
    if (query >= len) return;
    float* scores = smem + warp * (max_len + head_dim);
    float* q = scores + max_len;
    size_t stride = 3 * (size_t)h;
    const half_t* qrow = qkv + (size_t)(off + query) * stride + head * head_dim;
    for (int d = lane; d < head_dim; d += 32) q[d] = h2f(qrow[d]) * scale;
    __syncwarp();
    float m = -1e30f;
    for (int j = lane; j < len; j += 32) {
        const half_t* k = qkv + (size_t)(off + j) * stride + h + head * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; ++d) s += q[d] * h2f(k[d]);
        scores[j] = s;
        m = fmaxf(m, s);
    }
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
        float e = __expf(scores[j] - m);
        scores[j] = e;
        sum += e;
    }
    float inv = 1.0f / warp_sum(sum);
    __syncwarp();
    half_t* out = ctx + (size_t)(off + query) * h + head * head_dim;
    for (int d = lane; d < head_dim; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < len; ++j) acc += scores[j] * h2f(qkv[(size_t)(off + j) * stride + 2 * h + head * head_dim + d]);
        out[d] = f2h(acc * inv);
    }
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
