"""make check-kernel SOURCE=FILE [TILE=16]: a student's GEMM kernel file checked on the laptop.

    python -m experiments.harness.check_kernel FILE [--tile 16] [--function NAME] [--tile-macro TILE_WIDTH]

Compiles the file for the emulator (the contract: experiments/conv/custom.py, docs/your-kernel.md),
runs it on awkward GEMM shapes (M, N, K not multiples of the block tile; M, N or K of 1) and on the
GEMM shapes of resnet18's layers at 32 px (im2col and kn2row, C up to 2^17 elements), each on fresh random
operands against float64, and prints one row per shape: max error, pass or FAIL, the first wrong element of C.
Exit status: 0 when every shape passes, 1 when one fails (a wrong element, an out-of-bounds write,
a kernel stopped at --timeout-s), 2 when the file cannot run (missing, not the contract, a compile error).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from experiments.conv import custom
from experiments.conv.accounting import layer_cost
from experiments.conv.tolerance import RELATIVE_TOLERANCE
from experiments.conv.variant import Variant
from experiments.runtime.emulator import EmulatorError, EmulatorRuntime, KernelTimeoutError, strip_comments

from .validate import EXIT_BAD_INPUT

EXIT_FAILED = 1
DEFAULT_TIMEOUT_S = 10.0
MODEL, INPUT_SIZE = "resnet18", 32
MAX_EMULATED_OUTPUTS = 2**17   # resnet18's kn2row conv1 (3136 x 1024) alone would take most of the 30 s budget


def detect_tile_macro(source: Path) -> str:
    """TILE when the file uses it, else the one macro it gives a default under #ifndef (TILE_WIDTH...)."""
    try:
        code = strip_comments(source.read_text())
    except (OSError, UnicodeDecodeError):
        return custom.DEFAULT_TILE_MACRO   # read_kernel says why
    if re.search(rf"\b{custom.DEFAULT_TILE_MACRO}\b", code):
        return custom.DEFAULT_TILE_MACRO
    guarded = set(re.findall(r"#[ \t]*ifndef[ \t]+(\w+)\s*\n[ \t]*#[ \t]*define[ \t]+\1[ \t]+\d+", code))
    return guarded.pop() if len(guarded) == 1 else custom.DEFAULT_TILE_MACRO


def awkward_shapes(rows: int, columns: int, tile: int) -> list[tuple[str, int, int, int]]:
    """(why, M, N, K): edges of the block tile (rows x columns of C) and of the K loop (tile)."""
    return [
        ("M, N, K not multiples of the tiles", 2 * rows + 3, columns + 5, 2 * tile + 7),
        ("one short of the tiles", rows - 1 or 1, columns - 1 or 1, tile - 1 or 1),
        ("M = 1", 1, 2 * columns + 1, tile + 3),
        ("N = 1", 2 * rows + 1, 1, tile + 3),
        ("K = 1", rows + 3, columns + 3, 1),
        ("M = N = K = 1", 1, 1, 1),
    ]


def model_shapes(model: str = MODEL, size: int = INPUT_SIZE) -> list[tuple[str, int, int, int]]:
    """The GEMM shapes (per image) of the model's conv layers under im2col and kn2row, each shape once,
    but those with a C of more than MAX_EMULATED_OUTPUTS elements (a fiber per thread: seconds each)."""
    import torch
    from experiments.conv.swap import conv_inputs, conv_layers
    from .job import conv_geometry
    from .models import build_model
    net = build_model(model, None, 0)
    inputs = conv_inputs(net, torch.zeros(1, 3, size, size))
    shapes: dict[tuple[int, int, int], str] = {}
    for name, conv in conv_layers(net):
        g = conv_geometry(conv, inputs[name].shape)
        for algo in ("im2col", "kn2row"):
            cost = layer_cost(g, Variant.of(algo, "vendor"))
            if cost.gemm_groups:
                shapes.setdefault((cost.gemm_m, cost.gemm_n, cost.gemm_k), f"{model}@{size} {name} ({algo})")
    return [(why, m, n, k) for (m, n, k), why in shapes.items() if m * n <= MAX_EMULATED_OUTPUTS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make check-kernel", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the kernel file (SOURCE=...)")
    parser.add_argument("--tile", type=int, default=16, help="the tile, passed as -D<tile macro>=TILE (default 16)")
    parser.add_argument("--function", default=None, help="the kernel's name (default: the file's only __global__)")
    parser.add_argument("--tile-macro", default=None,
                        help="the macro the tile reaches the file as (default: TILE, else the one macro the file "
                             "defines under #ifndef)")
    parser.add_argument("--block-tile", default=None, help="rows,columns of C per block (default: tile,tile)")
    parser.add_argument("--batched", action="store_true", help="the batched form of the contract (three strides)")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"stop a launch after this long (default {DEFAULT_TIMEOUT_S:g} s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    macro = args.tile_macro or detect_tile_macro(Path(args.source))
    try:
        if args.tile < 1 or args.tile * args.tile > 1024:
            raise custom.ContractError(f"TILE={args.tile}: the thread block is TILE x TILE threads, at most 1024 "
                                       f"(TILE 1..32)")
        block_tile = None if not args.block_tile else [int(v) for v in args.block_tile.split(",")]
        kernel = custom.read_kernel(args.source, args.function, macro, block_tile, args.batched)
        runtime = EmulatorRuntime()
        runtime.kernel_timeout_s = args.timeout_s
        custom.load(runtime, kernel, args.tile)
    except (custom.ContractError, custom.KernelCompileError, ValueError) as exc:
        print(f"check-kernel: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows, columns = kernel.block(args.tile)
    print(f"{kernel.path}: {kernel.function}, -D{kernel.tile_macro}={args.tile}, block {args.tile} x {args.tile} "
          f"threads computing {rows} x {columns} of C, sha256 {kernel.sha256[:16]}")
    tolerance = RELATIVE_TOLERANCE["fp32"]
    shapes = awkward_shapes(rows, columns, args.tile) + model_shapes()
    table = [("shape (M x N x K)", "why", "max error", "result", "first wrong element of C")]
    failed = stopped = False
    for seed, (why, m, n, k) in enumerate(shapes):
        shape = f"{m} x {n} x {k}"
        if stopped:
            table.append((shape, why, "", "not run", "(a launch was stopped)"))
            continue
        try:
            check = custom.check_gemm(runtime, kernel, args.tile, m, n, k, tolerance, seed=seed,
                                      batch=2 if kernel.batched else 1)
        except KernelTimeoutError as exc:
            failed = stopped = True
            table.append((shape, why, "", "FAIL", str(exc)))
            continue
        except EmulatorError as exc:   # an out-of-bounds write, a divergent barrier, __trap()
            failed = True
            table.append((shape, why, "", "FAIL", str(exc)))
            continue
        failed |= not check.ok
        wrong = "" if check.ok else f"(row {check.wrong[0]}, column {check.wrong[1]}): {check.got:.6g}, " \
                                    f"expected {check.expected:.6g}"
        table.append((shape, why, f"{check.max_error:.2e}", "pass" if check.ok else "FAIL", wrong))
    widths = [max(len(row[i]) for row in table[:-1] + [table[-1][:4] + ("",)]) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
    verdict = "FAILED" if failed else "passed"
    print(f"{verdict}: {sum(r[3] == 'pass' for r in table[1:])} of {len(shapes)} shapes pass within "
          f"{tolerance:g} of float64 (max |C - C64| / max |C64|); {time.perf_counter() - start:.1f} s")
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
