"""Box bounds keep their precision: an input on its bound is inside, in float64 and float32 alike."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import probe


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_input_on_a_python_float_bound_is_inside(dtype):
    box = probe.Box(0.1, 0.7)
    x = torch.tensor([[0.1, 0.7, 0.3]], dtype=dtype)
    box.validate(x)  # float32 bounds made 0.1 (float64) look like it lay below 0.1 (float32)
    assert box.contains(x, x, atol=0).all()
    assert torch.equal(box.project(x, x), x)


def test_float64_tensor_bounds_are_kept_exactly():
    lower = torch.tensor([0.1, 1 / 3], dtype=torch.float64)
    box = probe.Box(lower, lower + 1)
    assert box.lower.dtype == torch.float64 and torch.equal(box.lower, lower)
    box.validate(lower[None].clone())
    with pytest.raises(probe.ProbeError, match=r"index \(0, 1\)"):
        box.validate(torch.tensor([[0.1, 1 / 3 - 1e-15]], dtype=torch.float64))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(lo=st.floats(-1e3, 1e3), width=st.floats(0, 1e3), seed=st.integers(0, 2**16))
def test_float32_projection_never_leaves_the_exact_box(lo, width, seed):
    box = probe.Box(lo, lo + width)
    lo32, hi32 = box.bounds_like(torch.zeros(1))
    assume(lo32 <= hi32)  # a zero-width Box at a value float32 cannot represent holds no float32 input
    g = torch.Generator().manual_seed(seed)
    x = (lo + width / 2 + (width + 1) * torch.randn(8, 3, generator=g, dtype=torch.float64)).float()
    p = box.project(x, x).double()
    assert ((p >= lo) & (p <= lo + width)).all()
    # inward rounding: the nearest float32 values inside the exact bounds
    assert lo32.double() >= lo and hi32.double() <= lo + width
    assert torch.nextafter(lo32, torch.tensor(-float("inf"))).double() < lo


def test_bounds_and_mask_are_placed_once_per_device_and_dtype():
    box = probe.Box(torch.zeros(3), torch.ones(3), mask=torch.tensor([True, False, False]))
    x = torch.rand(4, 3)
    first = box.bounds_like(x)
    for _ in range(3):
        box.project(x, x + 0.5)
    assert all(a is b for a, b in zip(first, box.bounds_like(x)))
    assert box.bounds_like(x.double())[0].dtype == torch.float64


def test_bad_bounds_are_named():
    with pytest.raises(probe.ProbeError, match="lower bound must be"):
        probe.Box("zero", 1.0)
    with pytest.raises(probe.ProbeError, match="NaN at feature 1"):
        probe.Box(torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(probe.ProbeError, match="do not broadcast"):
        probe.Box(torch.zeros(3), torch.ones(2))
