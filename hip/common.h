// The common subset of HIP and CUDA that every kernel in hip/ is written in.
//
// One source, three compilers:
//   NVIDIA  NVRTC (through CuPy) or nvcc          -> nothing to include
//   AMD     hiprtc (through CuPy) or hipcc         -> hip_runtime.h outside RTC
//   CPU     g++ with -DCONVBENCH_EMULATOR          -> emulator/hip_cpu.h
// Kernels use only what all three provide: threadIdx/blockIdx/blockDim/gridDim,
// __shared__ arrays of compile-time size, __syncthreads(), fmaf, min/max.
// No warp intrinsics: their names and widths differ (warp 32 vs wavefront 64).
#pragma once

#if defined(CONVBENCH_EMULATOR)
#include "emulator/hip_cpu.h"
#elif (defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)) && !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif

// Every kernel is extern "C" so that CuPy (and the emulator) find it by its plain name.
#define KERNEL extern "C" __global__

// Half-precision storage (__half), only for kernels that define CONVBENCH_HALF before including
// this header, so that the float32 kernels see nothing of it. Each compiler gets __half,
// __half2float and __float2half_rn (round to nearest even, as numpy's astype(float16)):
//   emulator  hip_cpu.h (_Float16)
//   hipcc     hip/hip_fp16.h; hiprtc predefines them
//   nvcc      cuda_fp16.h; NVRTC has no include path for it by default (CuPy may add one), so
//             without it a 16-bit storage type with the two PTX conversions is defined here
#if defined(CONVBENCH_HALF) && !defined(CONVBENCH_EMULATOR)
#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC_RTC__)
#if !defined(__HIPCC_RTC__)
#include <hip/hip_fp16.h>
#endif
#elif defined(__has_include)
#if __has_include(<cuda_fp16.h>)
#include <cuda_fp16.h>
#define CONVBENCH_CUDA_FP16_HEADER 1
#endif
#endif
#if !defined(__HIPCC__) && !defined(__HIP_PLATFORM_AMD__) && !defined(__HIPCC_RTC__) \
    && !defined(CONVBENCH_CUDA_FP16_HEADER)
struct __align__(2) __half { unsigned short x; };
__device__ __forceinline__ float __half2float(const __half h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
    return f;
}
__device__ __forceinline__ __half __float2half_rn(const float f)
{
    __half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
    return h;
}
#endif
#endif

// n / d for a divisor d fixed at launch, without a division instruction (an integer division is a
// ~20-instruction sequence on NVIDIA, a subroutine call for 64 bits; this is one multiply-high, an
// add and a shift). The host passes mul and shift (experiments.conv.kernel_launch.divisor, after
// Granlund & Montgomery, "Division by invariant integers using multiplication", 1994):
//   shift = ceil(log2 d), mul = floor(2^32 * (2^shift - d) / d) + 1;  exact for 0 <= n < 2^31.
__device__ __forceinline__ unsigned fast_div(unsigned n, unsigned mul, unsigned shift)
{
    return (__umulhi(n, mul) + n) >> shift;
}
