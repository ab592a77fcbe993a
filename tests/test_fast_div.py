"""fast_div (hip/common.h): division by a launch-time constant as multiply-high, add and shift."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.conv.kernel_launch import divisor


def fast_div(n: np.ndarray, d: int) -> np.ndarray:
    """What the kernels compute, in 64-bit numpy (__umulhi is the high word of the 64-bit product)."""
    mul, shift = (np.uint64(v) for v in divisor(d))
    return (((n * mul) >> np.uint64(32)) + n) >> shift


@settings(max_examples=300, deadline=None)
@given(d=st.one_of(st.integers(1, 4096), st.integers(1, 2**31 - 1)), seed=st.integers(0, 2**32 - 1))
def test_exact_for_every_index_below_2_31(d, seed):
    n = np.random.default_rng(seed).integers(0, 2**31, 2000, dtype=np.uint64)
    edges = np.array([0, 1, d - 1, d, d + 1, (2**31 - 1) // d * d - 1, (2**31 - 1) // d * d, 2**31 - 1], np.uint64)
    n = np.concatenate([n, edges[edges < 2**31]])
    assert np.array_equal(fast_div(n, d), n // np.uint64(d))


@pytest.mark.parametrize("d", [0, -3, 2**31])
def test_divisor_out_of_range(d):
    with pytest.raises(ValueError, match=f"divisor {d} outside"):
        divisor(d)
