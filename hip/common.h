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
