#!/usr/bin/env bash
# Set-up helpers for the Makefile, run before any venv exists (plain bash, coreutils, curl or python3).
#   platform.sh detect            cuda (a working nvidia-smi), rocm (/dev/kfd or a working rocminfo), else cpu
#   platform.sh torch-index P     PyTorch's wheel index for platform P, when it answers; nothing otherwise
#   platform.sh check-driver      for the cuda set: fails, saying what to do, if the driver is older than CUDA 13's
set -euo pipefail

CUDA13_DRIVER_FLOOR=580

case "${1:-}" in
detect)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo cuda
    elif [ -e /dev/kfd ] || { command -v rocminfo >/dev/null 2>&1 && rocminfo >/dev/null 2>&1; }; then
        echo rocm
    else
        echo cpu
    fi ;;
torch-index)
    case "${2:-}" in
    cpu) url=https://download.pytorch.org/whl/cpu ;;
    rocm) url=https://download.pytorch.org/whl/rocm7.0 ;;
    *) exit 0 ;;  # cuda: PyPI's torch is the CUDA 13 build
    esac
    # Probed once, 10 s at most: pip would otherwise retry an unreachable index for every package
    # (minutes). Without it pip still finds a local wheel its configuration names (find-links).
    if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" "$url" 2>/dev/null; then
        echo "$url"
    else
        echo "note: PyTorch's index $url does not answer; pip looks for torch in its other indexes and wheel folders" >&2
    fi ;;
check-driver)
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "note: no nvidia-smi here; the cuda set needs an NVIDIA driver >= $CUDA13_DRIVER_FLOOR where it runs" >&2
        exit 0
    fi
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
    if [ "${driver%%.*}" -lt "$CUDA13_DRIVER_FLOOR" ]; then
        echo "error: NVIDIA driver $driver is older than $CUDA13_DRIVER_FLOOR, the floor of CUDA 13 (torch 2.13.0, cupy-cuda13x)." >&2
        echo "       Update the driver (>= $CUDA13_DRIVER_FLOOR), or set up without the GPU: make setup PLATFORM=cpu" >&2
        exit 1
    fi ;;
*)
    echo "usage: $0 detect | torch-index cpu|cuda|rocm | check-driver" >&2
    exit 2 ;;
esac
