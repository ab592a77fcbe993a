"""Unstructured sparsity: the prepared filter matrix in CSR, and when to use it.

A pruned filter has zeros anywhere. The GEMM of im2col (F x C*k*k filter matrix times the
unfolded input) and of kn2row (F*k*k x C filter rows times the input) then does useless
multiply-adds; a sparse-times-dense product (SpMM) skips them:

    row_ptr  (M+1,)  int32    nonzeros of row m are values[row_ptr[m] : row_ptr[m+1]]
    col_idx  (nnz,)  int32    their columns (k), increasing within a row
    values   (nnz,)  float32

    C[b][m][n] = sum over j in row m of values[j] * B[b][col_idx[j]][n]

It runs as ``hip/spmm_csr.hip`` on the kernel runtimes and as scipy.sparse (or a numpy
fallback) on the numpy backend. A grouped filter is stored as the block-diagonal matrix of its
groups (group g's rows only have columns of group g), so one SpMM computes every group: the
zeros outside the diagonal blocks are never stored, and grouped layers need no extra code.

GEMM back-ends (``gemm=``):

    sparse       always the CSR SpMM (even at density 1.0: that is how the benchmark finds the crossover)
    auto_sparse  the CSR SpMM for a layer whose filter density is at most the threshold of the
                 runtime (``SPARSE_DENSITY_THRESHOLD``), else the vendor GEMM

The thresholds are the crossover densities measured by ``make bench-sparsity`` (results/):
below them the SpMM beat the dense GEMM on most resnet18 layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Density (nonzeros / size of the filter) at or below which gemm='auto_sparse' uses the SpMM, per
# runtime kind.
#   cpu: measured by make bench-sparsity on the numpy backend (scipy's single-threaded CSR product
#        against 2-core BLAS, resnet18 at 224x224, results/2026-11-27-bench-sparsity-cpu.md): summed
#        over the model, im2col's SpMM was 1.03-1.18x slower than the dense GEMM at density 0.1 and
#        1.5-1.7x faster at 0.05 (two runs); the layers' own crossovers were 0.05 to 0.2.
#   gpu: not measured yet (no device was available); 0.1 is the usual figure for a CSR SpMM against
#        a tuned SGEMM until `python -m experiments.bench.sparsity --backend gpu` replaces it.
SPARSE_DENSITY_THRESHOLD = {"cpu": 0.05, "gpu": 0.1}


def density_threshold(runtime) -> float:
    """The auto_sparse threshold of a runtime (the emulator runs GPU kernels: the gpu value)."""
    return SPARSE_DENSITY_THRESHOLD["gpu" if runtime.has_kernels else "cpu"]


def density(w) -> float:
    """Fraction of nonzero entries of a filter (any array kind with a ``size``)."""
    host = w if isinstance(w, np.ndarray) else w.get()
    return float(np.count_nonzero(host)) / max(host.size, 1)


@dataclass
class CsrFilter:
    """A filter matrix (M x K) in CSR, on a runtime's device; block-diagonal for grouped filters."""

    row_ptr: object
    col_idx: object
    values: object
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def density(self) -> float:
        return self.nnz / max(self.shape[0] * self.shape[1], 1)

    @property
    def nbytes(self) -> int:
        return int(self.row_ptr.nbytes + self.col_idx.nbytes + self.values.nbytes)

    @classmethod
    def from_dense(cls, a, xp) -> "CsrFilter":
        """CSR of a dense M x K matrix, or of the block-diagonal matrix of a G x M x K stack."""
        host = np.asarray(a if isinstance(a, np.ndarray) else a.get(), dtype=np.float32)
        stack = host[None] if host.ndim == 2 else host
        groups, m, k = stack.shape
        g_idx, r, c = np.nonzero(stack)          # row-major order: sorted by row, then column
        values = stack[g_idx, r, c]
        rows, cols = g_idx * m + r, g_idx * k + c
        counts = np.bincount(rows, minlength=groups * m)
        row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        if values.size >= 2**31:
            raise ValueError(f"a {groups * m} x {groups * k} filter with {values.size} nonzeros is too "
                             "large for 32-bit CSR indices")
        return cls(xp.asarray(row_ptr), xp.asarray(cols.astype(np.int32)),
                   xp.asarray(values.astype(np.float32)), (groups * m, groups * k))

    def matmul(self, b):
        """A (M x K, this matrix) times each K x P matrix of b (N x K x P) on the host: N x M x P.

        scipy.sparse's CSR product where scipy is installed (it is with mlflow), else numpy.
        """
        n, k, p = b.shape
        if k != self.shape[1]:
            raise ValueError(f"CSR filter of shape {self.shape} cannot multiply a batch of {k} x {p} matrices")
        # All images in one product: B as K x (N*P).
        wide = np.ascontiguousarray(b.transpose(1, 0, 2)).reshape(k, n * p) if n > 1 else b[0]
        try:
            from scipy.sparse import csr_matrix
        except ImportError:  # pragma: no cover - scipy comes with mlflow
            product = _numpy_spmm(self, wide)
        else:
            product = csr_matrix((self.values, self.col_idx, self.row_ptr), shape=self.shape) @ wide
        product = np.asarray(product, dtype=np.float32)
        if n == 1:
            return product.reshape(1, self.shape[0], p)
        return np.ascontiguousarray(product.reshape(self.shape[0], n, p).transpose(1, 0, 2))


def _numpy_spmm(a: CsrFilter, b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """The CSR product in plain numpy: each nonzero scales a row of b, rows summed by reduceat."""
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    row_of = np.repeat(np.arange(a.shape[0]), np.diff(a.row_ptr))
    for start in range(0, a.nnz, chunk):       # bounded temporaries: chunk x P floats
        stop = min(start + chunk, a.nnz)
        np.add.at(out, row_of[start:stop], a.values[start:stop, None] * b[a.col_idx[start:stop]])
    return out
