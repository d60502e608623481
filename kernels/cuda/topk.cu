// Dot-product scores of every row of an n x d row-major matrix with one query.
// One warp per row: lanes stride over the columns, then a shuffle reduction.
extern "C" __global__ void dot_scores(const float* __restrict__ matrix,
                                      const float* __restrict__ query,
                                      float* __restrict__ scores,
                                      int n, int d) {
    const int warps_per_block = blockDim.x / 32;
    const int row = blockIdx.x * warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n) return;
    const float* r = matrix + (size_t)row * d;
    float acc = 0.0f;
    for (int c = lane; c < d; c += 32) acc += r[c] * query[c];
    for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffff, acc, off);
    if (lane == 0) scores[row] = acc;
}
