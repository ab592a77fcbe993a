// A user's kernel file may #include <hip/hip_runtime.h>: on NVIDIA (NVRTC) and in the emulator that header
// does not exist, and hiprtc predefines what it holds, so it is convbench's prelude there. hipcc outside
// run-time compilation (a student's own build) gets the real header.
#pragma once
#if (defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)) && !defined(__HIPCC_RTC__) && !defined(CONVBENCH_EMULATOR)
#include_next <hip/hip_runtime.h>
#else
#include "../convbench_custom.h"
#endif
