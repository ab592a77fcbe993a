"""What only a device shows: launches bigger than the device holds at once, the stride loops past the
grid's y limit, TILE=32 at one block per SM, offsets past 2^31 elements, and the event clock against a
synchronized wall clock. Each result is checked against float64 PyTorch on the same device, on fresh
random data at shapes that are not multiples of any tile. Skipped without a GPU seen by CuPy and torch."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from experiments.runtime import gpu_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not (gpu_available() and torch.cuda.is_available()),
                                                  reason="no GPU visible to CuPy and torch")]

TOL = 1e-5


def relative(y: torch.Tensor, reference: torch.Tensor) -> float:
    return ((y.double() - reference).abs().max() / reference.abs().max()).item()


def conv_case(n, c, f, h, w, k, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, c, h, w, device="cuda", generator=gen)
    weight = torch.randn(f, c, k, k, device="cuda", generator=gen)
    return x, weight


@pytest.mark.parametrize("tile", [8, 16, 32])
def test_blocked_gemm_in_many_waves(tile):
    """3001 x 2999 x 1037: thousands of blocks, many times what the SMs hold at once; TILE=32 is
    1024 threads, one block per SM."""
    import cupy

    from experiments.conv import Variant
    from experiments.conv.kernel_launch import KernelLauncher
    from experiments.runtime import resolve
    runtime = resolve("gpu")
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    m, n, k = 3001, 2999, 1037
    a, b = cupy.random.standard_normal((m, k), dtype=cupy.float32), cupy.random.standard_normal((2, k, n), dtype=cupy.float32)
    blocks = 2 * -(-m // (tile * 4)) * -(-n // (tile * 4))
    assert blocks > 4 * props["multiProcessorCount"]
    c = KernelLauncher(runtime, Variant.of("im2col", "blocked", tile)).gemm(a, b)
    reference = torch.from_dlpack(a).double() @ torch.from_dlpack(b).double()
    assert relative(torch.from_dlpack(c), reference) < TOL


@pytest.mark.parametrize("algo", ["im2col", "kn2row"])
def test_more_rows_than_the_grid_y_limit(algo):
    """C_in * taps = 7283 * 9 = 65547 im2col rows (> 65535 blocks in y): the stride loop covers the rest."""
    from experiments import conv2d
    x, w = conv_case(1, 7283, 5, 9, 11, 3, seed=1)
    y = conv2d(x, w, padding=1, algo=algo, gemm="blocked", tile=16, backend="gpu")
    assert relative(y, F.conv2d(x.double(), w.double(), padding=1)) < TOL


# (algo, batch, C, F) at 224 x 224, 3 x 3, padding 1, and the array of each that holds the most elements
PAST_2_31 = [("im2col", 32, 160, 67), ("kn2row", 32, 64, 160), ("scalar", 32, 1344, 7)]
LARGEST = {"im2col": ("the columns, N x C*9 x H*W", lambda n, c, f: n * c * 9 * 224 * 224),
           "kn2row": ("the partial planes, N x F*9 x H*W", lambda n, c, f: n * f * 9 * 224 * 224),
           "scalar": ("the input, N x C x H x W", lambda n, c, f: n * c * 224 * 224)}


@pytest.mark.parametrize("algo, batch, c, f", PAST_2_31, ids=[case[0] for case in PAST_2_31])
def test_arrays_past_2_31_elements_need_64_bit_offsets(algo, batch, c, f):
    """Each algorithm on a layer whose largest array holds more than 2^31 elements: an offset computed in
    32 bits wraps there (im2col's columns and kn2row's partial planes about 9.3 GB, scalar's input 8.6 GB)."""
    from experiments import conv2d
    array, elements = LARGEST[algo][0], LARGEST[algo][1](batch, c, f)
    assert elements > 2**31, f"{algo}: {array} holds {elements} elements, not past 2^31"
    x, w = conv_case(batch, c, f, 224, 224, 3, seed=2)
    y = conv2d(x, w, padding=1, algo=algo, gemm="blocked", tile=32, backend="gpu")
    reference = F.conv2d(x.double(), w.double(), padding=1)
    assert relative(y, reference) < TOL
    del y, reference
    torch.cuda.empty_cache()


def test_event_clock_agrees_with_a_synchronized_wall_clock():
    """A kernel of at least 1 ms (a 4096^3 FP32 GEMM): device events and perf_counter around a
    synchronized call within a factor 2."""
    import cupy

    from experiments.measure.timing import EventClock
    a = cupy.random.standard_normal((4096, 4096), dtype=cupy.float32)
    clock = EventClock("cupy")
    for _ in range(3):
        clock.time(lambda: a @ a)
    event_s = min(clock.time(lambda: a @ a) for _ in range(5))
    walls = []
    for _ in range(5):
        cupy.cuda.get_current_stream().synchronize()
        start = time.perf_counter()
        a @ a
        cupy.cuda.get_current_stream().synchronize()
        walls.append(time.perf_counter() - start)
    assert event_s >= 1e-3, f"the GEMM took {event_s * 1e3:.3f} ms, too short for this check"
    assert 0.5 <= min(walls) / event_s <= 2.0, (min(walls), event_s)
