"""The resolved variant: what identifies a kernel configuration, built once from a choice.

A ``Variant`` is the one value that names how a convolution runs. The config (experiments/
harness/config.py), the library API (conv2d, swap_conv2d), the tuner's candidates, the
benchmarks, the plan of each layer, layers.csv, the MLflow params and the report all hold or
read this value; nothing else re-derives a default or re-parses a name.

    field   values                                           does not apply (None) to
    algo    im2col, kn2row, scalar; pytorch, auto (harness);
            depthwise (what a depthwise layer runs)
    gemm    blocked, vendor, sparse, auto_sparse              pytorch, scalar, auto, depthwise
    tile    8, 16, 32: TILE, the blocked GEMM's thread-block  every GEMM but blocked
            side; each thread computes a GEMM_WPT x GEMM_WPT
            micro-tile, so a block computes a (TILE*4)^2
            output tile (experiments/conv/kernel_launch.py)
    dtype   fp32, fp16, int8                                  (always applies)

Its one label format, read back by ``Variant.parse``:

    algo[/gemm[-tTILE]]/dtype      scalar/fp32, im2col/vendor/fp16, kn2row/blocked-t16/fp32

Adding a field (say a GEMM kernel rung, or a quantization option) is: one dataclass field
with its default, one entry in ``_resolve`` if it only applies to some choices, one line in
``label``/``parse`` if it tells two kernels apart. ``params()`` logs every field as
``variant.<field>`` by itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

ALGORITHMS = ("im2col", "kn2row", "scalar")            # the engine's own (experiments/conv/api.py)
GEMM_ALGORITHMS = ("im2col", "kn2row")                  # the algorithms with a GEMM step
GEMMS = ("blocked", "vendor", "sparse", "auto_sparse")  # sparse: CSR SpMM (experiments/conv/sparse.py)
TILES = (8, 16, 32)
DEFAULT_TILE = 16                                       # conv2d's and swap_conv2d's default
DTYPES = ("fp32", "fp16", "int8")
PARAM_PREFIX = "variant."


@dataclass(frozen=True, order=True)
class Variant:
    """A resolved kernel configuration; build it with ``Variant.of`` (which drops what does not apply)."""

    algo: str
    gemm: str | None = None
    tile: int | None = None
    dtype: str = "fp32"

    @classmethod
    def of(cls, algo: str, gemm: str | None = None, tile: int | None = None, dtype: str = "fp32") -> "Variant":
        """The variant of a choice: gemm only for GEMM algorithms, tile only for the blocked GEMM.

        ``Variant.of("scalar", "blocked", 32)`` is ``Variant("scalar")``: two choices that run the
        same kernels resolve to one variant (and one label).
        """
        if algo not in GEMM_ALGORITHMS:
            gemm = None
        if gemm != "blocked":
            tile = None
        return cls(algo, gemm, None if tile is None else int(tile), dtype)

    @property
    def uses_gemm(self) -> bool:
        return self.gemm is not None

    @property
    def gemm_label(self) -> str:
        """The label's GEMM segment: vendor, blocked-t16 ("" without a GEMM)."""
        if self.gemm is None:
            return ""
        return self.gemm if self.tile is None else f"{self.gemm}-t{self.tile}"

    @property
    def label(self) -> str:
        """algo[/gemm[-tTILE]]/dtype, e.g. kn2row/blocked-t16/fp32 (run names, tuning, layers.csv, report)."""
        return "/".join(part for part in (self.algo, self.gemm_label, self.dtype) if part)

    @classmethod
    def parse(cls, label: str) -> "Variant":
        """The variant of a ``label``; ValueError naming the label when it is not one."""
        parts = label.split("/")
        if len(parts) not in (2, 3) or parts[-1] not in DTYPES:
            raise ValueError(f"{label!r} is not a variant label (algo[/gemm[-tTILE]]/dtype, "
                             f"e.g. kn2row/blocked-t16/fp32)")
        gemm, tile = None, None
        if len(parts) == 3:
            gemm, _, tile_text = parts[1].partition("-t")
            tile = int(tile_text) if tile_text else None
        return cls(parts[0], gemm, tile, parts[-1])

    def with_gemm(self, gemm: str | None) -> "Variant":
        """The same variant on another GEMM back-end (auto_sparse resolved for one layer)."""
        return replace(self, gemm=gemm, tile=self.tile if gemm == "blocked" else None)

    def params(self) -> dict[str, str]:
        """The resolved values as MLflow params: variant.algo, variant.gemm, ..., variant.label."""
        values = {f"{PARAM_PREFIX}{k}": "" if v is None else str(v) for k, v in asdict(self).items()}
        return {**values, f"{PARAM_PREFIX}label": self.label}


FIELDS = tuple(f.name for f in fields(Variant))
