"""Kernel runtimes: where the kernels of hip/ are compiled and launched.

A runtime has an array module ``xp`` (cupy or numpy) and ``load(source, defines)``,
which returns a compiled module whose functions are called like CuPy's RawKernel:

    fn = runtime.load("gemm_blocked.hip", {"TILE": 16}).get_function("gemm_blocked")
    fn(grid, block, (a, b, c, np.int32(m), np.int32(n), np.int32(k)))

The launch code in experiments/conv is written once against this interface; the gpu
and emulator runtimes differ only in the module loader.
"""
