"""Launch code for the hip/ kernels, written once for every runtime and every precision.

The gpu runtime hands CuPy arrays to kernels compiled by NVRTC/hiprtc, the emulator hands
numpy arrays to the same kernels compiled by g++; this module cannot tell them apart.
Geometry comes from experiments.conv.geometry; the launch shapes mirror the comment at the
top of each kernel file.

Precision is a parameter of the launch, not a second engine: fp32, fp16 and int8 run the same
algorithm functions below with the same grids and blocks; the operand's dtype picks the kernel
(``_KERNELS``), and int8 adds the conversion kernels around the GEMM (hip/quantize.hip). What
the precisions compute (scales, rounding) is experiments/conv/lowp.py's.
"""
from __future__ import annotations

import numpy as np

from . import custom, ladder, vendor_lowp
from .geometry import ConvGeometry
from .lowp import LowpFilter, activation_scale, round_trip
from .sparse import CsrFilter
from .variant import CUSTOM, Variant

from .grid import GRID_STRIDE_MAX_BLOCKS, MAX_GRID_Y, MAX_GRID_Z, ceil_div   # the kernels grid-stride over what exceeds y

# The launch shapes of every kernel, defined here only: each source gets them as -D defines
# (SOURCE_DEFINES, kernel_defines), so a kernel and its launch cannot disagree.
ELEMENTWISE_THREADS = 256  # threads per block of im2col, the shift-add and the conversions
ELEMENTWISE_OUTPUTS = 4    # outputs per thread of im2col and the shift-add (one float4)
# The float32 GEMM is a rung of the ladder (experiments/conv/ladder.py, Variant.rung). The fp16/int8
# GEMMs (hip/gemm_lowp.hip) have rung 1's block shape: Variant.tile threads per side, a 4 x 4 thread
# tile, so a block tile of 32 x 32, 64 x 64 or 128 x 128 at 8, 16 or 32 threads per side.
LOWP_GEMM_RUNG = ladder.BY_NAME["blocked"]
SCALAR_COB = 16           # output channels per thread of scalar_conv
SCALAR_COBS = (4, 8, 16)  # compiled variants: a grouped layer with few channels per group takes the smallest that fits
SCALAR_PIXELS = 128       # threads per block of scalar_conv, one output pixel each
DEPTHWISE_THREADS = 256   # threads per block of depthwise_conv
DEPTHWISE_OUTPUTS = 4     # outputs per thread of depthwise_conv
SPMM_LANES, SPMM_ROWS, SPMM_CPT = 32, 8, 4   # spmm_csr's block (SPMM_LANES x SPMM_ROWS) and columns per thread

_ELEMENTWISE = {"ELEMENTWISE_THREADS": ELEMENTWISE_THREADS, "ELEMENTWISE_OUTPUTS": ELEMENTWISE_OUTPUTS}
_SCALAR = {"SCALAR_PIXELS": SCALAR_PIXELS}
SOURCE_DEFINES = {   # the launch constants of each non-GEMM source (the GEMMs': their BlockShape)
    "im2col.hip": _ELEMENTWISE, "im2col_lowp.hip": _ELEMENTWISE, "kn2row_shift_add.hip": _ELEMENTWISE,
    "scalar_conv.hip": _SCALAR, "scalar_conv_lowp.hip": _SCALAR,
    "depthwise_conv.hip": {"DEPTHWISE_THREADS": DEPTHWISE_THREADS, "DEPTHWISE_OUTPUTS": DEPTHWISE_OUTPUTS},
    "spmm_csr.hip": {"SPMM_LANES": SPMM_LANES, "SPMM_ROWS": SPMM_ROWS, "SPMM_CPT": SPMM_CPT},
    "quantize.hip": {},   # grid-stride loops over blockDim: no shape to share
}

# (primitive, operand dtype) -> (source, kernel); each computes in its operand's precision (the float32
# GEMM: the variant's rung of the ladder)
_KERNELS = {
    ("gemm", "float16"): ("gemm_lowp.hip", "gemm_blocked_fp16"),
    ("gemm", "int8"): ("gemm_lowp.hip", "gemm_blocked_int8"),
    ("im2col", "float32"): ("im2col.hip", "im2col"),
    ("im2col", "float16"): ("im2col_lowp.hip", "im2col_fp16"),
    ("im2col", "int8"): ("im2col_lowp.hip", "im2col_int8"),
    ("scalar", "float32"): ("scalar_conv.hip", "scalar_conv"),
    ("scalar", "float16"): ("scalar_conv_lowp.hip", "scalar_conv_fp16"),
    ("scalar", "int8"): ("scalar_conv_lowp.hip", "scalar_conv_int8"),
}


def kernel_defines(source: str, threads_per_side: int = 16, cob: int = SCALAR_COB) -> dict[str, int]:
    """Every -D define ``source`` (a hip/ file name) is built with: a GEMM's block shape at
    ``threads_per_side``, scalar_conv's ``cob``, the other kernels' launch constants. What the compile
    checks, the kernel report and the launches below all use; KeyError for a file that is no kernel."""
    by_source = {r.source: r for r in ladder.RUNGS}
    if source in by_source:
        return by_source[source].shape(threads_per_side).defines()
    if source == "gemm_lowp.hip":
        return LOWP_GEMM_RUNG.shape(threads_per_side).defines()
    defines = dict(SOURCE_DEFINES[source])
    if source.startswith("scalar_conv"):
        defines["COB"] = cob
    return defines


def _ints(*values: int) -> tuple:
    return tuple(np.int32(v) for v in values)


def divisor(d: int) -> tuple:
    """(mul, shift) with n // d == (umulhi(n, mul) + n) >> shift for 0 <= n < 2**31: the constants of
    fast_div in hip/common.h, which divides by d without a division instruction."""
    if not 1 <= d < 2**31:
        raise ValueError(f"fast_div: divisor {d} outside 1 .. 2**31 - 1")
    shift = (d - 1).bit_length()
    return np.uint32((2**32 * (2**shift - d)) // d + 1), np.uint32(shift)


def _flat_index_fits(kernel: str, count: int) -> None:
    if count >= 2**31:
        raise ValueError(f"{kernel}: {count} elements per image exceed the kernel's 32-bit index (2**31 - 1)")


def _accumulator(xp, operand):
    """The dtype a kernel accumulates and writes an operand's products in: int32 for int8, else float32."""
    return xp.int32 if operand.dtype == np.int8 else xp.float32


class KernelLauncher:
    """The kernels of one layer's variant (GEMM back-end, tile) on one runtime, at any precision."""

    def __init__(self, runtime, variant: Variant):
        self.runtime, self.xp, self.variant = runtime, runtime.xp, variant

    def _kernel(self, source: str, name: str, **defines: int):
        """Kernel ``name`` of ``source``, built with its launch constants (SOURCE_DEFINES) and ``defines``."""
        return self.runtime.load(source, {**SOURCE_DEFINES.get(source, {}), **defines}).get_function(name)

    def _typed(self, primitive: str, operand, **defines: int):
        source, name = _KERNELS[(primitive, np.dtype(operand.dtype).name)]
        return self._kernel(source, name, **defines)

    def gemm(self, a, b):
        """(M x K) times each (K x N) matrix of b (batch x K x N): batch x M x N, float32 (int32 for int8).

        Grouped: a is G x M x K and each matrix of b is G blocks of K rows (batch x G*K x N);
        group g of each image is multiplied by a[g], all in one launch: batch x G*M x N.
        Sparse: a is a CsrFilter (M x K, block-diagonal over the groups): the CSR SpMM kernel.
        fp16/int8 with gemm=vendor on a GPU: a is the plan's vendor_lowp.PreparedFilter.
        """
        if isinstance(a, CsrFilter):
            return self.spmm(a, b)
        if isinstance(a, vendor_lowp.PreparedFilter):
            return vendor_lowp.gemm(a, b)
        batch, rows, n = b.shape
        groups, m, k = (1, *a.shape) if a.ndim == 2 else a.shape
        if self.variant.gemm == CUSTOM:      # the user's own kernel file
            return custom.gemm(self.runtime, self.variant.custom, self.variant.tile, a,
                               b.reshape(batch * groups, k, n), groups).reshape(batch, groups * m, n)
        if self.variant.gemm != "blocked":   # cuBLAS / hipBLAS on a GPU, BLAS on the CPU
            return self._vendor(a, b, groups)
        if a.dtype == np.float32:
            c = ladder.gemm(self.runtime, self.variant.rung, self.variant.tile, a, b.reshape(batch * groups, k, n),
                            groups)
            return c.reshape(batch, groups * m, n)
        if batch * groups > MAX_GRID_Z:
            raise ValueError(f"gemm_blocked: {batch} images x {groups} groups exceeds the grid's z limit of {MAX_GRID_Z}")
        c = self.xp.empty((batch, groups * m, n), dtype=_accumulator(self.xp, a))
        shape = LOWP_GEMM_RUNG.shape(self.variant.tile)
        kernel = self._typed("gemm", a, **shape.defines())
        side = shape.block_tile
        kernel((ceil_div(n, side), ceil_div(m, side), batch * groups), shape.threads,
               (a, b, c, *_ints(m, n, k, groups), np.int64(m * k), np.int64(k * n), np.int64(m * n)))
        return c

    def _vendor(self, a, b, groups: int):
        """The vendor GEMM at a's precision, batch x (G*M) x N: float32 as it is; half and int8 on a GPU
        through vendor_lowp.py; on the CPU exactly, by float BLAS (lowp.py)."""
        batch, _, n = b.shape
        if a.dtype != np.float32 and self.runtime.is_gpu:   # a direct call: ConvPlan prepares the filter once
            return vendor_lowp.gemm(vendor_lowp.prepare(a), b)
        bg = b if groups == 1 else b.reshape(batch, groups, -1, n)
        if a.dtype == np.float32:
            out = self.xp.matmul(a, bg)
        else:
            wide = np.float64 if a.dtype == np.int8 else np.float32
            out = np.matmul(a.astype(wide), bg.astype(wide))
            out = out.astype(np.int32) if a.dtype == np.int8 else out
        return out.reshape(batch, -1, n)

    def spmm(self, a: CsrFilter, b):
        """The CSR matrix a (M x K) times each (K x N) matrix of b (batch x K x N): batch x M x N."""
        batch, k, n = b.shape
        m = a.shape[0]
        if k != a.shape[1]:
            raise ValueError(f"spmm_csr: a {a.shape[0]} x {a.shape[1]} filter times {k} x {n} matrices")
        if batch > MAX_GRID_Z:
            raise ValueError(f"spmm_csr: a batch of {batch} exceeds the grid's z limit of {MAX_GRID_Z}")
        c = self.xp.empty((batch, m, n), dtype=self.xp.float32)
        kernel = self._kernel("spmm_csr.hip", "spmm_csr")
        kernel((ceil_div(n, SPMM_LANES * SPMM_CPT), ceil_div(m, SPMM_ROWS), batch), (SPMM_LANES, SPMM_ROWS),
               (a.row_ptr, a.col_idx, a.values, b, c, *_ints(m, n), np.int64(k * n), np.int64(m * n)))
        return c

    def im2col(self, x, g: ConvGeometry):
        """N x (C*KH*KW) x (H_o*W_o) columns of the input x (N x C x H x W)."""
        rows, pixels = g.in_channels * g.taps, g.out_h * g.out_w
        _flat_index_fits("im2col", rows * pixels)
        cols = self.xp.empty((g.batch, rows, pixels), dtype=x.dtype)
        kernel = self._typed("im2col", x)
        kernel((ceil_div(pixels, ELEMENTWISE_OUTPUTS * ELEMENTWISE_THREADS), min(rows, MAX_GRID_Y), g.batch), (ELEMENTWISE_THREADS,),
               (x, cols, *_ints(g.in_channels, g.in_h, g.in_w, *g.kernel_args()),
                *divisor(g.out_w), *divisor(g.kernel_w), *divisor(g.taps)))
        return cols

    def shift_add(self, partial, g: ConvGeometry):
        """Sum of kn2row's k*k shifted partial planes (N x F*KH*KW x H*W) into N x F x H_o x W_o."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        kernel = self._kernel("kn2row_shift_add.hip", "kn2row_shift_add")
        kernel((ceil_div(g.out_h * g.out_w, ELEMENTWISE_OUTPUTS * ELEMENTWISE_THREADS), min(g.out_channels, MAX_GRID_Y), g.batch),
               (ELEMENTWISE_THREADS,),
               (partial, out, *_ints(g.out_channels, g.in_h, g.in_w, *g.kernel_args()), *divisor(g.out_w)))
        return out

    def scalar(self, x, w, g: ConvGeometry):
        """Direct scale-and-add convolution of x with the F x C/G x KH x KW filter w (G groups)."""
        out = self.xp.empty(g.output_shape, dtype=_accumulator(self.xp, w))
        per_group = g.group_out_channels
        cob = next((c for c in SCALAR_COBS if c >= per_group), SCALAR_COB) if g.groups > 1 else SCALAR_COB
        kernel = self._typed("scalar", w, COB=cob)
        kernel((ceil_div(g.out_h * g.out_w, SCALAR_PIXELS), g.groups * ceil_div(per_group, cob), g.batch),
               (SCALAR_PIXELS,),
               (x, w, out, *_ints(g.in_channels, g.in_h, g.in_w, g.out_channels, g.groups, *g.kernel_args())))
        return out

    def depthwise(self, x, w, g: ConvGeometry):
        """Direct depthwise convolution (groups == C) of x with the F x 1 x KH x KW filter w."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        plane = g.out_h * g.out_w
        _flat_index_fits("depthwise_conv", g.out_channels * plane)
        kernel = self._kernel("depthwise_conv.hip", "depthwise_conv")
        kernel((ceil_div(g.out_channels * plane, DEPTHWISE_OUTPUTS * DEPTHWISE_THREADS), 1, g.batch),
               (DEPTHWISE_THREADS,),
               (x, w, out, *_ints(g.in_channels, g.in_h, g.in_w, g.out_channels, *g.kernel_args()),
                *divisor(plane), *divisor(g.out_w), *divisor(g.out_channels // g.in_channels)))
        return out

    # --- precision conversions (hip/quantize.hip) -------------------------------------------
    def _elementwise(self, n: int) -> tuple:
        return (min(ceil_div(max(n, 1), ELEMENTWISE_THREADS), GRID_STRIDE_MAX_BLOCKS),), (ELEMENTWISE_THREADS,)

    def to_half(self, x):
        y = self.xp.empty(x.shape, dtype=self.xp.float16)
        self._kernel("quantize.hip", "to_half")(*self._elementwise(x.size), (x, y, np.int64(x.size)))
        return y

    def quantize(self, x, scale: float):
        q = self.xp.empty(x.shape, dtype=self.xp.int8)
        self._kernel("quantize.hip", "quantize_int8")(*self._elementwise(x.size),
                                                      (x, q, np.float32(1.0 / scale), np.int64(x.size)))
        return q

    def dequantize(self, acc, scale, rows_per_scale: int):
        """float32 acc * scale[row // rows_per_scale] for acc of shape batch x rows x ... (row = axis 1)."""
        rows = acc.shape[1]
        cols = acc.size // (acc.shape[0] * rows)
        y = self.xp.empty(acc.shape, dtype=self.xp.float32)
        self._kernel("quantize.hip", "dequantize_int32")(
            *self._elementwise(acc.size), (acc, scale, y, *_ints(rows, cols, rows_per_scale), np.int64(acc.size)))
        return y


# --- the algorithms: (launcher, float32 input, prepared filter, geometry) -> (float32 output, workspace bytes)

def _operands(launcher: KernelLauncher, x, w):
    """x at the filter's precision, the filter's values, and int8's per-output-channel scale (else None)."""
    if not isinstance(w, LowpFilter):
        return x, w, None
    values = w.values if w.vendor is None else w.vendor
    if w.dtype == "fp16":
        return launcher.to_half(x), values, None
    s_x = w.act_scale if w.act_scale is not None else activation_scale(x)
    return launcher.quantize(x, s_x), values, w.output_scale(s_x, launcher.xp)


def _to_float(launcher: KernelLauncher, acc, scale, rows_per_scale: int = 1):
    return acc if scale is None else launcher.dequantize(acc, scale, rows_per_scale)


def im2col(launcher: KernelLauncher, x, w_matrix, g: ConvGeometry):
    """Unfold, then GEMM with the F x (C*KH*KW) filter matrix."""
    xq, w, scale = _operands(launcher, x, w_matrix)
    if g.is_pointwise:
        cols, workspace = xq.reshape(g.batch, g.in_channels, g.in_h * g.in_w), 0
    else:
        cols = launcher.im2col(xq, g)
        workspace = cols.nbytes
    return _to_float(launcher, launcher.gemm(w, cols), scale).reshape(g.output_shape), workspace


def kn2row(launcher: KernelLauncher, x, w_rows, g: ConvGeometry):
    """GEMM of the (F*KH*KW) x C filter rows with the input, then the float32 shift-add of the partial planes."""
    xq, w, scale = _operands(launcher, x, w_rows)
    acc = launcher.gemm(w, xq.reshape(g.batch, g.in_channels, g.in_h * g.in_w))
    partial = _to_float(launcher, acc, scale, g.taps)   # one scale per output channel: KH*KW rows each
    if g.is_pointwise:
        return partial.reshape(g.output_shape), 0
    workspace = acc.nbytes + (partial.nbytes if partial is not acc else 0)
    return launcher.shift_add(partial, g), workspace


def scalar(launcher: KernelLauncher, x, w, g: ConvGeometry):
    xq, values, scale = _operands(launcher, x, w)
    return _to_float(launcher, launcher.scalar(xq, values, g), scale), 0


def depthwise(launcher: KernelLauncher, x, w, g: ConvGeometry):
    """Every algorithm's depthwise layer: the direct float32 kernel, no workspace (fp16/int8: on the
    input and filter rounded to the precision, lowp.py)."""
    if isinstance(w, LowpFilter):
        x, w = launcher.xp.ascontiguousarray(round_trip(x, w.dtype, w.act_scale, launcher.xp)), w.values
    return launcher.depthwise(x, w, g), 0


LAUNCHES = {"im2col": im2col, "kn2row": kn2row, "scalar": scalar}   # each algorithm's kernel launches

