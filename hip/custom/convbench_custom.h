// The prelude of a user's GEMM kernel file (gemm=custom, docs/your-kernel.md): included before the file
// on every path, so that the file needs no include of its own and compiles wherever hip/ does:
//   NVIDIA  NVRTC through CuPy    AMD  hiprtc through CuPy    CPU  g++ (the emulator)
// CONVBENCH is defined, so host code in the file (a PA1 main, hipMalloc, #include <stdio.h>) is skipped
// where it sits inside #ifndef CONVBENCH ... #endif. The file may still #include <hip/hip_runtime.h> or
// <cuda_runtime.h>: this directory is first on the include path and holds stand-ins for both.
#pragma once
#ifndef CONVBENCH
#define CONVBENCH 1
#endif
#include "../common.h"
