"""make kernel-report (analysis/kernel_report.py): SASS loops and instruction mix, ptxas and AMD metadata,
occupancy from the documented limits, the ladder's targets."""
import shutil
from pathlib import Path

import pytest

from analysis import kernel_report as kr
from experiments.conv import ladder
from experiments.runtime import nvrtc
from experiments.runtime.sources import HIP_DIR

# Two kernels: `outer` has a loop (.L_x_1 .. the BRA at 0090) holding an inner loop (.L_x_2 .. 0070), a
# division before the loops and one in the inner loop; `flat` has no loop.
SASS = """
//--------------------- .text.outer       --------------------------
	.section	.text.outer,"ax",@progbits
outer:
        /*0000*/                   I2F.U32.RP R0, R11 ;
        /*0010*/                   MUFU.RCP R0, R0 ;
.L_x_1:
        /*0020*/                   LDG.E.128 R4, desc[UR8][R12.64] ;
.L_x_2:
        /*0030*/                   LDS.128 R8, [R3] ;
        /*0038*/                   LDS R15, [R3+0x10] ;
        /*0040*/                   FFMA R1, R8, R9, R1 ;
        /*0050*/                   FFMA R2, R8, R10, R2 ;
        /*0060*/                   I2F.RP R7, R6 ;
        /*0070*/               @P0 BRA `(.L_x_2) ;
        /*0080*/                   STG.E.128 desc[UR8][R14.64], R4 ;
        /*0090*/              @!P1 BRA `(.L_x_1) ;
        /*00a0*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
        /*00b0*/                   EXIT ;
.L_x_3:
        /*00c0*/                   BRA `(.L_x_3) ;
//--------------------- .text.flat       --------------------------
	.section	.text.flat,"ax",@progbits
flat:
        /*0000*/                   LDS R8, [R3] ;
        /*0010*/                   FFMA R1, R8, R9, R1 ;
        /*0020*/                   EXIT ;
"""


def test_loops_hot_loop_and_mix():
    kernels = kr.parse_sass(SASS)
    assert set(kernels) == {"outer", "flat"}
    outer = kernels["outer"]
    spans = sorted((lp.start, lp.end) for lp in outer.loops)
    assert spans == [(2, 10), (3, 8), (13, 13)]   # instruction indices; .L_x_3 is the trailing self-loop
    hot = kr.hot_loop(outer)
    assert (hot.start, hot.end) == (3, 8)        # innermost with the most FFMA
    mix = kr.mix(outer, hot.start, hot.end)
    assert (mix.ffma, mix.lds, mix.lds128, mix.divisions, mix.ffma_per_lds) == (2, 2, 1, 1, 1.0)
    whole = kr.mix(outer, 0, len(outer.opcodes) - 1)
    assert (whole.ldg128, whole.stg128) == (1, 1)
    assert kr.divisions_in_loops(outer) == 1
    assert kr.integer_divisions(outer.opcodes, outer.operands) == 3   # two reciprocal idioms and the call
    assert kr.hot_loop(kernels["flat"]) is None


def test_ptxas_log():
    log = """ptxas info    : Compiling entry function 'gemm_fold' for 'sm_90'
ptxas info    : Function properties for gemm_fold
    8 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 8 bytes cumulative stack size, 16640 bytes smem
ptxas info    : Compiling entry function 'reduce' for 'sm_90'
ptxas info    : Function properties for reduce
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers
"""
    assert kr.parse_ptxas(log) == {
        "gemm_fold": {"registers": 64, "smem": 16640, "spill_stores": 8, "spill_loads": 12},
        "reduce": {"registers": 32, "smem": 0, "spill_stores": 0, "spill_loads": 0}}


def test_amd_metadata():
    assembly = """	.amdgpu_metadata
---
amdhsa.kernels:
  - .agpr_count:     4
    .group_segment_fixed_size: 16640
    .name:           gemm_fold
    .private_segment_fixed_size: 0
    .sgpr_count:     58
    .sgpr_spill_count: 0
    .vgpr_count:     248
    .vgpr_spill_count: 0
amdhsa.target:   amdgcn-amd-amdhsa--gfx90a
...

	.end_amdgpu_metadata
"""
    assert kr.parse_amd_metadata(assembly) == {"gemm_fold": {
        "vgprs": 248, "agprs": 4, "sgprs": 58, "lds": 16640, "scratch": 0, "vgpr_spills": 0, "sgpr_spills": 0}}


@pytest.mark.parametrize("registers, smem, threads, warps, limit", [
    (32, 0, 256, 64, "warps"),              # 8 blocks of 8 warps
    (128, 16640, 256, 16, "registers"),     # 128 x 32 x 8 = 32768 registers a block: 2 blocks
    (130, 16640, 256, 8, "registers"),      # 136 (rounded to 256 a warp) x 256 > 32768: 1 block
    (32, 100 * 1024, 64, 4, "shared memory"),  # (100 KiB + 1 KiB reserved) fits twice in 228 KiB
    (16, 0, 32, 32, "blocks"),              # 32 blocks of 1 warp
])
def test_h100_occupancy(registers, smem, threads, warps, limit):
    assert kr.h100_warps(registers, smem, threads) == (warps, limit)


@pytest.mark.parametrize("vgprs, agprs, lds, threads, waves, limit", [
    (248, 0, 16640, 256, 8, "VGPRs"),     # 512 // 248 = 2 waves per SIMD, 4 SIMDs
    (46, 0, 8256, 256, 28, "LDS"),        # 7 workgroups of 4 waves in 64 KiB
    (13, 0, 0, 256, 32, "waves"),         # 8 waves x 4 SIMDs
    (100, 30, 0, 64, 12, "VGPRs"),        # unified file: 130 -> 136, 3 waves per SIMD
])
def test_mi250_occupancy(vgprs, agprs, lds, threads, waves, limit):
    assert kr.mi250_waves(vgprs, agprs, lds, threads) == (waves, limit)


def _row(kernel, tile, ffma=512, lds=32, lds128=32, spills=0, warps=16, divisions=0, source="f.hip"):
    hot = kr.Mix(700, ffma, lds, lds128, 14, 2, 0, 0, divisions)
    return kr.Row(source, tile, kernel, 256, {"registers": 127, "smem": 0, "spill_stores": spills,
                                              "spill_loads": spills}, None, hot, divisions, divisions, None,
                  (warps, "registers"), None)


def test_targets_pass_and_fail():
    fastest = kr.TOP_RUNG.function
    good = [_row(fastest, 16), _row("im2col", None), _row("depthwise_conv", None)]
    assert all(ok for _, ok, _ in kr.target_checks(good))
    for bad in ([_row(fastest, 16, ffma=224)], [_row(fastest, 16, lds128=30)], [_row(fastest, 16, spills=4)],
                [_row(fastest, 16, warps=4)], [_row("im2col", None, divisions=2)],
                [_row(rung.function, 8, spills=8, source=rung.source) for rung in ladder.RUNGS[2:4]]):
        assert [name for name, ok, _ in kr.target_checks(bad) if not ok], bad


def test_rungs_are_ranked_by_the_proxy_never_by_their_place_in_the_ladder():
    rows = [_row(r.function, 16, ffma=ffma, source=r.source, warps=warps, spills=spills)
            for r, ffma, warps, spills in zip(ladder.RUNGS, (32, 256, 512, 512, 320, 480, 400),
                                             (32, 16, 16, 8, 16, 16, 16), (0, 0, 0, 0, 0, 0, 8))]
    ranked = [row.kernel for row in kr.rank_rungs(rows + [_row("gemm_vec4", 8, ffma=9999, source="gemm_2_vec4.hip")])]
    assert ranked == ["gemm_vec4", "gemm_dbuf", "gemm_splitk", "gemm_warptile", "gemm_blocked", "gemm_naive",
                      "gemm_fold"]   # fold spills: last, whatever its place in the list


def test_every_kernel_file_is_built():
    sources = {source for source, _ in kr.builds()}
    assert sources == {p.name for p in HIP_DIR.glob("*.hip")}
    assert {tile for source, tile in kr.builds() if source == kr.TOP_RUNG.source} == {8, 16, 32}


def test_real_ptxas_of_the_fastest_rung():
    """NVRTC's build with CuPy's options (as the runtime makes it): the top rung at 16 threads per side within 128
    registers, without spills, 8 warps an SM or more."""
    pytest.importorskip("cupy")
    log = nvrtc.build(kr.TOP_RUNG.source, kr.TOP_RUNG.shape(16).defines(), kr.NVIDIA_ARCH).log
    info = kr.parse_ptxas(log)[kr.TOP_RUNG.function]
    assert info["spill_stores"] == info["spill_loads"] == 0 and 0 < info["registers"] <= 128
    assert kr.h100_warps(info["registers"], info["smem"], 256)[0] >= 8


NVDISASM = sorted(Path("build/tools").glob("nvdisasm-*/nvidia/cu13/bin/nvdisasm"))


@pytest.mark.skipif(shutil.which("nvcc") is None or not NVDISASM,
                    reason="nvcc or nvdisasm not installed (make kernel-report installs nvdisasm)")
def test_real_sass_of_im2col_and_the_fastest_rung(tmp_path):
    rows = kr.analyse("im2col.hip", None, str(NVDISASM[0]), tmp_path, with_amd=False)
    rows += kr.analyse(kr.TOP_RUNG.source, 16, str(NVDISASM[0]), tmp_path, with_amd=False)
    assert all(ok for _, ok, _ in kr.target_checks(rows)), kr.target_checks(rows)
