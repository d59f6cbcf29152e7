"""vaetool.gemm: dense layers' products through oneDNN on x86-64 CPUs, torch's elsewhere — the same numbers."""
from __future__ import annotations

import platform

import pytest
import torch

from vaetool import gemm


@pytest.fixture
def backend(monkeypatch, request):
    """The product's backend for one test: oneDNN where the machine has it ("auto"), or torch's."""
    monkeypatch.setenv("VAETOOL_CPU_GEMM", request.param)
    gemm.onednn_available.cache_clear()
    yield request.param
    monkeypatch.undo()
    gemm.onednn_available.cache_clear()


def reference(x, weight, bias, activation):
    y = x.double() @ weight.double().t() + (0 if bias is None else bias.double())
    return {"none": y, "relu": y.relu(), "tanh": y.tanh()}[activation]


@pytest.mark.parametrize("backend", ["auto", "torch"], indirect=True)
@pytest.mark.parametrize("activation", gemm.ACTIVATIONS)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_linear_is_the_activation_of_x_times_w_transposed_plus_b(backend, activation, layout):
    generator = torch.Generator().manual_seed(3)
    x, weight, bias = torch.randn(37, 53, generator=generator), torch.randn(29, 53, generator=generator), \
        torch.randn(29, generator=generator)
    if layout == "transposed":  # what the backward pass hands it: views of (B, in) and (in, B) tensors
        x, weight = x.t().contiguous().t(), weight.t().contiguous().t()
        assert not x.is_contiguous()
    y = gemm.linear(x, weight, bias, activation)
    assert y.shape == (37, 29) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), reference(x, weight, bias, activation), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gemm.linear(x, weight).double(), reference(x, weight, None, "none"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch"], indirect=True)
def test_turned_off_it_is_torchs_own_product_bit_for_bit(backend):
    x, weight, bias = torch.randn(8, 5), torch.randn(3, 5), torch.randn(3)
    assert not gemm.onednn_available()
    assert torch.equal(gemm.linear(x, weight, bias, "relu"), torch.addmm(bias, x, weight.t()).relu())


@pytest.mark.parametrize("backend", ["auto"], indirect=True)
def test_onednn_is_used_on_x86_64_builds_that_have_it_and_never_for_float64(backend):
    has_op = hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert gemm.onednn_available() == (has_op and x86)
    x, weight = torch.randn(4, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    assert torch.equal(gemm.linear(x, weight, None, "tanh"), torch.mm(x, weight.t()).tanh())
