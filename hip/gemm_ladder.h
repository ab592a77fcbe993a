// gemm_ladder.h: the pieces that rungs 2 to 6 of the GEMM ladder share (hip/gemm_<n>_*.hip).
//
// Every rung computes C[b] = A[b % groups] * B[b] (float32, row-major, any M, N, K), like rung 1,
// gemm_1_blocked.hip. THREADS_PER_SIDE is the side of the thread block in threads (THREADS_PER_SIDE^2
// threads, the parameter the course sweeps as gemm.tile); from rung 2 on each thread owns a TM x TN
// thread tile of C, so one block owns a BM x BN block tile and walks K in slices of BK:
//
//   side   threads   thread tile  block tile   why
//   8      64        8 x 8        64 x 64
//   16     256       8 x 8        128 x 128
//   32     1024      4 x 4        128 x 128    1024 threads leave 64 registers each: 8 x 8 would spill
//
//            BK                      BN
//          +----+              +-----------+
//          |    |  As[BK][BM]  | Bs[BK][BN]|  one K slice in shared memory; A stored transposed,
//       BM | A  |  (transposed)+-----------+  so that both operands are read along their rows
//          |    |              +-----------+
//          +----+           BM |  C tile   |  thread: TM/4 x TN/4 groups of 4 x 4, each group
//                              |  BM x BN  |  read from shared memory as float4 (LDS.128)
//                              +-----------+
//
// The building blocks, each used by several rungs:
//   SliceLoads     one thread's share of the next K slice of A and B: global -> registers
//                  (float4 where the operand is 16-byte aligned along its rows, scalar otherwise),
//                  then registers -> shared memory
//   multiply_slice the micro-kernel: per k of the slice, TM/4 + TN/4 LDS.128 and TM*TN FFMA
//   store_tile     the micro-tile to C (float4 stores where aligned), bounds-checked
//   Origin         where a thread's micro-tile lies in the block tile: thread tiling (rungs 2-3)
//                  or warp tiling (rungs 4-6)
// Out-of-range elements are loaded as 0 and never stored: that is what makes any M, N, K correct.
#pragma once
#include "common.h"

// The shapes come from the host, one source for both sides: experiments/conv/ladder.py passes them
// as -D defines from its rung table (RUNGS, BlockShape.defines()).
#if !defined(THREADS_PER_SIDE) || !defined(THREAD_TILE) || !defined(BLOCK_TILE) || !defined(SLICE_K)
#error "gemm_ladder.h: THREADS_PER_SIDE, THREAD_TILE, BLOCK_TILE and SLICE_K come from the host (experiments/conv/ladder.py)"
#endif
#define LADDER_THREADS (THREADS_PER_SIDE * THREADS_PER_SIDE)
#define TM THREAD_TILE
#define TN THREAD_TILE
#define BM BLOCK_TILE
#define BN BLOCK_TILE
#define BK SLICE_K
static_assert(BLOCK_TILE == THREADS_PER_SIDE * THREAD_TILE, "a block tile is the threads per side times the thread tile");
static_assert(THREAD_TILE % 4 == 0, "thread tiles are read from shared memory in groups of 4 x 4");
// Blocks per SM that the compiler must leave room for (rungs 2-4): at 16 threads per side two blocks (16 warps
// on an H100) cap a thread at 128 registers, which rungs 2-4 fit without spilling (rungs 5 and 6
// would spill: their split and folded-column state needs a few more). NVIDIA only: HIP reads the
// second argument of __launch_bounds__ as waves per execution unit, where 1 asks for nothing.
#if THREADS_PER_SIDE == 16 && !defined(__HIPCC__) && !defined(__HIP_PLATFORM_AMD__) && !defined(__HIPCC_RTC__)
#define LADDER_MIN_BLOCKS 2
#else
#define LADDER_MIN_BLOCKS 1
#endif
#define A_PAD 4  // As rows are BM + 4 floats: the transposed store is free of bank conflicts, rows stay 16-byte aligned

// Each thread loads BM*BK/THREADS elements of each operand per slice, VEC at a time.
#define SLICE_ELEMS (BM * BK / LADDER_THREADS)
#define VEC (SLICE_ELEMS >= 4 ? 4 : 1)
#define SLICE_LOADS (SLICE_ELEMS / VEC)
static_assert(BM == BN && SLICE_ELEMS * LADDER_THREADS == BM * BK, "the ladder's tiles divide evenly");
static_assert(LADDER_THREADS % (BN / VEC) == 0, "a thread loads the same columns of B in every slot");

// Warp tiling: WARP_LANES threads are laid out LANE_ROWS x LANE_COLS inside their warp's tile. The
// layout is fixed at 32 lanes (an NVIDIA warp); on AMD a 64-wide wavefront covers two such warp
// tiles side by side: correct for any hardware width, laid out for 32.
#define WARP_LANES 32
#define LANE_ROWS 4
#define LANE_COLS 8
#define WARP_TILE_M (LANE_ROWS * TM)
#define WARP_TILE_N (LANE_COLS * TN)
#define WARPS_N (BN / WARP_TILE_N)
static_assert(LADDER_THREADS % WARP_LANES == 0 && (BM / WARP_TILE_M) * WARPS_N == LADDER_THREADS / WARP_LANES,
              "the warp tiles cover the block tile");

typedef float ASlice[BK][BM + A_PAD];
typedef float BSlice[BK][BN];

// Where a thread's micro-tile lies in the block tile: rows row + p*row_step + (0..3), p < TM/4,
// and columns col + q*col_step + (0..3), q < TN/4.
struct Origin {
    int row, col, row_step, col_step;
};

// Thread tiling: thread (tx, ty) of the THREADS_PER_SIDE^2 block. A warp (32 consecutive threads) spans
// 32/THREADS_PER_SIDE thread rows: at 16, 2 x 16 threads read 2 distinct float4 of As and 16 of Bs.
__device__ __forceinline__ Origin thread_tile_origin(int t)
{
    return Origin{(t / THREADS_PER_SIDE) * 4, (t % THREADS_PER_SIDE) * 4, THREADS_PER_SIDE * 4, THREADS_PER_SIDE * 4};
}

// Warp tiling: warp w owns a WARP_TILE_M x WARP_TILE_N tile, its 32 lanes a LANE_ROWS x LANE_COLS
// grid of micro-tiles within it: a warp reads 4 distinct float4 of As and 8 of Bs (128 bytes, one
// shared-memory wavefront) per k instead of 2 + 16.
__device__ __forceinline__ Origin warp_tile_origin(int t)
{
    const int warp = t / WARP_LANES, lane = t % WARP_LANES;
    const int row = (warp / WARPS_N) * WARP_TILE_M + (lane / LANE_COLS) * 4;
    const int col = (warp % WARPS_N) * WARP_TILE_N + (lane % LANE_COLS) * 4;
    return Origin{row, col, LANE_ROWS * 4, LANE_COLS * 4};
}

__device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0;
}

// VEC consecutive floats from p, of which the first `valid` exist (0 <= valid <= VEC): one 128-bit
// load when vec and all exist, else scalar loads, zeros beyond.
__device__ __forceinline__ void load_vec(float* out, const float* p, int valid, bool vec)
{
#if VEC == 4
    if (vec && valid == 4) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
        return;
    }
#endif
    for (int v = 0; v < VEC; ++v) out[v] = v < valid ? p[v] : 0.0f;
}

// One thread's share of a K slice: slot s covers element group e = t + s*THREADS, i.e. row
// e / (BK/VEC), k (e % (BK/VEC))*VEC of A's slice, and k row e / (BN/VEC), column group
// e % (BN/VEC) of B's slice. The B column group is the same in every slot and slice, so its global
// offset is worked out once (b_cols). Rungs 2-5 keep one offset (the group's columns are contiguous);
// rung 6 defines LADDER_FOLDED_COLUMNS before including this header and keeps one per element, since a
// group's columns may lie in different images. (One 64-bit offset instead of VEC keeps rungs 3 and 4
// within the 128 registers of LADDER_MIN_BLOCKS 2 under NVRTC: with four they spilled.)
struct SliceLoads {
    const float* a_rows[SLICE_LOADS];  // A's row of each slot, at column 0 (row clamped to 0 when past M)
    bool a_row_ok[SLICE_LOADS];
    int a_k;                           // k of this thread's A group within a slice
#ifdef LADDER_FOLDED_COLUMNS
    long long b_cols[VEC];             // global offset of each B column of this thread (row 0)
#else
    long long b_cols[1];               // global offset of the first B column of this thread (row 0)
#endif
    int b_valid;                       // how many of them exist
    int b_k;                           // first k row of this thread's B group within a slice
    int b_n;                           // column of the group within the block tile
    bool vec_a, vec_b;
    float a[SLICE_LOADS][VEC], b[SLICE_LOADS][VEC];

    // Global -> registers: the slice starting at k0.
    __device__ __forceinline__ void fetch(const float* B, int K, int N, int k0)
    {
        for (int s = 0; s < SLICE_LOADS; ++s) {
            const int k = k0 + a_k;
            const int valid = a_row_ok[s] ? min(max(K - k, 0), VEC) : 0;
            load_vec(a[s], a_rows[s] + k, valid, vec_a);
            const int kb = k0 + b_k + s * (LADDER_THREADS / (BN / VEC));
#ifdef LADDER_FOLDED_COLUMNS
            if (!vec_b && VEC > 1) {  // columns of one group may lie in different images (N % 4 != 0)
                for (int v = 0; v < VEC; ++v) b[s][v] = (kb < K && v < b_valid) ? B[(long long)kb * N + b_cols[v]] : 0.0f;
                continue;
            }
#endif
            load_vec(b[s], B + (long long)kb * N + b_cols[0], kb < K ? b_valid : 0, vec_b);
        }
    }

    // Registers -> shared memory: A transposed (four scalar stores), B as it is (one 128-bit store).
    __device__ __forceinline__ void store(ASlice& As, BSlice& Bs, int t) const
    {
        for (int s = 0; s < SLICE_LOADS; ++s) {
            const int e = t + s * LADDER_THREADS;
            const int row = e / (BK / VEC);
            for (int v = 0; v < VEC; ++v) As[a_k + v][row] = a[s][v];
            const int kb = e / (BN / VEC);
#if VEC == 4
            *reinterpret_cast<float4*>(&Bs[kb][b_n]) = make_float4(b[s][0], b[s][1], b[s][2], b[s][3]);
#else
            Bs[kb][b_n] = b[s][0];
#endif
        }
    }
};

// The A side of the loads (the same in every rung): rows row0 + e / (BK/VEC) of the A matrix `A`.
__device__ __forceinline__ void setup_a_loads(SliceLoads& loads, const float* A, int M, int K, int row0, int t)
{
    loads.vec_a = VEC == 4 && K % 4 == 0 && aligned16(A);
    loads.a_k = (t % (BK / VEC)) * VEC;
    for (int s = 0; s < SLICE_LOADS; ++s) {
        const int row = row0 + (t + s * LADDER_THREADS) / (BK / VEC);
        loads.a_row_ok[s] = row < M;
        loads.a_rows[s] = A + (long long)(row < M ? row : 0) * K;
    }
}

// The B side for one matrix per blockIdx.z (rungs 2-5): columns col0 + b_n + v of `B`.
__device__ __forceinline__ void setup_b_loads(SliceLoads& loads, const float* B, int N, int col0, int t)
{
    loads.vec_b = VEC == 4 && N % 4 == 0 && aligned16(B);
    loads.b_n = (t % (BN / VEC)) * VEC;
    loads.b_k = t / (BN / VEC);
    const int col = col0 + loads.b_n;
    loads.b_valid = min(max(N - col, 0), VEC);
    loads.b_cols[0] = col;
}

// The micro-kernel: for each k of the slice, the thread's TM values of A and TN values of B as
// float4 loads from shared memory (TM/4 + TN/4 LDS.128), then TM*TN fused multiply-adds.
__device__ __forceinline__ void multiply_slice(const ASlice& As, const BSlice& Bs, const Origin& o,
                                               float (&acc)[TM][TN])
{
#pragma unroll
    for (int k = 0; k < BK; ++k) {
        float a[TM], b[TN];
#pragma unroll
        for (int p = 0; p < TM / 4; ++p) {
            const float4 v = *reinterpret_cast<const float4*>(&As[k][o.row + p * o.row_step]);
            a[4 * p] = v.x; a[4 * p + 1] = v.y; a[4 * p + 2] = v.z; a[4 * p + 3] = v.w;
        }
#pragma unroll
        for (int q = 0; q < TN / 4; ++q) {
            const float4 v = *reinterpret_cast<const float4*>(&Bs[k][o.col + q * o.col_step]);
            b[4 * q] = v.x; b[4 * q + 1] = v.y; b[4 * q + 2] = v.z; b[4 * q + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

// The double-buffered main loop over the slices [k_begin, k_end) (rungs 3-6): while the block
// multiplies slice i from one shared buffer, each thread's loads of slice i+1 are already in flight
// into registers; they are stored into the other buffer after the multiply, so a slice costs one
// barrier instead of two and the global-memory latency hides behind TM*TN*BK FMAs.
__device__ __forceinline__ void double_buffered_loop(SliceLoads& loads, const float* B, int K, int N,
                                                     int k_begin, int k_end, const Origin& o, int t,
                                                     ASlice (&As)[2], BSlice (&Bs)[2], float (&acc)[TM][TN])
{
    if (k_begin >= k_end) return;
    loads.fetch(B, K, N, k_begin);
    loads.store(As[0], Bs[0], t);
    __syncthreads();
    int buffer = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;  // the same for every thread: the barrier below is uniform
        if (more) loads.fetch(B, K, N, k0 + BK);
        multiply_slice(As[buffer], Bs[buffer], o, acc);
        if (more) loads.store(As[buffer ^ 1], Bs[buffer ^ 1], t);
        __syncthreads();  // the other buffer is complete, and nobody reads this one any more
        buffer ^= 1;
    }
}

__device__ __forceinline__ void zero(float (&acc)[TM][TN])
{
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
}

// The micro-tile to C (leading dimension N) at block tile (row0, col0): float4 stores when a row of
// 4 lies inside C and C is 16-byte aligned along its rows, scalar ones at the edges.
__device__ __forceinline__ void store_tile(float* C, int M, int N, int row0, int col0, const Origin& o,
                                           const float (&acc)[TM][TN])
{
    const bool vec = N % 4 == 0 && aligned16(C);
    for (int i = 0; i < TM; ++i) {
        const int m = row0 + o.row + (i / 4) * o.row_step + i % 4;
        if (m >= M) continue;
        float* c_row = C + (long long)m * N;
        for (int q = 0; q < TN / 4; ++q) {
            const int n = col0 + o.col + q * o.col_step;
            const float* v = &acc[i][4 * q];
            if (vec && n + 3 < N) {
                *reinterpret_cast<float4*>(c_row + n) = make_float4(v[0], v[1], v[2], v[3]);
            } else {
                for (int j = 0; j < 4; ++j)
                    if (n + j < N) c_row[n + j] = v[j];
            }
        }
    }
}
