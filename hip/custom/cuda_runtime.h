// A user's kernel file may #include <cuda_runtime.h>: a host header that NVRTC cannot compile and the
// emulator does not have, so it is convbench's prelude there. nvcc (a student's own build) gets the real one.
#pragma once
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(CONVBENCH_EMULATOR)
#include_next <cuda_runtime.h>
#else
#include "convbench_custom.h"
#endif
