"""make kernel-report: what the compilers made of every kernel in hip/, read without a GPU.

    python -m analysis.kernel_report --nvdisasm PATH --out results/<date>-kernels.md

Every kernel file is built the way the gpu runtime builds it, the GEMMs at every tile: for NVIDIA sm_90
through NVRTC with the options CuPy's RawModule hands it (experiments/runtime/nvrtc.py: the runtime's
compile_options, CuPy's include paths, -ftz=true) plus -Xptxas=-v; for AMD gfx90a with hipcc -S and the
options CuPy hands hiprtc (the runtime's compile_options and -fcuda-flush-denormals-to-zero; hiprtc itself
is not installed here). nvcc builds each file too, as a cross-check only: its registers and spills are a
column of their own. From ptxas (NVRTC's log) and the AMD code object's metadata: registers, spills,
shared memory; from those and the documented per-SM / per-CU limits below: the theoretical occupancy
on an H100 and an MI250. From the SASS of the NVRTC cubin (nvdisasm): the hot loop's instruction mix
(FFMA per shared-memory load instruction, load and store widths, integer divisions), the hot loop being
the innermost loop with the most FFMA (the most instructions where no loop has any); and the integer
divisions inside any loop and in the whole kernel. The targets of the GEMM ladder are checked at the
end (exit status 1 when one is missed), among them: no rung spills at any tile.
"""
from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.conv import ladder
from experiments.conv.grid import ceil_div, round_up
from experiments.conv.kernel_launch import (DEPTHWISE_THREADS, ELEMENTWISE_THREADS, SCALAR_PIXELS, SPMM_LANES,
                                            SPMM_ROWS, kernel_defines)
from experiments.runtime import nvrtc
from experiments.runtime.gpu import compile_options
from experiments.runtime.sources import HIP_DIR

# --- the documented limits ----------------------------------------------------------------------
# H100 (compute capability 9.0), NVIDIA CUDA C++ Programming Guide, "Technical Specifications per
# Compute Capability": 65536 32-bit registers per SM, at most 2048 resident threads (64 warps) and 32
# resident blocks per SM, 228 KiB shared memory per SM of which 227 KiB for one block, 255 registers
# per thread. Registers are allocated per warp in units of 256 (CUDA Occupancy Calculator, "register
# allocation unit size 256, granularity warp"); each block reserves 1 KiB of shared memory for the
# system (Programming Guide, "Shared Memory" of compute capability 8.x/9.0), allocated in 128-byte units.
H100 = dict(registers=65536, max_warps=64, max_blocks=32, shared=228 * 1024, reserved_shared=1024,
            shared_unit=128, register_unit=256, warp=32)
# MI250 (gfx90a, CDNA2), AMD ROCm documentation, "AMD Instinct MI250 microarchitecture" and "GPU
# hardware specifications", and the LLVM AMDGPU backend guide (AMDGPUUsage, gfx90a): a CU has 4 SIMDs,
# each holding at most 8 wavefronts of 64 lanes; each SIMD has 512 VGPRs per lane, shared by its
# waves (ArchVGPRs and AccVGPRs in one unified file on gfx90a, allocated in units of 8); 64 KiB of
# LDS per CU (a workgroup's waves share its CU, so the LDS divides between the workgroups of a CU).
MI250 = dict(simds=4, waves_per_simd=8, vgprs=512, vgpr_unit=8, lds=64 * 1024, wave=64)
NVIDIA_ARCH, AMD_ARCH = "sm_90", "gfx90a"
HIPRTC_CUPY_OPTIONS = ("-fcuda-flush-denormals-to-zero",)   # what CuPy adds for hiprtc (cupy/cuda/compiler.py)

# Threads per block of each kernel, as experiments/conv launches it.
ELEMENTWISE_KERNELS = {"im2col", "kn2row_shift_add", "im2col_fp16", "im2col_int8", "to_half", "quantize_int8",
                       "dequantize_int32", "gemm_splitk_reduce"}


def threads_per_block(kernel: str, tile: int | None) -> int:
    if kernel in ELEMENTWISE_KERNELS:
        return ladder.REDUCE_THREADS if kernel == "gemm_splitk_reduce" else ELEMENTWISE_THREADS
    if kernel.startswith("scalar_conv"):
        return SCALAR_PIXELS
    if kernel == "depthwise_conv":
        return DEPTHWISE_THREADS
    if kernel == "spmm_csr":
        return SPMM_LANES * SPMM_ROWS
    return tile * tile   # the GEMMs: tile (threads per side) squared


def builds() -> list[tuple[str, int | None]]:
    """(source, TILE) for every kernel file: the GEMMs at every tile, the others once."""
    out = []
    for path in sorted(HIP_DIR.glob("*.hip")):
        tiles = ladder.TILES if path.name.startswith("gemm_") else (None,)
        out += [(path.name, tile) for tile in tiles]
    return out


# --- SASS ---------------------------------------------------------------------------------------
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRANCH_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
_FUNCTION = re.compile(r"^\s*\.section\s+\.text\.(\w+),")


@dataclass
class Loop:
    start: int   # index of its first instruction
    end: int     # index of its backward branch


@dataclass
class Sass:
    """One kernel's instructions (opcode, operands) and its loops."""

    opcodes: list[str] = field(default_factory=list)
    operands: list[str] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)


def parse_sass(text: str) -> dict[str, Sass]:
    kernels: dict[str, Sass] = {}
    current: Sass | None = None
    labels: dict[str, int] = {}
    branches: list[tuple[int, str]] = []

    def close():
        if current is not None:
            current.loops = [Loop(labels[t], i) for i, t in branches if t in labels and labels[t] <= i]

    for line in text.splitlines():
        match = _FUNCTION.match(line)
        if match:
            close()
            current, labels, branches = kernels.setdefault(match.group(1), Sass()), {}, []
            continue
        if current is None:
            continue
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = len(current.opcodes)
            continue
        ins = _INSTRUCTION.search(line)
        if ins:
            opcode, operands = ins.group(3), ins.group(4)
            if opcode == "BRA":
                target = _BRANCH_TARGET.search(operands)
                if target:
                    branches.append((len(current.opcodes), target.group(1)))
            current.opcodes.append(opcode)
            current.operands.append(operands)
    close()
    return kernels


def integer_divisions(opcodes: list[str], operands: list[str]) -> int:
    """Integer division/modulo sequences: the reciprocal idiom of a 32-bit one (I2F.U32.RP or I2F.RP,
    once per division or division-modulo pair) and calls of the 64-bit division routines."""
    count = sum(op.startswith("I2F") and ".RP" in op for op in opcodes)
    return count + sum(op.startswith("CALL") and re.search(r"div|rem", arg) is not None
                       for op, arg in zip(opcodes, operands))


@dataclass
class Mix:
    instructions: int
    ffma: int
    lds: int
    lds128: int
    ldg: int
    ldg128: int
    stg: int
    stg128: int
    divisions: int

    @property
    def ffma_per_lds(self) -> float | None:
        return self.ffma / self.lds if self.lds else None


def mix(sass: Sass, start: int, end: int) -> Mix:
    ops, args = sass.opcodes[start:end + 1], sass.operands[start:end + 1]
    return Mix(instructions=len(ops),
               ffma=sum(op.startswith("FFMA") for op in ops),
               lds=sum(op.startswith("LDS") for op in ops),
               lds128=sum(op.startswith("LDS.128") for op in ops),
               ldg=sum(op.startswith("LDG") for op in ops),
               ldg128=sum(op.startswith("LDG") and ".128" in op for op in ops),
               stg=sum(op.startswith("STG") for op in ops),
               stg128=sum(op.startswith("STG") and ".128" in op for op in ops),
               divisions=integer_divisions(ops, args))


def hot_loop(sass: Sass) -> Loop | None:
    innermost = [lp for lp in sass.loops
                 if not any(o is not lp and lp.start <= o.start and o.end <= lp.end for o in sass.loops)]
    if not innermost:
        return None
    return max(innermost, key=lambda lp: (mix(sass, lp.start, lp.end).ffma, lp.end - lp.start))


def divisions_in_loops(sass: Sass) -> int:
    inside = set()
    for lp in sass.loops:
        inside.update(range(lp.start, lp.end + 1))
    ops = [sass.opcodes[i] for i in sorted(inside)]
    return integer_divisions(ops, [sass.operands[i] for i in sorted(inside)])


# --- ptxas and the AMD metadata -------------------------------------------------------------------
_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(text: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if m := _PTXAS_ENTRY.search(line):
            current = out.setdefault(m.group(1), {"registers": 0, "smem": 0, "spill_stores": 0, "spill_loads": 0})
        elif current is not None and (m := _PTXAS_SPILL.search(line)):
            current["spill_stores"], current["spill_loads"] = int(m.group(2)), int(m.group(3))
        elif current is not None and (m := _PTXAS_USED.search(line)):
            current["registers"], current["smem"] = int(m.group(1)), int(m.group(2) or 0)
    return out


def parse_amd_metadata(assembly: str) -> dict[str, dict]:
    start, end = assembly.index(".amdgpu_metadata"), assembly.index(".end_amdgpu_metadata")
    meta = next(yaml.safe_load_all(assembly[start + len(".amdgpu_metadata"):end].strip()))
    return {k[".name"]: {"vgprs": k[".vgpr_count"], "agprs": k.get(".agpr_count", 0), "sgprs": k[".sgpr_count"],
                         "lds": k[".group_segment_fixed_size"], "scratch": k[".private_segment_fixed_size"],
                         "vgpr_spills": k.get(".vgpr_spill_count", 0), "sgpr_spills": k.get(".sgpr_spill_count", 0)}
            for k in meta["amdhsa.kernels"]}


# --- occupancy ------------------------------------------------------------------------------------
def h100_warps(registers: int, smem: int, threads: int) -> tuple[int, str]:
    """Resident warps per SM and the limiting resource."""
    lim = H100
    warps = ceil_div(threads, lim["warp"])
    per_warp = round_up(max(registers, 1) * lim["warp"], lim["register_unit"])
    by = {"warps": lim["max_warps"] // warps, "blocks": lim["max_blocks"],
          "registers": lim["registers"] // (per_warp * warps),
          "shared memory": lim["shared"] // round_up(smem + lim["reserved_shared"], lim["shared_unit"])}
    limit = min(by, key=by.get)
    return by[limit] * warps, limit


def mi250_waves(vgprs: int, agprs: int, lds: int, threads: int) -> tuple[int, str]:
    """Resident wavefronts per CU and the limiting resource."""
    lim = MI250
    waves = ceil_div(threads, lim["wave"])
    per_wave = round_up(max(vgprs + agprs, 1), lim["vgpr_unit"])   # unified VGPR file on gfx90a
    per_simd = min(lim["waves_per_simd"], lim["vgprs"] // per_wave)
    by = {"waves": lim["simds"] * lim["waves_per_simd"] // waves,
          "VGPRs": (per_simd * lim["simds"]) // waves}
    if lds:
        by["LDS"] = lim["lds"] // lds
    limit = min(by, key=by.get)
    return by[limit] * waves, limit


# --- building -------------------------------------------------------------------------------------
def run(cmd: list[str], env=None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


@dataclass
class Row:
    source: str
    tile: int | None
    kernel: str
    threads: int
    ptxas: dict              # NVRTC's build, as the runtime makes it
    nvcc: dict | None        # nvcc's build of the same file: the cross-check
    hot: Mix | None
    loop_divisions: int
    kernel_divisions: int
    amd: dict | None
    h100: tuple[int, str]
    mi250: tuple[int, str] | None


def analyse(source: str, tile: int | None, nvdisasm: str, work: Path, with_amd: bool) -> list[Row]:
    import os
    stem = f"{Path(source).stem}.t{tile or 0}"
    defines = kernel_defines(source, tile or 16)
    built = nvrtc.build(source, defines, NVIDIA_ARCH)
    ptxas = parse_ptxas(built.log)
    cubin = work / f"{stem}.cubin"
    cubin.write_bytes(built.cubin)
    sass = parse_sass(run([nvdisasm, "-c", str(cubin)]))
    nvcc = parse_ptxas(run(["nvcc", "-cubin", f"-arch={NVIDIA_ARCH}", "-x", "cu", "-I", str(HIP_DIR),
                            *(f"-D{k}={v}" for k, v in defines.items()), "-Xptxas", "-v",
                            "-o", str(work / f"{stem}.nvcc.cubin"), str(HIP_DIR / source)]))
    amd = {}
    if with_amd:
        assembly = work / f"{stem}.{AMD_ARCH}.s"
        run(["hipcc", "-x", "hip", f"--offload-arch={AMD_ARCH}", "--cuda-device-only", "-S",
             *compile_options(defines), *HIPRTC_CUPY_OPTIONS, "-o", str(assembly), str(HIP_DIR / source)],
            env={**os.environ, "HIP_PLATFORM": "amd"})
        amd = parse_amd_metadata(assembly.read_text())
    rows = []
    for kernel, info in ptxas.items():
        code = sass.get(kernel, Sass())
        loop = hot_loop(code)
        threads = threads_per_block(kernel, tile)
        amd_info = amd.get(kernel)
        rows.append(Row(source, tile, kernel, threads, info, nvcc.get(kernel),
                        mix(code, loop.start, loop.end) if loop else None,
                        divisions_in_loops(code), integer_divisions(code.opcodes, code.operands), amd_info,
                        h100_warps(info["registers"], info["smem"], threads),
                        mi250_waves(amd_info["vgprs"], amd_info["agprs"], amd_info["lds"], threads)
                        if amd_info else None))
    return rows


# --- targets and the document -----------------------------------------------------------------------
# The rung the targets hold to: the top of the ladder, built with every step below it. It is named, not taken
# by its place in the list, and not called the fastest: only a GPU measures that (make bench-ladder).
TOP_RUNG = ladder.rung("fold")
RANKING_TILE = 16
DIVISION_FREE = ("im2col", "depthwise_conv")
PROXY = ("FFMA per shared-memory load instruction in the hot loop (the SASS's arithmetic per operand fetched "
         "from shared memory), then theoretical H100 warps per SM; a rung that spills ranks last")


def rank_rungs(rows: list[Row], tile: int = RANKING_TILE) -> list[Row]:
    """The ladder's rungs at ``tile``, best first by the stated PROXY (no GPU here to time them)."""
    sources = {r.source for r in ladder.RUNGS}
    rungs = [r for r in rows if r.source in sources and r.tile == tile and r.kernel != "gemm_splitk_reduce"]

    def proxy(row: Row) -> tuple:
        spills = row.ptxas["spill_stores"] + row.ptxas["spill_loads"]
        ratio = row.hot.ffma_per_lds if row.hot and row.hot.ffma_per_lds is not None else 0.0
        return (spills == 0, ratio, row.h100[0])
    return sorted(rungs, key=proxy, reverse=True)


def target_checks(rows: list[Row]) -> list[tuple[str, bool, str]]:
    """The issue's targets: the top rung (TOP_RUNG) at TILE=16; no rung spilling at any tile; im2col and
    depthwise division-free."""
    checks = []
    fast = [r for r in rows if r.kernel == TOP_RUNG.function and r.tile == 16]
    for r in fast:
        ratio = r.hot.ffma_per_lds if r.hot else None
        checks += [
            (f"{r.kernel} TILE=16: >= 8 FFMA per shared-load instruction", ratio is not None and ratio >= 8,
             f"{ratio:.1f}" if ratio is not None else "no loop"),
            (f"{r.kernel} TILE=16: 128-bit shared loads", bool(r.hot and r.hot.lds and r.hot.lds128 == r.hot.lds),
             f"{r.hot.lds128} of {r.hot.lds} LDS are LDS.128" if r.hot else "no loop"),
            (f"{r.kernel} TILE=16: no spills", r.ptxas["spill_stores"] + r.ptxas["spill_loads"] == 0,
             f"{r.ptxas['spill_stores']} B stored, {r.ptxas['spill_loads']} B loaded"),
            (f"{r.kernel} TILE=16: >= 8 warps per SM (H100)", r.h100[0] >= 8, f"{r.h100[0]} warps ({r.h100[1]})"),
        ]
    ladder_sources = {r.source for r in ladder.RUNGS}
    spilled = [f"{r.kernel} TILE={r.tile} ({r.ptxas['spill_stores']}/{r.ptxas['spill_loads']} B)" for r in rows
               if r.source in ladder_sources and r.ptxas["spill_stores"] + r.ptxas["spill_loads"]]
    checks.append((f"every rung of the ladder, TILE {', '.join(map(str, ladder.TILES))}: no spills (NVRTC)",
                   not spilled, ", ".join(spilled) or "none spills"))
    for r in rows:
        if r.kernel in DIVISION_FREE:
            checks.append((f"{r.kernel}: no integer division in the per-element path", r.kernel_divisions == 0,
                           f"{r.loop_divisions} in loops, {r.kernel_divisions} in the whole kernel"))
    return checks


def _cell(value) -> str:
    return "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))


def _nvcc_cell(info: dict | None) -> str:
    return "-" if info is None else f"{info['registers']}, {info['spill_stores']}/{info['spill_loads']}"


def render(rows: list[Row], checks, tools: dict[str, str]) -> str:
    lines = [f"# Kernel report, {datetime.date.today().isoformat()}", "",
             "Every kernel of hip/ built for NVIDIA sm_90 and AMD gfx90a without a GPU, the way the gpu runtime "
             "builds it (`make kernel-report`, analysis/kernel_report.py): NVIDIA through NVRTC with the options "
             "CuPy's RawModule hands it (the runtime's `--std=c++17`, the kernel's -D defines and include path, CuPy's include "
             "paths, `-ftz=true`, `--device-as-default-execution-space`, `-arch=sm_90`) and `-Xptxas=-v`; AMD "
             "with hipcc and the options CuPy hands hiprtc. nvcc's registers and spills are a cross-check only "
             "(column nvcc). Tools: " + "; ".join(f"{k} {v}" for k, v in tools.items()),
             "",
             "Occupancy is theoretical, from the registers and shared memory below, the launch's block size and "
             "the documented limits (H100: 64K registers, 64 warps, 32 blocks, 228 KiB shared memory per SM; "
             "MI250: 4 SIMDs x 8 waves, 512 VGPRs per SIMD lane, 64 KiB LDS per CU; sources in the script). "
             "Hot loop: the innermost loop of the SASS with the most FFMA. FFMA/LDS: FFMA per shared-memory "
             "load instruction there. Divisions: integer division sequences (hot loop / any loop / whole kernel).",
             "", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in checks]
    ranked = rank_rungs(rows)
    if ranked:
        lines += ["", f"## The ladder's rungs at TILE {RANKING_TILE}, ranked by a proxy", "",
                  f"Not a measurement: no GPU ran them. Ranked by {PROXY}. `make bench-ladder` on a GPU ranks them "
                  "by time.", "", "| rank | kernel | file | FFMA/LDS | warps/SM (H100) | spill B (st/ld) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {i} | {r.kernel} | {r.source} | {_cell(r.hot.ffma_per_lds if r.hot else None)} | {r.h100[0]} | "
                  f"{r.ptxas['spill_stores']}/{r.ptxas['spill_loads']} |" for i, r in enumerate(ranked, 1)]
    lines += ["", "## NVIDIA sm_90 (H100)", "",
              "| kernel | file | TILE | threads | regs | spill B (st/ld) | nvcc regs, spill B | smem B | "
              "warps/SM (limit) | hot-loop instr | FFMA | LDS (.128) | FFMA/LDS | LDG (.128) | STG (.128) | divisions |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r.hot
        lines.append(
            f"| {r.kernel} | {r.source} | {_cell(r.tile)} | {r.threads} | {r.ptxas['registers']} | "
            f"{r.ptxas['spill_stores']}/{r.ptxas['spill_loads']} | {_nvcc_cell(r.nvcc)} | {r.ptxas['smem']} | "
            f"{r.h100[0]} ({r.h100[1]}) | "
            + (f"{h.instructions} | {h.ffma} | {h.lds} ({h.lds128}) | {_cell(h.ffma_per_lds)} | {h.ldg} ({h.ldg128}) | "
               f"{h.stg} ({h.stg128}) | " if h else "- | - | - | - | - | - | ")
            + f"{h.divisions if h else '-'} / {r.loop_divisions} / {r.kernel_divisions} |")
    if any(r.amd for r in rows):
        lines += ["", "## AMD gfx90a (MI250)", "",
                  "| kernel | file | TILE | threads | VGPRs | AGPRs | SGPRs | spills (VGPR/SGPR) | scratch B | LDS B | "
                  "waves/CU (limit) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.amd:
                a = r.amd
                lines.append(f"| {r.kernel} | {r.source} | {_cell(r.tile)} | {r.threads} | {a['vgprs']} | {a['agprs']} | "
                             f"{a['sgprs']} | {a['vgpr_spills']}/{a['sgpr_spills']} | {a['scratch']} | {a['lds']} | "
                             f"{r.mi250[0]} ({r.mi250[1]}) |")
    return "\n".join(lines) + "\n"


def tool_versions(nvdisasm: str, with_amd: bool) -> dict[str, str]:
    from cupy.cuda import nvrtc as cupy_nvrtc
    import cupy
    major, minor = cupy_nvrtc.getVersion()
    versions = {"NVRTC": f"{major}.{minor} (CuPy {cupy.__version__})",
                "nvcc": run(["nvcc", "--version"]).strip().splitlines()[-1],
                "nvdisasm": run([nvdisasm, "--version"]).strip().splitlines()[-1]}
    if with_amd:
        versions["hipcc"] = next((line for line in run(["hipcc", "--version"]).splitlines() if "HIP version" in line),
                                 "unknown")
    return versions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvdisasm", required=True, help="the nvdisasm binary (pip: nvidia-cuda-nvdisasm)")
    parser.add_argument("--out", type=Path, default=Path(f"results/{datetime.date.today().isoformat()}-kernels.md"))
    parser.add_argument("--no-amd", action="store_true", help="skip the hipcc builds (no hipcc here)")
    args = parser.parse_args(argv)
    for tool in ("nvcc",) + (() if args.no_amd else ("hipcc",)):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on the PATH" + ("" if tool == "nvcc" else " (or pass --no-amd)"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="kernel-report-") as tmp:
        for source, tile in builds():
            print(f"kernel-report: {source}" + (f" TILE={tile}" if tile else ""), file=sys.stderr, flush=True)
            rows += analyse(source, tile, args.nvdisasm, Path(tmp), not args.no_amd)
    checks = target_checks(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, checks, tool_versions(args.nvdisasm, not args.no_amd)))
    print(f"kernel-report: wrote {args.out}")
    missed = [name for name, ok, _ in checks if not ok]
    for name in missed:
        print(f"kernel-report: target missed: {name}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
