"""The resolved variant: what identifies a kernel configuration, built once from a choice.

A ``Variant`` is the one value that names how a convolution runs. The config (experiments/
harness/config.py), the library API (conv2d, swap_conv2d), the tuner's candidates, the
benchmarks, the plan of each layer, layers.csv, the MLflow params and the report all hold or
read this value; nothing else re-derives a default or re-parses a name.

    field   values                                           does not apply (None) to
    algo    im2col, kn2row, scalar; pytorch, auto (harness);
            depthwise (what a depthwise layer runs)
    gemm    blocked, vendor, sparse, auto_sparse, custom      pytorch, scalar, auto, depthwise
    tile    8, 16, 32: the blocked GEMM's threads per side   every GEMM but blocked and custom
            of its thread block (tile x tile threads); the
            block tile (of C) a block computes depends on
            the rung; custom: any side up to 32
    dtype   fp32, fp16, int8                                  (always applies)
    rung    the blocked GEMM's rung of the ladder: naive,     every GEMM but blocked
            blocked (default), vec4, dbuf, warptile, splitk,
            fold (experiments/conv/ladder.py); fp16 and int8
            have rung blocked only
    custom  the user's own GEMM kernel (experiments/conv/     every GEMM but custom
            custom.py: its name, file, sha256, function...)

Its one label format, read back by ``Variant.parse``:

    algo[/gemm[-RUNG][-tTILE]]/dtype    scalar/fp32, im2col/vendor/fp16, kn2row/blocked-t16/fp32,
                                          im2col/blocked-fold-t16/fp32 (the default rung is not named),
                                          im2col/custom-NAME-t16/fp32 (NAME: the kernel file's name)

Adding a field (say a GEMM rung, or a quantization option) is: one dataclass field
with its default, one entry in ``_resolve`` if it only applies to some choices, one line in
``label``/``parse`` if it tells two kernels apart. ``params()`` logs every field as
``variant.<field>`` by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .custom import CustomGemm
from .ladder import DEFAULT_RUNG, RUNG_NAMES, TILES

ALGORITHMS = ("im2col", "kn2row", "scalar")            # the engine's own (experiments/conv/api.py)
GEMM_ALGORITHMS = ("im2col", "kn2row")                  # the algorithms with a GEMM step
GEMMS = ("blocked", "vendor", "sparse", "auto_sparse", "custom")  # sparse: CSR SpMM (experiments/conv/sparse.py)
CUSTOM = "custom"                                       # the user's own kernel file (experiments/conv/custom.py)
MAX_CUSTOM_TILE = 32                                    # a tile x tile thread block: at most 1024 threads
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
    rung: str | None = None
    custom: CustomGemm | None = None

    @classmethod
    def of(cls, algo: str, gemm: str | None = None, tile: int | None = None, dtype: str = "fp32",
           rung: str | None = None, custom: CustomGemm | None = None) -> "Variant":
        """The variant of a choice: gemm only for GEMM algorithms, tile and rung only for the blocked
        GEMM (rung None: the default rung). ValueError for an unknown rung, or a float32-only rung at
        another precision.

        ``Variant.of("scalar", "blocked", 32)`` is ``Variant("scalar")``: two choices that run the
        same kernels resolve to one variant (and one label).
        """
        if algo not in GEMM_ALGORITHMS:
            gemm = None
        if gemm == CUSTOM:
            if dtype != "fp32":
                raise ValueError(f"gemm=custom runs your float32 kernel (const float* A, ...); dtype={dtype!r} runs "
                                 f"the blocked or vendor GEMM")
            if isinstance(tile, bool) or not isinstance(tile, int) or not 1 <= tile <= MAX_CUSTOM_TILE:
                raise ValueError(f"tile={tile!r}: a custom kernel's thread block is tile x tile threads; valid: an int "
                                 f"in 1..{MAX_CUSTOM_TILE}, e.g. 8, 16 or 32")
            return cls(algo, gemm, tile, dtype, None, custom)
        if gemm != "blocked":
            return cls(algo, gemm, None, dtype)
        rung = rung or DEFAULT_RUNG
        if rung not in RUNG_NAMES:
            raise ValueError(f"unknown GEMM rung {rung!r}; valid (the rungs of the ladder, naive to fast): "
                             f"{', '.join(RUNG_NAMES)}")
        if dtype != "fp32" and rung != DEFAULT_RUNG:
            raise ValueError(f"gemm rung {rung!r} is a float32 rung of the GEMM ladder; dtype={dtype!r} "
                             f"runs rung {DEFAULT_RUNG!r} (hip/gemm_lowp.hip)")
        return cls(algo, gemm, None if tile is None else int(tile), dtype, rung)

    @property
    def uses_gemm(self) -> bool:
        return self.gemm is not None

    @property
    def gemm_label(self) -> str:
        """The label's GEMM segment: vendor, blocked-t16, blocked-fold-t16 ("" without a GEMM)."""
        if self.gemm is None:
            return ""
        if self.gemm == CUSTOM:
            return f"{CUSTOM}-{self.custom.name if self.custom else ''}-t{self.tile}"
        rung = f"-{self.rung}" if self.rung not in (None, DEFAULT_RUNG) else ""
        return self.gemm + rung + ("" if self.tile is None else f"-t{self.tile}")

    @property
    def label(self) -> str:
        """algo[/gemm[-RUNG][-tTILE]]/dtype, e.g. kn2row/blocked-t16/fp32 (run names, tuning, layers.csv,
        report)."""
        return "/".join(part for part in (self.algo, self.gemm_label, self.dtype) if part)

    @classmethod
    def parse(cls, label: str) -> "Variant":
        """The variant of a ``label``; ValueError naming the label when it is not one."""
        parts = label.split("/")
        if len(parts) not in (2, 3) or parts[-1] not in DTYPES:
            raise ValueError(f"{label!r} is not a variant label (algo[/gemm[-RUNG][-tTILE]]/dtype, "
                             f"e.g. kn2row/blocked-t16/fp32)")
        gemm, tile, rung = None, None, None
        if len(parts) == 3:
            head, dash_t, tile_text = parts[1].rpartition("-t")
            if dash_t and tile_text.isdigit():
                gemm, tile = head, int(tile_text)
            else:
                gemm = parts[1]
            gemm, _, rung = gemm.partition("-")
            if gemm == CUSTOM:
                return cls(parts[0], gemm, tile, parts[-1], None, CustomGemm.named(rung))
            if gemm == "blocked":
                rung = rung or DEFAULT_RUNG
        return cls(parts[0], gemm, tile, parts[-1], rung or None)

    def with_gemm(self, gemm: str | None) -> "Variant":
        """The same variant on another GEMM back-end (auto_sparse resolved for one layer)."""
        if gemm == self.gemm:
            return self
        blocked = gemm == "blocked"
        return replace(self, gemm=gemm, tile=self.tile if blocked else None,
                       rung=(self.rung or DEFAULT_RUNG) if blocked else None)

    def params(self) -> dict[str, str]:
        """The resolved values as MLflow params: variant.algo, variant.gemm, ..., variant.label; a custom
        kernel's as variant.custom (its name), variant.custom.path, .sha256, .function, ..."""
        values = {f"{PARAM_PREFIX}{f.name}": "" if getattr(self, f.name) is None else str(getattr(self, f.name))
                  for f in fields(self) if f.name != CUSTOM}
        values[f"{PARAM_PREFIX}{CUSTOM}"] = self.custom.name if self.custom else ""
        if self.custom is not None:
            values.update({f"{PARAM_PREFIX}{CUSTOM}.{k}": v for k, v in self.custom.params().items() if k != "name"})
        return {**values, f"{PARAM_PREFIX}label": self.label}


FIELDS = tuple(f.name for f in fields(Variant))
