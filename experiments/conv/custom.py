"""gemm=custom: the user's own GEMM kernel file, checked against the contract and launched like a rung.

The contract (docs/your-kernel.md has it with a template to copy, hip/custom/template.hip):

    __global__ void NAME(const float* A, const float* B, float* C, int M, int N, int K)
        C = A @ B, row-major, A M x K, B K x N, C M x N; one launch per GEMM.
    gemm.batched=true: three 64-bit strides follow (long strideA, long strideB, long strideC) and
        blockIdx.z is the batch index (matrix z of A at A + z * strideA; 0 for a shared operand).
    gemm.function: the kernel's name (default: the file's only __global__); extern "C" or a C++ name.
    gemm.tile = t reaches the file as -D<gemm.tile_macro>=t (default macro TILE); the thread block
        is t x t threads and each block computes gemm.block_tile rows x columns of C (default t x t),
        so the grid is (ceil(N / columns), ceil(M / rows), 1 or the batch).
    Host code (a main, hipMalloc) is skipped where it sits in #ifndef CONVBENCH: the prelude
        (hip/custom/convbench_custom.h, included before the file on every runtime) defines CONVBENCH.

``read_kernel`` checks the file before any work (ContractError naming what was found);
``load`` compiles it on a runtime (KernelCompileError with the compiler's own lines at the user's
file:line); ``gemm`` launches it; ``check_gemm`` compares one GEMM against float64 and names the
first wrong element (make check-kernel, and the diagnosis of a job whose layer is wrong).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.runtime.emulator import CompileError, parse_kernels, strip_comments
from experiments.runtime.sources import HIP_DIR

from .grid import MAX_GRID_Y, MAX_GRID_Z, ceil_div

PRELUDE = HIP_DIR / "custom" / "convbench_custom.h"
TEMPLATE = HIP_DIR / "custom" / "template.hip"
DEFAULT_TILE_MACRO = "TILE"
# The parameters of the contract, as numpy dtypes: the three matrices, then M, N, K (then the strides).
_MATRICES = (("A", np.float32), ("B", np.float32), ("C", np.float32))
_SIZES = (("M", np.int32), ("N", np.int32), ("K", np.int32))
_STRIDES = (("strideA", np.int64), ("strideB", np.int64), ("strideC", np.int64))
CONTRACT = "(const float* A, const float* B, float* C, int M, int N, int K)"
BATCHED_CONTRACT = CONTRACT[:-1] + ", long strideA, long strideB, long strideC)"
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


class ContractError(ValueError):
    """The kernel file is not one convbench can run: missing, no such function, or another signature."""


class KernelCompileError(ValueError):
    """The compiler rejected the user's kernel file; the message holds its lines at the file's file:line."""


@dataclass(frozen=True, order=True)
class CustomGemm:
    """A user's GEMM kernel, checked: what identifies it (the file's sha256) and how it is launched."""

    name: str                                # the file's stem, as a label segment: im2col/custom-NAME-t16/fp32
    path: str                                # absolute ("" in a variant read back from its label)
    sha256: str                              # of the file's bytes: the tuning database's key, a run param
    function: str
    tile_macro: str = DEFAULT_TILE_MACRO
    block_tile: tuple[int, int] | None = None   # rows x columns of C per block; None: tile x tile
    batched: bool = False

    @classmethod
    def named(cls, name: str) -> "CustomGemm":
        """What a label tells of a kernel: its name only (a report's row, not a kernel to run)."""
        return cls(name, "", "", "")

    def block(self, tile: int) -> tuple[int, int]:
        """Rows and columns of C one thread block computes at ``tile``."""
        return self.block_tile or (tile, tile)

    def params(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "function": self.function,
                "tile_macro": self.tile_macro, "block_tile": "" if self.block_tile is None else
                f"{self.block_tile[0]},{self.block_tile[1]}", "batched": str(self.batched)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_kernel(source, function: str | None = None, tile_macro: str = DEFAULT_TILE_MACRO,
                block_tile=None, batched: bool = False) -> CustomGemm:
    """Check a kernel file against the contract, before any work; ContractError naming what was found."""
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise ContractError(f"gemm.source={str(source)!r}: no such file"
                            + (f" (relative to {Path.cwd()})" if not path.is_absolute() else "")
                            + f"; copy the template {TEMPLATE.relative_to(HIP_DIR.parent)} to start one")
    path = path.resolve()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"gemm.source={str(source)!r}: cannot read it as text ({exc})") from None
    if not isinstance(tile_macro, str) or not _IDENTIFIER.fullmatch(tile_macro):
        raise ContractError(f"gemm.tile_macro={tile_macro!r}: expected a C identifier, e.g. TILE or TILE_WIDTH")
    kernels = parse_kernels(text)
    if not kernels:
        raise ContractError(f"{path}: no __global__ function found; the contract is "
                            f"__global__ void NAME{CONTRACT} (docs/your-kernel.md)")
    if function is None:
        if len(kernels) > 1:
            raise ContractError(f"{path} defines {len(kernels)} __global__ functions ({', '.join(kernels)}); "
                                f"name the GEMM with gemm.function=NAME")
        function = next(iter(kernels))
    elif function not in kernels:
        raise ContractError(f"gemm.function={function!r}: no __global__ function of that name in {path}; "
                            f"found: {', '.join(kernels)}")
    _check_signature(path, kernels[function], batched)
    _check_tile_macro(path, text, tile_macro)
    return CustomGemm(label_name(path), str(path), file_sha256(path), function, tile_macro, _block_tile(block_tile),
                      bool(batched))


def label_name(path: Path) -> str:
    """The file's stem as a label segment: letters, digits and _ (a - or / would split the label)."""
    return re.sub(r"\W", "_", path.stem)


def _check_signature(path: Path, kernel, batched: bool) -> None:
    wanted = (*_MATRICES, *_SIZES, *(_STRIDES if batched else ()))
    contract = BATCHED_CONTRACT if batched else CONTRACT
    found = f"{kernel.name}({', '.join(p.describe() for p in kernel.params)})"
    if kernel.unsupported:
        raise ContractError(f"{path}: kernel {kernel.name!r}: {kernel.unsupported}; the contract is {contract}")
    ok = len(kernel.params) == len(wanted) and all(
        p.pointer == (i < 3) and p.dtype == np.dtype(dtype) and not (i == 2 and p.const)
        for i, (p, (_, dtype)) in enumerate(zip(kernel.params, wanted)))
    if not ok:
        hint = ""
        if not batched and len(kernel.params) == len(wanted) + len(_STRIDES):
            hint = " (three more parameters: the batched form? set gemm.batched=true)"
        elif batched and len(kernel.params) == len(wanted) - len(_STRIDES):
            hint = " (no strides: set gemm.batched=false)"
        raise ContractError(f"{path}: kernel {found} does not have the contract's signature {contract}{hint}")


def _check_tile_macro(path: Path, text: str, macro: str) -> None:
    """The tile reaches the file as -D<macro>=t: an unconditional #define of it would win, and a file
    whose tile is another macro would never see it."""
    code = strip_comments(text)
    for match in re.finditer(rf"^[ \t]*#[ \t]*define[ \t]+{macro}\b", code, re.M):
        before = code[:match.start()]
        if not re.search(rf"#[ \t]*(ifndef[ \t]+{macro}\b|if[ \t]+!\s*defined\s*\(?\s*{macro}\b)", before):
            line = before.count("\n") + 1
            raise ContractError(f"{path}:{line}: #define {macro} without #ifndef {macro}: gemm.tile reaches the "
                                f"file as -D{macro}=t and this line would override it; wrap it in "
                                f"#ifndef {macro} ... #endif")
    if not re.search(rf"\b{macro}\b", code):
        others = re.findall(r"#[ \t]*ifndef[ \t]+(\w+)\s*\n[ \t]*#[ \t]*define[ \t]+\1[ \t]+\d+", code)
        if others:
            raise ContractError(f"{path} never uses {macro} (gemm.tile_macro) but defines {', '.join(others)} "
                                f"with a default: is that its tile? set gemm.tile_macro={others[0]}")


def _block_tile(value) -> tuple[int, int] | None:
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ContractError(f"gemm.block_tile={value!r}: expected null (tile x tile) or [rows, columns] of C "
                            f"per block, positive ints, e.g. [64,64]")
    return int(values[0]), int(values[1])


# --- compiling and launching ----------------------------------------------------------------

def load(runtime, kernel: CustomGemm, tile: int):
    """The compiled function at ``tile`` (compiled once per runtime and tile; the runtimes cache builds)."""
    defines = {kernel.tile_macro: int(tile)}
    try:
        if runtime.is_gpu:
            module = runtime.load(kernel.path, defines, prelude=PRELUDE, names=(kernel.function,))
        else:
            module = runtime.load(kernel.path, defines, prelude=PRELUDE)
        return module.get_function(kernel.function)
    except CompileError as exc:
        raise KernelCompileError(compiler_message(kernel.path, str(exc), "g++ (the emulator)")) from None
    except Exception as exc:
        if type(exc).__name__ == "CompileException":   # CuPy's: NVRTC or hiprtc
            raise KernelCompileError(compiler_message(kernel.path, str(exc), "NVRTC/hiprtc")) from None
        raise


def compiler_message(path: str, output: str, compiler: str) -> str:
    """The compiler's lines about the user's file first (file:line: error ...), then up to 30 of its others."""
    lines = [line for line in output.splitlines() if line.strip()]
    own = [i for i, line in enumerate(lines) if line.startswith(path)]
    if own:   # each diagnostic and the source and caret lines g++ prints under it
        keep = sorted({j for i in own for j in range(i, min(i + 3, len(lines)))})
        shown = [lines[j] for j in keep if j == keep[0] or not lines[j].startswith(("In file included", "/"))
                 or lines[j].startswith(path)]
    else:
        shown = lines
    return f"{path} does not compile ({compiler}):\n" + "\n".join(shown[:30])


def gemm(runtime, kernel: CustomGemm, tile: int, a, b, groups: int):
    """a (groups x M x K, or M x K) times b (batch x K x N), matrix i of b with a[i % groups]: batch x M x N.

    The plain contract is one launch per matrix; the batched one a launch per group over the images."""
    xp = runtime.xp
    batch, k, n = b.shape
    m = a.shape[-2]
    a = a.reshape(groups, m, k)
    c = xp.full((batch, m, n), np.nan, dtype=xp.float32)   # an element the kernel never writes shows as NaN
    rows, columns = kernel.block(tile)
    grid_x, grid_y = ceil_div(n, columns), ceil_div(m, rows)
    if grid_y > MAX_GRID_Y:
        raise ValueError(f"{kernel.function}: M={m} needs {grid_y} blocks of {rows} rows, more than the grid's "
                         f"y limit {MAX_GRID_Y}")
    function = load(runtime, kernel, tile)
    sizes = (np.int32(m), np.int32(n), np.int32(k))
    if not kernel.batched:
        for i in range(batch):
            function((grid_x, grid_y, 1), (tile, tile), (a[i % groups], b[i], c[i], *sizes))
        return c
    images = batch // groups
    if images > MAX_GRID_Z:
        raise ValueError(f"{kernel.function}: a batch of {images} exceeds the grid's z limit of {MAX_GRID_Z}")
    for g in range(groups):   # images of group g: b[g], b[g + groups], ... (a stride of groups matrices)
        function((grid_x, grid_y, images), (tile, tile),
                 (a[g], b[g:], c[g:], *sizes, np.int64(0), np.int64(groups * k * n), np.int64(groups * m * n)))
    return c


@dataclass(frozen=True)
class GemmCheck:
    """One GEMM of the kernel against float64: its largest error and its first wrong element of C."""

    m: int
    n: int
    k: int
    max_error: float           # max |C - C64| / max |C64|
    wrong: tuple[int, int] | None   # (row, column) of the first element over the tolerance, row-major
    got: float | None = None
    expected: float | None = None

    @property
    def ok(self) -> bool:
        return self.wrong is None

    def describe(self) -> str:
        shape = f"the {self.m} x {self.n} x {self.k} GEMM (M x N x K)"
        if self.ok:
            return f"{shape}: max error {self.max_error:.3g}"
        row, column = self.wrong
        return (f"{shape}: max error {self.max_error:.3g}; first wrong element of C at (row {row}, column "
                f"{column}): {self.got!r}, expected {self.expected!r}")


def check_gemm(runtime, kernel: CustomGemm, tile: int, m: int, n: int, k: int, tolerance: float,
               seed: int = 0, batch: int = 1) -> GemmCheck:
    """Run the kernel once on fresh random operands of an M x N x K GEMM; compare with float64."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    xp = runtime.xp
    c = gemm(runtime, kernel, tile, xp.asarray(a), xp.asarray(b), 1)
    c = c.get() if hasattr(c, "get") else np.asarray(c)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    scale = max(float(np.abs(expected).max(initial=0.0)), np.finfo(np.float32).tiny)
    error = np.abs(c.astype(np.float64) - expected) / scale
    error[np.isnan(error)] = np.inf   # NaN: an element read before it was written, or never written
    bad = np.argwhere(error > tolerance)
    if len(bad) == 0:
        return GemmCheck(m, n, k, float(error.max(initial=0.0)), None)
    z, row, column = (int(v) for v in bad[0])
    return GemmCheck(m, n, k, float(error.max()), (row, column), float(c[z, row, column]),
                     float(expected[z, row, column]))
