#!/usr/bin/env bash
# Compile every kernel in hip/ for NVIDIA (nvcc, sm_90) and AMD (hipcc, gfx90a; gfx942 where the
# installed HIP knows it), at every tile, with warnings as errors. The ptxas register and shared
# memory report of each NVIDIA build is printed (and kept in build/compile/).
# A missing compiler is skipped with a note, except under CI=true, where both are required.
set -euo pipefail
cd "$(dirname "$0")"
out=../build/compile
mkdir -p "$out"
# Only the GEMMs (the ladder, hip/gemm_<n>_*.hip, and low precision) take a tile (threads per block side);
# every other kernel is built once. Each build gets the -D defines its launch uses (kernel_launch.kernel_defines).
tiles_of() { case "$1" in gemm_*.hip) echo "8 16 32";; *) echo 16;; esac; }
python=${PYTHON:-$(cd .. && pwd)/.venv/bin/python}
defines_of() {
    (cd .. && PYTHONPATH=. "$python" -c 'import sys; from experiments.conv.kernel_launch import kernel_defines
print(" ".join(f"-D{k}={v}" for k, v in kernel_defines(sys.argv[1], int(sys.argv[2])).items()))' "$1" "$2")
}
status=0

require() {
    if command -v "$1" >/dev/null; then return 0; fi
    if [ "${CI:-}" = "true" ]; then echo "compile-check: $1 not found (required in CI)"; exit 1; fi
    echo "compile-check: $1 not found, skipping its builds"; return 1
}

if require nvcc; then
    for src in *.hip; do
        for tile in $(tiles_of "$src"); do
            log="$out/${src%.hip}.tile$tile.sm_90.log"
            if nvcc -cubin -arch=sm_90 -x cu -I . $(defines_of "$src" "$tile") -Werror all-warnings -Xptxas -v \
                    -o "$out/${src%.hip}.tile$tile.cubin" "$src" >"$log" 2>&1; then
                echo "nvcc  sm_90   TILE=$tile $src: $(grep -h 'ptxas info    : Used' "$log" | sed 's/.*: Used/used/')"
            else
                cat "$log"; echo "FAILED: nvcc $src TILE=$tile"; status=1
            fi
        done
    done
fi

if require hipcc; then
    arches="gfx90a"
    if HIP_PLATFORM=amd hipcc -x hip --offload-arch=gfx942 --cuda-device-only -c -o /dev/null common.h >/dev/null 2>&1; then
        arches="$arches gfx942"
    else
        echo "hipcc: this HIP does not know gfx942 (MI300); building gfx90a (MI200) only"
    fi
    for arch in $arches; do
        for src in *.hip; do
            for tile in $(tiles_of "$src"); do
                log="$out/${src%.hip}.tile$tile.$arch.log"
                if HIP_PLATFORM=amd hipcc -x hip --offload-arch="$arch" --cuda-device-only -c -I . \
                        $(defines_of "$src" "$tile") -Wall -Werror -o "$out/${src%.hip}.tile$tile.$arch.o" "$src" >"$log" 2>&1; then
                    echo "hipcc $arch TILE=$tile $src: ok"
                else
                    cat "$log"; echo "FAILED: hipcc $arch $src TILE=$tile"; status=1
                fi
            done
        done
    done
fi
exit $status
